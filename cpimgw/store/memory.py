"""An ``IStore`` kept in dictionaries: for tests and for gateways that need no restart memory.

It keeps the same records and follows the same contract as
:class:`cpimgw.store.sqlite.SQLiteStore` (both pass one shared test suite),
so code tested against it behaves the same on SQLite.  What RFC 3859 §4.4.3
asks to keep in persistent storage (running subscriptions, presence data)
and the duplicate keys of RFC 3860 messages live here only as long as the
process; use SQLite where they must survive a restart.

Every method returns an already fired ``Deferred``.
"""

from __future__ import annotations

from typing import Iterable

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from cpimgw.cpim.operations import Content
from cpimgw.cpim.uri import CPIMURI
from cpimgw.interfaces import IStore
from cpimgw.store.records import PresenceRecord, SubscriptionRecord, principal_key


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
    """

    def __init__(self) -> None:
        self.opened = False
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
        self, presentity: CPIMURI | str, instance: str | None, document: Content, updated_at: float
    ) -> Deferred[None]:
        key = principal_key(presentity)
        record = PresenceRecord(
            key, _instance_key(instance), document.media_type, bytes(document.body), float(updated_at),
            tuple(document.parameters),
        )
        self._presence.setdefault(key, {})[record.instance] = record
        return succeed(None)

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
        expires_at = self._keys.get(key)
        if expires_at is not None and expires_at > now:
            return succeed(False)
        self._keys[key] = now + ttl
        return succeed(True)

    def forget(self, key: str) -> Deferred[bool]:
        """Drop one duplicate key (the bus does so when the message was not delivered)."""
        return succeed(self._keys.pop(key, None) is not None)

    def expire(self, now: float) -> Deferred[int]:
        old = [key for key, expires_at in self._keys.items() if expires_at <= now]
        for key in old:
            del self._keys[key]
        return succeed(len(old))

    # -- for tests and the admin view --------------------------------------

    def counts(self) -> Deferred[dict[str, int]]:
        """How many subscriptions, presence instances and duplicate keys are held."""
        return succeed({
            "subscriptions": len(self._subscriptions),
            "presence": sum(len(instances) for instances in self._presence.values()),
            "duplicate_keys": len(self._keys),
        })


__all__ = ["MemoryStore", "order_presence"]
