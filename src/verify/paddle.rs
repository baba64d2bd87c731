//! Paddle Billing: `Paddle-Signature: ts=<unix s>;h1=<hex>[;h1=<hex>…]`.
//!
//! Byte-exact rule (PROVIDERS.md §2.11): HMAC-SHA256 keyed with the
//! `pdl_ntfset_…` secret's UTF-8 bytes over `{ts}:{raw body}` — a colon, not a
//! dot — lowercase hex in each `h1=`. Split on `;` then `=`. During a rotation
//! several `h1` appear; every one is checked (the Node SDK keeps only the
//! last, which this deliberately does not copy), and undecodable ones such as
//! `h1=dummy` are simply non-matching.

use super::hex_list::{HexListFormat, HexListScheme};
use crate::secret::Secret;

/// The header layout and signed bytes of this provider.
pub(crate) const FORMAT: HexListFormat = HexListFormat {
    header: "paddle-signature",
    wire_name: "Paddle-Signature",
    sep: ';',
    sign_sep: ";",
    ts_key: "ts",
    sig_key: "h1",
    joiner: b":",
    millis: false,
};

/// Constructor namespace: the scheme itself is the shared [`HexListScheme`].
pub(crate) struct Paddle;

impl Paddle {
    /// The scheme with the source's secrets.
    pub(crate) fn scheme(secrets: &[Secret]) -> HexListScheme {
        HexListScheme::new(secrets, &FORMAT)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::{UnverifiedRequest, VerifyError};
    use super::*;

    const HEADER: &str = FORMAT.header;

    const SECRET: &str = "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh";
    const DECOY_1: &str = "pdl_ntfset_01gkpjp8bkm3tm53kdgkx6sms7_6h3qd3uFSi9YCD3OLYAShQI90XTI5vEI";
    const DECOY_2: &str = "pdl_ntfset_01gkpjp8bkm3tm53kdgkx6sms7_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    const BODY: &[u8] = b"hello-world";
    const SIG: &str = "d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02";
    const VALUE: &str =
        "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02";

    fn vector() -> UnverifiedRequest {
        req(&[("Paddle-Signature", VALUE)], BODY)
    }

    #[test]
    fn published_vector_with_decoy_h1_and_decoy_secrets() {
        let v = verifier("paddle", &[DECOY_1, DECOY_2, SECRET]);
        let ok = v.verify(&vector()).unwrap();
        assert_eq!(ok.signed_at_ms, Some(1_696_195_954_000));
        assert_eq!(
            verifier("paddle", &[DECOY_1, DECOY_2]).verify(&vector()),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn tampered_and_missing() {
        let v = verifier("paddle", &[SECRET]);
        assert_eq!(
            v.verify(&with_body(&vector(), b"hello-world!")),
            Err(VerifyError::Mismatch)
        );
        let dot = with_header(&vector(), HEADER, &format!("ts=1696195955;h1={SIG}"));
        assert_eq!(v.verify(&dot), Err(VerifyError::Mismatch));
        assert_eq!(
            v.verify(&without(&vector(), HEADER)),
            Err(VerifyError::MissingHeader(HEADER.into()))
        );
        let only_decoy = with_header(&vector(), HEADER, "ts=1696195954;h1=dummy");
        assert_eq!(v.verify(&only_decoy), Err(VerifyError::Mismatch));
    }

    #[test]
    fn garbage_is_refused() {
        let v = verifier("paddle", &[SECRET]);
        assert_garbage_refused(&v, &vector(), HEADER);
        let bad = with_header(&vector(), HEADER, &format!("ts=abc;h1={SIG}"));
        assert_eq!(v.verify(&bad), Err(VerifyError::Malformed(HEADER.into())));
    }

    #[test]
    fn sign_round_trips() {
        let v = verifier("paddle", &[SECRET, DECOY_1]);
        let s = v.sign(BODY, "application/json", 1_696_195_954_321, "x");
        assert_eq!(
            s.headers,
            vec![(
                "Paddle-Signature".to_string(),
                format!("ts=1696195954;h1={SIG}")
            )]
        );
        assert_eq!(
            v.verify(&from_signed(&s, &[], BODY)).unwrap(),
            v.verify(&vector()).unwrap()
        );
    }
}
