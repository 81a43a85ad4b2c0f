"""A terminal's signed command runs once: the same signed request again is 401 `replayed` and writes nothing."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.nonces import NonceTable
from pos_ledger import httpsig
from pos_ledger.simulate import Client, Terminal

PROBLEM = "application/problem+json"


class Till:
    """Sends each signed request twice, byte for byte (what an attacker on the wire replays)."""

    def __init__(self, terminal: Terminal, base_url: str, ledger: Any) -> None:
        self.terminal = terminal
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.ledger = ledger

    def twice(self, path: str, payload: dict[str, Any] | None, idempotency_key: str | None = None,
              method: str = "POST") -> dict[str, Any]:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {**self.terminal.sign_request(method, path, body, idempotency_key=idempotency_key),
                   "content-type": "application/json"}
        first = self.http.request(method, path, content=body, headers=headers)
        assert first.status_code < 300, (path, first.text)
        length = self.ledger.chain("s1")[1]
        replayed = self.http.request(method, path, content=body, headers=headers)
        assert replayed.status_code == 401, (path, replayed.text)
        assert replayed.headers["content-type"].startswith(PROBLEM)
        assert replayed.json()["type"].endswith("replayed"), replayed.json()
        assert self.ledger.chain("s1")[1] == length, f"the replay of {path} wrote to the log"
        answer: dict[str, Any] = first.json()
        return answer


@pytest.fixture
def till(shop: tuple[Client, Terminal], live_server: Any) -> Till:
    return Till(shop[1], live_server.url, live_server.ledger)


def test_every_signed_command_kind_runs_once(till: Till, admin: httpx.Client) -> None:
    shift = till.twice("/v1/stores/s1/shifts", {"float_minor": 10_000})
    till.twice(f"/v1/stores/s1/shifts/{shift['shift_id']}/cash-movements", {"kind": "paid_out", "amount_minor": 500})
    till.twice(f"/v1/stores/s1/shifts/{shift['shift_id']}/cash-movements", {"kind": "paid_in", "amount_minor": 300})
    paid = till.twice("/v1/stores/s1/payments", {"amount_minor": 2_800, "currency": "CNY", "order_ref": "o-1",
                                                  "method": "cash"})
    till.twice(f"/v1/stores/s1/payments/{paid['payment_id']}/refunds", {"amount_minor": 100})  # no refund_id
    other = till.twice("/v1/stores/s1/payments", {"amount_minor": 900, "currency": "CNY", "order_ref": "o-2",
                                                   "method": "card"})
    till.twice(f"/v1/stores/s1/payments/{other['payment_id']}/void", {})
    member = till.twice("/v1/stores/s1/members", {"name": "Ann"})
    member_path = f"/v1/stores/s1/members/{member['member_id']}"
    recharge = till.twice(f"{member_path}/recharge", {"amount_minor": 10_000, "currency": "CNY"})
    till.twice(f"{member_path}/spend", {"amount_minor": 1_000, "order_ref": "o-3"})
    till.twice(f"{member_path}/checkout/confirm", {"order_ref": "o-4", "amount_minor": 5_000})
    till.twice(f"{member_path}/points/redeem", {"points": 10, "order_ref": "o-5"})
    till.twice(f"{member_path}/orders/o-4/refund", {"refund_id": "r-1", "amount_minor": 5_000})
    till.twice(f"{member_path}/recharges/{recharge['recharge_id']}/refund", None)
    now = datetime.now(UTC)
    campaign = {"campaign_id": "c-1", "name": "5 off", "kind": "cash_off", "off_minor": 500,
                "valid_from": (now - timedelta(days=1)).isoformat(), "valid_until": (now + timedelta(days=1)).isoformat(),
                "quota_total": 10}
    assert admin.post("/v1/stores/s1/campaigns", json=campaign).status_code == 201
    coupon = till.twice("/v1/stores/s1/campaigns/c-1/issue", {"member_id": member["member_id"]})
    till.twice(f"/v1/stores/s1/coupons/{coupon['coupon_id']}/redeem", {"order_ref": "o-6", "subtotal_minor": 3_000})
    till.twice(f"/v1/stores/s1/shifts/{shift['shift_id']}/close", {"counted_minor": 7_000})
    till.twice("/v1/stores/s1/chain", None, method="GET")  # a signed read is one-shot too


def test_a_replay_with_its_idempotency_key_is_refused_but_a_fresh_signature_replays_the_answer(till: Till) -> None:
    payload = {"amount_minor": 1_200, "currency": "CNY", "order_ref": "o-7", "method": "cash"}
    first = till.twice("/v1/stores/s1/payments", payload, idempotency_key="pay-o-7")
    body = json.dumps(payload).encode()
    retry = till.http.post("/v1/stores/s1/payments", content=body, headers={
        **till.terminal.sign_request("POST", "/v1/stores/s1/payments", body, idempotency_key="pay-o-7"),
        "content-type": "application/json"})
    assert retry.status_code == 201 and retry.headers.get("idempotent-replayed") == "true"
    assert retry.json()["payment_id"] == first["payment_id"]


def test_the_idempotency_key_is_signed(till: Till) -> None:
    """Swapping the key of a signed request (to run it again under a new key) breaks the signature."""
    body = json.dumps({"amount_minor": 1_300, "currency": "CNY", "order_ref": "o-8", "method": "cash"}).encode()
    headers = {**till.terminal.sign_request("POST", "/v1/stores/s1/payments", body, idempotency_key="k-1"),
               "content-type": "application/json"}
    headers["Idempotency-Key"] = "k-2"
    length = till.ledger.chain("s1")[1]
    answer = till.http.post("/v1/stores/s1/payments", content=body, headers=headers)
    assert answer.status_code == 401 and not answer.json()["type"].endswith("replayed")
    del headers["Idempotency-Key"]  # nor may a signed key be dropped
    assert till.http.post("/v1/stores/s1/payments", content=body, headers=headers).status_code == 401
    assert till.ledger.chain("s1")[1] == length


def test_the_old_form_without_a_nonce_and_a_stale_created_are_refused(till: Till) -> None:
    import base64

    from pos_ledger import _core

    body = json.dumps({"amount_minor": 1_400, "currency": "CNY", "order_ref": "o-9", "method": "cash"}).encode()
    key = till.terminal.key
    created = int(time.time())
    params = f'("@method" "@path" "content-digest");created={created};keyid="t1";alg="ed25519"'
    digest = httpsig.content_digest(body)
    base = httpsig.signature_base("POST", "/v1/stores/s1/payments", digest, params)
    old = {"Content-Digest": digest, "Signature-Input": f"sig1={params}",
           "Signature": f"sig1=:{base64.b64encode(_core.ed25519_sign(key.seed, base)).decode()}:"}
    assert till.http.post("/v1/stores/s1/payments", content=body, headers=old).status_code == 401
    for skew in (-90, 90):  # both sides of the 60 s window
        stale = httpsig.sign_request(key.seed, "t1", "POST", "/v1/stores/s1/payments", body, created + skew)
        assert till.http.post("/v1/stores/s1/payments", content=body, headers=stale).status_code == 401
    fresh = httpsig.sign_request(key.seed, "t1", "POST", "/v1/stores/s1/payments", body, created - 50)
    answer = till.http.post("/v1/stores/s1/payments", content=body,
                            headers={**fresh, "content-type": "application/json"})
    assert answer.status_code == 201, answer.text


def test_nonces_survive_a_restart_and_are_shared_by_processes(database: str) -> None:
    """Two tables on one database stand for two server processes (or one before and after a restart)."""
    first, second = NonceTable(database), NonceTable(database)
    try:
        now = int(time.time())
        assert first.first_use("s1", "t1", "6f1c3c9e-5d4b-4f0e-9a51-7c1d2e3f4a5b", now)
        assert not second.first_use("s1", "t1", "6f1c3c9e-5d4b-4f0e-9a51-7c1d2e3f4a5b", now)
        assert second.first_use("s1", "t2", "6f1c3c9e-5d4b-4f0e-9a51-7c1d2e3f4a5b", now)  # per terminal
        assert second.first_use("s2", "t1", "6f1c3c9e-5d4b-4f0e-9a51-7c1d2e3f4a5b", now)  # per store
        old = now - httpsig.CREATED_SKEW_S_MAX - 5
        assert first.first_use("s1", "t1", "00000000-0000-4000-8000-000000000000", old)
        assert first.prune(now) == 1  # past the window: it could not be accepted again anyway
        assert not first.first_use("s1", "t1", "6f1c3c9e-5d4b-4f0e-9a51-7c1d2e3f4a5b", now)
    finally:
        first.close()
        second.close()
