"""RFC 9457 problem+json for every error, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pos_ledger.errors import PosLedgerError

PROBLEM_BASE = "https://pos-ledger.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
#: RFC 9457 members every problem has; extension members (`reason`, `errors`, ...) may follow.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem", "type": "object", "required": ["type", "title", "status", "detail"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}, "instance": {"type": "string"},
                   "reason": {"type": "string"}, "errors": {"type": "array"}},
    "additionalProperties": True,
}
_PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request (e.g. a malformed key or token)",
    401: "No credential, or one that does not verify (`unauthorized`); a replayed signature (`replayed`)",
    403: "The credential is for another store or lacks the capability (`forbidden`, `insufficient_scope`)",
    404: "The store or the named resource does not exist",
    409: "A business rule refused the command (`rule-violated` with `reason`); nothing was written",
    413: "The body is over the route's limit (`body-too-large`) or the batch too long",
    422: "The input does not fit the schema (`invalid-input` with `errors`), JSON nested too deep",
    429: "Over the rate limit (`rate-limited`); retry after `Retry-After` seconds",
    503: "Retry later: write contention, or the payment provider is busy or unavailable",
}


def problem_responses(*statuses: int | Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries, each an RFC 9457 problem: a status takes the standard description,
    a `{status: description}` mapping its own."""
    described: dict[int, str] = {}
    for item in statuses:
        if isinstance(item, Mapping):
            described.update(item)
        else:
            described[item] = _PROBLEM_DESCRIPTIONS[item]
    return {status: {"description": text, "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}}
            for status, text in described.items()}


#: What any store route may answer besides its success.
PROBLEM_RESPONSES: Final = problem_responses(400, 401, 403, 404, 409, 413, 422, 503)


def problem(status: int, slug: str, title: str, detail: str, instance: str = "", **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def _title(slug: str) -> str:
    return slug.replace("-", " ").capitalize()


def install(app: FastAPI) -> None:
    @app.exception_handler(PosLedgerError)
    async def domain_error(request: Request, error: PosLedgerError) -> JSONResponse:
        response = problem(error.status, error.slug, _title(error.slug), error.detail,
                           request.url.path, **error.extensions)
        response.headers.update(getattr(error, "headers", None) or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in error.errors()
        ]
        return problem(422, "invalid-input", "Invalid input", "the request does not match the schema",
                       request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(
            error.status_code, "http-error")
        response = problem(error.status_code, slug, _title(slug), str(error.detail), request.url.path)
        if error.headers:
            response.headers.update(error.headers)
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # Never a bare 500 page: the client gets a problem, the log gets the traceback.
        import logging

        logging.getLogger("pos_ledger.api").exception("unhandled error on %s", request.url.path)
        return problem(500, "internal-error", "Internal error", "the server failed; nothing was written",
                       request.url.path)
