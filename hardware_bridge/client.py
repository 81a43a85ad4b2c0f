"""The bridge's HTTP side: requests signed as its terminal (RFC 9421, `pos_ledger.httpsig`), the
store's log over Server-Sent Events or by polling, and its own signed events posted back."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from pos_ledger import _core, httpsig

REQUEST_TIMEOUT_S: Final = 10.0
#: The server sends a heartbeat every 15 s: a silent stream for this long is dead.
STREAM_READ_TIMEOUT_S: Final = 45.0
READ_EVENTS_MAX: Final = 500


class BridgeError(Exception):
    """A problem the operator must fix; the CLI prints it without a traceback."""

    exit_code = 1


class NotAuthorized(BridgeError):
    exit_code = 3


class StreamUnavailable(Exception):
    """The server does not offer the stream (`offered` False: poll for a while), or it broke
    (the server restarted, the network dropped: try it again soon, polling meanwhile)."""

    def __init__(self, message: str, offered: bool) -> None:
        super().__init__(message)
        self.offered = offered


@dataclass(frozen=True, slots=True)
class Entry:
    position: int
    terminal_id: str
    type: str
    body: dict[str, Any]
    hash: str

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.body.get("data", {})
        return data


def entry_of(item: dict[str, Any]) -> Entry:
    body = json.loads(item["body"])
    return Entry(int(item["position"]), str(item["terminal_id"]), str(body.get("type", "")), body, str(item["hash"]))


class StoreClient:
    def __init__(self, server: str, store: str, terminal_id: str, seed: bytes,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.server = server.rstrip("/")
        self.store = store
        self.terminal_id = terminal_id
        self.seed = seed
        self.http = httpx.Client(base_url=self.server, timeout=REQUEST_TIMEOUT_S, transport=transport)
        self._seq = 0

    def close(self) -> None:
        self.http.close()

    def _signed(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        return httpsig.sign_request(self.seed, self.terminal_id, method, path, body, int(time.time()))

    def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self.http.get(path, params=params, headers=self._signed("GET", path))
        except httpx.HTTPError as error:
            raise BridgeError(f"cannot reach {self.server}: {error}") from None
        self._raise_for(response)
        return response

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code in (401, 403):
            raise NotAuthorized(f"the server refused terminal {self.terminal_id!r} of store {self.store!r} "
                                f"(not registered, revoked, or another key): {_detail(response)}")
        if response.status_code == 404:
            raise BridgeError(f"not found at {self.server}: {_detail(response)}")
        if response.status_code >= 400:
            raise BridgeError(f"{response.request.method} {response.request.url.path}: "
                              f"{response.status_code} {_detail(response)}")

    # ---- reads ----

    def store_info(self) -> dict[str, Any]:
        info: dict[str, Any] = self._get(f"/v1/stores/{self.store}").json()
        return info

    def chain_length(self) -> int:
        return int(self._get(f"/v1/stores/{self.store}/chain").json()["length"])

    def read_events(self, after: int, limit: int = READ_EVENTS_MAX) -> list[Entry]:
        items = self._get(f"/v1/stores/{self.store}/events", {"after": after, "limit": limit}).json()
        return [entry_of(item) for item in items]

    def order(self, order_id: str) -> dict[str, Any]:
        order: dict[str, Any] = self._get(f"/v1/stores/{self.store}/orders/{order_id}").json()
        return order

    def payment(self, payment_id: str) -> dict[str, Any]:
        payment: dict[str, Any] = self._get(f"/v1/stores/{self.store}/payments/{payment_id}").json()
        return payment

    def report(self, kind: str, shift_id: str | None, day: str | None) -> dict[str, Any]:
        if shift_id is not None:
            path = f"/v1/stores/{self.store}/shifts/{shift_id}/{kind}-report"
            found: dict[str, Any] = self._get(path).json()
        else:
            found = self._get(f"/v1/stores/{self.store}/z-report", {"day": day}).json()
        return found

    def stream(self, after: int) -> Iterator[Entry]:
        """Entries after `after` as the server pushes them; StreamUnavailable when it cannot."""
        path = f"/v1/stores/{self.store}/events/stream"
        headers = {**self._signed("GET", path), "Last-Event-ID": str(after), "Accept": "text/event-stream"}
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, read=STREAM_READ_TIMEOUT_S)
        try:
            with self.http.stream("GET", path, headers=headers, timeout=timeout) as response:
                if response.status_code in (401, 403):
                    response.read()
                    self._raise_for(response)
                if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
                        "text/event-stream"):
                    raise StreamUnavailable(f"no event stream ({response.status_code})", offered=False)
                data: list[str] = []
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif line == "" and data:
                        yield entry_of(json.loads("\n".join(data)))
                        data = []
        except httpx.HTTPError as error:
            raise StreamUnavailable(f"the event stream broke: {error}", offered=True) from None

    # ---- the bridge's own events ----

    def post_events(self, events: list[tuple[uuid.UUID, int, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Sign and ingest (id, seq, type, data) events; the server's result for each."""
        signed = []
        for event_id, seq, event_type, data in events:
            body = json.dumps({"id": str(event_id), "seq": seq, "type": event_type,
                               "at": datetime.now(UTC).isoformat(timespec="milliseconds"), "data": data},
                              ensure_ascii=False, separators=(",", ":")).encode()
            signed.append({"body": body.decode(), "sig": base64.b64encode(_core.ed25519_sign(self.seed, body)).decode()})
        path = f"/v1/stores/{self.store}/terminals/{self.terminal_id}/events"
        try:
            response = self.http.post(path, json={"events": signed})
        except httpx.HTTPError as error:
            raise BridgeError(f"cannot reach {self.server}: {error}") from None
        self._raise_for(response)
        results: list[dict[str, Any]] = response.json()["results"]
        return results


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))[:300]
    except (ValueError, AttributeError):
        return response.text[:300]
