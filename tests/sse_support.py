"""A small Server-Sent Events reader for the tests (its own parser, not the bridge's)."""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import threading
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Message:
    id: str | None
    data: str
    comment: bool = False


class SseReader:
    """Reads a stream in a thread; messages (and comment lines) arrive on `messages`."""

    def __init__(self, client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self.status: int | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._socket: socket.socket | None = None
        self._client = client
        self._thread = threading.Thread(target=self._run, args=(path, headers or {}), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the stream did not open"

    def _run(self, path: str, headers: dict[str, str]) -> None:
        # http.client, not httpx: close() must be able to shut the socket under a blocked read.
        url = self._client.base_url
        connection = http.client.HTTPConnection(url.host, url.port, timeout=60)
        try:
            wanted = {k: v for k, v in self._client.headers.items() if k.lower() == "authorization"}
            connection.request("GET", path, headers={**wanted, **headers})
            self._socket = connection.sock
            response = connection.getresponse()
            self.status = response.status
            self.content_type = response.getheader("content-type", "")
            self._ready.set()
            if response.status != 200:
                return
            event_id: str | None = None
            data: list[str] = []
            while not self._stop.is_set():
                raw = response.readline()
                if not raw:
                    return
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.messages.put(Message(None, line[1:].strip(), comment=True))
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    self.messages.put(Message(event_id, "\n".join(data)))
                    event_id, data = None, []
        except (OSError, http.client.HTTPException):  # closed from close(), or the server went away
            pass
        finally:
            self._ready.set()
            connection.close()

    def next(self, timeout_s: float = 10.0, comments: bool = False) -> Message:
        while True:
            message = self.messages.get(timeout=timeout_s)
            if comments or not message.comment:
                return message

    def events(self, count: int, timeout_s: float = 10.0) -> list[tuple[int, Any]]:
        import json

        found = []
        for _ in range(count):
            message = self.next(timeout_s)
            assert message.id is not None
            found.append((int(message.id), json.loads(message.data)))
        return found

    def close(self) -> None:
        self._stop.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
