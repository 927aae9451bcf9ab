"""Tests of cpimgw.store.sqlite: the shared IStore contract, plus what only SQLite does."""

from __future__ import annotations

import os
import sqlite3

from twisted.internet.defer import gatherResults, inlineCallbacks
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
            self.assertEqual(tables, {"schema_version", "subscriptions", "presence", "duplicate_keys",
                                      "adapter_values"})
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
    def test_one_turn_is_one_transaction_and_remember_stays_atomic(self):
        group = self.store._group
        before = group.groups
        answers = yield gatherResults(
            [self.store.remember(f"k{i}", 100.0, 50.0) for i in range(50)]
            + [self.store.remember("k7", 100.0, 50.0), self.store.get_value("s", "k", now=0.0)])
        self.assertEqual(answers, [True] * 50 + [False, None])
        self.assertEqual(group.groups - before, 1)
        self.assertEqual((yield self.store.counts())["duplicate_keys"], 50)

    @inlineCallbacks
    def test_failing_operation_rolls_back_alone(self):
        def broken(cursor):  # type: ignore[no-untyped-def]
            cursor.execute("INSERT INTO duplicate_keys (key, expires_at) VALUES ('half-done', 1.0)")
            raise ValueError("bad operation")

        kept = self.store.put_value("s", "kept", b"1")
        failing = self.store._writes().runInteraction(broken)
        after = self.store.put_value("s", "after", b"2")
        self.assertIsNone((yield kept))
        yield self.assertFailure(failing, ValueError)
        self.assertIsNone((yield after))
        self.assertEqual((yield self.store.get_values("s", now=0.0)), {"after": b"2", "kept": b"1"})
        self.assertEqual((yield self.store.counts())["duplicate_keys"], 0)

    @inlineCallbacks
    def test_close_finishes_queued_writes(self):
        self.store.put_value("s", "k", b"queued")
        yield self.store.close()
        self.store = self.reopen()
        yield self.store.open()
        self.assertEqual((yield self.store.get_value("s", "k", now=0.0)), b"queued")

    @inlineCallbacks
    def test_closed_store_refuses(self):
        yield self.store.close()
        self.assertRaises(RuntimeError, self.store.get_subscription, "s1")
        yield self.store.open()


#: The tables exactly as schema version 1 (cpimgw before adapter state) wrote them.
SCHEMA_1 = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version (version) VALUES (1)",
    """CREATE TABLE subscriptions (
        subscript_id TEXT PRIMARY KEY, watcher TEXT NOT NULL, target TEXT NOT NULL,
        watcher_origin TEXT NOT NULL, watcher_instance TEXT, expires_at REAL NOT NULL, state TEXT NOT NULL,
        created_at REAL NOT NULL, last_document_digest TEXT, target_origin TEXT NOT NULL DEFAULT '')""",
    """CREATE TABLE presence (
        presentity TEXT NOT NULL, instance TEXT NOT NULL, media_type TEXT NOT NULL, parameters TEXT NOT NULL,
        body BLOB NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (presentity, instance))""",
    "CREATE TABLE duplicate_keys (key TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
    "INSERT INTO presence VALUES ('pres:fred@beta.example', 'desk', 'application/pidf+xml', '[]', x'3c702f3e', 7.0)",
    "INSERT INTO duplicate_keys VALUES ('old-key', 1000.0)",
)


class MigrationTests(unittest.TestCase):
    @inlineCallbacks
    def test_version_1_migrated_in_place(self):
        path = os.path.abspath(self.mktemp()) + ".sqlite"
        connection = sqlite3.connect(path)
        for statement in SCHEMA_1:
            connection.execute(statement)
        connection.commit()
        connection.close()
        store = SQLiteStore(path)
        yield store.open()
        try:
            # The old data is all there, and the new table works.
            presence = yield store.get_presence("pres:fred@beta.example")
            self.assertEqual([(i, c.body) for i, c in presence.items()], [("desk", b"<p/>")])
            self.assertFalse((yield store.remember("old-key", 10.0, 5.0)))
            yield store.put_value("sip.dialog", "d1", b"state", expires_at=99.0)
            self.assertEqual((yield store.get_value("sip.dialog", "d1", now=1.0)), b"state")
        finally:
            yield store.close()
        connection = sqlite3.connect(path)
        try:
            self.assertEqual(connection.execute("SELECT version FROM schema_version").fetchall(), [(SCHEMA_VERSION,)])
            columns = [row[1] for row in connection.execute("PRAGMA table_info(presence)")]
            self.assertIn("expires_at", columns)
        finally:
            connection.close()
        # Opening the migrated file again changes nothing.
        again = SQLiteStore(path)
        yield again.open()
        self.assertEqual((yield again.get_values("sip.dialog", now=1.0)), {"d1": b"state"})
        yield again.close()
