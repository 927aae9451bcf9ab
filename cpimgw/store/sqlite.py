"""The embedded default ``IStore``: SQLite through ``twisted.enterprise.adbapi``.

RFC 3859 §4.4.3 asks that running subscriptions and presence data be kept in
persistent storage; the duplicate keys of RFC 3860 messages are kept too, so
that a restart neither forgets a subscription nor delivers a message twice
(lessons.md #2-#4).  One connection (``cp_min=1, cp_max=1``) in a thread of
the reactor's pool, the database in WAL mode, a ``schema_version`` table
checked on :meth:`SQLiteStore.open`.

It follows the same contract as :class:`cpimgw.store.memory.MemoryStore`
(the two pass one shared test suite).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import Content
from cpimgw.cpim.uri import CPIMURI
from cpimgw.interfaces import IStore
from cpimgw.store.memory import order_presence
from cpimgw.store.records import PresenceRecord, SubscriptionRecord, principal_key

log = Logger()

#: The version of the tables this module writes.
SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS subscriptions (
        subscript_id TEXT PRIMARY KEY,
        watcher TEXT NOT NULL,
        target TEXT NOT NULL,
        watcher_origin TEXT NOT NULL,
        watcher_instance TEXT,
        expires_at REAL NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_document_digest TEXT,
        target_origin TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS subscriptions_target ON subscriptions (target)",
    "CREATE INDEX IF NOT EXISTS subscriptions_watcher ON subscriptions (watcher)",
    """CREATE TABLE IF NOT EXISTS presence (
        presentity TEXT NOT NULL,
        instance TEXT NOT NULL,
        media_type TEXT NOT NULL,
        parameters TEXT NOT NULL,
        body BLOB NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (presentity, instance)
    )""",
    """CREATE TABLE IF NOT EXISTS duplicate_keys (
        key TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS duplicate_keys_expiry ON duplicate_keys (expires_at)",
)

_SUBSCRIPTION_COLUMNS = (
    "subscript_id, watcher, target, watcher_origin, watcher_instance, expires_at, state, created_at, "
    "last_document_digest, target_origin"
)


def _record(row: tuple[Any, ...]) -> SubscriptionRecord:
    return SubscriptionRecord(
        subscript_id=row[0], watcher=row[1], target=row[2], watcher_origin=row[3], watcher_instance=row[4],
        expires_at=float(row[5]), state=row[6], created_at=float(row[7]), last_document_digest=row[8],
        target_origin=row[9],
    )


@implementer(IStore)
class SQLiteStore:
    """Subscriptions, presence and duplicate keys in one SQLite file.

    :param path: the database file (``":memory:"`` works, but forgets on close).
    :param reactor: the reactor whose thread pool runs the queries (the
        global one by default).
    :param synchronous: SQLite's ``PRAGMA synchronous`` (``"NORMAL"``: with
        WAL, durable across a crash of the process; ``"FULL"`` also across
        power loss, at about a sixth of the commit rate).
    """

    def __init__(self, path: str, *, reactor: Any = None, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}",
                              key="store.synchronous")
        self.path = path
        self.synchronous = synchronous.upper()
        self._reactor = reactor
        self.pool: adbapi.ConnectionPool | None = None
        self._opening: Deferred[None] | None = None

    # -- lifecycle ---------------------------------------------------------

    def _configure(self, connection: sqlite3.Connection) -> None:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self.synchronous}")

    def _create(self, cursor: sqlite3.Cursor) -> int:
        for statement in _SCHEMA:
            cursor.execute(statement)
        cursor.execute("SELECT version FROM schema_version")
        rows = cursor.fetchall()
        if not rows:
            cursor.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            return SCHEMA_VERSION
        version = max(row[0] for row in rows)
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the database {self.path} has schema version {version}; "
                f"this cpimgw knows up to {SCHEMA_VERSION}",
                key="store.path",
            )
        return version

    def open(self) -> Deferred[None]:
        """Connect and create the tables; calling it again while open does nothing."""
        if self.pool is not None:
            return self._opening if self._opening is not None else succeed(None)
        kwargs: dict[str, Any] = {"check_same_thread": False, "cp_min": 1, "cp_max": 1,
                                  "cp_openfun": self._configure}
        if self._reactor is not None:
            kwargs["cp_reactor"] = self._reactor
        self.pool = adbapi.ConnectionPool("sqlite3", self.path, **kwargs)
        opening = self.pool.runInteraction(self._create)

        def opened(version: int) -> None:
            self._opening = None
            log.info("SQLite store {path} open (schema {version}, WAL)", path=self.path, version=version)

        def failed(reason: Any) -> Any:
            self._opening = None
            if self.pool is not None:
                self.pool.close()
                self.pool = None
            return reason

        self._opening = opening.addCallbacks(opened, failed)
        return self._opening

    def close(self) -> Deferred[None]:
        """Close the connection; calling it again does nothing."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        return succeed(None)

    def _pool(self) -> adbapi.ConnectionPool:
        if self.pool is None:
            raise RuntimeError(f"SQLite store {self.path} is not open")
        return self.pool

    # -- subscriptions -----------------------------------------------------

    def put_subscription(self, record: SubscriptionRecord) -> Deferred[None]:
        if not isinstance(record, SubscriptionRecord):
            raise TypeError(f"expected a SubscriptionRecord, got {type(record).__name__}")
        return self._pool().runOperation(
            f"INSERT OR REPLACE INTO subscriptions ({_SUBSCRIPTION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (record.subscript_id, record.watcher, record.target, record.watcher_origin, record.watcher_instance,
             record.expires_at, record.state, record.created_at, record.last_document_digest,
             record.target_origin),
        )

    def get_subscription(self, subscript_id: str) -> Deferred[SubscriptionRecord | None]:
        return self._pool().runQuery(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE subscript_id = ?", (subscript_id,)
        ).addCallback(lambda rows: _record(rows[0]) if rows else None)

    def remove_subscription(self, subscript_id: str) -> Deferred[bool]:
        def remove(cursor: sqlite3.Cursor) -> bool:
            cursor.execute("DELETE FROM subscriptions WHERE subscript_id = ?", (subscript_id,))
            return cursor.rowcount > 0

        return self._pool().runInteraction(remove)

    def subscriptions(
        self, target: CPIMURI | str | None = None, watcher: CPIMURI | str | None = None
    ) -> Deferred[list[SubscriptionRecord]]:
        clauses, values = [], []
        if target is not None:
            clauses.append("target = ?")
            values.append(principal_key(target))
        if watcher is not None:
            clauses.append("watcher = ?")
            values.append(principal_key(watcher))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._pool().runQuery(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions{where} ORDER BY created_at, subscript_id",
            tuple(values),
        ).addCallback(lambda rows: [_record(row) for row in rows])

    # -- presence ----------------------------------------------------------

    def put_presence(
        self, presentity: CPIMURI | str, instance: str | None, document: Content, updated_at: float
    ) -> Deferred[None]:
        return self._pool().runOperation(
            "INSERT OR REPLACE INTO presence (presentity, instance, media_type, parameters, body, updated_at) "
            "VALUES (?,?,?,?,?,?)",
            (principal_key(presentity), instance or "", document.media_type,
             json.dumps([list(pair) for pair in document.parameters]), sqlite3.Binary(bytes(document.body)),
             float(updated_at)),
        )

    def get_presence(self, presentity: CPIMURI | str) -> Deferred[dict[str, Content]]:
        key = principal_key(presentity)

        def decode(rows: list[tuple[Any, ...]]) -> dict[str, Content]:
            return order_presence(
                PresenceRecord(key, row[0], row[1], bytes(row[3]), float(row[4]),
                               tuple(tuple(pair) for pair in json.loads(row[2])))
                for row in rows
            )

        return self._pool().runQuery(
            "SELECT instance, media_type, parameters, body, updated_at FROM presence WHERE presentity = ?", (key,)
        ).addCallback(decode)

    def remove_presence(self, presentity: CPIMURI | str, instance: str | None) -> Deferred[bool]:
        key = principal_key(presentity)

        def remove(cursor: sqlite3.Cursor) -> bool:
            cursor.execute("DELETE FROM presence WHERE presentity = ? AND instance = ?", (key, instance or ""))
            return cursor.rowcount > 0

        return self._pool().runInteraction(remove)

    # -- duplicate keys ----------------------------------------------------

    def remember(self, key: str, now: float, ttl: float) -> Deferred[bool]:
        def remember(cursor: sqlite3.Cursor) -> bool:
            cursor.execute("SELECT expires_at FROM duplicate_keys WHERE key = ?", (key,))
            row = cursor.fetchone()
            if row is not None and row[0] > now:
                return False
            cursor.execute("INSERT OR REPLACE INTO duplicate_keys (key, expires_at) VALUES (?, ?)", (key, now + ttl))
            return True

        return self._pool().runInteraction(remember)

    def forget(self, key: str) -> Deferred[bool]:
        """Drop one duplicate key (the bus does so when the message was not delivered)."""

        def forget(cursor: sqlite3.Cursor) -> bool:
            cursor.execute("DELETE FROM duplicate_keys WHERE key = ?", (key,))
            return cursor.rowcount > 0

        return self._pool().runInteraction(forget)

    def expire(self, now: float) -> Deferred[int]:
        def expire(cursor: sqlite3.Cursor) -> int:
            cursor.execute("DELETE FROM duplicate_keys WHERE expires_at <= ?", (now,))
            return cursor.rowcount

        return self._pool().runInteraction(expire)

    def counts(self) -> Deferred[dict[str, int]]:
        """How many subscriptions, presence instances and duplicate keys are held."""

        def count(cursor: sqlite3.Cursor) -> dict[str, int]:
            result = {}
            for name, table in (("subscriptions", "subscriptions"), ("presence", "presence"),
                                ("duplicate_keys", "duplicate_keys")):
                cursor.execute(f"SELECT COUNT(*) FROM {table}")
                result[name] = cursor.fetchone()[0]
            return result

        return self._pool().runInteraction(count)


__all__ = ["SQLiteStore", "SCHEMA_VERSION"]
