"""`pos-ledger serve` as a process: idle and slow connections are closed, a dead process's key is taken over."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, free_port
from tests.payments_fixtures import Sandbox
from tests.test_crash import start_server as start_serve_process

HEADERS_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 1


def start_server(database: str, port: int, psp_url: str, *options: str) -> subprocess.Popen[bytes]:
    return start_serve_process(database, port, "--psp-url", psp_url, *options)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection (EOF) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    database = tmp_path_factory.mktemp("served") / "ledger.sqlite3"
    process = start_server(str(database), port, "http://127.0.0.1:9",
                           "--timeout-headers", str(HEADERS_TIMEOUT_S), "--timeout-keep-alive", str(KEEP_ALIVE_S))
    yield port, process
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)


def test_a_connection_that_sends_nothing_is_closed(served: tuple[int, subprocess.Popen[bytes]]) -> None:
    with socket.create_connection(("127.0.0.1", served[0])) as sock:
        assert closed_within(sock, HEADERS_TIMEOUT_S + 3)


def test_headers_sent_a_byte_at_a_time_are_cut_off(served: tuple[int, subprocess.Popen[bytes]]) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served[0])) as sock:
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                sock.sendall(bytes([byte]))  # each byte also used to reset the keep-alive timer
                time.sleep(0.1)
                if time.monotonic() - started > HEADERS_TIMEOUT_S + 3:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_within(sock, 1)
    assert time.monotonic() - started < HEADERS_TIMEOUT_S + 3


def test_an_idle_keep_alive_connection_is_closed(served: tuple[int, subprocess.Popen[bytes]]) -> None:
    with socket.create_connection(("127.0.0.1", served[0])) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert b"200 OK" in sock.recv(4096)
        assert closed_within(sock, KEEP_ALIVE_S + 3)


def test_a_gigabyte_content_length_is_refused_without_reading(served: tuple[int, subprocess.Popen[bytes]]) -> None:
    with socket.create_connection(("127.0.0.1", served[0])) as sock:
        sock.sendall(b"POST /v1/stores/s1/members HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1073741824\r\n\r\n{\"name\": \"")
        sock.settimeout(5)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"application/problem+json" in answer


def test_a_key_held_by_a_killed_process_is_taken_over_after_the_restart(tmp_path: Path) -> None:
    """kill -9 while a payment waits on the provider; the retry with the same key runs within 10 s."""
    database = str(tmp_path / "ledger.sqlite3")
    port = free_port()
    slow, fast = Sandbox(delay_s=60), Sandbox(delay_s=0)
    url = f"http://127.0.0.1:{port}"
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}", "idempotency-key": "pay-after-crash"}
    payment = {"amount_minor": 2_503, "currency": "CNY", "order_ref": "crash-1"}  # ..03: the sandbox is slow
    server = start_server(database, port, slow.url)
    try:
        admin = httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
        assert admin.post("/v1/stores", json={"store_id": "s1", "name": "Shop", "currency": "CNY",
                                              "timezone": "Asia/Shanghai"}).status_code == 201
        in_flight = threading.Thread(target=lambda: _ignore_errors(
            lambda: httpx.post(url + "/v1/stores/s1/payments", json=payment, headers=headers, timeout=60)))
        in_flight.start()
        time.sleep(1.5)  # reserved, waiting on the slow provider
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        in_flight.join(timeout=10)
        server = start_server(database, port, fast.url)
        restarted = time.monotonic()
        retry = httpx.post(url + "/v1/stores/s1/payments", json=payment, headers=headers, timeout=30)
        assert time.monotonic() - restarted < 10
        assert retry.status_code == 201, retry.text
        assert "idempotent-replayed" not in retry.headers  # it ran (the first never answered)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        slow.stop()
        fast.stop()


def _ignore_errors(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except httpx.HTTPError:
        pass
