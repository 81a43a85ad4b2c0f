"""Fixtures for the payment and shift tests: the sandbox provider as a real process, the API on a real port.

The sandbox runs as `python -m pos_ledger.cli psp-sandbox --port 0` (one per test
module); the API runs under uvicorn in a thread with its provider pointed at the
sandbox and its public URL on loopback, so the sandbox's signed notifications
reach it over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.main import create_app
from api.settings import Settings
from pos_ledger.ledger import Ledger
from pos_ledger.payments.aggregator import AggregatorProvider
from pos_ledger.simulate import Terminal, TerminalKey
from tests.conftest import ADMIN_TOKEN, SERVER_SEED, free_port

STORE = "s1"
PROBLEM = "application/problem+json"
#: The client gives up on the provider after this long; the sandbox's magic delays are longer.
PROVIDER_TIMEOUT_S = 0.5
SANDBOX_DELAY_S = 1.5
WECHAT_CODE = "134567890123456789"
ALIPAY_CODE = "281234567890123456"
UNIONPAY_CODE = "6212345678901234567"


class Sandbox:
    """`pos-ledger psp-sandbox` as a child process."""

    def __init__(self, delay_s: float = SANDBOX_DELAY_S) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pos_ledger.cli", "psp-sandbox", "--port", "0",
             "--delay-seconds", str(delay_s)],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "http://" in line, f"sandbox did not start: {line!r}"
        self.url = line.rsplit(" ", 1)[-1].strip()
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def pay(self, payment_id: str, channel: str = "alipay") -> dict[str, Any]:
        response = self.client.post(f"/sandbox/trades/{payment_id}/pay", json={"channel": channel})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def notify_again(self, payment_id: str) -> dict[str, Any]:
        response = self.client.post(f"/sandbox/trades/{payment_id}/notify", json={})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def notifications(self, payment_id: str) -> list[dict[str, Any]]:
        return [n for n in self.client.get("/sandbox/notifications").json() if n["out_trade_no"] == payment_id]

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=10)


class PayingServer:
    """The real app under uvicorn in a thread, taking payments through the sandbox."""

    def __init__(self, database: str, sandbox_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(database=database, admin_token=ADMIN_TOKEN, server_seed=SERVER_SEED)
        self.provider = AggregatorProvider(sandbox_url, timeout_s=PROVIDER_TIMEOUT_S)
        self.app = create_app(self.settings, provider=self.provider, public_url=self.url)
        self.app.state.payments.query_interval_s = 0.05
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)

    @property
    def ledger(self) -> Ledger:
        ledger: Ledger = self.app.state.ledger
        return ledger

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.provider.close()
        self.ledger.close()


class SigningTerminal:
    """A registered till that signs its cashier commands (RFC 9421) and its events."""

    def __init__(self, base_url: str, terminal_id: str) -> None:
        self.till = Terminal(TerminalKey.generate(terminal_id), seq=0)
        self.client = httpx.Client(base_url=base_url, timeout=30)

    @property
    def terminal_id(self) -> str:
        return self.till.key.terminal_id

    def post(self, path: str, payload: dict[str, Any], **headers: str) -> httpx.Response:
        body = json.dumps(payload).encode()
        key = next((value for name, value in headers.items() if name.lower() == "idempotency-key"), None)
        others = {name: value for name, value in headers.items() if name.lower() != "idempotency-key"}
        signed = self.till.sign_request("POST", path, body, idempotency_key=key)
        return self.client.post(path, content=body, headers={"content-type": "application/json", **signed,
                                                              **others})

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path, headers=self.till.sign_request("GET", path))

    def ingest(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        event = self.till.sign(event_type, data, datetime.now(UTC))
        response = self.client.post(f"/v1/stores/{STORE}/terminals/{self.terminal_id}/events",
                                    json={"events": [event]})
        assert response.status_code == 200, response.text
        return dict(response.json()["results"][0])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    process = Sandbox()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def server(sandbox: Sandbox, tmp_path: Path) -> Iterator[PayingServer]:
    running = PayingServer(str(tmp_path / "ledger.sqlite3"), sandbox.url)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def admin(server: PayingServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                      timeout=30) as client:
        ok(client.post("/v1/stores", json={"store_id": STORE, "name": "Test Shop", "currency": "CNY",
                                           "timezone": "Asia/Shanghai"}), 201)
        yield client


@pytest.fixture
def till(server: PayingServer, admin: httpx.Client) -> Iterator[SigningTerminal]:
    terminal = SigningTerminal(server.url, "t1")
    ok(admin.post(f"/v1/stores/{STORE}/terminals",
                  json={"terminal_id": "t1", "public_key": terminal.till.key.public_key_b64}), 201)
    try:
        yield terminal
    finally:
        terminal.client.close()


def ok(response: httpx.Response, status: int | None = None) -> Any:
    assert response.status_code < 400, response.text
    if status is not None:
        assert response.status_code == status, response.text
    return response.json()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    return body


def pay(client: httpx.Client, amount_minor: int, **extra: Any) -> httpx.Response:
    payload = {"amount_minor": amount_minor, "currency": "CNY", "order_ref": extra.pop("order_ref", uuid.uuid4().hex),
               **extra}
    return client.post(f"/v1/stores/{STORE}/payments", json=payload)


def balances(client: httpx.Client) -> dict[str, int]:
    rows = ok(client.get(f"/v1/stores/{STORE}/balances"))["balances"]
    return {r["account"]: r["balance_minor"] for r in rows if r["balance_minor"]}


def chain_length(client: httpx.Client) -> int:
    return int(ok(client.get(f"/v1/stores/{STORE}/chain"))["length"])


def wait_for(predicate: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
