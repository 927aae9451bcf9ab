"""Tests of cpimgw.store.redis against a real redis-server: the shared IStore contract, plus
what only the shared store does (two stores on one database, Redis's own key expiry, an
unreachable server answered at once)."""

from __future__ import annotations

import itertools

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from cpimgw.cpim.errors import ConfigError
from cpimgw.store.redis import RedisStore, StoreUnavailable, parse_redis_url
from tests.interop.prosody import free_port
from tests.interop.redis import RedisServer
from tests.store.test_memory import PIDF_A, StoreContractMixin, record

_prefixes = itertools.count(1)


class RedisStoreTests(StoreContractMixin, unittest.TestCase):
    """One redis-server per test (it starts in a few hundredths of a second), stopped by PID."""

    @inlineCallbacks
    def setUp(self):
        self.server = RedisServer()
        self.addCleanup(self.server.cleanup)
        yield self.server.start()
        yield StoreContractMixin.setUp(self)

    def make_store(self) -> RedisStore:
        self.prefix = f"test{next(_prefixes)}:"
        return RedisStore(self.server.url, prefix=self.prefix)

    def reopen(self) -> RedisStore:
        # A new object on the same database and prefix: another process, or this one restarted.
        return RedisStore(self.server.url, prefix=self.prefix)

    @inlineCallbacks
    def test_two_stores_share_everything(self):
        """Two nodes on one Redis see each other's writes; a duplicate key is new at one of them only."""
        other = RedisStore(self.server.url, prefix=self.prefix)
        yield other.open()
        self.addCleanup(other.close)
        yield self.store.put_subscription(record())
        self.assertEqual((yield other.get_subscription("s1")), record())
        answers = yield gatherResults([self.store.remember("m", 10.0, 60.0), other.remember("m", 10.0, 60.0)])
        self.assertEqual(sorted(answers), [False, True])
        yield other.put_presence("pres:fred@beta.example", "desk", PIDF_A, 1.0)
        self.assertEqual((yield self.store.get_presence("pres:fred@beta.example")), {"desk": PIDF_A})

    @inlineCallbacks
    def test_duplicate_key_has_a_redis_ttl(self):
        yield self.store.remember("ttl", 100.0, 30.0)
        ttl = yield self.store.command("PTTL", self.store.key("dup:", "ttl"))
        self.assertTrue(0 < int(ttl) <= 30000, ttl)

    @inlineCallbacks
    def test_due_subscriptions_for_the_sweeper(self):
        yield self.store.put_subscription(record("s1", expires_at=50.0))
        yield self.store.put_subscription(record("s2", watcher="pres:carol@gamma.example", expires_at=150.0))
        self.assertEqual((yield self.store.due_subscriptions(100.0)), ["s1"])
        yield self.store.remove_subscription("s1")
        self.assertEqual((yield self.store.due_subscriptions(100.0)), [])

    @inlineCallbacks
    def test_due_presence_for_the_sweeper(self):
        yield self.store.put_presence("pres:b@example.com", "desk", PIDF_A, 1.0, expires_at=90.0)
        yield self.store.put_presence("pres:a@example.com", "", PIDF_A, 1.0, expires_at=50.0)
        yield self.store.put_presence("pres:a@example.com", "phone", PIDF_A, 1.0)
        self.assertEqual((yield self.store.due_presence(60.0)), [("pres:a@example.com", "")])
        self.assertEqual((yield self.store.due_presence(100.0)),
                         [("pres:a@example.com", ""), ("pres:b@example.com", "desk")])

    @inlineCallbacks
    def test_server_down_fails_at_once_and_reconnects(self):
        """Redis gone: every call fails with StoreUnavailable, connected() is False; back: it reconnects."""
        self.server.kill()
        try:
            for _ in range(100):
                if not self.store.connected():
                    break
                yield deferLater(reactor, 0.05, lambda: None)
            self.assertFalse(self.store.connected())
            yield self.assertFailure(self.store.remember("k", 1.0, 10.0), StoreUnavailable)
            yield self.assertFailure(self.store.get_subscription("s1"), StoreUnavailable)
        finally:
            self.server.spawn()
        for _ in range(200):
            if self.store.connected():
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertTrue(self.store.connected())
        self.assertTrue((yield self.store.remember("k", 1.0, 10.0)))


class RedisOpenTests(unittest.TestCase):
    def test_url_parsing(self) -> None:
        self.assertEqual(parse_redis_url("redis://u:p%40ss@db.example:6380/3"),
                         {"host": "db.example", "port": 6380, "dbid": 3, "username": "u",
                          "password": "p@ss", "tls": False})
        self.assertEqual(parse_redis_url("rediss://127.0.0.1")["tls"], True)
        self.assertRaises(ConfigError, parse_redis_url, "http://127.0.0.1:6379")
        self.assertRaises(ConfigError, parse_redis_url, "redis://127.0.0.1:6379/x")

    @inlineCallbacks
    def test_open_fails_within_its_timeout_when_nothing_listens(self):
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)
        yield self.assertFailure(store.open(), StoreUnavailable)
        self.assertFalse(store.connected())
        yield self.assertFailure(store.remember("k", 1.0, 1.0), StoreUnavailable)


class InFlightKeyTests(unittest.TestCase):
    """A duplicate key marked in flight by a cluster node that died is taken over."""

    @inlineCallbacks
    def setUp(self):
        self.server = RedisServer()
        self.addCleanup(self.server.cleanup)
        yield self.server.start()
        self.a = RedisStore(self.server.url, prefix="k:")
        self.b = RedisStore(self.server.url, prefix="k:")
        self.a.owner, self.b.owner = "A", "B"
        for store in (self.a, self.b):
            yield store.open()
            self.addCleanup(store.close)

    @inlineCallbacks
    def test_orphaned_key_taken_over_settled_key_kept(self):
        yield self.a.command("SET", self.a.key("node:A"), "alive")
        self.assertTrue((yield self.a.remember("m1", 10.0, 60.0)))
        self.assertTrue((yield self.a.remember("m2", 10.0, 60.0)))
        self.assertTrue((yield self.a.settle("m2")))
        # A is alive: its in-flight key holds.
        self.assertFalse((yield self.b.remember("m1", 11.0, 60.0)))
        yield self.a.command("DEL", self.a.key("node:A"))  # A died
        self.assertTrue((yield self.b.remember("m1", 12.0, 60.0)))  # handed on by nobody: B takes it
        self.assertFalse((yield self.b.remember("m2", 12.0, 60.0)))  # A had handed m2 on
        yield self.b.command("SET", self.b.key("node:B"), "alive")
        self.assertFalse((yield self.a.remember("m1", 13.0, 60.0)))  # now in flight on B, which lives
