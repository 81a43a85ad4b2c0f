"""One root for every error pos-ledger raises on purpose.

`api/errors.py` maps each class to an RFC 9457 problem (status + stable `type`);
the CLI prints the message. Domain code raises these, never HTTP exceptions.
"""

from __future__ import annotations


class PosLedgerError(Exception):
    """Root of all deliberate pos-ledger errors."""

    #: Stable problem type slug, used in problem+json `type` URIs.
    slug = "error"
    #: HTTP status when this error reaches the API.
    status = 400

    def __init__(self, detail: str, **extensions: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class InvalidInput(PosLedgerError):
    slug = "invalid-input"
    status = 422


class NotFound(PosLedgerError):
    slug = "not-found"
    status = 404


class StoreNotFound(NotFound):
    slug = "store-not-found"


class TerminalNotFound(NotFound):
    slug = "terminal-not-found"


class AlreadyExists(PosLedgerError):
    slug = "already-exists"
    status = 409


class WeakPublicKey(PosLedgerError):
    slug = "weak-public-key"
    status = 400


class BatchTooLarge(PosLedgerError):
    slug = "batch-too-large"
    status = 413


class Conflict(PosLedgerError):
    """A business rule refused an online command; nothing was written."""

    slug = "conflict"
    status = 409


class EventRefused(Conflict):
    """The store's rules refused an event the server was asked to append (online command)."""

    slug = "rule-violated"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail or reason, reason=reason)
        self.reason = reason


class Unauthorized(PosLedgerError):
    slug = "unauthorized"
    status = 401


class Forbidden(PosLedgerError):
    slug = "forbidden"
    status = 403


class ConcurrentWriteRetriesExhausted(PosLedgerError):
    """Another writer kept winning the race for the chain tip; the client may retry."""

    slug = "write-contention"
    status = 503
