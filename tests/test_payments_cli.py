"""`pos-ledger serve` with no provider configured starts the sandbox itself: the whole flow from the README."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

TOKEN = "cli-admin-token"


def test_serve_starts_the_sandbox_and_takes_a_qr_payment(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "POS_LEDGER_ADMIN_TOKEN": TOKEN, "POS_LEDGER_DB": str(tmp_path / "ledger.sqlite3")}
    env.pop("POS_LEDGER_PSP_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "pos_ledger.cli", "serve", "--port", str(port)],
                               stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert process.stdout is not None
        sandbox_url = ""
        for _ in range(10):
            line = process.stdout.readline()
            if "sandbox provider at" in line:
                sandbox_url = line.split(" at ", 1)[1].split(" ", 1)[0]
            if "listening" in line:
                break
        assert sandbox_url.startswith("http://127.0.0.1:")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        admin = httpx.Client(base_url=base, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert admin.post("/v1/stores", json={"store_id": "demo", "name": "Demo", "currency": "CNY",
                                              "timezone": "Asia/Shanghai"}).status_code == 201
        created = admin.post("/v1/stores/demo/payments",
                             json={"amount_minor": 1_800, "currency": "CNY", "order_ref": "R-1"})
        assert created.status_code == 201, created.text
        payment = created.json()
        assert payment["provider"] == "sandbox" and payment["status"] == "pending"
        paid = httpx.post(f"{sandbox_url}/sandbox/trades/{payment['payment_id']}/pay", json={"channel": "wechat"})
        assert paid.json()["notify_status"] == 200
        assert admin.get(f"/v1/stores/demo/payments/{payment['payment_id']}").json()["status"] == "captured"
        admin.close()
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_public_url_that_is_not_http_is_a_clear_cli_error(tmp_path: Path) -> None:
    env = {**os.environ, "POS_LEDGER_ADMIN_TOKEN": TOKEN, "POS_LEDGER_DB": str(tmp_path / "ledger.sqlite3")}
    done = subprocess.run([sys.executable, "-m", "pos_ledger.cli", "serve", "--psp-url", "http://127.0.0.1:9",
                           "--public-url", "ftp://shop.example"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 2 and "--public-url must be an http(s) URL" in done.stderr
    assert not (tmp_path / "ledger.sqlite3").exists()  # refused before anything was opened


def test_the_sandbox_timeout_amount_outlasts_the_servers_provider_timeout() -> None:
    """Magic amount ..03 must make the server give up and query, with the defaults `serve` uses."""
    import inspect

    from pos_ledger.cli import psp_sandbox
    from pos_ledger.payments.aggregator import DEFAULT_TIMEOUT_S
    from pos_ledger.payments.sandbox import Sandbox

    cli_default = inspect.signature(psp_sandbox).parameters["delay_seconds"].default
    assert cli_default == Sandbox().delay_s > DEFAULT_TIMEOUT_S
