"""The Idempotency-Key rules (api/idempotency.py), on the middleware itself in front of a scripted
ASGI app: which answers are kept and replayed, and which are never kept (a 401, a 5xx), so a forged
or failed attempt never pins the key the genuine request will use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from api.idempotency import ANSWER_BYTES_MAX, REQUEST_BYTES_MAX, IdempotencyMiddleware

PATH = "/v1/stores/s1/psp/notifications"


class Scripted:
    """Answers each call with the next status of its script; counts the calls it really ran."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.calls = 0
        self.bodies: list[bytes] = []
        self.answer_bytes = 0
        #: Raise instead of answering (a route that crashed before its answer started).
        self.crash = False
        self.content_type: bytes | None = b"application/json"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.calls += 1
        message = await receive()
        self.bodies.append(message.get("body", b""))
        if self.crash:
            raise RuntimeError("the route crashed")
        status = self.statuses.pop(0)
        body = json.dumps({"call": self.calls, "pad": ""}).encode()
        body = body[:-2] + b"x" * max(0, self.answer_bytes - len(body)) + body[-2:]
        headers = [] if self.content_type is None else [(b"content-type", self.content_type)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        half = len(body) // 2  # two chunks: what is kept and replayed is both, joined
        await send({"type": "http.response.body", "body": body[:half], "more_body": True})
        await send({"type": "http.response.body", "body": body[half:]})


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Scripted, IdempotencyMiddleware, TestClient]]:
    def signed_caller(scope: Any, headers: dict[str, str], body: bytes) -> str | None:
        return "terminal:s1:t1" if headers.get("signature") == "good" else None

    scripted = Scripted()
    middleware = IdempotencyMiddleware(scripted, str(tmp_path / "keys.sqlite3"), signed_caller)
    try:
        yield scripted, middleware, TestClient(middleware)  # no `with`: the scripted app has no lifespan
    finally:
        middleware.table.close()


def post(client: TestClient, key: str | None = "k1", body: bytes = b'{"n": 1}', **headers: str) -> Any:
    sent = dict(headers)
    if key is not None:
        sent["Idempotency-Key"] = key
    return client.post(PATH, content=body, headers=sent)


def test_a_401_is_never_kept_so_the_genuine_request_runs(app: tuple[Scripted, IdempotencyMiddleware,
                                                                   TestClient]) -> None:
    scripted, middleware, client = app
    scripted.statuses = [401, 200, 200]
    forged = post(client)
    assert forged.status_code == 401 and "idempotent-replayed" not in forged.headers
    assert middleware.table.find("anonymous:" + PATH, "k1") is None  # the forged attempt pinned nothing
    genuine = post(client)
    assert (genuine.status_code, genuine.json()["call"]) == (200, 2)
    assert "idempotent-replayed" not in genuine.headers
    again = post(client)
    assert (again.status_code, again.json()["call"], again.headers["idempotent-replayed"]) == (200, 2, "true")
    assert scripted.calls == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_is_not_kept(app: tuple[Scripted, IdempotencyMiddleware, TestClient], status: int) -> None:
    scripted, _, client = app
    scripted.statuses = [status, 201]
    assert post(client).status_code == status
    retried = post(client)
    assert (retried.status_code, retried.json()["call"]) == (201, 2)


@pytest.mark.parametrize("status", [200, 201, 400, 404, 409, 422, 499])
def test_other_answers_are_kept_and_replayed(app: tuple[Scripted, IdempotencyMiddleware, TestClient],
                                            status: int) -> None:
    scripted, _, client = app
    scripted.statuses = [status]
    first = post(client)
    replayed = post(client)
    assert (replayed.status_code, replayed.content) == (first.status_code, first.content) == (status, first.content)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.headers["content-type"] == "application/json"
    assert scripted.calls == 1


def test_the_same_key_with_another_request_is_refused(app: tuple[Scripted, IdempotencyMiddleware,
                                                                 TestClient]) -> None:
    scripted, _, client = app
    scripted.statuses = [201, 201]
    post(client, authorization="Bearer one")
    for changed in ({"body": b'{"n": 2}'}, {"path": PATH + "x"}, {"query": "?a=1"}):
        answer = client.post(changed.get("path", PATH) + str(changed.get("query", "")),
                             content=changed.get("body", b'{"n": 1}'),
                             headers={"Idempotency-Key": "k1", "authorization": "Bearer one"})
        assert answer.status_code == 422, changed
        assert answer.json()["type"].endswith("/idempotency-key-reused")
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert scripted.calls == 1
    # Without a credential a key is scoped by the path: another route's same key is another request.
    assert client.post(PATH + "x", content=b"{}", headers={"Idempotency-Key": "k1"}).json()["call"] == 2


def test_the_body_reaches_the_route_unchanged(app: tuple[Scripted, IdempotencyMiddleware, TestClient]) -> None:
    scripted, _, client = app
    scripted.statuses = [201, 201]
    post(client, body=b'{"exact": "bytes"}')
    post(client, key=None, body=b"no key")
    assert scripted.bodies == [b'{"exact": "bytes"}', b"no key"]


def test_callers_are_scoped_by_their_credential(app: tuple[Scripted, IdempotencyMiddleware, TestClient]) -> None:
    scripted, _, client = app
    scripted.statuses = [201, 201, 201, 401]
    assert post(client, authorization="Bearer one").json()["call"] == 1
    assert post(client, authorization="Bearer two").json()["call"] == 2  # another token: its own key space
    assert post(client, authorization="Bearer one").json()["call"] == 1  # replayed
    assert post(client, signature="good").json()["call"] == 3  # a verified terminal: its own scope
    assert post(client, signature="good").json()["call"] == 3
    # A signature that does not verify runs without the table: the route answers it (401 here).
    assert post(client, signature="forged").status_code == 401
    assert scripted.calls == 4


@pytest.mark.parametrize("key", ["", "has space", "é", "x" * 256])
def test_a_malformed_key_is_invalid_input(app: tuple[Scripted, IdempotencyMiddleware, TestClient],
                                          key: str) -> None:
    scripted, _, client = app
    answer = client.post(PATH, content=b"{}", headers={"Idempotency-Key": key.encode()})  # type: ignore[dict-item]
    assert answer.status_code == 422 and answer.json()["type"].endswith("/invalid-input")
    assert scripted.calls == 0


def test_keys_of_255_printable_characters_are_accepted(app: tuple[Scripted, IdempotencyMiddleware,
                                                                  TestClient]) -> None:
    scripted, _, client = app
    scripted.statuses = [201]
    assert post(client, key="~!" + "k" * 253).status_code == 201


def test_a_body_over_the_limit_is_413_and_runs_nothing(app: tuple[Scripted, IdempotencyMiddleware,
                                                                 TestClient]) -> None:
    scripted, _, client = app
    scripted.statuses = [201]
    too_big = post(client, body=b"x" * (REQUEST_BYTES_MAX + 1))
    assert too_big.status_code == 413 and too_big.json()["type"].endswith("/body-too-large")
    assert scripted.calls == 0
    assert post(client, body=b"x" * REQUEST_BYTES_MAX).status_code == 201


def test_an_answer_over_the_limit_is_not_kept(app: tuple[Scripted, IdempotencyMiddleware, TestClient]) -> None:
    scripted, _, client = app
    scripted.statuses = [201, 201, 201]
    scripted.answer_bytes = ANSWER_BYTES_MAX + 1
    assert len(post(client).content) == ANSWER_BYTES_MAX + 1
    assert post(client).json()["call"] == 2
    scripted.answer_bytes = ANSWER_BYTES_MAX  # exactly the limit is kept
    assert len(post(client, key="k2").content) == ANSWER_BYTES_MAX
    assert post(client, key="k2").json()["call"] == 3


def test_a_request_that_crashed_does_not_pin_its_key(app: tuple[Scripted, IdempotencyMiddleware,
                                                                TestClient]) -> None:
    scripted, middleware, client = app
    scripted.crash = True
    with pytest.raises(RuntimeError):
        post(client)
    assert middleware.table.find("anonymous:" + PATH, "k1") is None
    scripted.crash = False
    scripted.statuses = [201]
    assert post(client).json()["call"] == 2


def test_a_get_is_never_kept(app: tuple[Scripted, IdempotencyMiddleware, TestClient]) -> None:
    scripted, _, client = app
    scripted.statuses = [200, 200]
    client.get(PATH, headers={"Idempotency-Key": "k1"})
    assert client.get(PATH, headers={"Idempotency-Key": "k1"}).json()["call"] == 2


def test_the_content_type_is_replayed(app: tuple[Scripted, IdempotencyMiddleware, TestClient]) -> None:
    scripted, _, client = app
    scripted.statuses = [201, 201]
    scripted.content_type = b"application/problem+json"
    assert post(client, key="typed").headers["content-type"] == "application/problem+json"
    assert post(client, key="typed").headers["content-type"] == "application/problem+json"
    # Every answer of the API is JSON: one sent without a content type is replayed as JSON.
    scripted.content_type = None
    post(client, key="untyped")
    replayed = post(client, key="untyped")
    assert (replayed.headers["idempotent-replayed"], replayed.headers["content-type"]) == ("true", "application/json")
