"""Property: every report equals a brute-force computation over the log, for random event streams.

A random stream of menu changes, sales (store-local days across midnight in a
+05:45 time zone, split tenders with change, members, channels, two terminals),
member registrations, recharges, spends (some overdrawing into conflicts), coupon
issues, valid and rule-breaking redemptions, voids, payments and their refunds,
and stored-value refunds goes through the real Ledger. The projections fold it
(in random batch sizes, part of it before the rest arrives), and each report is
compared with a fold of `Ledger.iter_entries` written here from the issue's
definitions (and the ledger's own balances and coupon state).
"""

from __future__ import annotations

import tempfile
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos_ledger.catalog.coupons import coupons_of
from pos_ledger.catalog.members import members_of
from pos_ledger.errors import PosLedgerError
from pos_ledger.events import decode_body, decode_data
from pos_ledger.ledger import Ledger, SignedEvent
from pos_ledger.simulate import Terminal, TerminalKey
from projections import reports
from projections.db import ReadDatabase
from projections.runner import LedgerLog, ProjectionRunner
from tests.conftest import SERVER_SEED

TIMEZONE = "Asia/Kathmandu"
ZONE = ZoneInfo(TIMEZONE)
START = datetime(2026, 3, 1, tzinfo=UTC)
SKUS = ("A", "B", "C", "D")
MEMBERS = ("m1", "m2", "m3", "m4")
METHODS = ("cash", "wechat", "alipay", "card")

lines = st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 3), st.integers(0, 5000)), min_size=1, max_size=4)
sale_action = st.tuples(
    st.just("sale"), st.integers(0, 4 * 24 * 60), lines, st.sampled_from((0, 10, 33, 100)),
    st.lists(st.sampled_from(METHODS), min_size=1, max_size=2),
    st.sampled_from((0, 150, 2500)), st.sampled_from((None, *MEMBERS)), st.sampled_from(("counter", "mini_program")),
    st.integers(0, 1))
other_action = st.one_of(
    st.tuples(st.just("menu"), st.sampled_from(SKUS), st.sampled_from(("coffee", "bakery", ""))),
    st.tuples(st.just("register"), st.sampled_from(MEMBERS)),
    st.tuples(st.just("recharge"), st.sampled_from(MEMBERS), st.integers(1, 20_000)),
    st.tuples(st.just("spend"), st.sampled_from(MEMBERS), st.integers(1, 15_000)),
    st.tuples(st.just("sv_refund"), st.sampled_from(MEMBERS), st.integers(1, 5000)),
    st.tuples(st.just("issue"), st.sampled_from(("c1", "c2")), st.sampled_from((None, *MEMBERS))),
    st.tuples(st.just("redeem"), st.integers(0, 3), st.integers(0, 800), st.integers(-1, 20)),
    st.tuples(st.just("redeem"), st.integers(0, 3), st.integers(0, 800), st.integers(-1, 20)),
    st.tuples(st.just("void"), st.integers(0, 9)),
    st.tuples(st.just("refund"), st.integers(1, 9000), st.integers(0, 9000)),
)


@st.composite
def actions(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Sales and other commands interleaved (sales drawn apart, so every stream has several)."""
    mixed = draw(st.lists(sale_action, min_size=3, max_size=25)) + draw(st.lists(other_action, max_size=25))
    draw(st.randoms(use_true_random=False)).shuffle(mixed)
    return mixed


class World:
    """Drives a real Ledger; rejected commands are simply not in the log."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.terminals = [Terminal(TerminalKey.generate(f"t{i}"), seq=0) for i in range(2)]
        ledger.open_store("s", "S", "CNY", TIMEZONE)
        for terminal in self.terminals:
            ledger.register_terminal("s", terminal.key.terminal_id, terminal.key.public_key, "")
        for member_id in MEMBERS[:2]:  # the others register in the stream, or never (sales may still name them)
            self.server([("member.registered", {"member_id": member_id, "card_id": uuid.uuid4().hex})])
        self.server([("member_program.configured", {"recharge_rules": [
            {"name": "5k", "paid_minor_min": 5000, "bonus_minor": 1000}]})])
        now = datetime.now(UTC)
        for campaign_id, valid_until in (("c1", now + timedelta(days=30)), ("c2", now + timedelta(seconds=2))):
            self.server([("campaign.created", {
                "campaign_id": campaign_id, "name": campaign_id.upper(), "kind": "cash_off", "off_minor": 300,
                "valid_from": (now - timedelta(days=1)).isoformat(), "valid_until": valid_until.isoformat(),
                "quota_total": 6})])
        self.coupons: list[str] = []
        self.orders: list[str] = []
        self.spends: list[tuple[str, str]] = []
        self.counter = 0

    def server(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            self.ledger.append_server_events("s", events)
        except PosLedgerError:
            pass

    def key(self) -> str:
        self.counter += 1
        return f"k{self.counter}"

    def do(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if kind == "sale":
            self.sale(*action[1:])
        elif kind == "menu":
            self.server([("menu.item_upserted", {"sku": action[1], "name": action[1], "price_minor": 100,
                                                 "category": action[2]})])
        elif kind == "register":
            self.server([("member.registered", {"member_id": action[1], "card_id": uuid.uuid4().hex})])
        elif kind == "recharge":
            paid = action[2]
            self.server([("stored_value.recharged", {
                "member_id": action[1], "recharge_id": self.key(), "currency": "CNY", "paid_minor": paid,
                "bonus_minor": 1000 if paid >= 5000 else 0, "rule_name": "5k" if paid >= 5000 else "",
                "method": "wechat"})])
        elif kind == "spend":
            spend_id = self.key()
            self.server([("stored_value.spent", {"member_id": action[1], "spend_id": spend_id, "currency": "CNY",
                                                 "amount_minor": action[2], "order_ref": spend_id,
                                                 "offline": True})])
            self.spends.append((action[1], spend_id))
        elif kind == "sv_refund":
            for member_id, spend_id in self.spends:
                if member_id == action[1]:
                    self.server([("stored_value.refunded", {"member_id": member_id, "spend_id": spend_id,
                                                            "refund_id": self.key(), "currency": "CNY",
                                                            "amount_minor": action[2]})])
        elif kind == "issue":
            coupon_id = uuid.uuid4().hex
            self.server([("coupon.issued", {"coupon_id": coupon_id, "campaign_id": action[1], "member_id": action[2],
                                            "issued_at": datetime.now(UTC).isoformat()})])
            self.coupons.append(coupon_id)
        elif kind == "redeem":
            self.redeem(*action[1:])
        elif kind == "void" and self.coupons:
            self.server([("coupon.voided", {"coupon_id": self.coupons[action[1] % len(self.coupons)]})])
        elif kind == "refund":
            self.refund(action[1], action[2])

    def sale(self, minutes: int, items: list[tuple[str, int, int]], discount_percent: int, methods: list[str],
             change: int, member_id: str | None, channel: str, terminal_index: int) -> None:
        gross = sum(q * p for _, q, p in items)
        discount = gross * discount_percent // 100
        total = gross - discount
        first = total // 2 if len(methods) == 2 else total
        tenders = [{"method": m, "amount_minor": a} for m, a in zip(methods, (first, total - first), strict=False)]
        for tender in tenders:
            if tender["method"] == "cash":
                tender["amount_minor"] += change
                tender["change_minor"] = change
        order_id = str(uuid.uuid4())
        data = {"order_id": order_id, "currency": "CNY", "discount_minor": discount, "total_minor": total,
                "lines": [{"sku": s, "name": s, "qty": q, "unit_price_minor": p} for s, q, p in items],
                "tenders": tenders, "member_id": member_id, "channel": channel}
        terminal = self.terminals[terminal_index]
        signed = terminal.sign("sale.completed", data, START + timedelta(minutes=minutes))
        import base64

        self.ledger.ingest("s", terminal.key.terminal_id,
                           [SignedEvent(signed["body"].encode(), base64.b64decode(signed["sig"]))])
        self.orders.append(order_id)

    def redeem(self, coupon_index: int, discount: int, order_index: int) -> None:
        if not self.coupons:
            return
        order_ref = self.orders[order_index % len(self.orders)] if order_index >= 0 and self.orders else self.key()
        self.server([("coupon.redeemed", {
            "coupon_id": self.coupons[coupon_index % len(self.coupons)], "redemption_id": self.key(),
            "order_ref": order_ref, "currency": "CNY", "discount_minor": discount,
            "redeemed_at": datetime.now(UTC).isoformat(), "offline": True})])

    def refund(self, amount: int, refund: int) -> None:
        payment_id = self.key()
        self.server([("payment.requested", {"payment_id": payment_id, "order_ref": payment_id, "amount_minor": amount,
                                            "currency": "CNY", "method": "card", "provider": "card"}),
                     ("payment.captured", {"payment_id": payment_id, "amount_minor": amount, "source": "counter"})])
        if refund:
            self.server([("refund.issued", {"refund_id": self.key(), "payment_id": payment_id, "amount_minor": refund,
                                            "at": datetime.now(UTC).isoformat()})])


# ---- the brute force ----


def decoded(ledger: Ledger) -> list[tuple[Any, Any, str]]:
    """(body, data, terminal) of every entry in the log."""
    out = []
    for entry in ledger.iter_entries("s"):
        body = decode_body(entry.body.encode())
        _, data = decode_data(body, entry.terminal_id)
        out.append((body, data, entry.terminal_id))
    return out


def local_day(at: datetime) -> str:
    return at.astimezone(ZONE).date().isoformat()


def brute_sales(log: list[tuple[Any, Any, str]], start: str, end: str, group_by: str) -> dict[str, Any]:
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    totals = [0, 0, 0, 0, 0, 0]
    category: dict[str, str] = {}
    for body, data, terminal in log:
        if body.type == "menu.item_upserted":
            category[data.sku] = data.category
        if body.type in ("refund.issued", "stored_value.refunded") and start <= local_day(body.at) <= end:
            totals[5] += data.amount_minor
        if body.type != "sale.completed" or not start <= local_day(body.at) <= end:
            continue
        local = body.at.astimezone(ZONE)
        gross = sum(x.qty * x.unit_price_minor for x in data.lines)
        items = sum(x.qty for x in data.lines)
        for index, value in enumerate((1, items, gross, data.discount_minor, gross - data.discount_minor)):
            totals[index] += value
        whole = {"day": [local.date().isoformat()], "hour": [f"{local.hour:02d}"], "terminal": [terminal],
                 "channel": [data.channel]}
        if group_by in whole:
            for index, value in enumerate((1, items, gross, data.discount_minor, gross - data.discount_minor)):
                rows[whole[group_by][0]][index] += value
        elif group_by in ("item", "category"):
            keys = {(x.sku if group_by == "item" else category.get(x.sku, "")) for x in data.lines}
            for key in keys:
                mine = [x for x in data.lines if (x.sku if group_by == "item" else category.get(x.sku, "")) == key]
                amount = sum(x.qty * x.unit_price_minor for x in mine)
                for index, value in enumerate((1, sum(x.qty for x in mine), amount, 0, amount)):
                    rows[key][index] += value
        else:
            for method in {t.method for t in data.tenders}:
                net = sum(t.amount_minor - t.change_minor for t in data.tenders if t.method == method)
                for index, value in enumerate((1, items, gross, data.discount_minor, net)):
                    rows[method][index] += value
    names = ("orders", "items", "gross_minor", "discount_minor", "net_minor")
    return {"rows": [{"key": k, **dict(zip(names, v, strict=True))} for k, v in sorted(rows.items())],
            "totals": {**dict(zip(names, totals[:5], strict=True)), "refunds_minor": totals[5]}}


def brute_members(ledger: Ledger, log: list[tuple[Any, Any, str]], start: str, end: str) -> dict[str, Any]:
    days: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for body, data, _ in log:
        if body.type == "sale.completed" and data.member_id is not None:
            days[data.member_id].append((local_day(body.at), data.total_minor))
    active = new = repeat = 0
    segments = dict.fromkeys(reports.SEGMENTS, 0)
    for sales in days.values():
        inside = [(d, n) for d, n in sales if start <= d <= end]
        if not inside:
            continue
        active += 1
        new += min(d for d, _ in sales) >= start
        repeat += len(inside) >= 2
        recency = (date.fromisoformat(end) - date.fromisoformat(max(d for d, _ in inside))).days
        segments[reports.segment(*reports.rfm(recency, len(inside), sum(n for _, n in inside)))] += 1
    tiers: dict[str, int] = defaultdict(int)
    for member in members_of(ledger.store("s")).members.values():
        tiers[member.tier] += 1
    return {"active_members": active, "new_members": new, "returning_members": active - new,
            "repurchase_rate": round(repeat / active, 4) if active else 0.0, "segments": segments,
            "tiers": dict(sorted(tiers.items()))}


def brute_campaigns(ledger: Ledger, log: list[tuple[Any, Any, str]]) -> list[dict[str, Any]]:
    net = defaultdict(int)
    for body, data, _ in log:
        if body.type == "sale.completed":
            net[str(data.order_id)] += data.total_minor
    feature = coupons_of(ledger.store("s"))
    out = []
    for campaign_id, campaign in sorted(feature.campaigns.items()):
        valid = [r for c in feature.coupons.values() if c.campaign_id == campaign_id
                 for r in c.redemptions if not r.broke]
        issued = campaign.issued
        out.append({"campaign_id": campaign_id, "name": campaign.spec.name, "kind": campaign.spec.kind,
                    "issued": issued, "redeemed": campaign.redeemed,
                    "redemption_rate": round(campaign.redeemed / issued, 4) if issued else 0.0,
                    "discount_minor": sum(r.discount_minor for r in valid),
                    "revenue_minor": sum(net.get(ref, 0) for ref in {r.order_ref for r in valid})})
    return out


def brute_stored_value(ledger: Ledger, log: list[tuple[Any, Any, str]], start: str, end: str) -> dict[str, Any]:
    principal = bonus = 0
    for account, _, debit, credit in ledger.balances("s"):
        if account.startswith("liability:stored_value:"):
            if account.endswith(":principal"):
                principal += credit - debit
            elif account.endswith(":bonus"):
                bonus += credit - debit
    flows = defaultdict(int)
    for body, data, _ in log:
        if not start <= local_day(body.at) <= end:
            continue
        if body.type == "stored_value.recharged":
            flows["recharged_minor"] += data.paid_minor
            flows["bonus_granted_minor"] += data.bonus_minor
        elif body.type == "stored_value.spent":
            flows["spent_minor"] += data.amount_minor
        elif body.type == "stored_value.refunded":
            flows["refunded_minor"] += data.amount_minor
        elif body.type == "stored_value.recharge_refunded":
            flows["recharge_refunded_minor"] += data.principal_returned_minor
            flows["bonus_voided_minor"] += data.bonus_voided_minor
    names = ("recharged_minor", "bonus_granted_minor", "spent_minor", "refunded_minor", "recharge_refunded_minor",
             "bonus_voided_minor")
    return {"outstanding_principal_minor": principal, "outstanding_bonus_minor": bonus,
            "outstanding_minor": principal + bonus, **{n: flows[n] for n in names}}


def without_position(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "as_of_position"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=actions(), split=st.integers(0, 40), batch_events=st.integers(1, 30),
       window=st.tuples(st.integers(0, 6), st.integers(0, 6)))
def test_every_report_equals_a_brute_force_fold_of_the_log(
        actions: list[tuple[Any, ...]], split: int, batch_events: int, window: tuple[int, int]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        database = str(Path(directory) / "ledger.sqlite3")
        ledger = Ledger(database, SERVER_SEED)
        db = ReadDatabase(database)
        try:
            world = World(ledger)
            runner = ProjectionRunner(db, LedgerLog(ledger), batch_events=batch_events)
            for index, action in enumerate(actions):
                if index == split:
                    runner.run_store("s")  # part of the stream first: incremental equals from zero
                world.do(action)
            runner.run_store("s")
            log = decoded(ledger)
            length = ledger.chain("s")[1]
            first = (START + timedelta(days=min(window))).date()
            last = first + timedelta(days=abs(window[0] - window[1]))
            today = datetime.now(ZONE).date()
            with db.read() as sql:
                for group_by in reports.GROUP_BY:
                    report = reports.sales(sql, "s", first, last, group_by)
                    assert report["as_of_position"] == length
                    assert without_position(report) == brute_sales(log, first.isoformat(), last.isoformat(),
                                                                    group_by), group_by
                assert without_position(reports.members(sql, "s", first, last)) == brute_members(
                    ledger, log, first.isoformat(), last.isoformat())
                assert reports.campaigns(sql, "s")["campaigns"] == brute_campaigns(ledger, log)
                for start, end in ((first, last), (today - timedelta(days=1), today)):
                    assert without_position(reports.stored_value(sql, "s", start, end)) == brute_stored_value(
                        ledger, log, start.isoformat(), end.isoformat())
                refunds = reports.sales(sql, "s", today - timedelta(days=1), today, "day")["totals"]["refunds_minor"]
                assert refunds == brute_sales(log, (today - timedelta(days=1)).isoformat(), today.isoformat(),
                                              "day")["totals"]["refunds_minor"]
        finally:
            db.close()
            ledger.close()


def test_only_the_valid_redemption_counts_for_its_campaign(tmp_path: Path) -> None:
    """Given a coupon redeemed twice offline, a voided one redeemed, redemptions before and after
    validity: the campaign counts one redemption, its discount and its order's revenue."""
    database = str(tmp_path / "ledger.sqlite3")
    ledger = Ledger(database, SERVER_SEED)
    db = ReadDatabase(database)
    try:
        world = World(ledger)
        world.sale(0, [("A", 2, 1000)], 10, ["wechat"], 0, None, "counter", 0)
        order = world.orders[-1]
        for _ in range(3):
            world.do(("issue", "c1", None))
        first, voided, late = world.coupons
        now = datetime.now(UTC)

        def redeem(coupon_id: str, discount: int, at: datetime) -> None:
            world.server([("coupon.redeemed", {
                "coupon_id": coupon_id, "redemption_id": world.key(), "order_ref": order, "currency": "CNY",
                "discount_minor": discount, "redeemed_at": at.isoformat(), "offline": True})])

        redeem(first, 200, now)
        redeem(first, 300, now)  # the second redemption of one coupon: a conflict
        world.do(("void", 1))
        redeem(voided, 400, now)  # redeemed when void
        redeem(late, 500, now + timedelta(days=60))  # after the campaign ended
        redeem(late, 600, now - timedelta(days=3))  # before it started
        conflicts = [b for b, _, _ in decoded(ledger) if b.type == "conflict.detected"]
        assert len(conflicts) == 4
        ProjectionRunner(db, LedgerLog(ledger)).run_store("s")
        with db.read() as sql:
            campaigns = reports.campaigns(sql, "s")["campaigns"]
        c1 = campaigns[0]
        assert (c1["issued"], c1["redeemed"], c1["discount_minor"], c1["revenue_minor"]) == (3, 1, 200, 1800)
        assert c1["redemption_rate"] == 0.3333
        assert campaigns == brute_campaigns(ledger, decoded(ledger))
    finally:
        db.close()
        ledger.close()
