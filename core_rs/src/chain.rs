//! The per-store hash chain: `h_0` = 32 zero bytes, `h_n = SHA-256(h_{n-1} || body_n || sig_n)`.

use sha2::{Digest, Sha256};

use crate::error::CoreError;

pub const HASH_BYTES: usize = 32;
pub const SIGNATURE_BYTES: usize = 64;
/// Most entries one call accepts; longer logs are processed in chunks.
pub const CHAIN_ENTRIES_MAX: usize = 1_000_000;

/// One link of the chain.
pub fn link(head: &[u8; HASH_BYTES], body: &[u8], signature: &[u8]) -> [u8; HASH_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(head);
    hasher.update(body);
    hasher.update(signature);
    hasher.finalize().into()
}

pub fn head_from(bytes: &[u8]) -> Result<[u8; HASH_BYTES], CoreError> {
    bytes.try_into().map_err(|_| {
        CoreError::invalid(format!(
            "a chain head has {HASH_BYTES} bytes, got {}",
            bytes.len()
        ))
    })
}

fn check_lengths(bodies: usize, signatures: &[&[u8]]) -> Result<(), CoreError> {
    if bodies != signatures.len() {
        return Err(CoreError::invalid(format!(
            "bodies and sigs must have the same length ({bodies}, {})",
            signatures.len()
        )));
    }
    if bodies > CHAIN_ENTRIES_MAX {
        return Err(CoreError::invalid(format!(
            "at most {CHAIN_ENTRIES_MAX} entries per call, got {bodies}"
        )));
    }
    if let Some(i) = signatures.iter().position(|s| s.len() != SIGNATURE_BYTES) {
        return Err(CoreError::at(
            format!("signature {i} does not have {SIGNATURE_BYTES} bytes"),
            i,
        ));
    }
    Ok(())
}

/// The successive hashes after each entry, starting from `head`.
pub fn extend(
    head: &[u8],
    bodies: &[&[u8]],
    signatures: &[&[u8]],
) -> Result<Vec<[u8; HASH_BYTES]>, CoreError> {
    let mut current = head_from(head)?;
    check_lengths(bodies.len(), signatures)?;
    Ok(bodies
        .iter()
        .zip(signatures)
        .map(|(body, signature)| {
            current = link(&current, body, signature);
            current
        })
        .collect())
}

/// Recompute from `head`; the last verified head and the index of the first stored hash that differs
/// (a stored hash of the wrong length simply differs).
pub fn verify(
    head: &[u8],
    bodies: &[&[u8]],
    signatures: &[&[u8]],
    hashes: &[&[u8]],
) -> Result<([u8; HASH_BYTES], Option<usize>), CoreError> {
    let mut current = head_from(head)?;
    check_lengths(bodies.len(), signatures)?;
    if hashes.len() != bodies.len() {
        return Err(CoreError::invalid(
            "bodies and hashes must have the same length",
        ));
    }
    for (i, ((body, signature), stored)) in bodies.iter().zip(signatures).zip(hashes).enumerate() {
        let next = link(&current, body, signature);
        if next[..] != stored[..] {
            return Ok((current, Some(i)));
        }
        current = next;
    }
    Ok((current, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_then_verify_and_detect_tampering() {
        let bodies: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("{{\"n\":{i}}}").into_bytes())
            .collect();
        let sigs: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 64]).collect();
        let b: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let s: Vec<&[u8]> = sigs.iter().map(Vec::as_slice).collect();
        let hashes = extend(&[0u8; 32], &b, &s).unwrap();
        let h: Vec<&[u8]> = hashes.iter().map(|x| &x[..]).collect();
        assert_eq!(verify(&[0u8; 32], &b, &s, &h).unwrap(), (hashes[4], None));
        let mut tampered = bodies.clone();
        tampered[2][1] = b'm';
        let t: Vec<&[u8]> = tampered.iter().map(Vec::as_slice).collect();
        assert_eq!(
            verify(&[0u8; 32], &t, &s, &h).unwrap(),
            (hashes[1], Some(2))
        );
        assert!(extend(&[0u8; 31], &b, &s).is_err());
        assert!(extend(&[0u8; 32], &b, &s[..4]).is_err());
    }

    /// `CHAIN_ENTRIES_MAX` entries are one call; one more is refused before any hashing.
    #[test]
    fn at_most_chain_entries_max_per_call() {
        let signature = [0u8; SIGNATURE_BYTES];
        let bodies: Vec<&[u8]> = vec![b""; CHAIN_ENTRIES_MAX + 1];
        let sigs: Vec<&[u8]> = vec![&signature[..]; CHAIN_ENTRIES_MAX + 1];
        assert!(extend(&[0u8; 32], &bodies, &sigs).is_err());
        assert!(verify(&[0u8; 32], &bodies, &sigs, &bodies).is_err());
        // Exactly the maximum is accepted (the empty stored hashes differ at once: one link is computed).
        let exactly = (&bodies[1..], &sigs[1..]);
        assert_eq!(
            verify(&[0u8; 32], exactly.0, exactly.1, exactly.0).unwrap(),
            ([0u8; 32], Some(0))
        );
    }

    #[test]
    fn first_link_matches_sha256_of_concatenation() {
        let expected: [u8; 32] =
            Sha256::digest([&[0u8; 32][..], b"body", &[1u8; 64][..]].concat()).into();
        assert_eq!(link(&[0u8; 32], b"body", &[1u8; 64]), expected);
    }
}
