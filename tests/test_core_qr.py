"""QR rendering: Rust and the pure-Python twin give identical matrices, SVG and ESC/POS bytes
(PNG: identical pixels), and an independent decoder (zxing-cpp) reads back the exact text."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from pos_ledger import _core
from pos_ledger.reference import qr as twin

PAYMENT = _core.emv_payment_payload(
    merchant_account=[("00", "A000000333"), ("01", "1234567890123456")],
    mcc="5812",
    currency_numeric="156",
    amount_minor=3800,
    currency_exponent=2,
    country="CN",
    merchant_name="星巴克 国贸店",
    merchant_city="北京",
    reference_label="SALE-000042",
)
TEXTS = [
    "HELLO WORLD",
    "0123456789012345",
    "https://example.com/c/PL1ABCDEF?x=1",
    "欢迎光临 星巴克 ¥38.00",
    PAYMENT,
]


def decoded(image: Image.Image) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image.convert("L"))]


def png_image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def svg_image(svg: str, scale: int = 8) -> Image.Image:
    """Rasterise our own SVG shape (viewBox, white rect, one path of `Mx,yhNv1h-Nz` runs)."""
    side = int(re.search(r'viewBox="0 0 (\d+) \1"', svg).group(1))  # type: ignore[union-attr]
    path = re.search(r'<path d="([^"]*)" fill="#000"/>', svg).group(1)  # type: ignore[union-attr]
    runs = re.findall(r"M(\d+),(\d+)h(\d+)v1h-\3z", path)
    assert "".join(f"M{x},{y}h{n}v1h-{n}z" for x, y, n in runs) == path
    image = Image.new("L", (side * scale, side * scale), 255)
    draw = ImageDraw.Draw(image)
    for x, y, n in runs:
        left, top = int(x) * scale, int(y) * scale
        draw.rectangle([left, top, left + int(n) * scale - 1, top + scale - 1], fill=0)
    return image


def raster_image(command: bytes) -> Image.Image:
    """Parse an ESC/POS `GS v 0` command back into an image."""
    assert command[:4] == b"\x1d\x76\x30\x00"
    width_bytes = command[4] | command[5] << 8
    height = command[6] | command[7] << 8
    data = command[8:]
    assert len(data) == width_bytes * height
    # PIL mode "1" reads a set bit as white; the printer's set bit is black.
    return Image.frombytes("1", (width_bytes * 8, height), bytes(255 - b for b in data))


def outcome(function: Any, *args: Any) -> tuple[Any, ...]:
    try:
        return ("ok", function(*args))
    except (ValueError, OverflowError) as error:
        return ("error", type(error).__name__, str(error))


# --- Rust == twin ------------------------------------------------------------------------------

UNICODE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)


@given(
    st.one_of(UNICODE, st.text("0123456789", max_size=200), st.text("ABC $%*+-./:0123", max_size=200)),
    st.sampled_from("LMQH"),
)
@settings(max_examples=60, deadline=None)
def test_matrices_are_identical(text: str, ecc: str) -> None:
    rust = _core.qr_matrix(text, ecc)
    assert rust == twin.qr_matrix(text, ecc)
    size, modules = rust
    assert (size - 17) % 4 == 0 and len(modules) == size * size and set(modules) <= {0, 1}


@pytest.mark.parametrize(
    ("text", "ecc"),
    [("a" * 350 + "北" * 117, "L"), ("0123456789" * 150, "Q"), ("HTTPS://EXAMPLE.COM/" * 60, "H"), ("a" * 2900, "L")],
)
def test_large_versions_are_identical(text: str, ecc: str) -> None:
    assert _core.qr_matrix(text, ecc) == twin.qr_matrix(text, ecc)


def test_the_longest_text_fills_version_40() -> None:
    assert _core.qr_matrix("1" * 7089, "L")[0] == 177


@pytest.mark.parametrize("text", TEXTS)
def test_svg_raster_and_png_pixels_are_identical(text: str) -> None:
    assert _core.qr_svg(text) == twin.qr_svg(text)
    assert _core.qr_svg(text, "H", 0) == twin.qr_svg(text, "H", 0)
    assert _core.qr_escpos_raster(text) == twin.qr_escpos_raster(text)
    assert _core.qr_escpos_raster(text, "L", 3, 0) == twin.qr_escpos_raster(text, "L", 3, 0)
    for args in [(), ("Q", 3, 1)]:
        rust, python = png_image(_core.qr_png(text, *args)), png_image(twin.qr_png(text, *args))
        assert rust.mode == python.mode == "1"
        assert rust.size == python.size
        assert rust.tobytes() == python.tobytes()


# --- an independent decoder reads back the exact text ------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_png_decodes_to_the_exact_text(text: str) -> None:
    image = png_image(_core.qr_png(text))
    size = _core.qr_matrix(text)[0]
    assert image.size == ((size + 8) * 8, (size + 8) * 8)
    assert decoded(image) == [text]


@pytest.mark.parametrize("text", TEXTS)
def test_svg_decodes_to_the_exact_text(text: str) -> None:
    svg = _core.qr_svg(text)
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" viewBox=')
    assert svg.count("<path") == 1
    assert decoded(svg_image(svg)) == [text]


@pytest.mark.parametrize("text", TEXTS)
def test_escpos_raster_decodes_to_the_exact_text(text: str) -> None:
    command = _core.qr_escpos_raster(text)
    size = _core.qr_matrix(text)[0]
    side = (size + 4) * 6
    assert command[4] | command[5] << 8 == (side + 7) // 8
    assert command[6] | command[7] << 8 == side
    assert decoded(raster_image(command)) == [text]


def test_emv_payment_payload_scans_back_to_a_valid_payload() -> None:
    (text,) = decoded(png_image(_core.qr_png(PAYMENT, "M", 4)))
    assert dict(_core.emv_decode(text))["54"] == "38.00"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("qr_matrix", ("x", "X")),
        ("qr_matrix", ("x", "m")),
        ("qr_matrix", ("a" * 3000, "H")),
        ("qr_matrix", ("北" * 1000, "L")),
        ("qr_matrix", ("1" * 7089, "M")),
        ("qr_matrix", ("1" * 7090, "L")),
        ("qr_matrix", ("x" * 10_000_000, "L")),
        ("qr_svg", ("x", "M", 17)),
        ("qr_svg", ("x", "M", -1)),
        ("qr_svg", ("x", "M", 2**64)),
        ("qr_png", ("x", "M", 0, 4)),
        ("qr_png", ("x", "M", 33, 4)),
        ("qr_png", ("x", "Z", 8, 4)),
        ("qr_escpos_raster", ("x", "M", 17, 2)),
        ("qr_escpos_raster", ("a" * 800, "M", 6, 2)),
        ("qr_escpos_raster", ("a" * 3000, "M", 1, 2)),
    ],
)
def test_bad_arguments_raise_value_errors_in_both(name: str, args: tuple[Any, ...]) -> None:
    rust, python = outcome(getattr(_core, name), *args), outcome(getattr(twin, name), *args)
    assert rust == python
    assert rust[0] == "error"


def test_the_largest_code_fits_an_80mm_printhead_at_three_dots_per_module() -> None:
    text = "a" * 2900
    assert _core.qr_matrix(text, "L")[0] == 177  # version 40
    command = _core.qr_escpos_raster(text, "L", 3, 2)
    assert command[6] | command[7] << 8 == (177 + 4) * 3 == 543
    with pytest.raises(ValueError, match="576-dot"):
        _core.qr_escpos_raster(text, "L", 4, 2)
