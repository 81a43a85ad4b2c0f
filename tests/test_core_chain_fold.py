"""Hash chain and auditor fold: Rust agrees with its twins, detects tampering, and chunking changes nothing."""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos_ledger import _core
from pos_ledger.reference import chain as chain_twin
from pos_ledger.reference import fold as fold_twin

ZERO = bytes(32)
ACCOUNTS = ["asset:cash:t1", "revenue:sales", "liability:stored_value:m1", "contra:discount:coupon:c1", "é账户"]
CURRENCIES = ["CNY", "EUR", "USD"]
Folder = Any


def signatures(count: int) -> list[bytes]:
    return [hashlib.sha512(str(i).encode()).digest() for i in range(count)]


def balanced_postings(draw: st.DrawFn) -> bytes:
    postings = []
    for _ in range(draw(st.integers(0, 3))):
        currency = draw(st.sampled_from(CURRENCIES))
        amount = draw(st.integers(-(10**12), 10**12))
        debit, credit = draw(st.sampled_from(ACCOUNTS)), draw(st.sampled_from(ACCOUNTS))
        postings += [[debit, currency, amount], [credit, currency, -amount]]
    return json.dumps(postings, separators=(",", ":"), ensure_ascii=draw(st.booleans())).encode()


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[bytes], list[bytes], list[bytes]]:
    bodies = draw(st.lists(st.binary(max_size=60), max_size=25))
    postings = [balanced_postings(draw) for _ in bodies]
    return bodies, signatures(len(bodies)), postings


def fold(folder: Folder, bodies: list[bytes], sigs: list[bytes], hashes: list[bytes], postings: list[bytes]) -> Any:
    folder.feed(bodies, sigs, hashes, postings)
    return (folder.head, folder.position, folder.first_error, folder.balances())


@settings(max_examples=200, deadline=None)
@given(logs(), st.binary(min_size=32, max_size=32))
def test_chain_extend_and_verify_agree_with_twin(log: Any, head: bytes) -> None:
    bodies, sigs, _ = log
    hashes = _core.chain_extend(head, bodies, sigs)
    assert hashes == chain_twin.chain_extend(head, bodies, sigs)
    assert _core.chain_verify(head, bodies, sigs, hashes) == (hashes[-1] if hashes else head, None)
    assert chain_twin.chain_verify(head, bodies, sigs, hashes) == (hashes[-1] if hashes else head, None)


@settings(max_examples=200, deadline=None)
@given(logs(), st.data())
def test_any_tampering_is_found_at_its_index(log: Any, data: st.DataObject) -> None:
    bodies, sigs, _ = log
    if not bodies:
        return
    hashes = _core.chain_extend(ZERO, bodies, sigs)
    index = data.draw(st.integers(0, len(bodies) - 1))
    what = data.draw(st.sampled_from(["body", "sig", "hash"]))
    column = {"body": bodies, "sig": sigs, "hash": hashes}[what]
    column = list(column)
    value = column[index]
    position = data.draw(st.integers(0, max(len(value) - 1, 0)))
    column[index] = value[:position] + bytes([value[position] ^ 1]) + value[position + 1 :] if value else b"x"
    arguments = {"body": bodies, "sig": sigs, "hash": hashes} | {what: column}
    expected = (hashes[index - 1] if index else ZERO, index)
    got = _core.chain_verify(ZERO, arguments["body"], arguments["sig"], arguments["hash"])
    assert got == expected == chain_twin.chain_verify(ZERO, arguments["body"], arguments["sig"], arguments["hash"])


@pytest.mark.parametrize("implementation", [_core, chain_twin], ids=["rust", "twin"])
def test_chain_limits(implementation: Any) -> None:
    with pytest.raises(ValueError):
        implementation.chain_extend(bytes(31), [b"a"], [bytes(64)])
    with pytest.raises(ValueError):
        implementation.chain_extend(ZERO, [b"a"], [bytes(63)])
    with pytest.raises(ValueError):
        implementation.chain_extend(ZERO, [b"a", b"b"], [bytes(64)])
    with pytest.raises(ValueError):
        implementation.chain_verify(ZERO, [b"a"], [bytes(64)], [])
    assert implementation.chain_extend(ZERO, [b"a"], [bytes(64)]) == [hashlib.sha256(ZERO + b"a" + bytes(64)).digest()]
    assert implementation.chain_verify(ZERO, [b"a"], [bytes(64)], [b"short"]) == (ZERO, 0)


@settings(max_examples=150, deadline=None)
@given(logs(), st.lists(st.integers(0, 25), max_size=4), st.integers(0, 10**6))
def test_folder_agrees_with_twin_and_chunking_changes_nothing(log: Any, cuts: list[int], start: int) -> None:
    bodies, sigs, postings = log
    hashes = _core.chain_extend(ZERO, bodies, sigs)
    one_shot = fold(_core.LedgerFolder(ZERO, start), bodies, sigs, hashes, postings)
    assert one_shot == fold(fold_twin.LedgerFolder(ZERO, start), bodies, sigs, hashes, postings)
    assert one_shot[1:3] == (start + len(bodies), None)
    chunked = _core.LedgerFolder(position=start)
    bounds = [0, *sorted(min(c, len(bodies)) for c in cuts), len(bodies)]
    for low, high in itertools.pairwise(bounds):
        chunked.feed(bodies[low:high], sigs[low:high], hashes[low:high], postings[low:high])
    assert (chunked.head, chunked.position, chunked.first_error, chunked.balances()) == one_shot
    # Folding entirely in two folders, the second starting where the first stopped, also agrees.
    middle = len(bodies) // 2
    first = _core.LedgerFolder(ZERO, start)
    first.feed(bodies[:middle], sigs[:middle], hashes[:middle], postings[:middle])
    second = _core.LedgerFolder(first.head, first.position)
    second.feed(bodies[middle:], sigs[middle:], hashes[middle:], postings[middle:])
    assert (second.head, second.position) == one_shot[:2]


POSTINGS_TEXT = st.one_of(
    st.binary(max_size=40),
    st.text(alphabet='[]",-0123456789 .eE\\uCNYa\n', max_size=40).map(str.encode),
    st.recursive(
        st.one_of(
            st.integers(-(2**70), 2**70),
            st.sampled_from(ACCOUNTS + CURRENCIES + ["", "cny", "\ud800"]),
            st.booleans(),
            st.none(),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        lambda children: st.lists(children, max_size=4),
        max_leaves=10,
    ).map(lambda value: json.dumps(value).encode("utf-8", "surrogatepass")),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(POSTINGS_TEXT, min_size=1, max_size=4))
def test_folder_agrees_with_twin_on_arbitrary_postings_text(texts: list[bytes]) -> None:
    bodies = [b"{}"] * len(texts)
    sigs = signatures(len(texts))
    hashes = _core.chain_extend(ZERO, bodies, sigs)
    assert fold(_core.LedgerFolder(), bodies, sigs, hashes, texts) == fold(
        fold_twin.LedgerFolder(), bodies, sigs, hashes, texts
    )


CASES = [
    (b'[["asset:cash:t1","CNY",1000],["revenue:sales","CNY",-1000]]', None),
    (b"[]", None),
    (b' [ ["a" , "CNY" , -0 ] ]\n', None),
    (b'[["a\\u00e9","CNY",5],["b","CNY",-5],["c","EUR",1],["d","EUR",-1]]', None),
    (b'[["a","CNY",5],["b","CNY",-4]]', "postings_unbalanced"),
    (b'[["a","CNY",5],["b","EUR",-5]]', "postings_unbalanced"),
    (b'[["a","CNY",1.0],["b","CNY",-1]]', "postings_malformed"),
    (b'[["a","CNY",true],["b","CNY",-1]]', "postings_malformed"),
    (b'[["a","cny",1],["b","cny",-1]]', "postings_malformed"),
    (b'[["","CNY",0]]', "postings_malformed"),
    (b'[["a","CNY",NaN]]', "postings_malformed"),
    (b'[["a\\ud800","CNY",0]]', "postings_malformed"),
    (b'{"a":1}', "postings_malformed"),
    (b"\xef\xbb\xbf[]", "postings_malformed"),
    (b'[["' + b"a" * 257 + b'","CNY",0]]', "postings_malformed"),
    (b"[" + b",".join([b'["a","CNY",0]'] * 1025) + b"]", "postings_malformed"),
    (b'[["a","CNY",9223372036854775808],["b","CNY",-9223372036854775808]]', "amount_overflow"),
    (b'[["a","CNY",1' + b"0" * 30 + b'],["b","CNY",-1' + b"0" * 30 + b"]]", "amount_overflow"),
    (
        b'[["a","CNY",9223372036854775807],["a","CNY",1],["b","CNY",-9223372036854775807],["b","CNY",-1]]',
        "amount_overflow",
    ),
]


@pytest.mark.parametrize("implementation", [_core, fold_twin], ids=["rust", "twin"])
@pytest.mark.parametrize(("text", "reason"), CASES)
def test_postings_cases(implementation: Any, text: bytes, reason: str | None) -> None:
    bodies, sigs = [b"e1", b"e2"], signatures(2)
    hashes = _core.chain_extend(ZERO, bodies, sigs)
    folder = implementation.LedgerFolder()
    folder.feed(bodies, sigs, hashes, [b'[["x","CNY",7],["y","CNY",-7]]', text])
    if reason is None:
        assert (folder.first_error, folder.position, folder.head) == (None, 2, hashes[1])
    else:
        assert (folder.first_error, folder.position, folder.head) == ((2, reason), 1, hashes[0])
        assert folder.balances() == {("x", "CNY"): 7, ("y", "CNY"): -7}
    folder.feed([b"e3"], sigs[:1], [bytes(32)], [b"[]"])  # a bad hash; after an error, nothing more happens
    assert folder.first_error == ((3, "hash_mismatch") if reason is None else (2, reason))


@pytest.mark.parametrize("implementation", [_core, fold_twin], ids=["rust", "twin"])
def test_hash_mismatch_stops_the_fold_at_its_absolute_position(implementation: Any) -> None:
    bodies, sigs = [b"a", b"b", b"c"], signatures(3)
    hashes = _core.chain_extend(ZERO, bodies, sigs)
    folder = implementation.LedgerFolder(ZERO, 41)
    folder.feed(bodies, sigs, [hashes[0], hashes[2], hashes[1]], [b"[]"] * 3)
    assert (folder.first_error, folder.position, folder.head) == ((43, "hash_mismatch"), 42, hashes[0])
    with pytest.raises(ValueError):
        implementation.LedgerFolder(bytes(31))
    with pytest.raises(ValueError):
        folder.feed([b"a"], [], [], [])
    with pytest.raises(TypeError):
        folder.feed(["a"], [b""], [b""], [b""])


def pack(bodies: list[bytes], sigs: list[bytes], hashes: list[bytes], postings: list[bytes]) -> bytes:
    return b"".join(
        struct.pack("<I", len(b)) + b + bytes([len(s)]) + s + h + struct.pack("<I", len(p)) + p
        for b, s, h, p in zip(bodies, sigs, hashes, postings, strict=True)
    )


@pytest.mark.parametrize("implementation", [_core, fold_twin], ids=["rust", "twin"])
def test_feed_packed_equals_feed(implementation: Any) -> None:
    bodies = [f'{{"seq":{i}}}'.encode() for i in range(50)]
    sigs = signatures(50)
    postings = [f'[["asset:cash:t1","CNY",{i}],["revenue:sales","CNY",-{i}]]'.encode() for i in range(50)]
    hashes = _core.chain_extend(ZERO, bodies, sigs)
    hashes[30] = bytes(32)
    packed = implementation.LedgerFolder()
    packed.feed_packed(pack(bodies, sigs, hashes, postings))
    listed = implementation.LedgerFolder()
    listed.feed(bodies, sigs, hashes, postings)
    state = (packed.head, packed.position, packed.first_error, packed.balances())
    assert state == (listed.head, listed.position, listed.first_error, listed.balances())
    assert packed.first_error == (31, "hash_mismatch")
    with pytest.raises(ValueError):
        implementation.LedgerFolder().feed_packed(pack(bodies, sigs, hashes, postings)[:-1])


@pytest.mark.parametrize("big", [2**40, 2**62])
@pytest.mark.parametrize("bad", [None, 0, 4095, 6000, 9999])
def test_threads_change_nothing_on_large_chunks(bad: int | None, big: int) -> None:
    count = 10_000
    bodies = [f'{{"seq":{i}}}'.encode() for i in range(count)]
    sigs = [bytes([i % 256]) * 64 for i in range(count)]
    postings = [
        f'[["a{i % 97}","CNY",{i}],["b","CNY",-{i}]]'.encode()
        if i % 3
        else f'[["x","EUR",{big}],["y","EUR",-{big}]]'.encode()
        for i in range(count)
    ]
    hashes = _core.chain_extend(ZERO, bodies, sigs)
    if bad is not None:
        hashes[bad] = bytes(32)
    states = []
    for folder in (
        _core.LedgerFolder(threads=1),
        _core.LedgerFolder(threads=2),
        _core.LedgerFolder(threads=5),
        fold_twin.LedgerFolder(),
    ):
        folder.feed(tuple(bodies), sigs, hashes, postings)
        states.append(state_of(folder))
    assert all(s == states[0] for s in states)
    hash_error = None if bad is None else (bad + 1, "hash_mismatch")
    if big == 2**62:  # x's running balance passes i64 at the second EUR event (position 4)
        assert states[0][2] == (hash_error if bad is not None and bad < 3 else (4, "amount_overflow"))
    else:
        assert states[0][2] == hash_error


def state_of(folder: Any) -> Any:
    return (folder.head, folder.position, folder.first_error, folder.balances())
