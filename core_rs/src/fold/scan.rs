//! The fold's fast path: independent scans of parts of a chunk, on several threads, merged in order.
//!
//! Why this gives the serial answer: an event's stored hash can be checked against the *stored*
//! hash before it, because up to the first mismatch stored and recomputed hashes are equal; so
//! the first event that fails in any part, taking parts in order, is the first that fails
//! serially. Balances are sums, so per-part sums add up in any order. The one order-dependent
//! check, a running balance leaving i64, cannot happen when every touched balance plus the sum
//! of all amount magnitudes in the chunk fits in i64; when that bound fails, `Folder` folds
//! the chunk again serially, which is exact.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::ops::Range;

use super::{checked_postings, FoldError, FxHasher, Posting, ACCOUNT_BYTES_MAX, CURRENCY_BYTES};
use crate::chain::{link, HASH_BYTES};

/// One chunk of stored events, as parallel columns.
pub(super) struct Columns<'a> {
    pub bodies: &'a [&'a [u8]],
    pub signatures: &'a [&'a [u8]],
    pub hashes: &'a [&'a [u8]],
    pub postings: &'a [&'a [u8]],
}

#[derive(Default, Clone, Copy)]
pub(super) struct Partial {
    pub sum: i128,
    /// Sum of |amount|: bounds how far any running balance can move within the chunk.
    pub magnitude: i128,
}

pub(super) type Partials = HashMap<Box<[u8]>, Partial, BuildHasherDefault<FxHasher>>;

pub(super) struct Scan {
    /// Index in the chunk of the first failing event of this part, and why.
    pub stop: Option<(usize, FoldError)>,
    /// Sums per balance key over the events of this part before `stop`.
    pub partials: Partials,
}

/// How many of a part's first distinct keys skip the map (see `Accumulator`).
const HOT_KEYS: usize = 4;

/// Sums per key. A store's events post to a handful of accounts (sales, its payment channels)
/// over and over: the first few distinct keys of a part are kept in a short list, because
/// comparing a few short byte strings is cheaper than hashing and probing the map.
#[derive(Default)]
struct Accumulator {
    hot: Vec<(Vec<u8>, Partial)>,
    partials: Partials,
}

impl Accumulator {
    fn add(&mut self, key: &[u8], amount: i128) {
        let partial = if let Some(index) = self.hot.iter().position(|(hot, _)| hot[..] == *key) {
            &mut self.hot[index].1
        } else if self.hot.len() < HOT_KEYS {
            // Not in the map either: keys only go there once `hot` is full, and it never shrinks.
            self.hot.push((key.to_vec(), Partial::default()));
            &mut self.hot.last_mut().expect("just pushed").1
        } else {
            match self.partials.get_mut(key) {
                Some(partial) => partial,
                None => self.partials.entry(key.into()).or_default(),
            }
        };
        partial.sum += amount;
        partial.magnitude += amount.abs();
    }

    fn finish(mut self, stop: Option<(usize, FoldError)>) -> Scan {
        for (key, partial) in self.hot {
            self.partials.insert(key.into_boxed_slice(), partial);
        }
        Scan {
            stop,
            partials: self.partials,
        }
    }
}

/// Scan `range` of the chunk; `previous` is the stored hash before its first event.
pub(super) fn scan(columns: &Columns<'_>, previous: &[u8], range: Range<usize>) -> Scan {
    let mut sums = Accumulator::default();
    let mut postings: Vec<Posting<'_>> = Vec::new();
    let mut key = Vec::with_capacity(ACCOUNT_BYTES_MAX + CURRENCY_BYTES);
    for i in range.clone() {
        let before = if i == range.start {
            previous
        } else {
            columns.hashes[i - 1]
        };
        let linked = <&[u8; HASH_BYTES]>::try_from(before)
            .map(|head| link(head, columns.bodies[i], columns.signatures[i]))
            .is_ok_and(|next| next[..] == columns.hashes[i][..]);
        let checked = if linked {
            checked_postings(columns.postings[i], &mut postings)
        } else {
            Err(FoldError::HashMismatch)
        };
        if let Err(error) = checked {
            return sums.finish(Some((i, error)));
        }
        for posting in &postings {
            key.clear();
            key.extend_from_slice(posting.account.as_bytes());
            key.extend_from_slice(&posting.currency);
            sums.add(&key, posting.amount);
        }
    }
    sums.finish(None)
}

/// Scan the chunk in `threads` parts (one part on the calling thread when `threads` is 1).
pub(super) fn scan_parts(columns: &Columns<'_>, head: &[u8], threads: usize) -> Vec<Scan> {
    let count = columns.bodies.len();
    if threads <= 1 {
        return vec![scan(columns, head, 0..count)];
    }
    let part = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(part)
            .map(|start| {
                let previous = if start == 0 {
                    head
                } else {
                    columns.hashes[start - 1]
                };
                let range = start..(start + part).min(count);
                scope.spawn(move || scan(columns, previous, range))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("fold thread panicked"))
            .collect()
    })
}
