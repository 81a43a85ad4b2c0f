"""Writing off third-party vouchers: load, decide (in the store's rules), save.

The rules live in `pos_ledger.catalog.vouchers` and run under the store's lock
(and the chain's primary key across processes), so any number of concurrent
redemptions of one code append exactly one `voucher.redeemed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pos_ledger.catalog.vouchers import Voucher, vouchers_of
from pos_ledger.errors import Conflict, EventRefused, NotFound
from pos_ledger.ledger import Ledger
from pos_ledger.loyalty import IdempotencyKeyReused


class VoucherAlreadyRedeemed(Conflict):
    slug = "voucher-already-redeemed"


class VoucherAlreadyReversed(Conflict):
    slug = "voucher-already-reversed"


class VoucherNotFound(NotFound):
    slug = "voucher-not-found"


@dataclass(frozen=True, slots=True)
class Redemption:
    provider: str
    code: str
    order_ref: str
    face_value_minor: int
    paid_minor: int
    request_id: str


class Vouchers:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def voucher(self, store_id: str, provider: str, code: str) -> Voucher:
        found = vouchers_of(self.ledger.store(store_id)).by_code.get((provider, code))
        if found is None:
            raise VoucherNotFound(f"no redeemed voucher {code!r} of {provider!r} in store {store_id!r}")
        return found

    def redeem(self, store_id: str, redemption: Redemption, app_id: str | None) -> tuple[Voucher, bool]:
        """(voucher, created): the same request_id again answers the first redemption."""
        state = self.ledger.store(store_id)
        earlier = self._by_request(store_id, redemption.request_id)
        if earlier is None:
            data: dict[str, Any] = {
                "provider": redemption.provider, "code": redemption.code, "order_ref": redemption.order_ref,
                "currency": state.currency, "face_value_minor": redemption.face_value_minor,
                "paid_minor": redemption.paid_minor, "request_id": redemption.request_id, "app_id": app_id,
            }
            try:
                self.ledger.append_server_events(store_id, [("voucher.redeemed", data)])
                return self.voucher(store_id, redemption.provider, redemption.code), True
            except EventRefused as refused:
                if refused.reason == "voucher_already_redeemed":
                    raise VoucherAlreadyRedeemed(refused.detail, reason=refused.reason) from None
                if refused.reason != "duplicate_request":
                    raise
            earlier = self._by_request(store_id, redemption.request_id)
            assert earlier is not None
        same = (earlier.provider, earlier.code, earlier.order_ref, earlier.face_value_minor, earlier.paid_minor) == (
            redemption.provider, redemption.code, redemption.order_ref, redemption.face_value_minor,
            redemption.paid_minor)
        if not same:
            raise IdempotencyKeyReused(f"request_id {redemption.request_id!r} was used for another redemption")
        return earlier, False

    def reverse(self, store_id: str, provider: str, code: str, reason: str) -> Voucher:
        self.voucher(store_id, provider, code)
        try:
            self.ledger.append_server_events(
                store_id, [("voucher.reversed", {"provider": provider, "code": code, "reason": reason})])
        except EventRefused as refused:
            if refused.reason == "voucher_already_reversed":
                raise VoucherAlreadyReversed(refused.detail, reason=refused.reason) from None
            raise
        return self.voucher(store_id, provider, code)

    def _by_request(self, store_id: str, request_id: str) -> Voucher | None:
        feature = vouchers_of(self.ledger.store(store_id))
        key = feature.by_request.get(request_id)
        return feature.by_code[key] if key is not None else None
