"""Bounded input before anything else runs: a body limit on every route and a JSON depth limit.

A route may lower its own limit further (`body_limit`, a dependency) and list its problem
responses for OpenAPI (`problems`).

The outermost middleware, so no authenticator, idempotency lookup or route reads a
body first. A request whose `Content-Length` exceeds the route's limit is refused
without reading a byte of its body; a streamed (chunked) body is refused as soon
as it passes the limit. The limit is `BODY_BYTES_MAX` (1 MiB) on every route and
`BATCH_BYTES_MAX` on terminal ingest. A JSON body nested deeper than
`JSON_DEPTH_MAX` is 422 before any decoder sees it (the ingest decoder is
depth-bounded by its own schema). Answers are problem+json: 413 `body-too-large`,
422 `invalid-input`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, problem_responses
from pos_ledger.errors import PosLedgerError
from pos_ledger.ledger import BATCH_BYTES_MAX
from pos_ledger.values import IDENTIFIER_CHARACTERS, JSON_DEPTH_MAX, json_too_deep

BODY_BYTES_MAX: Final = 1 << 20
#: Terminal ingest: its limit is the ledger's batch limit, and its msgspec decoder is schema-bound.
INGEST_PATH: Final = re.compile(
    r"^/v1/stores/" + IDENTIFIER_CHARACTERS + r"{1,64}/terminals/" + IDENTIFIER_CHARACTERS + r"{1,64}/events$")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, bytes_max: int = BODY_BYTES_MAX, ingest_bytes_max: int = BATCH_BYTES_MAX,
                 json_depth_max: int = JSON_DEPTH_MAX) -> None:
        self.app = app
        self.bytes_max = bytes_max
        self.ingest_bytes_max = ingest_bytes_max
        self.json_depth_max = json_depth_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ingest = INGEST_PATH.match(scope["path"]) is not None
        limit = self.ingest_bytes_max if ingest else self.bytes_max
        headers = {name.lower(): value for name, value in scope["headers"]}
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > limit:
            await _problem(send, 413, "body-too-large", f"a request body may hold at most {limit} bytes")
            return
        body = await read_body(receive, limit)
        if body is None:
            await _problem(send, 413, "body-too-large", f"a request body may hold at most {limit} bytes")
            return
        content_type = headers.get(b"content-type", b"application/json").lower()
        if (not ingest and body and b"json" in content_type
                and json_too_deep(body, self.json_depth_max)):
            await _problem(send, 422, "invalid-input", f"JSON may nest at most {self.json_depth_max} levels",
                           errors=[{"loc": ["body"], "msg": f"nested deeper than {self.json_depth_max}"}])
            return
        await self.app(scope, _replayed(body, receive), send)


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replayed(body: bytes, receive: Receive) -> Receive:
    """The body once, then the real channel (so a route still hears the client disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _problem(send: Send, status: int, slug: str, detail: str, **extra: Any) -> None:
    # The unread rest of a refused body makes the connection unusable: say so; the server closes it.
    close = [(b"connection", b"close")] if status == 413 else []
    payload: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": slug.replace("-", " ").capitalize(),
                               "status": status, "detail": detail, **extra}
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode()), *close]})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(PosLedgerError):
    slug = "body-too-large"
    status = 413


#: Bodies of small JSON documents (platform registrations, installs, vouchers).
SMALL_BODY_BYTES_MAX: Final = 64 * 1024


class BodyLimit:
    """A route dependency: the request body may hold at most `bytes_max` bytes (413 otherwise),
    below the server-wide `BODY_BYTES_MAX` the middleware already holds every route to."""

    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max

    async def __call__(self, request: Request) -> None:
        declared = request.headers.get("content-length", "")
        if (declared and not declared.isdigit()) or (declared.isdigit() and int(declared) > self.bytes_max):
            raise BodyTooLarge(f"this request's body may hold at most {self.bytes_max} bytes")
        if len(await request.body()) > self.bytes_max:
            raise BodyTooLarge(f"this request's body may hold at most {self.bytes_max} bytes")


def body_limit(bytes_max: int = SMALL_BODY_BYTES_MAX) -> Any:
    """`dependencies=[body_limit(4096)]` on a route, or `_: Annotated[None, body_limit()]`."""
    return Depends(BodyLimit(bytes_max))


#: `responses=problems(401, 403, {409: "why"})`: each an RFC 9457 problem in OpenAPI.
problems = problem_responses
