"""QR and EMV hot path: pos_ledger._core against its peers, measured in the same run.

    .venv/bin/python benchmarks/bench_qr.py [--seconds 1.0] [--repeats 3] [--chars 150]

1. QR matrix of a dynamic EMV payment payload padded to `--chars` characters (ecc M):
   ours (`_core.qr_matrix`) vs segno (`segno.make(text, error="m")` and its `matrix`) vs the
   pure-Python twin (PyPI qrcodegen). Goal: >= 30x segno on one core.
2. EMV decode + encode with CRC of the same payload: ours vs the twin. Goal: >= 20x.
3. For reference: our SVG, PNG and ESC/POS raster of the same payload.

Before timing, every answer is checked: our matrix equals the twin's, zxing-cpp (when installed)
reads our PNG back to the exact text, segno's symbol holds the same text, and decode/encode
give back the payload. Everything runs on one thread (the machine has 2 cores; Rust never
spawns threads for these calls). Prints operations per second (best of `--repeats`) and ratios.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import segno  # noqa: E402

from pos_ledger import _core  # noqa: E402
from pos_ledger.reference import emv as emv_twin  # noqa: E402
from pos_ledger.reference import qr as qr_twin  # noqa: E402


def payment_payload(chars: int) -> str:
    """A real-shaped dynamic payload of exactly `chars` characters (the reference label pads it)."""
    base: dict[str, Any] = {
        "merchant_account": [("00", "A000000333"), ("01", "6222020200112233445")],
        "mcc": "5812",
        "currency_numeric": "156",
        "amount_minor": 3800,
        "currency_exponent": 2,
        "country": "CN",
        "merchant_name": "STARBUCKS GUOMAO",
        "merchant_city": "BEIJING",
    }
    shortest = _core.emv_payment_payload(**base, reference_label="S")
    label = "S" + "0" * max(0, chars - len(shortest))
    if len(label) > 25:
        raise SystemExit(f"--chars is at most {len(shortest) + 24} for this payload shape")
    return str(_core.emv_payment_payload(**base, reference_label=label))


def ops_per_second(function: Callable[[], object], seconds: float, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        deadline = start + seconds
        while True:
            for _ in range(10):
                function()
            count += 10
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def segno_matrix(text: str) -> tuple[int, bytes]:
    code = segno.make(text, error="m", micro=False)
    return len(code.matrix), b"".join(bytes(row) for row in code.matrix)


def check_answers(text: str) -> None:
    ours = _core.qr_matrix(text, "M")
    assert ours == qr_twin.qr_matrix(text, "M"), "Rust and twin matrices differ"
    size, modules = segno_matrix(text)
    assert len(modules) == size * size and set(modules) <= {0, 1}, "segno matrix shape"
    try:
        import zxingcpp
        from PIL import Image
    except ImportError:
        print("(zxing-cpp or pillow missing: decoder check skipped)")
    else:
        image = Image.open(io.BytesIO(_core.qr_png(text))).convert("L")
        assert [r.text for r in zxingcpp.read_barcodes(image)] == [text], "our PNG does not scan back"
        buffer = io.BytesIO()
        segno.make(text, error="m", micro=False).save(buffer, kind="png", scale=8)
        buffer.seek(0)
        assert [r.text for r in zxingcpp.read_barcodes(Image.open(buffer).convert("L"))] == [text], "segno"
    fields = _core.emv_decode(text)
    assert fields == emv_twin.emv_decode(text), "Rust and twin decode differ"
    assert _core.emv_encode(fields) == emv_twin.emv_encode(fields) == text, "encode does not round-trip"


def row(name: str, rate: float, baseline: float | None = None) -> None:
    ratio = f"{rate / baseline:8.1f}x" if baseline else ""
    print(f"  {name:<44} {rate:>12,.0f} ops/s  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per case; the best counts")
    parser.add_argument("--chars", type=int, default=150, help="payload length in characters")
    args = parser.parse_args()

    text = payment_payload(args.chars)
    check_answers(text)
    size = _core.qr_matrix(text, "M")[0]
    print(f"payload: {len(text)} characters, QR {size}x{size} modules (ecc M); answers checked")

    def measure(function: Callable[[], object]) -> float:
        return ops_per_second(function, args.seconds, args.repeats)

    print("QR matrix")
    segno_rate = measure(lambda: segno_matrix(text))
    ours = measure(lambda: _core.qr_matrix(text, "M"))
    twin = measure(lambda: qr_twin.qr_matrix(text, "M"))
    row("segno.make(error='m').matrix (baseline)", segno_rate)
    row("pure-Python twin (qrcodegen)", twin, segno_rate)
    row("pos_ledger._core.qr_matrix", ours, segno_rate)
    print(f"  ours vs segno: {ours / segno_rate:.1f}x (goal >= 30x); ours vs twin: {ours / twin:.1f}x")

    print("QR output (ours)")
    row("qr_svg", measure(lambda: _core.qr_svg(text)))
    row("qr_png (scale 8)", measure(lambda: _core.qr_png(text)))
    row("qr_escpos_raster (scale 6)", measure(lambda: _core.qr_escpos_raster(text)))

    print("EMV decode + encode (CRC checked and recomputed)")
    twin_emv = measure(lambda: emv_twin.emv_encode(emv_twin.emv_decode(text)))
    ours_emv = measure(lambda: _core.emv_encode(_core.emv_decode(text)))
    row("pure-Python twin (baseline)", twin_emv)
    row("pos_ledger._core", ours_emv, twin_emv)
    print(f"  ours vs twin: {ours_emv / twin_emv:.1f}x (goal >= 20x)")


if __name__ == "__main__":
    main()
