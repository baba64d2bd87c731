//! GitLab: legacy `X-Gitlab-Token` or new signing tokens (Standard Webhooks).
//!
//! Byte-exact rules (PROVIDERS.md §2.10):
//! - **Token mode** (a secret *not* starting with `whsec_`): GitLab sends the
//!   configured token verbatim in `X-Gitlab-Token`; it is compared with the
//!   secret's bytes in constant time. Nothing is signed — no body, no time.
//! - **Signing mode** (a `whsec_` secret): Standard Webhooks v1 over
//!   `{webhook-id}.{webhook-timestamp}.{raw body}`, key = base64 after `whsec_`,
//!   `webhook-signature: v1,<base64>` list.
//!
//! A source may hold both kinds (e.g. while migrating); each secret is tried
//! only in its own mode, and a request passes if either mode matches. Keep
//! a token secret configured only as long as needed: while it is, a holder of
//! the token alone can deliver.

use super::header;
use super::mac::{self, Key};
use super::standard::{HeaderSet, Standard};
use super::{Problem, SignedRequest, UnverifiedRequest, Verified, VerifyError};
use crate::secret::Secret;

/// The token header, lowercase.
const TOKEN_HEADER: &str = "x-gitlab-token";
/// Domain separator for the token-mode replay token.
const TOKEN_DOMAIN: &[u8] = b"gitlab-token";

/// One configured secret, in its mode.
#[derive(Debug, Clone)]
enum Mode {
    Token(Key),
    Signing(Key),
}

/// GitLab's scheme: token secrets and signing keys, in configured order.
#[derive(Debug, Clone)]
pub(crate) struct Gitlab {
    /// First configured secret's mode, used by `sign`.
    first: Option<Mode>,
    tokens: Vec<Key>,
    signing: Option<Standard>,
}

impl Gitlab {
    /// Sorts secrets into modes; a `whsec_` secret that does not decode is
    /// reported at `secrets[i]`, never quoted.
    pub(crate) fn new(secrets: &[Secret], problems: &mut Vec<Problem>) -> Option<Gitlab> {
        let mut modes = Vec::with_capacity(secrets.len());
        let mut ok = true;
        for (i, s) in secrets.iter().enumerate() {
            if s.expose().trim().starts_with("whsec_") {
                match Key::whsec(s) {
                    Ok(k) => modes.push(Mode::Signing(k)),
                    Err(message) => {
                        ok = false;
                        problems.push(Problem::new(format!("secrets[{i}]"), message));
                    }
                }
            } else {
                modes.push(Mode::Token(Key::utf8(s)));
            }
        }
        if !ok {
            return None;
        }
        let tokens: Vec<Key> = modes
            .iter()
            .filter_map(|m| match m {
                Mode::Token(k) => Some(k.clone()),
                Mode::Signing(_) => None,
            })
            .collect();
        let signing_keys: Vec<Key> = modes
            .iter()
            .filter_map(|m| match m {
                Mode::Signing(k) => Some(k.clone()),
                Mode::Token(_) => None,
            })
            .collect();
        let signing = (!signing_keys.is_empty())
            .then(|| Standard::from_keys(HeaderSet::Webhook, signing_keys));
        Some(Gitlab {
            first: modes.into_iter().next(),
            tokens,
            signing,
        })
    }

    /// Whether any secret is a signing token (then a timestamp is signed and
    /// a freshness window applies).
    pub(crate) fn has_signing_keys(&self) -> bool {
        self.signing.is_some()
    }

    /// Signing mode first (it proves a timestamp), then token mode. When both
    /// fail, the most specific error wins: a mismatch over a malformed header
    /// over a missing one.
    pub(crate) fn verify(&self, req: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let mut errors = Vec::with_capacity(2);
        if let Some(std) = &self.signing {
            match std.verify(req) {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(e),
            }
        }
        if !self.tokens.is_empty() {
            match self.verify_token(req) {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(e),
            }
        }
        let rank = |e: &VerifyError| match e {
            VerifyError::Mismatch => 0,
            VerifyError::Malformed(_) => 1,
            VerifyError::MissingHeader(_) => 2,
        };
        Err(errors
            .into_iter()
            .min_by_key(rank)
            .unwrap_or(VerifyError::Mismatch))
    }

    /// Token mode: constant-time comparison of the header bytes with each
    /// token.
    ///
    /// The replay token is SHA-256(`gitlab-token` ‖ body): there is no
    /// per-request signature to hash, and hashing the token itself would give
    /// every delivery the same replay token (all but the first would look
    /// like replays) while storing a function of the secret. The body hash
    /// makes a re-sent capture collide with itself and distinct events
    /// differ; two genuinely separate deliveries with byte-identical bodies
    /// would also collide, which GitLab's bodies (ids, timestamps) avoid.
    fn verify_token(&self, req: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let sent = header::bytes(&req.headers, TOKEN_HEADER)?;
        // Evaluate every token (no early exit) so timing does not reveal
        // which configured token matched.
        let matched = self
            .tokens
            .iter()
            .fold(false, |acc, t| mac::ct_eq(t.bytes(), sent) | acc);
        if !matched {
            return Err(VerifyError::Mismatch);
        }
        Ok(Verified {
            signed_at_ms: None,
            replay_token: mac::sha256(&[TOKEN_DOMAIN, &req.body]),
        })
    }

    /// As GitLab would send it with the first secret: `X-Gitlab-Token` in
    /// token mode, `webhook-*` in signing mode; `Idempotency-Key: id` always.
    pub(crate) fn sign(&self, body: &[u8], now_ms: i64, id: &str) -> SignedRequest {
        let mut signed = match (&self.first, &self.signing) {
            (Some(Mode::Signing(k)), _) => {
                Standard::from_keys(HeaderSet::Webhook, vec![k.clone()]).sign(body, now_ms, id)
            }
            (Some(Mode::Token(t)), _) => SignedRequest {
                headers: vec![(
                    "X-Gitlab-Token".to_string(),
                    String::from_utf8_lossy(t.bytes()).into_owned(),
                )],
                query: None,
            },
            (None, Some(std)) => std.sign(body, now_ms, id),
            (None, None) => SignedRequest {
                headers: Vec::new(),
                query: None,
            },
        };
        signed
            .headers
            .push(("Idempotency-Key".to_string(), id.to_string()));
        signed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::verify::SchemeOptions;

    const TOKEN: &str = "glpat-like-shared-token";
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"object_kind":"push","project":{"id":1}}"#;
    const STD_BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn token_req(token: &str) -> UnverifiedRequest {
        req(
            &[("X-Gitlab-Token", token), ("Idempotency-Key", "k1")],
            BODY,
        )
    }

    fn signing_vector() -> UnverifiedRequest {
        req(
            &[
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                ("webhook-timestamp", "1614265330"),
                (
                    "webhook-signature",
                    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                ),
            ],
            STD_BODY,
        )
    }

    #[test]
    fn token_mode_verifies_without_timestamp() {
        let v = verifier("gitlab", &[TOKEN]);
        let ok = v.verify(&token_req(TOKEN)).unwrap();
        assert_eq!(ok.signed_at_ms, None);
        assert_eq!(ok.replay_token, mac::sha256(&[b"gitlab-token", BODY]));
        let other_body = with_body(&token_req(TOKEN), b"{}");
        assert_ne!(v.verify(&other_body).unwrap().replay_token, ok.replay_token);
    }

    #[test]
    fn token_mode_refusals() {
        let v = verifier("gitlab", &[TOKEN]);
        assert_eq!(v.verify(&token_req("wrong")), Err(VerifyError::Mismatch));
        assert_eq!(
            v.verify(&token_req(&TOKEN[..TOKEN.len() - 1])),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            v.verify(&token_req(&format!("{TOKEN}x"))),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            v.verify(&without(&token_req(TOKEN), TOKEN_HEADER)),
            Err(VerifyError::MissingHeader(TOKEN_HEADER.into()))
        );
        assert_eq!(
            verifier("gitlab", &["other"]).verify(&token_req(TOKEN)),
            Err(VerifyError::Mismatch)
        );
        assert_garbage_refused(&v, &token_req(TOKEN), TOKEN_HEADER);
    }

    #[test]
    fn signing_mode_uses_standard_webhooks() {
        let v = verifier("gitlab", &[WHSEC]);
        let ok = v.verify(&signing_vector()).unwrap();
        assert_eq!(ok.signed_at_ms, Some(1_614_265_330_000));
        assert_eq!(
            v.verify(&with_body(&signing_vector(), b"{}")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            v.verify(&without(&signing_vector(), "webhook-signature")),
            Err(VerifyError::MissingHeader("webhook-signature".into()))
        );
        for h in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            assert_garbage_refused(&v, &signing_vector(), h);
        }
    }

    #[test]
    fn each_secret_is_tried_only_in_its_own_mode() {
        // A whsec secret sent as a plain token must not pass.
        let v = verifier("gitlab", &[WHSEC]);
        assert_eq!(
            v.verify(&token_req(WHSEC)),
            Err(VerifyError::MissingHeader("webhook-signature".into()))
        );
        // Mixed source: both kinds pass, rotation order irrelevant.
        let mixed = verifier("gitlab", &[TOKEN, WHSEC]);
        assert!(mixed.verify(&token_req(TOKEN)).is_ok());
        assert_eq!(
            mixed.verify(&signing_vector()).unwrap().signed_at_ms,
            Some(1_614_265_330_000)
        );
        assert_eq!(mixed.verify(&token_req("nope")), Err(VerifyError::Mismatch));
        assert_eq!(
            mixed.default_tolerance(),
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(verifier("gitlab", &[TOKEN]).default_tolerance(), None);
    }

    #[test]
    fn rotation_in_both_modes() {
        let v = verifier("gitlab", &["old-token", TOKEN]);
        assert!(v.verify(&token_req(TOKEN)).is_ok());
        assert!(v.verify(&token_req("old-token")).is_ok());
        let s = verifier("gitlab", &["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", WHSEC]);
        assert!(s.verify(&signing_vector()).is_ok());
    }

    #[test]
    fn bad_whsec_is_a_config_problem() {
        let secrets = vec![Secret::new(TOKEN), Secret::new("whsec_???secretpart???")];
        let ps =
            crate::verify::Verifier::new("gitlab", secrets, &SchemeOptions::default()).unwrap_err();
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].key, "secrets[1]");
        assert!(!ps[0].message.contains("secretpart"));
    }

    #[test]
    fn sign_round_trips_in_both_modes() {
        let t = verifier("gitlab", &[TOKEN, WHSEC]);
        let s = t.sign(BODY, "application/json", 1_700_000_000_000, "idem-1");
        assert_eq!(
            s.headers,
            vec![
                ("X-Gitlab-Token".to_string(), TOKEN.to_string()),
                ("Idempotency-Key".to_string(), "idem-1".to_string()),
            ]
        );
        assert_eq!(
            t.verify(&from_signed(&s, &[], BODY)).unwrap().signed_at_ms,
            None
        );
        let w = verifier("gitlab", &[WHSEC, TOKEN]);
        let s = w.sign(BODY, "application/json", 1_700_000_000_000, "idem-1");
        let names: Vec<&str> = s.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "Idempotency-Key"
            ]
        );
        assert_eq!(
            w.verify(&from_signed(&s, &[], BODY)).unwrap().signed_at_ms,
            Some(1_700_000_000_000)
        );
    }
}
