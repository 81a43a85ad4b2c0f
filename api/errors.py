"""RFC 9457 problem+json for every error, in one place."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pos_ledger.errors import PosLedgerError

PROBLEM_BASE = "https://pos-ledger.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


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
