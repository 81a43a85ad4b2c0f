"""`Idempotency-Key` on every POST, once, as ASGI middleware (no per-route code).

* The same key with the same request (method, path, query, body) replays the first
  answer: status, content type and body, with `Idempotent-Replayed: true`.
* The same key with a different request is a 422 problem (`idempotency-key-reused`).
* Keys are scoped by the caller's credential (the bearer token, or the signing
  terminal's key id), so two callers never see each other's answers.
* A request with a key that is still running makes a concurrent twin wait for it
  and then replay its answer.
* 5xx answers are not remembered: the client may retry them with the same key.
* Limits: keys are 1-255 printable characters; `KEYS_KEPT_MAX` answers are kept for
  `KEY_TTL_S`, the oldest forgotten first; answers over `ANSWER_BYTES_MAX` are not kept.
  The table lives in this process's memory (a restart forgets it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE

KEYS_KEPT_MAX: Final = 100_000
KEY_TTL_S: Final = 24 * 3600
ANSWER_BYTES_MAX: Final = 1 << 20
REQUEST_BYTES_MAX: Final = 4 << 20
_KEY: Final = re.compile(r"^[\x21-\x7e]{1,255}$")
_KEYID: Final = re.compile(r'keyid="([^"]{1,64})"')


@dataclass(slots=True)
class _Answer:
    fingerprint: str
    stored_at: float
    status: int = 0
    content_type: bytes = b"application/json"
    body: bytes = b""
    done: asyncio.Event | None = None


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.answers: OrderedDict[tuple[str, str], _Answer] = OrderedDict()

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
        body = await _read_body(receive)
        if body is None:
            await _problem(send, 413, "body-too-large", f"request bodies are at most {REQUEST_BYTES_MAX} bytes")
            return
        fingerprint = hashlib.sha256(b"\n".join([
            scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body])).hexdigest()
        slot = (_caller(headers), key)
        self._expire()
        earlier = self.answers.get(slot)
        while earlier is not None and earlier.done is not None:
            await earlier.done.wait()
            earlier = self.answers.get(slot)
        if earlier is not None:
            if earlier.fingerprint != fingerprint:
                await _problem(send, 422, "idempotency-key-reused",
                               "this Idempotency-Key was used with a different request")
                return
            await _replay(send, earlier)
            return
        answer = self.answers[slot] = _Answer(fingerprint, time.monotonic(), done=asyncio.Event())
        try:
            await self._run(scope, body, send, answer)
        finally:
            done, answer.done = answer.done, None
            if not (0 < answer.status < 500) or len(answer.body) > ANSWER_BYTES_MAX:
                self.answers.pop(slot, None)
            while len(self.answers) > KEYS_KEPT_MAX:
                self.answers.popitem(last=False)
            assert done is not None
            done.set()

    async def _run(self, scope: Scope, body: bytes, send: Send, answer: _Answer) -> None:
        delivered = False

        async def receive_again() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status = int(message["status"])
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        answer.content_type = value
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    answer.body = b"".join(chunks)
            await send(message)

        await self.app(scope, receive_again, capture)

    def _expire(self) -> None:
        cutoff = time.monotonic() - KEY_TTL_S
        while self.answers:
            oldest = next(iter(self.answers.values()))
            if oldest.stored_at >= cutoff or oldest.done is not None:
                return
            self.answers.popitem(last=False)


def _caller(headers: dict[str, str]) -> str:
    authorization = headers.get("authorization")
    if authorization:
        return "auth:" + hashlib.sha256(authorization.encode()).hexdigest()
    found = _KEYID.search(headers.get("signature-input", ""))
    return "terminal:" + found.group(1) if found else "anonymous"


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > REQUEST_BYTES_MAX:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _replay(send: Send, answer: _Answer) -> None:
    await send({"type": "http.response.start", "status": answer.status,
                "headers": [(b"content-type", answer.content_type),
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
