"""An ``IStore`` kept in dictionaries: for tests and for gateways that need no restart memory.

It keeps the same records and follows the same contract as
:class:`cpimgw.store.sqlite.SQLiteStore` (both pass one shared test suite),
so code tested against it behaves the same on SQLite.  What RFC 3859 §4.4.3
asks to keep in persistent storage (running subscriptions, presence data)
and the duplicate keys of RFC 3860 messages live here only as long as the
process; use SQLite where they must survive a restart.

Every ``IStore`` method returns an already fired ``Deferred``;
``remember_now`` and ``forget_now`` answer the duplicate-key questions without
one, and ``remember``/``forget`` are marked with them for the bus's
synchronous fast path (:mod:`cpimgw.bus`, "Synchronous fast path").
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from cpimgw.cpim.operations import Content
from cpimgw.cpim.uri import CPIMURI
from cpimgw.interfaces import IStore
from cpimgw.store.records import (
    PresenceRecord,
    SubscriptionRecord,
    check_value_arguments,
    principal_key,
    store_seconds,
)


def _instance_key(instance: str | None) -> str:
    return instance or ""


def order_presence(records: Iterable[PresenceRecord]) -> dict[str, Content]:
    """The ``get_presence`` answer: instance -> document, oldest change first.

    Both stores give the instances in order of ``updated_at`` (ties by
    instance name), so the last entry is the most recent change.
    """
    ordered = sorted(records, key=lambda record: (record.updated_at, record.instance))
    return {record.instance: record.document for record in ordered}


@implementer(IStore)
class MemoryStore:
    """Subscriptions, presence and duplicate keys in dictionaries.

    ``open`` and ``close`` may be called more than once; closing keeps the
    data (a closed and reopened ``MemoryStore`` still knows everything,
    which is what a restart looks like inside one test process).

    :param clock: the ``IReactorTime`` whose ``seconds()`` tells whether an
        adapter value has expired when no ``now`` is given; ``None`` until the
        bus sets its reactor (then the global reactor is used).
    """

    def __init__(self, *, clock: Any = None) -> None:
        self.opened = False
        self.clock = clock
        self._values: dict[str, dict[str, tuple[bytes, float | None]]] = {}
        self._subscriptions: dict[str, SubscriptionRecord] = {}
        self._by_target: dict[str, dict[str, None]] = {}
        self._by_watcher: dict[str, dict[str, None]] = {}
        self._presence: dict[str, dict[str, PresenceRecord]] = {}
        self._keys: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> Deferred[None]:
        self.opened = True
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.opened = False
        return succeed(None)

    # -- subscriptions -----------------------------------------------------

    def put_subscription(self, record: SubscriptionRecord) -> Deferred[None]:
        if not isinstance(record, SubscriptionRecord):
            raise TypeError(f"expected a SubscriptionRecord, got {type(record).__name__}")
        self._unindex(record.subscript_id)
        self._subscriptions[record.subscript_id] = record
        self._by_target.setdefault(record.target, {})[record.subscript_id] = None
        self._by_watcher.setdefault(record.watcher, {})[record.subscript_id] = None
        return succeed(None)

    def set_digests(self, digests: Mapping[str, str]) -> Deferred[int]:
        subscriptions = self._subscriptions
        changed = 0
        for subscript_id, digest in digests.items():
            record = subscriptions.get(subscript_id)
            if record is not None and record.last_document_digest != digest:
                subscriptions[subscript_id] = SubscriptionRecord(  # positional: a fan-out does 10,000 of these
                    record.subscript_id, record.watcher, record.target, record.watcher_origin,
                    record.watcher_instance, record.expires_at, record.state, record.created_at, digest,
                    record.target_origin)
                changed += 1
        return succeed(changed)

    def _unindex(self, subscript_id: str) -> SubscriptionRecord | None:
        old = self._subscriptions.pop(subscript_id, None)
        if old is not None:
            for index, key in ((self._by_target, old.target), (self._by_watcher, old.watcher)):
                ids = index.get(key)
                if ids is not None:
                    ids.pop(subscript_id, None)
                    if not ids:
                        del index[key]
        return old

    def get_subscription(self, subscript_id: str) -> Deferred[SubscriptionRecord | None]:
        return succeed(self._subscriptions.get(subscript_id))

    def remove_subscription(self, subscript_id: str) -> Deferred[bool]:
        return succeed(self._unindex(subscript_id) is not None)

    def subscriptions(
        self, target: CPIMURI | str | None = None, watcher: CPIMURI | str | None = None
    ) -> Deferred[list[SubscriptionRecord]]:
        target_key = principal_key(target) if target is not None else None
        watcher_key = principal_key(watcher) if watcher is not None else None
        if target_key is not None:
            candidates = [self._subscriptions[sid] for sid in self._by_target.get(target_key, ())]
        elif watcher_key is not None:
            candidates = [self._subscriptions[sid] for sid in self._by_watcher.get(watcher_key, ())]
        else:
            candidates = list(self._subscriptions.values())
        found = [
            record
            for record in candidates
            if (target_key is None or record.target == target_key)
            and (watcher_key is None or record.watcher == watcher_key)
        ]
        found.sort(key=lambda record: (record.created_at, record.subscript_id))
        return succeed(found)

    # -- presence ----------------------------------------------------------

    def put_presence(
        self, presentity: CPIMURI | str, instance: str | None, document: Content, updated_at: float,
        expires_at: float | None = None,
    ) -> Deferred[None]:
        key = principal_key(presentity)
        record = PresenceRecord(
            key, _instance_key(instance), document.media_type, bytes(document.body), float(updated_at),
            tuple(document.parameters), None if expires_at is None else float(expires_at),
        )
        self._presence.setdefault(key, {})[record.instance] = record
        return succeed(None)

    def presence_expiries(self) -> Deferred[list[tuple[str, str, float]]]:
        found = [
            (record.presentity, record.instance, record.expires_at)
            for instances in self._presence.values()
            for record in instances.values()
            if record.expires_at is not None
        ]
        found.sort(key=lambda item: (item[2], item[0], item[1]))
        return succeed(found)  # type: ignore[arg-type]

    def get_presence(self, presentity: CPIMURI | str) -> Deferred[dict[str, Content]]:
        return succeed(order_presence(self._presence.get(principal_key(presentity), {}).values()))

    def remove_presence(self, presentity: CPIMURI | str, instance: str | None) -> Deferred[bool]:
        key = principal_key(presentity)
        instances = self._presence.get(key, {})
        removed = instances.pop(_instance_key(instance), None) is not None
        if not instances:
            self._presence.pop(key, None)
        return succeed(removed)

    # -- duplicate keys ----------------------------------------------------

    def remember(self, key: str, now: float, ttl: float) -> Deferred[bool]:
        return succeed(self.remember_now(key, now, ttl))

    def forget(self, key: str) -> Deferred[bool]:
        """Drop one duplicate key (the bus does so when the message was not delivered)."""
        return succeed(self.forget_now(key))

    def remember_now(self, key: str, now: float, ttl: float) -> bool:
        """:meth:`remember`'s answer itself (the bus's synchronous fast path calls it)."""
        expires_at = self._keys.get(key)
        if expires_at is not None and expires_at > now:
            return False
        self._keys[key] = now + ttl
        return True

    def forget_now(self, key: str) -> bool:
        """:meth:`forget`'s answer itself."""
        return self._keys.pop(key, None) is not None

    # The bus's fast path (cpimgw.bus.SYNCHRONOUS_ATTRIBUTE): these methods are
    # succeed(<variant>(...)).  A subclass overriding remember or forget without
    # the mark is called through its override, the documented IStore way.
    remember.synchronous_variant = "remember_now"  # type: ignore[attr-defined]
    forget.synchronous_variant = "forget_now"  # type: ignore[attr-defined]

    def expire(self, now: float) -> Deferred[int]:
        old = [key for key, expires_at in self._keys.items() if expires_at <= now]
        for key in old:
            del self._keys[key]
        dropped = len(old)
        for scope in list(self._values):
            entries = self._values[scope]
            stale = [key for key, (_, at) in entries.items() if at is not None and at <= now]
            for key in stale:
                del entries[key]
            dropped += len(stale)
            if not entries:
                del self._values[scope]
        return succeed(dropped)

    # -- adapter state -----------------------------------------------------

    def _now(self, now: float | None) -> float:
        return float(now) if now is not None else store_seconds(self.clock)

    def put_value(self, scope: str, key: str, value: bytes, expires_at: float | None = None) -> Deferred[None]:
        check_value_arguments(scope, key, value, expires_at)
        self._values.setdefault(scope, {})[key] = (
            bytes(value), None if expires_at is None else float(expires_at))
        return succeed(None)

    def get_value(self, scope: str, key: str, now: float | None = None) -> Deferred[bytes | None]:
        check_value_arguments(scope, key)
        entry = self._values.get(scope, {}).get(key)
        if entry is None or (entry[1] is not None and entry[1] <= self._now(now)):
            return succeed(None)
        return succeed(entry[0])

    def get_values(self, scope: str, now: float | None = None) -> Deferred[dict[str, bytes]]:
        check_value_arguments(scope)
        moment = self._now(now)
        entries = self._values.get(scope, {})
        return succeed({
            key: entries[key][0]
            for key in sorted(entries)
            if entries[key][1] is None or entries[key][1] > moment  # type: ignore[operator]
        })

    def remove_value(self, scope: str, key: str) -> Deferred[bool]:
        check_value_arguments(scope, key)
        entries = self._values.get(scope, {})
        removed = entries.pop(key, None) is not None
        if not entries:
            self._values.pop(scope, None)
        return succeed(removed)

    # -- for tests and the admin view --------------------------------------

    def counts(self) -> Deferred[dict[str, int]]:
        """How many subscriptions, presence instances, duplicate keys and adapter values are held."""
        return succeed({
            "subscriptions": len(self._subscriptions),
            "presence": sum(len(instances) for instances in self._presence.values()),
            "duplicate_keys": len(self._keys),
            "values": sum(len(entries) for entries in self._values.values()),
        })


__all__ = ["MemoryStore", "order_presence"]
