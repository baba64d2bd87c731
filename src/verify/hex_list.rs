//! The shared shape of Stripe, Paddle and WorkOS: one header holding a
//! timestamp and one or more lowercase-hex HMAC-SHA256 signatures as `k=v`
//! items, signed over `{timestamp}{joiner}{raw body}` with the secret's UTF-8
//! bytes. The three differ only in the [`HexListFormat`] each file declares.

use super::header::{self, MAX_SIGNATURES};
use super::mac::{self, Algorithm, Key};
use super::{headers_only, SignedRequest, UnverifiedRequest, Verified, VerifyError};
use crate::secret::Secret;

/// How one provider lays out its header and signed bytes.
#[derive(Debug)]
pub(crate) struct HexListFormat {
    /// Header name, lowercase as `HeaderMap` stores it.
    pub(crate) header: &'static str,
    /// Header name as the provider spells it (for `sign`).
    pub(crate) wire_name: &'static str,
    /// Separator between items.
    pub(crate) sep: char,
    /// Separator `sign` writes (WorkOS adds a space).
    pub(crate) sign_sep: &'static str,
    /// Key of the timestamp item.
    pub(crate) ts_key: &'static str,
    /// Key of each signature item; other keys are ignored (no downgrade).
    pub(crate) sig_key: &'static str,
    /// Bytes between the timestamp and the body in the signed payload.
    pub(crate) joiner: &'static [u8],
    /// The timestamp is in milliseconds (else seconds).
    pub(crate) millis: bool,
}

/// A provider's format plus the source's keys.
#[derive(Debug, Clone)]
pub(crate) struct HexListScheme {
    keys: Vec<Key>,
    format: &'static HexListFormat,
}

impl HexListScheme {
    /// Keys are the secrets' UTF-8 bytes (none of these providers base64-decodes).
    pub(crate) fn new(secrets: &[Secret], format: &'static HexListFormat) -> HexListScheme {
        HexListScheme {
            keys: secrets.iter().map(Key::utf8).collect(),
            format,
        }
    }

    /// Checks every signature item against every secret.
    pub(crate) fn verify(&self, req: &UnverifiedRequest) -> Result<Verified, VerifyError> {
        let f = self.format;
        let value = header::text(&req.headers, f.header)?;
        let list = header::timestamped_list(value, f.sep, f.ts_key, f.sig_key, f.header)?;
        let signed_at_ms = if f.millis {
            header::millis(list.timestamp, f.header)?
        } else {
            header::seconds_to_ms(list.timestamp, f.header)?
        };
        let candidates: Vec<Vec<u8>> = list
            .signatures
            .iter()
            .take(MAX_SIGNATURES)
            .filter_map(|s| mac::decode_hex(s))
            .collect();
        let parts: [&[u8]; 3] = [list.timestamp.as_bytes(), f.joiner, &req.body];
        let matched = mac::find_match(Algorithm::Sha256, &self.keys, &parts, &candidates)
            .ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            signed_at_ms: Some(signed_at_ms),
            replay_token: mac::replay_token(&matched, Some(list.timestamp)),
        })
    }

    /// The header as the provider sends it, signed with the first secret.
    pub(crate) fn sign(&self, body: &[u8], now_ms: i64) -> SignedRequest {
        let f = self.format;
        let ts = if f.millis {
            now_ms.to_string()
        } else {
            now_ms.div_euclid(1000).to_string()
        };
        let sig = mac::sign_first(
            Algorithm::Sha256,
            &self.keys,
            &[ts.as_bytes(), f.joiner, body],
        )
        .map(|m| mac::encode_hex(&m))
        .unwrap_or_default();
        let value = format!("{}={ts}{}{}={sig}", f.ts_key, f.sign_sep, f.sig_key);
        headers_only(vec![(f.wire_name, value)])
    }
}
