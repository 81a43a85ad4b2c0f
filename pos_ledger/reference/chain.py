"""Pure-Python twin of `core_rs/src/chain.rs`: `h_0` = 32 zero bytes, `h_n = SHA-256(h_{n-1} || body_n || sig_n)`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_BYTES = 32
SIGNATURE_BYTES = 64
CHAIN_ENTRIES_MAX = 1_000_000


def link(head: bytes, body: bytes, signature: bytes) -> bytes:
    """One link of the chain."""
    return hashlib.sha256(head + body + signature).digest()


def bytes_items(items: Sequence[bytes], name: str) -> list[bytes]:
    """The items as a list, refusing anything but `bytes` (as the Rust wrappers do)."""
    out = list(items)
    for index, item in enumerate(out):
        if not isinstance(item, bytes):
            raise TypeError(f"{name}[{index}] must be bytes")
    return out


def check_head(head: bytes) -> None:
    if len(head) != HASH_BYTES:
        raise ValueError(f"a chain head has {HASH_BYTES} bytes, got {len(head)}")


def _check_lengths(bodies: list[bytes], sigs: list[bytes]) -> None:
    if len(bodies) != len(sigs):
        raise ValueError(f"bodies and sigs must have the same length ({len(bodies)}, {len(sigs)})")
    if len(bodies) > CHAIN_ENTRIES_MAX:
        raise ValueError(f"at most {CHAIN_ENTRIES_MAX} entries per call, got {len(bodies)}")
    for index, sig in enumerate(sigs):
        if len(sig) != SIGNATURE_BYTES:
            raise ValueError(f"signature {index} does not have {SIGNATURE_BYTES} bytes")


def chain_extend(head: bytes, bodies: Sequence[bytes], sigs: Sequence[bytes]) -> list[bytes]:
    """The successive hashes after each entry, starting from `head`."""
    body_list, sig_list = bytes_items(bodies, "bodies"), bytes_items(sigs, "sigs")
    check_head(head)
    _check_lengths(body_list, sig_list)
    hashes = []
    for body, sig in zip(body_list, sig_list, strict=True):
        head = link(head, body, sig)
        hashes.append(head)
    return hashes


def chain_verify(
    head: bytes, bodies: Sequence[bytes], sigs: Sequence[bytes], hashes: Sequence[bytes]
) -> tuple[bytes, int | None]:
    """(last verified head, None) if every stored hash matches, else (head before, index of first mismatch)."""
    body_list, sig_list = bytes_items(bodies, "bodies"), bytes_items(sigs, "sigs")
    hash_list = bytes_items(hashes, "hashes")
    check_head(head)
    _check_lengths(body_list, sig_list)
    if len(hash_list) != len(body_list):
        raise ValueError("bodies and hashes must have the same length")
    for index, (body, sig, stored) in enumerate(zip(body_list, sig_list, hash_list, strict=True)):
        following = link(head, body, sig)
        if following != stored:
            return head, index
        head = following
    return head, None
