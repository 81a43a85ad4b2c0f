"""Personal data: keyed phone hashes, masking, the old event form, erasure with the ledger alone."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pos_ledger import _core
from pos_ledger.anchors import parse_checkpoint, sign_checkpoint
from pos_ledger.audit import audit_store
from pos_ledger.ledger import Ledger
from pos_ledger.loyalty import Loyalty
from pos_ledger.personal import mask_phone, normalise_phone, phone_hash, phone_hash_key
from pos_ledger.personal_store import SqlPersonalData
from tests.conftest import SERVER_SEED

KEY = phone_hash_key(SERVER_SEED)
phones = st.text(alphabet="0123456789", min_size=6, max_size=20)


@given(phones, st.sampled_from(["", " ", "-"]))
def test_a_phone_hashes_the_same_however_it_is_written(phone: str, separator: str) -> None:
    spaced = separator.join([phone[:3], phone[3:7], phone[7:]]).strip(separator) if separator else phone
    assert phone_hash(KEY, "s", spaced) == phone_hash(KEY, "s", phone) != ""
    assert phone not in phone_hash(KEY, "s", phone)
    assert phone_hash(KEY, "other", phone) != phone_hash(KEY, "s", phone)  # per store
    assert phone_hash(phone_hash_key(bytes(32)), "s", phone) != phone_hash(KEY, "s", phone)  # keyed


@given(st.text(alphabet="+0123456789", max_size=32))
def test_a_masked_phone_keeps_its_length_and_hides_the_middle(phone: str) -> None:
    masked = mask_phone(phone)
    assert len(masked) == len(phone)
    if len(phone) >= 8:
        assert masked[:3] == phone[:3] and masked[-4:] == phone[-4:] and set(masked[3:-4]) <= {"*"}
    assert mask_phone("13812345678") == "138****5678"
    assert normalise_phone("+86 138-1234-5678") == "+8613812345678"


@given(st.text(min_size=1, max_size=64), st.integers(0, 2**40), st.binary(min_size=32, max_size=32))
def test_checkpoints_round_trip_and_bind_every_field(store_id: str, position: int, head: bytes) -> None:
    signed = sign_checkpoint(SERVER_SEED, store_id, position, head)
    parsed = parse_checkpoint(json.dumps(signed.as_dict()).encode())
    key = _core.ed25519_public_key(SERVER_SEED)
    assert parsed == signed and parsed.verifies_with(key)
    for changed in ({"position": position + 1}, {"chain_head": bytes(a ^ 1 for a in head).hex()},
                    {"store_id": store_id + "x"}):
        assert not parse_checkpoint(json.dumps(signed.as_dict() | changed).encode()).verifies_with(key)


def test_an_old_form_registration_still_replays_and_is_hidden_once_erased(database: str, tmp_path: Path) -> None:
    ledger = Ledger(database, SERVER_SEED)
    personal = SqlPersonalData(database)
    try:
        ledger.open_store("s", "S", "CNY", "Asia/Shanghai")
        # What the server wrote before personal data left the log: the text in the event.
        ledger.append_server_events("s", [("member.registered", {
            "member_id": "old", "card_id": "ab" * 16, "name": "Han Meimei", "phone": "13900001111",
            "source": "cashier"})])
        loyalty = Loyalty(ledger, personal)
        loyalty.register_member("s", member_id="new", name="Li Lei", phone="13812345678", birthday="1990-04-01")
        old = loyalty.member("s", "old")
        assert loyalty.personal_data("s", old).phone == "13900001111"
        assert [m.member_id for m in loyalty.members_by_phone("s", "139 0000 1111")] == ["old"]
        assert [m.member_id for m in loyalty.members_by_phone("s", "13812345678")] == ["new"]
        new_event = ledger.read_entries("s", 2, 1)[0].body
        assert "13812345678" not in new_event and "Li Lei" not in new_event and '"phone_hash"' in new_event
        for member_id in ("old", "new"):
            loyalty.erase_personal_data("s", member_id)
            erased = loyalty.personal_data("s", loyalty.member("s", member_id))
            assert (erased.name, erased.phone, erased.birthday, erased.erased) == ("", "", "", True)
        assert loyalty.members_by_phone("s", "13900001111") == []
        assert audit_store(ledger, "s").ok
    finally:
        personal.close()
        ledger.close()
    replayed = Ledger(database, SERVER_SEED)  # replay from the log alone
    try:
        assert {"old", "new"} <= set(Loyalty(replayed).state("s").features["members"].members)
    finally:
        replayed.close()
