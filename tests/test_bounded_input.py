"""Bounded input: body limits before authentication, JSON depth, strict integers, one identifier rule."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import socket
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from api.limits import BODY_BYTES_MAX
from pos_ledger.simulate import Client, Terminal
from pos_ledger.values import JSON_DEPTH_MAX

PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    return body


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_gigabyte_content_length_is_413_before_the_body_or_a_credential_is_read(live_server: Any) -> None:
    with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
        sock.sendall(b"POST /v1/stores/s1/members HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1073741824\r\n\r\n{\"name\": \"")
        sock.settimeout(5)
        answer = sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer
    assert json.loads(body)["type"].endswith("body-too-large")


def test_a_streamed_body_is_cut_off_as_it_passes_the_limit(anonymous: httpx.Client) -> None:
    sent = 0

    def chunks() -> Any:
        nonlocal sent
        for _ in range(64):  # 4 MiB offered, in 64 KiB chunks, no Content-Length
            sent += 1
            yield b" " * 65536

    try:
        response = anonymous.post("/v1/stores/s1/members", content=chunks(),
                                  headers={"content-type": "application/json"})
    except httpx.HTTPError:
        return  # the server closed the connection mid-upload: also refused without reading it all
    problem(response, 413)


def test_over_the_limit_is_413_on_every_route_even_without_a_credential(anonymous: httpx.Client,
                                                                        admin: httpx.Client) -> None:
    big = b"{" + b" " * BODY_BYTES_MAX + b"}"
    problem(anonymous.post("/v1/stores/s1/members", content=big, headers={"content-type": "application/json"}), 413)
    problem(admin.patch("/v1/stores/s1/settings", content=big, headers={"content-type": "application/json"}), 413)
    problem(anonymous.post("/v1/stores/s1/terminals/t1/events", content=big), 413)
    # Just under the limit is read (and then refused for what it is).
    assert admin.post("/v1/stores/s1/members", content=b"{" + b" " * (BODY_BYTES_MAX - 2) + b"}",
                      headers={"content-type": "application/json"}).status_code != 413


def test_1000_nested_arrays_are_422_not_500(shop: tuple[Client, Terminal], anonymous: httpx.Client,
                                           admin: httpx.Client) -> None:
    deep = nested(1_000)
    problem(anonymous.post("/v1/stores/s1/terminals/t1/events", content=deep), 422)
    problem(anonymous.post("/v1/stores/s1/terminals/t1/events",
                           content='{"events": [], "extra": ' + deep + "}"), 422)
    problem(anonymous.post("/v1/stores/s1/terminals/t1/events",
                           content='{"events": [{"body": "x", "sig": "y", "z": ' + deep + "}]}"), 422)
    problem(admin.post("/v1/stores/s1/members", content=deep, headers={"content-type": "application/json"}), 422)


def test_json_may_nest_32_deep_and_no_deeper(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    at_limit = '{"name": "Deep", "ignored": ' + nested(JSON_DEPTH_MAX - 1) + "}"
    assert admin.post("/v1/stores/s1/members", content=at_limit,
                      headers={"content-type": "application/json"}).status_code == 201
    past = '{"name": "Deeper", "ignored": ' + nested(JSON_DEPTH_MAX) + "}"
    refused = problem(admin.post("/v1/stores/s1/members", content=past,
                                 headers={"content-type": "application/json"}), 422)
    assert refused["type"].endswith("invalid-input")
    brackets_in_strings = {"name": "[" * 100 + "{" * 100}  # text, not nesting
    assert admin.post("/v1/stores/s1/members", json=brackets_in_strings).status_code == 201


@pytest.mark.parametrize("amount", [True, "250", 250.0, 2.5e2, None, [250]])
def test_amounts_are_json_integers_only(shop: tuple[Client, Terminal], admin: httpx.Client, amount: Any) -> None:
    length = admin.get("/v1/stores/s1/chain").json()["length"]
    problem(admin.post("/v1/stores/s1/payments", json={"amount_minor": amount, "currency": "CNY", "order_ref": "o-1",
                                                       "method": "card"}), 422)
    problem(admin.post("/v1/stores/s1/shifts", json={"float_minor": amount, "terminal_id": "t1"}), 422)
    problem(admin.put("/v1/stores/s1/menu/TEA", json={"name": "Tea", "price_minor": amount, "category": "tea"}), 422)
    assert admin.get("/v1/stores/s1/chain").json()["length"] == length
    assert admin.post("/v1/stores/s1/payments", json={"amount_minor": 250, "currency": "CNY", "order_ref": "o-1",
                                                      "method": "card"}).status_code == 201


@pytest.mark.parametrize("store_id", [".", "..", "...", "a/b", "", "x" * 65, "tab\there"])
def test_identifiers_follow_one_rule(admin: httpx.Client, store_id: str) -> None:
    problem(admin.post("/v1/stores", json={"store_id": store_id, "name": "Shop", "currency": "CNY",
                                           "timezone": "Asia/Shanghai"}), 422)


@pytest.mark.parametrize("store_id", [".a", "a.", "a..b", "s-1:2_3", "x" * 64])
def test_identifiers_with_dots_and_letters_are_fine(admin: httpx.Client, store_id: str) -> None:
    assert admin.post("/v1/stores", json={"store_id": store_id, "name": "Shop", "currency": "CNY",
                                          "timezone": "Asia/Shanghai"}).status_code == 201


def test_dot_ids_are_refused_in_paths_and_bodies(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    problem(admin.post("/v1/stores/s1/members", json={"member_id": "..", "name": "Dot"}), 422)
    problem(admin.post("/v1/stores/s1/terminals", json={"terminal_id": ".", "public_key": "AAAA"}), 422)
    problem(admin.get("/v1/stores/s1/members/%2E%2E"), 422)


def _request_models() -> list[type[BaseModel]]:
    """Every pydantic model some route of the `api` package takes as its body (answers may use plain ints)."""
    from fastapi.routing import APIRoute, APIRouter

    import api

    models: list[type[BaseModel]] = []
    for module_info in pkgutil.walk_packages(api.__path__, "api."):
        module = importlib.import_module(module_info.name)
        for router in [v for v in vars(module).values() if isinstance(v, APIRouter)]:
            for route in router.routes:
                field = route.body_field if isinstance(route, APIRoute) else None
                annotation = getattr(getattr(field, "field_info", None), "annotation", None)
                for candidate in (annotation, *getattr(annotation, "__args__", ())):
                    if inspect.isclass(candidate) and issubclass(candidate, BaseModel) and candidate not in models:
                        models.append(candidate)
    return models


def test_every_integer_of_every_request_model_is_strict() -> None:
    """A new input model with a plain `int` would take true, "250" and 250.0 again."""
    models = _request_models()
    assert len(models) > 10
    lax = []
    for model in models:
        for name in model.model_fields:
            schema = model.model_json_schema()["properties"][name]
            if "integer" not in json.dumps(schema):
                continue
            try:
                model.__pydantic_validator__.validate_assignment(model.model_construct(), name, "250")
            except Exception:
                continue
            lax.append(f"{model.__name__}.{name}")
    assert lax == []


def test_a_signed_event_nested_too_deep_is_rejected_alone(shop: tuple[Client, Terminal],
                                                          anonymous: httpx.Client) -> None:
    from datetime import UTC, datetime

    _, terminal = shop
    sale = {"order_id": "5d4e4c4a-35a8-4a47-9c0a-7d6f0c1b2a3e", "currency": "CNY",
            "lines": [{"sku": "TEA", "name": "Tea", "qty": 1, "unit_price_minor": 900}], "discount_minor": 0,
            "total_minor": 900, "tenders": [{"method": "cash", "amount_minor": 900}]}
    deep = terminal.sign("sale.completed", {**sale, "note": json.loads(nested(40))}, datetime.now(UTC))
    deeper = terminal.sign("sale.completed", {**sale, "note": json.loads(nested(900))}, datetime.now(UTC))
    fine = terminal.sign("sale.completed", {**sale, "order_id": "6d4e4c4a-35a8-4a47-9c0a-7d6f0c1b2a3e"},
                         datetime.now(UTC))
    answer = anonymous.post("/v1/stores/s1/terminals/t1/events", json={"events": [deep, deeper, fine]})
    assert answer.status_code == 200, answer.text
    assert [(r["status"], r["reason"]) for r in answer.json()["results"]] == [
        ("rejected", "malformed_body"), ("rejected", "malformed_body"), ("accepted", None)]
