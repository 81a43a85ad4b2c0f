"""EMVCo merchant-presented payloads: the Rust functions and their pure-Python twin agree, on the
published samples and on anything hypothesis makes up (same results, or the same error class,
message and character position)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos_ledger import _core
from pos_ledger.reference import emv as twin

from .testdata import TESTDATA

SAMPLES = json.loads((TESTDATA / "emv" / "mpm_samples.json").read_text(encoding="utf-8"))["samples"]
VALID = [s["payload"] for s in SAMPLES if s["crc_ok"]]
INVALID = [s["payload"] for s in SAMPLES if not s["crc_ok"]]
IMPLEMENTATIONS = [pytest.param(_core, id="rust"), pytest.param(twin, id="twin")]


def outcome(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """("ok", result) or ("error", class name, message, position): comparable across twins."""
    try:
        return ("ok", function(*args, **kwargs))
    except (ValueError, TypeError, OverflowError) as error:
        return ("error", type(error).__name__, str(error), getattr(error, "position", None))


def same(name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    rust = outcome(getattr(_core, name), *args, **kwargs)
    python = outcome(getattr(twin, name), *args, **kwargs)
    assert rust == python
    return rust


def scheme_of(payload: str) -> str:
    for marker, scheme in (("br.gov.bcb.pix", "pix"), ("A000000677", "promptpay"), ("A000000727", "vietqr")):
        if marker in payload:
            return scheme
    return "emvco"


@pytest.mark.parametrize("payload", VALID)
def test_every_valid_sample_decodes_and_reencodes_to_the_same_string(payload: str) -> None:
    fields = same("emv_decode", payload)[1]
    assert fields[-1] == ("63", payload[-4:])
    assert _core.emv_encode(fields) == twin.emv_encode(fields) == payload
    assert _core.emv_encode(fields[:-1]) == payload  # the CRC is recomputed, not copied
    assert same("emv_validate", fields, scheme_of(payload)) == ("ok", None)


@pytest.mark.parametrize("payload", INVALID)
def test_negative_control_is_rejected_at_the_crc(payload: str) -> None:
    for implementation in (_core, twin):
        with pytest.raises(ValueError) as caught:
            implementation.emv_decode(payload)
        assert isinstance(caught.value, implementation.EmvError)
        assert caught.value.position == len(payload) - 4
        assert "CRC mismatch" in str(caught.value)
    same("emv_decode", payload)


def test_official_example_keeps_utf8_template_and_counts_characters() -> None:
    fields = dict(_core.emv_decode(VALID[0]))
    assert fields["64"] == [("00", "ZH"), ("01", "最佳运输"), ("02", "北京")]
    assert fields["62"] == [("03", "1234"), ("06", "***"), ("07", "A6008667"), ("09", "ME")]
    assert fields["91"] == "0016A011223344998877070812345678"  # 80..=99 stay text
    assert fields["54"] == "23.72"


def test_emv_error_is_a_value_error_exposed_by_the_module() -> None:
    assert issubclass(_core.EmvError, ValueError)
    assert issubclass(twin.EmvError, ValueError)


@pytest.mark.parametrize(
    ("payload", "position"),
    [
        ("", 0),
        ("00", 0),
        ("0A0201", 0),
        ("000X01", 2),
        ("000001", 2),
        ("000901", 2),
        ("0002016304", 8),
        ("000201630512345", 8),
        ("00020163041D3Dxx", 6),
        ("0002\x0116304ABCD", 4),
        ("62050503*6304ABCD", 6),
        ("00020163041d3d", 11),
        ("x" * 600, 512),
    ],
)
def test_structural_errors_name_the_same_position(payload: str, position: int) -> None:
    result = same("emv_decode", payload)
    assert result[0] == "error" and result[1] == "EmvError" and result[3] == position
    assert result[2].endswith(f"(at position {position})")


# --- hypothesis --------------------------------------------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20)
IDS = st.integers(0, 99).map(lambda n: f"{n:02}")
TEXT_IDS = IDS.filter(lambda i: not twin.is_template_id(i) and i != "63")
TEMPLATE_IDS = st.sampled_from([f"{n:02}" for n in [*range(26, 52), 62, 64]])
SUBFIELDS = st.lists(st.tuples(IDS, TEXT), min_size=1, max_size=3)
FIELD = st.one_of(st.tuples(TEXT_IDS, TEXT), st.tuples(TEMPLATE_IDS, SUBFIELDS))
FIELDS = st.lists(FIELD, max_size=6)


@given(FIELDS)
@settings(max_examples=300, deadline=None)
def test_random_structures_round_trip_and_twins_agree(fields: list[tuple[str, Any]]) -> None:
    payload = same("emv_encode", fields)[1]
    decoded = same("emv_decode", payload)[1]
    assert decoded == [*fields, ("63", payload[-4:])]
    assert same("emv_encode", decoded) == ("ok", payload)


ANY_TEXT = st.text(max_size=30).filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t))
LOOSE_FIELD = st.tuples(
    st.one_of(IDS, st.text(max_size=3)),
    st.one_of(ANY_TEXT, st.lists(st.tuples(st.one_of(IDS, st.text(max_size=3)), ANY_TEXT), max_size=4)),
)


@given(st.lists(LOOSE_FIELD, max_size=8), st.one_of(st.none(), st.sampled_from([*twin.SCHEMES, "nope"])))
@settings(max_examples=300, deadline=None)
def test_any_field_list_gives_equal_outcomes(fields: list[tuple[str, Any]], scheme: str | None) -> None:
    same("emv_encode", fields)
    same("emv_validate", fields, scheme)


GARBAGE = st.text(alphabet=st.sampled_from("0123456789ABCDEF6304\x00é北 "), max_size=80) | st.text(max_size=600).filter(
    lambda t: not any("\ud800" <= c <= "\udfff" for c in t)
)


@given(GARBAGE)
@settings(max_examples=400, deadline=None)
def test_garbage_never_crashes_and_gives_equal_outcomes(payload: str) -> None:
    same("emv_decode", payload)


@given(st.sampled_from(VALID), st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_samples_give_equal_outcomes(payload: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(payload)))
    kind = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    char = data.draw(st.sampled_from("0123456789ABX\x7f北"))
    if kind == "replace":
        mutated = payload[:at] + char + payload[at + 1 :]
    elif kind == "insert":
        mutated = payload[:at] + char + payload[at:]
    else:
        mutated = payload[:at] + payload[at + 1 :]
    result = same("emv_decode", mutated)
    if mutated != payload:
        assert result[0] == "error" and result[1] == "EmvError"


# --- validation per scheme ---------------------------------------------------------------------


def test_static_promptpay_is_not_a_full_emvco_payload_but_is_valid_promptpay() -> None:
    payload = VALID[2]
    fields = _core.emv_decode(payload)
    result = same("emv_validate", fields, "emvco")
    assert result[1] == "EmvError" and result[3] == len(payload) - 8  # 52 missing: where 63 starts
    assert same("emv_validate", fields, "promptpay") == ("ok", None)
    assert same("emv_validate", fields, "pix")[1] == "EmvError"
    assert same("emv_validate", fields, "unknown")[1] == "ValueError"


def test_syntax_errors_point_at_the_field() -> None:
    fields = [("00", "01"), ("01", "13"), ("53", "986")]
    assert same("emv_validate", fields)[3] == 6
    assert same("emv_validate", [("00", "01"), ("54", "1.2.3")])[3] == 6
    assert same("emv_validate", [("54", "1.25"), ("58", "br")])[3] == 8


# --- the cashier's payment payload -------------------------------------------------------------

PAYMENT = {
    "merchant_account": [("00", "A000000333"), ("01", "1234567890123456")],
    "mcc": "5812",
    "currency_numeric": "156",
    "amount_minor": 3800,
    "currency_exponent": 2,
    "country": "CN",
    "merchant_name": "星巴克 国贸店",
    "merchant_city": "北京",
    "reference_label": "SALE-000042",
}


def test_payment_payload_has_the_dynamic_fields_and_decodes() -> None:
    payload = same("emv_payment_payload", **PAYMENT)[1]
    fields = dict(same("emv_decode", payload)[1])
    assert fields["01"] == "12"
    assert fields["54"] == "38.00"
    assert fields["53"] == "156"
    assert fields["59"] == "星巴克 国贸店"
    assert fields["60"] == "北京"
    assert fields["62"] == [("05", "SALE-000042")]
    assert fields["26"] == PAYMENT["merchant_account"]
    assert same("emv_validate", list(fields.items()), "unionpay") == ("ok", None)


@pytest.mark.parametrize(
    ("amount_minor", "exponent", "text"),
    [(12345, 2, "123.45"), (123, 0, "123"), (5, 2, "0.05"), (1, 3, "0.001"), (999_999_999_999, 2, "9999999999.99")],
)
def test_amount_is_formatted_from_integer_minor_units(amount_minor: int, exponent: int, text: str) -> None:
    payload = same("emv_payment_payload", **{**PAYMENT, "amount_minor": amount_minor, "currency_exponent": exponent})[1]
    assert dict(_core.emv_decode(payload))["54"] == text


@pytest.mark.parametrize(
    "change",
    [
        {"amount_minor": 0},
        {"amount_minor": -5},
        {"amount_minor": 10**12},
        {"amount_minor": 2**70},
        {"currency_exponent": 4},
        {"currency_exponent": -1},
        {"merchant_account_tag": "52"},
        {"merchant_account_tag": "2"},
        {"merchant_name": "x" * 26},
        {"merchant_city": ""},
        {"mcc": "58"},
        {"country": "cn"},
        {"merchant_account": []},
        {"reference_label": "a\nb"},
    ],
)
def test_bad_payment_arguments_are_refused_by_both(change: dict[str, Any]) -> None:
    assert same("emv_payment_payload", **{**PAYMENT, **change})[0] == "error"


@given(
    amount_minor=st.integers(-10, 10**13),
    exponent=st.integers(-1, 4),
    name=st.text(min_size=0, max_size=30).filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t)),
    tag=st.sampled_from(["26", "29", "51", "52", "xx"]),
)
@settings(max_examples=200, deadline=None)
def test_payment_payload_twins_agree(amount_minor: int, exponent: int, name: str, tag: str) -> None:
    kwargs = {**PAYMENT, "amount_minor": amount_minor, "currency_exponent": exponent, "merchant_name": name}
    result = same("emv_payment_payload", **kwargs, merchant_account_tag=tag)
    if result[0] == "ok":
        assert same("emv_decode", result[1])[0] == "ok"
