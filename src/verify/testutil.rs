//! Test helpers shared by the scheme tests: request builders and the
//! garbage-header sweep. Compiled only for tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{SchemeOptions, SignedRequest, UnverifiedRequest, Verifier};
use crate::secret::Secret;

/// A verifier that must build.
pub(crate) fn verifier(provider: &str, secrets: &[&str]) -> Verifier {
    verifier_with(provider, secrets, &SchemeOptions::default())
}

/// A verifier with options that must build.
pub(crate) fn verifier_with(provider: &str, secrets: &[&str], options: &SchemeOptions) -> Verifier {
    let secrets = secrets.iter().map(|s| Secret::new(*s)).collect();
    match Verifier::new(provider, secrets, options) {
        Ok(v) => v,
        Err(p) => panic!("config problems: {p:?}"),
    }
}

/// A request with text headers.
pub(crate) fn req(headers: &[(&str, &str)], body: &[u8]) -> UnverifiedRequest {
    req_at("/hook", headers, body)
}

/// A request with text headers and a given path and query.
pub(crate) fn req_at(path: &str, headers: &[(&str, &str)], body: &[u8]) -> UnverifiedRequest {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    UnverifiedRequest {
        headers: map,
        body: Bytes::copy_from_slice(body),
        path_and_query: path.to_string(),
    }
}

/// The request a provider would send, from [`Verifier::sign`].
pub(crate) fn from_signed(
    signed: &SignedRequest,
    extra: &[(&str, &str)],
    body: &[u8],
) -> UnverifiedRequest {
    let mut headers: Vec<(&str, &str)> = signed
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    headers.extend_from_slice(extra);
    let path = match &signed.query {
        Some(q) => format!("/hook?{q}"),
        None => "/hook".to_string(),
    };
    req_at(&path, &headers, body)
}

/// Values no header parser may panic on, and no verifier may accept.
pub(crate) fn garbage_values() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        b"\xff\xfe\x80".to_vec(),
        b"".to_vec(),
        b" ".to_vec(),
        b"t=abc".to_vec(),
        b"t=abc,v1=00".to_vec(),
        b"ts=abc;h1=00".to_vec(),
        b"=".to_vec(),
        b",,,;;;".to_vec(),
        b"v1=".to_vec(),
        b"v1,".to_vec(),
        b"v0=".to_vec(),
        b"sha256=".to_vec(),
        b"sha256=abc".to_vec(),
        b"abc".to_vec(),
        b"t=1,v1=zz".to_vec(),
        b"t=99999999999999999999999,v1=00".to_vec(),
        b"\xc3\xa9t\xc3\xa9".to_vec(),
    ];
    v.push(vec![b'a'; 100_000]);
    v.push("t=1,v1=00".repeat(5_000).into_bytes());
    v.push("v1,AAAA ".repeat(5_000).into_bytes());
    v
}

/// Replaces (or adds) `name` in `base` with each garbage value and checks the
/// verifier refuses without panicking.
pub(crate) fn assert_garbage_refused(v: &Verifier, base: &UnverifiedRequest, name: &str) {
    for value in garbage_values() {
        let mut r = base.clone();
        r.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(&value).unwrap(),
        );
        assert!(
            v.verify(&r).is_err(),
            "{name}: garbage {:?} accepted",
            String::from_utf8_lossy(&value[..value.len().min(40)])
        );
    }
}

/// Removes a header from a request.
pub(crate) fn without(base: &UnverifiedRequest, name: &str) -> UnverifiedRequest {
    let mut r = base.clone();
    r.headers.remove(name);
    r
}

/// Same request, other body.
pub(crate) fn with_body(base: &UnverifiedRequest, body: &[u8]) -> UnverifiedRequest {
    let mut r = base.clone();
    r.body = Bytes::copy_from_slice(body);
    r
}

/// Same request, one header replaced.
pub(crate) fn with_header(base: &UnverifiedRequest, name: &str, value: &str) -> UnverifiedRequest {
    let mut r = base.clone();
    r.headers.insert(
        HeaderName::from_bytes(name.as_bytes()).unwrap(),
        HeaderValue::from_str(value).unwrap(),
    );
    r
}
