"""Token buckets per (app, store): in Redis when configured (one atomic Lua script, shared by every
server process), else in this process.

A bucket holds at most `burst` tokens and refills `rate_per_s` tokens a second; a request
takes one. An empty bucket answers how long until a token is back (the `Retry-After`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

#: Buckets kept in process at most (the least recently used go first).
LOCAL_BUCKETS_MAX: Final = 100_000
RATE_PER_S_DEFAULT: Final = 50.0
BURST_DEFAULT: Final = 100

# KEYS[1] bucket; ARGV: rate per second, burst, TTL ms. Redis' own clock, so servers agree.
_LUA: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then tokens = burst; at = now end
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return wait_ms
"""


@dataclass(frozen=True, slots=True)
class RateLimit:
    rate_per_s: float = RATE_PER_S_DEFAULT
    burst: int = BURST_DEFAULT

    @classmethod
    def from_env(cls) -> RateLimit:
        """POS_LEDGER_APP_RATE_LIMIT="<requests per second>,<burst>"."""
        text = os.environ.get("POS_LEDGER_APP_RATE_LIMIT", "")
        if not text:
            return cls()
        rate, _, burst = text.partition(",")
        return cls(float(rate), int(burst or BURST_DEFAULT))


class Limiter(Protocol):
    limit: RateLimit

    def take(self, key: str) -> float:
        """0 when a token was taken; else the seconds until one is back."""


class LocalLimiter:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.limit.burst), now))
            tokens = min(float(self.limit.burst), tokens + (now - at) * self.limit.rate_per_s)
            wait_s = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait_s = (1 - tokens) / self.limit.rate_per_s
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > LOCAL_BUCKETS_MAX:
                self._buckets.pop(next(iter(self._buckets)))
            return wait_s


class RedisLimiter:
    def __init__(self, url: str, limit: RateLimit, prefix: str = "pos-ledger:rate:") -> None:
        import redis

        self.limit = limit
        self.prefix = prefix
        self.client: Any = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self.client.register_script(_LUA)
        #: While Redis is unreachable each process limits on its own rather than failing requests.
        self._fallback = LocalLimiter(limit)

    def take(self, key: str) -> float:
        ttl_ms = max(1000, math.ceil(self.limit.burst / self.limit.rate_per_s * 1000) * 2)
        try:
            wait_ms = int(self._script(keys=[self.prefix + key],
                                       args=[self.limit.rate_per_s, self.limit.burst, ttl_ms]))
        except Exception:  # redis.RedisError and socket errors: the in-process bucket decides
            return self._fallback.take(key)
        return wait_ms / 1000.0


def limiter(redis_url: str | None, limit: RateLimit, prefix: str = "pos-ledger:rate:") -> Limiter:
    if redis_url:
        return RedisLimiter(redis_url, limit, prefix)
    return LocalLimiter(limit)
