"""Apps in a store's log: `app.installed`, `app.uninstalled`, `app.key_rotated`, `webhook.subscribed`,
`webhook.disabled`.

An app is registered once for the whole platform (a table, not a store's log: it
belongs to no store); what happens to it in a store is that store's history. The
log keeps no secret: client and webhook secrets live hashed or apart (the platform
tables), the log says who was let in, with which scopes, and when that ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

import msgspec

from pos_ledger.events import EntryMeta, EventRejected, EventType, Identifier, Posting, register
from pos_ledger.state import StoreState

APPS_MAX: Final = 1_000
SCOPES_MAX: Final = 20
EVENT_TYPES_MAX: Final = 100
Scope = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
EventTypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Note = Annotated[str, msgspec.Meta(max_length=500)]


class AppInstalled(msgspec.Struct, frozen=True):
    app_id: Identifier
    client_id: Identifier
    scopes: Annotated[list[Scope], msgspec.Meta(max_length=SCOPES_MAX)]
    event_types: Annotated[list[EventTypeName], msgspec.Meta(max_length=EVENT_TYPES_MAX)] = []
    webhook_url: Url | None = None


class AppUninstalled(msgspec.Struct, frozen=True):
    app_id: Identifier
    client_id: Identifier


class AppKeyRotated(msgspec.Struct, frozen=True):
    app_id: Identifier
    key: Literal["webhook_secret", "client_secret"]
    #: Until when (RFC 3339) the previous key still works.
    previous_valid_until: str = ""


class WebhookSubscribed(msgspec.Struct, frozen=True):
    app_id: Identifier
    url: Url
    event_types: Annotated[list[EventTypeName], msgspec.Meta(max_length=EVENT_TYPES_MAX)] = []


class WebhookDisabled(msgspec.Struct, frozen=True):
    """The endpoint answered 410 or kept failing: deliveries stop until the owner replays."""

    app_id: Identifier
    url: Url
    reason: Note = ""


@dataclass(slots=True)
class Installation:
    app_id: str
    client_id: str
    scopes: list[str]
    event_types: list[str]
    webhook_url: str | None
    installed_position: int
    installed_at: str
    webhook_disabled: str = ""


@dataclass(slots=True)
class AppsFeature:
    installed: dict[str, Installation] = field(default_factory=dict)
    #: Every install and uninstall, oldest first: (position, app_id, "installed" | "uninstalled").
    history: list[tuple[int, str, str]] = field(default_factory=list)


def apps_of(state: StoreState) -> AppsFeature:
    return state.feature("apps", AppsFeature)


def _decide_installed(data: AppInstalled, state: StoreState, terminal_id: str) -> list[Posting]:
    feature = apps_of(state)
    if data.app_id in feature.installed:
        raise EventRejected("app_installed", f"app {data.app_id!r} is already installed")
    if len(feature.installed) >= APPS_MAX:
        raise EventRejected("apps_full", f"a store installs at most {APPS_MAX} apps")
    return []


def _evolve_installed(data: AppInstalled, state: StoreState, meta: EntryMeta) -> None:
    feature = apps_of(state)
    feature.installed[data.app_id] = Installation(
        data.app_id, data.client_id, list(data.scopes), list(data.event_types), data.webhook_url,
        meta.position, meta.at.isoformat())
    feature.history.append((meta.position, data.app_id, "installed"))


def _decide_installed_now(data: AppUninstalled | AppKeyRotated | WebhookSubscribed | WebhookDisabled,
                          state: StoreState, terminal_id: str) -> list[Posting]:
    if data.app_id not in apps_of(state).installed:
        raise EventRejected("app_not_installed", f"app {data.app_id!r} is not installed")
    return []


def _evolve_uninstalled(data: AppUninstalled, state: StoreState, meta: EntryMeta) -> None:
    feature = apps_of(state)
    feature.installed.pop(data.app_id, None)
    feature.history.append((meta.position, data.app_id, "uninstalled"))


def _evolve_disabled(data: WebhookDisabled, state: StoreState, meta: EntryMeta) -> None:
    apps_of(state).installed[data.app_id].webhook_disabled = data.reason or "disabled"


def _evolve_subscribed(data: WebhookSubscribed, state: StoreState, meta: EntryMeta) -> None:
    installation = apps_of(state).installed[data.app_id]
    installation.webhook_url = data.url
    installation.webhook_disabled = ""


APP_INSTALLED = register(EventType("app.installed", AppInstalled, _decide_installed, _evolve_installed,
                                   origin="server"))
APP_UNINSTALLED = register(EventType("app.uninstalled", AppUninstalled, _decide_installed_now,
                                     _evolve_uninstalled, origin="server"))
APP_KEY_ROTATED = register(EventType("app.key_rotated", AppKeyRotated, _decide_installed_now, origin="server"))
WEBHOOK_SUBSCRIBED = register(EventType("webhook.subscribed", WebhookSubscribed, _decide_installed_now,
                                        _evolve_subscribed, origin="server"))
WEBHOOK_DISABLED = register(EventType("webhook.disabled", WebhookDisabled, _decide_installed_now,
                                      _evolve_disabled, origin="server"))
