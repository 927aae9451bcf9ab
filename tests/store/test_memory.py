"""Tests of cpimgw.store.memory, and the IStore contract suite every store passes."""

from __future__ import annotations

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from cpimgw.cpim.errors import URIError
from cpimgw.cpim.operations import MEDIA_PIDF, Content
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.interfaces import IStore
from cpimgw.store.memory import MemoryStore
from cpimgw.store.records import (
    ACTIVE,
    PENDING,
    SubscriptionRecord,
    document_digest,
    principal_key,
)

PIDF_A = Content(MEDIA_PIDF, b"<presence entity='pres:fred@example.com'><tuple id='a'/></presence>")
PIDF_B = Content(MEDIA_PIDF, b"<presence entity='pres:fred@example.com'><tuple id='b'/></presence>",
                 (("charset", "utf-8"),))


def record(subscript_id: str = "s1", watcher: str = "pres:alice@alpha.example",
           target: str = "pres:fred@beta.example", **changes: object) -> SubscriptionRecord:
    values: dict[str, object] = dict(
        subscript_id=subscript_id, watcher=watcher, target=target, watcher_origin="alpha",
        watcher_instance="laptop", expires_at=1000.0, state=ACTIVE, created_at=10.0,
        last_document_digest=None, target_origin="beta",
    )
    values.update(changes)
    return SubscriptionRecord(**values)  # type: ignore[arg-type]


class RecordTests(unittest.TestCase):
    def test_principal_key_normalises(self) -> None:
        self.assertEqual(principal_key("im:alice@Alpha.EXAMPLE."), "pres:alice@alpha.example")
        self.assertEqual(principal_key(im_uri("bob", "Beta.example")), "pres:bob@beta.example")

    def test_principal_key_rejects_other_schemes(self) -> None:
        self.assertRaises(URIError, principal_key, "sip:alice@example.com")

    def test_state_validated(self) -> None:
        self.assertRaises(ValueError, record, state="gone")

    def test_live(self) -> None:
        self.assertTrue(record(expires_at=100.0).live(99.0))
        self.assertFalse(record(expires_at=100.0).live(100.0))
        self.assertFalse(record(expires_at=100.0, state="terminated").live(1.0))

    def test_digest_distinguishes_type_parameters_and_body(self) -> None:
        self.assertEqual(document_digest(None), "")
        self.assertEqual(document_digest(PIDF_A), document_digest(Content(MEDIA_PIDF, PIDF_A.body)))
        self.assertNotEqual(document_digest(PIDF_A), document_digest(Content("text/xml", PIDF_A.body)))
        self.assertNotEqual(document_digest(PIDF_B), document_digest(Content(MEDIA_PIDF, PIDF_B.body)))
        self.assertEqual(len(document_digest(PIDF_A)), 64)


class StoreContractMixin:
    """The IStore contract; a TestCase mixes it in and defines ``make_store`` and ``reopen``."""

    store: object

    def make_store(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def reopen(self):  # pragma: no cover - overridden
        """A new store object on the same data (a restart)."""
        raise NotImplementedError

    @inlineCallbacks
    def setUp(self):
        self.store = self.make_store()
        yield self.store.open()

    @inlineCallbacks
    def tearDown(self):
        yield self.store.close()

    def test_verify(self) -> None:
        self.assertTrue(verifyObject(IStore, self.store))

    @inlineCallbacks
    def test_open_twice(self):
        yield self.store.open()
        self.assertIsNone((yield self.store.get_subscription("nope")))

    @inlineCallbacks
    def test_subscription_round_trip(self):
        original = record(last_document_digest="abc", watcher_instance=None)
        yield self.store.put_subscription(original)
        self.assertEqual((yield self.store.get_subscription("s1")), original)
        self.assertIsNone((yield self.store.get_subscription("s2")))

    @inlineCallbacks
    def test_put_replaces(self):
        yield self.store.put_subscription(record(state=PENDING))
        yield self.store.put_subscription(record(state=ACTIVE, expires_at=2000.5))
        found = yield self.store.subscriptions()
        self.assertEqual(found, [record(state=ACTIVE, expires_at=2000.5)])

    @inlineCallbacks
    def test_set_digests_in_one_call(self):
        yield self.store.put_subscription(record("s1", last_document_digest="old"))
        yield self.store.put_subscription(record("s2", watcher="pres:carol@gamma.example"))
        yield self.store.put_subscription(record("s3", watcher="pres:dave@gamma.example",
                                                 last_document_digest="same"))
        changed = yield self.store.set_digests({"s1": "new", "s2": "new", "s3": "same", "gone": "new"})
        self.assertEqual(changed, 2)
        self.assertEqual((yield self.store.get_subscription("s1")), record("s1", last_document_digest="new"))
        self.assertEqual((yield self.store.get_subscription("s2")),
                         record("s2", watcher="pres:carol@gamma.example", last_document_digest="new"))
        self.assertIsNone((yield self.store.get_subscription("gone")))
        self.assertEqual((yield self.store.set_digests({})), 0)

    @inlineCallbacks
    def test_remove_subscription(self):
        yield self.store.put_subscription(record())
        self.assertTrue((yield self.store.remove_subscription("s1")))
        self.assertFalse((yield self.store.remove_subscription("s1")))
        self.assertEqual((yield self.store.subscriptions()), [])

    @inlineCallbacks
    def test_subscriptions_filter_by_principal(self):
        yield self.store.put_subscription(record("s1", created_at=3.0))
        yield self.store.put_subscription(record("s2", watcher="pres:carol@gamma.example", created_at=2.0))
        yield self.store.put_subscription(record("s3", target="pres:zed@beta.example", created_at=1.0))
        by_target = yield self.store.subscriptions(target="im:fred@BETA.example")
        self.assertEqual([r.subscript_id for r in by_target], ["s2", "s1"])
        by_watcher = yield self.store.subscriptions(watcher=pres_uri("alice", "alpha.example"))
        self.assertEqual([r.subscript_id for r in by_watcher], ["s3", "s1"])
        both = yield self.store.subscriptions(target="pres:fred@beta.example", watcher="pres:alice@alpha.example")
        self.assertEqual([r.subscript_id for r in both], ["s1"])
        everything = yield self.store.subscriptions()
        self.assertEqual([r.subscript_id for r in everything], ["s3", "s2", "s1"])

    @inlineCallbacks
    def test_presence_per_instance_oldest_first(self):
        fred = pres_uri("fred", "example.com")
        yield self.store.put_presence(fred, "phone", PIDF_B, 20.0)
        yield self.store.put_presence("im:fred@EXAMPLE.com", "desk", PIDF_A, 10.0)
        known = yield self.store.get_presence("pres:fred@example.com")
        self.assertEqual(list(known.items()), [("desk", PIDF_A), ("phone", PIDF_B)])
        yield self.store.put_presence(fred, "desk", PIDF_B, 30.0)
        known = yield self.store.get_presence(fred)
        self.assertEqual(list(known.items()), [("phone", PIDF_B), ("desk", PIDF_B)])

    @inlineCallbacks
    def test_presence_none_instance_is_empty_name(self):
        fred = pres_uri("fred", "example.com")
        yield self.store.put_presence(fred, None, PIDF_A, 1.0)
        self.assertEqual((yield self.store.get_presence(fred)), {"": PIDF_A})
        self.assertTrue((yield self.store.remove_presence(fred, None)))
        self.assertFalse((yield self.store.remove_presence(fred, None)))
        self.assertEqual((yield self.store.get_presence(fred)), {})

    @inlineCallbacks
    def test_presence_octets_kept_exactly(self):
        body = bytes(range(256)) + b"\r\n\x00 end"
        document = Content("Application/PIDF+XML", body, (("charset", "iso-8859-1"), ("x", "y")))
        yield self.store.put_presence("pres:u@example.com", "i", document, 5.0)
        got = (yield self.store.get_presence("pres:u@example.com"))["i"]
        self.assertEqual(got, document)
        self.assertEqual(got.body, body)
        self.assertEqual(got.media_type, "application/pidf+xml")

    @inlineCallbacks
    def test_presence_expiries(self):
        yield self.store.put_presence("pres:b@example.com", "desk", PIDF_A, 1.0, expires_at=90.0)
        yield self.store.put_presence("pres:a@example.com", "", PIDF_A, 1.0, expires_at=50.0)
        yield self.store.put_presence("pres:a@example.com", "phone", PIDF_B, 1.0)
        self.assertEqual((yield self.store.presence_expiries()),
                         [("pres:a@example.com", "", 50.0), ("pres:b@example.com", "desk", 90.0)])
        yield self.store.put_presence("pres:b@example.com", "desk", PIDF_A, 2.0)  # re-published without expiry
        self.assertEqual((yield self.store.presence_expiries()), [("pres:a@example.com", "", 50.0)])
        self.assertEqual((yield self.store.get_presence("pres:a@example.com")), {"": PIDF_A, "phone": PIDF_B})

    @inlineCallbacks
    def test_remember_is_atomic_once(self):
        self.assertTrue((yield self.store.remember("k", 100.0, 50.0)))
        self.assertFalse((yield self.store.remember("k", 120.0, 50.0)))
        self.assertFalse((yield self.store.remember("k", 149.9, 50.0)))
        # After the key's time it is new again.
        self.assertTrue((yield self.store.remember("k", 150.0, 50.0)))

    @inlineCallbacks
    def test_expire_counts_and_drops(self):
        yield self.store.remember("a", 0.0, 10.0)
        yield self.store.remember("b", 0.0, 20.0)
        yield self.store.remember("c", 0.0, 30.0)
        self.assertEqual((yield self.store.expire(20.0)), 2)
        self.assertEqual((yield self.store.expire(20.0)), 0)
        self.assertFalse((yield self.store.remember("c", 21.0, 10.0)))
        self.assertTrue((yield self.store.remember("a", 21.0, 10.0)))

    @inlineCallbacks
    def test_forget(self):
        yield self.store.remember("a", 0.0, 10.0)
        self.assertTrue((yield self.store.forget("a")))
        self.assertFalse((yield self.store.forget("a")))
        self.assertTrue((yield self.store.remember("a", 1.0, 10.0)))

    @inlineCallbacks
    def test_counts(self):
        yield self.store.put_subscription(record())
        yield self.store.put_presence("pres:u@example.com", "i", PIDF_A, 5.0)
        yield self.store.remember("a", 0.0, 10.0)
        yield self.store.put_value("prim.lease", "k", b"v")
        self.assertEqual((yield self.store.counts()),
                         {"subscriptions": 1, "presence": 1, "duplicate_keys": 1, "values": 1})

    @inlineCallbacks
    def test_survives_close_and_reopen(self):
        """What a restart must keep: subscriptions, presence and duplicate keys."""
        kept = record(last_document_digest=document_digest(PIDF_A))
        yield self.store.put_subscription(kept)
        yield self.store.put_presence("pres:fred@beta.example", "desk", PIDF_A, 7.0)
        yield self.store.remember("msg-key", 100.0, 1000.0)
        yield self.store.close()
        self.store = self.reopen()
        yield self.store.open()
        self.assertEqual((yield self.store.get_subscription("s1")), kept)
        self.assertEqual((yield self.store.get_presence("pres:fred@beta.example")), {"desk": PIDF_A})
        self.assertFalse((yield self.store.remember("msg-key", 200.0, 1000.0)))

    def test_put_rejects_other_types(self) -> None:
        self.assertRaises(TypeError, self.store.put_subscription, ("s1", "w", "t"))

    # -- adapter state (put_value / get_value / get_values / remove_value) --

    @inlineCallbacks
    def test_value_round_trip_exact_octets(self):
        value = bytes(range(256)) + b"\x00\r\n"
        self.assertIsNone((yield self.store.put_value("prim.lease", "alice@example.com", value)))
        self.assertEqual((yield self.store.get_value("prim.lease", "alice@example.com")), value)
        self.assertIsNone((yield self.store.get_value("prim.lease", "bob@example.com")))
        self.assertIsNone((yield self.store.get_value("prim.acl", "alice@example.com")))

    @inlineCallbacks
    def test_value_put_replaces(self):
        yield self.store.put_value("s", "k", b"one", expires_at=50.0)
        yield self.store.put_value("s", "k", b"two")
        self.assertEqual((yield self.store.get_value("s", "k", now=100.0)), b"two")
        self.assertEqual((yield self.store.get_values("s")), {"k": b"two"})

    @inlineCallbacks
    def test_values_of_scope_sorted_and_separate(self):
        yield self.store.put_value("xmpp.sub", "b", b"2")
        yield self.store.put_value("xmpp.sub", "a", b"1")
        yield self.store.put_value("xmpp.subx", "a", b"other scope")
        yield self.store.put_value("sip.dialog", "a", b"3")
        found = yield self.store.get_values("xmpp.sub")
        self.assertEqual(list(found.items()), [("a", b"1"), ("b", b"2")])
        self.assertEqual((yield self.store.get_values("none")), {})

    @inlineCallbacks
    def test_remove_value(self):
        yield self.store.put_value("s", "k", b"v")
        self.assertTrue((yield self.store.remove_value("s", "k")))
        self.assertFalse((yield self.store.remove_value("s", "k")))
        self.assertIsNone((yield self.store.get_value("s", "k")))
        self.assertEqual((yield self.store.get_values("s")), {})

    @inlineCallbacks
    def test_expired_values_hidden_then_purged(self):
        yield self.store.put_value("s", "short", b"1", expires_at=100.0)
        yield self.store.put_value("s", "long", b"2", expires_at=200.0)
        yield self.store.put_value("s", "forever", b"3")
        self.assertEqual((yield self.store.get_value("s", "short", now=99.5)), b"1")
        self.assertIsNone((yield self.store.get_value("s", "short", now=100.0)))
        self.assertEqual((yield self.store.get_values("s", now=150.0)), {"forever": b"3", "long": b"2"})
        # Hidden is not yet gone: expire(now) purges and counts them.
        self.assertEqual((yield self.store.counts())["values"], 3)
        self.assertEqual((yield self.store.expire(150.0)), 1)
        self.assertEqual((yield self.store.counts())["values"], 2)
        self.assertFalse((yield self.store.remove_value("s", "short")))
        self.assertEqual((yield self.store.expire(1e12)), 1)
        self.assertEqual((yield self.store.get_values("s", now=1e12)), {"forever": b"3"})

    @inlineCallbacks
    def test_value_expiry_uses_the_store_clock(self):
        clock = Clock()
        clock.advance(1000.0)
        self.store.clock = clock
        yield self.store.put_value("s", "k", b"v", expires_at=1030.0)
        self.assertEqual((yield self.store.get_value("s", "k")), b"v")
        clock.advance(30.0)
        self.assertIsNone((yield self.store.get_value("s", "k")))
        self.assertEqual((yield self.store.get_values("s")), {})

    def test_bus_gives_its_clock_to_a_store_without_one(self) -> None:
        from cpimgw.bus import Bus
        from cpimgw.policy import DefaultPolicy

        clock = Clock()
        self.store.clock = None
        Bus(clock, self.store, DefaultPolicy())
        self.assertIs(self.store.clock, clock)
        own = Clock()
        self.store.clock = own
        Bus(clock, self.store, DefaultPolicy())
        self.assertIs(self.store.clock, own)

    def test_value_argument_types(self) -> None:
        self.assertRaises(TypeError, self.store.put_value, "s", "k", "text, not bytes")
        self.assertRaises(TypeError, self.store.put_value, "s", b"k", b"v")
        self.assertRaises(TypeError, self.store.put_value, None, "k", b"v")
        self.assertRaises(TypeError, self.store.put_value, "s", "k", b"v", expires_at="soon")
        self.assertRaises(TypeError, self.store.get_value, "s", 1)
        self.assertRaises(TypeError, self.store.get_values, 1)
        self.assertRaises(TypeError, self.store.remove_value, "s", None)

    @inlineCallbacks
    def test_values_survive_close_and_reopen(self):
        yield self.store.put_value("prim.lease", "alice", b"lease-1", expires_at=5000.0)
        yield self.store.put_value("prim.lease", "bob", b"lease-2")
        yield self.store.close()
        self.store = self.reopen()
        yield self.store.open()
        self.assertEqual((yield self.store.get_values("prim.lease", now=10.0)),
                         {"alice": b"lease-1", "bob": b"lease-2"})
        self.assertEqual((yield self.store.get_values("prim.lease", now=5000.0)), {"bob": b"lease-2"})


class MemoryStoreTests(StoreContractMixin, unittest.TestCase):
    def make_store(self) -> MemoryStore:
        return MemoryStore()

    def reopen(self) -> MemoryStore:
        # A MemoryStore keeps its data across close/open in one process; the
        # same object reopened is what "restart" means for it.
        return self.store
