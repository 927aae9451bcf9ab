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
from typing import Any, Callable, Mapping

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import Content
from cpimgw.cpim.uri import CPIMURI
from cpimgw.interfaces import IStore
from cpimgw.store.memory import order_presence
from cpimgw.store.records import (
    PresenceRecord,
    SubscriptionRecord,
    check_value_arguments,
    principal_key,
    store_seconds,
)

log = Logger()

#: The version of the tables this module writes.  Version 2 added the
#: ``adapter_values`` table (adapter state) and ``presence.expires_at``; a
#: version-1 file is migrated in place by :meth:`SQLiteStore.open`.
SCHEMA_VERSION = 2

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
        expires_at REAL,
        PRIMARY KEY (presentity, instance)
    )""",
    """CREATE TABLE IF NOT EXISTS duplicate_keys (
        key TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS duplicate_keys_expiry ON duplicate_keys (expires_at)",
    """CREATE TABLE IF NOT EXISTS adapter_values (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        expires_at REAL,
        PRIMARY KEY (scope, key)
    )""",
    "CREATE INDEX IF NOT EXISTS adapter_values_expiry ON adapter_values (expires_at)",
)


def _migrate(cursor: sqlite3.Cursor, version: int) -> int:
    """Bring the tables of schema ``version`` up to :data:`SCHEMA_VERSION` in place.

    The new tables exist already (``_SCHEMA`` creates what is missing); what
    remains is the columns added to existing tables.
    """
    if version < 2:
        cursor.execute("PRAGMA table_info(presence)")
        if "expires_at" not in {row[1] for row in cursor.fetchall()}:
            cursor.execute("ALTER TABLE presence ADD COLUMN expires_at REAL")
    cursor.execute("DELETE FROM schema_version")
    cursor.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    return SCHEMA_VERSION

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


class _Group:
    """Runs the store operations of one reactor turn in one transaction (group commit).

    Every operation (reads too, so that each sees the writes queued before
    it) is queued; the queue is run by the pool's single connection in one
    ``runInteraction`` on the next reactor turn -- or as soon as the
    transaction under way has committed, so that under load the groups grow
    by themselves.  Each operation runs inside its own ``SAVEPOINT``: one that
    raises is rolled back alone and its Deferred errbacks, the others commit.
    Their Deferreds fire in queue order after the commit, so an answer (a
    ``remember`` that said "new") is only given once it is durable.  The
    atomic check-and-set of ``remember`` holds: the operations of a group run
    one after the other on one connection.
    """

    def __init__(self, store: "SQLiteStore") -> None:
        self.store = store
        self.queue: list[tuple[Callable[[Any], Any], Deferred[Any]]] = []
        self.scheduled: Any = None
        self.running = False
        self.waiting_drain: list[Deferred[None]] = []
        self.groups = 0
        self.operations = 0

    def _reactor(self) -> Any:
        if self.store._reactor is not None:
            return self.store._reactor
        from twisted.internet import reactor

        return reactor

    def submit(self, work: Callable[[Any], Any]) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.queue.append((work, done))
        if self.scheduled is None and not self.running:
            self.scheduled = self._reactor().callLater(0, self.flush)
        return done

    def runOperation(self, sql: str, args: tuple[Any, ...] = ()) -> Deferred[None]:  # noqa: N802 (adbapi name)
        def operation(cursor: Any) -> None:
            cursor.execute(sql, args)

        return self.submit(operation)

    def runQuery(self, sql: str, args: tuple[Any, ...] = ()) -> Deferred[list[tuple[Any, ...]]]:  # noqa: N802
        def query(cursor: Any) -> list[tuple[Any, ...]]:
            cursor.execute(sql, args)
            return cursor.fetchall()

        return self.submit(query)

    def runInteraction(self, work: Callable[[Any], Any]) -> Deferred[Any]:  # noqa: N802
        return self.submit(work)

    def flush(self) -> None:
        self.scheduled = None
        if self.running or not self.queue:
            if not self.running:
                self._drained()
            return
        group, self.queue = self.queue, []
        self.running = True
        self.groups += 1
        self.operations += len(group)
        pool = self.store.pool
        if pool is None:  # closed under our feet: nothing can run any more
            self.running = False
            for _, done in group:
                done.errback(RuntimeError(f"SQLite store {self.store.path} is not open"))
            return
        pool.runInteraction(_run_group, [work for work, _ in group]).addBoth(self._finished, group)

    def _finished(self, outcome: Any, group: list[tuple[Callable[[Any], Any], Deferred[Any]]]) -> None:
        self.running = False
        if isinstance(outcome, Failure):  # the commit itself failed: nothing of the group is stored
            log.failure("SQLite store {path}: a group of {count} operations failed", outcome,
                        path=self.store.path, count=len(group))
            for _, done in group:
                done.errback(outcome)
        else:
            for (_, done), (ok, value) in zip(group, outcome):
                if ok:
                    done.callback(value)
                else:
                    done.errback(value)
        if self.queue:
            if self.scheduled is None:
                self.flush()
        else:
            self._drained()

    def drained(self) -> Deferred[None]:
        """A Deferred fired once nothing is queued or running."""
        if not self.queue and not self.running:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self.waiting_drain.append(waiting)
        return waiting

    def _drained(self) -> None:
        waiting, self.waiting_drain = self.waiting_drain, []
        for each in waiting:
            each.callback(None)


def _run_group(cursor: Any, works: list[Callable[[Any], Any]]) -> list[tuple[bool, Any]]:
    """The body of a group's transaction (in the pool's thread)."""
    if not cursor.connection.in_transaction:
        cursor.execute("BEGIN")
    results: list[tuple[bool, Any]] = []
    for work in works:
        cursor.execute("SAVEPOINT op")
        try:
            value = work(cursor)
        except Exception:
            results.append((False, Failure()))
            cursor.execute("ROLLBACK TO op")
        else:
            results.append((True, value))
        cursor.execute("RELEASE op")
    return results


@implementer(IStore)
class SQLiteStore:
    """Subscriptions, presence and duplicate keys in one SQLite file.

    :param path: the database file (``":memory:"`` works, but forgets on close).
    :param reactor: the reactor whose thread pool runs the queries (the
        global one by default).
    :param synchronous: SQLite's ``PRAGMA synchronous`` (``"NORMAL"``: with
        WAL, durable across a crash of the process; ``"FULL"`` also across
        power loss, at about a sixth of the commit rate).
    :param clock: the ``IReactorTime`` whose ``seconds()`` tells whether an
        adapter value has expired when no ``now`` is given; ``None`` until the
        bus sets its reactor (then ``reactor``, else the global reactor).
    """

    def __init__(self, path: str, *, reactor: Any = None, synchronous: str = "NORMAL", clock: Any = None) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}",
                              key="store.synchronous")
        self.path = path
        self.synchronous = synchronous.upper()
        self._reactor = reactor
        self.clock = clock
        self.pool: adbapi.ConnectionPool | None = None
        self._opening: Deferred[None] | None = None
        self._closing: Deferred[None] | None = None
        self._group = _Group(self)

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
        if version < SCHEMA_VERSION:
            log.info("SQLite store {path}: migrating schema {old} to {new}", path=self.path, old=version,
                     new=SCHEMA_VERSION)
            return _migrate(cursor, version)
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
        """Finish the queued operations, then close the connection; calling it again does nothing."""
        if self.pool is None or self._closing is not None:
            return self._closing if self._closing is not None else succeed(None)
        pool = self.pool
        closing: Deferred[None] = self._group.drained()

        def closed(result: Any) -> Any:
            pool.close()
            self.pool = None
            self._closing = None
            return None if not isinstance(result, Failure) else result

        self._closing = closing.addBoth(closed)
        return self._closing

    def _pool(self) -> adbapi.ConnectionPool:
        if self.pool is None or self._closing is not None:
            raise RuntimeError(f"SQLite store {self.path} is not open")
        return self.pool

    def _writes(self) -> "_Group":
        """The queue of this reactor turn's operations (raises ``RuntimeError`` when closed)."""
        self._pool()
        return self._group

    # -- subscriptions -----------------------------------------------------

    def put_subscription(self, record: SubscriptionRecord) -> Deferred[None]:
        if not isinstance(record, SubscriptionRecord):
            raise TypeError(f"expected a SubscriptionRecord, got {type(record).__name__}")
        return self._writes().runOperation(
            f"INSERT OR REPLACE INTO subscriptions ({_SUBSCRIPTION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (record.subscript_id, record.watcher, record.target, record.watcher_origin, record.watcher_instance,
             record.expires_at, record.state, record.created_at, record.last_document_digest,
             record.target_origin),
        )

    def set_digests(self, digests: Mapping[str, str]) -> Deferred[int]:
        pairs = [(digest, subscript_id, digest) for subscript_id, digest in digests.items()]

        def update(cursor: sqlite3.Cursor) -> int:
            cursor.executemany(
                "UPDATE subscriptions SET last_document_digest = ? WHERE subscript_id = ? "
                "AND last_document_digest IS NOT ?", pairs)
            return cursor.rowcount

        return self._writes().runInteraction(update)

    def get_subscription(self, subscript_id: str) -> Deferred[SubscriptionRecord | None]:
        return self._writes().runQuery(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE subscript_id = ?", (subscript_id,)
        ).addCallback(lambda rows: _record(rows[0]) if rows else None)

    def remove_subscription(self, subscript_id: str) -> Deferred[bool]:
        def remove(cursor: sqlite3.Cursor) -> bool:
            cursor.execute("DELETE FROM subscriptions WHERE subscript_id = ?", (subscript_id,))
            return cursor.rowcount > 0

        return self._writes().runInteraction(remove)

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
        return self._writes().runQuery(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions{where} ORDER BY created_at, subscript_id",
            tuple(values),
        ).addCallback(lambda rows: [_record(row) for row in rows])

    # -- presence ----------------------------------------------------------

    def put_presence(
        self, presentity: CPIMURI | str, instance: str | None, document: Content, updated_at: float,
        expires_at: float | None = None,
    ) -> Deferred[None]:
        return self._writes().runOperation(
            "INSERT OR REPLACE INTO presence (presentity, instance, media_type, parameters, body, updated_at, "
            "expires_at) VALUES (?,?,?,?,?,?,?)",
            (principal_key(presentity), instance or "", document.media_type,
             json.dumps([list(pair) for pair in document.parameters]), sqlite3.Binary(bytes(document.body)),
             float(updated_at), None if expires_at is None else float(expires_at)),
        )

    def presence_expiries(self) -> Deferred[list[tuple[str, str, float]]]:
        return self._writes().runQuery(
            "SELECT presentity, instance, expires_at FROM presence WHERE expires_at IS NOT NULL "
            "ORDER BY expires_at, presentity, instance"
        ).addCallback(lambda rows: [(row[0], row[1], float(row[2])) for row in rows])

    def get_presence(self, presentity: CPIMURI | str) -> Deferred[dict[str, Content]]:
        key = principal_key(presentity)

        def decode(rows: list[tuple[Any, ...]]) -> dict[str, Content]:
            return order_presence(
                PresenceRecord(key, row[0], row[1], bytes(row[3]), float(row[4]),
                               tuple(tuple(pair) for pair in json.loads(row[2])))
                for row in rows
            )

        return self._writes().runQuery(
            "SELECT instance, media_type, parameters, body, updated_at FROM presence WHERE presentity = ?", (key,)
        ).addCallback(decode)

    def remove_presence(self, presentity: CPIMURI | str, instance: str | None) -> Deferred[bool]:
        key = principal_key(presentity)

        def remove(cursor: sqlite3.Cursor) -> bool:
            cursor.execute("DELETE FROM presence WHERE presentity = ? AND instance = ?", (key, instance or ""))
            return cursor.rowcount > 0

        return self._writes().runInteraction(remove)

    # -- duplicate keys ----------------------------------------------------

    def remember(self, key: str, now: float, ttl: float) -> Deferred[bool]:
        def remember(cursor: sqlite3.Cursor) -> bool:
            cursor.execute("SELECT expires_at FROM duplicate_keys WHERE key = ?", (key,))
            row = cursor.fetchone()
            if row is not None and row[0] > now:
                return False
            cursor.execute("INSERT OR REPLACE INTO duplicate_keys (key, expires_at) VALUES (?, ?)", (key, now + ttl))
            return True

        return self._writes().runInteraction(remember)

    def forget(self, key: str) -> Deferred[bool]:
        """Drop one duplicate key (the bus does so when the message was not delivered)."""

        def forget(cursor: sqlite3.Cursor) -> bool:
            cursor.execute("DELETE FROM duplicate_keys WHERE key = ?", (key,))
            return cursor.rowcount > 0

        return self._writes().runInteraction(forget)

    def expire(self, now: float) -> Deferred[int]:
        def expire(cursor: sqlite3.Cursor) -> int:
            cursor.execute("DELETE FROM duplicate_keys WHERE expires_at <= ?", (now,))
            dropped = cursor.rowcount
            cursor.execute("DELETE FROM adapter_values WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
            return dropped + cursor.rowcount

        return self._writes().runInteraction(expire)

    # -- adapter state -----------------------------------------------------

    def _now(self, now: float | None) -> float:
        if now is not None:
            return float(now)
        return store_seconds(self.clock if self.clock is not None else self._reactor)

    def put_value(self, scope: str, key: str, value: bytes, expires_at: float | None = None) -> Deferred[None]:
        check_value_arguments(scope, key, value, expires_at)
        return self._writes().runOperation(
            "INSERT OR REPLACE INTO adapter_values (scope, key, value, expires_at) VALUES (?,?,?,?)",
            (scope, key, sqlite3.Binary(bytes(value)), None if expires_at is None else float(expires_at)),
        )

    def get_value(self, scope: str, key: str, now: float | None = None) -> Deferred[bytes | None]:
        check_value_arguments(scope, key)
        return self._writes().runQuery(
            "SELECT value FROM adapter_values WHERE scope = ? AND key = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (scope, key, self._now(now)),
        ).addCallback(lambda rows: bytes(rows[0][0]) if rows else None)

    def get_values(self, scope: str, now: float | None = None) -> Deferred[dict[str, bytes]]:
        check_value_arguments(scope)
        return self._writes().runQuery(
            "SELECT key, value FROM adapter_values WHERE scope = ? AND (expires_at IS NULL OR expires_at > ?) "
            "ORDER BY key",
            (scope, self._now(now)),
        ).addCallback(lambda rows: {row[0]: bytes(row[1]) for row in rows})

    def remove_value(self, scope: str, key: str) -> Deferred[bool]:
        check_value_arguments(scope, key)

        def remove(cursor: sqlite3.Cursor) -> bool:
            cursor.execute("DELETE FROM adapter_values WHERE scope = ? AND key = ?", (scope, key))
            return cursor.rowcount > 0

        return self._writes().runInteraction(remove)

    def counts(self) -> Deferred[dict[str, int]]:
        """How many subscriptions, presence instances, duplicate keys and adapter values are held."""

        def count(cursor: sqlite3.Cursor) -> dict[str, int]:
            result = {}
            for name, table in (("subscriptions", "subscriptions"), ("presence", "presence"),
                                ("duplicate_keys", "duplicate_keys"), ("values", "adapter_values")):
                cursor.execute(f"SELECT COUNT(*) FROM {table}")
                result[name] = cursor.fetchone()[0]
            return result

        return self._writes().runInteraction(count)


__all__ = ["SQLiteStore", "SCHEMA_VERSION"]
