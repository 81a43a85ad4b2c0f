"""Shared fixtures: databases (SQLite file, fresh PostgreSQL database), live HTTP servers, terminals."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from api.main import create_app
from api.settings import Settings
from pos_ledger.ledger import Ledger
from pos_ledger.simulate import Client, Terminal, TerminalKey

PG_ADMIN_URL = os.environ.get("POS_LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN_TOKEN = "test-admin-token"
SERVER_SEED = bytes(range(32))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the real server, dropped afterwards."""
    name = f"pos_ledger_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite3")
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
def ledger(database: str) -> Iterator[Ledger]:
    instance = Ledger(database, SERVER_SEED)
    try:
        yield instance
    finally:
        instance.close()


class LiveServer:
    """The real FastAPI app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, database: str) -> None:
        self.settings = Settings(database=database, admin_token=ADMIN_TOKEN, server_seed=SERVER_SEED)
        self.app = create_app(self.settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def ledger(self) -> Ledger:
        ledger: Ledger = self.app.state.ledger
        return ledger

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.ledger.close()


@pytest.fixture
def live_server(database: str) -> Iterator[LiveServer]:
    server = LiveServer(database).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                      timeout=30) as client:
        yield client


@pytest.fixture
def anonymous(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def shop(live_server: LiveServer) -> Iterator[tuple[Client, Terminal]]:
    """Store `s1` (CNY) with a small menu and one registered terminal `t1`."""
    client = Client(live_server.url, ADMIN_TOKEN)
    client.open_store("s1", "Test Shop", "CNY", "Asia/Shanghai")
    client.put_menu_item("s1", "LATTE", "Latte", 2800, "coffee")
    client.put_menu_item("s1", "TART", "Egg tart", 900, "bakery")
    terminal = Terminal(TerminalKey.generate("t1"), seq=0)
    client.register_terminal("s1", terminal.key, "till 1")
    try:
        yield client, terminal
    finally:
        client.close()
