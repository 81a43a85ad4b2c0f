"""Standard Webhooks delivery: at least once, in log order per store and app, across restarts.

One background thread runs an asyncio loop (never the server's loop). Each active
install with an enabled endpoint is a *lane*: it walks the store's log from its
cursor, skips what the app's scopes and types do not select, and sends the next
message; it sends the one after only once that one is acknowledged (2xx) or its
retry schedule is spent, so an app sees a store's events in log order. A failed
attempt waits `backoff_s[n-1]` before the n-th retry; 410 disables the endpoint;
an endpoint failing without a success for `failing_s_max` is disabled, and both
write `webhook.disabled` to the store's log (the owner's back office shows it).

The queue is the log plus `platform_deliveries` and each install's cursor
(`api.platform_tables`): attempts and cursors are written in group commits, so a
restart resumes where the table says (an acknowledged message whose record was
not yet written is sent again: at least once, never lost). Wake-ups come from
`ledger.listeners`; a slow poll catches writes of other processes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Final
from uuid import uuid4

import httpx
import msgspec

from api.platform_tables import DeliveryRecord, InstallationRecord, PlatformTables
from api.webhook_transport import WebhookTransport
from pos_ledger import platform as rules
from pos_ledger.catalog.store import settings_of
from pos_ledger.ledger import Ledger, StoredEntry

log = logging.getLogger(__name__)
#: Log entries cached for lanes of the same store (each entry is read from the database once).
ENTRY_CACHE_MAX: Final = 20_000
READ_BATCH_MAX: Final = 500
#: Attempts buffered before a lane waits for the writer (bounds memory if the database stalls).
PENDING_WRITES_MAX: Final = 20_000
LANES_MAX: Final = 10_000
LEASE_NAME: Final = "webhook-dispatcher"
_JSON: Final = msgspec.json.Encoder()


class _Body(msgspec.Struct):
    id: str
    seq: int
    type: str
    at: str
    data: dict[str, Any]


_BODY: Final = msgspec.json.Decoder(_Body)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    backoff_s: tuple[float, ...] = rules.BACKOFF_S
    timeout_s: float = rules.DELIVERY_TIMEOUT_S
    failing_s_max: float = rules.FAILING_S_MAX
    #: How often lanes look at the log and the installs without a wake-up (other processes' writes).
    poll_interval_s: float = 1.0
    flush_interval_s: float = 0.01
    #: One dispatcher per database delivers (two would break the order); a stopped holder's lease runs out.
    lease_s: float = 10.0

    @classmethod
    def from_env(cls) -> WebhookConfig:
        """POS_LEDGER_WEBHOOK_BACKOFF_S="5,300,1800,..." shortens the schedule (tests, demos)."""
        text = os.environ.get("POS_LEDGER_WEBHOOK_BACKOFF_S", "")
        if not text:
            return cls()
        return cls(backoff_s=tuple(float(part) for part in text.split(",")))


@dataclass(slots=True)
class _Lane:
    record: InstallationRecord
    cursor: int
    wake: asyncio.Event
    #: Known attempts per position (from the table at start, then from this lane).
    known: dict[int, DeliveryRecord] = field(default_factory=dict)
    #: The cursor last written to the table.
    written: int = 0
    #: The store lets webhooks reach loopback or private addresses (its `allow_local_webhooks`).
    allow_local: bool = False
    #: Positions after the cursor the table already has as delivered or failed (sent before a restart
    #: whose cursor write was lost): moved past, not sent again.
    done: set[int] = field(default_factory=set)
    stop: bool = False
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class _Message:
    event_type: str
    payload_by_personal: dict[bool, bytes]


class Dispatcher:
    def __init__(self, ledger: Ledger, tables: PlatformTables, config: WebhookConfig | None = None) -> None:
        self.ledger = ledger
        self.tables = tables
        self.config = config or WebhookConfig()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lanes: dict[str, _Lane] = {}
        self._writes: list[DeliveryRecord] = []
        #: Cursors of lanes that stopped before their last move was written.
        self._retired: dict[str, int] = {}
        self._replaying: set[str] = set()
        self._stopping = False
        self._refresh: asyncio.Event | None = None
        self._entries: OrderedDict[tuple[str, int], tuple[StoredEntry, _Body]] = OrderedDict()
        self._transport: httpx.AsyncBaseTransport | None = None
        self._started = threading.Event()
        self._holder = f"{os.getpid()}-{uuid4().hex}"

    # ---- control, from other threads ----

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)
        self._thread.start()
        self._started.wait(10)

    def stop(self, timeout_s: float = 15.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(self._begin_stop)
        thread.join(timeout_s)
        self._thread = None

    def notify(self, store_id: str, position: int, head: bytes) -> None:
        """A `ledger.listeners` entry: wake the store's lanes."""
        loop = self._loop
        if loop is not None and not self._stopping:
            loop.call_soon_threadsafe(self._wake_store, store_id)

    def refresh(self, wait_s: float = 0.0) -> None:
        """Installs changed (install, uninstall, rotation): reread them now. With `wait_s`, the running
        lanes sign with the new secrets before this returns (a rotation's next message carries both)."""
        loop, event = self._loop, self._refresh
        if loop is None or event is None:
            return
        loop.call_soon_threadsafe(event.set)
        if wait_s > 0:
            asyncio.run_coroutine_threadsafe(self._reread_records(), loop).result(timeout=wait_s)

    async def _reread_records(self) -> None:
        records = {r.client_id: r for r in await asyncio.to_thread(self.tables.webhook_installations)}
        for client_id, lane in list(self._lanes.items()):
            if client_id in records:
                lane.record = replace(records[client_id], cursor=lane.cursor)

    def replay(self, client_id: str, from_position: int) -> None:
        """Deliver again from a position: the lane stops, the table rewinds, the lane restarts."""
        loop = self._loop
        if loop is None:
            self.tables.replay(client_id, from_position)
            return
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._replay(client_id, from_position), loop)
        future.result(timeout=60)

    # ---- the loop ----

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()
            self._loop = None

    def _begin_stop(self) -> None:
        self._stopping = True
        for lane in self._lanes.values():
            lane.stop = True
            lane.wake.set()
        if self._refresh is not None:
            self._refresh.set()

    def _wake_store(self, store_id: str) -> None:
        for lane in self._lanes.values():
            if lane.record.store_id == store_id:
                lane.wake.set()

    async def _main(self) -> None:
        self._refresh = asyncio.Event()
        # httpx's Request/Response and transport interface with a lean HTTP/1.1 transport: the default
        # client stack costs ~14x the CPU per POST (api/webhook_transport.py). Redirects are not followed.
        self._transport = WebhookTransport(self.config.timeout_s)
        writer = asyncio.create_task(self._write_loop())
        self._started.set()
        try:
            while not self._stopping:
                try:
                    if await asyncio.to_thread(self.tables.hold_lease, LEASE_NAME, self._holder,
                                               self.config.lease_s):
                        await self._sync_lanes()
                    else:
                        self._stop_lanes()
                except Exception:
                    log.exception("webhook dispatcher could not read the installs")
                self._refresh.clear()
                try:
                    await asyncio.wait_for(self._refresh.wait(), self.config.poll_interval_s)
                except TimeoutError:
                    pass
        finally:
            lanes = [lane.task for lane in self._lanes.values() if lane.task is not None]
            await asyncio.gather(*lanes, return_exceptions=True)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await self._flush()
            await self._transport.aclose()
            await asyncio.to_thread(self.tables.release_lease, LEASE_NAME, self._holder)

    def _retire(self, lane: _Lane) -> None:
        lane.stop = True
        lane.wake.set()
        if lane.cursor > lane.written:
            self._retired[lane.record.client_id] = max(lane.cursor, self._retired.get(lane.record.client_id, 0))
        self._lanes.pop(lane.record.client_id, None)

    def _stop_lanes(self) -> None:
        for lane in list(self._lanes.values()):
            self._retire(lane)

    async def _sync_lanes(self) -> None:
        records = {r.client_id: r for r in await asyncio.to_thread(self.tables.webhook_installations)
                   if r.client_id not in self._replaying}
        # Store settings are read off this loop: a store's lock may be held by a long ingest.
        allow_local = await asyncio.to_thread(
            lambda: {store_id: self._allows_local(store_id) for store_id in {r.store_id for r in records.values()}})
        for client_id, lane in list(self._lanes.items()):
            if client_id not in records:
                if client_id not in self._replaying:
                    self._retire(lane)
            else:
                lane.record = replace(records[client_id], cursor=lane.cursor)
                lane.allow_local = allow_local.get(lane.record.store_id, False)
                lane.wake.set()
        for client_id, record in records.items():
            if client_id not in self._lanes and len(self._lanes) < LANES_MAX:
                await self._start_lane(record, allow_local.get(record.store_id, False))

    async def _start_lane(self, record: InstallationRecord, allow_local: bool) -> None:
        known, done = await asyncio.to_thread(self._deliveries_of, record)
        if record.client_id in self._lanes or record.client_id in self._replaying:
            return  # another sync started it (or a replay began) while this one read the table
        lane = _Lane(record, record.cursor, asyncio.Event(), known, written=record.cursor, done=done,
                     allow_local=allow_local)
        self._lanes[record.client_id] = lane
        lane.task = asyncio.create_task(self._run_lane(lane))

    def _allows_local(self, store_id: str) -> bool:
        try:
            return settings_of(self.ledger.store(store_id)).allow_local_webhooks
        except Exception:  # a store that cannot be read now: the safe answer
            return False

    def _deliveries_of(self, record: InstallationRecord) -> tuple[dict[int, DeliveryRecord], set[int]]:
        found = [d for d in self.tables.deliveries(record.store_id, record.app_id, record.cursor, 1000)
                 if d.client_id == record.client_id]
        return ({d.position: d for d in found if d.status == "pending"},
                {d.position for d in found if d.status != "pending"})

    async def _replay(self, client_id: str, from_position: int) -> None:
        # No lane of this install runs (nor starts) until the table is rewound.
        self._replaying.add(client_id)
        try:
            lane = self._lanes.get(client_id)
            if lane is not None:
                self._retire(lane)
                if lane.task is not None:
                    await asyncio.gather(lane.task, return_exceptions=True)
            await self._flush()
            await asyncio.to_thread(self.tables.replay, client_id, from_position)
        finally:
            self._replaying.discard(client_id)
        await self._sync_lanes()

    # ---- one lane ----

    async def _run_lane(self, lane: _Lane) -> None:
        try:
            while not lane.stop:
                # Cleared before looking, so a wake-up that comes while this lane sends is not lost.
                lane.wake.clear()
                wait_s = await self._advance(lane)
                if lane.stop:
                    return
                try:
                    await asyncio.wait_for(lane.wake.wait(), wait_s)
                except TimeoutError:
                    pass
        except Exception:
            log.exception("webhook lane %s failed; it restarts on the next poll", lane.record.client_id)
            self._retire(lane)

    async def _advance(self, lane: _Lane) -> float:
        """Send what is due; the seconds until something may be due again."""
        while not lane.stop:
            entries = await self._read(lane.record.store_id, lane.cursor)
            if not entries:
                return self.config.poll_interval_s
            for entry, body in entries:
                if lane.stop:
                    return 0
                if entry.position <= lane.record.installed_position or entry.position in lane.done or \
                        not rules.app_receives(lane.record.scopes, lane.record.event_types, body.type):
                    self._move(lane, entry.position)
                    continue
                earlier = lane.known.get(entry.position)
                if earlier is not None and earlier.next_attempt_at is not None:
                    due_in = earlier.next_attempt_at - time.time()
                    if due_in > 0:
                        return due_in
                if not await self._attempt(lane, entry, body, earlier):
                    delivery = lane.known.get(entry.position)
                    if lane.stop or delivery is None or delivery.next_attempt_at is None:
                        return self.config.poll_interval_s
                    return max(0.0, delivery.next_attempt_at - time.time())
        return 0

    def _move(self, lane: _Lane, position: int) -> None:
        lane.cursor = position
        lane.known.pop(position, None)
        lane.done.discard(position)

    async def _read(self, store_id: str, after: int) -> list[tuple[StoredEntry, _Body]]:
        found: list[tuple[StoredEntry, _Body]] = []
        while len(found) < READ_BATCH_MAX and (hit := self._entries.get((store_id, after + len(found) + 1))):
            found.append(hit)
        if found:
            return found
        # Read on this loop's own thread: a worker-thread hop costs more latency than the read
        # (a page of indexed rows); this loop is the dispatcher's, never the server's.
        entries = self.ledger.read_entries(store_id, after, READ_BATCH_MAX)
        for entry in entries:
            pair = (entry, _BODY.decode(entry.body))
            self._entries[(store_id, entry.position)] = pair
            found.append(pair)
        while len(self._entries) > ENTRY_CACHE_MAX:
            self._entries.popitem(last=False)
        return found

    def _payload(self, lane: _Lane, entry: StoredEntry, body: _Body) -> bytes:
        data = body.data
        if rules.MEMBERS_READ not in lane.record.scopes:
            data, _ = rules.without_personal_data(body.type, data)
        event = {"id": body.id, "seq": body.seq, "type": body.type, "at": body.at,
                 "terminal_id": entry.terminal_id, "data": data}
        return _JSON.encode({"type": body.type, "timestamp": body.at,
                             "data": {"store_id": lane.record.store_id, "position": entry.position, "event": event}})

    async def _attempt(self, lane: _Lane, entry: StoredEntry, body: _Body, earlier: DeliveryRecord | None) -> bool:
        """One attempt; True when the lane may move past this event."""
        assert self._transport is not None
        record = lane.record
        message_id = rules.webhook_message_id(record.client_id, entry.position)
        payload = self._payload(lane, entry, body)
        now = time.time()
        headers = {
            "content-type": "application/json",
            "user-agent": "pos-ledger-webhooks/1",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": rules.webhook_signature(record.signing_secrets(now), message_id, int(now), payload),
        }
        status: int | None = None
        error = ""
        try:
            request = httpx.Request("POST", record.webhook_url or "", content=payload, headers=headers,
                                    extensions={"allow_local": lane.allow_local})
            response = await self._transport.handle_async_request(request)
            status = response.status_code
        except Exception as failure:  # httpx transport errors, a bad URL: a failed attempt either way
            error = f"{type(failure).__name__}: {failure}"[:500]
        done_at = time.time()
        attempts = (earlier.attempts if earlier is not None else 0) + 1
        first_at = earlier.first_attempt_at if earlier is not None else now
        base = DeliveryRecord(record.client_id, entry.position, record.store_id, record.app_id, body.type,
                              message_id, "delivered", attempts, status, error, first_at, done_at, None, None)
        if status is not None and 200 <= status < 300:
            delivery = replace(base, delivered_at=done_at)
            self._record(lane, delivery, moved=True)
            if record.failing_since is not None:
                lane.record = replace(record, failing_since=None)
                await asyncio.to_thread(self.tables.set_failing_since, record.client_id, None)
            return True
        if status == 410:
            self._record(lane, replace(base, status="failed"), moved=False)
            await self._disable(lane, "the endpoint answered 410 Gone")
            return False
        return await self._failed(lane, base, done_at)

    async def _failed(self, lane: _Lane, base: DeliveryRecord, now: float) -> bool:
        record = lane.record
        if record.failing_since is None:
            lane.record = record = replace(record, failing_since=now)
            await asyncio.to_thread(self.tables.set_failing_since, record.client_id, now)
        delay = rules.retry_delay_s(base.attempts, self.config.backoff_s)
        if now - (record.failing_since or now) >= self.config.failing_s_max:
            self._record(lane, replace(base, status="failed"), moved=False)
            await self._disable(lane, f"the endpoint failed for {self.config.failing_s_max:.0f} s without a success")
            return False
        if delay is None:
            # The schedule is spent: the message is failed (a replay can send it again) and the next goes.
            self._record(lane, replace(base, status="failed"), moved=True)
            return True
        self._record(lane, replace(base, status="pending", next_attempt_at=now + delay), moved=False)
        return False

    def _record(self, lane: _Lane, delivery: DeliveryRecord, moved: bool) -> None:
        if moved:
            self._move(lane, delivery.position)
        else:
            lane.known[delivery.position] = delivery
        self._writes.append(delivery)

    async def _disable(self, lane: _Lane, reason: str) -> None:
        self._retire(lane)
        await self._flush()
        record = lane.record
        await asyncio.to_thread(self.tables.disable_webhook, record.client_id, reason)
        event = {"app_id": record.app_id, "url": record.webhook_url or "", "reason": reason}
        try:
            await asyncio.to_thread(self.ledger.append_server_events, record.store_id,
                                    [("webhook.disabled", event)])
        except Exception:
            log.exception("could not record webhook.disabled for %s", record.client_id)

    # ---- group commit of attempts and cursors ----

    async def _write_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval_s)
            try:
                await self._flush()
            except Exception:
                log.exception("webhook deliveries could not be recorded; retrying")

    async def _flush(self) -> None:
        lanes = list(self._lanes.values())
        cursors, self._retired = self._retired, {}
        cursors.update({lane.record.client_id: lane.cursor for lane in lanes if lane.cursor > lane.written})
        if not self._writes and not cursors:
            return
        batch, self._writes = self._writes, []
        try:
            await asyncio.to_thread(self.tables.record_attempts, batch, cursors)
        except BaseException:
            self._writes[:0] = batch
            for client_id, cursor in cursors.items():
                self._retired[client_id] = max(cursor, self._retired.get(client_id, 0))
            raise
        for lane in lanes:
            lane.written = max(lane.written, cursors.get(lane.record.client_id, 0))


class RedisWakeups:
    """Wake-ups from other server processes' commits (`projections.fanout.RedisFanout` publishes them), so
    the lease holder delivers their events at once instead of on its next poll. A lost message only
    waits for the poll: the log stays the truth."""

    PATTERN: Final = "pos-ledger:*:appended"

    def __init__(self, url: str, notify: Callable[[str, int, bytes], None]) -> None:
        import redis

        self.notify = notify
        client: Any = redis.Redis.from_url(url, socket_connect_timeout=1.0, health_check_interval=30)
        self.client = client
        self.pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
        self.thread: Any = None

    def _on_message(self, message: dict[str, Any]) -> None:
        try:
            announced = msgspec.json.decode(message["data"])
            self.notify(str(announced["store_id"]), int(announced["position"]), b"")
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            log.warning("ignored a malformed wake-up on %s", message.get("channel"))

    def start(self) -> None:
        def failed(error: BaseException, pubsub: Any, thread: Any) -> None:
            log.warning("redis wake-ups stopped (%s); the dispatcher polls the log", error)
            thread.stop()

        try:
            self.pubsub.psubscribe(**{self.PATTERN: self._on_message})
            self.thread = self.pubsub.run_in_thread(sleep_time=0.5, daemon=True, exception_handler=failed)
        except Exception as error:  # Redis down at start: polling still delivers
            log.warning("redis wake-ups unavailable (%s); the dispatcher polls the log", error)

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread.join(timeout=5)
        self.pubsub.close()
        self.client.close()
