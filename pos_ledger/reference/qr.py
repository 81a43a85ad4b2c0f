"""Pure-Python twin of core_rs/src/qr.rs: QR matrix, SVG, PNG and ESC/POS raster.

The matrix comes from Nayuki's PyPI `qrcodegen` (`QrCode.encode_text`), the same algorithm as
the Rust crate, so matrices, SVG text and ESC/POS bytes are identical to `pos_ledger._core`'s.
PNG files are not compared byte for byte: the zlib stream comes from CPython's zlib here and
from miniz_oxide in Rust, so the tests compare the decoded pixels (and the chunk layout) instead.
"""

from __future__ import annotations

import binascii
import struct
import zlib

from qrcodegen import DataTooLongError, QrCode  # type: ignore[import-untyped]

TEXT_BYTES_MAX = 7089  # 7089 digits fill version 40 at ecc L; longer text is refused at once
BORDER_MAX = 16
PNG_SCALE_MAX = 32
ESCPOS_SCALE_MAX = 16
ESCPOS_WIDTH_DOTS_MAX = 576

_ECC = {"L": QrCode.Ecc.LOW, "M": QrCode.Ecc.MEDIUM, "Q": QrCode.Ecc.QUARTILE, "H": QrCode.Ecc.HIGH}


def _check_range(name: str, value: int, low: int, high: int) -> None:
    # The Rust wrapper takes usize: outside 0..2**64 the int does not convert.
    if value < 0:
        raise OverflowError("can't convert negative int to unsigned")
    if value >= 2**64:
        raise OverflowError("int too big to convert")
    if not low <= value <= high:
        raise ValueError(f"{name} is {low}..={high}, got {value}")


def qr_matrix(text: str, ecc: str = "M") -> tuple[int, bytes]:
    """(size, size * size bytes row by row, 1 = dark)."""
    if ecc not in _ECC:
        raise ValueError(f"ecc is one of 'L', 'M', 'Q', 'H', got '{ecc}'")
    data_bytes = len(text.encode("utf-8"))
    if data_bytes > TEXT_BYTES_MAX:
        raise ValueError(f"text too long for a QR code at this ecc ({data_bytes} UTF-8 bytes)")
    try:
        code = QrCode.encode_text(text, _ECC[ecc])
    except DataTooLongError:
        raise ValueError(f"text too long for a QR code at this ecc ({data_bytes} UTF-8 bytes)") from None
    size: int = code.get_size()
    modules = bytes(int(code.get_module(x, y)) for y in range(size) for x in range(size))
    return size, modules


def qr_svg(text: str, ecc: str = "M", border: int = 4) -> str:
    """A scalable SVG: one white rectangle and one path of horizontal runs, 1 unit per module."""
    _check_range("border", border, 0, BORDER_MAX)
    size, modules = qr_matrix(text, ecc)
    side = size + 2 * border
    parts = []
    for y in range(size):
        row = modules[y * size : (y + 1) * size]
        x = 0
        while x < size:
            if not row[x]:
                x += 1
                continue
            run = 1
            while x + run < size and row[x + run]:
                run += 1
            parts.append(f"M{x + border},{y + border}h{run}v1h-{run}z")
            x += run
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" shape-rendering="crispEdges">'
        f'<rect width="{side}" height="{side}" fill="#fff"/><path d="{"".join(parts)}" fill="#000"/></svg>\n'
    )


def _packed_rows(size: int, modules: bytes, scale: int, border: int) -> list[bytes]:
    """Pixel rows, 8 pixels a byte, most significant bit leftmost, bit set = dark."""
    side = (size + 2 * border) * scale
    width_bytes = (side + 7) // 8
    blank = bytes(width_bytes)
    module_rows = []
    for my in range(size):
        bits = 0
        for mx in range(size):
            if modules[my * size + mx]:
                left = (mx + border) * scale
                bits |= ((1 << scale) - 1) << (width_bytes * 8 - left - scale)
        module_rows.append(bits.to_bytes(width_bytes, "big"))
    rows = []
    for y in range(side):
        my = y // scale - border
        rows.append(module_rows[my] if 0 <= my < size else blank)
    return rows


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", binascii.crc32(kind + data))


def qr_png(text: str, ecc: str = "M", scale: int = 8, border: int = 4) -> bytes:
    """A 1-bit grayscale PNG (bit set = white), `scale` pixels per module; a row equal to the one
    above uses filter "Up" (all zeros), any other row filter "None", as in Rust."""
    _check_range("scale", scale, 1, PNG_SCALE_MAX)
    _check_range("border", border, 0, BORDER_MAX)
    size, modules = qr_matrix(text, ecc)
    side = (size + 2 * border) * scale
    rows = _packed_rows(size, modules, scale, border)
    parts = []
    for y, row in enumerate(rows):
        if y > 0 and rows[y - 1] == row:
            parts.append(b"\x02" + bytes(len(row)))  # filter "Up": a repeated row is all zeros
        else:
            parts.append(b"\x00" + bytes(255 - b for b in row))  # filter "None"; a set bit is white
    raw = b"".join(parts)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")
    )


def qr_escpos_raster(text: str, ecc: str = "M", scale: int = 6, border: int = 2) -> bytes:
    """ESC/POS `GS v 0` raster (mode 0): 1D 76 30 00 xL xH yL yH, then rows, bit set = black."""
    _check_range("scale", scale, 1, ESCPOS_SCALE_MAX)
    _check_range("border", border, 0, BORDER_MAX)
    size, modules = qr_matrix(text, ecc)
    side = (size + 2 * border) * scale
    if side > ESCPOS_WIDTH_DOTS_MAX:
        raise ValueError(
            f"QR code is {side} dots wide, wider than the {ESCPOS_WIDTH_DOTS_MAX}-dot printhead; use a smaller scale"
        )
    width_bytes = (side + 7) // 8
    header = bytes([0x1D, 0x76, 0x30, 0x00]) + struct.pack("<HH", width_bytes, side)
    return header + b"".join(_packed_rows(size, modules, scale, border))
