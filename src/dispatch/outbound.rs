//! The outbound request to an internal app (DESIGN.md "Delivery contract").
//!
//! The original body byte for byte with its `Content-Type`, Standard Webhooks
//! headers signed with the destination's `signing_secret`, and the
//! `hookgate-*` headers. One pooled `reqwest` client per destination.

use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use sha2::Sha256;

use super::retry::{parse_retry_after, AttemptResult};
use crate::config::DestinationConfig;
use crate::store::StoredEvent;

/// Header names of the delivery contract, in one place.
pub mod headers {
    /// Gateway event id (stable across attempts: the app's dedupe key).
    pub const WEBHOOK_ID: &str = "webhook-id";
    /// Unix seconds of this attempt.
    pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
    /// `v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`.
    pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
    /// Source name.
    pub const SOURCE: &str = "hookgate-source";
    /// The provider's event id.
    pub const EVENT_ID: &str = "hookgate-event-id";
    /// The entity key.
    pub const ENTITY: &str = "hookgate-entity";
    /// Attempt number, from 1.
    pub const ATTEMPT: &str = "hookgate-attempt";
    /// Present (`true`) on an event that arrived after a newer one of its entity.
    pub const LATE: &str = "hookgate-late";
}

/// A destination's HTTP side.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    url: reqwest::Url,
    key: Option<Vec<u8>>,
}

impl Outbound {
    /// Builds the pooled client for a destination.
    pub fn new(dest: &DestinationConfig) -> Result<Outbound, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(dest.timeout)
            .connect_timeout(dest.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(dest.concurrency.get())
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let key = dest
            .signing_secret
            .as_ref()
            .map(|s| signing_key(s.expose()));
        Ok(Outbound {
            client,
            url: dest.url.clone(),
            key,
        })
    }

    /// Sends one attempt and reports what happened; never panics, never retries.
    pub async fn send(
        &self,
        event: &StoredEvent,
        attempt: u32,
        now_ms: i64,
        late: bool,
    ) -> (AttemptResult, Duration) {
        let started = Instant::now();
        let id = event.seq.to_event_id();
        let ts = (now_ms / 1000).to_string();
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put(headers::WEBHOOK_ID, &id);
        put(headers::WEBHOOK_TIMESTAMP, &ts);
        if let Some(key) = &self.key {
            put(
                headers::WEBHOOK_SIGNATURE,
                &sign(key, &id, &ts, &event.body),
            );
        }
        put(headers::SOURCE, &event.meta.source);
        if let Some(pid) = &event.meta.provider_event_id {
            put(headers::EVENT_ID, pid);
        }
        if let Some(entity) = &event.meta.entity {
            put(headers::ENTITY, entity);
        }
        put(headers::ATTEMPT, &attempt.to_string());
        if late {
            put(headers::LATE, "true");
        }
        if let Some(ct) = &event.meta.content_type {
            if let Ok(v) = HeaderValue::from_str(ct) {
                h.insert(CONTENT_TYPE, v);
            }
        }
        let result = self
            .client
            .post(self.url.clone())
            .headers(h)
            .body(event.body.clone())
            .send()
            .await;
        let outcome = match result {
            Ok(resp) => {
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                AttemptResult::Response {
                    status: resp.status().as_u16(),
                    retry_after,
                }
            }
            Err(e) if e.is_timeout() => AttemptResult::Failed("timeout".into()),
            Err(e) if e.is_connect() => AttemptResult::Failed("connection failed".into()),
            Err(_) => AttemptResult::Failed("request failed".into()),
        };
        (outcome, started.elapsed())
    }
}

/// Standard Webhooks key bytes: base64 after `whsec_`, else the raw text.
fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,` + base64(HMAC-SHA256(key, "{id}.{ts}.{body}")).
pub fn sign(key: &[u8], id: &str, ts: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error arm cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_published_standard_webhooks_vector() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
