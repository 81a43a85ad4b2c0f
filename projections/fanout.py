"""Live fan-out of "new entries" wake-ups over Redis (optional: `POS_LEDGER_REDIS_URL`).

After each commit the ledger announces (store, position, head). Followers (order
board, hardware bridges behind a gateway, webhooks) subscribe to the pub/sub
channel for a push, or read the capped stream to resume; either way they then
read the entries themselves from the log, so a lost message only delays them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Final

import redis

STREAM_ENTRIES_MAX: Final = 10_000
log = logging.getLogger(__name__)


def channel(store_id: str) -> str:
    return f"pos-ledger:{store_id}:appended"


def stream(store_id: str) -> str:
    return f"pos-ledger:{store_id}:log"


class RedisFanout:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def __call__(self, store_id: str, position: int, head: bytes) -> None:
        message = {"store_id": store_id, "position": position, "head": head.hex()}
        pipe = self.client.pipeline(transaction=False)
        pipe.publish(channel(store_id), json.dumps(message))
        pipe.xadd(stream(store_id), {"position": position, "head": head.hex()},
                  maxlen=STREAM_ENTRIES_MAX, approximate=True)
        pipe.execute()

    def close(self) -> None:
        self.client.close()


#: Every store's wake-up channel (for a follower of all stores, such as the projections runner).
CHANNEL_PATTERN: Final = "pos-ledger:*:appended"
#: Seconds between reconnection attempts while Redis is away.
RECONNECT_S: Final = 1.0


def follow(url: str, on_appended: Callable[[str, int, bytes], None], stop: threading.Event) -> None:
    """Call on_appended(store, position, head) for every announcement until `stop` is set.

    Redis going away only pauses the wake-ups (followers also poll the log); this
    reconnects every RECONNECT_S and never raises.
    """
    while not stop.is_set():
        client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=1.0)
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.psubscribe(CHANNEL_PATTERN)
            while not stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None or message.get("type") != "pmessage":
                    continue
                try:
                    announced = json.loads(message["data"])
                    on_appended(str(announced["store_id"]), int(announced["position"]),
                                bytes.fromhex(announced["head"]))
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring a malformed announcement on %s", message.get("channel"))
        except redis.RedisError:
            stop.wait(RECONNECT_S)
        finally:
            client.close()
