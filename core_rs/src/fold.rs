//! Streaming auditor fold: chain, per-event postings balance, and account balances.
//!
//! Knows no business rule: each stored event carries its postings (written once by
//! the Python domain) as compact JSON `[[account, currency, amount_minor], ...]`,
//! debits positive, credits negative. Memory: the head, counters and one entry
//! per (account, currency), whatever the number of events folded.
//!
//! Postings grammar (the twin `pos_ledger/reference/fold.py` applies the same rules):
//! * UTF-8 JSON text (JSON whitespace allowed between tokens): an array of at most
//!   [`POSTINGS_PER_EVENT_MAX`] arrays of exactly three elements;
//! * account: a JSON string (escapes allowed) of 1..=[`ACCOUNT_BYTES_MAX`] UTF-8 bytes once decoded;
//! * currency: a JSON string of exactly three letters `A`-`Z`;
//! * amount_minor: a JSON integer (no fraction, no exponent).
//!
//! Checks per event, in order; the first that fails names the event and stops the fold:
//! `hash_mismatch` (the stored hash is not `SHA-256(head || body || sig)`), `postings_malformed`
//! (the grammar above), `amount_overflow` (an amount outside i64), `postings_unbalanced`
//! (some currency does not sum to zero), `amount_overflow` (a running balance would leave i64;
//! the event is then not applied at all). Signature lengths are not checked here: the hash covers
//! whatever bytes are stored and `sig::verify_batch` refuses a wrong-length signature.
//!
//! Speed: the fold is bound by SHA-256 over the stored bytes. Chunks of at least
//! [`PARALLEL_EVENTS_MIN`] events are scanned in parts on several threads (`scan.rs` explains
//! why the answers are the serial ones); `feed_packed` takes one buffer instead of four sequences.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::chain::{head_from, link, HASH_BYTES};
use crate::error::CoreError;

pub const ACCOUNT_BYTES_MAX: usize = 256;
pub const CURRENCY_BYTES: usize = 3;
pub const POSTINGS_PER_EVENT_MAX: usize = 1024;
/// Most events one `feed` call accepts; larger logs are fed in chunks.
pub const FEED_EVENTS_MAX: usize = 1_000_000;
/// Chunks at least this long are scanned on several threads (see `scan.rs`).
pub const PARALLEL_EVENTS_MIN: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldError {
    HashMismatch,
    PostingsMalformed,
    PostingsUnbalanced,
    AmountOverflow,
}

impl FoldError {
    pub fn reason(&self) -> &'static str {
        match self {
            FoldError::HashMismatch => "hash_mismatch",
            FoldError::PostingsMalformed => "postings_malformed",
            FoldError::PostingsUnbalanced => "postings_unbalanced",
            FoldError::AmountOverflow => "amount_overflow",
        }
    }
}

/// FxHash: the balance map's keys are written by our own domain, so no HashDoS concern, and
/// SipHash would cost a visible share of the fold.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Balance map key: the account's UTF-8 bytes followed by the 3 currency bytes (unambiguous
/// because the currency has a fixed length).
type Balances = HashMap<Box<[u8]>, i64, BuildHasherDefault<FxHasher>>;

/// One parsed posting; `account` borrows the input unless it had escapes.
struct Posting<'a> {
    account: std::borrow::Cow<'a, str>,
    currency: [u8; CURRENCY_BYTES],
    amount: i128,
}

mod parse;
mod scan;

pub struct Folder {
    pub head: [u8; HASH_BYTES],
    pub position: u64,
    pub first_error: Option<(u64, FoldError)>,
    balances: Balances,
    key: Vec<u8>,
    threads: usize,
}

impl Folder {
    pub fn new(head: &[u8], position: u64) -> Result<Self, CoreError> {
        Ok(Folder {
            head: head_from(head)?,
            position,
            first_error: None,
            balances: Balances::default(),
            key: Vec::with_capacity(ACCOUNT_BYTES_MAX + CURRENCY_BYTES),
            threads: crate::sig::default_threads(),
        })
    }

    /// Fold one chunk; stops at the first error and remembers its absolute (1-based) position.
    pub fn feed(
        &mut self,
        bodies: &[&[u8]],
        signatures: &[&[u8]],
        hashes: &[&[u8]],
        postings: &[&[u8]],
    ) -> Result<(), CoreError> {
        let count = bodies.len();
        if signatures.len() != count || hashes.len() != count || postings.len() != count {
            return Err(CoreError::invalid(format!(
                "bodies, sigs, hashes and postings must have the same length ({count}, {}, {}, {})",
                signatures.len(),
                hashes.len(),
                postings.len()
            )));
        }
        if count > FEED_EVENTS_MAX {
            return Err(CoreError::invalid(format!(
                "at most {FEED_EVENTS_MAX} events per feed, got {count}"
            )));
        }
        self.fold(&scan::Columns {
            bodies,
            signatures,
            hashes,
            postings,
        });
        Ok(())
    }

    /// Use at most `threads` threads per chunk (default: every core).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    fn fold(&mut self, columns: &scan::Columns<'_>) {
        if self.first_error.is_some() {
            return;
        }
        let count = columns.bodies.len();
        let threads = if count >= PARALLEL_EVENTS_MIN {
            self.threads
        } else {
            1
        };
        let scans = scan::scan_parts(columns, &self.head, threads);
        if !self.merge(columns, scans) {
            for i in 0..count {
                let (body, signature) = (columns.bodies[i], columns.signatures[i]);
                if !self.step(body, signature, columns.hashes[i], columns.postings[i]) {
                    break;
                }
            }
        }
    }

    /// Apply the scans in order up to the first failing event; false (and nothing changed)
    /// when a running balance might leave i64, so the caller folds serially instead.
    fn merge(&mut self, columns: &scan::Columns<'_>, scans: Vec<scan::Scan>) -> bool {
        let mut used = Vec::with_capacity(scans.len());
        let mut stop = None;
        for part in scans {
            used.push(part.partials);
            if part.stop.is_some() {
                stop = part.stop;
                break;
            }
        }
        let magnitude: i128 = used
            .iter()
            .flat_map(|p| p.values())
            .map(|p| p.magnitude)
            .sum();
        let fits = |balance: i64| (balance as i128).abs() + magnitude <= i64::MAX as i128;
        let safe = magnitude <= i64::MAX as i128
            && used
                .iter()
                .flat_map(|p| p.keys())
                .all(|key| fits(self.balances.get(key).copied().unwrap_or(0)));
        if !safe {
            return false;
        }
        for partials in used {
            for (key, partial) in partials {
                let sum = partial.sum as i64; // |sum| <= magnitude, checked above
                match self.balances.get_mut(&key) {
                    Some(balance) => *balance += sum,
                    None => {
                        self.balances.insert(key, sum);
                    }
                }
            }
        }
        let folded = stop.map_or(columns.bodies.len(), |(index, _)| index);
        if folded > 0 {
            self.head.copy_from_slice(columns.hashes[folded - 1]);
        }
        self.first_error = stop.map(|(index, error)| (self.position + index as u64 + 1, error));
        self.position += folded as u64;
        true
    }

    /// Fold a packed buffer (see [`unpack`]); same semantics as [`Folder::feed`].
    pub fn feed_packed(&mut self, buffer: &[u8]) -> Result<(), CoreError> {
        let records = unpack(buffer)?;
        let bodies: Vec<&[u8]> = records.iter().map(|r| r.0).collect();
        let signatures: Vec<&[u8]> = records.iter().map(|r| r.1).collect();
        let hashes: Vec<&[u8]> = records.iter().map(|r| r.2).collect();
        let postings: Vec<&[u8]> = records.iter().map(|r| r.3).collect();
        self.fold(&scan::Columns {
            bodies: &bodies,
            signatures: &signatures,
            hashes: &hashes,
            postings: &postings,
        });
        Ok(())
    }

    /// One event; false once the fold has stopped.
    fn step(&mut self, body: &[u8], signature: &[u8], hash: &[u8], postings: &[u8]) -> bool {
        if self.first_error.is_some() {
            return false;
        }
        let position = self.position + 1;
        let next = link(&self.head, body, signature);
        let checked = if next[..] != hash[..] {
            Err(FoldError::HashMismatch)
        } else {
            self.add(postings)
        };
        match checked {
            Ok(()) => {
                self.head = next;
                self.position = position;
                true
            }
            Err(error) => {
                self.first_error = Some((position, error));
                false
            }
        }
    }

    fn add(&mut self, text: &[u8]) -> Result<(), FoldError> {
        let mut postings = Vec::new();
        checked_postings(text, &mut postings)?;
        // Check every new balance before changing any, so a refused event leaves no trace.
        let mut updated: Vec<i128> = Vec::with_capacity(postings.len());
        for (i, posting) in postings.iter().enumerate() {
            let earlier = postings[..i].iter().rposition(|p| same_key(p, posting));
            let before = match earlier {
                Some(j) => updated[j],
                None => self.balance_of(posting) as i128,
            };
            let after = before + posting.amount;
            if after < i64::MIN as i128 || after > i64::MAX as i128 {
                return Err(FoldError::AmountOverflow);
            }
            updated.push(after);
        }
        for (posting, after) in postings.iter().zip(updated) {
            self.set_key(posting);
            match self.balances.get_mut(&self.key[..]) {
                Some(balance) => *balance = after as i64,
                None => {
                    self.balances
                        .insert(self.key.clone().into_boxed_slice(), after as i64);
                }
            }
        }
        Ok(())
    }

    fn set_key(&mut self, posting: &Posting<'_>) {
        self.key.clear();
        self.key.extend_from_slice(posting.account.as_bytes());
        self.key.extend_from_slice(&posting.currency);
    }

    fn balance_of(&mut self, posting: &Posting<'_>) -> i64 {
        self.set_key(posting);
        self.balances.get(&self.key[..]).copied().unwrap_or(0)
    }

    /// `((account, currency), balance)` for every pair seen, zero balances included.
    pub fn balances(&self) -> impl Iterator<Item = ((&str, &str), i64)> {
        self.balances.iter().map(|(key, value)| {
            let (account, currency) = key.split_at(key.len() - CURRENCY_BYTES);
            // Both parts were validated UTF-8 when the key was inserted.
            let text = |bytes| std::str::from_utf8(bytes).expect("validated UTF-8");
            ((text(account), text(currency)), *value)
        })
    }
}

/// Parse one event's postings into `out` and check them on their own: well formed, every
/// amount within i64, balanced per currency.
fn checked_postings<'a>(text: &'a [u8], out: &mut Vec<Posting<'a>>) -> Result<(), FoldError> {
    parse::postings_into(text, out)?;
    if out
        .iter()
        .any(|p| p.amount < i64::MIN as i128 || p.amount > i64::MAX as i128)
    {
        return Err(FoldError::AmountOverflow);
    }
    balanced(out)
}

fn same_key(a: &Posting<'_>, b: &Posting<'_>) -> bool {
    a.currency == b.currency && a.account == b.account
}

fn balanced(postings: &[Posting<'_>]) -> Result<(), FoldError> {
    // Quadratic in the postings of one event (a handful; at most POSTINGS_PER_EVENT_MAX) and
    // allocation-free, which is what matters once per event.
    for (i, posting) in postings.iter().enumerate() {
        if postings[..i].iter().any(|p| p.currency == posting.currency) {
            continue; // this currency was summed at its first posting
        }
        let sum: i128 = postings[i..]
            .iter()
            .filter(|p| p.currency == posting.currency)
            .map(|p| p.amount)
            .sum();
        if sum != 0 {
            return Err(FoldError::PostingsUnbalanced);
        }
    }
    Ok(())
}

/// Packed records, one after another, little-endian lengths:
/// `body_len: u32 | body | sig_len: u8 | sig | hash (32) | postings_len: u32 | postings`.
/// One Python `bytes` instead of four lists of small `bytes` objects.
pub type Record<'a> = (&'a [u8], &'a [u8], &'a [u8], &'a [u8]);

fn take<'a>(buffer: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], CoreError> {
    let slice = buffer
        .get(*at..*at + n)
        .ok_or_else(|| CoreError::at("packed buffer is truncated", *at))?;
    *at += n;
    Ok(slice)
}

fn take_u32(buffer: &[u8], at: &mut usize) -> Result<usize, CoreError> {
    Ok(u32::from_le_bytes(take(buffer, at, 4)?.try_into().expect("4 bytes")) as usize)
}

pub fn unpack(buffer: &[u8]) -> Result<Vec<Record<'_>>, CoreError> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < buffer.len() {
        if records.len() == FEED_EVENTS_MAX {
            return Err(CoreError::invalid(format!(
                "at most {FEED_EVENTS_MAX} events per feed"
            )));
        }
        let body_len = take_u32(buffer, &mut at)?;
        let body = take(buffer, &mut at, body_len)?;
        let sig_len = take(buffer, &mut at, 1)?[0] as usize;
        let signature = take(buffer, &mut at, sig_len)?;
        let hash = take(buffer, &mut at, HASH_BYTES)?;
        let postings_len = take_u32(buffer, &mut at)?;
        let postings = take(buffer, &mut at, postings_len)?;
        records.push((body, signature, hash, postings));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::extend;

    type Owned = HashMap<(String, String), i64>;

    fn balances(folder: &Folder) -> Owned {
        folder
            .balances()
            .map(|((a, c), v)| ((a.to_string(), c.to_string()), v))
            .collect()
    }

    fn fold_one(postings: &[u8]) -> (Option<(u64, FoldError)>, Owned) {
        let hash = link(&[0u8; 32], b"a", &[0u8; 64]);
        let mut folder = Folder::new(&[0u8; 32], 0).unwrap();
        folder
            .feed(&[b"a"], &[&[0u8; 64]], &[&hash], &[postings])
            .unwrap();
        (folder.first_error, balances(&folder))
    }

    #[test]
    fn folds_balances_and_stops_at_the_first_error() {
        let bodies: Vec<&[u8]> = vec![b"a", b"b", b"c"];
        let sigs_owned = [[1u8; 64], [2u8; 64], [3u8; 64]];
        let sigs: Vec<&[u8]> = sigs_owned.iter().map(|s| &s[..]).collect();
        let hashes_owned = extend(&[0u8; 32], &bodies, &sigs).unwrap();
        let hashes: Vec<&[u8]> = hashes_owned.iter().map(|h| &h[..]).collect();
        let postings: Vec<&[u8]> = vec![
            br#"[["asset:cash:t1","CNY",1000],["revenue:sales","CNY",-1000]]"#,
            b"[]",
            br#"[["asset:cash:t1","CNY",5],["revenue:sales","CNY",-4]]"#,
        ];
        let mut folder = Folder::new(&[0u8; 32], 0).unwrap();
        folder.feed(&bodies, &sigs, &hashes, &postings).unwrap();
        assert_eq!(folder.first_error, Some((3, FoldError::PostingsUnbalanced)));
        assert_eq!(folder.position, 2);
        assert_eq!(folder.head, hashes_owned[1]);
        let balances = balances(&folder);
        assert_eq!(
            balances[&("asset:cash:t1".to_string(), "CNY".to_string())],
            1000
        );
        assert_eq!(balances.len(), 2);
    }

    #[test]
    fn malformed_postings_and_hash_mismatch() {
        let mut folder = Folder::new(&[0u8; 32], 10).unwrap();
        folder
            .feed(&[b"a"], &[&[0u8; 64]], &[&[9u8; 32]], &[b"[]"])
            .unwrap();
        assert_eq!(folder.first_error, Some((11, FoldError::HashMismatch)));
        for text in [
            &b"{"[..],
            b"",
            b"[[\"a\",\"CNY\",1.0]]",
            b"[[\"a\",\"CNY\",1e2]]",
            b"[[\"a\",\"cny\",1]]",
            b"[[\"a\",\"CNYX\",1]]",
            b"[[\"\",\"CNY\",0]]",
            b"[[\"a\",\"CNY\",true]]",
            b"[[\"a\",\"CNY\",01]]",
            b"[[\"a\",\"CNY\",0,1]]",
            b"[[\"a\",\"CNY\"]]",
            b"[[\"a\\ud800\",\"CNY\",0]]",
            b"[] x",
            b"[[\"a\",\"CNY\",0],]",
            b"[[\"a\",\"CNY\",-]]",
            b"[[\"a\",\"CNY\",99999999999999999999999],[]]",
        ] {
            assert_eq!(
                fold_one(text).0,
                Some((1, FoldError::PostingsMalformed)),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn escapes_whitespace_and_overflow() {
        let (error, balances) =
            fold_one(b" [ [\"a\\u00e9\\n\" , \"CNY\" , -0 ] ,[\"\\ud83d\\ude00\",\"CNY\",0]]\n");
        assert_eq!(error, None);
        assert_eq!(balances[&("a\u{e9}\n".to_string(), "CNY".to_string())], 0);
        assert!(balances.contains_key(&("\u{1f600}".to_string(), "CNY".to_string())));
        let big = br#"[["a","CNY",9223372036854775808],["b","CNY",-9223372036854775808]]"#;
        assert_eq!(fold_one(big).0, Some((1, FoldError::AmountOverflow)));
        let repeated = br#"[["a","CNY",0],["a","CNY",0],["a","CNY",1],["a","CNY",-1],["a","CNY",2],["b","CNY",-2]]"#;
        assert_eq!(
            fold_one(repeated).1[&("a".to_string(), "CNY".to_string())],
            2
        );
        let edge = br#"[["a","CNY",9223372036854775807],["b","CNY",-9223372036854775807]]"#;
        assert_eq!(fold_one(edge).0, None);
        let twice = br#"[["a","CNY",9223372036854775807],["a","CNY",1],["b","CNY",-9223372036854775807],["b","CNY",-1]]"#;
        let (error, balances) = fold_one(twice);
        assert_eq!(error, Some((1, FoldError::AmountOverflow)));
        assert!(balances.is_empty(), "a refused event leaves no trace");
    }

    /// Folding through the parallel scans must equal folding event by event (`step`), with a
    /// tampered hash or postings on each side of every part boundary (parts of
    /// `count.div_ceil(threads)` events), with small amounts (the parallel merge is used) and
    /// with amounts of ±i64::MAX / 2 (the merge's bound fails: the chunk is folded serially).
    #[test]
    fn parallel_scans_equal_serial_steps() {
        let count = PARALLEL_EVENTS_MIN + 17;
        let bodies: Vec<Vec<u8>> = (0..count)
            .map(|i| format!("{{\"seq\":{i}}}").into_bytes())
            .collect();
        let sigs: Vec<[u8; 64]> = (0..count).map(|i| [(i % 251) as u8; 64]).collect();
        let b: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let s: Vec<&[u8]> = sigs.iter().map(|x| &x[..]).collect();
        let hashes = extend(&[0u8; 32], &b, &s).unwrap();
        // (tampered index, thread counts to compare): anywhere with every count, and each side of
        // each part boundary with the count whose boundary it is.
        let mut cases: Vec<(Option<usize>, Vec<usize>)> =
            [None, Some(0), Some(2000), Some(count - 1)]
                .into_iter()
                .map(|bad| (bad, vec![1, 2, 3, 4]))
                .collect();
        for threads in 2..=4 {
            let part = count.div_ceil(threads);
            for boundary in (part..count).step_by(part) {
                cases.push((Some(boundary - 1), vec![threads]));
                cases.push((Some(boundary), vec![threads]));
            }
        }
        let unbalanced = br#"[["a","CNY",1]]"#.to_vec();
        for big in [7, i64::MAX / 2] {
            let postings: Vec<Vec<u8>> = (0..count)
                .map(|i| match i % 7 {
                    0 => format!(r#"[["a{}","CNY",{i}],["b","CNY",-{i}]]"#, i % 50).into_bytes(),
                    1 => {
                        // Alternating signs: no running balance leaves i64, whatever `big` is.
                        let amount = if (i / 7) % 2 == 0 { big } else { -big };
                        format!(r#"[["big","EUR",{amount}],["c","EUR",{}]]"#, -amount).into_bytes()
                    }
                    _ => b"[]".to_vec(),
                })
                .collect();
            for (n, (bad, thread_counts)) in cases.iter().enumerate() {
                let mut h: Vec<&[u8]> = hashes.iter().map(|x| &x[..]).collect();
                let mut p: Vec<&[u8]> = postings.iter().map(Vec::as_slice).collect();
                let zero = [0u8; 32];
                if let Some(index) = *bad {
                    // Alternate what is tampered with: the stored hash, or the postings.
                    if n % 2 == 0 {
                        h[index] = &zero;
                    } else {
                        p[index] = &unbalanced;
                    }
                }
                let mut serial = Folder::new(&[0u8; 32], 3).unwrap();
                for i in 0..count {
                    if !serial.step(b[i], s[i], h[i], p[i]) {
                        break;
                    }
                }
                assert_eq!(serial.first_error.map(|e| e.0), bad.map(|i| i as u64 + 4));
                for &threads in thread_counts {
                    let mut parallel = Folder::new(&[0u8; 32], 3).unwrap();
                    parallel.set_threads(threads);
                    parallel.feed(&b, &s, &h, &p).unwrap();
                    let state = |f: &Folder| (f.head, f.position, f.first_error, balances(f));
                    assert_eq!(
                        state(&parallel),
                        state(&serial),
                        "big {big}, bad {bad:?}, threads {threads}"
                    );
                }
            }
        }
        assert!(balances(&Folder::new(&[0u8; 32], 0).unwrap()).is_empty());
        let mut empty = Folder::new(&[5u8; 32], 3).unwrap();
        empty.feed(&[], &[], &[], &[]).unwrap();
        assert_eq!(
            (empty.position, empty.head, empty.first_error),
            (3, [5u8; 32], None)
        );
    }

    #[test]
    fn packed_equals_lists() {
        let bodies: Vec<&[u8]> = vec![b"x", b"yy"];
        let sigs: Vec<&[u8]> = vec![&[1u8; 64], &[2u8; 64]];
        let hashes = extend(&[0u8; 32], &bodies, &sigs).unwrap();
        let postings: Vec<&[u8]> = vec![br#"[["a","EUR",1],["b","EUR",-1]]"#, b"[]"];
        let mut packed = Vec::new();
        for i in 0..2 {
            packed.extend_from_slice(&(bodies[i].len() as u32).to_le_bytes());
            packed.extend_from_slice(bodies[i]);
            packed.push(64);
            packed.extend_from_slice(sigs[i]);
            packed.extend_from_slice(&hashes[i]);
            packed.extend_from_slice(&(postings[i].len() as u32).to_le_bytes());
            packed.extend_from_slice(postings[i]);
        }
        let mut folder = Folder::new(&[0u8; 32], 0).unwrap();
        folder.feed_packed(&packed).unwrap();
        assert_eq!(
            (folder.position, folder.head, folder.first_error),
            (2, hashes[1], None)
        );
        assert!(Folder::new(&[0u8; 32], 0)
            .unwrap()
            .feed_packed(&packed[..packed.len() - 1])
            .is_err());
    }
}
