"""Standard Webhooks delivery, checked by a receiver that verifies with the PyPI `standardwebhooks` package:
at least once, in log order, retries with backoff across a server restart, 410, failing endpoints,
secret rotation, uninstall, replay."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from api.webhooks import WebhookConfig
from pos_ledger import platform as rules
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.platform_support import InstalledApp, Receiver, install, register_app

FAST = "0.3,0.3,0.3,0.3,0.3,0.3,0.3"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(secrets=[]).start()
    try:
        yield found
    finally:
        found.stop()


def admin_client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def set_up_store(admin: httpx.Client, store_id: str = "s1") -> None:
    assert admin.post("/v1/stores", json={"store_id": store_id, "name": "Shop", "currency": "CNY",
                                          "timezone": "Asia/Shanghai"}).status_code == 201
    assert admin.patch(f"/v1/stores/{store_id}/settings", json={"allow_local_webhooks": True}).status_code == 200


def redeem(admin: httpx.Client, code: str, store_id: str = "s1") -> int:
    response = admin.post(f"/v1/stores/{store_id}/vouchers/redeem", json={
        "provider": "meituan", "code": code, "order_ref": f"o-{code}", "face_value_minor": 1000,
        "paid_minor": 800, "request_id": f"r-{code}"})
    assert response.status_code == 201, response.text
    return int(response.json()["redeemed_position"])


def hook_app(admin: httpx.Client, receiver: Receiver, app_id: str = "hooks", scopes: list[str] | None = None,
             event_types: list[str] | None = None, store_id: str = "s1") -> InstalledApp:
    register_app(admin, app_id, scopes or ["coupons:read", "events:read"], webhook_url=receiver.url,
                 event_types=event_types if event_types is not None else ["voucher.*"])
    app = install(admin, store_id, app_id)
    receiver.secrets.append(app.webhook_secret)
    return app


def wait_until(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_retries_deliver_each_event_once_in_order_across_a_restart(
        database: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POS_LEDGER_WEBHOOK_BACKOFF_S", FAST)
    receiver.fail_first = 3
    first = LiveServer(database).start()
    try:
        with admin_client(first) as admin:
            set_up_store(admin)
            before_install = redeem(admin, "C0")
            app = hook_app(admin, receiver)
            positions = [redeem(admin, f"C{i}") for i in range(1, 4)]
            receiver.wait_for(1)
    finally:
        first.stop()
    second = LiveServer(database).start()
    try:
        with admin_client(second) as admin:
            positions += [redeem(admin, f"C{i}") for i in range(4, 7)]
            accepted = receiver.wait_for(6, timeout_s=40)
            time.sleep(1.0)
            deliveries = admin.get("/v1/stores/s1/apps/hooks/deliveries").json()["deliveries"]
    finally:
        second.stop()
    assert len(receiver.accepted) == 6
    assert receiver.rejected_signatures == 0
    assert [a["data"]["position"] for a in accepted] == positions
    assert before_install not in [a["data"]["position"] for a in accepted]
    assert [a["data"]["event"]["data"]["code"] for a in accepted] == [f"C{i}" for i in range(1, 7)]
    assert len({a["webhook_id"] for a in accepted}) == 6
    assert all(receiver.attempts[a["webhook_id"]] >= 4 for a in accepted)
    first_message = accepted[0]
    assert first_message["type"] == "voucher.redeemed"
    assert set(first_message["data"]) == {"store_id", "position", "event"}
    assert first_message["data"]["store_id"] == "s1"
    assert first_message["timestamp"]
    assert [d["position"] for d in deliveries] == positions
    assert all(d["status"] == "delivered" and d["attempts"] >= 4 for d in deliveries)
    assert {d["webhook_id"] for d in deliveries} == {a["webhook_id"] for a in accepted}
    assert app.client_id == deliveries[0]["client_id"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_gone_disables_the_endpoint_and_replay_sends_again(live_server: LiveServer, admin: httpx.Client,
                                                           receiver: Receiver) -> None:
    set_up_store(admin)
    receiver.answer = lambda payload: 410
    hook_app(admin, receiver)
    position = redeem(admin, "G1")
    wait_until(lambda: not admin.get("/v1/stores/s1/apps/hooks").json()["webhook_enabled"])
    installed = admin.get("/v1/stores/s1/apps/hooks").json()
    assert "410" in installed["webhook_disabled_reason"]
    types = [json.loads(e["body"])["type"] for e in admin.get("/v1/stores/s1/events?limit=1000").json()]
    assert types[-1] == "webhook.disabled"
    redeem(admin, "G2")
    time.sleep(0.5)
    assert receiver.accepted == []
    receiver.answer = None
    replayed = admin.post("/v1/stores/s1/apps/hooks/deliveries/replay", json={"from_position": position})
    assert replayed.status_code == 202 and replayed.json()["webhook_enabled"] is True
    accepted = receiver.wait_for(2)
    assert [a["data"]["event"]["data"]["code"] for a in accepted] == ["G1", "G2"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_an_endpoint_failing_too_long_is_disabled(live_server: LiveServer, admin: httpx.Client,
                                                  receiver: Receiver) -> None:
    live_server.app.state.platform.dispatcher.config = WebhookConfig(backoff_s=(0.2,) * 7, failing_s_max=0.6)
    set_up_store(admin)
    receiver.answer = lambda payload: 500
    hook_app(admin, receiver)
    redeem(admin, "F1")
    wait_until(lambda: not admin.get("/v1/stores/s1/apps/hooks").json()["webhook_enabled"])
    installed = admin.get("/v1/stores/s1/apps/hooks").json()
    assert "failed" in installed["webhook_disabled_reason"]
    delivery = admin.get("/v1/stores/s1/deliveries").json()["deliveries"][0]
    assert delivery["status"] == "failed" and delivery["attempts"] >= 3 and delivery["last_status_code"] == 500


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_rotated_secret_signs_beside_the_old_one(live_server: LiveServer, admin: httpx.Client,
                                                   receiver: Receiver) -> None:
    set_up_store(admin)
    app = hook_app(admin, receiver)
    rotated = admin.post("/v1/stores/s1/apps/hooks/rotate", json={"key": "webhook_secret"})
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != app.webhook_secret
    receiver.secrets[:] = [app.webhook_secret]
    redeem(admin, "R1")
    receiver.wait_for(1)
    headers = receiver.headers_seen[-1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    body = json.dumps(receiver.accepted[0]["data"])  # the receiver already verified with the old secret
    assert body
    receiver.secrets[:] = [new_secret]
    redeem(admin, "R2")
    receiver.wait_for(2)
    assert receiver.rejected_signatures == 0


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_uninstall_stops_deliveries_and_scopes_select_events(live_server: LiveServer, admin: httpx.Client,
                                                             receiver: Receiver) -> None:
    set_up_store(admin)
    hook_app(admin, receiver, scopes=["orders:read", "coupons:read"], event_types=[])
    assert admin.post("/v1/stores/s1/members", json={"member_id": "m1", "name": "Li"}).status_code == 201
    redeem(admin, "U1")
    accepted = receiver.wait_for(1)
    assert [a["type"] for a in accepted] == ["voucher.redeemed"]
    assert admin.delete("/v1/stores/s1/apps/hooks").status_code == 204
    redeem(admin, "U2")
    time.sleep(1.0)
    assert len(receiver.accepted) == 1


# ---- the rules, without a server ----

@given(st.binary(min_size=1, max_size=64), st.text(min_size=1, max_size=30), st.binary(max_size=200))
def test_signatures_verify_with_the_standardwebhooks_package(key: bytes, message_id: str, payload: bytes) -> None:
    import base64

    secret = "whsec_" + base64.b64encode(key).decode()
    now = int(time.time())
    text = payload.decode("latin-1")
    signature = rules.webhook_signature([secret], message_id, now, text.encode())
    headers = {"webhook-id": message_id, "webhook-timestamp": str(now), "webhook-signature": signature}
    Webhook(secret).verify(text, headers, json_parse=False)


def test_retry_schedule_and_message_ids() -> None:
    assert rules.retry_delay_s(1) == 5.0
    assert rules.retry_delay_s(2) == 300.0
    assert rules.retry_delay_s(7) == 36000.0
    assert rules.retry_delay_s(8) is None
    assert rules.webhook_message_id("c", 1) == rules.webhook_message_id("c", 1) != rules.webhook_message_id("c", 2)


@pytest.mark.parametrize("address,local", [
    ("127.0.0.1", True), ("10.0.0.1", True), ("192.168.1.1", True), ("172.16.0.1", True),
    ("169.254.169.254", True), ("::1", True), ("fe80::1", True), ("::ffff:127.0.0.1", True), ("0.0.0.0", True),
    ("8.8.8.8", False), ("2606:4700:4700::1111", False)])
def test_local_addresses(address: str, local: bool) -> None:
    assert rules.is_local_address(address) is local


def test_scopes_select_event_types() -> None:
    assert rules.app_receives(["orders:read"], [], "sale.completed")
    assert rules.app_receives(["orders:read"], [], "order.placed")
    assert not rules.app_receives(["orders:read"], [], "payment.captured")
    assert rules.app_receives(["payments:read"], [], "refund.issued")
    assert rules.app_receives(["members:read"], [], "points.earned")
    assert rules.app_receives(["coupons:read"], ["voucher.*"], "voucher.reversed")
    assert not rules.app_receives(["coupons:read"], ["voucher.*"], "coupon.issued")
    assert not rules.app_receives(["events:read", "coupons:write"], [], "voucher.redeemed")
    assert not rules.app_receives(["coupons:read"], ["member.*"], "member.registered")
    assert rules.valid_event_pattern("order.*") and rules.valid_event_pattern("stored_value.spent")
    assert not rules.valid_event_pattern("*") and not rules.valid_event_pattern("Order.Placed")


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_two_servers_on_one_database_deliver_each_event_once(database: str, receiver: Receiver) -> None:
    first, second = LiveServer(database).start(), LiveServer(database).start()
    try:
        with admin_client(first) as admin, admin_client(second) as other:
            set_up_store(admin)
            hook_app(admin, receiver)
            codes = [f"T{i}" for i in range(8)]
            for index, code in enumerate(codes):
                redeem(admin if index % 2 else other, code)
            accepted = receiver.wait_for(8)
            time.sleep(1.5)
    finally:
        first.stop()
        second.stop()
    assert len(receiver.accepted) == 8
    assert sorted(a["data"]["event"]["data"]["code"] for a in accepted) == sorted(codes)
    assert len({a["webhook_id"] for a in accepted}) == 8


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_deliveries_reach_local_addresses_only_while_the_store_allows_them(
        live_server: LiveServer, admin: httpx.Client, receiver: Receiver) -> None:
    set_up_store(admin)
    hook_app(admin, receiver)
    assert admin.patch("/v1/stores/s1/settings", json={"allow_local_webhooks": False}).status_code == 200
    time.sleep(1.5)  # the dispatcher rereads the store's settings on its poll
    redeem(admin, "L1")

    def refused() -> bool:
        rows = admin.get("/v1/stores/s1/deliveries").json()["deliveries"]
        return bool(rows) and "local addresses" in rows[0]["last_error"]

    wait_until(refused)
    assert receiver.accepted == [] and receiver.headers_seen == []


def test_personal_data_leaves_member_and_order_events_but_not_sale_lines() -> None:
    member, removed = rules.without_personal_data(
        "member.registered", {"member_id": "m1", "name": "Li", "phone": "138", "birthday": "01-01"})
    assert member == {"member_id": "m1"} and removed
    order, removed = rules.without_personal_data(
        "order.placed", {"order_id": "o1", "customer": {"name": "Li", "phone": "138", "id": "c1"},
                         "lines": [{"name": "Latte", "qty": 1}]})
    assert order == {"order_id": "o1", "customer": {"id": "c1"}, "lines": [{"name": "Latte", "qty": 1}]}
    assert removed
    sale = {"lines": [{"name": "Latte"}], "total_minor": 100}
    assert rules.without_personal_data("sale.completed", sale) == (sale, False)


def test_redis_wakeups_carry_other_processes_commits() -> None:
    import secrets
    import threading

    from api.webhooks import RedisWakeups
    from projections.fanout import RedisFanout

    store_id = f"wake-{secrets.token_hex(6)}"
    heard: list[tuple[str, int]] = []
    arrived = threading.Event()

    def notify(store: str, position: int, head: bytes) -> None:
        if store == store_id:
            heard.append((store, position))
            arrived.set()

    wakeups = RedisWakeups("redis://127.0.0.1:6379/0", notify)
    wakeups.start()
    fanout = RedisFanout("redis://127.0.0.1:6379/0")
    try:
        time.sleep(0.3)  # the subscription is in place
        fanout(store_id, 7, bytes(32))
        assert arrived.wait(5)
        assert heard == [(store_id, 7)]
    finally:
        fanout.client.delete(f"pos-ledger:{store_id}:log")
        fanout.close()
        wakeups.stop()
