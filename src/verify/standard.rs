//! Standard Webhooks v1 and Svix: `webhook-id`, `webhook-timestamp`,
//! `webhook-signature` (Svix: the same with `svix-`).
//!
//! Byte-exact rule (PROVIDERS.md §2.3–2.4): HMAC-SHA256 over
//! `{id}.{timestamp}.{raw body}`, keyed with the base64-decoding of the secret
//! after its `whsec_` prefix (padding optional); the signature header is a
//! space-separated list of `v1,<base64>` entries. Entries of other versions
//! (`v1a,` Ed25519, anything unknown) are ignored, never a fallback. The
//! timestamp is integer unix seconds. The id must not contain `.`: the spec
//! forbids it because `a.1` + `2` and `a` + `1.2…` would sign the same bytes.

use super::header::{self, MAX_SIGNATURES};
use super::mac::{self, Algorithm, Key};
use super::{headers_only, Problem, SignedRequest, UnverifiedRequest, Verified, VerifyError};
use crate::secret::Secret;

/// Which header names a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderSet {
    /// `webhook-*` only (Standard Webhooks, GitLab signing tokens).
    Webhook,
    /// `svix-*`, falling back to `webhook-*` when no `svix-signature` is sent
    /// (white-labelled Svix tiers), as the Svix libraries do.
    Svix,
}

/// One concrete set of header names.
#[derive(Debug, Clone, Copy)]
struct Names {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
    /// Spelling used when signing.
    out: [&'static str; 3],
}

const WEBHOOK: Names = Names {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
    out: ["webhook-id", "webhook-timestamp", "webhook-signature"],
};

const SVIX: Names = Names {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
    out: ["svix-id", "svix-timestamp", "svix-signature"],
};

/// A Standard Webhooks / Svix verifier with decoded keys.
#[derive(Debug, Clone)]
pub(crate) struct Standard {
    set: HeaderSet,
    keys: Vec<Key>,
}

impl Standard {
    /// Decodes every `whsec_` secret, reporting each undecodable one at
    /// `secrets[i]` without quoting it. `None` when any secret is unusable.
    pub(crate) fn new(
        set: HeaderSet,
        secrets: &[Secret],
        problems: &mut Vec<Problem>,
    ) -> Option<Standard> {
        let mut keys = Vec::with_capacity(secrets.len());
        let mut ok = true;
        for (i, s) in secrets.iter().enumerate() {
            if s.expose().is_empty() {
                ok = false; // already reported by the common check
                continue;
            }
            match Key::whsec(s) {
                Ok(k) => keys.push(k),
                Err(message) => {
                    ok = false;
                    problems.push(Problem::new(format!("secrets[{i}]"), message));
                }
            }
        }
        ok.then_some(Standard { set, keys })
    }

    /// From already-decoded keys (GitLab signing tokens).
    pub(crate) fn from_keys(set: HeaderSet, keys: Vec<Key>) -> Standard {
        Standard { set, keys }
    }

    /// The header carrying the message id, for the default event id.
    pub(crate) fn id_header(&self) -> &'static str {
        self.primary().id
    }

    /// The header carrying the timestamp, for the default ordering.
    pub(crate) fn timestamp_header(&self) -> &'static str {
        self.primary().timestamp
    }

    fn primary(&self) -> Names {
        match self.set {
            HeaderSet::Webhook => WEBHOOK,
            HeaderSet::Svix => SVIX,
        }
    }

    /// The set a request uses: all three names are taken from one set, never
    /// mixed.
    fn names_for(&self, req: &UnverifiedRequest) -> Names {
        match self.set {
            HeaderSet::Webhook => WEBHOOK,
            HeaderSet::Svix => {
                if !header::present(&req.headers, SVIX.signature)
                    && header::present(&req.headers, WEBHOOK.signature)
                {
                    WEBHOOK
                } else {
                    SVIX
                }
            }
        }
    }

    /// Checks the signature list against every key.
    pub(crate) fn verify(&self, req: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let names = self.names_for(req);
        let signatures = header::text(&req.headers, names.signature)?;
        let id = header::text(&req.headers, names.id)?;
        if id.contains('.') {
            return Err(VerifyError::Malformed(names.id.to_string()));
        }
        let ts = header::text(&req.headers, names.timestamp)?;
        let signed_at_ms = header::seconds_to_ms(ts, names.timestamp)?;
        let candidates: Vec<Vec<u8>> = signatures
            .split_ascii_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .take(MAX_SIGNATURES)
            .filter_map(mac::decode_base64)
            .collect();
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", &req.body];
        let matched = mac::find_match(Algorithm::Sha256, &self.keys, &parts, &candidates)
            .ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            signed_at_ms: Some(signed_at_ms),
            replay_token: mac::replay_token(&matched, Some(ts)),
        })
    }

    /// The three headers, signed with the first key at `now` (whole seconds).
    /// An `id` containing `.` yields a request that verification refuses, as
    /// the spec requires.
    pub(crate) fn sign(&self, body: &[u8], now_ms: i64, id: &str) -> SignedRequest {
        let ts = now_ms.div_euclid(1000).to_string();
        let sig = self
            .keys
            .first()
            .and_then(|k| {
                Algorithm::Sha256.mac(k.bytes(), &[id.as_bytes(), b".", ts.as_bytes(), b".", body])
            })
            .map(|m| mac::encode_base64(&m))
            .unwrap_or_default();
        let [h_id, h_ts, h_sig] = self.primary().out;
        headers_only(vec![
            (h_id, id.to_string()),
            (h_ts, ts),
            (h_sig, format!("v1,{sig}")),
        ])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const V1A: &str = "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw==";

    fn vector(prefix: &str) -> UnverifiedRequest {
        req(
            &[
                (&format!("{prefix}-id"), ID),
                (&format!("{prefix}-timestamp"), TS),
                (&format!("{prefix}-signature"), SIG),
            ],
            BODY,
        )
    }

    #[test]
    fn published_vector_verifies_for_both_providers() {
        let ok = verifier("standard", &[SECRET])
            .verify(&vector("webhook"))
            .unwrap();
        assert_eq!(ok.signed_at_ms, Some(1_614_265_330_000));
        let svix = verifier("svix", &[SECRET]);
        assert_eq!(svix.verify(&vector("svix")).unwrap(), ok);
        assert_eq!(
            svix.verify(&vector("webhook")).unwrap(),
            ok,
            "white-label fallback"
        );
    }

    #[test]
    fn standard_does_not_read_svix_headers() {
        let v = verifier("standard", &[SECRET]);
        assert_eq!(
            v.verify(&vector("svix")),
            Err(VerifyError::MissingHeader("webhook-signature".into()))
        );
    }

    #[test]
    fn unpadded_secret_works() {
        // 24 bytes encode without padding; strip a character-free variant:
        // re-encode a 25-byte key without `=` to prove padding is optional.
        let key: Vec<u8> = (0u8..25).collect();
        let padded = mac::encode_base64(&key);
        assert!(padded.ends_with('='));
        let unpadded = format!("whsec_{}", padded.trim_end_matches('='));
        let v = verifier("standard", &[&unpadded]);
        let s = v.sign(BODY, "application/json", 1_614_265_330_000, ID);
        let other = verifier("standard", &[&format!("whsec_{padded}")]);
        assert!(other.verify(&from_signed(&s, &[], BODY)).is_ok());
    }

    #[test]
    fn tampered_wrong_secret_missing() {
        let v = verifier("standard", &[SECRET]);
        assert_eq!(
            v.verify(&with_body(&vector("webhook"), b"{\"test\": 2432232315}")),
            Err(VerifyError::Mismatch)
        );
        let wrong = verifier("standard", &["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
        assert_eq!(wrong.verify(&vector("webhook")), Err(VerifyError::Mismatch));
        for h in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            assert_eq!(
                v.verify(&without(&vector("webhook"), h)),
                Err(VerifyError::MissingHeader(h.into()))
            );
        }
        let other_id = with_header(&vector("webhook"), "webhook-id", "msg_other");
        assert_eq!(v.verify(&other_id), Err(VerifyError::Mismatch));
    }

    #[test]
    fn rotation_and_signature_lists() {
        let v = verifier(
            "standard",
            &["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", SECRET],
        );
        assert!(v.verify(&vector("webhook")).is_ok());
        let list =
            format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {V1A}  junk v1,!!! {SIG}");
        let v = verifier("standard", &[SECRET]);
        assert!(v
            .verify(&with_header(&vector("webhook"), "webhook-signature", &list))
            .is_ok());
    }

    #[test]
    fn svix_rotation_and_no_mixing_of_header_sets() {
        let v = verifier("svix", &["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", SECRET]);
        assert!(v.verify(&vector("svix")).is_ok());
        let list = format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {SIG}");
        assert!(v
            .verify(&with_header(&vector("svix"), "svix-signature", &list))
            .is_ok());
        // svix-signature present: id and timestamp come from svix-* only.
        let mixed = req(
            &[
                ("svix-signature", SIG),
                ("webhook-id", ID),
                ("webhook-timestamp", TS),
            ],
            BODY,
        );
        assert_eq!(
            v.verify(&mixed),
            Err(VerifyError::MissingHeader("svix-id".into()))
        );
        assert_eq!(
            v.verify(&req(&[], BODY)),
            Err(VerifyError::MissingHeader("svix-signature".into()))
        );
    }

    #[test]
    fn v1a_and_unknown_versions_are_ignored() {
        let v = verifier("standard", &[SECRET]);
        let b64 = SIG.trim_start_matches("v1,");
        for value in [
            V1A.to_string(),
            format!("v2,{b64}"),
            format!("v1a,{b64}"),
            b64.to_string(),
        ] {
            assert_eq!(
                v.verify(&with_header(
                    &vector("webhook"),
                    "webhook-signature",
                    &value
                )),
                Err(VerifyError::Mismatch),
                "{value}"
            );
        }
    }

    #[test]
    fn dotted_id_and_bad_timestamp_are_malformed() {
        let v = verifier("standard", &[SECRET]);
        let dotted = with_header(&vector("webhook"), "webhook-id", "msg.1");
        assert_eq!(
            v.verify(&dotted),
            Err(VerifyError::Malformed("webhook-id".into()))
        );
        for ts in ["abc", "-1", "1.5", "1e9", "99999999999999999999"] {
            let r = with_header(&vector("webhook"), "webhook-timestamp", ts);
            assert_eq!(
                v.verify(&r),
                Err(VerifyError::Malformed("webhook-timestamp".into())),
                "{ts}"
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        let v = verifier("standard", &[SECRET]);
        for h in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            assert_garbage_refused(&v, &vector("webhook"), h);
        }
        let s = verifier("svix", &[SECRET]);
        for h in ["svix-id", "svix-timestamp", "svix-signature"] {
            assert_garbage_refused(&s, &vector("svix"), h);
        }
    }

    #[test]
    fn sign_round_trips_with_the_published_signature() {
        let v = verifier("standard", &[SECRET]);
        let s = v.sign(BODY, "application/json", 1_614_265_330_999, ID);
        assert_eq!(
            s.headers,
            vec![
                ("webhook-id".to_string(), ID.to_string()),
                ("webhook-timestamp".to_string(), TS.to_string()),
                ("webhook-signature".to_string(), SIG.to_string()),
            ]
        );
        let sv = verifier("svix", &[SECRET]).sign(BODY, "application/json", 1_614_265_330_000, ID);
        assert_eq!(sv.headers[0].0, "svix-id");
        assert_eq!(sv.headers[2].1, SIG);
        let a = v.verify(&from_signed(&s, &[], BODY)).unwrap();
        let later = v.sign(BODY, "", 1_614_265_331_000, ID);
        let b = v.verify(&from_signed(&later, &[], BODY)).unwrap();
        assert_ne!(a.replay_token, b.replay_token);
    }
}
