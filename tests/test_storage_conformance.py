"""`eventsourcing`'s own recorder contract, run against our recorders on both backends.

The base classes are reached through the module so pytest does not collect them. The contract's
`test_concurrent_throughput` only prints a rate; here it checks what concurrent writers must get
right instead (throughput is measured in benchmarks/, not asserted in tests).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from eventsourcing.tests import persistence

from pos_ledger.storage import BalanceDelta, PostgresLedgerRecorder, SQLiteLedgerRecorder
from tests.conftest import PG_ADMIN_URL

JOBS = 12
EVENTS_PER_JOB = 25
WORKERS = 4


def check_concurrent_writers(recorder: SQLiteLedgerRecorder | PostgresLedgerRecorder) -> None:
    """Concurrent inserts: each job's events are recorded once, the notification ids each insert returns
    are the ids its own events got (unique across jobs), and no balance delta is lost."""

    def job(number: int) -> tuple[uuid.UUID, list[int]]:
        originator_id = uuid.uuid4()
        events = [StoredEvent(originator_id=originator_id, originator_version=version, topic="topic",
                              state=f"{number}:{version}".encode()) for version in range(1, EVENTS_PER_JOB + 1)]
        deltas = [BalanceDelta("s", "asset:cash:t1", "CNY", number + 1, 0),
                  BalanceDelta("s", "revenue:sales", "CNY", 0, number + 1)]
        returned = recorder.insert_events(events, balance_deltas=deltas)
        return originator_id, list(returned or [])

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        done = list(pool.map(job, range(JOBS)))
    notifications = recorder.select_notifications(start=None, limit=JOBS * EVENTS_PER_JOB + 10)
    assert len(notifications) == JOBS * EVENTS_PER_JOB
    by_id = {n.id: n for n in notifications}
    assert len(by_id) == len(notifications)
    for originator_id, ids in done:
        assert len(ids) == EVENTS_PER_JOB
        assert [(by_id[i].originator_id, by_id[i].originator_version) for i in ids] == [
            (originator_id, version) for version in range(1, EVENTS_PER_JOB + 1)]
    assert sorted(i for _, ids in done for i in ids) == sorted(by_id)
    total = sum(range(1, JOBS + 1))
    assert sorted(recorder.select_balances("s")) == [("asset:cash:t1", "CNY", total, 0),
                                                     ("revenue:sales", "CNY", 0, total)]


class TestSQLiteLedgerRecorder(persistence.ApplicationRecorderTestCase[SQLiteLedgerRecorder]):
    def setUp(self) -> None:
        self.directory = tempfile.TemporaryDirectory()
        self.db_name = os.path.join(self.directory.name, "conformance.sqlite3")
        super().setUp()

    def tearDown(self) -> None:
        self.directory.cleanup()
        super().tearDown()

    def create_recorder(self) -> SQLiteLedgerRecorder:
        recorder = SQLiteLedgerRecorder(SQLiteDatastore(db_name=self.db_name))
        recorder.create_table()
        return recorder

    def test_concurrent_throughput(self) -> None:
        check_concurrent_writers(self.create_recorder())


@pytest.mark.postgres
class TestPostgresLedgerRecorder(persistence.ApplicationRecorderTestCase[PostgresLedgerRecorder]):
    def setUp(self) -> None:
        import secrets

        self.db_name = f"pos_ledger_conf_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.datastores: list[PostgresDatastore] = []
        super().setUp()

    def tearDown(self) -> None:
        for datastore in self.datastores:
            datastore.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        super().tearDown()

    def create_recorder(self) -> PostgresLedgerRecorder:
        datastore = PostgresDatastore(dbname=self.db_name, host="127.0.0.1", port="5432",
                                      user="postgres", password="", pool_size=5, max_overflow=10)
        self.datastores.append(datastore)
        recorder = PostgresLedgerRecorder(datastore)
        recorder.create_table()
        return recorder

    def test_concurrent_throughput(self) -> None:
        check_concurrent_writers(self.create_recorder())


