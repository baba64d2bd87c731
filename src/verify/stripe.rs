//! Stripe: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>…][,v0=<hex>]`.
//!
//! Byte-exact rule (PROVIDERS.md §2.1): HMAC-SHA256 keyed with the UTF-8
//! bytes of the *whole* endpoint secret, `whsec_` prefix included (no base64),
//! over `{t}.{raw body}` with `t` exactly as the digits in the header;
//! lowercase hex in each `v1=`. Only `v1` is checked (never `v0`); during a
//! secret roll Stripe sends one `v1` per active secret, so any `v1` matching
//! any configured secret passes.

use super::hex_list::{HexListFormat, HexListScheme};
use crate::secret::Secret;

/// The header layout and signed bytes of this provider.
pub(crate) const FORMAT: HexListFormat = HexListFormat {
    header: "stripe-signature",
    wire_name: "Stripe-Signature",
    sep: ',',
    sign_sep: ",",
    ts_key: "t",
    sig_key: "v1",
    joiner: b".",
    millis: false,
};

/// Constructor namespace: the scheme itself is the shared [`HexListScheme`].
pub(crate) struct Stripe;

impl Stripe {
    /// The scheme with the source's secrets.
    pub(crate) fn scheme(secrets: &[Secret]) -> HexListScheme {
        HexListScheme::new(secrets, &FORMAT)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::VerifyError;
    use super::*;

    const HEADER: &str = FORMAT.header;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_test","object":"event"}"#;
    const SIG: &str = "8042376f6ca064adbe037642a718227dfd59047137eb49497a54c49eb0cfb724";
    const HEADER_VALUE: &str =
        "t=1700000000,v1=8042376f6ca064adbe037642a718227dfd59047137eb49497a54c49eb0cfb724";

    fn vector() -> super::super::UnverifiedRequest {
        req(&[("Stripe-Signature", HEADER_VALUE)], BODY)
    }

    #[test]
    fn self_generated_vector_verifies_in_ms() {
        let v = verifier("stripe", &[SECRET]);
        let ok = v.verify(&vector()).unwrap();
        assert_eq!(ok.signed_at_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn tampered_body_and_wrong_secret_mismatch() {
        let v = verifier("stripe", &[SECRET]);
        let r = with_body(&vector(), br#"{"id":"evt_test","object":"evenT"}"#);
        assert_eq!(v.verify(&r), Err(VerifyError::Mismatch));
        let wrong = verifier("stripe", &["whsec_other"]);
        assert_eq!(wrong.verify(&vector()), Err(VerifyError::Mismatch));
        let t_changed = with_header(&vector(), HEADER, &format!("t=1700000001,v1={SIG}"));
        assert_eq!(v.verify(&t_changed), Err(VerifyError::Mismatch));
    }

    #[test]
    fn missing_header() {
        let v = verifier("stripe", &[SECRET]);
        assert_eq!(
            v.verify(&without(&vector(), HEADER)),
            Err(VerifyError::MissingHeader("stripe-signature".into()))
        );
    }

    #[test]
    fn rotation_and_decoys() {
        let v = verifier("stripe", &["whsec_old", SECRET]);
        assert!(v.verify(&vector()).is_ok());
        let decoy = format!("t=1700000000,v1={},v1={SIG}", "00".repeat(32));
        assert!(v.verify(&with_header(&vector(), HEADER, &decoy)).is_ok());
        let spaced = format!("t=1700000000, v1=zz, v1={SIG}");
        assert!(v.verify(&with_header(&vector(), HEADER, &spaced)).is_ok());
    }

    #[test]
    fn never_downgrades_to_v0_or_accepts_unknown_schemes() {
        let v = verifier("stripe", &[SECRET]);
        for value in [
            format!("t=1700000000,v0={SIG}"),
            format!("t=1700000000,v2={SIG}"),
            format!("t=1700000000,V1={SIG}"),
        ] {
            assert_eq!(
                v.verify(&with_header(&vector(), HEADER, &value)),
                Err(VerifyError::Mismatch)
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        let v = verifier("stripe", &[SECRET]);
        assert_garbage_refused(&v, &vector(), HEADER);
        let bad_t = with_header(&vector(), HEADER, &format!("t=abc,v1={SIG}"));
        assert_eq!(v.verify(&bad_t), Err(VerifyError::Malformed(HEADER.into())));
        let no_eq = with_header(&vector(), HEADER, &format!("t=1700000000,{SIG}"));
        assert_eq!(v.verify(&no_eq), Err(VerifyError::Malformed(HEADER.into())));
        let two_t = with_header(&vector(), HEADER, &format!("t=1,t=1700000000,v1={SIG}"));
        assert_eq!(v.verify(&two_t), Err(VerifyError::Malformed(HEADER.into())));
    }

    #[test]
    fn more_than_32_signatures_are_ignored() {
        let v = verifier("stripe", &[SECRET]);
        let decoys = ",v1=00".repeat(40);
        let value = format!("t=1700000000{decoys},v1={SIG}");
        assert_eq!(
            v.verify(&with_header(&vector(), HEADER, &value)),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn sign_round_trips_and_tokens_are_stable() {
        let v = verifier("stripe", &[SECRET, "whsec_second"]);
        let signed = v.sign(BODY, "application/json", 1_700_000_000_000, "evt_test");
        assert_eq!(signed.headers[0].1, HEADER_VALUE);
        let a = v.verify(&from_signed(&signed, &[], BODY)).unwrap();
        let b = v.verify(&vector()).unwrap();
        assert_eq!(a, b, "same capture, same token");
        let upper = with_header(
            &vector(),
            HEADER,
            &HEADER_VALUE
                .to_uppercase()
                .replace("T=", "t=")
                .replace("V1=", "v1="),
        );
        assert_eq!(v.verify(&upper).unwrap().replay_token, b.replay_token);
        let later = v.sign(BODY, "application/json", 1_700_000_001_999, "evt_test");
        let c = v.verify(&from_signed(&later, &[], BODY)).unwrap();
        assert_eq!(c.signed_at_ms, Some(1_700_000_001_000));
        assert_ne!(c.replay_token, b.replay_token, "new delivery, new token");
    }
}
