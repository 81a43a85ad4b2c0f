"""Shifts and the cash drawer over HTTP: float, paid in / out, cash sales and refunds, X and Z reports."""

# The fixtures are imported (not a plugin) so they take precedence over conftest's `admin`.
# ruff: noqa: F811
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.payments_fixtures import (
    STORE,
    WECHAT_CODE,
    PayingServer,
    Sandbox,
    SigningTerminal,
    admin,  # noqa: F401
    balances,
    ok,
    problem,
    sandbox,  # noqa: F401
    server,  # noqa: F401
    till,  # noqa: F401
)

SHIFTS = f"/v1/stores/{STORE}/shifts"
PAYMENTS = f"/v1/stores/{STORE}/payments"


def test_a_day_at_the_till(admin: httpx.Client, till: SigningTerminal, server: PayingServer) -> None:
    day_at_the_till(admin, till, server)


@pytest.mark.postgres
def test_a_day_at_the_till_on_postgres(pg_database: str, sandbox: Sandbox) -> None:
    running = PayingServer(pg_database, sandbox.url)
    terminal = SigningTerminal(running.url, "t1")
    try:
        with httpx.Client(base_url=running.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                          timeout=30) as client:
            ok(client.post("/v1/stores", json={"store_id": STORE, "name": "Test Shop", "currency": "CNY",
                                               "timezone": "Asia/Shanghai"}), 201)
            ok(client.post(f"/v1/stores/{STORE}/terminals",
                           json={"terminal_id": "t1", "public_key": terminal.till.key.public_key_b64}), 201)
            day_at_the_till(client, terminal, running)
    finally:
        terminal.client.close()
        running.stop()


def day_at_the_till(admin: httpx.Client, till: SigningTerminal, server: PayingServer) -> None:
    shift = ok(till.post(SHIFTS, {"float_minor": 10_000}), 201)
    shift_id = shift["shift_id"]
    assert shift["kind"] == "X" and shift["cash_expected_minor"] == 10_000
    assert problem(till.post(SHIFTS, {"float_minor": 0}), 409)["reason"] == "shift_already_open"
    # A cash payment with change, a card payment, a scanned code, a discounted cash sale posted by the till.
    cash = ok(till.post(PAYMENTS, {"amount_minor": 2_500, "currency": "CNY", "order_ref": "D-1",
                                   "method": "cash", "tendered_minor": 3_000}), 201)
    ok(till.post(PAYMENTS, {"amount_minor": 1_200, "currency": "CNY", "order_ref": "D-2", "method": "card"}), 201)
    wechat = ok(till.post(PAYMENTS, {"amount_minor": 4_000, "currency": "CNY", "order_ref": "D-3",
                                     "auth_code": WECHAT_CODE}), 201)
    sale = {"order_id": str(uuid.uuid4()), "currency": "CNY", "discount_minor": 300, "total_minor": 1_500,
            "lines": [{"sku": "TART", "name": "Egg tart", "qty": 2, "unit_price_minor": 900}],
            "tenders": [{"method": "cash", "amount_minor": 2_000, "change_minor": 500}]}
    assert till.ingest("sale.completed", sale)["status"] == "accepted"
    ok(till.post(f"{SHIFTS}/{shift_id}/cash-movements", {"kind": "paid_in", "amount_minor": 500,
                                                          "reason": "change from the bank"}), 201)
    ok(till.post(f"{SHIFTS}/{shift_id}/cash-movements", {"kind": "paid_out", "amount_minor": 1_000,
                                                          "reason": "milk"}), 201)
    ok(till.post(f"{PAYMENTS}/{cash['payment_id']}/refunds", {"amount_minor": 500}), 201)
    ok(till.post(f"{PAYMENTS}/{wechat['payment_id']}/refunds", {"amount_minor": 1_000}), 201)
    body = problem(till.post(f"{SHIFTS}/{shift_id}/cash-movements", {"kind": "paid_out", "amount_minor": 99_999}),
                   409)
    assert body["reason"] == "insufficient_cash"

    expected = 10_000 + 2_500 + 1_500 + 500 - 1_000 - 500
    x = ok(till.get(f"{SHIFTS}/{shift_id}/x-report"))
    assert x["kind"] == "X" and x["cash_expected_minor"] == expected
    assert x["tenders"] == {"card": 1_200, "cash": 4_000, "wechat": 4_000}
    assert x["refunds"] == {"cash": 500, "wechat": 1_000} and x["refunds_minor"] == 1_500
    assert x["discounts_minor"] == 300 and x["paid_in_minor"] == 500 and x["paid_out_minor"] == 1_000
    assert balances(admin)["asset:cash:t1"] == expected
    problem(till.get(f"{SHIFTS}/{shift_id}/z-report"), 409)

    z = ok(till.post(f"{SHIFTS}/{shift_id}/close", {"counted_minor": expected - 100}))
    assert z["kind"] == "Z" and z["status"] == "closed"
    assert (z["cash_expected_minor"], z["counted_minor"], z["difference_minor"]) == (expected, expected - 100, -100)
    # The printed Z report pins the log: its head is the chain hash at the entry that closed the shift.
    entry = server.ledger.read_entries(STORE, z["chain_position"] - 1, 1)[0]
    assert '"shift.closed"' in entry.body and entry.hash.hex() == z["chain_head"]
    assert ok(till.get(f"{SHIFTS}/{shift_id}/z-report")) == z
    books = balances(admin)
    assert "asset:cash:t1" not in books
    assert books["asset:cash:safe"] == expected - 100 - 10_000 and books["expense:cash_short"] == 100
    assert sum(books.values()) == 0
    assert problem(till.post(f"{SHIFTS}/{shift_id}/close", {"counted_minor": 0}), 409)["reason"] == "shift_closed"

    day = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    daily = ok(admin.get(f"/v1/stores/{STORE}/z-report", params={"day": day}))
    assert daily["shifts"] == [shift_id] and daily["difference_minor"] == -100
    assert daily["tenders"] == x["tenders"] and len(daily["chain_head"]) == 64


def test_over_and_carried_in_cash(admin: httpx.Client, till: SigningTerminal) -> None:
    # Cash taken with no shift open stays in the drawer and shows as carried in.
    sale = {"order_id": str(uuid.uuid4()), "currency": "CNY", "discount_minor": 0, "total_minor": 900,
            "lines": [{"sku": "TART", "name": "Egg tart", "qty": 1, "unit_price_minor": 900}],
            "tenders": [{"method": "cash", "amount_minor": 900}]}
    assert till.ingest("sale.completed", sale)["status"] == "accepted"
    shift = ok(admin.post(SHIFTS, json={"float_minor": 2_000, "terminal_id": "t1"}), 201)
    assert shift["carried_in_minor"] == 900 and shift["cash_expected_minor"] == 2_900
    z = ok(admin.post(f"{SHIFTS}/{shift['shift_id']}/close", json={"counted_minor": 3_000}))
    assert z["difference_minor"] == 100
    assert balances(admin)["income:cash_over"] == -100


def test_terminals_only_touch_their_own_drawer(admin: httpx.Client, till: SigningTerminal,
                                               server: PayingServer) -> None:
    other = SigningTerminal(server.url, "t2")
    ok(admin.post(f"/v1/stores/{STORE}/terminals",
                  json={"terminal_id": "t2", "public_key": other.till.key.public_key_b64}), 201)
    shift = ok(till.post(SHIFTS, {"float_minor": 500}), 201)
    problem(other.post(f"{SHIFTS}/{shift['shift_id']}/close", {"counted_minor": 500}), 403)
    problem(other.post(SHIFTS, {"float_minor": 500, "terminal_id": "t1"}), 403)
    problem(admin.post(SHIFTS, json={"float_minor": 500}), 422)
    problem(httpx.post(f"{server.url}{SHIFTS}", json={"float_minor": 1, "terminal_id": "t1"}), 401)
    # A terminal may also post its shift events itself (offline), signed like any event.
    own = other.ingest("shift.opened", {"shift_id": "offline-1", "terminal_id": "t2", "currency": "CNY",
                                        "float_minor": 300})
    assert own["status"] == "accepted"
    foreign = other.ingest("cash.moved", {"shift_id": shift["shift_id"], "kind": "paid_out", "amount_minor": 100,
                                          "currency": "CNY"})
    assert foreign["status"] == "rejected" and foreign["reason"] == "not_own_drawer"
    other.client.close()


def test_a_cash_recharge_goes_into_the_till_and_its_refund_comes_out(admin: httpx.Client,
                                                                     till: SigningTerminal) -> None:
    from tests.loyalty_support import configure, register

    configure(admin)
    register(admin, "alice")
    shift_id = ok(till.post(SHIFTS, {"float_minor": 5_000}), 201)["shift_id"]
    members = f"/v1/stores/{STORE}/members/alice"
    ok(admin.post(f"{members}/recharge", json={"amount_minor": 10_000, "currency": "CNY", "method": "cash",
                                               "recharge_id": "rc1", "terminal_id": "t1"}), 201)
    ok(admin.post(f"{members}/recharge", json={"amount_minor": 3_000, "currency": "CNY", "method": "wechat",
                                               "recharge_id": "rc2", "terminal_id": "t1"}), 201)
    x = ok(admin.get(f"{SHIFTS}/{shift_id}/x-report"))
    assert x["cash_expected_minor"] == 15_000 and x["cash_recharges_minor"] == 10_000
    assert x["recharges"] == {"cash": 10_000, "wechat": 3_000} and x["tenders"] == {}
    assert balances(admin)["asset:cash:t1"] == 15_000
    refund = ok(admin.post(f"{members}/recharges/rc1/refund"))
    assert refund["principal_returned_minor"] == 10_000
    x = ok(admin.get(f"{SHIFTS}/{shift_id}/x-report"))
    assert x["cash_expected_minor"] == 5_000 and x["cash_recharges_minor"] == 0
    closed = ok(till.post(f"{SHIFTS}/{shift_id}/close", {"counted_minor": 5_000}))
    assert closed["difference_minor"] == 0 and balances(admin).get("asset:cash:t1", 0) == 0
    # A recharge into a till nobody registered is refused, and nothing is written.
    refused = admin.post(f"{members}/recharge", json={"amount_minor": 100, "currency": "CNY", "method": "cash",
                                                      "terminal_id": "t404"})
    assert problem(refused, 409)["reason"] == "terminal_unknown"


def test_a_cash_recharge_cannot_be_refunded_from_an_emptied_drawer(admin: httpx.Client,
                                                                   till: SigningTerminal) -> None:
    from tests.loyalty_support import configure, register

    configure(admin)
    register(admin, "bob")
    shift_id = ok(till.post(SHIFTS, {"float_minor": 0}), 201)["shift_id"]
    members = f"/v1/stores/{STORE}/members/bob"
    ok(admin.post(f"{members}/recharge", json={"amount_minor": 2_000, "currency": "CNY", "method": "cash",
                                               "recharge_id": "rc1", "terminal_id": "t1"}), 201)
    ok(till.post(f"{SHIFTS}/{shift_id}/close", {"counted_minor": 2_000}))
    assert problem(admin.post(f"{members}/recharges/rc1/refund"), 409)["reason"] == "insufficient_cash"


def test_a_till_signs_its_own_loyalty_commands(admin: httpx.Client, till: SigningTerminal) -> None:
    """Members and coupons at the counter: the till's RFC 9421 signature, no back-office token."""
    from tests.loyalty_support import campaign, configure

    configure(admin)
    shift_id = ok(till.post(SHIFTS, {"float_minor": 0}), 201)["shift_id"]
    members = f"/v1/stores/{STORE}/members"
    ok(till.post(members, {"member_id": "carol", "name": "Carol"}), 201)
    ok(till.post(f"{members}/carol/recharge", {"amount_minor": 10_000, "currency": "CNY", "method": "cash"}), 201)
    assert ok(till.get(f"{members}/carol"))["balance_minor"] == 12_000  # "pay 100 get 20"
    assert ok(admin.get(f"{SHIFTS}/{shift_id}/x-report"))["cash_expected_minor"] == 10_000
    # A till cannot put money into another till's drawer.
    problem(till.post(f"{members}/carol/recharge", {"amount_minor": 100, "currency": "CNY", "method": "cash",
                                                    "terminal_id": "t9"}), 403)
    campaign(admin, "c1")
    coupon = ok(admin.post(f"/v1/stores/{STORE}/campaigns/c1/issue", json={"member_id": "carol"}), 201)
    redeemed = till.post(f"/v1/stores/{STORE}/coupons/{coupon['token']}/redeem",
                         {"order_ref": "o1", "subtotal_minor": 15_000})
    assert redeemed.status_code == 201, redeemed.text
    assert problem(till.post(f"/v1/stores/{STORE}/coupons/{coupon['token']}/redeem",
                             {"order_ref": "o2", "subtotal_minor": 15_000}), 409)["reason"]
    # Configuring the program stays with the back office.
    problem(till.client.put(f"/v1/stores/{STORE}/member-program", json={}), 401)
