//! WorkOS: `WorkOS-Signature: t=<unix ms>, v1=<hex>`.
//!
//! Byte-exact rule (PROVIDERS.md §2.9): HMAC-SHA256 keyed with the secret's
//! UTF-8 bytes over `{t}.{raw body}`, `t` in **milliseconds** exactly as sent;
//! lowercase hex in `v1=`. The header has a space after the comma (the Python
//! SDK splits on `", "`, Node on `","`), so whitespace around items is
//! optional. The raw body is signed as received — never re-serialised, unlike
//! `@workos-inc/node` 8.x.

use super::hex_list::{HexListFormat, HexListScheme};
use crate::secret::Secret;

/// The header layout and signed bytes of this provider.
pub(crate) const FORMAT: HexListFormat = HexListFormat {
    header: "workos-signature",
    wire_name: "WorkOS-Signature",
    sep: ',',
    sign_sep: ", ",
    ts_key: "t",
    sig_key: "v1",
    joiner: b".",
    millis: true,
};

/// Constructor namespace: the scheme itself is the shared [`HexListScheme`].
pub(crate) struct Workos;

impl Workos {
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

    const SECRET: &str = "wos_secret_test";
    const BODY: &[u8] = br#"{"id":"event_01HZ","event":"user.created","data":{"id":"user_01"},"created_at":"2023-11-14T22:13:20.000Z"}"#;
    const SIG: &str = "a281021f4d33fa87f1c1bc25180843ec94dee6a62efb560e51eef1080c08535f";
    const VALUE: &str =
        "t=1700000000000, v1=a281021f4d33fa87f1c1bc25180843ec94dee6a62efb560e51eef1080c08535f";

    fn vector() -> UnverifiedRequest {
        req(&[("WorkOS-Signature", VALUE)], BODY)
    }

    #[test]
    fn self_generated_vector_verifies_ms_as_is() {
        let ok = verifier("workos", &[SECRET]).verify(&vector()).unwrap();
        assert_eq!(ok.signed_at_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn whitespace_is_optional() {
        let v = verifier("workos", &[SECRET]);
        for value in [
            format!("t=1700000000000,v1={SIG}"),
            format!("t=1700000000000 ,  v1={SIG}"),
        ] {
            assert!(v.verify(&with_header(&vector(), HEADER, &value)).is_ok());
        }
    }

    #[test]
    fn tampered_wrong_secret_missing() {
        let v = verifier("workos", &[SECRET]);
        assert_eq!(
            v.verify(&with_body(&vector(), b"{}")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verifier("workos", &["wos_other"]).verify(&vector()),
            Err(VerifyError::Mismatch)
        );
        // seconds instead of ms: different signed bytes
        let secs = with_header(&vector(), HEADER, &format!("t=1700000000, v1={SIG}"));
        assert_eq!(v.verify(&secs), Err(VerifyError::Mismatch));
        assert_eq!(
            v.verify(&without(&vector(), HEADER)),
            Err(VerifyError::MissingHeader(HEADER.into()))
        );
    }

    #[test]
    fn rotation_and_decoy() {
        let v = verifier("workos", &["wos_old", SECRET]);
        assert!(v.verify(&vector()).is_ok());
        let decoy = format!("t=1700000000000, v1={}, v1={SIG}", "ab".repeat(32));
        assert!(v.verify(&with_header(&vector(), HEADER, &decoy)).is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        let v = verifier("workos", &[SECRET]);
        assert_garbage_refused(&v, &vector(), HEADER);
    }

    #[test]
    fn sign_round_trips() {
        let v = verifier("workos", &[SECRET]);
        let s = v.sign(BODY, "application/json", 1_700_000_000_000, "x");
        assert_eq!(
            s.headers,
            vec![("WorkOS-Signature".to_string(), VALUE.to_string())]
        );
        assert_eq!(
            v.verify(&from_signed(&s, &[], BODY)).unwrap(),
            v.verify(&vector()).unwrap()
        );
    }
}
