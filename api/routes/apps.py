"""The open platform's routes: app registry (admin), installs and webhooks (the store's owner),
OAuth 2.0 client credentials (`POST /oauth/token`), and the apps' log cursor (`/feed`)."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qs, unquote

import msgspec
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt
from starlette.concurrency import run_in_threadpool

from api.auth import APP_SCOPES, EVENTS_READ, MEMBERS_READ, OWN, AdminOnlyDep, Principal, allow
from api.deps import LedgerDep
from api.limits import BodyLimit, body_limit, problems
from api.platform import OAuthError, Platform
from api.platform_tables import DELIVERIES_READ_MAX, AppRecord, DeliveryRecord, InstallationRecord
from api.routes.stores import IdentifierPattern, StoreId
from pos_ledger import platform as rules
from pos_ledger.catalog.apps import EVENT_TYPES_MAX, SCOPES_MAX
from pos_ledger.ledger import READ_EVENTS_MAX

#: Every route refuses a body over the limit (the GETs too); the token route has its own, smaller.
#: What every platform route may answer: no or a bad credential, not allowed, body too large,
#: parameters out of the schema, over the rate limit.
AUTH_PROBLEMS: Final = (401, 403, 413, 422, 429)
router = APIRouter(prefix="/v1/apps", tags=["platform"], dependencies=[body_limit()])
store_router = APIRouter(prefix="/v1/stores", tags=["platform"], dependencies=[body_limit()])
oauth_router = APIRouter(tags=["platform"])

AppId = Annotated[str, Path(pattern=IdentifierPattern)]
TOKEN_BODY_BYTES_MAX: Final = 4096
_BODY: Final = msgspec.json.Decoder(dict[str, Any])
_JSON: Final = msgspec.json.Encoder()


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _iso(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


# ---- the registry ----

class AppIn(BaseModel):
    model_config = {"extra": "forbid"}
    app_id: str = Field(pattern=IdentifierPattern)
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(max_length=SCOPES_MAX)
    webhook_url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default=[], max_length=EVENT_TYPES_MAX)


class AppOut(BaseModel):
    app_id: str
    name: str
    scopes: list[str]
    webhook_url: str | None
    event_types: list[str]
    registered_at: datetime


def app_out(app: AppRecord) -> AppOut:
    return AppOut(app_id=app.app_id, name=app.name, scopes=app.scopes, webhook_url=app.webhook_url,
                  event_types=app.event_types, registered_at=datetime.fromtimestamp(app.registered_at, UTC))


@router.post("", status_code=201, response_model=AppOut, responses=problems(*AUTH_PROBLEMS, 409, 413, 422))
def register_app(_: AdminOnlyDep, __: Annotated[None, body_limit()], payload: AppIn, request: Request) -> AppOut:
    """Register an app once for the platform (`app.registered` is this registry's row); stores install it."""
    return app_out(platform_of(request).register(payload.app_id, payload.name, payload.scopes,
                                                 payload.webhook_url, payload.event_types))


@router.get("", response_model=list[AppOut], responses=problems(*AUTH_PROBLEMS))
def list_apps(_: AdminOnlyDep, request: Request) -> list[AppOut]:
    return [app_out(a) for a in platform_of(request).tables.apps()]


@router.get("/{app_id}", response_model=AppOut, responses=problems(*AUTH_PROBLEMS, 404))
def get_app(app_id: AppId, _: AdminOnlyDep, request: Request) -> AppOut:
    return app_out(platform_of(request).app(app_id))


# ---- installs ----

class InstallIn(BaseModel):
    model_config = {"extra": "forbid"}


class InstalledOut(BaseModel):
    client_id: str
    #: Shown only in this answer.
    client_secret: str
    #: `whsec_...`; shown only in this answer.
    webhook_secret: str
    scopes: list[str]


class InstallationOut(BaseModel):
    app_id: str
    name: str
    client_id: str
    scopes: list[str]
    event_types: list[str]
    webhook_url: str | None
    webhook_enabled: bool
    #: Why deliveries stopped (410, failing too long), for the owner; empty while they run.
    webhook_disabled_reason: str
    installed_position: int
    #: The last log position the webhook dealt with (delivered, or not for this app).
    delivered_through: int
    failing_since: datetime | None
    installed_at: datetime


def installation_out(platform: Platform, record: InstallationRecord) -> InstallationOut:
    app = platform.tables.app(record.app_id)
    return InstallationOut(
        app_id=record.app_id, name=app.name if app else record.app_id, client_id=record.client_id,
        scopes=record.scopes, event_types=record.event_types, webhook_url=record.webhook_url,
        webhook_enabled=record.webhook_enabled and record.webhook_url is not None,
        webhook_disabled_reason=record.disabled_reason, installed_position=record.installed_position,
        delivered_through=record.cursor, failing_since=_iso(record.failing_since),
        installed_at=datetime.fromtimestamp(record.created_at, UTC))


@store_router.post("/{store_id}/apps/{app_id}/install", status_code=201, response_model=InstalledOut,
                   responses=problems(*AUTH_PROBLEMS, 404, 409, 413, 422))
def install_app(store_id: StoreId, app_id: AppId, _: Annotated[Principal, allow(OWN)],
                __: Annotated[None, body_limit()], payload: InstallIn, request: Request) -> InstalledOut:
    """The store's owner installs an app: its client credentials and webhook secret, shown only here."""
    installed = platform_of(request).install(store_id, app_id)
    return InstalledOut(client_id=installed.client_id, client_secret=installed.client_secret,
                        webhook_secret=installed.webhook_secret, scopes=installed.scopes)


@store_router.get("/{store_id}/apps", response_model=list[InstallationOut], responses=problems(*AUTH_PROBLEMS, 404))
def list_installed(store_id: StoreId, _: Annotated[Principal, allow(OWN)], request: Request) -> list[InstallationOut]:
    platform = platform_of(request)
    platform.ledger.store(store_id)
    return [installation_out(platform, r) for r in platform.tables.installations(store_id)]


@store_router.get("/{store_id}/apps/{app_id}", response_model=InstallationOut,
                  responses=problems(*AUTH_PROBLEMS, 404))
def get_installed(store_id: StoreId, app_id: AppId, _: Annotated[Principal, allow(OWN)],
                  request: Request) -> InstallationOut:
    platform = platform_of(request)
    return installation_out(platform, platform.installation(store_id, app_id))


def _uninstall(store_id: str, app_id: str, request: Request) -> Response:
    platform_of(request).uninstall(store_id, app_id)
    return Response(status_code=204)


@store_router.delete("/{store_id}/apps/{app_id}", status_code=204, responses=problems(*AUTH_PROBLEMS, 404, 413))
def uninstall_app(store_id: StoreId, app_id: AppId, _: Annotated[Principal, allow(OWN)],
                  __: Annotated[None, body_limit()], request: Request) -> Response:
    """Revoke everything: its tokens stop working, its deliveries stop (`app.uninstalled`)."""
    return _uninstall(store_id, app_id, request)


@store_router.post("/{store_id}/apps/{app_id}/uninstall", status_code=204,
                   responses=problems(*AUTH_PROBLEMS, 404, 413))
def uninstall_app_post(store_id: StoreId, app_id: AppId, _: Annotated[Principal, allow(OWN)],
                       __: Annotated[None, body_limit()], request: Request) -> Response:
    """The same as DELETE, for clients that only POST."""
    return _uninstall(store_id, app_id, request)


class RotateIn(BaseModel):
    model_config = {"extra": "forbid"}
    key: Literal["webhook_secret", "client_secret"] = "webhook_secret"


class RotatedOut(BaseModel):
    key: str
    #: The new secret, shown only here.
    secret: str
    #: Until when the previous webhook secret still signs (beside the new one); null for a client secret.
    previous_valid_until: datetime | None


@store_router.post("/{store_id}/apps/{app_id}/rotate", response_model=RotatedOut,
                   responses=problems(*AUTH_PROBLEMS, 404, 413, 422))
def rotate_secret(store_id: StoreId, app_id: AppId, _: Annotated[Principal, allow(OWN)],
                  __: Annotated[None, body_limit()], payload: RotateIn, request: Request) -> RotatedOut:
    """A new webhook secret (the old one keeps signing for 24 h: both signatures are sent) or client
    secret (the old one stops at once; tokens already issued run out within the hour)."""
    platform = platform_of(request)
    if payload.key == "client_secret":
        return RotatedOut(key=payload.key, secret=platform.rotate_client_secret(store_id, app_id),
                          previous_valid_until=None)
    secret, until = platform.rotate_webhook_secret(store_id, app_id)
    return RotatedOut(key=payload.key, secret=secret, previous_valid_until=_iso(until))


# ---- deliveries ----

class DeliveryOut(BaseModel):
    app_id: str
    client_id: str
    position: int
    event_type: str
    webhook_id: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str
    first_attempt_at: datetime
    last_attempt_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveriesOut(BaseModel):
    deliveries: list[DeliveryOut]
    next_after: int


def delivery_out(d: DeliveryRecord) -> DeliveryOut:
    status: Literal["pending", "delivered", "failed"] = d.status  # type: ignore[assignment]
    return DeliveryOut(app_id=d.app_id, client_id=d.client_id, position=d.position, event_type=d.event_type,
                       webhook_id=d.message_id, status=status, attempts=d.attempts, last_status_code=d.last_status,
                       last_error=d.last_error, first_attempt_at=datetime.fromtimestamp(d.first_attempt_at, UTC),
                       last_attempt_at=datetime.fromtimestamp(d.last_attempt_at, UTC),
                       next_attempt_at=_iso(d.next_attempt_at) if d.status == "pending" else None,
                       delivered_at=_iso(d.delivered_at))


def _deliveries(platform: Platform, store_id: str, app_id: str | None, after: int, limit: int) -> DeliveriesOut:
    platform.ledger.store(store_id)
    found = platform.tables.deliveries(store_id, app_id, after, limit)
    return DeliveriesOut(deliveries=[delivery_out(d) for d in found],
                         next_after=found[-1].position if found else after)


@store_router.get("/{store_id}/deliveries", response_model=DeliveriesOut, responses=problems(*AUTH_PROBLEMS, 404))
def store_deliveries(store_id: StoreId, _: Annotated[Principal, allow(OWN)], request: Request,
                     after: Annotated[int, Query(ge=0)] = 0,
                     limit: Annotated[int, Query(ge=1, le=DELIVERIES_READ_MAX)] = 100,
                     app_id: Annotated[str | None, Query(pattern=IdentifierPattern)] = None) -> DeliveriesOut:
    """Webhook deliveries of the store's apps (one row per event and install), by log position."""
    return _deliveries(platform_of(request), store_id, app_id, after, limit)


@store_router.get("/{store_id}/apps/{app_id}/deliveries", response_model=DeliveriesOut,
                  responses=problems(*AUTH_PROBLEMS, 404))
def app_deliveries(store_id: StoreId, app_id: AppId, _: Annotated[Principal, allow(OWN)], request: Request,
                   after: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1, le=DELIVERIES_READ_MAX)] = 100) -> DeliveriesOut:
    return _deliveries(platform_of(request), store_id, app_id, after, limit)


class ReplayIn(BaseModel):
    model_config = {"extra": "forbid"}
    from_position: StrictInt = Field(ge=1, le=2**62)


class ReplayOut(BaseModel):
    app_id: str
    from_position: int
    webhook_enabled: bool


@store_router.post("/{store_id}/apps/{app_id}/deliveries/replay", status_code=202, response_model=ReplayOut,
                   responses=problems(*AUTH_PROBLEMS, 404, 413, 422))
def replay_deliveries(store_id: StoreId, app_id: AppId, _: Annotated[Principal, allow(OWN)],
                      __: Annotated[None, body_limit()], payload: ReplayIn, request: Request) -> ReplayOut:
    """Send the app's events again from a log position (inclusive, at the earliest just after the
    install), in order; a disabled endpoint is enabled again."""
    platform = platform_of(request)
    record = platform.replay(store_id, app_id, payload.from_position)
    return ReplayOut(app_id=app_id, from_position=max(payload.from_position, record.installed_position + 1),
                     webhook_enabled=record.webhook_enabled)


# ---- OAuth 2.0 client credentials (RFC 6749 §4.4) ----

class AccessTokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class OAuthErrorOut(BaseModel):
    error: str
    error_description: str


_TOKEN_REQUEST_SCHEMA: Final = {
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["grant_type"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["client_credentials"]},
            "scope": {"type": "string", "description": "space-separated; at most the installed scopes"},
            "client_id": {"type": "string", "description": "or HTTP Basic"},
            "client_secret": {"type": "string", "description": "or HTTP Basic"},
        }}}}},
}


def _oauth_error(error: OAuthError) -> JSONResponse:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="pos-ledger", charset="UTF-8"'
    body = {"error": error.error, "error_description": error.description,
            "type": f"https://pos-ledger.dev/problems/{error.error}", "title": error.error.replace("_", " "),
            "status": error.status, "detail": error.description}
    return JSONResponse(body, status_code=error.status, headers=headers)


def _client_credentials(request: Request, form: dict[str, list[str]]) -> tuple[str, str]:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, ValueError):
            raise OAuthError(401, "invalid_client", "the Basic credentials are not base64 of id:secret") from None
        client_id, colon, client_secret = decoded.partition(":")
        if not colon:
            raise OAuthError(401, "invalid_client", "the Basic credentials are not id:secret")
        return unquote(client_id), unquote(client_secret)
    client_id, client_secret = form.get("client_id", [""])[0], form.get("client_secret", [""])[0]
    if not client_id or not client_secret:
        raise OAuthError(401, "invalid_client", "send the client id and secret by HTTP Basic or as form fields")
    return client_id, client_secret


@oauth_router.post("/oauth/token", response_model=AccessTokenOut, openapi_extra=_TOKEN_REQUEST_SCHEMA, responses={
    400: {"model": OAuthErrorOut, "description": "invalid_request, unsupported_grant_type or invalid_scope"},
    401: {"model": OAuthErrorOut, "description": "invalid_client"},
    413: {"model": OAuthErrorOut, "description": "The body is too large"},
    **problems(429)})
async def token(request: Request) -> Response:
    """Client credentials grant: an access token (a JWT, at most an hour) narrowed to the installed scopes."""
    try:
        await BodyLimit(TOKEN_BODY_BYTES_MAX)(request)
    except Exception:
        return _oauth_error(OAuthError(413, "invalid_request", f"the body may hold at most {TOKEN_BODY_BYTES_MAX} bytes"))
    try:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/x-www-form-urlencoded":
            raise OAuthError(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
        try:
            form = parse_qs((await request.body()).decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise OAuthError(400, "invalid_request", "the body is not UTF-8") from None
        if any(len(values) > 1 for values in form.values()):
            raise OAuthError(400, "invalid_request", "a parameter was sent more than once")
        grant_type = form.get("grant_type", [""])[0]
        if grant_type != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
        client_id, client_secret = _client_credentials(request, form)
        scope = form.get("scope", [None])[0]
        if scope is not None and any(s not in APP_SCOPES for s in scope.split()):
            raise OAuthError(400, "invalid_scope", f"unknown scope in {scope!r}")
        platform = platform_of(request)
        issued = await run_in_threadpool(platform.issue_token, client_id, client_secret, scope)
    except OAuthError as error:
        return _oauth_error(error)
    body = AccessTokenOut(access_token=issued.access_token, token_type="Bearer", expires_in=issued.expires_in,
                    scope=issued.scope)
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


# ---- the log cursor ----

class FeedEventOut(BaseModel):
    position: int
    terminal_id: str
    type: str
    body: str
    sig: str
    hash: str
    #: True when personal data was left out of `body` (the signature is then over the original).
    redacted: bool = False


class FeedOut(BaseModel):
    events: list[FeedEventOut]
    next_after: int


def _feed_item(principal: Principal, entry: Any) -> FeedEventOut | None:
    parsed = _BODY.decode(entry.body)
    event_type = str(parsed.get("type", ""))
    if principal.kind == "app" and not rules.scope_covers(principal.capabilities, event_type):
        return None
    body, redacted = entry.body, False
    if not principal.may(MEMBERS_READ) and isinstance(parsed.get("data"), dict):
        data, redacted = rules.without_personal_data(event_type, parsed["data"])
        if redacted:
            body = _JSON.encode({**parsed, "data": data}).decode()
    return FeedEventOut(position=entry.position, terminal_id=entry.terminal_id, type=event_type, body=body,
                        sig=base64.b64encode(entry.sig).decode(), hash=entry.hash.hex(), redacted=redacted)


@store_router.get("/{store_id}/feed", response_model=FeedOut, responses=problems(*AUTH_PROBLEMS, 404))
def feed(store_id: StoreId, principal: Annotated[Principal, allow(EVENTS_READ)], ledger: LedgerDep,
         after: Annotated[int, Query(ge=0)] = 0,
         limit: Annotated[int, Query(ge=1, le=READ_EVENTS_MAX)] = 100) -> FeedOut:
    """The store's events after `after`, in log order: for an app only the types its scopes cover;
    members' personal data left out without `members:read`. `next_after` is where to resume (it
    moves past events this caller does not see)."""
    ledger.store(store_id)
    events: list[FeedEventOut] = []
    cursor = after
    # Scan at most a few pages for `limit` visible events, so a sparse feed still answers quickly.
    for _ in range(10):
        entries = ledger.read_entries(store_id, cursor, READ_EVENTS_MAX)
        for entry in entries:
            item = _feed_item(principal, entry)
            cursor = entry.position
            if item is not None:
                events.append(item)
                if len(events) >= limit:
                    return FeedOut(events=events, next_after=cursor)
        if len(entries) < READ_EVENTS_MAX:
            break
    return FeedOut(events=events, next_after=cursor)
