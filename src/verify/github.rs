//! GitHub: `X-Hub-Signature-256: sha256=<hex>`.
//!
//! Byte-exact rule (PROVIDERS.md §2.2): HMAC-SHA256 keyed with the secret's
//! UTF-8 bytes over the raw body exactly as sent (for form-encoded hooks, the
//! `payload=…` form bytes), lowercase hex after `sha256=`. The legacy SHA-1
//! `X-Hub-Signature` is deliberately not accepted: GitHub always sends the
//! SHA-256 header when a secret is set, so falling back would only be a
//! downgrade path. No timestamp is signed; replay protection is dedup on
//! `X-GitHub-Delivery` plus the replay token.

use super::header;
use super::mac::{self, Algorithm, Key};
use super::{headers_only, SignedRequest, UnverifiedRequest, Verified, VerifyError};
use crate::secret::Secret;

/// The signature header, lowercase.
const HEADER: &str = "x-hub-signature-256";
/// The only accepted scheme prefix.
const PREFIX: &str = "sha256=";

/// GitHub's scheme with its key bytes.
#[derive(Debug, Clone)]
pub(crate) struct Github {
    keys: Vec<Key>,
}

impl Github {
    /// Keys are the secrets' UTF-8 bytes.
    pub(crate) fn new(secrets: &[Secret]) -> Github {
        Github {
            keys: secrets.iter().map(Key::utf8).collect(),
        }
    }

    /// Checks `X-Hub-Signature-256`; several secrets cover a rotation, since
    /// GitHub sends only one signature.
    pub(crate) fn verify(&self, req: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let value = header::text(&req.headers, HEADER)?;
        let malformed = || VerifyError::Malformed(HEADER.to_string());
        let hex = value.strip_prefix(PREFIX).ok_or_else(malformed)?;
        let sig = mac::decode_hex(hex).ok_or_else(malformed)?;
        mac::verify_body_sha256(&self.keys, &req.body, sig)
    }

    /// `X-Hub-Signature-256` plus `X-GitHub-Delivery: id`.
    pub(crate) fn sign(&self, body: &[u8], id: &str) -> SignedRequest {
        let sig = mac::sign_first(Algorithm::Sha256, &self.keys, &[body])
            .map(|m| mac::encode_hex(&m))
            .unwrap_or_default();
        headers_only(vec![
            ("X-Hub-Signature-256", format!("{PREFIX}{sig}")),
            ("X-GitHub-Delivery", id.to_string()),
        ])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn vector() -> UnverifiedRequest {
        req(&[("X-Hub-Signature-256", SIG)], BODY)
    }

    #[test]
    fn published_vector_verifies() {
        let ok = verifier("github", &[SECRET]).verify(&vector()).unwrap();
        assert_eq!(ok.signed_at_ms, None);
    }

    #[test]
    fn tampered_wrong_secret_missing() {
        let v = verifier("github", &[SECRET]);
        assert_eq!(
            v.verify(&with_body(&vector(), b"Hello, World?")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verifier("github", &["nope"]).verify(&vector()),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            v.verify(&without(&vector(), HEADER)),
            Err(VerifyError::MissingHeader(HEADER.into()))
        );
    }

    #[test]
    fn legacy_sha1_header_alone_is_not_accepted() {
        let v = verifier("github", &[SECRET]);
        let r = req(
            &[(
                "X-Hub-Signature",
                "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
            )],
            BODY,
        );
        assert_eq!(v.verify(&r), Err(VerifyError::MissingHeader(HEADER.into())));
        let downgraded = with_header(
            &vector(),
            HEADER,
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        );
        assert_eq!(
            v.verify(&downgraded),
            Err(VerifyError::Malformed(HEADER.into()))
        );
    }

    #[test]
    fn rotation_passes_with_second_secret() {
        let v = verifier("github", &["old secret", SECRET]);
        assert!(v.verify(&vector()).is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        assert_garbage_refused(&verifier("github", &[SECRET]), &vector(), HEADER);
    }

    #[test]
    fn sign_round_trips() {
        let v = verifier("github", &[SECRET]);
        let s = v.sign(BODY, "application/json", 0, "d-1");
        assert!(s
            .headers
            .contains(&("X-Hub-Signature-256".into(), SIG.into())));
        assert!(s
            .headers
            .contains(&("X-GitHub-Delivery".into(), "d-1".into())));
        assert_eq!(
            v.verify(&from_signed(&s, &[], BODY)).unwrap(),
            v.verify(&vector()).unwrap()
        );
    }
}
