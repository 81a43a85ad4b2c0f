"""Where each read model stands against its store's log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.auth import REPORTS_READ, Principal, allow
from api.deps import LedgerDep
from api.routes.reports import PROBLEM_RESPONSES, service_of
from api.routes.stores import StoreId

router = APIRouter(prefix="/v1/stores", tags=["reports"])


class ProjectionOut(BaseModel):
    name: str
    #: The last chain position the projection folded.
    position: int
    chain_length: int
    #: chain_length - position: entries not yet in the read model.
    lag: int
    #: Why the projection stopped at `position` (the entry after it failed); null while it runs.
    error: str | None


@router.get("/{store_id}/projections", response_model=list[ProjectionOut],
            responses={k: v for k, v in PROBLEM_RESPONSES.items() if k != 422})
def projections_status(store_id: StoreId, request: Request, ledger: LedgerDep,
                       _: Annotated[Principal, allow(REPORTS_READ)]) -> list[ProjectionOut]:
    """Each projection's position, the chain's length, the lag between them and the error that
    stopped it, if any (a failing event is never skipped: fix it and run `pos-ledger projections run`)."""
    ledger.store(store_id)
    service = service_of(request)
    service.catch_up(store_id)
    return [ProjectionOut(name=s.name, position=s.position, chain_length=s.chain_length, lag=s.lag, error=s.error)
            for s in service.runner.status(store_id)]
