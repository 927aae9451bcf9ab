"""Tests of cpimgw.store.sqlite: the shared IStore contract, plus what only SQLite does."""

from __future__ import annotations

import os
import sqlite3

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from cpimgw.cpim.errors import ConfigError
from cpimgw.store.sqlite import SCHEMA_VERSION, SQLiteStore
from tests.store.test_memory import StoreContractMixin, record


class SQLiteStoreTests(StoreContractMixin, unittest.TestCase):
    def make_store(self) -> SQLiteStore:
        self.path = os.path.abspath(self.mktemp()) + ".sqlite"
        return SQLiteStore(self.path)

    def reopen(self) -> SQLiteStore:
        # A new object on the same file: what a new process would build.
        return SQLiteStore(self.path)

    @inlineCallbacks
    def test_wal_and_schema_version(self):
        yield self.store.put_subscription(record())
        yield self.store.close()
        connection = sqlite3.connect(self.path)
        try:
            self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            self.assertEqual(connection.execute("SELECT version FROM schema_version").fetchall(), [(SCHEMA_VERSION,)])
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            self.assertEqual(tables, {"schema_version", "subscriptions", "presence", "duplicate_keys"})
            self.assertEqual(connection.execute("SELECT subscript_id, state FROM subscriptions").fetchall(),
                             [("s1", "active")])
        finally:
            connection.close()
        yield self.store.open()

    @inlineCallbacks
    def test_newer_schema_refused(self):
        yield self.store.close()
        connection = sqlite3.connect(self.path)
        connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
        connection.commit()
        connection.close()
        newer = SQLiteStore(self.path)
        error = yield self.assertFailure(newer.open(), ConfigError)
        self.assertIn(f"schema version {SCHEMA_VERSION + 1}", str(error))
        self.assertIsNone(newer.pool)
        self.flushLoggedErrors(ConfigError)  # adbapi logs the failed interaction too

    def test_bad_synchronous(self) -> None:
        self.assertRaises(ConfigError, SQLiteStore, "x.sqlite", synchronous="sometimes")

    @inlineCallbacks
    def test_closed_store_refuses(self):
        yield self.store.close()
        self.assertRaises(RuntimeError, self.store.get_subscription, "s1")
        yield self.store.open()
