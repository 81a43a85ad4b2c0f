"""Helpers of the open platform's tests: registering and installing apps, tokens, a webhook receiver
that verifies every delivery with the PyPI `standardwebhooks` package (not the project's code)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class InstalledApp:
    app_id: str
    store_id: str
    client_id: str
    client_secret: str
    webhook_secret: str
    scopes: list[str]


def register_app(admin: httpx.Client, app_id: str, scopes: list[str], webhook_url: str | None = None,
                 event_types: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"app_id": app_id, "name": f"App {app_id}", "scopes": scopes,
                            "event_types": event_types or []}
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    response = admin.post("/v1/apps", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def install(admin: httpx.Client, store_id: str, app_id: str) -> InstalledApp:
    response = admin.post(f"/v1/stores/{store_id}/apps/{app_id}/install", json={})
    assert response.status_code == 201, response.text
    body = response.json()
    return InstalledApp(app_id, store_id, body["client_id"], body["client_secret"], body["webhook_secret"],
                        body["scopes"])


def token(base_url: str, app: InstalledApp, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    response = httpx.post(base_url + "/oauth/token", data=form, auth=(app.client_id, app.client_secret))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(access_token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {access_token}"}


@dataclass
class Receiver:
    """A webhook endpoint on loopback: verifies each delivery, fails the first `fail_first` attempts of each
    message, then accepts; records what it accepted, in order."""

    secrets: list[str]
    fail_first: int = 0
    answer: Callable[[dict[str, Any]], int] | None = None
    accepted: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    rejected_signatures: int = 0
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = receiver.handle(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        payload = None
        for secret in self.secrets:
            try:
                payload = Webhook(secret).verify(body, headers)
                break
            except WebhookVerificationError:
                continue
        with self.lock:
            self.headers_seen.append(headers)
            if payload is None:
                self.rejected_signatures += 1
                return 401
            message_id = headers["webhook-id"]
            self.attempts[message_id] = self.attempts.get(message_id, 0) + 1
            if self.attempts[message_id] <= self.fail_first:
                return 503
            status = self.answer(payload) if self.answer is not None else 204
            if 200 <= status < 300:
                self.accepted.append({"webhook_id": message_id, **payload})
            return status

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.accepted) >= count:
                    return list(self.accepted)
            time.sleep(0.02)
        with self.lock:
            raise AssertionError(f"{len(self.accepted)} of {count} deliveries arrived: "
                                 f"{json.dumps(self.accepted)[:2000]}")
