//! Generic HMAC (`provider = "hmac"`), for senders without a dedicated scheme.
//!
//! Byte-exact rule: `<prefix><encoding(HMAC-<algorithm>(secret UTF-8, payload))>`
//! in `signature_header`, where payload is the `signed_payload` template with
//! `{body}` replaced by the raw body and `{timestamp}` by the
//! `timestamp_header` value exactly as sent (integer unix seconds). Defaults:
//! sha256, hex, no prefix, payload `{body}`. Only `{body}` and `{timestamp}`
//! exist; any other `{…}` is a config error rather than literal text, so a
//! typo such as `{tiemstamp}` cannot silently leave the timestamp unsigned.

use http::HeaderName;

use super::header;
use super::mac::{self, Algorithm, Key};
use super::{
    headers_only, Problem, SchemeOptions, SignedRequest, UnverifiedRequest, Verified, VerifyError,
};
use crate::secret::Secret;

/// How the MAC is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Hex,
    Base64,
}

/// One piece of the signed-payload template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Body,
    Timestamp,
}

/// A header name as configured (for `sign`) and normalised (for lookup).
#[derive(Debug, Clone)]
struct Named {
    configured: String,
    name: HeaderName,
}

/// The generic scheme, fully validated.
#[derive(Debug, Clone)]
pub(crate) struct Generic {
    keys: Vec<Key>,
    algorithm: Algorithm,
    encoding: Encoding,
    signature_header: Named,
    prefix: String,
    timestamp_header: Option<Named>,
    template: Vec<Part>,
}

/// Parses `{body}` / `{timestamp}` templates.
fn parse_template(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        literal.push_str(&rest[..i]);
        rest = &rest[i..];
        let (part, after) = if let Some(after) = rest.strip_prefix("{body}") {
            (Part::Body, after)
        } else if let Some(after) = rest.strip_prefix("{timestamp}") {
            (Part::Timestamp, after)
        } else {
            return Err(
                "contains a `{` or `}` that is not part of {body} or {timestamp}".to_string(),
            );
        };
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal)));
        }
        parts.push(part);
        rest = after;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

/// Validates a configured header name.
fn header_name(key: &str, text: &str, problems: &mut Vec<Problem>) -> Option<Named> {
    let trimmed = text.trim();
    match HeaderName::from_bytes(trimmed.as_bytes()) {
        Ok(name) => Some(Named {
            configured: trimmed.to_string(),
            name,
        }),
        Err(_) => {
            problems.push(Problem::new(
                key,
                format!(
                    "`{}` is not a valid header name",
                    trimmed.chars().take(64).collect::<String>()
                ),
            ));
            None
        }
    }
}

impl Generic {
    /// Validates every option, pushing one problem per mistake.
    pub(crate) fn new(
        secrets: &[Secret],
        options: &SchemeOptions,
        problems: &mut Vec<Problem>,
    ) -> Option<Generic> {
        let before = problems.len();
        let signature_header = match options.signature_header.as_deref() {
            Some(h) => header_name("signature_header", h, problems),
            None => {
                problems.push(Problem::new(
                    "signature_header",
                    "is required for provider = \"hmac\"",
                ));
                None
            }
        };
        let algorithm = match options.algorithm.as_deref() {
            None => Some(Algorithm::Sha256),
            Some(a) => Algorithm::parse(a).or_else(|| {
                problems.push(Problem::new(
                    "algorithm",
                    format!(
                        "unknown algorithm `{}`; expected one of sha1, sha256, sha512",
                        a.chars().take(32).collect::<String>()
                    ),
                ));
                None
            }),
        };
        let encoding = match options
            .encoding
            .as_deref()
            .map(|e| e.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("hex") => Some(Encoding::Hex),
            Some("base64") => Some(Encoding::Base64),
            Some(other) => {
                problems.push(Problem::new(
                    "encoding",
                    format!(
                        "unknown encoding `{}`; expected one of hex, base64",
                        other.chars().take(32).collect::<String>()
                    ),
                ));
                None
            }
        };
        let timestamp_header = options
            .timestamp_header
            .as_deref()
            .and_then(|h| header_name("timestamp_header", h, problems));
        let template = match parse_template(options.signed_payload.as_deref().unwrap_or("{body}")) {
            Ok(t) => Some(t),
            Err(message) => {
                problems.push(Problem::new("signed_payload", message));
                None
            }
        };
        if let Some(t) = &template {
            let bodies = t.iter().filter(|p| **p == Part::Body).count();
            let stamps = t.iter().filter(|p| **p == Part::Timestamp).count();
            if bodies != 1 {
                problems.push(Problem::new(
                    "signed_payload",
                    "must contain {body} exactly once, or the body would not be authenticated",
                ));
            }
            if stamps > 1 {
                problems.push(Problem::new(
                    "signed_payload",
                    "must contain {timestamp} at most once",
                ));
            }
            if stamps > 0 && options.timestamp_header.is_none() {
                problems.push(Problem::new(
                    "signed_payload",
                    "uses {timestamp} but timestamp_header is not set",
                ));
            }
            if stamps == 0 && options.timestamp_header.is_some() {
                problems.push(Problem::new(
                    "timestamp_header",
                    "is set but signed_payload does not contain {timestamp}, so the timestamp would not be signed",
                ));
            }
        }
        if let (Some(s), Some(t)) = (&signature_header, &timestamp_header) {
            if s.name == t.name {
                problems.push(Problem::new(
                    "timestamp_header",
                    "must differ from signature_header",
                ));
            }
        }
        if problems.len() != before {
            return None;
        }
        Some(Generic {
            keys: secrets.iter().map(Key::utf8).collect(),
            algorithm: algorithm?,
            encoding: encoding?,
            signature_header: signature_header?,
            prefix: options.prefix.clone().unwrap_or_default(),
            timestamp_header,
            template: template?,
        })
    }

    /// Whether a timestamp is signed (then a freshness window applies).
    pub(crate) fn has_timestamp(&self) -> bool {
        self.timestamp_header.is_some()
    }

    fn parts<'a>(&'a self, body: &'a [u8], ts: &'a str) -> Vec<&'a [u8]> {
        self.template
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.as_bytes(),
                Part::Body => body,
                Part::Timestamp => ts.as_bytes(),
            })
            .collect()
    }

    /// Checks the single signature against every secret.
    pub(crate) fn verify(&self, req: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let sig_name = self.signature_header.name.as_str();
        let value = header::text(&req.headers, sig_name)?;
        let malformed = || VerifyError::Malformed(sig_name.to_string());
        let encoded = value
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(malformed)?;
        let sig = match self.encoding {
            Encoding::Hex => mac::decode_hex(encoded),
            Encoding::Base64 => mac::decode_base64(encoded),
        }
        .ok_or_else(malformed)?;
        let (ts, signed_at_ms) = match &self.timestamp_header {
            Some(t) => {
                let name = t.name.as_str();
                let ts = header::text(&req.headers, name)?;
                (Some(ts), Some(header::seconds_to_ms(ts, name)?))
            }
            None => (None, None),
        };
        let parts = self.parts(&req.body, ts.unwrap_or(""));
        let matched = mac::find_match(self.algorithm, &self.keys, &parts, &[sig])
            .ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            signed_at_ms,
            replay_token: mac::replay_token(&matched, ts),
        })
    }

    /// The signature header (and timestamp header when configured).
    pub(crate) fn sign(&self, body: &[u8], now_ms: i64) -> SignedRequest {
        let ts = now_ms.div_euclid(1000).to_string();
        let parts = self.parts(body, &ts);
        let sig = self
            .keys
            .first()
            .and_then(|k| self.algorithm.mac(k.bytes(), &parts))
            .map(|m| match self.encoding {
                Encoding::Hex => mac::encode_hex(&m),
                Encoding::Base64 => mac::encode_base64(&m),
            })
            .unwrap_or_default();
        let mut headers = vec![(
            self.signature_header.configured.as_str(),
            format!("{}{sig}", self.prefix),
        )];
        if let Some(t) = &self.timestamp_header {
            headers.push((t.configured.as_str(), ts));
        }
        headers_only(headers)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::Verifier;
    use super::*;

    fn opts(header: &str) -> SchemeOptions {
        SchemeOptions {
            signature_header: Some(header.into()),
            ..Default::default()
        }
    }

    fn github_like() -> SchemeOptions {
        SchemeOptions {
            prefix: Some("sha256=".into()),
            ..opts("X-Hub-Signature-256")
        }
    }

    const GH_SECRET: &str = "It's a Secret to Everybody";
    const GH_BODY: &[u8] = b"Hello, World!";
    const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn problems(o: &SchemeOptions) -> Vec<Problem> {
        Verifier::new("hmac", vec![Secret::new("topsecretvalue")], o).unwrap_err()
    }

    #[test]
    fn github_vector_via_generic_sha256_hex() {
        let v = verifier_with("hmac", &[GH_SECRET], &github_like());
        let ok = v
            .verify(&req(&[("x-hub-signature-256", GH_SIG)], GH_BODY))
            .unwrap();
        assert_eq!(ok.signed_at_ms, None);
    }

    #[test]
    fn sha1_vectors_via_generic() {
        let o = SchemeOptions {
            algorithm: Some("SHA1".into()),
            prefix: Some("sha1=".into()),
            ..opts("X-Hub-Signature")
        };
        let v = verifier_with("hmac", &[GH_SECRET], &o);
        let r = req(
            &[(
                "X-Hub-Signature",
                "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
            )],
            GH_BODY,
        );
        assert!(v.verify(&r).is_ok());
        // Intercom (self-generated vector)
        let v = verifier_with("hmac", &["intercom_client_secret"], &o);
        let body = br#"{"type":"notification_event","id":"notif_1","topic":"conversation.user.created","data":{"item":{"type":"conversation","id":"1"}},"created_at":1700000000}"#;
        let r = req(
            &[(
                "X-Hub-Signature",
                "sha1=04d2668d4f4783597a6d33e99b6fa099ec7dbca9",
            )],
            body,
        );
        assert!(v.verify(&r).is_ok());
    }

    #[test]
    fn base64_vector_via_generic() {
        let o = SchemeOptions {
            encoding: Some("base64".into()),
            ..opts("X-Shopify-Hmac-Sha256")
        };
        let v = verifier_with("hmac", &["shpss_test_secret"], &o);
        let r = req(
            &[(
                "X-Shopify-Hmac-Sha256",
                "LnwdZPLBbdjkBwPD/lDL1/rYEGby/GHPtL1aAH6Dxjc=",
            )],
            br#"{"id":820982911946154508,"email":"jon@example.com"}"#,
        );
        assert!(v.verify(&r).is_ok());
    }

    #[test]
    fn timestamped_template_matches_zoom_vector_in_ms() {
        let o = SchemeOptions {
            prefix: Some("v0=".into()),
            timestamp_header: Some("x-zm-request-timestamp".into()),
            signed_payload: Some("v0:{timestamp}:{body}".into()),
            ..opts("x-zm-signature")
        };
        let v = verifier_with("hmac", &["zoom_secret_token"], &o);
        let body = br#"{"event":"meeting.started","event_ts":1700000000000,"payload":{"account_id":"AAA","object":{"id":"85012345678","uuid":"abc=="}}}"#;
        let r = req(
            &[
                ("x-zm-request-timestamp", "1700000000"),
                (
                    "x-zm-signature",
                    "v0=64c10ac8be79d586883511a6c191ed828749e74ae8a03f3f1a86aca63cd4d605",
                ),
            ],
            body,
        );
        let ok = v.verify(&r).unwrap();
        assert_eq!(ok.signed_at_ms, Some(1_700_000_000_000));
        assert_eq!(
            v.verify(&with_header(&r, "x-zm-request-timestamp", "1700000001")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            v.verify(&without(&r, "x-zm-request-timestamp")),
            Err(VerifyError::MissingHeader("x-zm-request-timestamp".into()))
        );
        assert_garbage_refused(&v, &r, "x-zm-request-timestamp");
        assert_garbage_refused(&v, &r, "x-zm-signature");
    }

    #[test]
    fn tampered_wrong_secret_missing_rotation() {
        let v = verifier_with("hmac", &[GH_SECRET], &github_like());
        let r = req(&[("x-hub-signature-256", GH_SIG)], GH_BODY);
        assert_eq!(
            v.verify(&with_body(&r, b"Hello")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verifier_with("hmac", &["x"], &github_like()).verify(&r),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            v.verify(&without(&r, "x-hub-signature-256")),
            Err(VerifyError::MissingHeader("x-hub-signature-256".into()))
        );
        assert!(verifier_with("hmac", &["x", GH_SECRET], &github_like())
            .verify(&r)
            .is_ok());
        let no_prefix = with_header(
            &r,
            "x-hub-signature-256",
            GH_SIG.trim_start_matches("sha256="),
        );
        assert_eq!(
            v.verify(&no_prefix),
            Err(VerifyError::Malformed("x-hub-signature-256".into()))
        );
        assert_garbage_refused(&v, &r, "x-hub-signature-256");
    }

    #[test]
    fn sign_round_trips_in_every_shape() {
        for (alg, enc) in [
            ("sha1", "hex"),
            ("sha256", "base64"),
            ("sha512", "hex"),
            ("sha512", "base64"),
        ] {
            let o = SchemeOptions {
                algorithm: Some(alg.into()),
                encoding: Some(enc.into()),
                prefix: Some("sig=".into()),
                timestamp_header: Some("X-Ts".into()),
                signed_payload: Some("{timestamp}.{body}".into()),
                ..opts("X-Sig")
            };
            let v = verifier_with("hmac", &["k1", "k2"], &o);
            let s = v.sign(b"payload", "text/plain", 1_700_000_000_123, "id");
            assert_eq!(s.headers[0].0, "X-Sig");
            assert!(s.headers[0].1.starts_with("sig="));
            assert_eq!(s.headers[1], ("X-Ts".to_string(), "1700000000".to_string()));
            let ok = v.verify(&from_signed(&s, &[], b"payload")).unwrap();
            assert_eq!(ok.signed_at_ms, Some(1_700_000_000_000), "{alg} {enc}");
        }
    }

    #[test]
    fn template_parsing() {
        assert_eq!(parse_template("{body}").unwrap(), vec![Part::Body]);
        assert_eq!(
            parse_template("v0:{timestamp}:{body}").unwrap(),
            vec![
                Part::Literal("v0:".into()),
                Part::Timestamp,
                Part::Literal(":".into()),
                Part::Body
            ]
        );
        assert!(parse_template("{id}.{body}").is_err());
        assert!(parse_template("{body").is_err());
        assert!(parse_template("body}").is_err());
    }

    #[test]
    fn config_problems() {
        let key_of =
            |o: &SchemeOptions| -> Vec<String> { problems(o).into_iter().map(|p| p.key).collect() };
        assert_eq!(key_of(&SchemeOptions::default()), vec!["signature_header"]);
        assert_eq!(key_of(&opts("bad header")), vec!["signature_header"]);
        assert_eq!(
            key_of(&SchemeOptions {
                algorithm: Some("md5".into()),
                ..opts("x-s")
            }),
            vec!["algorithm"]
        );
        assert_eq!(
            key_of(&SchemeOptions {
                encoding: Some("base32".into()),
                ..opts("x-s")
            }),
            vec!["encoding"]
        );
        assert_eq!(
            key_of(&SchemeOptions {
                signed_payload: Some("{timestamp}.{body}".into()),
                ..opts("x-s")
            }),
            vec!["signed_payload"]
        );
        assert_eq!(
            key_of(&SchemeOptions {
                timestamp_header: Some("x-ts".into()),
                ..opts("x-s")
            }),
            vec!["timestamp_header"]
        );
        assert_eq!(
            key_of(&SchemeOptions {
                signed_payload: Some("{timestamp}".into()),
                timestamp_header: Some("x-ts".into()),
                ..opts("x-s")
            }),
            vec!["signed_payload"]
        );
        assert_eq!(
            key_of(&SchemeOptions {
                signed_payload: Some("{body}{body}".into()),
                ..opts("x-s")
            }),
            vec!["signed_payload"]
        );
        assert_eq!(
            key_of(&SchemeOptions {
                signed_payload: Some("{id}.{body}".into()),
                ..opts("x-s")
            }),
            vec!["signed_payload"]
        );
        assert_eq!(
            key_of(&SchemeOptions {
                signed_payload: Some("{timestamp}{body}".into()),
                timestamp_header: Some("X-S".into()),
                ..opts("x-s")
            }),
            vec!["timestamp_header"]
        );
        let all = SchemeOptions {
            signature_header: None,
            algorithm: Some("md5".into()),
            encoding: Some("b32".into()),
            signed_payload: Some("{timestamp}".into()),
            public_url: Some("https://e.com".into()),
            ..Default::default()
        };
        let ps = Verifier::new("hmac", vec![], &all).unwrap_err();
        let keys: Vec<&str> = ps.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "secrets",
                "public_url",
                "signature_header",
                "algorithm",
                "encoding",
                "signed_payload",
                "signed_payload"
            ]
        );
        for p in problems(&SchemeOptions {
            algorithm: Some("md5".into()),
            ..Default::default()
        }) {
            assert!(!p.message.contains("topsecretvalue"));
        }
    }
}
