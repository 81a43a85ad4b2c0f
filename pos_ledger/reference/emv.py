"""Pure-Python twin of core_rs/src/emv.rs: EMVCo merchant-presented QR payloads.

Same names, answers, error messages and error positions as `pos_ledger._core`'s `emv_*`
functions. A payload is a run of fields `id (2 digits) | length (2 digits) | value`; the length
counts characters (code points). It ends with `6304XXXX`: CRC-16/CCITT-FALSE over the UTF-8
bytes of everything before `XXXX`, four upper-case hex digits. Ids 26..=51, 62 and 64 are
templates (one level of sub-fields); every other id is kept as text.

One difference by construction: a str holding a lone surrogate cannot cross into Rust, so the
compiled functions raise UnicodeEncodeError (a ValueError) where this twin raises EmvError.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Sequence
from typing import Union

PAYLOAD_CHARS_MAX = 512
VALUE_CHARS_MAX = 99
AMOUNT_CHARS_MAX = 13
CURRENCY_EXPONENT_MAX = 3
CRC_FIELD_CHARS = 8
SCHEMES = ("emvco", "pix", "promptpay", "vietqr", "unionpay")

Subfields = list[tuple[str, str]]
Value = Union[str, Subfields]  # noqa: UP007 - a runtime alias, kept readable for Python 3.11
Fields = list[tuple[str, Value]]


class EmvError(ValueError):
    """A payload or field list breaks the format or a scheme's rules.

    `position` is the 0-based character position where the problem starts, or None for a bad
    argument; the message names it as "(at position N)".
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} (at position {position})")
        self.position = position


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF); check value 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)


def _crc_hex(text: str) -> str:
    return f"{crc16(text.encode('utf-8')):04X}"


def _is_id(text: str) -> bool:
    return len(text) == 2 and all("0" <= c <= "9" for c in text)


def is_template_id(field_id: str) -> bool:
    return _is_id(field_id) and (26 <= int(field_id) <= 51 or field_id in ("62", "64"))


def is_forbidden_char(c: str) -> bool:
    """Control characters (Unicode category Cc), and lone surrogates (not UTF-8 encodable)."""
    return c < " " or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\udfff"


def _check_text(value: str, field_id: str, start: int) -> None:
    for i, c in enumerate(value):
        if is_forbidden_char(c):
            raise EmvError(f"control character U+{ord(c):04X} in the value of field {field_id}", start + i)


def _parse_fields(s: str, at: int, end: int, top: bool) -> Fields:
    fields: Fields = []
    while at < end:
        if end - at < 4:
            raise EmvError("truncated field: an id and a length need 4 characters", at)
        field_id = s[at : at + 2]
        if not _is_id(field_id):
            raise EmvError("field id is not two digits", at)
        length_text = s[at + 2 : at + 4]
        if not _is_id(length_text):
            raise EmvError(f"length of field {field_id} is not two digits", at + 2)
        length = int(length_text)
        if length == 0:
            raise EmvError(f"field {field_id} has length 00", at + 2)
        if top and field_id == "63" and length != 4:
            raise EmvError(f"CRC field 63 has length {length:02}, not 04", at + 2)
        start = at + 4
        left = end - start
        if length > left:
            raise EmvError(f"field {field_id} has length {length:02} but only {left} characters follow", at + 2)
        stop = start + length
        if top and field_id == "63" and stop != end:
            raise EmvError("CRC field 63 is not the last field", at)
        value: Value
        if top and is_template_id(field_id):
            value = [(i, v) for i, v in _parse_fields(s, start, stop, False) if isinstance(v, str)]
        else:
            value = s[start:stop]
            _check_text(value, field_id, start)
        fields.append((field_id, value))
        at = stop
    return fields


def emv_decode(payload: str) -> Fields:
    """Strictly parse a payload into [(id, value)], the CRC field ("63", "XXXX") kept last."""
    chars = len(payload)
    if chars > PAYLOAD_CHARS_MAX:
        raise EmvError(f"payload longer than {PAYLOAD_CHARS_MAX} characters", PAYLOAD_CHARS_MAX)
    fields = _parse_fields(payload, 0, chars, True)
    if not fields or fields[-1][0] != "63" or not isinstance(fields[-1][1], str):
        raise EmvError("missing CRC field 63 at the end", chars)
    crc = fields[-1][1]
    for i, c in enumerate(crc):
        if c not in "0123456789ABCDEF":
            raise EmvError("CRC is not four upper-case hex digits", chars - 4 + i)
    computed = _crc_hex(payload[:-4])
    if crc != computed:
        raise EmvError(f"CRC mismatch: payload says {crc}, computed {computed}", chars - 4)
    return fields


def _text_field(field_id: str, value: str, at: int) -> str:
    if not _is_id(field_id):
        raise EmvError(f"field id '{field_id}' is not two digits", at)
    length = len(value)
    if length == 0 or length > VALUE_CHARS_MAX:
        raise EmvError(f"value of field {field_id} has {length} characters, not 1..=99", at)
    _check_text(value, field_id, at + 4)
    return f"{field_id}{length:02}{value}"


def _template(field_id: str, subfields: Subfields, at: int) -> str:
    body = ""
    for sub_id, sub_value in subfields:
        body += _text_field(sub_id, sub_value, at + 4 + len(body))
    if len(body) == 0 or len(body) > VALUE_CHARS_MAX:
        raise EmvError(f"template {field_id} has {len(body)} characters, not 1..=99", at)
    return f"{field_id}{len(body):02}{body}"


def _typed(fields: Iterable[object]) -> list[tuple[str, Value]]:
    """The same type checks the Rust wrapper's extraction makes (TypeError otherwise)."""
    out: list[tuple[str, Value]] = []
    for item in fields:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError("each field is a tuple (id: str, value)")
        field_id, value = item
        if isinstance(value, str):
            out.append((field_id, value))
            continue
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError("a field value is a str or a sequence of (id, value) tuples")
        subfields: Subfields = []
        for sub in value:
            if not (isinstance(sub, tuple) and len(sub) == 2 and all(isinstance(x, str) for x in sub)):
                raise TypeError("each sub-field is a tuple (id: str, value: str)")
            subfields.append((sub[0], sub[1]))
        out.append((field_id, subfields))
    return out


def emv_encode(fields: Iterable[tuple[str, Value]]) -> str:
    """The payload for `fields` with its CRC appended; a trailing ("63", ...) field is ignored."""
    checked = _typed(fields)
    out = ""
    for i, (field_id, value) in enumerate(checked):
        at = len(out)
        if not _is_id(field_id):
            raise EmvError(f"field id '{field_id}' is not two digits", at)
        if field_id == "63":
            if i + 1 == len(checked):
                break
            raise EmvError("CRC field 63 may only come last", at)
        template = is_template_id(field_id)
        if template and isinstance(value, list):
            out += _template(field_id, value, at)
        elif not template and isinstance(value, str):
            out += _text_field(field_id, value, at)
        elif template:
            raise EmvError(f"field {field_id} is a template: give a list of (id, value)", at)
        else:
            raise EmvError(f"field {field_id} is not a template: give a string", at)
    if len(out) + CRC_FIELD_CHARS > PAYLOAD_CHARS_MAX:
        raise EmvError(f"payload longer than {PAYLOAD_CHARS_MAX} characters", PAYLOAD_CHARS_MAX)
    out += "6304"
    return out + _crc_hex(out)


# --- per-scheme required fields ----------------------------------------------------------------


def _is_amount(value: str) -> bool:
    whole, _, fraction = value.partition(".")
    if "." not in value:
        fraction = "0"

    def digits(s: str) -> bool:
        return s != "" and all("0" <= c <= "9" for c in s)

    return len(value.encode("utf-8")) <= AMOUNT_CHARS_MAX and digits(whole) and digits(fraction)


def _digits(value: str, n: int) -> bool:
    return len(value) == n and all("0" <= c <= "9" for c in value)


def _syntax_rule(field_id: str, value: str) -> str | None:
    if field_id == "01" and value not in ("11", "12"):
        return "point of initiation (01) is '11' or '12'"
    if field_id == "52" and not _digits(value, 4):
        return "merchant category code (52) is 4 digits"
    if field_id == "53" and not _digits(value, 3):
        return "currency (53) is 3 digits (ISO 4217 numeric)"
    if field_id == "54" and not _is_amount(value):
        return "amount (54) is up to 13 characters: digits, optionally '.' and digits"
    if field_id == "58" and not (len(value) == 2 and all("A" <= c <= "Z" for c in value)):
        return "country (58) is 2 upper-case letters (ISO 3166-1 alpha-2)"
    return None


class _Checker:
    def __init__(self, fields: list[tuple[str, Value]], scheme: str) -> None:
        self.fields = fields
        self.scheme = scheme
        self.starts: list[int] = []
        at, end = 0, None
        for field_id, value in fields:
            self.starts.append(at)
            if field_id == "63" and end is None:
                end = at
            at += 4 + (len(value) if isinstance(value, str) else sum(4 + len(v) for _, v in value))
        self.end = at if end is None else end

    def text(self, field_id: str) -> tuple[int, str] | None:
        for (i, v), at in zip(self.fields, self.starts, strict=True):
            if i == field_id and isinstance(v, str):
                return at, v
        return None

    def missing(self, what: str) -> EmvError:
        return EmvError(f"{self.scheme}: {what} is required", self.end)

    def require(self, field_id: str) -> tuple[int, str]:
        found = self.text(field_id)
        if found is None:
            raise self.missing(f"field {field_id}")
        return found

    def require_equal(self, field_id: str, expected: str) -> None:
        at, value = self.require(field_id)
        if value != expected:
            raise EmvError(f"{self.scheme}: field {field_id} is '{value}', not '{expected}'", at)


def _is_number_in(field_id: str, low: int, high: int) -> bool:
    return _is_id(field_id) and low <= int(field_id) <= high


def _first_gui(subfields: Subfields) -> str | None:
    return next((gui for s, gui in subfields if s == "00"), None)


def _template_guis(f: _Checker, low: int, high: int) -> list[str]:
    guis = []
    for i, v in f.fields:
        if isinstance(v, list) and _is_number_in(i, low, high):
            gui = _first_gui(v)
            if gui is not None:
                guis.append(gui)
    return guis


def _check_emvco(f: _Checker) -> None:
    first = f.fields[0] if f.fields else None
    if first is None or first[0] != "00" or first[1] != "01":
        raise EmvError(f"{f.scheme}: field 00 = '01' must come first", 0)
    for field_id in ("52", "53", "58", "59", "60"):
        f.require(field_id)
    if not any(_is_number_in(i, 2, 51) for i, _ in f.fields):
        raise f.missing("a merchant account field (02..=51)")


def _check_scheme(f: _Checker) -> None:
    if f.scheme == "emvco":
        _check_emvco(f)
    elif f.scheme == "pix":
        if not any(g.lower() == "br.gov.bcb.pix" for g in _template_guis(f, 26, 51)):
            raise f.missing("a template 26..=51 with GUI br.gov.bcb.pix")
        for field_id in ("52", "59", "60"):
            f.require(field_id)
        f.require_equal("53", "986")
        f.require_equal("58", "BR")
    elif f.scheme == "promptpay":
        credit = "A000000677010111" in _template_guis(f, 29, 29)
        bill = "A000000677010112" in _template_guis(f, 30, 30)
        if not (credit or bill):
            raise f.missing("template 29 (GUI A000000677010111) or 30 (GUI A000000677010112)")
        f.require_equal("53", "764")
        f.require_equal("58", "TH")
    elif f.scheme == "vietqr":
        if "A000000727" not in _template_guis(f, 38, 38):
            raise f.missing("template 38 with GUI A000000727")
        f.require_equal("53", "704")
        f.require_equal("58", "VN")
    elif f.scheme == "unionpay":
        _check_emvco(f)
        primitive = f.text("15") is not None or f.text("16") is not None
        template = any(g.startswith(("A000000333", "D156")) for g in _template_guis(f, 26, 51))
        if not (primitive or template):
            raise f.missing("field 15/16 or a template 26..=51 with GUI A000000333... or D156...")
    else:
        raise ValueError(f"unknown EMV scheme '{f.scheme}'; known: {', '.join(SCHEMES)}")


def emv_validate(fields: Iterable[tuple[str, Value]], scheme: str | None = None) -> None:
    """Field syntax everywhere (01, 52, 53, 54, 58 when present), then what `scheme` requires."""
    checked = _typed(fields)
    checker = _Checker(checked, scheme or "")
    for (field_id, value), at in zip(checked, checker.starts, strict=True):
        if isinstance(value, str):
            rule = _syntax_rule(field_id, value)
            if rule is not None:
                raise EmvError(f"{rule}, got '{value}'", at)
    if scheme is not None:
        _check_scheme(checker)


# --- the cashier's dynamic payment payload ------------------------------------------------------


def format_amount(amount_minor: int, exponent: int) -> str:
    """12345, 2 -> "123.45"; 123, 0 -> "123"; integers only, never floats."""
    if not -(2**63) <= amount_minor < 2**63 or not -(2**63) <= exponent < 2**63:
        raise OverflowError("Python int too large to convert to C long")  # as the Rust wrapper says
    if amount_minor < 1:
        raise EmvError(f"amount_minor must be at least 1, got {amount_minor}")
    if not 0 <= exponent <= CURRENCY_EXPONENT_MAX:
        raise EmvError(f"currency_exponent is 0..={CURRENCY_EXPONENT_MAX}, got {exponent}")
    digits = str(amount_minor).rjust(exponent + 1, "0")
    amount = digits if exponent == 0 else f"{digits[:-exponent]}.{digits[-exponent:]}"
    if len(amount) > AMOUNT_CHARS_MAX:
        raise EmvError(f"amount {amount} is longer than {AMOUNT_CHARS_MAX} characters")
    return amount


def _check_length(name: str, value: str, limit: int) -> None:
    if not 1 <= len(value) <= limit:
        raise EmvError(f"{name} has {len(value)} characters, not 1..={limit}")


def emv_payment_payload(
    *,
    merchant_account: Sequence[tuple[str, str]],
    mcc: str,
    currency_numeric: str,
    amount_minor: int,
    currency_exponent: int,
    country: str,
    merchant_name: str,
    merchant_city: str,
    reference_label: str,
    merchant_account_tag: str = "26",
) -> str:
    """The dynamic payment payload: 00, 01=12, the merchant account template, 52, 53, 54, 58,
    59, 60, 62/05 = reference label, 63; checked with the "emvco" scheme."""
    account = list(merchant_account)
    amount = format_amount(amount_minor, currency_exponent)
    if not (_is_id(merchant_account_tag) and 26 <= int(merchant_account_tag) <= 51):
        raise EmvError(f"merchant_account_tag is 26..=51, got '{merchant_account_tag}'")
    _check_length("merchant_name", merchant_name, 25)
    _check_length("merchant_city", merchant_city, 15)
    _check_length("reference_label", reference_label, 25)
    fields: list[tuple[str, Value]] = [
        ("00", "01"),
        ("01", "12"),
        (merchant_account_tag, account),
        ("52", mcc),
        ("53", currency_numeric),
        ("54", amount),
        ("58", country),
        ("59", merchant_name),
        ("60", merchant_city),
        ("62", [("05", reference_label)]),
    ]
    payload = emv_encode(fields)
    emv_validate(fields, "emvco")
    return payload
