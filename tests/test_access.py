"""Every store route needs a credential, and each credential kind reaches only what it may."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from api.auth import (
    APP_SCOPES,
    COUPONS_WRITE,
    OWN,
    ROLE_CAPABILITIES,
    STORE_CAPABILITIES,
    TERMINAL_CAPABILITIES,
    InsufficientScope,
    Principal,
    check,
)
from pos_ledger import httpsig
from pos_ledger.errors import Forbidden
from pos_ledger.simulate import Client, Terminal

READS = ["/v1/stores/s1", "/v1/stores/s1/events", "/v1/stores/s1/chain", "/v1/stores/s1/balances",
         "/v1/stores/s1/menu", "/v1/stores/s1/settings", "/v1/stores/s1/campaigns"]


def signed_get(terminal: Terminal, path: str, base_url: str) -> httpx.Response:
    headers = httpsig.sign_request(terminal.key.seed, terminal.key.terminal_id, "GET", path, b"", int(time.time()))
    return httpx.get(base_url + path, headers=headers)


def signed_send(terminal: Terminal, method: str, path: str, payload: dict[str, Any],
                base_url: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = httpsig.sign_request(terminal.key.seed, terminal.key.terminal_id, method, path, body, int(time.time()))
    return httpx.request(method, base_url + path, content=body,
                         headers={**headers, "content-type": "application/json"})


@pytest.mark.parametrize("path", READS)
def test_reads_need_a_credential(shop: tuple[Client, Terminal], anonymous: httpx.Client, path: str) -> None:
    response = anonymous.get(path)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_wrong_bearer_token_is_401(shop: tuple[Client, Terminal], anonymous: httpx.Client) -> None:
    assert anonymous.get("/v1/stores/s1/chain", headers={"authorization": "Bearer nope"}).status_code == 401


@pytest.mark.parametrize("path", READS)
def test_a_terminal_reads_its_own_store(shop: tuple[Client, Terminal], live_server: Any, path: str) -> None:
    _, terminal = shop
    assert signed_get(terminal, path, live_server.url).status_code == 200


def test_a_terminal_cannot_change_the_menu_or_settings(shop: tuple[Client, Terminal], live_server: Any,
                                                      admin: httpx.Client) -> None:
    _, terminal = shop
    menu = signed_send(terminal, "PUT", "/v1/stores/s1/menu/NEW", {"name": "New", "price_minor": 100},
                       live_server.url)
    assert menu.status_code == 403
    settings = signed_send(terminal, "PATCH", "/v1/stores/s1/settings", {"orders_auto_accept": True},
                           live_server.url)
    assert settings.status_code == 403
    assert [item["sku"] for item in admin.get("/v1/stores/s1/menu").json()] == ["TART", "LATTE"]
    assert admin.get("/v1/stores/s1/settings").json()["orders_auto_accept"] is False


def test_settings_change_only_what_is_named_and_are_events(shop: tuple[Client, Terminal],
                                                           admin: httpx.Client) -> None:
    before = admin.get("/v1/stores/s1/chain").json()["length"]
    assert admin.get("/v1/stores/s1/settings").json() == {
        "orders_auto_accept": False, "orders_accept_timeout_s": 300, "allow_local_webhooks": False}
    changed = admin.patch("/v1/stores/s1/settings", json={"orders_accept_timeout_s": 120})
    assert changed.status_code == 200
    assert changed.json() == {"orders_auto_accept": False, "orders_accept_timeout_s": 120,
                              "allow_local_webhooks": False}
    admin.patch("/v1/stores/s1/settings", json={"allow_local_webhooks": True})
    assert admin.get("/v1/stores/s1/settings").json()["orders_accept_timeout_s"] == 120
    assert admin.get("/v1/stores/s1/chain").json()["length"] == before + 2
    events = admin.get("/v1/stores/s1/events", params={"after": before}).json()
    assert [json.loads(e["body"])["type"] for e in events] == ["store.settings_changed"] * 2


@pytest.mark.parametrize("payload", [{"orders_accept_timeout_s": 0}, {"orders_accept_timeout_s": "300"},
                                     {"orders_auto_accept": "yes"}, {"unknown": True}])
def test_bad_settings_are_422_and_write_nothing(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                payload: dict[str, Any]) -> None:
    before = admin.get("/v1/stores/s1/chain").json()["length"]
    response = admin.patch("/v1/stores/s1/settings", json=payload)
    assert response.status_code == 422
    assert admin.get("/v1/stores/s1/chain").json()["length"] == before


def test_a_credential_of_one_store_is_refused_in_another() -> None:
    owner = Principal("staff", "ann", "s1", ROLE_CAPABILITIES["owner"], role="owner")
    check(owner, OWN, "s1")
    with pytest.raises(Forbidden):
        check(owner, OWN, "s2")
    with pytest.raises(Forbidden):
        check(owner, OWN, None)  # a route of no store (creating stores, registering apps): admin only
    admin = Principal("admin", "admin", None, STORE_CAPABILITIES)
    check(admin, OWN, "s2")


def test_an_app_lacking_a_scope_gets_insufficient_scope() -> None:
    app = Principal("app", "delivery", "s1", frozenset({"coupons:read"}))
    with pytest.raises(InsufficientScope) as refused:
        check(app, COUPONS_WRITE, "s1")
    assert refused.value.status == 403 and refused.value.extensions["error"] == "insufficient_scope"


def test_roles_nest_and_a_viewer_or_auditor_changes_nothing() -> None:
    owner, manager = ROLE_CAPABILITIES["owner"], ROLE_CAPABILITIES["manager"]
    viewer, auditor = ROLE_CAPABILITIES["viewer"], ROLE_CAPABILITIES["auditor"]
    assert viewer < manager < owner == STORE_CAPABILITIES
    assert OWN not in manager
    assert not any(c.endswith((":write", ":manage", ":own")) for c in viewer | auditor)
    assert auditor == {"store:read", "events:read", "audit:read"}
    assert set(APP_SCOPES) <= STORE_CAPABILITIES
    assert OWN not in TERMINAL_CAPABILITIES and "store:manage" not in TERMINAL_CAPABILITIES
