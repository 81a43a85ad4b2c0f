"""Live fan-out of "new entries" wake-ups over Redis (optional: `POS_LEDGER_REDIS_URL`).

After each commit the ledger announces (store, position, head). Followers (order
board, hardware bridges behind a gateway, webhooks) subscribe to the pub/sub
channel for a push, or read the capped stream to resume; either way they then
read the entries themselves from the log, so a lost message only delays them.
"""

from __future__ import annotations

import json
import logging
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
