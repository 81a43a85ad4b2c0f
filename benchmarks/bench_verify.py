"""Ed25519 verification: our batch verifier vs OpenSSL (`cryptography`) and libsodium (PyNaCl).

    .venv/bin/python benchmarks/bench_verify.py [--batch 256] [--batches 40] [--repeat 3]

Batches of terminal events (one key per batch, as a terminal sends them, ~300-byte bodies).
Ours runs on one thread (`threads=1`) and on every core; the peers verify one signature per
call, as a server using them would. Every implementation must give the same answers on a
batch that mixes valid and invalid signatures before anything is timed. Rates are
signatures/s, best of `--repeat` runs, ratios measured in the same run.
Goals on the 2-core machine: one core >= 4x OpenSSL and >= 2x PyNaCl; both cores >= 3.5x PyNaCl.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pos_ledger import _core

Batch = tuple[list[bytes], list[bytes], list[bytes]]


def make_batches(count: int, size: int, seed: int) -> list[Batch]:
    rng = random.Random(seed)
    batches = []
    for b in range(count):
        key_seed = bytes(rng.randrange(256) for _ in range(32))
        public = _core.ed25519_public_key(key_seed)
        messages = [
            (
                f'{{"id":"{rng.getrandbits(128):032x}","seq":{b * size + i},"type":"sale.completed",'
                f'"at":"2026-11-23T08:00:00Z","data":{{"lines":[{{"sku":"LATTE","qty":1,"price_minor":2800}}],'
                f'"total_minor":2800,"currency":"CNY","method":"wechat","note":"{"x" * 120}"}}}}'
            ).encode()
            for i in range(size)
        ]
        batches.append(([public] * size, messages, [_core.ed25519_sign(key_seed, m) for m in messages]))
    return batches


def openssl_verify(keys: list[bytes], messages: list[bytes], signatures: list[bytes]) -> list[bool]:
    answers = []
    loaded: dict[bytes, Ed25519PublicKey] = {}
    for key, message, signature in zip(keys, messages, signatures, strict=True):
        public = loaded.get(key) or loaded.setdefault(key, Ed25519PublicKey.from_public_bytes(key))
        try:
            public.verify(signature, message)
            answers.append(True)
        except InvalidSignature:
            answers.append(False)
    return answers


def nacl_verify(keys: list[bytes], messages: list[bytes], signatures: list[bytes]) -> list[bool]:
    answers = []
    loaded: dict[bytes, VerifyKey] = {}
    for key, message, signature in zip(keys, messages, signatures, strict=True):
        public = loaded.get(key) or loaded.setdefault(key, VerifyKey(key))
        try:
            public.verify(message, signature)
            answers.append(True)
        except BadSignatureError:
            answers.append(False)
    return answers


def ours(threads: int | None) -> Callable[[list[bytes], list[bytes], list[bytes]], list[bool]]:
    def verify(keys: list[bytes], messages: list[bytes], signatures: list[bytes]) -> list[bool]:
        return _core.ed25519_verify_batch(keys, messages, signatures, threads=threads)

    return verify


def check_agreement(implementations: dict[str, Callable[..., list[bool]]], batch: Batch) -> None:
    keys, messages, signatures = (list(column) for column in batch)
    rng = random.Random(1)
    for index in rng.sample(range(len(signatures)), max(1, len(signatures) // 10)):
        signature = bytearray(signatures[index])
        signature[rng.randrange(64)] ^= 1 << rng.randrange(8)
        signatures[index] = bytes(signature)
    messages[0] = messages[0] + b"!"
    answers = {name: verify(keys, messages, signatures) for name, verify in implementations.items()}
    reference = answers["ours, 1 thread"]
    assert not all(reference) and any(reference)
    for name, answer in answers.items():
        assert answer == reference, f"{name} disagrees"


def rate(verify: Callable[..., list[bool]], batches: list[Batch], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for batch in batches:
            if not all(verify(*batch)):
                raise AssertionError("a valid signature was refused")
        best = min(best, time.perf_counter() - started)
    return sum(len(batch[2]) for batch in batches) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="signatures per batch")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    cores = os.cpu_count() or 1
    implementations = {
        "ours, 1 thread": ours(1),
        f"ours, all cores ({cores})": ours(None),
        "OpenSSL (cryptography)": openssl_verify,
        "libsodium (PyNaCl)": nacl_verify,
    }
    batches = make_batches(arguments.batches, arguments.batch, seed=42)
    check_agreement(implementations, batches[0])
    rates = {name: rate(verify, batches, arguments.repeat) for name, verify in implementations.items()}
    openssl, nacl = rates["OpenSSL (cryptography)"], rates["libsodium (PyNaCl)"]
    print(f"Ed25519 verify, batches of {arguments.batch}, {arguments.batches} batches, best of {arguments.repeat}")
    print(f"{'implementation':<28}{'signatures/s':>14}{'vs OpenSSL':>12}{'vs PyNaCl':>11}")
    for name, value in rates.items():
        print(f"{name:<28}{value:>14,.0f}{value / openssl:>11.2f}x{value / nacl:>10.2f}x")
    print("answers agree on a mixed valid/invalid batch: yes")


if __name__ == "__main__":
    main()
