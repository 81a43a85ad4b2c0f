"""A body limit per route, and the problem documents routes list in OpenAPI."""

from __future__ import annotations

from typing import Any, Final

from fastapi import Depends, Request
from pydantic import BaseModel

from api.errors import PROBLEM_MEDIA_TYPE
from pos_ledger.errors import PosLedgerError

#: Bodies of the platform's JSON routes (registrations, installs, vouchers): small documents.
PLATFORM_BODY_BYTES_MAX: Final = 64 * 1024


class BodyTooLarge(PosLedgerError):
    slug = "body-too-large"
    status = 413


class BodyLimit:
    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max

    async def __call__(self, request: Request) -> None:
        declared = request.headers.get("content-length", "")
        too_large = BodyTooLarge(f"a request body may hold at most {self.bytes_max} bytes")
        if declared.isdigit() and int(declared) > self.bytes_max:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.bytes_max:
                raise too_large
            chunks.append(chunk)
        # Starlette's own cache of the body: the route (and FastAPI) read it again from here.
        request._body = b"".join(chunks)


def body_limit(bytes_max: int = PLATFORM_BODY_BYTES_MAX) -> Any:
    return Depends(BodyLimit(bytes_max))


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


_DESCRIPTIONS: Final = {
    400: "Bad request", 401: "No credential, or a bad one", 403: "The credential may not do this here",
    404: "Not found", 409: "A rule refused it; nothing was written", 413: "The body is too large",
    422: "The request does not fit the schema or a rule on its values", 429: "Over the rate limit (Retry-After)",
    503: "Busy; retry",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status as application/problem+json."""
    return {
        status: {"model": Problem, "description": _DESCRIPTIONS.get(status, "Problem"),
                 "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for status in statuses
    }


#: What every platform route may answer: no or a bad credential, not allowed, body too large,
#: parameters out of the schema, over the rate limit.
AUTH_PROBLEMS: Final = (401, 403, 413, 422, 429)
