"""Third-party vouchers: once per code ever, idempotent on request_id, balanced postings, reversible once,
exactly one of 50 concurrent redemptions (SQLite and PostgreSQL, one server and two ledgers)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_ledger.catalog.vouchers import redemption_postings
from pos_ledger.errors import PosLedgerError
from pos_ledger.events import check_balanced
from pos_ledger.ledger import Ledger
from pos_ledger.simulate import Client, Terminal
from pos_ledger.vouchers import Redemption, VoucherAlreadyRedeemed, Vouchers
from tests.conftest import SERVER_SEED, LiveServer
from tests.platform_support import bearer, install, register_app, token

REDEEM = "/v1/stores/s1/vouchers/redeem"


def body(code: str = "V1", request_id: str = "req-1", **changes: object) -> dict[str, object]:
    return {"provider": "meituan", "code": code, "order_ref": "order-1", "face_value_minor": 10_000,
            "paid_minor": 8_000, "request_id": request_id, **changes}


def balances(admin: httpx.Client) -> dict[str, int]:
    rows = admin.get("/v1/stores/s1/balances").json()["balances"]
    return {row["account"]: row["balance_minor"] for row in rows if "voucher" in row["account"]
            or row["account"] == "revenue:sales"}


def test_redeem_once_idempotent_and_reverse_once(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    first = admin.post(REDEEM, json=body())
    assert first.status_code == 201, first.text
    answer = first.json()
    assert answer["status"] == "redeemed" and answer["receivable_minor"] == 8_000
    assert answer["discount_minor"] == 2_000 and answer["currency"] == "CNY"
    again = admin.post(REDEEM, json=body())
    assert again.status_code == 201 and again.json() == answer
    assert again.headers["idempotent-replayed"] == "true"
    reused = admin.post(REDEEM, json=body(code="V2"))
    assert reused.status_code == 409 and reused.json()["type"].endswith("/idempotency-key-reused")
    second = admin.post(REDEEM, json=body(request_id="req-2"))
    assert second.status_code == 409 and second.json()["type"].endswith("/voucher-already-redeemed")
    assert balances(admin) == {"asset:receivable:voucher:meituan": 8_000,
                               "contra:discount:voucher:meituan": 2_000, "revenue:sales": -10_000}
    events = [json.loads(e["body"])["type"] for e in admin.get("/v1/stores/s1/events?limit=1000").json()]
    assert events.count("voucher.redeemed") == 1
    reversed_ = admin.post("/v1/stores/s1/vouchers/meituan/V1/reverse", json={"reason": "customer changed mind"})
    assert reversed_.status_code == 200 and reversed_.json()["status"] == "reversed"
    assert set(balances(admin).values()) == {0}
    assert admin.post("/v1/stores/s1/vouchers/meituan/V1/reverse", json={}).status_code == 409
    assert admin.post(REDEEM, json=body(request_id="req-3")).status_code == 409
    assert admin.get("/v1/stores/s1/vouchers/meituan/V1").json()["status"] == "reversed"
    assert admin.post("/v1/stores/s1/vouchers/meituan/NOPE/reverse", json={}).status_code == 404


def test_bad_vouchers_are_refused(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    assert admin.post(REDEEM, json=body(paid_minor=20_000)).status_code == 422
    assert admin.post(REDEEM, json=body(face_value_minor="100")).status_code == 422
    assert admin.post(REDEEM, json=body(face_value_minor=-1)).status_code == 422
    assert admin.post(REDEEM, json=body(code="has space")).status_code == 422
    assert admin.post("/v1/stores/nope/vouchers/redeem", json=body()).status_code == 404
    assert admin.get("/v1/stores/s1/balances").json()["balances"] == []


def test_an_app_redeems_with_coupons_write_only(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                live_server: LiveServer) -> None:
    register_app(admin, "meituan", ["coupons:write"])
    register_app(admin, "reader", ["coupons:read"])
    writer = bearer(token(live_server.url, install(admin, "s1", "meituan")))
    reader = bearer(token(live_server.url, install(admin, "s1", "reader")))
    refused = httpx.post(live_server.url + REDEEM, json=body(), headers=reader)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/insufficient_scope")
    done = httpx.post(live_server.url + REDEEM, json=body(), headers=writer)
    assert done.status_code == 201 and done.json()["app_id"] == "meituan"
    assert httpx.get(live_server.url + "/v1/stores/s1/vouchers/meituan/V1", headers=reader).status_code == 200


def test_fifty_concurrent_redemptions_of_one_code_make_one(shop: tuple[Client, Terminal],
                                                           live_server: LiveServer, admin: httpx.Client) -> None:
    def attempt(i: int) -> int:
        with httpx.Client(base_url=live_server.url, headers=dict(admin.headers), timeout=60) as client:
            return client.post(REDEEM, json=body(request_id=f"req-{i}")).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(attempt, range(50)))
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == 49, statuses
    events = [json.loads(e["body"])["type"] for e in admin.get("/v1/stores/s1/events?limit=1000").json()]
    assert events.count("voucher.redeemed") == 1
    assert balances(admin)["asset:receivable:voucher:meituan"] == 8_000


def test_two_ledgers_on_one_database_redeem_one_code_once(database: str) -> None:
    """Two server processes (two Ledger instances, no shared lock): the chain's key decides."""
    first, second = Ledger(database, SERVER_SEED), Ledger(database, SERVER_SEED)
    try:
        first.open_store("s1", "Shop", "CNY", "Asia/Shanghai")

        def attempt(i: int) -> str:
            ledger = first if i % 2 else second
            try:
                Vouchers(ledger).redeem("s1", Redemption("meituan", "V1", "o1", 1000, 800, f"r{i}"), None)
                return "created"
            except VoucherAlreadyRedeemed:
                return "refused"
            except PosLedgerError as error:  # contention exhausted: the client retries; never a double write
                return type(error).__name__

        with ThreadPoolExecutor(max_workers=50) as pool:
            outcomes = list(pool.map(attempt, range(50)))
        assert outcomes.count("created") == 1, outcomes
        types = [json.loads(e.body)["type"] for e in first.iter_entries("s1")]
        assert types.count("voucher.redeemed") == 1
    finally:
        first.close()
        second.close()


@given(face=st.integers(0, 10**15), paid=st.integers(0, 10**15), provider=st.sampled_from(["meituan", "dianping"]))
def test_postings_balance_and_reversal_undoes_them(face: int, paid: int, provider: str) -> None:
    paid = min(paid, face)
    postings = redemption_postings(provider, "CNY", face, paid)
    check_balanced(postings)
    debits = {account: amount for account, _, amount in postings if amount > 0}
    assert debits.get(f"asset:receivable:voucher:{provider}", 0) == paid
    assert debits.get(f"contra:discount:voucher:{provider}", 0) == face - paid
    reversal = [(a, c, -n) for a, c, n in postings]
    check_balanced(postings + reversal)
    assert all(n != 0 for _, _, n in postings)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_replaying_the_log_rebuilds_the_vouchers(ledger: Ledger) -> None:
    ledger.open_store("s1", "Shop", "CNY", "Asia/Shanghai")
    service = Vouchers(ledger)
    service.redeem("s1", Redemption("meituan", "V1", "o1", 1000, 800, "r1"), "app")
    service.reverse("s1", "meituan", "V1", "why")
    service.redeem("s1", Redemption("meituan", "V2", "o2", 500, 500, "r2"), None)
    ledger.invalidate("s1")
    rebuilt = Vouchers(ledger)
    assert rebuilt.voucher("s1", "meituan", "V1").reversed_position is not None
    assert rebuilt.voucher("s1", "meituan", "V2").paid_minor == 500
    voucher, created = rebuilt.redeem("s1", Redemption("meituan", "V2", "o2", 500, 500, "r2"), None)
    assert not created and voucher.request_id == "r2"
