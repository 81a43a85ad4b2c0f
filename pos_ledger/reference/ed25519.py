"""Pure-Python twin of `core_rs/src/sig.rs`: Ed25519 (RFC 8032) with the same strict semantics.

A signature verifies iff: the key has 32 bytes and the signature 64; `A` (the key) and `R`
(first half of the signature) are canonical encodings (y < p, no negative zero) of points that
are not of small order; `S` (second half) is below L; and the cofactored equation
`[8](S·B − R − k·A) = 0` holds with `k = SHA-512(R‖A‖M) mod L`. Extended twisted Edwards
coordinates, as in RFC 8032 section 6; slow (milliseconds per signature) and fine for tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32
BATCH_SIGNATURES_MAX = 1_000_000

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]
IDENTITY: Point = (0, 1, 1, 0)


def _add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _multiply(scalar: int, point: Point) -> Point:
    result = IDENTITY
    while scalar > 0:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _negate(point: Point) -> Point:
    x, y, z, t = point
    return (-x % P, y, z, -t % P)


def _is_identity(point: Point) -> bool:
    x, y, z, _ = point
    return x % P == 0 and (y - z) % P == 0


def _compress(point: Point) -> bytes:
    x, y, z, _ = point
    z_inverse = pow(z, P - 2, P)
    x, y = x * z_inverse % P, y * z_inverse % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _recover_x(y: int, sign: int) -> int | None:
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _decode_point(data: bytes) -> Point | None:
    """Strict decoding: 32 bytes, canonical, on the curve, not of small order."""
    if len(data) != 32:
        return None
    value = int.from_bytes(data, "little")
    y, sign = value & ((1 << 255) - 1), value >> 255
    x = _recover_x(y, sign)
    if x is None:
        return None
    point = (x, y, 1, x * y % P)
    if _is_identity(_multiply(8, point)):
        return None
    return point


B: Point = (
    15112221349535400772501151409588531511454012693041857206046113283949847762202,
    46316835694926478169428394003475163141307993866256225615783033603165251855960,
    1,
    46827403850823179245072216630277197565144205554125654976674165829533817101731,
)


def _sha512_mod_l(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % L


def _verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(signature) != SIGNATURE_BYTES:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    a = _decode_point(public_key)
    r = _decode_point(signature[:32])
    if a is None or r is None:
        return False
    k = _sha512_mod_l(signature[:32], public_key, message)
    difference = _add(_multiply(s, B), _negate(_add(r, _multiply(k, a))))
    return _is_identity(_multiply(8, difference))


def _bytes_items(items: Sequence[bytes], name: str) -> list[bytes]:
    out = list(items)
    for index, item in enumerate(out):
        if not isinstance(item, bytes):
            raise TypeError(f"{name}[{index}] must be bytes")
    return out


def ed25519_verify_batch(
    public_keys: Sequence[bytes],
    messages: Sequence[bytes],
    signatures: Sequence[bytes],
    *,
    threads: int | None = None,
) -> list[bool]:
    """One answer per signature; `threads` is accepted for parity with the Rust function."""
    keys = _bytes_items(public_keys, "public_keys")
    texts = _bytes_items(messages, "messages")
    sigs = _bytes_items(signatures, "signatures")
    if not len(keys) == len(texts) == len(sigs):
        raise ValueError(
            f"public_keys, messages and signatures must have the same length ({len(keys)}, {len(texts)}, {len(sigs)})"
        )
    if len(sigs) > BATCH_SIGNATURES_MAX:
        raise ValueError(f"at most {BATCH_SIGNATURES_MAX} signatures per call, got {len(sigs)}")
    return [_verify(key, text, sig) for key, text, sig in zip(keys, texts, sigs, strict=True)]


def ed25519_public_key_is_weak(public_key: bytes) -> bool:
    """True if the key must be refused: not 32 bytes, not a canonical point, or of small order."""
    return _decode_point(public_key) is None


def _expand(seed32: bytes) -> tuple[int, bytes, bytes]:
    if len(seed32) != SEED_BYTES:
        raise ValueError(f"a key seed has {SEED_BYTES} bytes, got {len(seed32)}")
    digest = hashlib.sha512(seed32).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return scalar, digest[32:], _compress(_multiply(scalar, B))


def ed25519_public_key(seed32: bytes) -> bytes:
    """The 32-byte public key of a 32-byte seed (RFC 8032 section 5.1.5)."""
    return _expand(seed32)[2]


def ed25519_sign(seed32: bytes, message: bytes) -> bytes:
    """The deterministic 64-byte RFC 8032 signature of `message`."""
    scalar, prefix, public = _expand(seed32)
    r = _sha512_mod_l(prefix, message)
    big_r = _compress(_multiply(r, B))
    k = _sha512_mod_l(big_r, public, message)
    return big_r + ((r + k * scalar) % L).to_bytes(32, "little")
