//! Linear: `Linear-Signature: <hex>`, timestamp inside the signed body.
//!
//! Byte-exact rule (PROVIDERS.md §2.12): HMAC-SHA256 keyed with the secret's
//! UTF-8 bytes over the raw body, lowercase hex, no prefix. The only trusted
//! time is the body's top-level `webhookTimestamp` (integer unix ms), which
//! the HMAC covers; the `Linear-Timestamp` header is unsigned and ignored.
//! The body is parsed as JSON only *after* the HMAC matched, so unauthenticated
//! input never reaches the JSON parser.

use serde::Deserialize;

use super::header;
use super::mac::{self, Algorithm, Key};
use super::{headers_only, SignedRequest, UnverifiedRequest, Verified, VerifyError};
use crate::secret::Secret;

/// The signature header, lowercase.
const HEADER: &str = "linear-signature";
/// What a bad or absent body timestamp is reported as.
const BODY_FIELD: &str = "body webhookTimestamp";

/// Linear's scheme with its key bytes.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    keys: Vec<Key>,
}

/// The one field read from a verified body. A struct rather than a `Value`
/// so other fields are skipped without building them, and a duplicated
/// `webhookTimestamp` is an error instead of "last one wins".
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "webhookTimestamp")]
    webhook_timestamp: Option<serde_json::Value>,
}

impl Linear {
    /// Keys are the secrets' UTF-8 bytes.
    pub(crate) fn new(secrets: &[Secret]) -> Linear {
        Linear {
            keys: secrets.iter().map(Key::utf8).collect(),
        }
    }

    /// Checks the body HMAC, then reads the signed timestamp.
    pub(crate) fn verify(&self, req: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let value = header::text(&req.headers, HEADER)?;
        let sig =
            mac::decode_hex(value).ok_or_else(|| VerifyError::Malformed(HEADER.to_string()))?;
        let matched = mac::find_match(Algorithm::Sha256, &self.keys, &[&req.body], &[sig])
            .ok_or(VerifyError::Mismatch)?;
        let malformed = || VerifyError::Malformed(BODY_FIELD.to_string());
        // serde would also fill a struct from a JSON array; Linear sends objects.
        let is_object = req.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if !is_object {
            return Err(malformed());
        }
        let envelope: Envelope = serde_json::from_slice(&req.body).map_err(|_| malformed())?;
        let signed_at_ms = match envelope.webhook_timestamp {
            Some(serde_json::Value::Number(n)) => n.as_i64().filter(|t| *t >= 0),
            _ => None,
        }
        .ok_or_else(malformed)?;
        Ok(Verified {
            signed_at_ms: Some(signed_at_ms),
            replay_token: mac::replay_token(&matched, Some(&signed_at_ms.to_string())),
        })
    }

    /// `Linear-Signature` plus `Linear-Delivery: id`. The body's
    /// `webhookTimestamp` is the caller's to set: it is part of the body.
    pub(crate) fn sign(&self, body: &[u8], id: &str) -> SignedRequest {
        let sig = mac::sign_first(Algorithm::Sha256, &self.keys, &[body])
            .map(|m| mac::encode_hex(&m))
            .unwrap_or_default();
        headers_only(vec![
            ("Linear-Signature", sig),
            ("Linear-Delivery", id.to_string()),
        ])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const SECRET: &str = "lin_wh_test_secret";
    const BODY: &[u8] = br#"{"action":"create","type":"Issue","data":{"id":"9f1b6c2e"},"webhookTimestamp":1700000000000}"#;
    const SIG: &str = "ee4404b0d88594e7993246d1869801388d4dd7ffe93b714e594e2e3d87ab41fe";

    fn vector() -> UnverifiedRequest {
        req(&[("Linear-Signature", SIG)], BODY)
    }

    #[test]
    fn self_generated_vector_verifies_with_body_timestamp_in_ms() {
        let ok = verifier("linear", &[SECRET]).verify(&vector()).unwrap();
        assert_eq!(ok.signed_at_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn unsigned_timestamp_header_is_ignored() {
        let v = verifier("linear", &[SECRET]);
        let r = with_header(&vector(), "linear-timestamp", "1");
        assert_eq!(v.verify(&r).unwrap().signed_at_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn tampered_wrong_secret_missing() {
        let v = verifier("linear", &[SECRET]);
        let tampered = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("1700000000000", "1800000000000");
        assert_eq!(
            v.verify(&with_body(&vector(), tampered.as_bytes())),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verifier("linear", &["lin_other"]).verify(&vector()),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            v.verify(&without(&vector(), HEADER)),
            Err(VerifyError::MissingHeader(HEADER.into()))
        );
    }

    #[test]
    fn rotation_passes() {
        assert!(verifier("linear", &["lin_old", SECRET])
            .verify(&vector())
            .is_ok());
    }

    #[test]
    fn signed_body_without_integer_timestamp_is_malformed() {
        let v = verifier("linear", &[SECRET]);
        for body in [
            &br#"{"action":"create"}"#[..],
            br#"{"webhookTimestamp":"1700000000000"}"#,
            br#"{"webhookTimestamp":1.7e12}"#,
            br#"{"webhookTimestamp":-5}"#,
            br#"{"webhookTimestamp":1,"webhookTimestamp":2}"#,
            br#"[1,2]"#,
            br#"[1700000000000]"#,
            b"not json",
        ] {
            let s = v.sign(body, "application/json", 0, "d");
            assert_eq!(
                v.verify(&from_signed(&s, &[], body)),
                Err(VerifyError::Malformed(BODY_FIELD.into())),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_garbage_refused(&verifier("linear", &[SECRET]), &vector(), HEADER);
    }

    #[test]
    fn sign_round_trips() {
        let v = verifier("linear", &[SECRET]);
        let s = v.sign(BODY, "application/json", 0, "del-1");
        assert!(s.headers.contains(&("Linear-Signature".into(), SIG.into())));
        assert!(s
            .headers
            .contains(&("Linear-Delivery".into(), "del-1".into())));
        assert!(v.verify(&from_signed(&s, &[], BODY)).is_ok());
    }
}
