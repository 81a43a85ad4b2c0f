//! Compact signed tokens for coupon, member-card and store QR codes, verifiable offline.
//!
//! Binary layout (all integers big-endian):
//! `version (1) = 1 | kind (1) | expires_at (4, unix seconds) | id (16) | payload length (1) | payload (0..=32) | Ed25519 signature (64)`
//! The signature covers every byte before it. Text form: `PL1` followed by RFC 4648 base32
//! without padding, upper case, so a QR code encodes it in the compact alphanumeric mode
//! (a token with no payload is 3 + 140 = 143 characters, with 32 payload bytes 3 + 191 = 194).
//! Kinds: 1 coupon, 2 member card, 3 store claim/join QR; others are carried opaquely.

use crate::error::CoreError;
use crate::sig;

pub const PREFIX: &str = "PL1";
pub const VERSION: u8 = 1;
pub const ID_BYTES: usize = 16;
pub const PAYLOAD_BYTES_MAX: usize = 32;
const HEADER_BYTES: usize = 1 + 1 + 4 + ID_BYTES + 1;
const SIGNATURE_BYTES: usize = 64;
/// The longest text a valid token can have (largest payload); longer input is refused unread.
pub const TEXT_CHARS_MAX: usize =
    PREFIX.len() + ((HEADER_BYTES + PAYLOAD_BYTES_MAX + SIGNATURE_BYTES) * 8).div_ceil(5);
pub const KIND_COUPON: u8 = 1;
pub const KIND_MEMBER_CARD: u8 = 2;
pub const KIND_STORE: u8 = 3;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: u8,
    pub expires_at: u32,
    pub id: [u8; ID_BYTES],
    pub payload: Vec<u8>,
}

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | byte as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base32_decode(text: &str) -> Result<Vec<u8>, CoreError> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for (i, c) in text.bytes().enumerate() {
        let value = ALPHABET.iter().position(|&a| a == c).ok_or_else(|| {
            CoreError::token(format!(
                "token is not base32 (A-Z, 2-7) at character {}",
                PREFIX.len() + i
            ))
        })?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    // Leftover bits must be zero padding of the last byte, or the text was altered or truncated.
    if bits >= 5 || buffer & ((1 << bits) - 1) != 0 {
        return Err(CoreError::token(
            "token is truncated or altered (bad base32 tail)",
        ));
    }
    Ok(out)
}

/// The text form of `token` signed with the key of `seed`; kind 0 is reserved.
pub fn sign(seed: &[u8], token: &Token) -> Result<String, CoreError> {
    if token.kind == 0 {
        return Err(CoreError::invalid(
            "token kind 0 is reserved (1 coupon, 2 member card, 3 store QR)",
        ));
    }
    if token.payload.len() > PAYLOAD_BYTES_MAX {
        return Err(CoreError::invalid(format!(
            "a token payload holds at most {PAYLOAD_BYTES_MAX} bytes"
        )));
    }
    let mut bytes = Vec::with_capacity(HEADER_BYTES + token.payload.len() + 64);
    bytes.push(VERSION);
    bytes.push(token.kind);
    bytes.extend_from_slice(&token.expires_at.to_be_bytes());
    bytes.extend_from_slice(&token.id);
    bytes.push(token.payload.len() as u8);
    bytes.extend_from_slice(&token.payload);
    let signature = sig::sign(seed, &bytes)?;
    bytes.extend_from_slice(&signature);
    Ok(format!("{PREFIX}{}", base32_encode(&bytes)))
}

/// Check the token against `public_key` at time `now` (unix seconds); the clock is the caller's.
/// Every refusal is a `CoreError::Token`, checked in this order: prefix, length, base32,
/// truncation, version, length against the header, signature, kind, expiry.
pub fn verify(public_key: &[u8], text: &str, now: i64) -> Result<Token, CoreError> {
    let encoded = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| CoreError::token(format!("token must start with {PREFIX}")))?;
    if text.len() > TEXT_CHARS_MAX {
        return Err(CoreError::token(format!(
            "token is longer than {TEXT_CHARS_MAX} characters"
        )));
    }
    let bytes = base32_decode(encoded)?;
    if bytes.len() < HEADER_BYTES + SIGNATURE_BYTES {
        return Err(CoreError::token("token is truncated"));
    }
    if bytes[0] != VERSION {
        return Err(CoreError::token(format!(
            "unknown token version {}",
            bytes[0]
        )));
    }
    let payload_len = bytes[HEADER_BYTES - 1] as usize;
    if payload_len > PAYLOAD_BYTES_MAX
        || bytes.len() != HEADER_BYTES + payload_len + SIGNATURE_BYTES
    {
        return Err(CoreError::token(
            "token length does not match its header (truncated or altered)",
        ));
    }
    let (signed, signature) = bytes.split_at(bytes.len() - SIGNATURE_BYTES);
    if !sig::verify(public_key, signed, signature) {
        return Err(CoreError::token(
            "token signature does not verify (altered, or another key)",
        ));
    }
    if bytes[1] == 0 {
        return Err(CoreError::token("token kind 0 is reserved"));
    }
    let expires_at = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    if now >= expires_at as i64 {
        return Err(CoreError::token(format!("token expired at {expires_at}")));
    }
    let mut id = [0u8; ID_BYTES];
    id.copy_from_slice(&bytes[6..6 + ID_BYTES]);
    Ok(Token {
        kind: bytes[1],
        expires_at,
        id,
        payload: signed[HEADER_BYTES..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Token {
        Token {
            kind: 1,
            expires_at: 2_000_000_000,
            id: [5u8; 16],
            payload: b"CNY".to_vec(),
        }
    }

    #[test]
    fn round_trip_and_rejections() {
        let seed = [3u8; 32];
        let public = sig::public_key(&seed).unwrap();
        let text = sign(&seed, &sample()).unwrap();
        assert!(
            text.starts_with("PL1")
                && text
                    .bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        );
        assert_eq!(verify(&public, &text, 1_900_000_000).unwrap(), sample());
        assert!(verify(&public, &text, 2_000_000_000).is_err(), "expired");
        assert!(
            verify(&sig::public_key(&[4u8; 32]).unwrap(), &text, 0).is_err(),
            "wrong key"
        );
        for cut in [1, 2, 8, 50] {
            assert!(
                verify(&public, &text[..text.len() - cut], 0).is_err(),
                "truncated by {cut}"
            );
        }
        for i in 0..text.len() {
            let mut altered = text.clone().into_bytes();
            altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
            assert!(
                verify(&public, std::str::from_utf8(&altered).unwrap(), 0).is_err(),
                "position {i}"
            );
        }
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
    }
}
