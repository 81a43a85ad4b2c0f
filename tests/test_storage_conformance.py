"""`eventsourcing`'s own recorder contract, run against our recorders on both backends.

The base classes are reached through the module so pytest does not collect them.
"""

from __future__ import annotations

import os
import tempfile

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from eventsourcing.tests import persistence

from pos_ledger.storage import PostgresLedgerRecorder, SQLiteLedgerRecorder
from tests.conftest import PG_ADMIN_URL


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
        pytest.skip("throughput is measured in benchmarks/, not asserted in tests")


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
        pytest.skip("throughput is measured in benchmarks/, not asserted in tests")


