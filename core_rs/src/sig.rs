//! Ed25519 (RFC 8032) signing and strict verification, one signature or a batch.
//!
//! Verification semantics (identical for the single and the batch path, and for
//! the pure-Python twin `pos_ledger/reference/ed25519.py`):
//! * public key and signature have exactly 32 and 64 bytes;
//! * `A` (the key) and `R` (first half of the signature) are canonical encodings
//!   of curve points (re-encoding gives the same bytes) and are not of small order;
//! * `S` (second half) is canonical: `S < L`;
//! * the cofactored equation holds: `[8](S·B − R − k·A) = 0`, `k = SHA-512(R‖A‖M) mod L`.
//!
//! The cofactored equation is what makes batch verification exact: a random
//! linear combination of cofactored equations holds (up to 2^-128) iff each one
//! does, so a batch answer never differs from verifying each signature alone.
//! Batches group the `A` terms by distinct key (a terminal's batch has one key),
//! and fall back to single checks only to pinpoint failures.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};
use std::collections::HashMap;

use crate::error::CoreError;

pub const PUBLIC_KEY_BYTES: usize = 32;
pub const SIGNATURE_BYTES: usize = 64;
pub const SEED_BYTES: usize = 32;
/// Largest batch one call accepts.
pub const BATCH_SIGNATURES_MAX: usize = 1_000_000;
/// Below this many signatures a batch is checked on one thread (thread start-up would dominate).
pub const PARALLEL_THRESHOLD: usize = 64;
/// Most threads one call uses, whatever the caller asks.
pub const THREADS_MAX: usize = 64;

/// The field element encoded in `bytes` (sign bit aside) is below p = 2^255 - 19.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    !(bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

/// Decode a point strictly: canonical encoding and not of small order.
///
/// Canonical means y < p and no "negative zero" x. A point with x = 0 has y = ±1, which is of
/// small order and refused anyway, so checking y < p is enough; this avoids re-compressing
/// (a field inversion) on every signature.
fn decode_point(bytes: &[u8]) -> Option<EdwardsPoint> {
    let array: [u8; 32] = bytes.try_into().ok()?;
    if !canonical_y(&array) {
        return None;
    }
    let point = CompressedEdwardsY(array).decompress()?;
    if point.is_small_order() {
        return None;
    }
    debug_assert_eq!(point.compress().to_bytes(), array);
    Some(point)
}

/// True when `public_key` must be refused: wrong length, not a canonical point, or small order.
pub fn public_key_is_weak(public_key: &[u8]) -> bool {
    decode_point(public_key).is_none()
}

/// One signature, parsed and ready for the verification equation; `key` indexes `Keys::points`.
struct Parsed {
    key: usize,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Distinct public keys of a chunk, each decoded once (a terminal's batch has one key).
#[derive(Default)]
struct Keys {
    index: HashMap<[u8; 32], Option<usize>>,
    points: Vec<EdwardsPoint>,
    last: Option<([u8; 32], Option<usize>)>,
}

impl Keys {
    fn lookup(&mut self, public_key: &[u8]) -> Option<usize> {
        let bytes: [u8; 32] = public_key.try_into().ok()?;
        if let Some((last, found)) = self.last {
            if last == bytes {
                return found;
            }
        }
        let points = &mut self.points;
        let found = *self.index.entry(bytes).or_insert_with(|| {
            let point = decode_point(&bytes)?;
            points.push(point);
            Some(points.len() - 1)
        });
        self.last = Some((bytes, found));
        found
    }
}

fn parse(keys: &mut Keys, public_key: &[u8], message: &[u8], signature: &[u8]) -> Option<Parsed> {
    if signature.len() != SIGNATURE_BYTES {
        return None;
    }
    let s_bytes: [u8; 32] = signature[32..].try_into().ok()?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let key = keys.lookup(public_key)?;
    let r = decode_point(&signature[..32])?;
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(&signature[..32])
            .chain_update(public_key)
            .chain_update(message),
    );
    Some(Parsed { key, r, s, k })
}

fn holds(p: &Parsed, keys: &Keys) -> bool {
    // S·B − k·A − R, then clear the cofactor.
    let sb_minus_ka =
        EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-p.k), &keys.points[p.key], &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// Verify one signature (strict, cofactored).
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let mut keys = Keys::default();
    parse(&mut keys, public_key, message, signature).is_some_and(|p| holds(&p, &keys))
}

fn random_scalars(count: usize) -> Vec<Scalar> {
    // 128-bit random weights: a batch with a bad signature passes with probability 2^-128.
    let mut bytes = vec![0u8; 16 * count];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness: derive weights from the clock. A batch that fails is re-checked
        // one by one, so this can only matter against an adversary who can predict the clock.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, chunk) in bytes.chunks_mut(64).enumerate() {
            let digest = Sha512::digest([seed.to_le_bytes(), (i as u128).to_le_bytes()].concat());
            chunk.copy_from_slice(&digest[..chunk.len()]);
        }
    }
    bytes
        .chunks(16)
        .map(|c| {
            let mut wide = [0u8; 32];
            wide[..16].copy_from_slice(c);
            Scalar::from_bytes_mod_order(wide)
        })
        .collect()
}

/// True iff every parsed signature satisfies its equation (one multiscalar multiplication):
/// `[8]((Σ z_i·S_i)·B − Σ z_i·R_i − Σ_keys (Σ z_i·k_i)·A) = 0`.
fn batch_holds(parsed: &[&Parsed], keys: &Keys) -> bool {
    if parsed.is_empty() {
        return true;
    }
    let weights = random_scalars(parsed.len());
    let mut b_coefficient = Scalar::ZERO;
    let mut key_coefficients = vec![Scalar::ZERO; keys.points.len()];
    let mut scalars = Vec::with_capacity(parsed.len() + keys.points.len() + 1);
    let mut points = Vec::with_capacity(scalars.capacity());
    for (p, z) in parsed.iter().zip(weights.iter()) {
        b_coefficient += z * p.s;
        key_coefficients[p.key] += z * p.k;
        scalars.push(-z);
        points.push(p.r);
    }
    scalars.extend(key_coefficients.iter().map(|c| -c));
    points.extend_from_slice(&keys.points);
    scalars.push(b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// Verify a chunk: batch equation first, single checks only when it fails.
fn verify_chunk(public_keys: &[&[u8]], messages: &[&[u8]], signatures: &[&[u8]]) -> Vec<bool> {
    let mut keys = Keys::default();
    let parsed: Vec<Option<Parsed>> = (0..signatures.len())
        .map(|i| parse(&mut keys, public_keys[i], messages[i], signatures[i]))
        .collect();
    let valid: Vec<&Parsed> = parsed.iter().flatten().collect();
    if batch_holds(&valid, &keys) {
        return parsed.iter().map(Option::is_some).collect();
    }
    parsed
        .iter()
        .map(|p| p.as_ref().is_some_and(|p| holds(p, &keys)))
        .collect()
}

/// One answer per signature. `threads` > 1 splits a batch of at least
/// [`PARALLEL_THRESHOLD`] signatures into that many chunks, each on its own thread.
pub fn verify_batch(
    public_keys: &[&[u8]],
    messages: &[&[u8]],
    signatures: &[&[u8]],
    threads: usize,
) -> Result<Vec<bool>, CoreError> {
    let count = signatures.len();
    if public_keys.len() != count || messages.len() != count {
        return Err(CoreError::invalid(format!(
            "public_keys, messages and signatures must have the same length ({}, {}, {count})",
            public_keys.len(),
            messages.len(),
        )));
    }
    if count > BATCH_SIGNATURES_MAX {
        return Err(CoreError::invalid(format!(
            "at most {BATCH_SIGNATURES_MAX} signatures per call, got {count}"
        )));
    }
    let threads = threads.clamp(1, THREADS_MAX);
    if threads == 1 || count < PARALLEL_THRESHOLD {
        return Ok(verify_chunk(public_keys, messages, signatures));
    }
    let chunk = count.div_ceil(threads);
    let answers: Vec<Vec<bool>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                let end = (start + chunk).min(count);
                scope.spawn(move || {
                    verify_chunk(
                        &public_keys[start..end],
                        &messages[start..end],
                        &signatures[start..end],
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("verification thread panicked"))
            .collect()
    });
    Ok(answers.into_iter().flatten().collect())
}

/// Threads to use when the caller does not say: every core the OS gives us.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn expanded(seed: &[u8]) -> Result<(Scalar, [u8; 32], [u8; 32]), CoreError> {
    if seed.len() != SEED_BYTES {
        return Err(CoreError::invalid(format!(
            "a key seed has {SEED_BYTES} bytes, got {}",
            seed.len()
        )));
    }
    let hash = Sha512::digest(seed);
    let mut lower = [0u8; 32];
    lower.copy_from_slice(&hash[..32]);
    lower[0] &= 248;
    lower[31] &= 127;
    lower[31] |= 64;
    let mut prefix = [0u8; 32];
    prefix.copy_from_slice(&hash[32..]);
    // The clamped scalar reduced mod L gives the same multiples of B (B has order L).
    let a = Scalar::from_bytes_mod_order(lower);
    let public = EdwardsPoint::mul_base(&a).compress().to_bytes();
    Ok((a, prefix, public))
}

/// The public key of a 32-byte seed (RFC 8032 section 5.1.5).
pub fn public_key(seed: &[u8]) -> Result<[u8; 32], CoreError> {
    Ok(expanded(seed)?.2)
}

/// Deterministic RFC 8032 signature of `message` with the key of `seed`.
pub fn sign(seed: &[u8], message: &[u8]) -> Result<[u8; 64], CoreError> {
    let (a, prefix, public) = expanded(seed)?;
    let r = Scalar::from_hash(Sha512::new().chain_update(prefix).chain_update(message));
    let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(big_r)
            .chain_update(public)
            .chain_update(message),
    );
    let s = r + k * a;
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&big_r);
    signature[32..].copy_from_slice(s.as_bytes());
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 8032 section 7.1, TEST 1 and TEST 2.
    const SEED_1: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC_1: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SIGNATURE_1: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    const SEED_2: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const SIGNATURE_2: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    #[test]
    fn rfc8032_vectors_sign_and_verify() {
        assert_eq!(public_key(&hex(SEED_1)).unwrap().to_vec(), hex(PUBLIC_1));
        assert_eq!(sign(&hex(SEED_1), b"").unwrap().to_vec(), hex(SIGNATURE_1));
        assert_eq!(
            sign(&hex(SEED_2), &[0x72]).unwrap().to_vec(),
            hex(SIGNATURE_2)
        );
        assert!(verify(&hex(PUBLIC_1), b"", &hex(SIGNATURE_1)));
        assert!(!verify(&hex(PUBLIC_1), b"x", &hex(SIGNATURE_1)));
    }

    #[test]
    fn batch_pinpoints_failures_and_agrees_with_single() {
        let seed = [7u8; 32];
        let pk = public_key(&seed).unwrap();
        let messages: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut signatures: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| sign(&seed, m).unwrap().to_vec())
            .collect();
        signatures[3][0] ^= 1;
        signatures[150] = vec![0u8; 10];
        let keys: Vec<&[u8]> = vec![&pk[..]; messages.len()];
        let msgs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let sigs: Vec<&[u8]> = signatures.iter().map(Vec::as_slice).collect();
        for threads in [1, 2] {
            let answers = verify_batch(&keys, &msgs, &sigs, threads).unwrap();
            for (i, ok) in answers.iter().enumerate() {
                assert_eq!(*ok, i != 3 && i != 150, "index {i}");
                assert_eq!(*ok, verify(keys[i], msgs[i], sigs[i]));
            }
        }
        assert!(verify_batch(&keys[..1], &msgs, &sigs, 1).is_err());
    }

    fn testdata(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/../../shared/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn text(value: &serde_json::Value, key: &str) -> Vec<u8> {
        hex(value[key].as_str().unwrap())
    }

    #[test]
    fn every_wycheproof_case_single_and_batched() {
        let data = testdata("wycheproof/ed25519_test.json");
        let (mut keys, mut messages, mut signatures, mut expected) =
            (vec![], vec![], vec![], vec![]);
        for group in data["testGroups"].as_array().unwrap() {
            let key = text(&group["publicKey"], "pk");
            for case in group["tests"].as_array().unwrap() {
                let valid = case["result"].as_str().unwrap() == "valid";
                let (message, signature) = (text(case, "msg"), text(case, "sig"));
                assert_eq!(
                    verify(&key, &message, &signature),
                    valid,
                    "tcId {}",
                    case["tcId"]
                );
                keys.push(key.clone());
                messages.push(message);
                signatures.push(signature);
                expected.push(valid);
            }
        }
        assert!(expected.len() >= 150);
        let k: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let m: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let s: Vec<&[u8]> = signatures.iter().map(Vec::as_slice).collect();
        for threads in [1, 2] {
            assert_eq!(verify_batch(&k, &m, &s, threads).unwrap(), expected);
        }
    }

    #[test]
    fn every_rfc8032_vector_byte_for_byte() {
        let data = testdata("rfc8032.json");
        for vector in data["vectors"].as_array().unwrap() {
            let (seed, public) = (text(vector, "secret_key"), text(vector, "public_key"));
            let (message, signature) = (text(vector, "message"), text(vector, "signature"));
            assert_eq!(public_key(&seed).unwrap().to_vec(), public);
            assert_eq!(sign(&seed, &message).unwrap().to_vec(), signature);
            assert!(verify(&public, &message, &signature));
            assert!(!public_key_is_weak(&public));
        }
    }

    #[test]
    fn weak_keys_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(public_key_is_weak(&identity));
        assert!(public_key_is_weak(&[0u8; 31]));
        assert!(public_key_is_weak(&hex(
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
        )));
        assert!(!public_key_is_weak(&hex(PUBLIC_1)));
    }

    #[test]
    fn non_canonical_s_is_rejected() {
        let seed = hex(SEED_1);
        let mut signature = sign(&seed, b"m").unwrap();
        // S + L is the same scalar mod L but not canonical.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = signature[32 + i] as u16 + l[i] as u16 + carry;
            signature[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert!(!verify(&hex(PUBLIC_1), b"m", &signature));
    }
}
