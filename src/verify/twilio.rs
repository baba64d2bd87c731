//! Twilio: `X-Twilio-Signature: <base64>`, HMAC-SHA1 keyed with the auth
//! token over the public URL plus, for form posts, the sorted parameters.
//!
//! Byte-exact rule (PROVIDERS.md §2.8, twilio-python `RequestValidator`):
//! - The signed URL is the URL Twilio requested: the configured `public_url`
//!   (scheme, host, path; the gateway's own path may differ behind a proxy)
//!   followed by `?` and the request's query string as received, if any.
//! - Form posts (`application/x-www-form-urlencoded`): append, for each
//!   parameter name in byte order, `name ‖ value` once per *distinct* value,
//!   values sorted — no delimiters.
//! - JSON (or any non-form) posts: Twilio adds `bodySHA256=<hex sha256(body)>`
//!   to the query; the signature covers the URL only, so `sha256(body)` must
//!   also equal that value.
//! - Port quirk: the SDKs accept the signature computed over the URL with and
//!   without the port (`https://host:443/…` vs `https://host/…`), because
//!   Twilio's back end is inconsistent; both spellings are tried here too.
//!
//! A non-form body without `bodySHA256` is refused: nothing would cover it.
//! The SharedKey/HMAC-SHA256 beta (`X-Twilio-Webhooks-Signature-Settings`)
//! is not supported; such requests fail as a mismatch, never pass.

use super::header;
use super::mac::{self, Algorithm, Key};
use super::{Problem, SignedRequest, UnverifiedRequest, Verified, VerifyError};
use crate::secret::Secret;

/// The signature header, lowercase.
const HEADER: &str = "x-twilio-signature";
/// Query parameter carrying the body hash in JSON mode.
const BODY_HASH: &str = "bodySHA256";
/// Form bodies are parsed only under this media type.
const FORM: &str = "application/x-www-form-urlencoded";

/// Twilio's scheme: auth tokens and the public URL in both port spellings.
#[derive(Debug, Clone)]
pub(crate) struct Twilio {
    keys: Vec<Key>,
    /// The URL exactly as configured (what `sign` uses).
    public_url: String,
    /// `public_url` without and with an explicit port (two distinct strings).
    variants: [String; 2],
}

/// The URL split so a port can be added or removed without re-serialising
/// (and so without normalising) anything else.
fn port_variants(url: &str) -> Option<[String; 2]> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let (userinfo, host_port) = authority.split_at(host_start);
    // An IPv6 literal's colons are inside brackets; the port follows `]`.
    let search_from = host_port.rfind(']').map_or(0, |i| i + 1);
    let (host, port) = match host_port[search_from..].rfind(':') {
        Some(i) => host_port.split_at(search_from + i),
        None => (host_port, ""),
    };
    if host.is_empty() {
        return None;
    }
    let port = port.strip_prefix(':').unwrap_or(port);
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let without = format!("{scheme}://{userinfo}{host}{tail}");
    let with = if port.is_empty() {
        format!("{scheme}://{userinfo}{host}:{default_port}{tail}")
    } else {
        format!("{scheme}://{userinfo}{host}:{port}{tail}")
    };
    Some([without, with])
}

/// Checks `public_url`: an absolute http(s) URL with a host and no query or
/// fragment (the request's own query is appended at verification time).
fn check_public_url(url: &str) -> Result<[String; 2], String> {
    if url.trim() != url || url.is_empty() {
        return Err("must be a non-empty absolute url without surrounding whitespace".into());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a valid url ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https url".into());
    }
    if !matches!(parsed.host_str(), Some(h) if !h.is_empty()) {
        return Err("must include a host".into());
    }
    if url.contains('?') || url.contains('#') {
        return Err(
            "must not contain a query or fragment; the request's query string is appended".into(),
        );
    }
    port_variants(url).ok_or_else(|| "is not a valid url".to_string())
}

/// `name ‖ value` for each distinct pair, names in byte order and values
/// sorted per name, as twilio-python (`sorted(set(...))`) and twilio-node do.
fn sorted_params(form: &[u8]) -> Vec<u8> {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(form)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Whether a `Content-Type` value names the form media type (parameters
/// such as `; charset=utf-8` allowed).
fn is_form(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(FORM))
}

impl Twilio {
    /// Keys are the auth tokens' UTF-8 bytes; `public_url` is required.
    pub(crate) fn new(
        secrets: &[Secret],
        public_url: Option<&str>,
        problems: &mut Vec<Problem>,
    ) -> Option<Twilio> {
        let Some(url) = public_url else {
            problems.push(Problem::new(
                "public_url",
                "is required for provider = \"twilio\": twilio signs the full url it calls",
            ));
            return None;
        };
        match check_public_url(url) {
            Ok(variants) => Some(Twilio {
                keys: secrets.iter().map(Key::utf8).collect(),
                public_url: url.to_string(),
                variants,
            }),
            Err(message) => {
                problems.push(Problem::new("public_url", message));
                None
            }
        }
    }

    /// Rebuilds the signed string(s) and checks the signature (and, in JSON
    /// mode, the body hash).
    pub(crate) fn verify(&self, req: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let value = header::text(&req.headers, HEADER)?;
        let sig =
            mac::decode_base64(value).ok_or_else(|| VerifyError::Malformed(HEADER.to_string()))?;
        let query = req
            .path_and_query
            .split_once('?')
            .map(|(_, q)| q)
            .filter(|q| !q.is_empty());
        let body_hash = query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == BODY_HASH)
                .map(|(_, v)| v.into_owned())
        });
        let params = match &body_hash {
            Some(_) => Vec::new(),
            None if req.body.is_empty() => Vec::new(),
            None => {
                let ct = header::text(&req.headers, "content-type")?;
                if !is_form(ct) {
                    return Err(VerifyError::Malformed("content-type".to_string()));
                }
                sorted_params(&req.body)
            }
        };
        let candidates = [sig];
        let matched = self
            .variants
            .iter()
            .find_map(|base| {
                let (q_mark, q) = match query {
                    Some(q) => ("?", q),
                    None => ("", ""),
                };
                let parts: [&[u8]; 4] = [base.as_bytes(), q_mark.as_bytes(), q.as_bytes(), &params];
                mac::find_match(Algorithm::Sha1, &self.keys, &parts, &candidates)
            })
            .ok_or(VerifyError::Mismatch)?;
        if let Some(h) = body_hash {
            let expected = mac::decode_hex(&h).ok_or(VerifyError::Mismatch)?;
            if !mac::ct_eq(&mac::sha256(&[&req.body]), &expected) {
                return Err(VerifyError::Mismatch);
            }
        }
        Ok(Verified {
            signed_at_ms: None,
            replay_token: mac::replay_token(&matched, None),
        })
    }

    /// As Twilio would send it to `public_url`: form bodies signed with their
    /// sorted parameters; any other body gets `bodySHA256=<hex>` as the query
    /// and a signature over the URL with that query. Plus
    /// `I-Twilio-Idempotency-Token: id`.
    pub(crate) fn sign(&self, body: &[u8], content_type: &str, id: &str) -> SignedRequest {
        let (url, params, query) = if is_form(content_type) {
            (self.public_url.clone(), sorted_params(body), None)
        } else {
            let q = format!("{BODY_HASH}={}", mac::encode_hex(&mac::sha256(&[body])));
            (format!("{}?{q}", self.public_url), Vec::new(), Some(q))
        };
        let sig = mac::sign_first(Algorithm::Sha1, &self.keys, &[url.as_bytes(), &params])
            .map(|m| mac::encode_base64(&m))
            .unwrap_or_default();
        SignedRequest {
            headers: vec![
                ("X-Twilio-Signature".to_string(), sig),
                ("I-Twilio-Idempotency-Token".to_string(), id.to_string()),
            ],
            query,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::{SchemeOptions, Verifier};
    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php";
    const PATH: &str = "/myapp.php?foo=1&bar=2";
    const FORM_BODY: &[u8] = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    const FORM_SIG: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const MULTI_BODY: &[u8] = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
    const MULTI_SIG: &str = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";
    const JSON_BODY: &[u8] = br#"{"property": "value", "boolean": true}"#;
    const JSON_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    const JSON_SIG: &str = "a9nBmqA0ju/hNViExpshrM61xv4=";

    fn twilio(url: &str, tokens: &[&str]) -> Verifier {
        verifier_with(
            "twilio",
            tokens,
            &SchemeOptions {
                public_url: Some(url.to_string()),
                ..Default::default()
            },
        )
    }

    fn form(sig: &str, body: &[u8]) -> UnverifiedRequest {
        req_at(
            PATH,
            &[
                ("X-Twilio-Signature", sig),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body,
        )
    }

    fn json() -> UnverifiedRequest {
        req_at(
            &format!("/hooks/twilio?foo=1&bar=2&bodySHA256={JSON_HASH}"),
            &[
                ("X-Twilio-Signature", JSON_SIG),
                ("Content-Type", "application/json"),
            ],
            JSON_BODY,
        )
    }

    #[test]
    fn published_form_vector() {
        let ok = twilio(URL, &[TOKEN])
            .verify(&form(FORM_SIG, FORM_BODY))
            .unwrap();
        assert_eq!(ok.signed_at_ms, None);
        let charset = with_header(
            &form(FORM_SIG, FORM_BODY),
            "content-type",
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        );
        assert!(twilio(URL, &[TOKEN]).verify(&charset).is_ok());
    }

    #[test]
    fn published_multi_value_vector_and_duplicate_values() {
        let v = twilio(URL, &[TOKEN]);
        assert!(v.verify(&form(MULTI_SIG, MULTI_BODY)).is_ok());
        let dup = b"Digits=1234&Sid=CA123&Digits=5678&SidAccount=AC123&Digits=1234";
        assert!(
            v.verify(&form(MULTI_SIG, dup)).is_ok(),
            "identical values count once"
        );
    }

    #[test]
    fn published_json_vector() {
        let v = twilio(URL, &[TOKEN]);
        assert!(v.verify(&json()).is_ok());
        assert_eq!(
            v.verify(&with_body(
                &json(),
                br#"{"property": "value", "boolean": false}"#
            )),
            Err(VerifyError::Mismatch),
            "body hash must match"
        );
        let wrong_hash = req_at(
            &format!("/x?foo=1&bar=2&bodySHA256={}", "0".repeat(64)),
            &[("X-Twilio-Signature", JSON_SIG)],
            JSON_BODY,
        );
        assert_eq!(v.verify(&wrong_hash), Err(VerifyError::Mismatch));
    }

    #[test]
    fn port_variants_verify_against_url_without_port() {
        let r = form("kvajT1Ptam85bY51eRf/AJRuM3w=", FORM_BODY);
        assert!(twilio(URL, &[TOKEN]).verify(&r).is_ok(), "https :443");
        let r = form("0ZXoZLH/DfblKGATFgpif+LLRf4=", FORM_BODY);
        assert!(
            twilio("http://mycompany.com/myapp.php", &[TOKEN])
                .verify(&r)
                .is_ok(),
            "http :80"
        );
        let r = form("Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", FORM_BODY);
        assert!(
            twilio("http://mycompany.com:1234/myapp.php", &[TOKEN])
                .verify(&r)
                .is_ok(),
            "http :1234"
        );
        // Configured with :443, the portless signature still verifies.
        let r = form(FORM_SIG, FORM_BODY);
        assert!(twilio("https://mycompany.com:443/myapp.php", &[TOKEN])
            .verify(&r)
            .is_ok());
        // A non-default port is not interchangeable with the default one.
        let r = form("Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", FORM_BODY);
        assert_eq!(
            twilio("http://mycompany.com/myapp.php", &[TOKEN]).verify(&r),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn port_variant_strings() {
        assert_eq!(
            port_variants("https://h/p").unwrap(),
            ["https://h/p".to_string(), "https://h:443/p".to_string()]
        );
        assert_eq!(
            port_variants("http://u@[::1]:8080/p").unwrap(),
            [
                "http://u@[::1]/p".to_string(),
                "http://u@[::1]:8080/p".to_string()
            ]
        );
        assert_eq!(
            port_variants("http://[::1]").unwrap(),
            ["http://[::1]".to_string(), "http://[::1]:80".to_string()]
        );
    }

    #[test]
    fn tampered_wrong_secret_missing() {
        let v = twilio(URL, &[TOKEN]);
        let tampered = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1235&From=%2B14158675309&To=%2B18005551212";
        assert_eq!(
            v.verify(&form(FORM_SIG, tampered)),
            Err(VerifyError::Mismatch)
        );
        let other_query = req_at(
            "/myapp.php?foo=1&bar=3",
            &[("X-Twilio-Signature", FORM_SIG), ("Content-Type", FORM)],
            FORM_BODY,
        );
        assert_eq!(v.verify(&other_query), Err(VerifyError::Mismatch));
        assert_eq!(
            twilio(URL, &["54321"]).verify(&form(FORM_SIG, FORM_BODY)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            twilio("https://other.example/myapp.php", &[TOKEN]).verify(&form(FORM_SIG, FORM_BODY)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            v.verify(&without(&form(FORM_SIG, FORM_BODY), HEADER)),
            Err(VerifyError::MissingHeader(HEADER.into()))
        );
    }

    #[test]
    fn non_form_body_without_hash_is_refused() {
        let v = twilio(URL, &[TOKEN]);
        let r = with_header(
            &form(FORM_SIG, FORM_BODY),
            "content-type",
            "application/json",
        );
        assert_eq!(
            v.verify(&r),
            Err(VerifyError::Malformed("content-type".into()))
        );
        let r = without(&form(FORM_SIG, FORM_BODY), "content-type");
        assert_eq!(
            v.verify(&r),
            Err(VerifyError::MissingHeader("content-type".into()))
        );
    }

    #[test]
    fn empty_body_signs_the_url_alone() {
        let v = twilio(URL, &[TOKEN]);
        let mac = Algorithm::Sha1
            .mac(
                TOKEN.as_bytes(),
                &[b"https://mycompany.com/myapp.php?foo=1&bar=2"],
            )
            .unwrap();
        let sig = mac::encode_base64(&mac);
        let r = req_at(PATH, &[("X-Twilio-Signature", &sig)], b"");
        assert!(v.verify(&r).is_ok());
        assert_eq!(
            v.verify(&with_body(&r, b"Digits=1")),
            Err(VerifyError::MissingHeader("content-type".into()))
        );
    }

    #[test]
    fn rotation_passes() {
        let v = twilio(URL, &["old-token", TOKEN]);
        assert!(v.verify(&form(FORM_SIG, FORM_BODY)).is_ok());
        assert!(v.verify(&json()).is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        let v = twilio(URL, &[TOKEN]);
        assert_garbage_refused(&v, &form(FORM_SIG, FORM_BODY), HEADER);
        assert_garbage_refused(&v, &json(), HEADER);
        let weird_query = req_at(
            "/x?bodySHA256=zz&%ff%fe=%00",
            &[("X-Twilio-Signature", JSON_SIG)],
            JSON_BODY,
        );
        assert!(v.verify(&weird_query).is_err());
        let weird_form = form(FORM_SIG, b"%zz=%ff&&==&a");
        assert!(v.verify(&weird_form).is_err());
    }

    #[test]
    fn sign_round_trips_form_and_json() {
        let v = twilio(URL, &[TOKEN]);
        let s = v.sign(MULTI_BODY, "application/x-www-form-urlencoded", 0, "idem");
        assert_eq!(s.query, None);
        assert!(s
            .headers
            .contains(&("I-Twilio-Idempotency-Token".into(), "idem".into())));
        assert!(v
            .verify(&from_signed(&s, &[("Content-Type", FORM)], MULTI_BODY))
            .is_ok());
        let s = v.sign(JSON_BODY, "application/json", 0, "idem");
        assert_eq!(
            s.query.as_deref(),
            Some(&*format!("bodySHA256={JSON_HASH}"))
        );
        assert!(v
            .verify(&from_signed(
                &s,
                &[("Content-Type", "application/json")],
                JSON_BODY
            ))
            .is_ok());
    }

    #[test]
    fn public_url_problems() {
        let bad = |url: Option<&str>| {
            let opts = SchemeOptions {
                public_url: url.map(str::to_string),
                ..Default::default()
            };
            let ps = Verifier::new("twilio", vec![Secret::new(TOKEN)], &opts).unwrap_err();
            assert_eq!(ps.len(), 1, "{url:?}: {ps:?}");
            assert_eq!(ps[0].key, "public_url");
            assert!(!ps[0].message.contains(TOKEN));
        };
        bad(None);
        bad(Some(""));
        bad(Some("not a url"));
        bad(Some("/relative/path"));
        bad(Some("ftp://mycompany.com/x"));
        bad(Some("https://mycompany.com/x?foo=1"));
        bad(Some("https://mycompany.com/x#frag"));
        bad(Some(" https://mycompany.com/x"));
        bad(Some("https://mycompany.com:99999/x"));
    }
}
