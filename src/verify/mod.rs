//! Stage 2: verify. Turns an [`UnverifiedRequest`] into a [`Verified`] proof,
//! or refuses it.
//!
//! Invariants:
//! - Signatures are computed over the raw body bytes exactly as received.
//! - Every comparison of a signature or token uses `subtle` (constant time).
//! - A request passes only when at least one signature in it matches at least
//!   one configured secret; there is no "pass by default" path, and a
//!   misconfigured verifier is refused at config load, never at request time.
//! - Errors never carry a secret or an expected signature.
//!
//! One file per provider scheme; [`Verifier`] is the single entry point the
//! rest of the gateway sees.

// INTERFACE PLACEHOLDER: the helper that owns src/verify/ replaces this file.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;

use crate::field::FieldRef;
use crate::secret::Secret;

/// What ingress hands to verification: nothing in it is trusted yet.
#[derive(Debug, Clone)]
pub struct UnverifiedRequest {
    /// Request headers as received.
    pub headers: HeaderMap,
    /// The raw body, byte for byte.
    pub body: Bytes,
    /// Path and query as received (e.g. `/hooks/twilio?foo=1`); Twilio signs the URL.
    pub path_and_query: String,
}

/// Proof that a request was signed by a holder of one of the source's secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed timestamp in unix milliseconds, when the scheme signs one.
    pub signed_at_ms: Option<i64>,
    /// SHA-256 over the matched signature material; a stable key that lets the
    /// guard refuse a replayed capture even when the event id is not signed.
    pub replay_token: [u8; 32],
}

/// Why a request is not genuine. Messages are safe to return to the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header is present but not in the scheme's format.
    #[error("malformed {0}")]
    Malformed(String),
    /// Well-formed, but no signature matched any configured secret.
    #[error("no signature matched")]
    Mismatch,
}

/// A problem in a source's verification settings, found at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key relative to the source table, e.g. `secrets[0]` or `signature_header`.
    pub key: String,
    /// What is wrong, lowercase, no secret values.
    pub message: String,
}

/// Scheme settings beyond `provider` and `secrets` (mostly for `provider = "hmac"`).
#[derive(Debug, Clone, Default)]
pub struct SchemeOptions {
    /// `hmac`: header carrying the signature.
    pub signature_header: Option<String>,
    /// `hmac`: sha1 | sha256 | sha512.
    pub algorithm: Option<String>,
    /// `hmac`: hex | base64.
    pub encoding: Option<String>,
    /// `hmac`: text before the encoded signature, e.g. `sha256=`.
    pub prefix: Option<String>,
    /// `hmac`: header carrying a unix-seconds timestamp.
    pub timestamp_header: Option<String>,
    /// `hmac`: template of the signed bytes, default `{body}`.
    pub signed_payload: Option<String>,
    /// `twilio`: the public URL the provider calls.
    pub public_url: Option<String>,
}

/// A request as a provider would send it, for tests and `hookgate send`.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// Headers to add (signature, timestamp, id...).
    pub headers: Vec<(String, String)>,
    /// Query string to append to the path (Twilio's `bodySHA256`), without `?`.
    pub query: Option<String>,
}

/// A source's verifier: a provider scheme plus its secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    _secrets: Vec<Secret>,
}

impl Verifier {
    /// Builds the verifier, or every problem with the settings.
    pub fn new(
        provider: &str,
        secrets: Vec<Secret>,
        options: &SchemeOptions,
    ) -> Result<Verifier, Vec<Problem>> {
        let _ = (provider, options);
        Ok(Verifier { _secrets: secrets })
    }

    /// Checks the request; see the module invariants.
    pub fn verify(&self, request: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let _ = request;
        Err(VerifyError::Mismatch)
    }

    /// Freshness tolerance when the scheme signs a timestamp, else `None`.
    pub fn default_tolerance(&self) -> Option<Duration> {
        None
    }

    /// Where the provider puts its event id, when it has one.
    pub fn default_event_id(&self) -> Option<FieldRef> {
        None
    }

    /// Where the provider puts its event time, used to order events.
    pub fn default_order_by(&self) -> Option<FieldRef> {
        None
    }

    /// Signs `body` as the provider would (with the first secret), at `now_ms`,
    /// using `id` wherever the scheme carries an id header.
    pub fn sign(&self, body: &[u8], content_type: &str, now_ms: i64, id: &str) -> SignedRequest {
        let _ = (body, content_type, now_ms, id);
        SignedRequest {
            headers: vec![],
            query: None,
        }
    }
}
