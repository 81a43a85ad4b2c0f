"""Taking payment over HTTP against the sandbox provider running as a real process."""

# The fixtures are imported (not a plugin) so they take precedence over conftest's `admin`.
# ruff: noqa: F811
from __future__ import annotations

import base64
import io
import json
import time
import uuid

import httpx
import pytest

from pos_ledger import _core
from tests.payments_fixtures import (
    ALIPAY_CODE,
    STORE,
    UNIONPAY_CODE,
    WECHAT_CODE,
    PayingServer,
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
    wait_for,
)


def payment(client: httpx.Client, payment_id: str) -> dict[str, object]:
    return dict(ok(client.get(f"/v1/stores/{STORE}/payments/{payment_id}")))


class TestMerchantPresented:
    def test_dynamic_emvco_qr_is_captured_by_the_signed_notification(self, admin: httpx.Client,
                                                                     sandbox: Sandbox) -> None:
        created = ok(pay(admin, 2_350, order_ref="A-1"), 201)
        assert created["status"] == "pending" and created["provider"] == "sandbox"
        payload = created["qr_payload"]
        fields = dict(_core.emv_decode(payload))  # strict: checks the CRC too
        assert fields["00"] == "01" and fields["01"] == "12"
        assert fields["54"] == "23.50" and fields["53"] == "156" and fields["58"] == "CN"
        assert fields["59"] == "Test Shop" and fields["60"] == "Shanghai"
        assert dict(fields["62"])["05"] == created["payment_id"]
        assert dict(fields["26"])["01"] == STORE
        _core.emv_validate(_core.emv_decode(payload), "emvco")
        assert balances(admin) == {}

        answer = sandbox.pay(created["payment_id"], channel="alipay")
        assert answer["notify_status"] == 200
        captured = payment(admin, created["payment_id"])
        assert captured["status"] == "captured" and captured["channel"] == "alipay"
        assert balances(admin) == {"asset:psp:alipay": 2_350, "liability:unapplied_payments": -2_350}

    def test_qr_images_render_the_payload(self, admin: httpx.Client) -> None:
        created = ok(pay(admin, 1_000), 201)
        svg = admin.get(f"/v1/stores/{STORE}/payments/{created['payment_id']}/qr.svg")
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        assert "<svg" in svg.text
        png = admin.get(f"/v1/stores/{STORE}/payments/{created['payment_id']}/qr.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        zxingcpp = pytest.importorskip("zxingcpp")
        from PIL import Image

        decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
        assert [d.text for d in decoded] == [created["qr_payload"]]

    def test_an_amount_no_qr_can_carry_is_a_422_and_writes_nothing(self, admin: httpx.Client) -> None:
        before = chain_length(admin)
        # EMV tag 54 holds at most 13 characters: 142,011,954,536,071 fen is 16.
        problem(pay(admin, 142_011_954_536_071), 422)
        assert chain_length(admin) == before
        assert ok(pay(admin, 999_999_999_999), 201)["qr_payload"]  # "9999999999.99": the largest

    def test_a_provider_code_url_is_the_qr_text(self, admin: httpx.Client, sandbox: Sandbox) -> None:
        created = ok(pay(admin, 1_000, channel="wechat"), 201)
        assert created["qr_payload"].startswith("weixin://wxpay/bizpayurl?pr=")
        sandbox.pay(created["payment_id"], channel="wechat")
        assert payment(admin, created["payment_id"])["status"] == "captured"
        assert balances(admin)["asset:psp:wechat"] == 1_000

    def test_a_qr_whose_creation_timed_out_is_decided_by_the_query(self, admin: httpx.Client,
                                                                    sandbox: Sandbox) -> None:
        created = ok(pay(admin, 1_003), 201)
        assert created["status"] == "pending"
        assert dict(_core.emv_decode(created["qr_payload"]))["54"] == "10.03"
        sandbox.pay(created["payment_id"], channel="unionpay")
        assert payment(admin, created["payment_id"])["status"] == "captured"

    def test_business_failure_in_http_200_fails_the_payment(self, admin: httpx.Client) -> None:
        created = ok(pay(admin, 1_001), 201)
        assert created["status"] == "failed" and created["failure_reason"] == "provider_failure"
        assert balances(admin) == {}


class TestCustomerPresented:
    @pytest.mark.parametrize(("code", "channel"), [(WECHAT_CODE, "wechat"), (ALIPAY_CODE, "alipay"),
                                                   (UNIONPAY_CODE, "unionpay"),
                                                   ("1012345678901234567"[:18], "wechat"),
                                                   ("3012345678901234567890", "alipay")])
    def test_codes_route_by_shape_and_capture(self, admin: httpx.Client, code: str, channel: str) -> None:
        created = ok(pay(admin, 1_500, auth_code=code), 201)
        assert created["status"] == "captured" and created["channel"] == channel
        assert created["qr_payload"] is None
        assert balances(admin)[f"asset:psp:{channel}"] == 1_500

    @pytest.mark.parametrize("code", ["", "abc", "16" + "0" * 16, "1345678901234567", "2512345678901",
                                      "621234567890123456", "3112345678901234", "13456789012345678x",
                                      "9" * 19, "25" + "0" * 23])
    def test_anything_else_is_a_clear_422(self, admin: httpx.Client, code: str) -> None:
        before = chain_length(admin)
        body = problem(pay(admin, 1_500, auth_code=code), 422)
        assert body["type"].endswith(("unknown-auth-code", "invalid-input"))
        assert chain_length(admin) == before

    def test_declined(self, admin: httpx.Client) -> None:
        created = ok(pay(admin, 2_002, auth_code=WECHAT_CODE), 201)
        assert created["status"] == "failed" and created["failure_reason"] == "declined"
        assert balances(admin) == {}

    def test_business_failure_in_http_200(self, admin: httpx.Client) -> None:
        created = ok(pay(admin, 2_001, auth_code=ALIPAY_CODE), 201)
        assert created["status"] == "failed" and created["failure_reason"] == "provider_failure"

    def test_timeout_then_the_query_decides(self, admin: httpx.Client, server: PayingServer) -> None:
        started = time.monotonic()
        created = ok(pay(admin, 2_003, auth_code=UNIONPAY_CODE), 201)
        assert time.monotonic() - started < 1.4  # did not wait for the sandbox's late answer
        assert created["status"] == "captured"
        entries = server.ledger.read_entries(STORE, 0, 100)
        captured = [json.loads(e.body) for e in entries if '"payment.captured"' in e.body]
        assert captured[0]["data"]["source"] == "query"
        assert balances(admin)["asset:psp:unionpay"] == 2_003

    def test_user_paying_is_decided_by_the_later_notification(self, admin: httpx.Client) -> None:
        created = ok(pay(admin, 2_004, auth_code=WECHAT_CODE), 201)
        assert created["status"] == "pending"
        wait_for(lambda: payment(admin, created["payment_id"])["status"] == "captured")
        # The cached state can show the capture a moment before its transaction commits the balances.
        wait_for(lambda: balances(admin).get("asset:psp:wechat") == 2_004)


def _pending_qr(admin: httpx.Client, sandbox: Sandbox, amount_minor: int = 3_000) -> tuple[str, dict[str, str], bytes]:
    """A pending QR payment and a genuine signed notification for another, captured, one (as a template)."""
    other = ok(pay(admin, 500), 201)["payment_id"]
    sandbox.pay(other)
    genuine = sandbox.notifications(other)[-1]
    pending = ok(pay(admin, amount_minor), 201)["payment_id"]
    return pending, genuine["headers"], genuine["body"].encode()


class TestNotifications:
    def test_forged_notifications_capture_nothing(self, admin: httpx.Client, sandbox: Sandbox,
                                                  server: PayingServer, caplog: pytest.LogCaptureFixture) -> None:
        pending, headers, body = _pending_qr(admin, sandbox)
        url = f"/v1/stores/{STORE}/psp/notifications"
        claim = json.loads(body)
        claim["resource"]["out_trade_no"] = pending
        claim["resource"]["amount"]["total"] = 3_000
        forged_body = json.dumps(claim).encode()
        before = chain_length(admin)
        # The genuine signature over another body, a garbage signature, a stale timestamp, an unknown key.
        attempts = [
            (headers, forged_body),
            ({**headers, "Wechatpay-Signature": base64.b64encode(b"x" * 256).decode()}, forged_body),
            ({**headers, "Wechatpay-Timestamp": str(int(time.time()) - 3600)}, body),
            ({**headers, "Wechatpay-Serial": "0" * 40}, forged_body),
            ({"Content-Type": "application/json"}, forged_body),
        ]
        for forged_headers, forged in attempts:
            answer = httpx.post(server.url + url, content=forged, headers=forged_headers)
            problem(answer, 401)
        assert payment(admin, pending)["status"] == "pending"
        assert chain_length(admin) == before
        assert "refused a notification" in caplog.text

    def test_replayed_and_duplicate_callbacks_count_once(self, admin: httpx.Client, sandbox: Sandbox,
                                                         server: PayingServer) -> None:
        created = ok(pay(admin, 4_000), 201)
        sandbox.pay(created["payment_id"], channel="unionpay")
        length = chain_length(admin)
        sent = sandbox.notifications(created["payment_id"])[-1]
        replay = httpx.post(f"{server.url}/v1/stores/{STORE}/psp/notifications", content=sent["body"].encode(),
                            headers=sent["headers"])
        assert replay.status_code == 200 and replay.json()["message"] == "replayed"
        duplicate = sandbox.notify_again(created["payment_id"])
        assert duplicate["notify_status"] == 200
        assert chain_length(admin) == length
        assert balances(admin) == {"asset:psp:unionpay": 4_000, "liability:unapplied_payments": -4_000}


class TestIdempotencyAndAuth:
    def test_same_key_same_body_replays_different_body_is_422(self, admin: httpx.Client) -> None:
        body = {"amount_minor": 1_200, "currency": "CNY", "order_ref": "K-1", "auth_code": WECHAT_CODE}
        first = admin.post(f"/v1/stores/{STORE}/payments", json=body, headers={"Idempotency-Key": "k-1"})
        again = admin.post(f"/v1/stores/{STORE}/payments", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        assert again.headers.get("idempotent-replayed") == "true"
        assert balances(admin)["asset:psp:wechat"] == 1_200
        changed = admin.post(f"/v1/stores/{STORE}/payments", json={**body, "amount_minor": 1_300},
                             headers={"Idempotency-Key": "k-1"})
        problem(changed, 422)

    def test_every_post_is_idempotent(self, admin: httpx.Client) -> None:
        store = {"store_id": "s2", "name": "Two", "currency": "CNY", "timezone": "Asia/Shanghai"}
        first = admin.post("/v1/stores", json=store, headers={"Idempotency-Key": "open-s2"})
        again = admin.post("/v1/stores", json=store, headers={"Idempotency-Key": "open-s2"})
        assert first.status_code == again.status_code == 201 and first.json() == again.json()
        problem(admin.post("/v1/stores", json={**store, "name": "Other"}, headers={"Idempotency-Key": "open-s2"}),
                422)

    def test_a_terminal_retry_replays_and_a_forger_gets_nothing(self, admin: httpx.Client,
                                                                 till: SigningTerminal) -> None:
        path = f"/v1/stores/{STORE}/payments"
        body = {"amount_minor": 650, "currency": "CNY", "order_ref": "R-9", "method": "cash"}
        first = ok(till.post(path, body, **{"Idempotency-Key": "till-retry"}), 201)
        time.sleep(1.1)  # a retry signs again: another `created`, another signature
        again = till.post(path, body, **{"Idempotency-Key": "till-retry"})
        assert again.status_code == 201 and again.json() == first
        assert again.headers["idempotent-replayed"] == "true"
        from pos_ledger.simulate import TerminalKey

        forger = SigningTerminal(str(till.client.base_url), "t1")
        forger.till.key = TerminalKey("t1", TerminalKey.generate("x").seed)  # claims t1 with another key
        stolen = forger.post(path, body, **{"Idempotency-Key": "till-retry"})
        problem(stolen, 401)
        assert "payment_id" not in stolen.text
        forger.client.close()

    def test_terminal_signed_commands(self, admin: httpx.Client, till: SigningTerminal) -> None:
        path = f"/v1/stores/{STORE}/payments"
        created = ok(till.post(path, {"amount_minor": 800, "currency": "CNY", "order_ref": "T-1",
                                      "method": "cash", "tendered_minor": 1_000}), 201)
        assert created["terminal_id"] == "t1" and created["change_minor"] == 200
        assert ok(till.get(f"{path}/{created['payment_id']}"))["status"] == "captured"
        # Another terminal may not use t1's drawer; tampering with the body breaks the signature.
        problem(till.post(path, {"amount_minor": 800, "currency": "CNY", "order_ref": "T-2", "method": "cash",
                                 "terminal_id": "t9"}), 403)
        body = json.dumps({"amount_minor": 800, "currency": "CNY", "order_ref": "T-3", "method": "cash"}).encode()
        from pos_ledger import httpsig

        headers = httpsig.sign_request(till.till.key.seed, "t1", "POST", path, body, int(time.time()))
        tampered = body.replace(b"800", b"900")
        problem(till.client.post(path, content=tampered, headers={**headers, "content-type": "application/json"}),
                401)
        stale = httpsig.sign_request(till.till.key.seed, "t1", "POST", path, body, int(time.time()) - 3600)
        problem(till.client.post(path, content=body, headers={**stale, "content-type": "application/json"}), 401)
        problem(httpx.post(till.client.base_url.join(path), content=body,
                           headers={"content-type": "application/json"}), 401)


class TestSplitTender:
    def test_one_order_paid_by_code_cash_and_card_applied_by_one_sale(self, admin: httpx.Client,
                                                                      till: SigningTerminal) -> None:
        order = str(uuid.uuid4())
        path = f"/v1/stores/{STORE}/payments"
        wechat = ok(till.post(path, {"amount_minor": 3_000, "currency": "CNY", "order_ref": order,
                                     "auth_code": WECHAT_CODE}), 201)
        cash = ok(till.post(path, {"amount_minor": 2_000, "currency": "CNY", "order_ref": order,
                                   "method": "cash", "tendered_minor": 5_000}), 201)
        card = ok(till.post(path, {"amount_minor": 1_000, "currency": "CNY", "order_ref": order,
                                   "method": "card"}), 201)
        assert cash["change_minor"] == 3_000
        summary = ok(admin.get(path, params={"order_ref": order}))
        assert summary["captured_minor"] == 6_000 and len(summary["payments"]) == 3
        sale = {
            "order_id": order, "currency": "CNY", "discount_minor": 500, "total_minor": 6_000,
            "lines": [{"sku": "LATTE", "name": "Latte", "qty": 2, "unit_price_minor": 3_250}],
            "tenders": [{"method": "wechat", "amount_minor": 3_000, "payment_id": wechat["payment_id"]},
                        {"method": "cash", "amount_minor": 2_000, "payment_id": cash["payment_id"]},
                        {"method": "card", "amount_minor": 1_000, "payment_id": card["payment_id"]}],
        }
        assert till.ingest("sale.completed", sale)["status"] == "accepted"
        assert balances(admin) == {"asset:psp:wechat": 3_000, "asset:cash:t1": 2_000, "asset:card:acquirer": 1_000,
                                   "contra:discount:manual": 500, "revenue:sales": -6_500}
        again = till.ingest("sale.completed", {**sale, "order_id": str(uuid.uuid4())})
        assert again["status"] == "rejected" and again["reason"] == "payment_already_applied"
        assert ok(admin.get(f"{path}/{cash['payment_id']}"))["applied_order_id"] == order


class TestRefundOfAMemberOrder:
    def test_a_till_refund_reverses_the_points_the_order_earned_once(self, admin: httpx.Client,
                                                                     till: SigningTerminal) -> None:
        from tests.loyalty_support import balances as loyalty_balances
        from tests.loyalty_support import configure, member, register

        configure(admin)
        register(admin, "alice")
        order = str(uuid.uuid4())
        path = f"/v1/stores/{STORE}/payments"
        card = ok(till.post(path, {"amount_minor": 10_000, "currency": "CNY", "order_ref": order,
                                   "method": "card"}), 201)
        sale = {
            "order_id": order, "currency": "CNY", "discount_minor": 0, "total_minor": 10_000,
            "lines": [{"sku": "CAKE", "name": "Cake", "qty": 1, "unit_price_minor": 10_000}],
            "tenders": [{"method": "card", "amount_minor": 10_000, "payment_id": card["payment_id"]}],
            "member_id": "alice",
        }
        assert till.ingest("sale.completed", sale)["status"] == "accepted"
        assert member(admin, "alice")["points"] == 100
        refunds = f"{path}/{card['payment_id']}/refunds"
        ok(admin.post(refunds, json={"amount_minor": 2_500, "refund_id": "r1"}), 201)
        assert member(admin, "alice")["points"] == 75
        ok(admin.post(refunds, json={"amount_minor": 2_500, "refund_id": "r1"}), 201)  # a retry
        assert member(admin, "alice")["points"] == 75
        # The same refund told to the members' endpoint too is recognised, not reversed again.
        again = ok(admin.post(f"/v1/stores/{STORE}/members/alice/orders/{order}/refund",
                              json={"refund_id": "r1", "amount_minor": 2_500}))
        assert again["created"] is False and again["member"]["points"] == 75
        ok(admin.post(refunds, json={"amount_minor": 7_500, "refund_id": "r2"}), 201)
        assert member(admin, "alice")["points"] == 0
        assert loyalty_balances(admin)[("liability:points:alice", "PTS")] == 0
