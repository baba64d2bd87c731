//! Shared MAC primitives: HMAC-SHA1/256/512 over a list of byte slices,
//! constant-time comparison, hex/base64 codecs, secret → key-bytes rules
//! (PROVIDERS.md §0.2) and the replay token.
//!
//! Every scheme goes through this file so that none of them re-implements a
//! MAC, a comparison or a decoder: one place to audit for constant-time
//! behaviour and for panics on hostile input.

use std::fmt;

use ::hmac::digest::KeyInit;
use ::hmac::{Hmac, Mac};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// Standard-alphabet base64 that encodes with padding and decodes with or
/// without it: providers always pad, but hand-copied `whsec_` secrets often
/// lose their trailing `=` (the Standard Webhooks Python lib appends `==`
/// before decoding for the same reason).
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The HMAC hash functions a scheme may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// HMAC-SHA1: Twilio, legacy GitHub/Intercom via the generic scheme.
    Sha1,
    /// HMAC-SHA256: nearly everyone.
    Sha256,
    /// HMAC-SHA512: offered by the generic scheme for in-house senders.
    Sha512,
}

impl Algorithm {
    /// Parses a configured algorithm name (`sha1`, `sha256`, `sha512`,
    /// case-insensitive); `None` for anything else so config load can refuse it.
    pub(crate) fn parse(name: &str) -> Option<Algorithm> {
        match name.trim().to_ascii_lowercase().as_str() {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// HMAC of the concatenation of `parts` (fed piecewise, so a large body is
    /// never copied). `None` only if the MAC refused the key, which HMAC never
    /// does; callers treat `None` as "no match", never as success.
    pub(crate) fn mac(self, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
            let mut m = <M as Mac>::new_from_slice(key).ok()?;
            for p in parts {
                m.update(p);
            }
            Some(m.finalize().into_bytes().to_vec())
        }
        match self {
            Algorithm::Sha1 => run::<Hmac<Sha1>>(key, parts),
            Algorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
            Algorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }
}

/// Key bytes derived from a [`Secret`]. Redacted in `Debug` so a [`Verifier`]
/// can be logged; the bytes never leave this module except into a MAC or a
/// constant-time comparison.
///
/// [`Verifier`]: super::Verifier
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

impl Key {
    /// The secret string's UTF-8 bytes, as is: Stripe (prefix included),
    /// GitHub, Slack, Shopify, WorkOS, Twilio, Paddle, Linear, GitLab tokens,
    /// and the generic scheme.
    pub(crate) fn utf8(secret: &Secret) -> Key {
        Key(secret.expose().as_bytes().to_vec())
    }

    /// Standard Webhooks / Svix / GitLab signing tokens: strip an optional
    /// `whsec_` prefix, then base64-decode (padding optional). The error text
    /// never includes the secret.
    pub(crate) fn whsec(secret: &Secret) -> Result<Key, String> {
        let text = secret.expose().trim();
        let b64 = text.strip_prefix("whsec_").unwrap_or(text);
        match B64.decode(b64.as_bytes()) {
            Ok(bytes) if !bytes.is_empty() => Ok(Key(bytes)),
            Ok(_) => Err("decodes to an empty key (expected `whsec_` + base64)".to_string()),
            Err(_) => Err("is not valid base64 after the `whsec_` prefix".to_string()),
        }
    }

    /// The raw key bytes, for a MAC or a constant-time token comparison.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The proof for a scheme that signs the body alone with HMAC-SHA256 and no
/// timestamp (GitHub, Shopify): `sig` must match the body under any key.
pub(crate) fn verify_body_sha256(
    keys: &[Key],
    body: &[u8],
    sig: Vec<u8>,
) -> Result<super::Verified, super::VerifyError> {
    let matched =
        find_match(Algorithm::Sha256, keys, &[body], &[sig]).ok_or(super::VerifyError::Mismatch)?;
    Ok(super::Verified {
        signed_at_ms: None,
        replay_token: replay_token(&matched, None),
    })
}

/// The MAC of `parts` with the first key: what a provider sends, for `sign`.
pub(crate) fn sign_first(algorithm: Algorithm, keys: &[Key], parts: &[&[u8]]) -> Option<Vec<u8>> {
    keys.first().and_then(|k| algorithm.mac(k.bytes(), parts))
}

/// Constant-time equality; slices of different lengths are simply unequal
/// (that reveals only the length, which is public for every MAC).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// Tries every key against every candidate signature; returns the matching MAC
/// (the canonical bytes, used for the replay token) or `None`.
///
/// Each key's MAC is computed once, then compared in constant time with each
/// candidate. Returning early on a match only reveals *that* a match exists,
/// which the caller reveals anyway.
pub(crate) fn find_match(
    alg: Algorithm,
    keys: &[Key],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Option<Vec<u8>> {
    if candidates.is_empty() {
        return None;
    }
    for key in keys {
        let Some(expected) = alg.mac(key.bytes(), parts) else {
            continue;
        };
        if candidates.iter().any(|c| ct_eq(&expected, c)) {
            return Some(expected);
        }
    }
    None
}

/// Decodes hex (either case). `None` for empty, odd-length or non-hex input:
/// an undecodable signature never matches.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() {
        return None;
    }
    hex::decode(text).ok()
}

/// Decodes standard base64, padding optional. `None` for empty or invalid input.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() {
        return None;
    }
    B64.decode(text.as_bytes()).ok().filter(|b| !b.is_empty())
}

/// Lowercase hex, as every hex-signing provider sends it.
pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Padded standard base64, as Shopify, Twilio and Standard Webhooks send it.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The replay token: SHA-256(matched MAC ‖ timestamp text).
///
/// The MAC is taken as canonical bytes (the decoded signature, which equals
/// the computed MAC) rather than the header text: hex case and base64 padding
/// are malleable, and a replayer must not be able to mint a fresh token by
/// re-spelling a captured signature. Every scheme's MAC already covers its
/// timestamp; the text is appended as the contract asks, which also keeps
/// tokens distinct should two schemes ever share a MAC.
pub(crate) fn replay_token(mac: &[u8], timestamp: Option<&str>) -> [u8; 32] {
    sha256(&[mac, timestamp.unwrap_or("").as_bytes()])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn github_published_vector_via_primitive() {
        let mac = Algorithm::Sha256
            .mac(b"It's a Secret to Everybody", &[b"Hello, ", b"World!"])
            .unwrap();
        assert_eq!(
            encode_hex(&mac),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let sha1 = Algorithm::Sha1
            .mac(b"It's a Secret to Everybody", &[b"Hello, World!"])
            .unwrap();
        assert_eq!(
            encode_hex(&sha1),
            "01dc10d0c83e72ed246219cdd91669667fe2ca59"
        );
        assert_eq!(
            Algorithm::Sha512.mac(b"k", &[b"x"]).unwrap().len(),
            64,
            "sha512 gives 64 bytes"
        );
    }

    #[test]
    fn decoders_refuse_garbage_without_panicking() {
        assert_eq!(decode_hex(""), None);
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("AbCd"), Some(vec![0xab, 0xcd]));
        assert_eq!(decode_base64(""), None);
        assert_eq!(decode_base64("!!!"), None);
        assert_eq!(decode_base64("YQ"), Some(b"a".to_vec()));
        assert_eq!(decode_base64("YQ=="), Some(b"a".to_vec()));
    }

    #[test]
    fn ct_eq_handles_length_mismatch() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
    }

    #[test]
    fn whsec_keys_decode_with_or_without_padding_and_never_echo() {
        let padded = Key::whsec(&Secret::new("whsec_YWJjZA==")).unwrap();
        let bare = Key::whsec(&Secret::new("whsec_YWJjZA")).unwrap();
        assert_eq!(padded.bytes(), b"abcd");
        assert_eq!(padded, bare);
        let err = Key::whsec(&Secret::new("whsec_not*base64")).unwrap_err();
        assert!(!err.contains("not*base64"));
        assert!(Key::whsec(&Secret::new("whsec_")).is_err());
        assert_eq!(format!("{padded:?}"), "Key(***)");
    }

    #[test]
    fn find_match_needs_a_candidate() {
        let keys = [Key::utf8(&Secret::new("k"))];
        assert_eq!(find_match(Algorithm::Sha256, &keys, &[b"x"], &[]), None);
        assert_eq!(
            find_match(Algorithm::Sha256, &keys, &[b"x"], &[Vec::new()]),
            None
        );
        let mac = Algorithm::Sha256.mac(b"k", &[b"x"]).unwrap();
        assert_eq!(
            find_match(Algorithm::Sha256, &keys, &[b"x"], &[vec![1], mac.clone()]),
            Some(mac)
        );
    }
}
