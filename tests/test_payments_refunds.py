"""Refunds over HTTP against the sandbox: partial, repeated, never more than captured, ids reused on retry,
WeChat Pay's limits, proportional reversal of the sale's postings."""

# The fixtures are imported (not a plugin) so they take precedence over conftest's `admin`.
# ruff: noqa: F811
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pos_ledger.catalog.payments import Payment, PaymentsState, check_refund
from pos_ledger.events import EventRejected
from tests.payments_fixtures import (
    ALIPAY_CODE,
    STORE,
    WECHAT_CODE,
    Sandbox,
    SigningTerminal,
    admin,  # noqa: F401
    balances,
    chain_length,
    ok,
    pay,
    problem,
    sandbox,  # noqa: F401
    server,  # noqa: F401
    till,  # noqa: F401
)


def refund(client: httpx.Client, payment_id: str, amount_minor: int, refund_id: str | None = None,
           **extra: object) -> httpx.Response:
    body = {"amount_minor": amount_minor, **extra}
    if refund_id is not None:
        body["refund_id"] = refund_id
    return client.post(f"/v1/stores/{STORE}/payments/{payment_id}/refunds", json=body)


def test_partial_and_repeated_refunds_never_exceed_the_capture(admin: httpx.Client) -> None:
    payment_id = ok(pay(admin, 10_000, auth_code=ALIPAY_CODE), 201)["payment_id"]
    first = ok(refund(admin, payment_id, 3_000, "r-1"), 201)
    assert first["refund_id"] == "r-1" and first["payment_refundable_minor"] == 7_000
    assert first["provider_refund_id"]
    # A retry with the same id is the same refund: nothing is refunded twice.
    length = chain_length(admin)
    assert ok(refund(admin, payment_id, 3_000, "r-1"), 201) == first
    assert chain_length(admin) == length
    body = problem(refund(admin, payment_id, 4_000, "r-1"), 409)
    assert body["reason"] == "refund_id_reused"
    ok(refund(admin, payment_id, 6_000, "r-2"), 201)
    body = problem(refund(admin, payment_id, 1_001, "r-3"), 409)
    assert body["reason"] == "refund_exceeds_captured"
    last = ok(refund(admin, payment_id, 1_000), 201)
    assert last["refund_id"] != "r-2" and last["payment_refundable_minor"] == 0
    problem(refund(admin, payment_id, 1), 409)
    listed = ok(admin.get(f"/v1/stores/{STORE}/payments/{payment_id}/refunds"))
    assert [r["amount_minor"] for r in listed] == [3_000, 6_000, 1_000]
    assert balances(admin) == {}


def test_a_failed_or_pending_payment_cannot_be_refunded(admin: httpx.Client) -> None:
    failed = ok(pay(admin, 5_002, auth_code=WECHAT_CODE), 201)["payment_id"]
    assert problem(refund(admin, failed, 100), 409)["reason"] == "payment_not_captured"
    pending = ok(pay(admin, 5_000), 201)["payment_id"]
    assert problem(refund(admin, pending, 100), 409)["reason"] == "payment_not_captured"
    problem(refund(admin, "pay-unknown", 100), 404)


def test_wechat_allows_at_most_50_refunds_per_payment(admin: httpx.Client) -> None:
    payment_id = ok(pay(admin, 10_000, auth_code=WECHAT_CODE), 201)["payment_id"]
    for index in range(50):
        ok(refund(admin, payment_id, 1, f"w-{index}"), 201)
    body = problem(refund(admin, payment_id, 1, "w-50"), 409)
    assert body["reason"] == "refund_count_limit"
    # Alipay has no such limit.
    other = ok(pay(admin, 10_000, auth_code=ALIPAY_CODE), 201)["payment_id"]
    for index in range(51):
        ok(refund(admin, other, 1, f"a-{index}"), 201)


def test_wechat_refunds_only_within_a_year_of_capture() -> None:
    captured_at = datetime(2025, 1, 1, tzinfo=UTC)
    payment = Payment("pay1", "o", 1_000, "CNY", "code", "sandbox", "wechat", None, None, captured_at,
                      status="captured", captured_at=captured_at)
    check_refund(payment, "r1", 100, captured_at + timedelta(days=365), PaymentsState())
    with pytest.raises(EventRejected) as rejected:
        check_refund(payment, "r1", 100, captured_at + timedelta(days=366), PaymentsState())
    assert rejected.value.reason == "refund_window_closed"
    alipay = Payment("pay2", "o", 1_000, "CNY", "code", "sandbox", "alipay", None, None, captured_at,
                     status="captured", captured_at=captured_at)
    check_refund(alipay, "r2", 100, captured_at + timedelta(days=400), PaymentsState())


def test_refunds_reverse_the_sale_proportionally(admin: httpx.Client, till: SigningTerminal) -> None:
    order = str(uuid.uuid4())
    payment_id = ok(pay(admin, 9_000, auth_code=WECHAT_CODE, order_ref=order), 201)["payment_id"]
    sale = {"order_id": order, "currency": "CNY", "discount_minor": 1_000, "total_minor": 9_000,
            "lines": [{"sku": "CAKE", "name": "Cake", "qty": 1, "unit_price_minor": 10_000}],
            "tenders": [{"method": "wechat", "amount_minor": 9_000, "payment_id": payment_id}]}
    assert till.ingest("sale.completed", sale)["status"] == "accepted"
    ok(refund(admin, payment_id, 4_500), 201)
    assert balances(admin) == {"asset:psp:wechat": 4_500, "contra:discount:manual": 500, "revenue:sales": -5_000}
    # Odd amounts round half-even on the cumulative share, so the last refund lands exactly on zero.
    ok(refund(admin, payment_id, 1), 201)
    ok(refund(admin, payment_id, 3_333), 201)
    ok(refund(admin, payment_id, 1_166), 201)
    assert balances(admin) == {}


def test_cash_refunds_come_out_of_the_drawer(admin: httpx.Client, till: SigningTerminal) -> None:
    path = f"/v1/stores/{STORE}/payments"
    shift = ok(till.post(f"/v1/stores/{STORE}/shifts", {"float_minor": 1_000}), 201)
    cash = ok(till.post(path, {"amount_minor": 700, "currency": "CNY", "order_ref": "C-1", "method": "cash"}), 201)
    ok(till.post(f"{path}/{cash['payment_id']}/refunds", {"amount_minor": 200, "refund_id": "c-r1"}), 201)
    report = ok(till.get(f"/v1/stores/{STORE}/shifts/{shift['shift_id']}/x-report"))
    assert report["cash_expected_minor"] == 1_500 and report["refunds"] == {"cash": 200}
    assert balances(admin)["asset:cash:t1"] == 1_500


def test_voids(admin: httpx.Client, sandbox: Sandbox) -> None:
    # An unpaid QR is closed at the provider: the customer can no longer pay it.
    pending = ok(pay(admin, 6_000), 201)["payment_id"]
    voided = ok(admin.post(f"/v1/stores/{STORE}/payments/{pending}/void"))
    assert voided["status"] == "failed" and voided["failure_reason"] == "voided"
    late = sandbox.client.post(f"/sandbox/trades/{pending}/pay", json={"channel": "alipay"}).json()
    assert late["code"] == "FAIL"
    assert balances(admin) == {}
    # A captured payment is refunded in full, once however often the void is retried.
    captured = ok(pay(admin, 6_000, auth_code=ALIPAY_CODE), 201)["payment_id"]
    ok(refund(admin, captured, 1_000), 201)
    for _ in range(2):
        again = ok(admin.post(f"/v1/stores/{STORE}/payments/{captured}/void"))
        assert again["refunded_minor"] == 6_000 and again["refundable_minor"] == 0
    assert balances(admin) == {}
    # A retried void of an unpaid payment answers the voided payment again; nothing more is written.
    length = ok(admin.get(f"/v1/stores/{STORE}/chain"))["length"]
    again = ok(admin.post(f"/v1/stores/{STORE}/payments/{pending}/void"))
    assert again["status"] == "failed" and again["failure_reason"] == "voided"
    assert ok(admin.get(f"/v1/stores/{STORE}/chain"))["length"] == length
    # A payment that failed otherwise (declined) has nothing to void: a 409 that says why.
    declined = ok(pay(admin, 6_002, auth_code=ALIPAY_CODE), 201)
    assert declined["status"] == "failed"
    assert problem(admin.post(f"/v1/stores/{STORE}/payments/{declined['payment_id']}/void"), 409)["reason"] \
        .startswith("payment_")
