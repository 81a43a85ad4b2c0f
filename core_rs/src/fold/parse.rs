//! A strict parser for exactly one JSON shape, `[[string, string, integer], ...]`.
//!
//! Hand-written rather than serde_json because the fold needs what a generic parser hides:
//! an integer literal beyond i64 is `amount_overflow`, not "malformed" or a float, and the
//! common account without escapes is borrowed, not allocated.

use std::borrow::Cow;

use super::{FoldError, Posting, ACCOUNT_BYTES_MAX, CURRENCY_BYTES, POSTINGS_PER_EVENT_MAX};

const MALFORMED: FoldError = FoldError::PostingsMalformed;
/// An integer literal longer than this is out of i64 range whatever its digits; i128 holds it.
const INTEGER_DIGITS_MAX: usize = 20;
/// Stands for any integer beyond i64 (the caller only checks the range).
const OUT_OF_RANGE: i128 = i128::MAX;

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

/// Parse into `postings` (cleared first), so a scan reuses one buffer for every event.
pub(super) fn postings_into<'a>(
    bytes: &'a [u8],
    postings: &mut Vec<Posting<'a>>,
) -> Result<(), FoldError> {
    postings.clear();
    let text = std::str::from_utf8(bytes).map_err(|_| MALFORMED)?;
    let mut cursor = Cursor { text, at: 0 };
    cursor.expect(b'[')?;
    if !cursor.eat(b']') {
        loop {
            if postings.len() == POSTINGS_PER_EVENT_MAX {
                return Err(MALFORMED);
            }
            postings.push(cursor.posting()?);
            if cursor.eat(b']') {
                break;
            }
            cursor.expect(b',')?;
        }
    }
    cursor.skip_whitespace();
    if cursor.at != text.len() {
        return Err(MALFORMED);
    }
    Ok(())
}

impl<'a> Cursor<'a> {
    fn skip_whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        while self.at < bytes.len() && matches!(bytes[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        if self.text.as_bytes().get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), FoldError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(MALFORMED)
        }
    }

    fn posting(&mut self) -> Result<Posting<'a>, FoldError> {
        self.expect(b'[')?;
        let account = self.string()?;
        if account.is_empty() || account.len() > ACCOUNT_BYTES_MAX {
            return Err(MALFORMED);
        }
        self.expect(b',')?;
        let currency = self.string()?;
        let currency: [u8; CURRENCY_BYTES] =
            currency.as_bytes().try_into().map_err(|_| MALFORMED)?;
        if !currency.iter().all(u8::is_ascii_uppercase) {
            return Err(MALFORMED);
        }
        self.expect(b',')?;
        let amount = self.integer()?;
        self.expect(b']')?;
        Ok(Posting {
            account,
            currency,
            amount,
        })
    }

    fn string(&mut self) -> Result<Cow<'a, str>, FoldError> {
        self.expect(b'"')?;
        let bytes = self.text.as_bytes();
        let start = self.at;
        loop {
            match bytes.get(self.at) {
                None => return Err(MALFORMED),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Cow::Borrowed(&self.text[start..self.at - 1]));
                }
                Some(b'\\') => break,
                Some(&c) if c < 0x20 => return Err(MALFORMED),
                Some(_) => self.at += 1,
            }
        }
        let mut owned = String::from(&self.text[start..self.at]);
        self.escaped_rest(&mut owned)?;
        Ok(Cow::Owned(owned))
    }

    /// The rest of a string that has escapes, from the first backslash on.
    fn escaped_rest(&mut self, out: &mut String) -> Result<(), FoldError> {
        loop {
            let rest = &self.text[self.at..];
            let c = rest.chars().next().ok_or(MALFORMED)?;
            self.at += c.len_utf8();
            match c {
                '"' => return Ok(()),
                '\\' => {
                    let escape = self
                        .text
                        .as_bytes()
                        .get(self.at)
                        .copied()
                        .ok_or(MALFORMED)?;
                    self.at += 1;
                    out.push(match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(MALFORMED),
                    });
                }
                c if (c as u32) < 0x20 => return Err(MALFORMED),
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, FoldError> {
        let digits = self.text.get(self.at..self.at + 4).ok_or(MALFORMED)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MALFORMED);
        }
        self.at += 4;
        u32::from_str_radix(digits, 16).map_err(|_| MALFORMED)
    }

    /// After `\u`: one code point; a surrogate must come as a high-low pair (a lone surrogate
    /// is not UTF-8, and Python's twin fails to encode it too).
    fn unicode_escape(&mut self) -> Result<char, FoldError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.text.as_bytes().get(self.at..self.at + 2) != Some(b"\\u") {
                    return Err(MALFORMED);
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(MALFORMED);
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(MALFORMED),
            code => code,
        };
        char::from_u32(code).ok_or(MALFORMED)
    }

    /// A JSON integer; beyond i64 gives `OUT_OF_RANGE` (the caller reports the overflow once
    /// the whole text is known to be well formed).
    fn integer(&mut self) -> Result<i128, FoldError> {
        self.skip_whitespace();
        let bytes = self.text.as_bytes();
        let negative = bytes.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let start = self.at;
        while self.at < bytes.len() && bytes[self.at].is_ascii_digit() {
            self.at += 1;
        }
        let digits = &self.text[start..self.at];
        if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
            return Err(MALFORMED);
        }
        // A fraction or exponent makes a float, which an amount never is.
        if matches!(bytes.get(self.at), Some(b'.' | b'e' | b'E')) {
            return Err(MALFORMED);
        }
        if digits.len() > INTEGER_DIGITS_MAX {
            return Ok(OUT_OF_RANGE);
        }
        let magnitude: i128 = digits.parse().map_err(|_| MALFORMED)?;
        Ok(if negative { -magnitude } else { magnitude })
    }
}
