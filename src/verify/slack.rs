//! Slack: `X-Slack-Signature: v0=<hex>` with `X-Slack-Request-Timestamp`.
//!
//! Byte-exact rule (PROVIDERS.md §2.6): HMAC-SHA256 keyed with the signing
//! secret's UTF-8 bytes over `v0:{timestamp}:{raw body}` (JSON for the Events
//! API, form bytes for slash commands — the raw bytes either way), lowercase
//! hex after `v0=`. The timestamp is unix seconds, as sent.

use super::header;
use super::mac::{self, Algorithm, Key};
use super::{headers_only, SignedRequest, UnverifiedRequest, Verified, VerifyError};
use crate::secret::Secret;

/// The signature header, lowercase.
const SIG_HEADER: &str = "x-slack-signature";
/// The timestamp header, lowercase.
const TS_HEADER: &str = "x-slack-request-timestamp";

/// Slack's scheme with its key bytes.
#[derive(Debug, Clone)]
pub(crate) struct Slack {
    keys: Vec<Key>,
}

impl Slack {
    /// Keys are the signing secrets' UTF-8 bytes.
    pub(crate) fn new(secrets: &[Secret]) -> Slack {
        Slack {
            keys: secrets.iter().map(Key::utf8).collect(),
        }
    }

    /// Checks the `v0` signature; only `v0` exists, anything else is malformed.
    pub(crate) fn verify(&self, req: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let value = header::text(&req.headers, SIG_HEADER)?;
        let ts = header::text(&req.headers, TS_HEADER)?;
        let signed_at_ms = header::seconds_to_ms(ts, TS_HEADER)?;
        let malformed = || VerifyError::Malformed(SIG_HEADER.to_string());
        let hex = value.strip_prefix("v0=").ok_or_else(malformed)?;
        let sig = mac::decode_hex(hex).ok_or_else(malformed)?;
        let parts: [&[u8]; 4] = [b"v0:", ts.as_bytes(), b":", &req.body];
        let matched = mac::find_match(Algorithm::Sha256, &self.keys, &parts, &[sig])
            .ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            signed_at_ms: Some(signed_at_ms),
            replay_token: mac::replay_token(&matched, Some(ts)),
        })
    }

    /// Both headers, signed with the first secret at `now` (whole seconds).
    pub(crate) fn sign(&self, body: &[u8], now_ms: i64) -> SignedRequest {
        let ts = now_ms.div_euclid(1000).to_string();
        let sig = mac::sign_first(
            Algorithm::Sha256,
            &self.keys,
            &[b"v0:", ts.as_bytes(), b":", body],
        )
        .map(|m| mac::encode_hex(&m))
        .unwrap_or_default();
        headers_only(vec![
            ("X-Slack-Request-Timestamp", ts),
            ("X-Slack-Signature", format!("v0={sig}")),
        ])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn vector() -> UnverifiedRequest {
        req(
            &[
                ("X-Slack-Request-Timestamp", TS),
                ("X-Slack-Signature", SIG),
            ],
            BODY,
        )
    }

    #[test]
    fn published_vector_verifies_in_ms() {
        let ok = verifier("slack", &[SECRET]).verify(&vector()).unwrap();
        assert_eq!(ok.signed_at_ms, Some(1_531_420_618_000));
    }

    #[test]
    fn tampered_wrong_secret_missing() {
        let v = verifier("slack", &[SECRET]);
        let mut body = BODY.to_vec();
        body.push(b'x');
        assert_eq!(
            v.verify(&with_body(&vector(), &body)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verifier("slack", &["other"]).verify(&vector()),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            v.verify(&with_header(&vector(), TS_HEADER, "1531420619")),
            Err(VerifyError::Mismatch)
        );
        for h in [SIG_HEADER, TS_HEADER] {
            assert_eq!(
                v.verify(&without(&vector(), h)),
                Err(VerifyError::MissingHeader(h.into()))
            );
        }
    }

    #[test]
    fn rotation_passes() {
        assert!(verifier("slack", &["old", SECRET])
            .verify(&vector())
            .is_ok());
    }

    #[test]
    fn other_versions_are_refused() {
        let v = verifier("slack", &[SECRET]);
        let v1 = SIG.replace("v0=", "v1=");
        assert!(v.verify(&with_header(&vector(), SIG_HEADER, &v1)).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        let v = verifier("slack", &[SECRET]);
        assert_garbage_refused(&v, &vector(), SIG_HEADER);
        assert_garbage_refused(&v, &vector(), TS_HEADER);
    }

    #[test]
    fn sign_round_trips() {
        let v = verifier("slack", &[SECRET]);
        let s = v.sign(
            BODY,
            "application/x-www-form-urlencoded",
            1_531_420_618_500,
            "x",
        );
        assert!(s
            .headers
            .contains(&("X-Slack-Signature".into(), SIG.into())));
        assert_eq!(
            v.verify(&from_signed(&s, &[], BODY)).unwrap(),
            v.verify(&vector()).unwrap()
        );
    }
}
