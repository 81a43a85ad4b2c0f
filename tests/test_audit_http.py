"""The auditor's routes and members' personal data over real HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx

from pos_ledger import httpsig
from pos_ledger.anchors import parse_checkpoint
from pos_ledger.audit import audit_export, audit_store
from pos_ledger.export import write_export
from pos_ledger.ledger import Ledger
from pos_ledger.simulate import Client, Terminal
from tests.conftest import SERVER_SEED, LiveServer

STORE = "s1"
PHONE = "13812345678"


def signed_get(live_server: LiveServer, terminal: Terminal, path: str) -> httpx.Response:
    headers = httpsig.sign_request(terminal.key.seed, terminal.key.terminal_id, "GET", path, b"", int(time.time()))
    return httpx.get(live_server.url + path, headers=headers, timeout=30)


def signed_delete(live_server: LiveServer, terminal: Terminal, path: str) -> httpx.Response:
    headers = httpsig.sign_request(terminal.key.seed, terminal.key.terminal_id, "DELETE", path, b"", int(time.time()))
    return httpx.delete(live_server.url + path, headers=headers, timeout=30)


def test_checkpoints_pin_every_z_and_a_fresh_one_writes_nothing(
        live_server: LiveServer, shop: tuple[Client, Terminal], admin: httpx.Client, anonymous: httpx.Client) -> None:
    _, terminal = shop
    shift = admin.post(f"/v1/stores/{STORE}/shifts", json={"float_minor": 1000, "terminal_id": "t1"}).json()
    z = admin.post(f"/v1/stores/{STORE}/shifts/{shift['shift_id']}/close", json={"counted_minor": 1000}).json()
    server_key = base64.b64decode(admin.get(f"/v1/stores/{STORE}").json()["server_public_key"])

    recorded = admin.get(f"/v1/stores/{STORE}/checkpoints")
    assert recorded.status_code == 200, recorded.text
    [checkpoint] = recorded.json()
    assert (checkpoint["position"], checkpoint["chain_head"]) == (z["chain_position"], z["chain_head"])
    assert checkpoint["event_position"] == z["chain_position"] + 1 and checkpoint["shift_id"] == shift["shift_id"]
    assert parse_checkpoint(json.dumps(checkpoint).encode()).verifies_with(server_key)
    events = admin.get(f"/v1/stores/{STORE}/events", params={"after": z["chain_position"]}).json()
    assert '"checkpoint.recorded"' in events[0]["body"] and events[0]["terminal_id"] == "server"

    length = admin.get(f"/v1/stores/{STORE}/chain").json()["length"]
    fresh = admin.get(f"/v1/stores/{STORE}/checkpoint").json()
    assert set(fresh) == {"store_id", "position", "chain_head", "at", "signature"}
    assert fresh["position"] == length == admin.get(f"/v1/stores/{STORE}/chain").json()["length"]
    witness = parse_checkpoint(json.dumps(fresh).encode())
    assert witness.verifies_with(server_key)
    assert audit_store(live_server.ledger, STORE, witness=witness, server_key=server_key).ok
    assert audit_store(live_server.ledger, STORE, witness=parse_checkpoint(json.dumps(checkpoint).encode())).ok

    assert anonymous.get(f"/v1/stores/{STORE}/checkpoints").status_code == 401
    for path in (f"/v1/stores/{STORE}/checkpoints", f"/v1/stores/{STORE}/checkpoint"):
        denied = signed_get(live_server, terminal, path)  # a till may read events, not the auditor's proofs
        assert denied.status_code == 403 and denied.headers["content-type"] == "application/problem+json"
    assert admin.get("/v1/stores/nowhere/checkpoint").status_code == 404
    assert admin.get(f"/v1/stores/{STORE}/checkpoints", params={"limit": 0}).status_code == 422
    assert admin.get(f"/v1/stores/{STORE}/checkpoints", params={"after": checkpoint["event_position"]}).json() == []


def _everything_served(admin: httpx.Client) -> str:
    return json.dumps(admin.get(f"/v1/stores/{STORE}/events", params={"limit": 1000}).json())


def test_personal_data_stays_out_of_the_log_and_is_erased(
        live_server: LiveServer, shop: tuple[Client, Terminal], admin: httpx.Client, tmp_path: Path) -> None:
    _, terminal = shop
    created = admin.post(f"/v1/stores/{STORE}/members", json={
        "member_id": "alice", "name": "Li Lei", "phone": PHONE, "birthday": "1990-04-01"})
    assert created.status_code == 201, created.text
    assert (created.json()["name"], created.json()["phone"], created.json()["birthday"]) == (
        "Li Lei", PHONE, "1990-04-01")
    masked = signed_get(live_server, terminal, f"/v1/stores/{STORE}/members/alice").json()
    assert masked["phone"] == "138****5678" and masked["name"] == "Li Lei"
    log = _everything_served(admin)
    assert PHONE not in log and "Li Lei" not in log and "1990-04-01" not in log
    assert '\\"phone_hash\\":\\"' in log
    found = admin.get(f"/v1/stores/{STORE}/members", params={"phone": "138 1234 5678"}).json()
    assert [m["member_id"] for m in found] == ["alice"]
    assert admin.post(f"/v1/stores/{STORE}/members/alice/recharge",
                      json={"amount_minor": 5000, "currency": "CNY", "method": "wechat"}).status_code == 201

    path = f"/v1/stores/{STORE}/members/alice/personal-data"
    assert signed_delete(live_server, terminal, path).status_code == 403  # the owner's, not a till's
    assert admin.delete(f"/v1/stores/{STORE}/members/nobody/personal-data").status_code == 404
    erased = admin.delete(path)
    assert erased.status_code == 204, erased.text
    after = admin.get(f"/v1/stores/{STORE}/members/alice").json()
    assert (after["name"], after["phone"], after["birthday"], after["balance_minor"]) == ("", "", "", 5000)
    assert admin.get(f"/v1/stores/{STORE}/members", params={"phone": PHONE}).json() == []
    assert admin.delete(path).status_code == 204  # erasing again changes nothing

    report = audit_store(live_server.ledger, STORE)
    assert report.ok, report
    replayed = Ledger(live_server.settings.database, SERVER_SEED)
    try:
        assert replayed.chain(STORE) == live_server.ledger.chain(STORE)
        write_export(replayed, STORE, tmp_path / "x")
    finally:
        replayed.close()
    assert audit_export(tmp_path / "x").ok
    for file in (tmp_path / "x").iterdir():
        assert PHONE.encode() not in file.read_bytes(), file
    database = live_server.settings.database
    if "://" not in database:  # a copy of the SQLite files (a backup) holds no trace of the phone
        for suffix in ("", "-wal", "-journal"):
            copy = Path(database + suffix)
            if copy.exists():
                assert PHONE.encode() not in copy.read_bytes(), copy


def test_an_export_downloads_as_a_zip_that_audits_offline(
        live_server: LiveServer, shop: tuple[Client, Terminal], admin: httpx.Client, tmp_path: Path) -> None:
    import zipfile

    _, terminal = shop
    admin.post(f"/v1/stores/{STORE}/members", json={"member_id": "bob", "phone": PHONE})
    download = admin.get(f"/v1/stores/{STORE}/export")
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "application/zip"
    archive = tmp_path / "export.zip"
    archive.write_bytes(download.content)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path / "x")
    report = audit_export(tmp_path / "x")
    assert report.ok and report.length == admin.get(f"/v1/stores/{STORE}/chain").json()["length"]
    assert PHONE.encode() not in archive.read_bytes()
    partial = admin.get(f"/v1/stores/{STORE}/export", params={"from": 2, "to": 3})
    assert partial.status_code == 200
    assert admin.get(f"/v1/stores/{STORE}/export", params={"from": 5, "to": 2}).status_code == 422
    assert signed_get(live_server, terminal, f"/v1/stores/{STORE}/export").status_code == 403
