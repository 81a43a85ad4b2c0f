"""Apps: registry, installs, OAuth 2.0 client credentials, app tokens on every store route, isolation,
revocation, rate limits, the feed."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from joserfc import jwt

from api.auth import APP_SCOPES, STORE_READ, Allow
from api.platform import Platform
from api.ratelimit import LocalLimiter, RateLimit, RedisLimiter
from pos_ledger.simulate import Client, Terminal
from tests.conftest import LiveServer
from tests.platform_support import bearer, install, register_app, token

PROBLEM = "application/problem+json"


def allow_local(admin: httpx.Client, store_id: str) -> None:
    assert admin.patch(f"/v1/stores/{store_id}/settings", json={"allow_local_webhooks": True}).status_code == 200


def platform(server: LiveServer) -> Platform:
    found: Platform = server.app.state.platform
    return found


def event_types(admin: httpx.Client, store_id: str) -> list[str]:
    return [json.loads(e["body"])["type"] for e in admin.get(f"/v1/stores/{store_id}/events?limit=1000").json()]


# ---- registry ----

def test_only_the_admin_registers_apps(shop: tuple[Client, Terminal], admin: httpx.Client,
                                       anonymous: httpx.Client, live_server: LiveServer) -> None:
    body = {"app_id": "meituan", "name": "Meituan", "scopes": ["coupons:write"], "event_types": []}
    assert anonymous.post("/v1/apps", json=body).status_code == 401
    register_app(admin, "helper", ["events:read"])
    helper = install(admin, "s1", "helper")
    refused = anonymous.post("/v1/apps", json=body, headers=bearer(token(live_server.url, helper)))
    assert refused.status_code == 403
    created = admin.post("/v1/apps", json=body)
    assert created.status_code == 201
    assert created.json()["scopes"] == ["coupons:write"]
    assert admin.post("/v1/apps", json=body).status_code == 409
    bad = admin.post("/v1/apps", json={**body, "app_id": "x", "scopes": ["store:own"]})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith(PROBLEM)
    assert admin.post("/v1/apps", json={**body, "app_id": "y", "webhook_url": "ftp://x"}).status_code == 422
    assert admin.post("/v1/apps", content=b"{" + b" " * 70_000 + b"}",
                      headers={"content-type": "application/json"}).status_code == 413


# ---- installs ----

def test_install_answers_the_secrets_once_and_is_in_the_log(shop: tuple[Client, Terminal],
                                                           admin: httpx.Client) -> None:
    register_app(admin, "erp", ["orders:read", "events:read"], event_types=["order.*"])
    response = admin.post("/v1/stores/s1/apps/erp/install", json={})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"client_id", "client_secret", "webhook_secret", "scopes"}
    assert body["webhook_secret"].startswith("whsec_")
    assert body["scopes"] == ["orders:read", "events:read"]
    listed = admin.get("/v1/stores/s1/apps").json()
    assert [a["app_id"] for a in listed] == ["erp"]
    assert "client_secret" not in json.dumps(listed) and body["client_secret"] not in json.dumps(listed)
    assert body["client_secret"] not in json.dumps(admin.get("/v1/stores/s1/events?limit=1000").json())
    assert admin.post("/v1/stores/s1/apps/erp/install", json={}).status_code == 409
    assert admin.post("/v1/stores/s1/apps/nope/install", json={}).status_code == 404
    assert event_types(admin, "s1")[-1] == "app.installed"


def test_a_local_webhook_needs_the_stores_setting(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    register_app(admin, "local", ["events:read"], webhook_url="http://127.0.0.1:9/hook")
    register_app(admin, "private", ["events:read"], webhook_url="http://10.1.2.3/hook")
    register_app(admin, "linklocal", ["events:read"], webhook_url="http://169.254.169.254/latest")
    for app_id in ("local", "private", "linklocal"):
        refused = admin.post(f"/v1/stores/s1/apps/{app_id}/install", json={})
        assert refused.status_code == 422, refused.text
        assert refused.json()["type"].endswith("/webhook-url-refused")
    assert "app.installed" not in event_types(admin, "s1")
    allow_local(admin, "s1")
    install(admin, "s1", "local")
    assert event_types(admin, "s1")[-2:] == ["app.installed", "webhook.subscribed"]


def test_only_the_owner_installs(shop: tuple[Client, Terminal], admin: httpx.Client,
                                 live_server: LiveServer) -> None:
    register_app(admin, "erp", ["orders:read", "events:read"])
    register_app(admin, "other", ["events:read"])
    erp = install(admin, "s1", "erp")
    response = httpx.post(f"{live_server.url}/v1/stores/s1/apps/other/install", json={},
                          headers=bearer(token(live_server.url, erp)))
    assert response.status_code == 403


# ---- OAuth 2.0 client credentials ----

def test_client_credentials_by_basic_or_form_narrowed_to_the_installed_scopes(
        shop: tuple[Client, Terminal], admin: httpx.Client, live_server: LiveServer) -> None:
    register_app(admin, "erp", ["orders:read", "reports:read", "events:read"])
    app = install(admin, "s1", "erp")
    url = live_server.url + "/oauth/token"
    basic = httpx.post(url, data={"grant_type": "client_credentials", "scope": "reports:read"},
                       auth=(app.client_id, app.client_secret))
    assert basic.status_code == 200
    answer = basic.json()
    assert answer["token_type"] == "Bearer" and answer["scope"] == "reports:read"
    assert isinstance(answer["expires_in"], int) and 0 < answer["expires_in"] <= 3600
    assert basic.headers["cache-control"] == "no-store"
    form = httpx.post(url, data={"grant_type": "client_credentials", "client_id": app.client_id,
                                 "client_secret": app.client_secret})
    assert form.status_code == 200 and form.json()["scope"] == "orders:read reports:read events:read"
    narrowed = bearer(basic.json()["access_token"])
    assert httpx.get(live_server.url + "/v1/stores/s1/balances", headers=narrowed).status_code == 200
    refused = httpx.get(live_server.url + "/v1/stores/s1/events", headers=narrowed)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/insufficient_scope")


def test_token_errors_follow_rfc_6749(shop: tuple[Client, Terminal], admin: httpx.Client,
                                      live_server: LiveServer) -> None:
    register_app(admin, "erp", ["orders:read"])
    app = install(admin, "s1", "erp")
    url = live_server.url + "/oauth/token"
    not_granted = httpx.post(url, data={"grant_type": "client_credentials", "scope": "payments:write"},
                             auth=(app.client_id, app.client_secret))
    assert not_granted.status_code == 400 and not_granted.json()["error"] == "invalid_scope"
    wrong = httpx.post(url, data={"grant_type": "client_credentials"}, auth=(app.client_id, "wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert "www-authenticate" in wrong.headers
    unknown = httpx.post(url, data={"grant_type": "client_credentials"}, auth=("nobody", "x"))
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    grant = httpx.post(url, data={"grant_type": "password"}, auth=(app.client_id, app.client_secret))
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    as_json = httpx.post(url, json={"grant_type": "client_credentials"}, auth=(app.client_id, app.client_secret))
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"


def test_forged_expired_and_revoked_tokens_are_401(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                   live_server: LiveServer) -> None:
    register_app(admin, "erp", ["events:read"])
    app = install(admin, "s1", "erp")
    good = token(live_server.url, app)
    chain = live_server.url + "/v1/stores/s1/chain"
    assert httpx.get(chain, headers=bearer(good)).status_code == 200
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged_payload = base64.urlsafe_b64encode(json.dumps({**claims, "scope": "events:read reports:read"}).encode())
    forged = f"{header}.{forged_payload.decode().rstrip('=')}.{signature}"
    assert httpx.get(chain, headers=bearer(forged)).status_code == 401
    now = int(time.time())
    expired = jwt.encode({"alg": "HS256"}, {**claims, "iat": now - 7200, "exp": now - 3600},
                         platform(live_server).token_key)
    response = httpx.get(chain, headers=bearer(expired))
    assert response.status_code == 401 and response.headers["content-type"].startswith(PROBLEM)
    uninstalled = admin.delete("/v1/stores/s1/apps/erp")
    assert uninstalled.status_code == 204
    assert httpx.get(chain, headers=bearer(good)).status_code == 401
    again = httpx.post(live_server.url + "/oauth/token", data={"grant_type": "client_credentials"},
                       auth=(app.client_id, app.client_secret))
    assert again.status_code == 401
    assert event_types(admin, "s1")[-1] == "app.uninstalled"
    assert admin.delete("/v1/stores/s1/apps/erp").status_code == 404
    reinstalled = install(admin, "s1", "erp")
    assert reinstalled.client_id != app.client_id
    assert httpx.get(chain, headers=bearer(good)).status_code == 401
    assert httpx.get(chain, headers=bearer(token(live_server.url, reinstalled))).status_code == 200


def test_uninstall_by_post_works_too(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    register_app(admin, "erp", ["events:read"])
    install(admin, "s1", "erp")
    assert admin.post("/v1/stores/s1/apps/erp/uninstall", json={}).status_code == 204
    assert admin.get("/v1/stores/s1/apps").json() == []


# ---- every store route, every scope ----

def api_routes(routes: Any) -> list[APIRoute]:
    """The app's routes, through included routers (FastAPI keeps them nested)."""
    flat: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            flat.append(route)
        elif hasattr(route, "original_router"):
            flat.extend(api_routes(route.original_router.routes))
    return flat


def store_routes(server: LiveServer) -> list[tuple[str, str, str]]:
    """(method, path template, capability) of every store route guarded by a capability."""
    found = []
    for route in api_routes(server.app.routes):
        if not route.path.startswith("/v1/stores/{store_id}"):
            continue
        if not isinstance(route, APIRoute) or not route.path.startswith("/v1/stores/{store_id}"):
            continue
        capabilities = [d.call.capability for d in route.dependant.dependencies if isinstance(d.call, Allow)]
        for method in sorted(route.methods):
            for capability in capabilities:
                found.append((method, route.path, capability))
    return found


def call(server: LiveServer, method: str, template: str, store_id: str, access_token: str) -> httpx.Response:
    path = template.replace("{store_id}", store_id)
    while "{" in path:
        start = path.index("{")
        path = path[:start] + "x1" + path[path.index("}", start) + 1:]
    body = None if method in ("GET", "DELETE") else b"{}"
    # Streamed, so a live stream (SSE) answers with its status and headers, not after its end.
    with httpx.stream(method, server.url + path, content=body,
                      headers={**bearer(access_token), "content-type": "application/json"}, timeout=30) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
        return response


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_each_scope_against_each_route(shop: tuple[Client, Terminal], admin: httpx.Client,
                                       live_server: LiveServer) -> None:
    platform(live_server).limiter = LocalLimiter(RateLimit(100_000, 100_000))
    tokens = {}
    for scope in APP_SCOPES:
        app_id = "app-" + scope.replace(":", "-")
        register_app(admin, app_id, [scope])
        tokens[scope] = token(live_server.url, install(admin, "s1", app_id))
    routes = store_routes(live_server)
    assert len(routes) > 30
    for method, template, capability in routes:
        for scope, access_token in tokens.items():
            response = call(live_server, method, template, "s1", access_token)
            if capability in (scope, STORE_READ):
                assert response.status_code not in (401, 403), (method, template, scope, response.text)
            else:
                assert response.status_code == 403, (method, template, scope, response.text)
                assert response.json()["type"].endswith("/insufficient_scope"), response.text


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_an_app_of_store_a_reaches_nothing_of_store_b(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                      live_server: LiveServer) -> None:
    platform(live_server).limiter = LocalLimiter(RateLimit(100_000, 100_000))
    client, _ = shop
    client.open_store("s2", "Other Shop", "CNY", "Asia/Shanghai")
    register_app(admin, "all", list(APP_SCOPES))
    access_token = token(live_server.url, install(admin, "s1", "all"))
    for method, template, _capability in store_routes(live_server):
        response = call(live_server, method, template, "s2", access_token)
        assert response.status_code in (403, 404), (method, template, response.text)
    assert httpx.get(live_server.url + "/v1/stores/s1/chain", headers=bearer(access_token)).status_code == 200


# ---- rate limits ----

def test_an_app_over_its_rate_limit_gets_429_with_retry_after(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                              live_server: LiveServer) -> None:
    platform(live_server).limiter = LocalLimiter(RateLimit(rate_per_s=0.5, burst=3))
    register_app(admin, "erp", ["events:read"])
    headers = bearer(token(live_server.url, install(admin, "s1", "erp")))
    statuses = [httpx.get(live_server.url + "/v1/stores/s1/chain", headers=headers) for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    limited = statuses[-1]
    assert limited.headers["content-type"].startswith(PROBLEM)
    assert 1 <= int(limited.headers["retry-after"]) <= 2
    # The admin is not an app: no bucket.
    assert admin.get("/v1/stores/s1/chain").status_code == 200


def test_redis_token_bucket_is_shared_and_refills() -> None:
    prefix = f"test-{secrets.token_hex(6)}:"
    first = RedisLimiter("redis://127.0.0.1:6379/0", RateLimit(rate_per_s=10, burst=2), prefix)
    second = RedisLimiter("redis://127.0.0.1:6379/0", RateLimit(rate_per_s=10, burst=2), prefix)
    try:
        assert first.take("app:s1") == 0
        assert second.take("app:s1") == 0
        wait_s = first.take("app:s1")
        assert 0 < wait_s <= 0.1
        assert second.take("app:s2") == 0
        time.sleep(wait_s + 0.05)
        assert second.take("app:s1") == 0
    finally:
        first.client.delete(*first.client.keys(prefix + "*"))


def test_local_token_bucket_refills() -> None:
    bucket = LocalLimiter(RateLimit(rate_per_s=20, burst=1))
    assert bucket.take("a") == 0
    assert bucket.take("a") > 0
    time.sleep(0.06)
    assert bucket.take("a") == 0


# ---- the feed ----

def _member(admin: httpx.Client, member_id: str) -> None:
    response = admin.post("/v1/stores/s1/members", json={"member_id": member_id, "name": "Li Lei",
                                                        "phone": "13800000000"})
    assert response.status_code == 201, response.text


def test_the_feed_shows_the_types_the_scopes_cover(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                   live_server: LiveServer) -> None:
    register_app(admin, "coupons", ["coupons:read", "coupons:write", "events:read"])
    register_app(admin, "crm", ["members:read", "events:read"])
    register_app(admin, "blind", ["orders:read"])
    coupons_app, crm = install(admin, "s1", "coupons"), install(admin, "s1", "crm")
    _member(admin, "m1")
    redeemed = admin.post("/v1/stores/s1/vouchers/redeem", json={
        "provider": "meituan", "code": "C1", "order_ref": "o1", "face_value_minor": 1000, "paid_minor": 800,
        "request_id": "r1"})
    assert redeemed.status_code == 201
    feed = httpx.get(live_server.url + "/v1/stores/s1/feed", headers=bearer(token(live_server.url, coupons_app)))
    assert feed.status_code == 200
    events = feed.json()["events"]
    assert [e["type"] for e in events] == ["voucher.redeemed"]
    assert set(events[0]) >= {"position", "terminal_id", "body", "sig", "hash", "type"}
    assert feed.json()["next_after"] == admin.get("/v1/stores/s1/chain").json()["length"]
    members = httpx.get(live_server.url + "/v1/stores/s1/feed", headers=bearer(token(live_server.url, crm))).json()
    assert [e["type"] for e in members["events"]] == ["member.registered"]
    # Names and phones live in the erasable personal-data table, not in the log the feed reads.
    registered = json.loads(members["events"][0]["body"])["data"]
    assert registered["member_id"] == "m1" and "name" not in registered and "13800000000" not in str(registered)
    later = httpx.get(live_server.url + f"/v1/stores/s1/feed?after={members['next_after']}",
                      headers=bearer(token(live_server.url, crm))).json()
    assert later["events"] == [] and later["next_after"] == members["next_after"]
    blind = httpx.get(live_server.url + "/v1/stores/s1/feed",
                      headers=bearer(token(live_server.url, install(admin, "s1", "blind"))))
    assert blind.status_code == 403


def test_the_feed_leaves_personal_data_out_without_members_read() -> None:
    from api.auth import Principal
    from api.routes.apps import _feed_item
    from pos_ledger.ledger import StoredEntry

    body = json.dumps({"id": "0", "seq": 1, "type": "member.registered", "at": "2026-01-01T00:00:00+00:00",
                       "data": {"member_id": "m1", "name": "Li Lei", "phone": "138", "birthday": "01-01"}})
    entry = StoredEntry(5, "server", body, bytes(64), bytes(32), "[]")
    admin_like = Principal("staff", "auditor", "s1", frozenset({"events:read"}), "auditor")
    item = _feed_item(admin_like, entry)
    assert item is not None and item.redacted
    assert json.loads(item.body)["data"] == {"member_id": "m1"}
    reader = Principal("app", "crm", "s1", frozenset({"events:read", "members:read"}))
    full = _feed_item(reader, entry)
    assert full is not None and not full.redacted and full.body == body
    sale = Principal("app", "pos", "s1", frozenset({"events:read", "orders:read"}))
    assert _feed_item(sale, entry) is None




def test_platform_routes_list_their_problems_in_openapi(live_server: LiveServer, anonymous: httpx.Client) -> None:
    spec = anonymous.get("/openapi.json").json()
    platform_paths = [p for p in spec["paths"] if p.startswith("/v1/apps") or "/apps" in p or "/feed" in p
                      or "/vouchers" in p or "/deliveries" in p]
    assert len(platform_paths) >= 12
    for path in platform_paths:
        for method, operation in spec["paths"][path].items():
            responses = operation["responses"]
            for status in ("401", "403", "413", "422", "429"):
                assert "application/problem+json" in responses[status]["content"], (method, path, status)
    token_responses = spec["paths"]["/oauth/token"]["post"]["responses"]
    assert {"200", "400", "401"} <= set(token_responses)
    assert "application/x-www-form-urlencoded" in spec["paths"]["/oauth/token"]["post"]["requestBody"]["content"]


def test_a_get_with_a_huge_body_is_413(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    response = admin.request("GET", "/v1/stores/s1/feed", content=b"x" * 70_000)
    assert response.status_code == 413 and response.headers["content-type"].startswith(PROBLEM)
