//! Every provider's verifier (and so every signature-header parser) on
//! arbitrary headers and bodies: it may refuse, it must never panic, and a
//! random input must never verify.
#![no_main]

use std::sync::OnceLock;

use hookgate::secret::Secret;
use hookgate::verify::{SchemeOptions, UnverifiedRequest, Verifier};
use libfuzzer_sys::fuzz_target;

/// Header names the schemes read, so the fuzzer reaches their parsers.
const NAMES: &[&str] = &[
    "stripe-signature",
    "x-hub-signature-256",
    "x-github-delivery",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "workos-signature",
    "x-gitlab-token",
    "x-twilio-signature",
    "paddle-signature",
    "linear-signature",
    "x-acme-signature",
    "x-acme-timestamp",
    "content-type",
];

fn verifiers() -> &'static Vec<Verifier> {
    static V: OnceLock<Vec<Verifier>> = OnceLock::new();
    V.get_or_init(|| {
        let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let mut out = Vec::new();
        for (provider, secret) in [
            ("stripe", "whsec_x"),
            ("github", "s"),
            ("standard", whsec),
            ("svix", whsec),
            ("slack", "s"),
            ("shopify", "s"),
            ("workos", "s"),
            ("gitlab", "tok"),
            ("gitlab", whsec),
            ("paddle", "s"),
            ("linear", "s"),
        ] {
            if let Ok(v) = Verifier::new(provider, vec![Secret::new(secret)], &SchemeOptions::default()) {
                out.push(v);
            }
        }
        let twilio = SchemeOptions {
            public_url: Some("https://example.com/hooks/twilio".into()),
            ..SchemeOptions::default()
        };
        if let Ok(v) = Verifier::new("twilio", vec![Secret::new("s")], &twilio) {
            out.push(v);
        }
        let hmac = SchemeOptions {
            signature_header: Some("X-Acme-Signature".into()),
            algorithm: Some("sha256".into()),
            encoding: Some("hex".into()),
            prefix: Some("sha256=".into()),
            timestamp_header: Some("X-Acme-Timestamp".into()),
            signed_payload: Some("{timestamp}.{body}".into()),
            public_url: None,
        };
        if let Ok(v) = Verifier::new("hmac", vec![Secret::new("s")], &hmac) {
            out.push(v);
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: repeated [name index][len][value bytes], then the body.
    let mut headers = http::HeaderMap::new();
    let mut rest = data;
    while rest.len() >= 2 && rest[0] < 0xf0 {
        let name = NAMES[rest[0] as usize % NAMES.len()];
        let len = (rest[1] as usize).min(rest.len() - 2);
        if let Ok(v) = http::HeaderValue::from_bytes(&rest[2..2 + len]) {
            headers.append(name, v);
        }
        rest = &rest[2 + len..];
    }
    let request = UnverifiedRequest {
        headers,
        body: bytes::Bytes::copy_from_slice(rest),
        path_and_query: "/hooks/x?bodySHA256=00".into(),
    };
    for v in verifiers() {
        let _ = v.verify(&request);
    }
});
