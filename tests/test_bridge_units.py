"""Bridge parts without a server: rendering read back by the independent decoder, printer URIs and
the TCP transport against the fake printer, and the journal's exactly-once rules (with hypothesis)."""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware_bridge import render
from hardware_bridge.journal import Journal, JournalError, NewJob
from hardware_bridge.printers import (
    BadPrinterUri,
    DummyPrinter,
    EscposDevicePrinter,
    FilePrinter,
    OutcomeUnknown,
    PrinterOffline,
    TcpPrinter,
    open_printer,
)
from pos_ledger.money import format_minor
from tests.escpos_support import FakePrinter, decode

STORE = {"name": "街角咖啡 Corner Café", "currency": "CNY"}
META = {"position": 42, "at": "2026-12-02T10:00:00+08:00", "terminal_id": "t1", "hash": "ab" * 32}


def sale(currency: str = "CNY", **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "order_id": "o-1", "currency": currency, "discount_minor": 300, "total_minor": 3150,
        "lines": [{"sku": "LATTE", "name": "拿铁 Latte", "qty": 1, "unit_price_minor": 2800},
                  {"sku": "TART", "name": "蛋挞", "qty": 1, "unit_price_minor": 650}],
        "tenders": [{"method": "wechat", "amount_minor": 3150}], "member_id": "m-7"}
    data.update(overrides)
    return data


def test_receipt_reads_back_with_every_part() -> None:
    extras = {"coupons": [200], "points": 31, "balance_spent": 0}
    decoded = decode(render.receipt(STORE, sale(), META, extras, "https://x/v1/stores/s1/receipts/42?hash=ab"))
    for fragment in ("街角咖啡", "拿铁 Latte", "蛋挞", "28.00", "6.50", "小计 Subtotal", "34.50", "-3.00",
                     "Coupon saving", "-2.00", "TOTAL", "31.50", "WeChat Pay", "m-7", "Points earned: 31",
                     "Chain position 42"):
        assert fragment in decoded.text, fragment
    assert decoded.qr_codes == ["https://x/v1/stores/s1/receipts/42?hash=ab"]
    assert decoded.cuts == 1 and decoded.drawer_pulses == []
    assert any("TOTAL" in line for line in decoded.bold_text)


@pytest.mark.parametrize(("currency", "printed"), [("CNY", "31.50"), ("JPY", "3150"), ("KWD", "3.150")])
def test_amounts_use_the_currencys_decimals(currency: str, printed: str) -> None:
    decoded = decode(render.receipt(STORE, sale(currency, member_id=None), META, {}, "u"))
    assert printed in decoded.text


def test_cash_kicks_the_drawer_and_shows_change() -> None:
    cash = sale(tenders=[{"method": "cash", "amount_minor": 5000, "change_minor": 1850}], member_id=None)
    decoded = decode(render.receipt(STORE, cash, META, {}, "u"))
    assert len(decoded.drawer_pulses) == 1 and "18.50" in decoded.text and "50.00" in decoded.text


def test_slips_tickets_and_reports() -> None:
    refund = decode(render.refund_slip(STORE, {"refund_id": "r1", "payment_id": "p1", "amount_minor": 1200,
                                               "reason": "顾客退货"}, META, "CNY", cash=True))
    assert "REFUND" in refund.text and "12.00" in refund.text and "顾客退货" in refund.text
    assert len(refund.drawer_pulses) == 1
    recharge = decode(render.recharge_slip(STORE, {"member_id": "m-1", "currency": "CNY", "paid_minor": 10000,
                                                   "bonus_minor": 2000, "rule_name": "充100送20",
                                                   "method": "wechat"}, META))
    assert "100.00" in recharge.text and "20.00" in recharge.text and "120.00" in recharge.text
    assert recharge.drawer_pulses == []
    order = {"order_id": "0123456789", "channel": "eleme", "channel_order_id": "E-9",
             "fulfillment": {"type": "delivery", "address": "x"}}
    ticket = decode(render.kitchen_ticket(STORE, order, "kitchen:coffee",
                                          [{"qty": 2, "name": "拿铁", "note": "去冰"}], 7))
    assert "饿了么" in ticket.text and "2 x 拿铁" in ticket.text and "去冰" in ticket.text and "DELIVERY" in ticket.text
    report = decode(render.shift_report(STORE, {"kind": "Z", "currency": "CNY", "shift_id": "sh1", "sales_count": 3,
                                                "tenders": {"cash": 4500}, "refunds": {}, "cash_expected_minor": 14500,
                                                "counted_minor": 14500, "difference_minor": 0,
                                                "chain_position": 9, "chain_head": "cd" * 32}))
    assert "Z REPORT" in report.text and "45.00" in report.text and "145.00" in report.text


def test_a_reprint_carries_its_mark_and_the_same_content() -> None:
    original = render.receipt(STORE, sale(), META, {}, "u")
    marked = decode(render.mark_reprint(original, 3))
    assert "REPRINT 2" in marked.text
    assert marked.text.endswith(decode(original).text)


@given(st.text(alphabet=st.sampled_from("拿铁咖啡蛋挞奶茶珍珠少糖去冰abcXYZ 0123-"), max_size=40),
       st.integers(min_value=0, max_value=10**12))
def test_any_chinese_name_and_amount_read_back(name: str, amount: int) -> None:
    data = sale(lines=[{"sku": "X", "name": name or "x", "qty": 1, "unit_price_minor": amount}], discount_minor=0,
                total_minor=amount, tenders=[], member_id=None)
    decoded = decode(render.receipt(STORE, data, META, {}, "u"))
    assert render.clip(name or "x", render.LINE_WIDTH) in decoded.text
    assert format_minor(amount, "CNY") in decoded.text


def test_printer_uris() -> None:
    assert isinstance(open_printer("tcp://10.0.0.5:9100"), TcpPrinter)
    assert isinstance(open_printer("tcp://[::1]:9100"), TcpPrinter)
    usb = open_printer("usb:04b8:0202")
    assert isinstance(usb, EscposDevicePrinter) and usb.arguments == {"idVendor": 0x04B8, "idProduct": 0x0202}
    serial = open_printer("serial:/dev/ttyUSB0")
    assert isinstance(serial, EscposDevicePrinter) and serial.arguments == {"devfile": "/dev/ttyUSB0"}
    assert isinstance(open_printer("file:/tmp/receipts.bin"), FilePrinter)
    assert isinstance(open_printer("dummy"), DummyPrinter)
    for bad in ("", "tcp://x", "tcp://x:0", "tcp://x:70000", "usb:1", "usb:xyz:1", "serial:/tmp/a", "lp0", "file:"):
        with pytest.raises(BadPrinterUri):
            open_printer(bad)


def test_tcp_transport_confirms_refuses_and_detects_a_drop() -> None:
    fake = FakePrinter()
    try:
        printer = TcpPrinter(fake.uri, "127.0.0.1", fake.port, confirm_timeout_s=5)
        started: list[bool] = []
        printer.send(b"\x1b@job-1\n", before_bytes=lambda: started.append(True))
        assert fake.wait_for_jobs(1) == [b"\x1b@job-1\n"] and started == [True]
        fake.switch_off()
        started.clear()
        with pytest.raises(PrinterOffline):
            printer.send(b"\x1b@job-2\n", before_bytes=lambda: started.append(True))
        assert started == []  # nothing left: safe to retry
        fake.switch_on()
        fake.drop_after_bytes = 4
        with pytest.raises(OutcomeUnknown):
            printer.send(b"\x1b@job-3 is long\n" * 10)
        assert fake.partial and len(fake.jobs) == 1
    finally:
        fake.close()


def test_file_printer_appends_jobs(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    printer = open_printer(f"file:{target}")
    printer.send(b"a")
    printer.send(b"b")
    assert target.read_bytes() == b"ab"
    with pytest.raises(PrinterOffline):
        open_printer(f"file:{tmp_path}/missing/dir/out.bin").send(b"x")


def _job(position: int) -> NewJob:
    return NewJob("receipt", "receipt", b"\x1b@\x1c&" + f"job {position}\n".encode())


def test_journal_states_and_reprint(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    assert journal.cursor() is None
    journal.start_at(10)
    journal.start_at(99)  # only the first start counts
    assert journal.cursor() == 10
    journal.record(11, [_job(11)])
    journal.record(11, [_job(11)])  # the same entry again (a restart re-reads it): one job
    assert [(j.position, j.state) for j in journal.jobs()] == [(11, "queued")]
    job = journal.next_queued()
    assert job is not None
    with pytest.raises(JournalError):
        journal.mark_confirmed(job.id)  # queued -> confirmed skips sent
    journal.mark_sent(job.id)
    assert journal.next_queued() is None
    journal.mark_confirmed(job.id)
    assert [j.report for j in journal.to_report()] == ["completed"]
    journal.reported(job.id, "completed")
    assert journal.to_report() == []
    [copy] = journal.reprint(11)
    assert (copy.copy, copy.state) == (2, "queued") and b"REPRINT 1" in copy.payload
    assert journal.reprint(12) == []
    journal.bind("s1", "tcp://a:9100")
    with pytest.raises(JournalError):
        journal.bind("s1", "tcp://b:9100")
    journal.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["record", "print", "crash_mid_job", "crash", "printer_off"]), max_size=40))
def test_a_job_is_never_sent_twice_whatever_the_crashes(operations: list[str]) -> None:
    """Random crashes between any two steps: every recorded job ends confirmed or unknown after a
    drain, and no job's bytes are sent twice (a reprint is a new copy, never the same job)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "j.sqlite3"
        journal = Journal(path)
        positions = itertools.count(1)
        sent: Counter[tuple[int, str, int]] = Counter()
        recorded: list[int] = []
        mid_job_crashes = 0

        def send_next(crash: bool) -> bool:
            job = journal.next_queued()
            if job is None:
                return False
            journal.mark_sent(job.id)
            sent[(job.position, job.station, job.copy)] += 1
            if not crash:
                journal.mark_confirmed(job.id)
            return True

        for operation in operations:
            if operation == "record":
                position = next(positions)
                journal.record(position, [_job(position)])
                recorded.append(position)
            elif operation == "print":
                send_next(crash=False)
            elif operation == "printer_off":
                job = journal.next_queued()
                if job is not None:
                    journal.mark_offline(job.id, "refused")
            elif operation in ("crash", "crash_mid_job"):
                if operation == "crash_mid_job" and send_next(crash=True):
                    mid_job_crashes += 1
                journal.close()
                journal = Journal(path)
                journal.recover()
        while send_next(crash=False):
            pass
        jobs = journal.jobs()
        journal.close()
        assert sorted(j.position for j in jobs) == recorded
        assert all(count == 1 for count in sent.values())
        assert {j.state for j in jobs} <= {"confirmed", "unknown"}
        assert sum(j.state == "unknown" for j in jobs) == mid_job_crashes
