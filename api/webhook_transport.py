"""A small HTTP/1.1 keep-alive transport for httpx, for webhook POSTs.

httpx's default transport (httpcore + anyio) costs about 1.5 ms of CPU per request on
the 2-core machine, which alone caps fan-out far below 2,000 deliveries/s. A webhook
POST needs little of it: one request on a kept-alive connection, a status line,
headers and a body to skip. This transport does that with asyncio streams (TLS via
`ssl`), sends the request in one write, and reads the answer's body by
Content-Length, chunked encoding or until close (at most `BODY_BYTES_MAX`, then the
connection is dropped rather than read on). Anything unusual raises an httpx
transport error, which a delivery counts as a failed attempt.

Each new connection resolves the host and connects only to a public address unless
the request carries `extensions={"allow_local": True}` (the store allows local
webhooks): a name that resolved to a public address at install time cannot later
point the server at its own network (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Final

import httpx

from pos_ledger.platform import is_local_address

#: Bytes of an answer's body read (and thrown away) before the connection is dropped instead.
BODY_BYTES_MAX: Final = 1 << 20
HEAD_BYTES_MAX: Final = 64 * 1024
IDLE_CONNECTIONS_MAX: Final = 4
_NO_BODY: Final = frozenset({204, 304})


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class _Body(httpx.AsyncByteStream):
    def __init__(self, content: bytes) -> None:
        self.content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.content


class WebhookTransport(httpx.AsyncBaseTransport):
    def __init__(self, timeout_s: float, ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.scheme, url.host, port)
        body = request.content
        head = [f"{request.method} {url.raw_path.decode('ascii')} HTTP/1.1", f"host: {url.netloc.decode('ascii')}"]
        head += [f"{name}: {value}" for name, value in request.headers.items() if name.lower() not in
                 ("host", "content-length", "transfer-encoding", "connection")]
        head.append(f"content-length: {len(body)}")
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            return await asyncio.wait_for(self._exchange(key, message, request), self.timeout_s)
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer within {self.timeout_s} s", request=request) from None

    async def _exchange(self, key: tuple[str, str, int], message: bytes, request: httpx.Request) -> httpx.Response:
        idle = self._idle.get(key)
        reused = bool(idle)
        connection = idle.pop() if idle else await self._connect(key, request)
        try:
            connection.writer.write(message)
            await connection.writer.drain()
            status, headers, content, keep = await self._read_answer(connection, request)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            connection.close()
            if reused:
                # A kept-alive connection the server had closed: once more on a fresh one.
                return await self._exchange_fresh(key, message, request)
            raise httpx.RemoteProtocolError(f"{type(error).__name__}: {error}", request=request) from None
        except BaseException:
            connection.close()
            raise
        self._release(key, connection, keep)
        return httpx.Response(status, headers=headers, stream=_Body(content), request=request)

    async def _exchange_fresh(self, key: tuple[str, str, int], message: bytes,
                              request: httpx.Request) -> httpx.Response:
        connection = await self._connect(key, request)
        try:
            connection.writer.write(message)
            await connection.writer.drain()
            status, headers, content, keep = await self._read_answer(connection, request)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            connection.close()
            raise httpx.RemoteProtocolError(f"{type(error).__name__}: {error}", request=request) from None
        except BaseException:
            connection.close()
            raise
        self._release(key, connection, keep)
        return httpx.Response(status, headers=headers, stream=_Body(content), request=request)

    async def _connect(self, key: tuple[str, str, int], request: httpx.Request) -> _Connection:
        scheme, host, port = key
        allow_local = bool(request.extensions.get("allow_local", False))
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = [str(info[4][0]) for info in infos]
            allowed = [a for a in addresses if allow_local or not is_local_address(a.split("%")[0])]
            if not allowed:
                raise httpx.ConnectError(f"{host!r} resolves only to local addresses ({', '.join(addresses)}), "
                                         "which this store does not allow", request=request)
            reader, writer = await asyncio.open_connection(
                allowed[0], port, ssl=self.ssl_context if scheme == "https" else None,
                server_hostname=host if scheme == "https" else None, limit=HEAD_BYTES_MAX)
        except OSError as error:
            raise httpx.ConnectError(f"{type(error).__name__}: {error}", request=request) from None
        return _Connection(reader, writer)

    def _release(self, key: tuple[str, str, int], connection: _Connection, keep: bool) -> None:
        idle = self._idle.setdefault(key, [])
        if keep and len(idle) < IDLE_CONNECTIONS_MAX:
            idle.append(connection)
        else:
            connection.close()

    async def _read_answer(self, connection: _Connection,
                           request: httpx.Request) -> tuple[int, list[tuple[str, str]], bytes, bool]:
        reader = connection.reader
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
            status = int(rest[:3])
            headers = [(name.strip().lower(), value.strip()) for name, _, value in
                       (line.partition(":") for line in lines[1:] if line)]
            if status >= 200 or status == 101:
                break  # 1xx interim answers (100 Continue) are skipped
        fields = dict(headers)
        keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        if status in _NO_BODY or 100 <= status < 200:
            return status, headers, b"", keep
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return status, headers, await self._read_chunked(reader), keep
        length = fields.get("content-length")
        if length is not None:
            size = int(length)
            if size > BODY_BYTES_MAX:
                return status, headers, b"", False
            return status, headers, await reader.readexactly(size), keep
        # No length: the body runs until the server closes the connection.
        return status, headers, await reader.read(BODY_BYTES_MAX), False

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > BODY_BYTES_MAX:
                raise ValueError("the answer's body is too large")
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
