"""The bridge's three loops: follow the log into the journal, print the journal, report back.

* Follower: from the journal's cursor (an empty journal starts at the current end of the
  log, or at `--from`), over SSE (`GET .../events/stream`), falling back to polling
  `GET .../events` for `POLL_FALLBACK_S` when the stream is unavailable, then trying it again.
* Printer worker: the oldest queued job, with retries and backoff while the printer is off
  (nothing left, so a retry cannot double it); a job whose bytes left without confirmation
  is flagged `unknown` and never printed again by itself.
* Reporter: `print.completed` / `print.failed` for each job's outcome, signed with the
  terminal's key; their ids derive from (position, station, copy, outcome), so a retry after
  a lost answer is a duplicate, not a second report.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from hardware_bridge import render
from hardware_bridge.client import BridgeError, Entry, NotAuthorized, StoreClient, StreamUnavailable
from hardware_bridge.journal import QUEUE_DEPTH_MAX, Journal, NewJob
from hardware_bridge.printers import OutcomeUnknown, Printer, PrinterOffline

log = logging.getLogger("hardware_bridge")

BACKOFF_MIN_S: Final = 0.25
BACKOFF_MAX_S: Final = 5.0
POLL_INTERVAL_S: Final = 1.0
#: Polling lasts this long when the server offers no stream, and this long when a stream broke.
POLL_FALLBACK_S: Final = 30.0
STREAM_RETRY_S: Final = 2.0
IDLE_CHECK_S: Final = 1.0
REPORT_INTERVAL_S: Final = 0.5
REPORT_BATCH_MAX: Final = 100
#: Entries after a sale read to find its points and coupon savings (written in the same commit).
SALE_FOLLOWERS_MAX: Final = 20
RECENT_COUPONS_MAX: Final = 1_000
REPORT_NAMESPACE: Final = uuid.UUID("1b7e5f0a-6f64-4c8e-9a34-3f1f0a8e2b13")


@dataclass
class BridgeConfig:
    store: str
    printer_uri: str
    stations: list[str] = field(default_factory=lambda: ["receipt"])
    start_from: int | None = None
    backoff_max_s: float = BACKOFF_MAX_S
    poll_interval_s: float = POLL_INTERVAL_S


def parse_station(text: str) -> str:
    if text == "receipt" or text == "kitchen" or (text.startswith("kitchen:") and 0 < len(text) - 8 <= 100
                                                   and " " not in text):
        return text
    raise BridgeError(f"unknown station {text!r}: use receipt, kitchen or kitchen:CATEGORY")


class Bridge:
    def __init__(self, config: BridgeConfig, client: StoreClient, printer: Printer, journal: Journal,
                 on_job: Callable[[str], None] = lambda message: None) -> None:
        self.config = config
        self.client = client
        self.printer = printer
        self.journal = journal
        self.on_job = on_job
        self.stop_event = threading.Event()
        self.jobs_waiting = threading.Event()
        self.reports_waiting = threading.Event()
        self.store: dict[str, Any] = {}
        self._recent_coupons: OrderedDict[str, int] = OrderedDict()
        self._threads: list[threading.Thread] = []
        self.fatal: BaseException | None = None

    # ---- lifecycle ----

    def prepare(self) -> int:
        """Check the credential, bind the journal, decide where to start; the cursor."""
        self.store = self.client.store_info()
        self.journal.bind(self.config.store, self.config.printer_uri)
        cursor = self.journal.cursor()
        if cursor is None:
            start = (self.config.start_from - 1) if self.config.start_from else self.client.chain_length()
            self.journal.start_at(start)
            cursor = start
        recovered = self.journal.recover()
        if recovered:
            log.warning("%d job(s) were being sent when the bridge stopped: flagged unknown, not reprinted "
                        "(reprint them explicitly if they did not print)", recovered)
        return cursor

    def start(self) -> None:
        for name, target in (("follower", self._follow), ("printer", self._print), ("reporter", self._report)):
            thread = threading.Thread(target=self._guard(target), name=f"bridge-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.stop_event.set()
        self.jobs_waiting.set()
        self.reports_waiting.set()
        for thread in self._threads:
            # The follower may sit in a stream read until the next heartbeat: it is a daemon and
            # its journal writes are transactions, so the process may end under it.
            thread.join(timeout=0.5 if thread.name == "bridge-follower" else 10)

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as error:  # a dead loop stops the bridge with its reason
                self.fatal = error
                log.exception("bridge loop failed")
                self.stop_event.set()
        return run

    # ---- follower ----

    def _follow(self) -> None:
        cursor = self.journal.cursor() or 0
        while not self.stop_event.is_set():
            try:
                for entry in self.client.stream(cursor):
                    self._take(entry)
                    cursor = entry.position
                    if self.stop_event.is_set():
                        return
            except StreamUnavailable as error:
                fallback_s = POLL_FALLBACK_S if not error.offered else STREAM_RETRY_S
                log.warning("%s; polling for %.0f s", error, fallback_s)
                cursor = self._poll(cursor, time.monotonic() + fallback_s)
            except NotAuthorized:
                raise
            except BridgeError as error:
                log.warning("%s; retrying", error)
                self.stop_event.wait(self.config.poll_interval_s)

    def _poll(self, cursor: int, until: float) -> int:
        while not self.stop_event.is_set() and time.monotonic() < until:
            try:
                entries = self.client.read_events(cursor)
            except NotAuthorized:
                raise
            except BridgeError as error:
                log.warning("%s; retrying", error)
                entries = []
            for entry in entries:
                self._take(entry)
                cursor = entry.position
            if not entries:
                self.stop_event.wait(self.config.poll_interval_s)
        return cursor

    def _take(self, entry: Entry) -> None:
        while self.journal.queued_count() >= QUEUE_DEPTH_MAX and not self.stop_event.is_set():
            self.stop_event.wait(1.0)  # the printer is off for long: stop reading until it catches up
        if entry.type == "print.reprint_requested":
            if entry.data.get("terminal_id") == self.client.terminal_id:
                copies = self.journal.reprint(int(entry.data["position"]), entry.data.get("station"),
                                              cursor=entry.position)
                for job in copies:
                    self.on_job(f"reprint {job.copy - 1} of position {job.position} on {job.station} requested")
                if copies:
                    self.jobs_waiting.set()
                    return
            self.journal.record(entry.position, [])
            return
        try:
            jobs = self.jobs_for(entry)
        except BridgeError:
            raise  # the server could not be asked (an order's lines): the entry is read again
        except (KeyError, TypeError, ValueError) as error:
            # An event this bridge cannot render must not stop every later ticket: say so, go on.
            log.error("position %s (%s) cannot be printed: %r", entry.position, entry.type, error)
            jobs = []
        self.journal.record(entry.position, jobs)
        if jobs:
            self.jobs_waiting.set()

    def jobs_for(self, entry: Entry) -> list[NewJob]:
        data = entry.data
        stations = self.config.stations
        if entry.type == "coupon.redeemed":
            self._remember_coupon(str(data.get("order_ref", "")), int(data.get("discount_minor", 0)))
        meta = {"position": entry.position, "terminal_id": entry.terminal_id, "hash": entry.hash,
                "at": str(entry.body.get("at", ""))}
        jobs: list[NewJob] = []
        if "receipt" in stations:
            payload = self._receipt_station(entry, meta)
            if payload is not None:
                jobs.append(NewJob("receipt", entry.type, payload))
        kitchens = [s for s in stations if s.startswith("kitchen")]
        if kitchens and entry.type == "order.accepted":
            order = self.client.order(str(data["order_id"]))
            for station in kitchens:
                category = station.partition(":")[2]
                lines = [line for line in order["lines"] if not category or line.get("category") == category]
                if lines:
                    jobs.append(NewJob(station, "kitchen_ticket",
                                       render.kitchen_ticket(self.store, order, station, lines, entry.position)))
        return jobs

    def _receipt_station(self, entry: Entry, meta: dict[str, Any]) -> bytes | None:
        data = entry.data
        if entry.type == "sale.completed":
            return render.receipt(self.store, data, meta, self._sale_extras(entry), self.verify_url(entry))
        if entry.type == "refund.issued":
            cash = False
            try:
                cash = self.client.payment(str(data["payment_id"])).get("method") == "cash"
            except BridgeError as error:
                log.warning("refund slip without the payment's method: %s", error)
            return render.refund_slip(self.store, data, meta, str(self.store.get("currency", "CNY")), cash)
        if entry.type == "stored_value.recharged":
            return render.recharge_slip(self.store, data, meta)
        return None

    def verify_url(self, entry: Entry) -> str:
        return f"{self.client.server}/v1/stores/{self.config.store}/receipts/{entry.position}?hash={entry.hash}"

    def _remember_coupon(self, order_ref: str, discount_minor: int) -> None:
        self._recent_coupons[order_ref] = self._recent_coupons.get(order_ref, 0) + discount_minor
        while len(self._recent_coupons) > RECENT_COUPONS_MAX:
            self._recent_coupons.popitem(last=False)

    def _sale_extras(self, entry: Entry) -> dict[str, Any]:
        """Points, balance spent and coupon savings of the sale: its reactions follow it in the log."""
        sale = entry.data
        order_ref = str(sale.get("order_id", ""))
        extras: dict[str, Any] = {"coupons": [], "points": 0, "balance_spent": 0}
        if order_ref in self._recent_coupons:
            extras["coupons"].append(self._recent_coupons[order_ref])
        if not sale.get("member_id") and not sale.get("discount_minor"):
            return extras
        for follower in self.client.read_events(entry.position, SALE_FOLLOWERS_MAX):
            data = follower.data
            if follower.terminal_id != "server" or data.get("order_ref") != order_ref:
                continue
            if follower.type == "points.earned":
                extras["points"] += int(data.get("points", 0))
            elif follower.type == "stored_value.spent":
                extras["balance_spent"] += int(data.get("amount_minor", 0))
            elif follower.type == "coupon.redeemed":
                extras["coupons"].append(int(data.get("discount_minor", 0)))
        return extras

    # ---- printer worker ----

    def _print(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self.stop_event.is_set():
            job = self.journal.next_queued()
            if job is None:
                self.jobs_waiting.wait(IDLE_CHECK_S)
                self.jobs_waiting.clear()
                continue
            try:
                self.printer.send(job.payload, before_bytes=functools.partial(self.journal.mark_sent, job.id))
            except PrinterOffline as error:
                self.journal.mark_offline(job.id, str(error))
                self.reports_waiting.set()
                log.warning("printer %s offline (%s); retrying in %.2f s", self.printer.uri, error, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.config.backoff_max_s)
                continue
            except OutcomeUnknown as error:
                self.journal.mark_unknown(job.id, str(error))
                self.reports_waiting.set()
                self.on_job(f"position {job.position} {job.station} copy {job.copy}: UNKNOWN outcome ({error}); "
                            f"not reprinted: check the printer, then `pos-ledger bridge reprint {job.position}`")
                continue
            self.journal.mark_confirmed(job.id)
            self.reports_waiting.set()
            backoff = BACKOFF_MIN_S
            self.on_job(f"printed position {job.position} {job.kind} on {job.station}"
                        + (f" (reprint {job.copy - 1})" if job.copy > 1 else ""))

    # ---- reporter ----

    def _report(self) -> None:
        while not self.stop_event.is_set():
            self.reports_waiting.wait(REPORT_INTERVAL_S)
            self.reports_waiting.clear()
            try:
                self.report_once()
            except NotAuthorized as error:
                log.error("reports refused: %s", error)
                self.stop_event.wait(5.0)
            except BridgeError as error:
                log.warning("reports not delivered yet: %s", error)
                self.stop_event.wait(1.0)

    def report_once(self) -> int:
        jobs = self.journal.to_report(REPORT_BATCH_MAX)
        if not jobs:
            return 0
        seq = self._next_seq(len(jobs))
        events = []
        for offset, job in enumerate(jobs):
            data: dict[str, Any] = {"printer": self.printer.uri[:200], "station": job.station,
                                    "position": job.position, "copy": job.copy}
            event_type = "print.completed"
            if job.report != "completed":
                event_type = "print.failed"
                data.update(reason=job.report, detail=job.error[:500])
            event_id = uuid.uuid5(REPORT_NAMESPACE, f"{self.config.store}/{self.client.terminal_id}/{job.position}/"
                                                    f"{job.station}/{job.copy}/{job.report}")
            events.append((event_id, seq + offset, event_type, data))
        results = self.client.post_events(events)
        for job, result in zip(jobs, results, strict=True):
            if result["status"] in ("accepted", "duplicate") or result.get("reason") == "id_reused":
                self.journal.reported(job.id, job.report)
            elif result.get("reason") == "seq_not_increasing":
                self.journal.put("seq", str(seq + len(jobs) + 1_000))
            else:
                log.error("the server refused the report of position %s: %s", job.position, result.get("reason"))
                self.journal.reported(job.id, job.report)
        return len(jobs)

    def _next_seq(self, count: int) -> int:
        """Strictly increasing across restarts (kept in the journal; the clock covers a lost journal)."""
        stored = int(self.journal.get("seq") or 0)
        seq = max(stored + 1, time.time_ns() // 1_000)
        self.journal.put("seq", str(seq + count - 1))
        return seq
