//! Shopify: `X-Shopify-Hmac-Sha256: <base64>` (the Events product sends
//! `Shopify-Hmac-Sha256`, without `X-`).
//!
//! Byte-exact rule (PROVIDERS.md §2.7): HMAC-SHA256 keyed with the app's
//! client secret (UTF-8) over the raw body; standard base64, no prefix. One
//! signature per delivery, but after a secret rotation Shopify may sign with
//! the old secret for up to an hour, so every configured secret is tried.
//! Nothing time-related is signed.

use super::header;
use super::mac::{self, Algorithm, Key};
use super::{headers_only, SignedRequest, UnverifiedRequest, Verified, VerifyError};
use crate::secret::Secret;

/// The classic signature header, lowercase.
const HEADER: &str = "x-shopify-hmac-sha256";
/// The Events-product spelling, used only when the classic one is absent.
const EVENTS_HEADER: &str = "shopify-hmac-sha256";

/// Shopify's scheme with its key bytes.
#[derive(Debug, Clone)]
pub(crate) struct Shopify {
    keys: Vec<Key>,
}

impl Shopify {
    /// Keys are the client secrets' UTF-8 bytes.
    pub(crate) fn new(secrets: &[Secret]) -> Shopify {
        Shopify {
            keys: secrets.iter().map(Key::utf8).collect(),
        }
    }

    /// Checks the body HMAC from whichever header spelling is present.
    pub(crate) fn verify(&self, req: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let name = if !header::present(&req.headers, HEADER)
            && header::present(&req.headers, EVENTS_HEADER)
        {
            EVENTS_HEADER
        } else {
            HEADER
        };
        let value = header::text(&req.headers, name)?;
        let sig =
            mac::decode_base64(value).ok_or_else(|| VerifyError::Malformed(name.to_string()))?;
        mac::verify_body_sha256(&self.keys, &req.body, sig)
    }

    /// `X-Shopify-Hmac-Sha256` plus `X-Shopify-Webhook-Id: id`.
    pub(crate) fn sign(&self, body: &[u8], id: &str) -> SignedRequest {
        let sig = mac::sign_first(Algorithm::Sha256, &self.keys, &[body])
            .map(|m| mac::encode_base64(&m))
            .unwrap_or_default();
        headers_only(vec![
            ("X-Shopify-Hmac-Sha256", sig),
            ("X-Shopify-Webhook-Id", id.to_string()),
        ])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const SECRET: &str = "shpss_test_secret";
    const BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    const SIG: &str = "LnwdZPLBbdjkBwPD/lDL1/rYEGby/GHPtL1aAH6Dxjc=";

    fn vector() -> UnverifiedRequest {
        req(&[("X-Shopify-Hmac-SHA256", SIG)], BODY)
    }

    #[test]
    fn self_generated_vector_verifies_with_both_spellings() {
        let v = verifier("shopify", &[SECRET]);
        let ok = v.verify(&vector()).unwrap();
        assert_eq!(ok.signed_at_ms, None);
        let events = req(&[("Shopify-Hmac-Sha256", SIG)], BODY);
        assert_eq!(v.verify(&events).unwrap(), ok);
        let unpadded = req(
            &[("X-Shopify-Hmac-Sha256", SIG.trim_end_matches('='))],
            BODY,
        );
        assert_eq!(
            v.verify(&unpadded).unwrap(),
            ok,
            "same token for re-spelled base64"
        );
    }

    #[test]
    fn tampered_wrong_secret_missing() {
        let v = verifier("shopify", &[SECRET]);
        assert_eq!(
            v.verify(&with_body(
                &vector(),
                br#"{"id":820982911946154509,"email":"jon@example.com"}"#
            )),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verifier("shopify", &["shpss_new"]).verify(&vector()),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            v.verify(&without(&vector(), HEADER)),
            Err(VerifyError::MissingHeader(HEADER.into()))
        );
    }

    #[test]
    fn rotation_passes() {
        let v = verifier("shopify", &["shpss_new_secret", SECRET]);
        assert!(v.verify(&vector()).is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        let v = verifier("shopify", &[SECRET]);
        assert_garbage_refused(&v, &vector(), HEADER);
        assert_garbage_refused(&v, &req(&[], BODY), EVENTS_HEADER);
    }

    #[test]
    fn sign_round_trips() {
        let v = verifier("shopify", &[SECRET]);
        let s = v.sign(BODY, "application/json", 0, "wh-1");
        assert!(s
            .headers
            .contains(&("X-Shopify-Hmac-Sha256".into(), SIG.into())));
        assert!(s
            .headers
            .contains(&("X-Shopify-Webhook-Id".into(), "wh-1".into())));
        assert!(v.verify(&from_signed(&s, &[], BODY)).is_ok());
    }
}
