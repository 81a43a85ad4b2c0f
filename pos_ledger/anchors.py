"""Anchors outside the log: signed checkpoints (witness files) and the server key an auditor trusts.

A checkpoint says "store S's chain had head H after position P" and is signed
by the server's Ed25519 key. Kept away from the database (a file, a printed Z
slip), it proves completeness: a log that no longer reaches P, or that has
another head at P, was cut or rewritten, whatever the database says about itself.

The file is the JSON object {"store_id", "position", "chain_head", "at", "signature"};
`signature` is the base64 of the 64-byte Ed25519 signature over the RFC 8785 (JCS)
canonical JSON of the other four members: keys sorted, no whitespace, UTF-8, e.g.

    {"at":"2026-12-02T02:39:21.583181+00:00","chain_head":"23ec…e0","position":44,"store_id":"s"}

(`json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` for these
plain strings and integers).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from pos_ledger import _core
from pos_ledger.errors import InvalidInput

#: A witness or key file larger than this is not one.
ANCHOR_FILE_BYTES_MAX: Final = 64 * 1024
_HEAD: Final = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    store_id: str
    position: int
    chain_head: str
    at: str
    signature: str = ""

    def message(self) -> bytes:
        """RFC 8785 canonical JSON of the signed fields (sorted keys, no whitespace, UTF-8)."""
        return json.dumps({"at": self.at, "chain_head": self.chain_head, "position": self.position,
                           "store_id": self.store_id}, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()

    def as_dict(self) -> dict[str, Any]:
        return {"store_id": self.store_id, "position": self.position, "chain_head": self.chain_head,
                "at": self.at, "signature": self.signature}

    def verifies_with(self, public_key: bytes) -> bool:
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        return _core.ed25519_verify_batch([public_key], [self.message()], [signature])[0]


def sign_checkpoint(server_seed: bytes, store_id: str, position: int, chain_head: bytes | str,
                    at: datetime | str | None = None) -> Checkpoint:
    head = chain_head.hex() if isinstance(chain_head, bytes) else chain_head
    when = at if isinstance(at, str) else (at or datetime.now(UTC)).isoformat()
    unsigned = Checkpoint(store_id, position, head, when)
    signature = base64.b64encode(_core.ed25519_sign(server_seed, unsigned.message())).decode()
    return Checkpoint(store_id, position, head, when, signature)


def parse_checkpoint(raw: bytes) -> Checkpoint:
    """A checkpoint file's fields, checked for shape (not for its signature); InvalidInput otherwise."""
    try:
        found = msgspec.json.decode(raw)
    except msgspec.DecodeError as error:
        raise InvalidInput(f"the witness is not JSON: {error}") from None
    if not isinstance(found, dict):
        raise InvalidInput("the witness must be a JSON object")
    store_id, position, head = found.get("store_id"), found.get("position"), found.get("chain_head")
    at, signature = found.get("at"), found.get("signature")
    if not isinstance(store_id, str) or not store_id:
        raise InvalidInput("the witness has no store_id")
    if type(position) is not int or position < 0:
        raise InvalidInput("the witness's position must be an integer >= 0")
    if not isinstance(head, str) or not _HEAD.match(head):
        raise InvalidInput("the witness's chain_head must be 64 lower-case hex characters")
    if not isinstance(at, str) or not isinstance(signature, str):
        raise InvalidInput("the witness needs `at` and `signature` texts")
    return Checkpoint(store_id, position, head, at, signature)


def read_checkpoint(path: Path) -> Checkpoint:
    return parse_checkpoint(_read_small(path, "witness"))


def read_server_key(path: Path) -> bytes:
    """The server's public key from a file an auditor keeps.

    Accepted: the text base64 of the 32-byte public key (what `GET /v1/stores/{id}` shows as
    `server_public_key`, and `keys.json` of an export), or the server's 32-byte binary seed file
    (`server_ed25519.seed`, whose public key is derived), or a text file holding the base64 seed
    prefixed `seed:` (the value of POS_LEDGER_SERVER_KEY).
    """
    raw = _read_small(path, "server key")
    if len(raw) == 32:
        return _core.ed25519_public_key(raw)
    text = raw.decode("ascii", errors="replace").strip()
    seed = text.startswith("seed:")
    try:
        decoded = base64.b64decode(text.removeprefix("seed:").strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 32:
        raise InvalidInput(f"{path} holds neither a base64 Ed25519 public key, a `seed:` base64 seed, "
                           "nor a 32-byte seed")
    return _core.ed25519_public_key(decoded) if seed else decoded


def _read_small(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > ANCHOR_FILE_BYTES_MAX:
            raise InvalidInput(f"the {what} file {path} is larger than {ANCHOR_FILE_BYTES_MAX} bytes")
        return path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read the {what} file {path}: {error.strerror}") from None
