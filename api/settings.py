"""One settings object, from flags or the environment."""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE = "./var/pos-ledger.sqlite3"


@dataclass(frozen=True)
class Settings:
    #: A SQLite file path or a postgresql:// URL.
    database: str = DEFAULT_DATABASE
    redis_url: str | None = None
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: 32-byte Ed25519 seed of the server's own signing key.
    server_seed: bytes = b""

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database": os.environ.get("POS_LEDGER_DB") or DEFAULT_DATABASE,
            "redis_url": os.environ.get("POS_LEDGER_REDIS_URL") or None,
        }
        token = os.environ.get("POS_LEDGER_ADMIN_TOKEN")
        if token:
            values["admin_token"] = token
        values.update({k: v for k, v in overrides.items() if v is not None})
        database = str(values["database"])
        values["server_seed"] = load_server_seed(database)
        return cls(**values)  # type: ignore[arg-type]


def load_server_seed(database: str) -> bytes:
    """POS_LEDGER_SERVER_KEY (base64 seed), else a key file kept beside a SQLite database.

    Servers sharing one PostgreSQL database must share the key: set the variable.
    """
    encoded = os.environ.get("POS_LEDGER_SERVER_KEY")
    if encoded:
        seed = base64.b64decode(encoded, validate=True)
        if len(seed) != 32:
            raise ValueError("POS_LEDGER_SERVER_KEY must be the base64 of a 32-byte seed")
        return seed
    if database.startswith(("postgresql://", "postgres://")):
        path = Path("./var/server_ed25519.seed")
    else:
        path = Path(database).resolve().parent / "server_ed25519.seed"
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != 32:
            raise ValueError(f"{path} does not hold a 32-byte key seed")
        return seed
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(seed)
    return seed
