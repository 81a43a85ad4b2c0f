"""The webhook transport against raw servers answering in each HTTP/1.1 way it must understand."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import httpx
import pytest

from api.webhook_transport import WebhookTransport

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


async def serve(answer: Answer) -> tuple[asyncio.Server, str, list[bytes]]:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                body = await reader.readexactly(length)
                requests.append(head + body)
                await answer(reader, writer, body)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook?x=1", requests


async def post(transport: WebhookTransport, url: str, body: bytes = b'{"a":1}') -> httpx.Response:
    request = httpx.Request("POST", url, content=body, headers={"webhook-id": "msg_1"},
                            extensions={"allow_local": True})
    return await transport.handle_async_request(request)


def run(answer: Answer, posts: int = 2, timeout_s: float = 5.0) -> tuple[list[int], list[bytes]]:
    async def main() -> tuple[list[int], list[bytes]]:
        server, url, requests = await serve(answer)
        transport = WebhookTransport(timeout_s)
        try:
            statuses = [(await post(transport, url)).status_code for _ in range(posts)]
        finally:
            await transport.aclose()
            server.close()
        return statuses, requests

    return asyncio.run(main())


def test_content_length_keep_alive_and_the_request_as_sent() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")

    statuses, requests = run(answer)
    assert statuses == [200, 200]
    assert requests[0].startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
    assert b"webhook-id: msg_1\r\n" in requests[0] and requests[0].endswith(b'\r\n\r\n{"a":1}')


def test_chunked_interim_and_no_content_answers() -> None:
    answers = [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(answers.pop(0))

    statuses, _ = run(answer)
    assert statuses == [202, 204]


def test_connection_close_and_a_body_until_close() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(b"HTTP/1.0 410 Gone\r\n\r\ngone for good")
        await writer.drain()
        writer.close()

    statuses, requests = run(answer, posts=3)
    assert statuses == [410, 410, 410]
    assert len(requests) == 3


def test_a_kept_alive_connection_the_server_dropped_is_retried_once_on_a_fresh_one() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        # Says nothing of closing, then closes: the next request on it fails and goes on a new connection.
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    statuses, requests = run(answer, posts=3)
    assert statuses == [200, 200, 200]
    assert len(requests) == 3


def test_a_slow_server_times_out_and_a_closed_port_is_a_connect_error() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        await asyncio.sleep(5)

    with pytest.raises(httpx.ReadTimeout):
        run(answer, posts=1, timeout_s=0.3)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def refused() -> None:
        transport = WebhookTransport(2.0)
        await post(transport, f"http://127.0.0.1:{port}/")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(refused())


def test_garbage_is_a_protocol_error() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        writer.close()

    with pytest.raises(httpx.RemoteProtocolError):
        run(answer, posts=1)


def test_local_addresses_need_the_stores_permission() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async def main() -> None:
        server, url, requests = await serve(answer)
        transport = WebhookTransport(2.0)
        try:
            with pytest.raises(httpx.ConnectError, match="local addresses"):
                await transport.handle_async_request(httpx.Request("POST", url, content=b"{}"))
            assert requests == []
        finally:
            await transport.aclose()
            server.close()

    asyncio.run(main())
