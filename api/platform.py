"""The open platform: the app registry, installs, OAuth 2.0 client credentials, the app-token
authenticator with its rate limit, and the webhook dispatcher's wiring.

Tokens are JWTs (joserfc, HS256 with a key derived from the server's key) that name
the install's client id, the store and the granted scopes, and expire within an
hour. A token is only as good as its install: the authenticator looks the client
id up, so an uninstall (or a reinstall, which makes a new client id) revokes every
token at once. Client secrets are stored as argon2id hashes (argon2-cffi).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import argon2
from fastapi import FastAPI, Request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from starlette.concurrency import run_in_threadpool

from api import errors
from api.auth import APP_SCOPES, STORE_READ, Principal
from api.platform_tables import AppRecord, InstallationRecord, PlatformTables
from api.ratelimit import Limiter, RateLimit, limiter
from api.settings import Settings
from api.webhooks import Dispatcher, RedisWakeups, WebhookConfig
from pos_ledger import platform as rules
from pos_ledger.catalog.apps import apps_of
from pos_ledger.catalog.store import settings_of
from pos_ledger.errors import Conflict, InvalidInput, NotFound, PosLedgerError, Unauthorized
from pos_ledger.ledger import Ledger

TOKEN_TTL_S: Final = 3600
TOKEN_ISSUER: Final = "pos-ledger"
#: argon2id at OWASP's minimum: client secrets are 256-bit random, the hash guards a database leak.
_HASHER: Final = argon2.PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
RESOLVE_TIMEOUT_S: Final = 5.0


class AppNotFound(NotFound):
    slug = "app-not-found"


class AppNotInstalled(NotFound):
    slug = "app-not-installed"


class AppAlreadyInstalled(Conflict):
    slug = "app-already-installed"


class WebhookUrlRefused(InvalidInput):
    slug = "webhook-url-refused"


class RateLimited(PosLedgerError):
    slug = "rate-limited"
    status = 429

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail, retry_after_s=retry_after_s)
        #: Sent as HTTP headers by api/errors.py.
        self.headers = {"Retry-After": str(retry_after_s)}


class InvalidToken(Unauthorized):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, error="invalid_token")
        self.headers = {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{detail}"'}


class OAuthError(Exception):
    """RFC 6749 §5.2: answered as `{"error", "error_description"}` by the token route."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class Installed:
    client_id: str
    client_secret: str
    webhook_secret: str
    scopes: list[str]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


def _token_key(server_seed: bytes) -> OctKey:
    return OctKey.import_key(hashlib.sha256(b"pos-ledger/oauth-access-token\x00" + server_seed).digest())


def resolve_addresses(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def check_webhook_url(url: str, allow_local: bool) -> None:
    """An http(s) URL whose host resolves, and only to public addresses unless the store allows local ones."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlRefused(f"webhook_url {url!r} is not an http(s) URL")
    if allow_local:
        return
    try:
        addresses = resolve_addresses(parts.hostname)
    except (OSError, UnicodeError):
        raise WebhookUrlRefused(f"the webhook host {parts.hostname!r} does not resolve") from None
    local = [a for a in addresses if rules.is_local_address(a.split("%")[0])]
    if local or not addresses:
        raise WebhookUrlRefused(
            f"the webhook host {parts.hostname!r} resolves to a loopback, link-local or private address "
            f"({', '.join(local)}); the store's owner can allow local webhooks in its settings")


class Platform:
    def __init__(self, ledger: Ledger, settings: Settings, tables: PlatformTables | None = None,
                 webhooks: WebhookConfig | None = None, rate_limit: RateLimit | None = None) -> None:
        self.ledger = ledger
        self.tables = tables or PlatformTables(settings.database)
        self.token_key = _token_key(settings.server_seed)
        self.limiter: Limiter = limiter(settings.redis_url, rate_limit or RateLimit.from_env())
        self.dispatcher = Dispatcher(ledger, self.tables, webhooks or WebhookConfig.from_env())
        self.wakeups = RedisWakeups(settings.redis_url, self.dispatcher.notify) if settings.redis_url else None
        #: Where the token route says tokens come from; informational.
        self.issuer = TOKEN_ISSUER

    def start(self) -> None:
        self.dispatcher.start()
        if self.wakeups is not None:
            self.wakeups.start()

    def close(self) -> None:
        if self.wakeups is not None:
            self.wakeups.stop()
        self.dispatcher.stop()
        self.tables.close()

    # ---- registry ----

    def register(self, app_id: str, name: str, scopes: list[str], webhook_url: str | None,
                 event_types: list[str]) -> AppRecord:
        unknown = [s for s in scopes if s not in APP_SCOPES]
        if unknown:
            raise InvalidInput(f"unknown scopes {unknown}; an app may have {list(APP_SCOPES)}")
        bad = [t for t in event_types if not rules.valid_event_pattern(t)]
        if bad:
            raise InvalidInput(f"event_types {bad} are not event types (`order.placed`) or families (`order.*`)")
        if webhook_url is not None:
            check_webhook_url(webhook_url, allow_local=True)
        record = AppRecord(app_id, name, sorted(set(scopes), key=APP_SCOPES.index), webhook_url,
                           list(dict.fromkeys(event_types)), time.time())
        self.tables.register_app(record)
        return record

    def app(self, app_id: str) -> AppRecord:
        found = self.tables.app(app_id)
        if found is None:
            raise AppNotFound(f"no app {app_id!r} is registered")
        return found

    # ---- installs ----

    def install(self, store_id: str, app_id: str) -> Installed:
        state = self.ledger.store(store_id)
        app = self.app(app_id)
        if app_id in apps_of(state).installed:
            raise AppAlreadyInstalled(f"app {app_id!r} is already installed in store {store_id!r}")
        if app.webhook_url is not None:
            check_webhook_url(app.webhook_url, settings_of(state).allow_local_webhooks)
        client_id = f"{app_id[:30]}.{secrets.token_hex(12)}"
        client_secret = secrets.token_urlsafe(32)
        webhook_secret = rules.new_webhook_secret()
        events: list[tuple[str, dict[str, Any]]] = [("app.installed", {
            "app_id": app_id, "client_id": client_id, "scopes": app.scopes, "event_types": app.event_types,
            "webhook_url": app.webhook_url})]
        if app.webhook_url is not None:
            events.append(("webhook.subscribed", {"app_id": app_id, "url": app.webhook_url,
                                                  "event_types": app.event_types}))
        try:
            results = self.ledger.append_server_events(store_id, events)
        except PosLedgerError as refused:
            if getattr(refused, "reason", "") == "app_installed":
                raise AppAlreadyInstalled(f"app {app_id!r} is already installed in store {store_id!r}") from None
            raise
        position = results[-1].position or 0
        self.tables.add_installation(InstallationRecord(
            client_id, store_id, app_id, _HASHER.hash(client_secret), webhook_secret, "", 0.0, app.scopes,
            app.event_types, app.webhook_url, position, position, True, app.webhook_url is not None, "", None,
            time.time()))
        self.dispatcher.refresh()
        return Installed(client_id, client_secret, webhook_secret, app.scopes)

    def installation(self, store_id: str, app_id: str) -> InstallationRecord:
        self.ledger.store(store_id)
        found = self.tables.installation(store_id, app_id)
        if found is None or app_id not in apps_of(self.ledger.store(store_id)).installed:
            raise AppNotInstalled(f"app {app_id!r} is not installed in store {store_id!r}")
        return found

    def uninstall(self, store_id: str, app_id: str) -> None:
        self.ledger.store(store_id)
        if app_id not in apps_of(self.ledger.store(store_id)).installed:
            raise AppNotInstalled(f"app {app_id!r} is not installed in store {store_id!r}")
        # The client id the log's app.installed named (the table row may already be inactive if an
        # earlier uninstall revoked it and then failed to write its event).
        client_id = apps_of(self.ledger.store(store_id)).installed[app_id].client_id
        # Revoke first: from here no token of this install works and no delivery starts.
        self.tables.deactivate(client_id)
        self.dispatcher.refresh()
        self.ledger.append_server_events(store_id, [("app.uninstalled", {"app_id": app_id, "client_id": client_id})])

    def rotate_webhook_secret(self, store_id: str, app_id: str, grace_s: float = rules.ROTATION_GRACE_S) -> tuple[str, float]:
        found = self.installation(store_id, app_id)
        secret = rules.new_webhook_secret()
        until = time.time() + grace_s
        self.tables.set_webhook_secret(found.client_id, secret, found.webhook_secret, until)
        self.ledger.append_server_events(store_id, [("app.key_rotated", {
            "app_id": app_id, "key": "webhook_secret",
            "previous_valid_until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))})])
        self.dispatcher.refresh(wait_s=10)
        return secret, until

    def rotate_client_secret(self, store_id: str, app_id: str) -> str:
        found = self.installation(store_id, app_id)
        secret = secrets.token_urlsafe(32)
        self.tables.set_client_secret(found.client_id, _HASHER.hash(secret))
        self.ledger.append_server_events(store_id, [("app.key_rotated", {"app_id": app_id, "key": "client_secret"})])
        return secret

    def replay(self, store_id: str, app_id: str, from_position: int) -> InstallationRecord:
        found = self.installation(store_id, app_id)
        if found.webhook_url is None:
            raise InvalidInput(f"app {app_id!r} has no webhook_url")
        from_position = max(from_position, found.installed_position + 1)
        if not found.webhook_enabled:
            self.ledger.append_server_events(store_id, [("webhook.subscribed", {
                "app_id": app_id, "url": found.webhook_url, "event_types": found.event_types})])
        self.dispatcher.replay(found.client_id, from_position)
        return self.installation(store_id, app_id)

    # ---- OAuth 2.0 client credentials ----

    def issue_token(self, client_id: str, client_secret: str, scope: str | None) -> IssuedToken:
        found = self.tables.installation_by_client(client_id)
        if found is None or not found.active:
            _HASHER.hash(client_secret)  # the same time for an unknown client as for a wrong secret
            raise OAuthError(401, "invalid_client", "unknown client or wrong secret")
        try:
            _HASHER.verify(found.secret_hash, client_secret)
        except argon2.exceptions.VerificationError:
            raise OAuthError(401, "invalid_client", "unknown client or wrong secret") from None
        asked = scope.split() if scope else list(found.scopes)
        refused = [s for s in asked if s not in found.scopes]
        if refused:
            raise OAuthError(400, "invalid_scope", f"scopes {refused} were not granted to this install "
                                                   f"(granted: {' '.join(found.scopes) or 'none'})")
        granted = [s for s in found.scopes if s in asked]
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": found.app_id, "store": found.store_id, "cid": client_id,
                  "scope": " ".join(granted), "iat": now, "exp": now + TOKEN_TTL_S, "jti": secrets.token_hex(12)}
        token = jwt.encode({"alg": "HS256", "typ": "at+jwt"}, claims, self.token_key)
        return IssuedToken(token, TOKEN_TTL_S, " ".join(granted))

    def principal_of(self, token: str) -> Principal:
        """The app behind a bearer token; InvalidToken (401) when it is forged, expired or revoked."""
        try:
            decoded = jwt.decode(token, self.token_key, algorithms=["HS256"])
            jwt.JWTClaimsRegistry(exp={"essential": True}, iss={"essential": True, "value": self.issuer}).validate(
                decoded.claims)
        except (JoseError, ValueError):
            raise InvalidToken("the access token is not valid or has expired") from None
        claims = decoded.claims
        found = self.tables.installation_by_client(str(claims.get("cid", "")))
        if found is None or not found.active or found.store_id != claims.get("store"):
            raise InvalidToken("the access token was revoked (the app was uninstalled)")
        scopes = frozenset(str(claims.get("scope", "")).split()) & frozenset(found.scopes)
        return Principal("app", found.app_id, found.store_id, scopes | {STORE_READ})

    def throttle(self, principal: Principal) -> None:
        wait_s = self.limiter.take(f"{principal.subject}:{principal.store_id}")
        if wait_s > 0:
            retry_after_s = max(1, int(wait_s + 0.999))
            raise RateLimited(f"app {principal.subject!r} is over its rate limit of "
                              f"{self.limiter.limit.rate_per_s:g} requests/s in store {principal.store_id!r}",
                              retry_after_s)


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and len(token) <= 4096


async def app_token(request: Request) -> Principal | None:
    """The authenticator of apps' OAuth2 bearer tokens (after the admin token's)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not _looks_like_jwt(token.strip()):
        return None
    platform: Platform = request.app.state.platform
    principal = await run_in_threadpool(platform.principal_of, token.strip())
    await run_in_threadpool(platform.throttle, principal)
    return principal


def wire(app: FastAPI, ledger: Ledger, settings: Settings) -> Platform:
    """Called by create_app: the platform's state, authenticator, routers and the ledger wake-up."""
    from api.routes import apps as apps_routes
    from api.routes import vouchers as vouchers_routes

    platform = Platform(ledger, settings)
    app.state.platform = platform
    app.state.authenticators.append(app_token)
    ledger.listeners.append(platform.dispatcher.notify)
    app.include_router(apps_routes.router, responses=errors.PROBLEM_RESPONSES)
    app.include_router(apps_routes.oauth_router)
    app.include_router(apps_routes.store_router, responses=errors.PROBLEM_RESPONSES)
    app.include_router(vouchers_routes.router, responses=errors.PROBLEM_RESPONSES)
    return platform


async def start(app: FastAPI) -> None:
    platform: Platform | None = getattr(app.state, "platform", None)
    if platform is not None:
        await asyncio.to_thread(platform.start)


async def stop(app: FastAPI) -> None:
    platform: Platform | None = getattr(app.state, "platform", None)
    if platform is not None:
        await asyncio.to_thread(platform.close)
