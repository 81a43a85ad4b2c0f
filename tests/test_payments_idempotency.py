"""Idempotency-Key on both backends: answers survive a restart, concurrent twins run once."""

# ruff: noqa: F401, F811
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.payments_fixtures import STORE, WECHAT_CODE, PayingServer, Sandbox, balances, ok, problem, sandbox

BODY = {"amount_minor": 1_700, "currency": "CNY", "order_ref": "I-1", "auth_code": WECHAT_CODE}
STORE_BODY = {"store_id": STORE, "name": "Test Shop", "currency": "CNY", "timezone": "Asia/Shanghai"}


def client(server: PayingServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def test_answers_survive_a_restart_and_twins_run_once(database: str, sandbox: Sandbox) -> None:
    first_server = PayingServer(database, sandbox.url)
    try:
        with client(first_server) as admin:
            ok(admin.post("/v1/stores", json=STORE_BODY), 201)
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(
                    lambda _: admin.post(f"/v1/stores/{STORE}/payments", json=BODY,
                                         headers={"Idempotency-Key": "twin"}), range(8)))
            assert {a.status_code for a in answers} == {201}
            assert len({a.json()["payment_id"] for a in answers}) == 1
            first = answers[0].json()
    finally:
        first_server.stop()
    second_server = PayingServer(database, sandbox.url)
    try:
        with client(second_server) as admin:
            again = admin.post(f"/v1/stores/{STORE}/payments", json=BODY, headers={"Idempotency-Key": "twin"})
            assert again.status_code == 201 and again.json() == first
            assert again.headers["idempotent-replayed"] == "true"
            problem(admin.post(f"/v1/stores/{STORE}/payments", json={**BODY, "order_ref": "I-2"},
                               headers={"Idempotency-Key": "twin"}), 422)
            # Another caller's same key is another request.
            other = httpx.post(f"{second_server.url}/v1/stores/{STORE}/payments", json=BODY,
                               headers={"Idempotency-Key": "twin"})
            problem(other, 401)
            assert balances(admin) == {"asset:psp:wechat": 1_700, "liability:unapplied_payments": -1_700}
    finally:
        second_server.stop()
