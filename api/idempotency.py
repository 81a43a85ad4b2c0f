"""`Idempotency-Key` on every POST, once, as ASGI middleware (no per-route code).

* The same key with the same request (method, path, query, body) replays the first
  answer: status, content type and body, with `Idempotent-Replayed: true`.
* The same key with a different request is a 422 problem (`idempotency-key-reused`).
* Keys are scoped by the caller's credential (the bearer token's hash, or the
  terminal whose request signature verifies), so two callers never see each other's
  answers and nobody replays a terminal's answer by naming its key id. Unauthenticated
  routes (event ingest, provider notifications) scope a key by the request path.
* Answers live in a table (`pos_idempotency_keys`) in the ledger's own database, so
  they survive restarts and are shared by every server process on that database.
  A key is reserved before the request runs (status 0): a concurrent twin waits for
  the first answer (up to `IN_PROGRESS_WAIT_S`, then 409 `idempotency-key-in-use`). A
  reservation is a lease: the running request renews it every `LEASE_RENEW_S`, and
  one not renewed for `LEASE_S` (its process died, e.g. `kill -9`) is taken over by
  the next request with the key, so a retry after a restart runs within seconds.
* 5xx and 401 answers are not kept: the client may retry them with the same key.
* Limits: keys are 1-255 printable characters; answers are kept `KEY_TTL_S`; request
  bodies over `REQUEST_BYTES_MAX` are refused; answers over `ANSWER_BYTES_MAX` are not kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from api.limits import read_body

KEY_TTL_S: Final = 24 * 3600
ANSWER_BYTES_MAX: Final = 1 << 20
REQUEST_BYTES_MAX: Final = 4 << 20
IN_PROGRESS_WAIT_S: Final = 30.0
#: A reservation not renewed for this long was left by a process that died: taken over.
LEASE_S: Final = 6.0
LEASE_RENEW_S: Final = 2.0
POLL_INTERVAL_S: Final = 0.05
#: Expired answers are swept once every this many reservations.
SWEEP_EVERY: Final = 1_000
_KEY: Final = re.compile(r"^[\x21-\x7e]{1,255}$")
_TABLE: Final = ("CREATE TABLE IF NOT EXISTS pos_idempotency_keys (caller TEXT NOT NULL, key TEXT NOT NULL, "
                 "fingerprint TEXT NOT NULL, status INTEGER NOT NULL, content_type TEXT NOT NULL, "
                 "body {blob} NOT NULL, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (caller, key))")


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    fingerprint: str
    #: 0 while the first request is still running.
    status: int
    content_type: str
    body: bytes
    created_at: float


class AnswerTable:
    """The table on SQLite or PostgreSQL: one connection, used under a lock (statements are tiny)."""

    def __init__(self, database: str) -> None:
        self._lock = threading.Lock()
        self._reservations = 0
        self._connection: Any
        if database.startswith(("postgresql://", "postgres://")):
            import psycopg

            self._connection = psycopg.connect(database, autocommit=True)
            self._mark = "%s"
            self._execute(_TABLE.format(blob="BYTEA"))
        else:
            self._connection = sqlite3.connect(database, timeout=30, isolation_level=None,
                                               check_same_thread=False)
            self._mark = "?"
            self._execute(_TABLE.format(blob="BLOB"))

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _execute(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            cursor = self._connection.execute(statement.replace("?", self._mark), params)
            rows = cursor.fetchall() if cursor.description else []
            if cursor.description is None:
                rows = [cursor.rowcount]
            return list(rows)

    def reserve(self, caller: str, key: str, fingerprint: str) -> StoredAnswer | None:
        """None when this request reserved the key; else the row already there."""
        self._reservations += 1
        if self._reservations % SWEEP_EVERY == 0:
            self._execute("DELETE FROM pos_idempotency_keys WHERE created_at < ?", (time.time() - KEY_TTL_S,))
        inserted = self._execute(
            "INSERT INTO pos_idempotency_keys VALUES (?, ?, ?, 0, '', ?, ?) ON CONFLICT (caller, key) DO NOTHING",
            (caller, key, fingerprint, b"", time.time()))
        if inserted == [1]:
            return None
        return self.find(caller, key)

    def find(self, caller: str, key: str) -> StoredAnswer | None:
        rows = self._execute("SELECT fingerprint, status, content_type, body, created_at FROM pos_idempotency_keys "
                             "WHERE caller = ? AND key = ?", (caller, key))
        if not rows:
            return None
        fingerprint, status, content_type, body, created_at = rows[0]
        return StoredAnswer(fingerprint, int(status), content_type, bytes(body), float(created_at))

    def renew(self, caller: str, key: str) -> None:
        """The request holding the reservation is still running (`created_at` is the lease's heartbeat)."""
        self._execute("UPDATE pos_idempotency_keys SET created_at = ? WHERE caller = ? AND key = ? AND status = 0",
                      (time.time(), caller, key))

    def complete(self, caller: str, key: str, status: int, content_type: str, body: bytes) -> None:
        self._execute("UPDATE pos_idempotency_keys SET status = ?, content_type = ?, body = ? "
                      "WHERE caller = ? AND key = ?", (status, content_type, body, caller, key))

    def release(self, caller: str, key: str, only_if_reserved_before: float | None = None) -> None:
        if only_if_reserved_before is None:
            self._execute("DELETE FROM pos_idempotency_keys WHERE caller = ? AND key = ?", (caller, key))
        else:
            self._execute("DELETE FROM pos_idempotency_keys WHERE caller = ? AND key = ? AND status = 0 "
                          "AND created_at < ?", (caller, key, only_if_reserved_before))


#: (ASGI scope, headers, body) -> the verified signing terminal's scope, or None. It spends the
#: signature's nonce and leaves its outcome in the scope's state for the route (checked once).
SignedCaller = Callable[[Scope, dict[str, str], bytes], "str | None"]


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, database: str, signed_caller: SignedCaller | None = None) -> None:
        self.app = app
        self.table = AnswerTable(database)
        self.signed_caller = signed_caller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("idempotency-key")
        if key is None:
            await self.app(scope, receive, send)
            return
        if not _KEY.match(key):
            await _problem(send, 422, "invalid-input", "Idempotency-Key must be 1-255 printable characters")
            return
        body = await read_body(receive, REQUEST_BYTES_MAX)
        if body is None:
            await _problem(send, 413, "body-too-large", f"request bodies are at most {REQUEST_BYTES_MAX} bytes")
            return
        fingerprint = hashlib.sha256(b"\n".join([
            scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body])).hexdigest()
        caller = await self._caller(scope, headers, body)
        if caller is None:  # a signature that does not verify: the route answers 401, nothing is kept
            await self.app(scope, _replayed_body(body), send)
            return
        deadline = time.monotonic() + IN_PROGRESS_WAIT_S
        while True:
            earlier = await run_in_threadpool(self.table.reserve, caller, key, fingerprint)
            if earlier is None:
                await self._run_and_keep(scope, body, send, caller, key)
                return
            if earlier.fingerprint != fingerprint:
                await _problem(send, 422, "idempotency-key-reused",
                               "this Idempotency-Key was used with a different request")
                return
            if earlier.status:
                await _replay(send, earlier)
                return
            if time.monotonic() > deadline:
                await _problem(send, 409, "idempotency-key-in-use",
                               "a request with this Idempotency-Key is still running; retry later")
                return
            # Still running elsewhere; a lease nobody renewed in time was left by a process that died.
            await run_in_threadpool(self.table.release, caller, key, time.time() - LEASE_S)
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _caller(self, scope: Scope, headers: dict[str, str], body: bytes) -> str | None:
        """Whose answers this request may see: a bearer credential is its own scope (replaying needs the
        secret); a terminal's scope needs its signature to verify first, since a key id is no secret."""
        authorization = headers.get("authorization")
        if authorization:
            return "auth:" + hashlib.sha256(authorization.encode()).hexdigest()
        if "signature-input" in headers or "signature" in headers:
            if self.signed_caller is None:
                return None
            caller: str | None = await run_in_threadpool(self.signed_caller, scope, headers, body)
            return caller
        # Unauthenticated routes (terminal ingest signs each event; provider notifications) scope a
        # key by the route itself: two tills, or two stores, may pick the same key independently.
        return "anonymous:" + str(scope["path"])

    async def _run_and_keep(self, scope: Scope, body: bytes, send: Send, caller: str, key: str) -> None:
        answer: dict[str, Any] = {"status": 0, "content_type": "application/json", "chunks": []}
        heartbeat = asyncio.create_task(self._renew_lease(caller, key))
        try:
            await self.app(scope, _replayed_body(body), _capturing(send, answer))
        finally:
            heartbeat.cancel()
            kept = b"".join(answer["chunks"])
            # An unauthenticated attempt never ran: it must not pin the key for the real caller.
            if 0 < answer["status"] < 500 and answer["status"] != 401 and len(kept) <= ANSWER_BYTES_MAX:
                await run_in_threadpool(self.table.complete, caller, key, answer["status"],
                                        answer["content_type"], kept)
            else:
                await run_in_threadpool(self.table.release, caller, key)


    async def _renew_lease(self, caller: str, key: str) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW_S)
            try:
                await run_in_threadpool(self.table.renew, caller, key)
            except Exception:  # a missed renewal is retried; the lease has room for two
                logging.getLogger("pos_ledger.api").exception("renewing the lease of an Idempotency-Key failed")


def _replayed_body(body: bytes) -> Receive:
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _capturing(send: Send, answer: dict[str, Any]) -> Send:
    async def capture(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = int(message["status"])
            for name, value in message.get("headers", []):
                if name.lower() == b"content-type":
                    answer["content_type"] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            answer["chunks"].append(message.get("body", b""))
        await send(message)

    return capture




async def _replay(send: Send, answer: StoredAnswer) -> None:
    await send({"type": "http.response.start", "status": answer.status,
                "headers": [(b"content-type", answer.content_type.encode("latin-1")),
                            (b"content-length", str(len(answer.body)).encode()),
                            (b"idempotent-replayed", b"true")]})
    await send({"type": "http.response.body", "body": answer.body})


async def _problem(send: Send, status: int, slug: str, detail: str) -> None:
    payload: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": slug.replace("-", " ").capitalize(),
                               "status": status, "detail": detail}
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
