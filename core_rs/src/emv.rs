//! EMVCo merchant-presented QR payloads (EMV QRCPS MPM v1.1): strict decode, encode,
//! per-scheme required fields and the dynamic payment payload a cashier shows.
//!
//! A payload is a run of fields `id (2 digits) | length (2 digits) | value`, where the length
//! counts characters (code points), not bytes. It ends with the CRC field `63 04 XXXX`:
//! CRC-16/CCITT-FALSE over the UTF-8 bytes of everything before `XXXX` (so including "6304"),
//! as four upper-case hex digits. Ids 26..=51, 62 and 64 are templates holding fields of their
//! own (one level deep); every other id is kept as text, so re-encoding a decoded payload gives
//! back the same string. Errors carry the 0-based character position where the problem starts.
//! The pure-Python twin is `pos_ledger/reference/emv.py`; both must give the same answers.

use crate::error::CoreError;

/// EMVCo's limit on a whole payload, in characters.
pub const PAYLOAD_CHARS_MAX: usize = 512;
/// A two-digit length field: values hold 1..=99 characters.
pub const VALUE_CHARS_MAX: usize = 99;
/// Characters of "6304XXXX".
const CRC_FIELD_CHARS: usize = 8;
/// EMVCo's limit on the amount field 54, decimal mark included.
pub const AMOUNT_CHARS_MAX: usize = 13;
/// ISO 4217 exponents in use are 0, 2 and 3.
pub const CURRENCY_EXPONENT_MAX: i64 = 3;

/// A field's value: text, or for template ids the sub-fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<S> {
    Text(S),
    Template(Vec<(S, S)>),
}

/// `(id, value)`, the shape both `decode` returns and `encode` takes.
pub type Field<S> = (S, Value<S>);

fn error(message: impl Into<String>, position: usize) -> CoreError {
    CoreError::emv(message, Some(position))
}

/// Ids whose value is always a nested run of fields.
pub fn is_template_id(id: &str) -> bool {
    matches!(id_number(id), Some(26..=51 | 62 | 64))
}

/// The id as a number, if it is two ASCII digits.
fn id_number(id: &str) -> Option<u8> {
    is_id(id).then(|| id.bytes().fold(0, |n, b| n * 10 + (b - b'0')))
}

fn is_id(id: &str) -> bool {
    id.len() == 2 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Control characters (Unicode category Cc) never belong in a payload.
pub fn is_forbidden_char(c: char) -> bool {
    c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c)
}

/// Characters in `s`; payloads are mostly ASCII, where that is the byte length.
fn char_count(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// Two ASCII digits for a length of at most 99.
fn two_digit_text(n: usize) -> [u8; 2] {
    [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]
}

/// `CRC_TABLES[k][b]`: what byte `b` followed by `k` zero bytes adds to the CRC, so four
/// bytes are folded in with four independent lookups (slicing-by-4).
const CRC_TABLES: [[u16; 256]; 4] = crc_tables();

const fn crc_tables() -> [[u16; 256]; 4] {
    let first = crc_table();
    let mut tables = [first; 4];
    let mut k = 1;
    while k < 4 {
        let mut i = 0;
        while i < 256 {
            let previous = tables[k - 1][i];
            tables[k][i] = (previous << 8) ^ first[(previous >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
}

const fn crc_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor.
pub fn crc16(data: &[u8]) -> u16 {
    let [t0, t1, t2, t3] = &CRC_TABLES;
    let mut chunks = data.chunks_exact(4);
    let mut crc = 0xFFFF;
    for chunk in &mut chunks {
        let x = crc ^ u16::from_be_bytes([chunk[0], chunk[1]]);
        crc = t3[usize::from(x >> 8)]
            ^ t2[usize::from(x & 0xFF)]
            ^ t1[usize::from(chunk[2])]
            ^ t0[usize::from(chunk[3])];
    }
    chunks.remainder().iter().fold(crc, |crc, &b| {
        (crc << 8) ^ t0[usize::from((crc >> 8) as u8 ^ b)]
    })
}

fn crc_hex(data: &[u8]) -> [u8; 4] {
    let crc = crc16(data);
    let digits = b"0123456789ABCDEF";
    [12, 8, 4, 0].map(|shift| digits[usize::from((crc >> shift) as u8 & 0xF)])
}

/// A place in the payload, as a byte offset and a character offset.
#[derive(Clone, Copy)]
struct Pos {
    byte: usize,
    char: usize,
}

impl Pos {
    /// `count` characters further on; the caller has checked they exist.
    fn advance(self, s: &str, count: usize) -> Pos {
        let rest = &s.as_bytes()[self.byte..];
        let bytes = match rest.get(..count) {
            Some(head) if head.is_ascii() => count,
            _ => s[self.byte..].chars().take(count).map(char::len_utf8).sum(),
        };
        Pos {
            byte: self.byte + bytes,
            char: self.char + count,
        }
    }
}

fn check_text(value: &str, id: &str, start_char: usize) -> Result<(), CoreError> {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(()); // printable ASCII, the common case
    }
    match value.chars().position(is_forbidden_char) {
        None => Ok(()),
        Some(i) => {
            let c = value.chars().nth(i).unwrap_or_default();
            Err(error(
                format!(
                    "control character U+{:04X} in the value of field {id}",
                    u32::from(c)
                ),
                start_char + i,
            ))
        }
    }
}

fn two_digits(bytes: &[u8], at: usize) -> Option<usize> {
    let (a, b) = (*bytes.get(at)?, *bytes.get(at + 1)?);
    (a.is_ascii_digit() && b.is_ascii_digit())
        .then(|| usize::from(a - b'0') * 10 + usize::from(b - b'0'))
}

/// The fields between `at` and `end`; `top` is the payload itself (templates and CRC rules apply).
fn parse_fields(s: &str, mut at: Pos, end: Pos, top: bool) -> Result<Vec<Field<&str>>, CoreError> {
    let bytes = s.as_bytes();
    let mut fields = Vec::with_capacity(if top { 16 } else { 4 });
    while at.byte < end.byte {
        if end.char - at.char < 4 {
            return Err(error(
                "truncated field: an id and a length need 4 characters",
                at.char,
            ));
        }
        if two_digits(bytes, at.byte).is_none() {
            return Err(error("field id is not two digits", at.char));
        }
        let id = &s[at.byte..at.byte + 2];
        let length = two_digits(bytes, at.byte + 2).ok_or_else(|| {
            error(
                format!("length of field {id} is not two digits"),
                at.char + 2,
            )
        })?;
        if length == 0 {
            return Err(error(format!("field {id} has length 00"), at.char + 2));
        }
        if top && id == "63" && length != 4 {
            return Err(error(
                format!("CRC field 63 has length {length:02}, not 04"),
                at.char + 2,
            ));
        }
        let start = Pos {
            byte: at.byte + 4,
            char: at.char + 4,
        };
        let left = end.char - start.char;
        if length > left {
            return Err(error(
                format!("field {id} has length {length:02} but only {left} characters follow"),
                at.char + 2,
            ));
        }
        let stop = start.advance(s, length);
        if top && id == "63" && stop.byte != end.byte {
            return Err(error("CRC field 63 is not the last field", at.char));
        }
        let value = if top && is_template_id(id) {
            Value::Template(parse_subfields(s, start, stop)?)
        } else {
            check_text(&s[start.byte..stop.byte], id, start.char)?;
            Value::Text(&s[start.byte..stop.byte])
        };
        fields.push((id, value));
        at = stop;
    }
    Ok(fields)
}

fn parse_subfields(s: &str, start: Pos, stop: Pos) -> Result<Vec<(&str, &str)>, CoreError> {
    let nested = parse_fields(s, start, stop, false)?;
    Ok(nested
        .into_iter()
        .map(|(id, value)| match value {
            Value::Text(text) => (id, text),
            Value::Template(_) => unreachable!("templates nest one level deep"),
        })
        .collect())
}

/// Strictly parse a payload: every length two digits and within its parent, templates consumed
/// exactly, the CRC field present, last, of length 04 and matching. The CRC field is kept as the
/// last element.
pub fn decode(payload: &str) -> Result<Vec<Field<&str>>, CoreError> {
    let chars = char_count(payload);
    if chars > PAYLOAD_CHARS_MAX {
        return Err(error(
            format!("payload longer than {PAYLOAD_CHARS_MAX} characters"),
            PAYLOAD_CHARS_MAX,
        ));
    }
    let end = Pos {
        byte: payload.len(),
        char: chars,
    };
    let fields = parse_fields(payload, Pos { byte: 0, char: 0 }, end, true)?;
    let crc = match fields.last() {
        Some(("63", Value::Text(crc))) => *crc,
        _ => return Err(error("missing CRC field 63 at the end", chars)),
    };
    if let Some(i) = crc
        .bytes()
        .position(|b| !matches!(b, b'0'..=b'9' | b'A'..=b'F'))
    {
        return Err(error(
            "CRC is not four upper-case hex digits",
            chars - 4 + i,
        ));
    }
    let computed = crc_hex(&payload.as_bytes()[..payload.len() - 4]);
    if crc.as_bytes() != computed {
        let computed = String::from_utf8_lossy(&computed);
        return Err(error(
            format!("CRC mismatch: payload says {crc}, computed {computed}"),
            chars - 4,
        ));
    }
    Ok(fields)
}

fn push_text_field(
    out: &mut String,
    chars: &mut usize,
    id: &str,
    value: &str,
) -> Result<(), CoreError> {
    if !is_id(id) {
        return Err(error(format!("field id '{id}' is not two digits"), *chars));
    }
    let length = char_count(value);
    if length == 0 || length > VALUE_CHARS_MAX {
        return Err(error(
            format!("value of field {id} has {length} characters, not 1..=99"),
            *chars,
        ));
    }
    check_text(value, id, *chars + 4)?;
    out.push_str(id);
    out.push_str(std::str::from_utf8(&two_digit_text(length)).unwrap_or("00"));
    out.push_str(value);
    *chars += 4 + length;
    Ok(())
}

fn push_template<S: AsRef<str>>(
    out: &mut String,
    chars: &mut usize,
    id: &str,
    subfields: &[(S, S)],
) -> Result<(), CoreError> {
    let (start_byte, start_char) = (out.len(), *chars);
    out.push_str(id);
    out.push_str("00");
    *chars += 4;
    for (sub_id, sub_value) in subfields {
        push_text_field(out, chars, sub_id.as_ref(), sub_value.as_ref())?;
    }
    let length = *chars - start_char - 4;
    if length == 0 || length > VALUE_CHARS_MAX {
        return Err(error(
            format!("template {id} has {length} characters, not 1..=99"),
            start_char,
        ));
    }
    let digits = two_digit_text(length);
    out.replace_range(
        start_byte + 2..start_byte + 4,
        std::str::from_utf8(&digits).unwrap_or("00"),
    );
    Ok(())
}

/// The payload for `fields` with its CRC appended. A trailing ("63", ...) field is ignored (the
/// CRC is always recomputed); a 63 anywhere else is an error. Template ids need sub-fields,
/// other ids text; every value has 1..=99 characters and no control character.
pub fn encode<S: AsRef<str>>(fields: &[Field<S>]) -> Result<String, CoreError> {
    let mut out = String::with_capacity(128);
    let mut chars = 0usize;
    for (i, (id, value)) in fields.iter().enumerate() {
        let id = id.as_ref();
        if !is_id(id) {
            return Err(error(format!("field id '{id}' is not two digits"), chars));
        }
        if id == "63" {
            if i + 1 == fields.len() {
                break;
            }
            return Err(error("CRC field 63 may only come last", chars));
        }
        match (is_template_id(id), value) {
            (true, Value::Template(subfields)) => {
                push_template(&mut out, &mut chars, id, subfields)?
            }
            (false, Value::Text(text)) => push_text_field(&mut out, &mut chars, id, text.as_ref())?,
            (true, Value::Text(_)) => {
                return Err(error(
                    format!("field {id} is a template: give a list of (id, value)"),
                    chars,
                ))
            }
            (false, Value::Template(_)) => {
                return Err(error(
                    format!("field {id} is not a template: give a string"),
                    chars,
                ))
            }
        }
    }
    if chars + CRC_FIELD_CHARS > PAYLOAD_CHARS_MAX {
        return Err(error(
            format!("payload longer than {PAYLOAD_CHARS_MAX} characters"),
            PAYLOAD_CHARS_MAX,
        ));
    }
    out.push_str("6304");
    let crc = crc_hex(out.as_bytes());
    out.push_str(std::str::from_utf8(&crc).unwrap_or_default());
    Ok(out)
}

/// Schemes `validate` knows, each with its required fields (see `validate`).
pub const SCHEMES: [&str; 5] = ["emvco", "pix", "promptpay", "vietqr", "unionpay"];

/// Where each top-level field would start in the encoded payload, and where the CRC field goes.
fn offsets<S: AsRef<str>>(fields: &[Field<S>]) -> (Vec<usize>, usize) {
    let mut at = 0;
    let mut starts = Vec::with_capacity(fields.len());
    let mut end = None;
    for (id, value) in fields {
        starts.push(at);
        if id.as_ref() == "63" && end.is_none() {
            end = Some(at);
        }
        at += 4 + match value {
            Value::Text(text) => char_count(text.as_ref()),
            Value::Template(subs) => subs.iter().map(|(_, v)| 4 + char_count(v.as_ref())).sum(),
        };
    }
    (starts, end.unwrap_or(at))
}

struct Fields<'f, S> {
    fields: &'f [Field<S>],
    starts: Vec<usize>,
    end: usize,
    scheme: &'f str,
}

impl<'f, S: AsRef<str>> Fields<'f, S> {
    fn text(&self, id: &str) -> Option<(usize, &'f str)> {
        self.fields
            .iter()
            .zip(&self.starts)
            .find_map(|((i, v), &at)| match v {
                Value::Text(t) if i.as_ref() == id => Some((at, t.as_ref())),
                _ => None,
            })
    }

    /// The GUI (sub-field 00) of each template among `ids`, with the template's position.
    fn guis(
        &self,
        ids: std::ops::RangeInclusive<u8>,
    ) -> impl Iterator<Item = (usize, &'f str)> + '_ {
        self.fields
            .iter()
            .zip(&self.starts)
            .filter_map(move |((i, v), &at)| match v {
                Value::Template(subs)
                    if id_number(i.as_ref()).is_some_and(|n| ids.contains(&n)) =>
                {
                    subs.iter()
                        .find(|(s, _)| s.as_ref() == "00")
                        .map(|(_, gui)| (at, gui.as_ref()))
                }
                _ => None,
            })
    }

    fn missing(&self, what: &str) -> CoreError {
        error(format!("{}: {what} is required", self.scheme), self.end)
    }

    fn require(&self, id: &str) -> Result<(usize, &'f str), CoreError> {
        self.text(id)
            .ok_or_else(|| self.missing(&format!("field {id}")))
    }

    fn require_equal(&self, id: &str, expected: &str) -> Result<(), CoreError> {
        let (at, value) = self.require(id)?;
        if value == expected {
            return Ok(());
        }
        Err(error(
            format!("{}: field {id} is '{value}', not '{expected}'", self.scheme),
            at,
        ))
    }

    fn require_gui(
        &self,
        ids: std::ops::RangeInclusive<u8>,
        ok: impl Fn(&str) -> bool,
        what: &str,
    ) -> Result<(), CoreError> {
        match self.guis(ids).any(|(_, gui)| ok(gui)) {
            true => Ok(()),
            false => Err(self.missing(what)),
        }
    }
}

fn check_syntax(id: &str, value: &str) -> Option<&'static str> {
    let digits = |n: usize| value.len() == n && value.bytes().all(|b| b.is_ascii_digit());
    match id {
        "01" if value != "11" && value != "12" => Some("point of initiation (01) is '11' or '12'"),
        "52" if !digits(4) => Some("merchant category code (52) is 4 digits"),
        "53" if !digits(3) => Some("currency (53) is 3 digits (ISO 4217 numeric)"),
        "54" if !is_amount(value) => {
            Some("amount (54) is up to 13 characters: digits, optionally '.' and digits")
        }
        "58" if !(value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase())) => {
            Some("country (58) is 2 upper-case letters (ISO 3166-1 alpha-2)")
        }
        _ => None,
    }
}

fn is_amount(value: &str) -> bool {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    value.len() <= AMOUNT_CHARS_MAX && all_digits(whole) && all_digits(fraction)
}

fn check_emvco<S: AsRef<str>>(f: &Fields<'_, S>) -> Result<(), CoreError> {
    match f.fields.first() {
        Some((id, Value::Text(v))) if id.as_ref() == "00" && v.as_ref() == "01" => {}
        _ => {
            return Err(error(
                format!("{}: field 00 = '01' must come first", f.scheme),
                0,
            ))
        }
    }
    for id in ["52", "53", "58", "59", "60"] {
        f.require(id)?;
    }
    let has_account = f
        .fields
        .iter()
        .any(|(id, _)| id_number(id.as_ref()).is_some_and(|n| (2..=51).contains(&n)));
    match has_account {
        true => Ok(()),
        false => Err(f.missing("a merchant account field (02..=51)")),
    }
}

fn check_scheme<S: AsRef<str>>(f: &Fields<'_, S>) -> Result<(), CoreError> {
    match f.scheme {
        "emvco" => check_emvco(f),
        "pix" => {
            f.require_gui(
                26..=51,
                |g| g.eq_ignore_ascii_case("br.gov.bcb.pix"),
                "a template 26..=51 with GUI br.gov.bcb.pix",
            )?;
            for id in ["52", "59", "60"] {
                f.require(id)?;
            }
            f.require_equal("53", "986")?;
            f.require_equal("58", "BR")
        }
        "promptpay" => {
            let credit = f.guis(29..=29).any(|(_, g)| g == "A000000677010111");
            let bill = f.guis(30..=30).any(|(_, g)| g == "A000000677010112");
            if !(credit || bill) {
                return Err(
                    f.missing("template 29 (GUI A000000677010111) or 30 (GUI A000000677010112)")
                );
            }
            f.require_equal("53", "764")?;
            f.require_equal("58", "TH")
        }
        "vietqr" => {
            f.require_gui(
                38..=38,
                |g| g == "A000000727",
                "template 38 with GUI A000000727",
            )?;
            f.require_equal("53", "704")?;
            f.require_equal("58", "VN")
        }
        "unionpay" => {
            check_emvco(f)?;
            let primitive = f.text("15").is_some() || f.text("16").is_some();
            let template = f
                .guis(26..=51)
                .any(|(_, g)| g.starts_with("A000000333") || g.starts_with("D156"));
            match primitive || template {
                true => Ok(()),
                false => Err(f.missing(
                    "field 15/16 or a template 26..=51 with GUI A000000333... or D156...",
                )),
            }
        }
        other => Err(CoreError::invalid(format!(
            "unknown EMV scheme '{other}'; known: {}",
            SCHEMES.join(", ")
        ))),
    }
}

/// Check field syntax everywhere (01, 52, 53, 54, 58 when present), then the fields `scheme`
/// requires (None: syntax only). Errors name where the offending field starts in the encoded
/// payload, or where the CRC field goes when a required field is missing.
pub fn validate<S: AsRef<str>>(fields: &[Field<S>], scheme: Option<&str>) -> Result<(), CoreError> {
    let (starts, end) = offsets(fields);
    for ((id, value), &at) in fields.iter().zip(&starts) {
        if let Value::Text(text) = value {
            if let Some(rule) = check_syntax(id.as_ref(), text.as_ref()) {
                return Err(error(format!("{rule}, got '{}'", text.as_ref()), at));
            }
        }
    }
    match scheme {
        None => Ok(()),
        Some(scheme) => check_scheme(&Fields {
            fields,
            starts,
            end,
            scheme,
        }),
    }
}

/// What a cashier's dynamic payment QR says. Amounts are integer minor units.
#[derive(Debug, Clone)]
pub struct PaymentRequest<'a> {
    /// Template id 26..=51 of the merchant account, and its sub-fields (GUI in 00 first).
    pub merchant_account_id: &'a str,
    pub merchant_account: &'a [(&'a str, &'a str)],
    /// ISO 18245 merchant category code, 4 digits.
    pub mcc: &'a str,
    /// ISO 4217 numeric currency code, 3 digits, and its exponent (0..=3).
    pub currency_numeric: &'a str,
    pub currency_exponent: i64,
    pub amount_minor: i64,
    /// ISO 3166-1 alpha-2.
    pub country: &'a str,
    /// At most 25 characters (59), 15 (60) and 25 (62/05), as EMVCo sets.
    pub merchant_name: &'a str,
    pub merchant_city: &'a str,
    pub reference_label: &'a str,
}

/// `amount_minor` as a decimal string with `exponent` digits after the point: 12345, 2 -> "123.45".
pub fn format_amount(amount_minor: i64, exponent: i64) -> Result<String, CoreError> {
    if amount_minor < 1 {
        return Err(CoreError::emv(
            format!("amount_minor must be at least 1, got {amount_minor}"),
            None,
        ));
    }
    if !(0..=CURRENCY_EXPONENT_MAX).contains(&exponent) {
        return Err(CoreError::emv(
            format!("currency_exponent is 0..={CURRENCY_EXPONENT_MAX}, got {exponent}"),
            None,
        ));
    }
    let digits = format!("{amount_minor:0width$}", width = exponent as usize + 1);
    let amount = match exponent {
        0 => digits,
        e => {
            let (whole, fraction) = digits.split_at(digits.len() - e as usize);
            format!("{whole}.{fraction}")
        }
    };
    if amount.len() > AMOUNT_CHARS_MAX {
        return Err(CoreError::emv(
            format!("amount {amount} is longer than {AMOUNT_CHARS_MAX} characters"),
            None,
        ));
    }
    Ok(amount)
}

fn check_length(name: &str, value: &str, max: usize) -> Result<(), CoreError> {
    let length = value.chars().count();
    match (1..=max).contains(&length) {
        true => Ok(()),
        false => Err(CoreError::emv(
            format!("{name} has {length} characters, not 1..={max}"),
            None,
        )),
    }
}

/// The dynamic (point of initiation 12) payment payload: 00, 01, the merchant account
/// template, 52, 53, 54, 58, 59, 60, 62 (05 = reference label), 63. Checked with the
/// "emvco" scheme before it is returned.
pub fn payment_payload(request: &PaymentRequest<'_>) -> Result<String, CoreError> {
    let amount = format_amount(request.amount_minor, request.currency_exponent)?;
    if !matches!(id_number(request.merchant_account_id), Some(26..=51)) {
        let id = request.merchant_account_id;
        return Err(CoreError::emv(
            format!("merchant_account_tag is 26..=51, got '{id}'"),
            None,
        ));
    }
    check_length("merchant_name", request.merchant_name, 25)?;
    check_length("merchant_city", request.merchant_city, 15)?;
    check_length("reference_label", request.reference_label, 25)?;
    let fields: Vec<Field<&str>> = vec![
        ("00", Value::Text("01")),
        ("01", Value::Text("12")),
        (
            request.merchant_account_id,
            Value::Template(request.merchant_account.to_vec()),
        ),
        ("52", Value::Text(request.mcc)),
        ("53", Value::Text(request.currency_numeric)),
        ("54", Value::Text(&amount)),
        ("58", Value::Text(request.country)),
        ("59", Value::Text(request.merchant_name)),
        ("60", Value::Text(request.merchant_city)),
        ("62", Value::Template(vec![("05", request.reference_label)])),
    ];
    let payload = encode(&fields)?;
    validate(&fields, Some("emvco"))?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published payloads of shared/testdata (read at run time, as sig.rs reads its vectors).
    fn samples() -> Vec<(String, bool)> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/emv/mpm_samples.json"
        );
        let text = std::fs::read_to_string(path).expect("shared/testdata beside the checkout");
        let json: serde_json::Value = serde_json::from_str(&text).expect("samples parse");
        json["samples"]
            .as_array()
            .expect("samples array")
            .iter()
            .map(|s| {
                (
                    s["payload"].as_str().unwrap().to_owned(),
                    s["crc_ok"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    fn position(result: Result<impl std::fmt::Debug, CoreError>) -> Option<usize> {
        match result {
            Err(CoreError::Emv { position, .. }) => position,
            other => panic!("expected an EMV error, got {other:?}"),
        }
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
        // every remainder length against the bytewise definition
        let data: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x5A).collect();
        for n in 0..data.len() {
            let bitwise = data[..n].iter().fold(0xFFFFu16, |mut crc, &b| {
                crc ^= u16::from(b) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x1021
                    } else {
                        crc << 1
                    };
                }
                crc
            });
            assert_eq!(crc16(&data[..n]), bitwise, "{n} bytes");
        }
    }

    #[test]
    fn every_sample_round_trips_and_the_control_is_rejected() {
        let all = samples();
        assert!(all.len() >= 8);
        for (payload, ok) in all {
            match ok {
                true => assert_eq!(encode(&decode(&payload).unwrap()).unwrap(), payload),
                false => assert_eq!(
                    position(decode(&payload)),
                    Some(payload.chars().count() - 4)
                ),
            }
        }
    }

    #[test]
    fn lengths_count_characters_and_templates_nest() {
        let (payload, _) = samples().remove(0);
        let fields = decode(&payload).unwrap();
        let language = fields.iter().find(|(id, _)| *id == "64").unwrap();
        assert_eq!(
            language.1,
            Value::Template(vec![("00", "ZH"), ("01", "最佳运输"), ("02", "北京")])
        );
        assert_eq!(fields.last().unwrap(), &("63", Value::Text("A13A")));
        assert!(matches!(
            fields.iter().find(|(id, _)| *id == "91").unwrap().1,
            Value::Text(_)
        ));
        validate(&fields, Some("emvco")).unwrap();
        validate(&fields, Some("unionpay")).unwrap();
    }

    #[test]
    fn structural_errors_name_their_position() {
        assert_eq!(position(decode("")), Some(0));
        assert_eq!(position(decode("0002016304")), Some(8));
        assert_eq!(position(decode("0A0201")), Some(0));
        assert_eq!(position(decode("000X01")), Some(2));
        assert_eq!(position(decode("000901")), Some(2));
        assert_eq!(position(decode("0000")), Some(2));
        assert_eq!(position(decode("00020163041D3Dxx")), Some(6));
        assert_eq!(position(decode("000201")), Some(6));
        assert_eq!(position(decode("0002\u{1}1")), Some(4));
        // template 62 of length 05 holding "0503*" : its sub-field overruns by one character
        assert_eq!(position(decode("62050503*")), Some(6));
    }

    #[test]
    fn encode_rejects_what_decode_would() {
        assert_eq!(position(encode(&[("0", Value::Text("01"))])), Some(0));
        assert_eq!(position(encode(&[("00", Value::Text(""))])), Some(0));
        assert_eq!(position(encode(&[("00", Value::Text("0\n"))])), Some(5));
        assert_eq!(
            position(encode(&[
                ("00", Value::Text("01")),
                ("26", Value::Text("x"))
            ])),
            Some(6)
        );
        assert_eq!(
            position(encode(&[
                ("63", Value::Text("0000")),
                ("00", Value::Text("01"))
            ])),
            Some(0)
        );
        let long = "x".repeat(100);
        assert_eq!(
            position(encode(&[("00", Value::Text(long.as_str()))])),
            Some(0)
        );
    }

    #[test]
    fn payment_payload_is_dynamic_and_valid() {
        let account = [("00", "A000000333"), ("01", "0123456789")];
        let request = PaymentRequest {
            merchant_account_id: "26",
            merchant_account: &account,
            mcc: "5812",
            currency_numeric: "156",
            currency_exponent: 2,
            amount_minor: 12345,
            country: "CN",
            merchant_name: "星巴克",
            merchant_city: "上海",
            reference_label: "ORDER-1",
        };
        let payload = payment_payload(&request).unwrap();
        let fields = decode(&payload).unwrap();
        assert!(fields.contains(&("01", Value::Text("12"))));
        assert!(fields.contains(&("54", Value::Text("123.45"))));
        assert!(fields.contains(&("62", Value::Template(vec![("05", "ORDER-1")]))));
        validate(&fields, Some("unionpay")).unwrap();
        assert_eq!(format_amount(5, 2).unwrap(), "0.05");
        assert_eq!(format_amount(123, 0).unwrap(), "123");
        assert_eq!(format_amount(1, 3).unwrap(), "0.001");
        assert!(format_amount(0, 2).is_err());
        assert!(format_amount(10_i64.pow(12), 2).is_err());
    }

    #[test]
    fn schemes_require_their_own_fields() {
        let all = samples();
        let scheme_of = |p: &str| match p {
            _ if p.contains("br.gov.bcb.pix") => "pix",
            _ if p.contains("A000000677") => "promptpay",
            _ if p.contains("A000000727") => "vietqr",
            _ => "emvco",
        };
        for (payload, _) in all.iter().filter(|(_, ok)| *ok) {
            let fields = decode(payload).unwrap();
            validate(&fields, None).unwrap();
            validate(&fields, Some(scheme_of(payload))).unwrap();
        }
        let promptpay = decode(&all[2].0).unwrap();
        assert_eq!(position(validate(&promptpay, Some("emvco"))), Some(66));
        assert!(matches!(
            validate(&promptpay, Some("nope")),
            Err(CoreError::Invalid { .. })
        ));
    }
}
