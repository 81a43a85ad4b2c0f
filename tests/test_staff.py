"""Staff accounts over real HTTP (SQLite and PostgreSQL): who may create them, what the log and the table hold."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from pos_ledger.cli import app as cli
from pos_ledger.simulate import Client, Terminal
from pos_ledger.staff_table import StaffTable
from tests.conftest import LiveServer
from tests.loyalty_support import STORE, ok
from tests.web_support import PASSWORD, add_staff, csrf_of, logged_in


def staff_events(admin: httpx.Client) -> list[dict[str, object]]:
    events = ok(admin.get(f"/v1/stores/{STORE}/events", params={"after": 0, "limit": 1000}))
    bodies = [json.loads(e["body"]) for e in events]
    return [b for b in bodies if str(b["type"]).startswith("staff.")]


def test_admin_creates_staff_and_the_log_shows_who_got_access(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                             live_server: LiveServer) -> None:
    answer = admin.post(f"/v1/stores/{STORE}/staff", json={"username": "Ann", "password": PASSWORD,
                                                           "role": "owner"})
    assert answer.status_code == 201
    body = answer.json()
    assert body["username"] == "ann" and body["role"] == "owner" and body["store_id"] == STORE
    assert PASSWORD not in answer.text and "password" not in body
    events = staff_events(admin)
    assert [(e["type"], e["data"]) for e in events] == [("staff.added", {"username": "ann", "role": "owner"})]
    all_events = admin.get(f"/v1/stores/{STORE}/events", params={"after": 0, "limit": 1000}).text
    assert PASSWORD not in all_events and "argon2" not in all_events
    table = StaffTable(live_server.settings.database)
    try:
        account = table.account(STORE, "ann")
    finally:
        table.close()
    assert account is not None and account.password_hash.startswith("$argon2id$")
    # A username is unique in its store, whatever the case; another store may have its own "ann".
    assert admin.post(f"/v1/stores/{STORE}/staff", json={"username": "ANN", "password": PASSWORD,
                                                         "role": "viewer"}).status_code == 409
    assert len(staff_events(admin)) == 1
    ok(admin.post("/v1/stores", json={"store_id": "s2", "name": "Other", "currency": "CNY",
                                      "timezone": "Asia/Shanghai"}), 201)
    add_staff(admin, "s2", "ann", "viewer", password="another password")
    with httpx.Client(base_url=live_server.url) as browser:
        # Each password opens its own store's account; the form needs no store.
        first = browser.post("/login", data={"username": "ann", "password": PASSWORD})
        assert first.headers["location"] == f"/stores/{STORE}/dashboard"
    with httpx.Client(base_url=live_server.url) as browser:
        second = browser.post("/login", data={"username": "ann", "password": "another password"})
        assert second.headers["location"] == "/stores/s2/dashboard"
    listed = ok(admin.get(f"/v1/stores/{STORE}/staff"))
    assert [(s["username"], s["role"]) for s in listed] == [("ann", "owner")]


@pytest.mark.parametrize("payload", [
    {"username": "bob", "password": "short", "role": "owner"},
    {"username": "bob", "password": PASSWORD, "role": "cashier"},
    {"username": "bob smith", "password": PASSWORD, "role": "viewer"},
    {"username": "admin", "password": PASSWORD, "role": "viewer"},
    {"username": "bob", "password": PASSWORD, "role": "viewer", "extra": 1},
    {"username": "bob", "role": "viewer"},
])
def test_bad_staff_input_is_a_422_and_writes_nothing(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                     payload: dict[str, object]) -> None:
    answer = admin.post(f"/v1/stores/{STORE}/staff", json=payload)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert staff_events(admin) == [] and ok(admin.get(f"/v1/stores/{STORE}/staff")) == []


def test_only_the_admin_or_the_stores_owner_adds_staff(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                       anonymous: httpx.Client, live_server: LiveServer) -> None:
    assert anonymous.post(f"/v1/stores/{STORE}/staff", json={"username": "x1", "password": PASSWORD,
                                                             "role": "viewer"}).status_code == 401
    assert admin.post("/v1/stores/nope/staff", json={"username": "x1", "password": PASSWORD,
                                                     "role": "viewer"}).status_code == 404
    add_staff(admin, STORE, "owner1", "owner")
    add_staff(admin, STORE, "manager1", "manager")
    owner = logged_in(live_server.url, "owner1")
    manager = logged_in(live_server.url, "manager1")
    token = csrf_of(owner, f"/stores/{STORE}/dashboard")
    created = owner.post(f"/v1/stores/{STORE}/staff", json={"username": "v1", "password": PASSWORD,
                                                            "role": "viewer"}, headers={"x-csrf-token": token})
    assert created.status_code == 201
    refused = manager.post(f"/v1/stores/{STORE}/staff", json={"username": "v2", "password": PASSWORD,
                                                              "role": "viewer"},
                           headers={"x-csrf-token": csrf_of(manager, f"/stores/{STORE}/dashboard")})
    assert refused.status_code == 403
    # A huge body is refused before it is parsed.
    huge = admin.post(f"/v1/stores/{STORE}/staff", content=b'{"username": "' + b"a" * 10_000 + b'"}',
                      headers={"content-type": "application/json"})
    assert huge.status_code == 413
    # Removing an account ends its sessions and says so in the log.
    viewer = logged_in(live_server.url, "v1")
    assert viewer.get(f"/v1/stores/{STORE}/menu").status_code == 200
    assert admin.delete(f"/v1/stores/{STORE}/staff/v1").status_code == 204
    assert viewer.get(f"/v1/stores/{STORE}/menu").status_code == 401
    assert [e["type"] for e in staff_events(admin)] == ["staff.added"] * 3 + ["staff.removed"]
    assert admin.delete(f"/v1/stores/{STORE}/staff/v1").status_code == 404
    for client in (owner, manager, viewer):
        client.close()


def test_cli_staff_add_reads_the_password_from_stdin(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                      live_server: LiveServer) -> None:
    runner = CliRunner()
    database = live_server.settings.database
    result = runner.invoke(cli, ["staff", "add", "--db", database, "--store", STORE, "--username", "Clerk",
                                 "--role", "manager", "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert [(s["username"], s["role"]) for s in ok(admin.get(f"/v1/stores/{STORE}/staff"))] == [("clerk", "manager")]
    again = runner.invoke(cli, ["staff", "add", "--db", database, "--store", STORE, "--username", "clerk",
                                "--role", "manager", "--password-stdin"], input=PASSWORD + "\n")
    assert again.exit_code != 0 and "has a staff member" in again.output and "Traceback" not in again.output
    bad_role = runner.invoke(cli, ["staff", "add", "--db", database, "--store", STORE, "--username", "z",
                                   "--role", "boss", "--password-stdin"], input=PASSWORD + "\n")
    assert bad_role.exit_code != 0 and "role" in bad_role.output
    no_store = runner.invoke(cli, ["staff", "add", "--db", database, "--store", "nope", "--username", "z",
                                   "--role", "viewer", "--password-stdin"], input=PASSWORD + "\n")
    assert no_store.exit_code != 0 and "nope" in no_store.output
    client = logged_in(live_server.url, "clerk")
    assert client.get("/", follow_redirects=False).headers["location"] == f"/stores/{STORE}/dashboard"
    client.close()
