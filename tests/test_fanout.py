"""With POS_LEDGER_REDIS_URL set, each commit is announced on Redis (pub/sub and a capped stream)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import redis

from api.main import create_app
from api.settings import Settings
from pos_ledger.simulate import Client, Terminal, TerminalKey
from projections.fanout import channel, stream
from tests.conftest import ADMIN_TOKEN, SERVER_SEED
from tests.test_ingest_http import signed

REDIS_URL = "redis://127.0.0.1:6379/0"
pytestmark = pytest.mark.redis


def test_commits_are_announced_and_a_redis_outage_loses_nothing(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    store = f"fan{secrets.token_hex(3)}"
    settings = Settings(database=str(tmp_path / "f.sqlite3"), admin_token=ADMIN_TOKEN,
                        server_seed=SERVER_SEED, redis_url=REDIS_URL)
    app = create_app(settings)
    subscriber = redis.Redis.from_url(REDIS_URL).pubsub()
    subscriber.subscribe(channel(store))
    subscriber.get_message(timeout=1)  # the subscribe confirmation
    with TestClient(app) as http:
        client = Client("http://test", ADMIN_TOKEN)
        client.http = http
        http.headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
        client.open_store(store, "Fan", "CNY", "UTC")
        terminal = Terminal(TerminalKey.generate("t"), seq=0)
        client.register_terminal(store, terminal.key, "")
        answer = client.post_events(store, "t", [signed(terminal), signed(terminal)])
        messages = []
        while (message := subscriber.get_message(timeout=1)) is not None:
            messages.append(json.loads(message["data"]))
        assert messages[-1] == {"store_id": store, "position": 4, "head": answer["chain_head"]}
        entries = redis.Redis.from_url(REDIS_URL).xrange(stream(store))
        assert entries[-1][1][b"position"] == b"4"
        # Redis down: the write still succeeds; followers catch up from the log.
        app.state.ledger.listeners[0].client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
        answer = client.post_events(store, "t", [signed(terminal)])
        assert answer["results"][0]["status"] == "accepted"
    redis.Redis.from_url(REDIS_URL).delete(stream(store))
