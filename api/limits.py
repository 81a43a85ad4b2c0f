"""Small shared pieces for new routes: a body-size limit dependency and problem responses for OpenAPI."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from pydantic import BaseModel

from pos_ledger.errors import PosLedgerError


class BodyTooLarge(PosLedgerError):
    slug = "body-too-large"
    status = 413


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


def problems(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with its description and the problem+json schema."""
    content = {"application/problem+json": {"schema": Problem.model_json_schema()}}
    return {status: {"description": text, "content": content} for status, text in described.items()}


def body_limit(bytes_max: int) -> Any:
    """A route dependency refusing a body over `bytes_max` (declared or streamed) with a 413 problem."""

    async def limit(request: Request) -> None:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > bytes_max):
            raise BodyTooLarge(f"this request's body is at most {bytes_max} bytes")
        if len(await request.body()) > bytes_max:
            raise BodyTooLarge(f"this request's body is at most {bytes_max} bytes")

    return Depends(limit)
