"""A slow payment provider holds a bounded number of workers: the rest of the server keeps its pace."""

# The fixtures are imported (not a plugin) so they take precedence over conftest's `admin`.
# ruff: noqa: F811

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pos_ledger.payments.aggregator import AggregatorProvider
from pos_ledger.payments.guard import ProviderBusy, ProviderCircuitOpen, ProviderGuard
from pos_ledger.simulate import Terminal, TerminalKey
from tests.payments_fixtures import (  # noqa: F401  (fixtures)
    STORE,
    PayingServer,
    Sandbox,
    SigningTerminal,
    admin,
    ok,
    sandbox,
    server,
    till,
)

STUCK_PAYMENTS = 200
#: The sandbox answers amounts ending in 03 only after its delay (past the client's timeout).
SLOW_AMOUNT_MINOR = 2_503


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_guard_refuses_at_once_past_its_bound() -> None:
    guard = ProviderGuard(concurrency_max=2)
    with guard.admit(), guard.admit():
        with pytest.raises(ProviderBusy), guard.admit():
            pass
    with guard.admit():  # the slots came back
        pass


def test_the_circuit_opens_after_consecutive_failures_and_closes_on_an_answer() -> None:
    clock = FakeClock()
    guard = ProviderGuard(failures_to_open=3, open_s=10, clock=clock)
    guard.failed()
    guard.failed()
    guard.succeeded()  # an answer resets the count
    guard.failed()
    guard.failed()
    assert not guard.is_open
    guard.failed()
    with pytest.raises(ProviderCircuitOpen) as refused, guard.admit():
        pass
    assert refused.value.status == 503 and refused.value.slug == "provider-unavailable"
    clock.now += 10.5
    with guard.admit():  # tried again after open_s
        guard.succeeded()
    assert not guard.is_open


def _latencies(call: Any, count: int) -> list[float]:
    spent = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        spent.append(time.perf_counter() - started)
    return spent


def _other_store(admin_client: httpx.Client) -> tuple[Terminal, httpx.Client]:
    ok(admin_client.post("/v1/stores", json={"store_id": "s2", "name": "Other", "currency": "CNY",
                                             "timezone": "Asia/Shanghai"}), 201)
    terminal = Terminal(TerminalKey.generate("t2"), seq=0)
    ok(admin_client.post("/v1/stores/s2/terminals",
                         json={"terminal_id": "t2", "public_key": terminal.key.public_key_b64}), 201)
    return terminal, httpx.Client(base_url=str(admin_client.base_url), timeout=30)


def _sell(client: httpx.Client, terminal: Terminal) -> None:
    sale = {"order_id": "5d4e4c4a-35a8-4a47-9c0a-7d6f0c1b2a3e", "currency": "CNY",
            "lines": [{"sku": "TEA", "name": "Tea", "qty": 1, "unit_price_minor": 900}], "discount_minor": 0,
            "total_minor": 900, "tenders": [{"method": "cash", "amount_minor": 900}]}
    event = terminal.sign("sale.completed", sale, datetime.now(UTC))
    response = client.post("/v1/stores/s2/terminals/t2/events", json={"events": [event]})
    assert response.status_code == 200 and response.json()["results"][0]["status"] == "accepted", response.text


def test_200_payments_stuck_at_a_slow_provider_leave_the_rest_at_normal_latency(
        server: PayingServer, admin: httpx.Client, till: SigningTerminal, sandbox: Sandbox) -> None:
    terminal, other = _other_store(admin)
    # A provider client that waits out the sandbox's delay: each stuck payment holds its worker for it.
    slow = AggregatorProvider(sandbox.url, timeout_s=10.0)
    server.app.state.payments.provider = slow
    healthz = lambda: ok(other.get("/healthz"))  # noqa: E731
    baseline_healthz = statistics.median(_latencies(healthz, 20))
    baseline_sale = statistics.median(_latencies(lambda: _sell(other, terminal), 10))

    # One client for all (its own connection each): building 200 clients costs seconds of this process's CPU.
    crowd = httpx.Client(base_url=server.url, headers=dict(admin.headers), timeout=60,
                         limits=httpx.Limits(max_connections=STUCK_PAYMENTS, max_keepalive_connections=0))

    def stuck_payment(n: int) -> int:
        answer = crowd.post(f"/v1/stores/{STORE}/payments", json={
            "amount_minor": SLOW_AMOUNT_MINOR, "currency": "CNY", "order_ref": f"slow-{n}"})
        if answer.status_code == 503:  # refused at once, as a problem a cashier's till can show
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["type"].rsplit("/", 1)[-1] in ("provider-busy", "provider-unavailable")
        return answer.status_code

    with ThreadPoolExecutor(STUCK_PAYMENTS) as pool:
        statuses = pool.map(stuck_payment, range(STUCK_PAYMENTS))
        time.sleep(0.3)  # the provider's slots are taken, the rest are at the door
        loaded_healthz, loaded_sale = [], []
        for _ in range(10):  # interleaved, so both are measured while the payments are stuck
            loaded_healthz += _latencies(healthz, 1)
            loaded_sale += _latencies(lambda: _sell(other, terminal), 1)
        answered = list(statuses)
    crowd.close()
    # "Normal latency": what an idle server answers, with room for a shared 2-core machine.
    assert statistics.median(loaded_healthz) < max(0.25, 10 * baseline_healthz), (baseline_healthz, loaded_healthz)
    # Unbounded, 200 payments / 40 workers x the sandbox's 1.5 s stalled everything for about 5 s.
    assert max(loaded_healthz) < 1.0, loaded_healthz
    assert max(loaded_sale) < 1.0, loaded_sale
    assert statistics.median(loaded_sale) < max(0.5, 10 * baseline_sale), (baseline_sale, loaded_sale)
    # Each payment got an answer: opened (pending / failed after querying) or refused at once.
    assert set(answered) <= {201, 503}, answered
    assert 503 in answered  # the bound was reached: those were refused at once, not queued on a worker
    other.close()
    slow.close()
