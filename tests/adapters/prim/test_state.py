"""The PRIM adapter's persisted state (cpimgw.adapters.prim.state): encoding, and a restart on SQLite.

The restart test closes a SQLiteStore, opens a new one on the same file and
builds a new adapter: ACLs, class tables, tuples (with the running lease)
and the Subscription-IDs UNSUBSCRIBE needs are back.  SQLite answers from
adbapi's thread, so that test runs on the real reactor (no network: the
user agent's connection is a StringTransport).
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim import state, wire
from cpimgw.adapters.prim.adapter import PrimAdapter, PrimSettings
from cpimgw.adapters.prim.presence_doc import simple_pidf
from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.operations import Content, Subscribe
from cpimgw.cpim.uri import pres_uri
from cpimgw.store.sqlite import SQLiteStore
from cpimgw.testing import RecordingAdapter, attach, make_bus
from tests.adapters.prim.test_adapter import CLASS_TABLE, Connection

ACL = b"<ACL><entry><target><address>@alpha.example</address></target><allow><subscribe/><send/></allow></entry></ACL>"


class EncodingTests(TestCase):
    def test_tuple_round_trip_keeps_octets(self) -> None:
        body = simple_pidf("pres:alice@prim.example", "open", note="caf\u00e9") + b"\x00\xff"
        stored = state.StoredTuple((Content("application/pidf+xml", b"<p/>"), ()),
                                   (Content("application/pidf+xml", body, (("charset", "UTF-8"),)), ("friends", "work")),
                                   1234.5)
        self.assertEqual(state.decode_tuple(state.encode_tuple(stored)), stored)
        self.assertIsNone(state.tuple_expiry(stored))  # a permanent value never expires
        self.assertEqual(state.tuple_expiry(state.StoredTuple(None, stored.leased, 99.0)), 99.0)

    def test_keys(self) -> None:
        key = state.tuple_key(("alice", "prim.example"), "t 1")
        self.assertEqual(key, "alice@prim.example\nt 1")
        self.assertEqual(state.split_tuple_key(key), (("alice", "prim.example"), "t 1"))
        self.assertEqual(state.split_pair_key(state.pair_key(("pres:a@x", "pres:b@y"))), ("pres:a@x", "pres:b@y"))

    def test_damaged_values_are_parse_errors(self) -> None:
        for bad in (b"\xff", b"[]", b'{"permanent": {"type": "a/b"}}', b'{"lease_until": "soon"}',
                    b'{"leased": {"type": "a/b", "body": "***"}}'):
            self.assertRaises(ParseError, state.decode_tuple, bad)
        self.assertRaises(ParseError, state.principal_of, "no-at-sign")
        self.assertRaises(ParseError, state.split_tuple_key, "alice@prim.example")


@defer.inlineCallbacks
def until(predicate, seconds: float = 10.0):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` on the real reactor every 10 ms, at most ``seconds``."""
    for _ in range(int(seconds * 100)):
        if predicate():
            return
        yield deferLater(reactor, 0.01)
    raise AssertionError(f"condition not reached in time: {predicate}")


class RestartTests(TestCase):
    timeout = 30

    settings = PrimSettings.from_mapping({
        "local_domains": ["prim.example"], "users": {"alice": "wonder"}, "s2s_require_tls": False,
    })

    @defer.inlineCallbacks
    def start(self, path: str):  # type: ignore[no-untyped-def]
        bus = make_bus(reactor=reactor, store=SQLiteStore(path, reactor=reactor))
        yield bus.started
        alpha = RecordingAdapter("alpha", ["alpha.example"])
        attach(bus, alpha)
        adapter = PrimAdapter(self.settings, bus, listen_ports={})
        bus.register(adapter)
        yield adapter.startService()
        return bus, adapter

    @defer.inlineCallbacks
    def stop(self, bus, adapter):  # type: ignore[no-untyped-def]
        yield adapter.stopService()
        yield bus.stop()

    def login(self, adapter: PrimAdapter) -> Connection:
        from cpimgw.adapters.prim import sasl

        conn = Connection(adapter, "client")
        self.addCleanup(conn.close)
        who = [("From", "pres:alice@prim.example")]
        conn.send("LOGIN", who + [("Auth-State", "init"), ("SASL-Mech", "CRAM-MD5")])
        (challenge,) = conn.read()
        conn.send("LOGIN", who + [("Auth-State", "continue"), ("SASL-Mech", "CRAM-MD5"), ("Content-Type", "text/plain")],
                  sasl.cram_md5_response("alice@prim.example", "wonder", challenge.body))
        (done,) = conn.read()
        self.assertEqual(done.code, 200)
        return conn

    @defer.inlineCallbacks
    def test_state_survives_a_restart(self):  # type: ignore[no-untyped-def]
        path = self.mktemp() + ".db"
        bus, adapter = yield self.start(path)
        conn = self.login(adapter)
        base = [("From", "pres:alice@prim.example")]
        permanent = simple_pidf("pres:alice@prim.example", "closed", tuple_id="t1")
        leased = simple_pidf("pres:alice@prim.example", "open", tuple_id="t1", note="in a meeting")
        conn.send("SETACL", base + [("Content-Type", "text/xml")], ACL)
        conn.send("SETCLASSTABLE", base + [("Content-Type", "text/xml")], CLASS_TABLE)
        conn.send("PUBLISH", base + [("Tuple-ID", "t1"), ("PI-Type", "permanent"),
                                     ("Content-Type", "application/pidf+xml")], permanent)
        conn.send("PUBLISH", base + [("Tuple-ID", "t1"), ("PI-Type", "leased"), ("Duration", "3600"),
                                     ("Class", "friends"), ("Content-Type", "application/pidf+xml")], leased)
        conn.send("SUBSCRIBE", base + [("To", "pres:romeo@alpha.example"), ("Duration", "600"),
                                       ("Subscription-ID", "sub-7")])
        responses: list = []
        def answered() -> bool:
            responses.extend(r for r in conn.read() if isinstance(r, wire.Response))
            return len(responses) >= 5

        yield until(answered)
        self.assertEqual([r.code for r in responses], [200, 200, 200, 200, 200])
        lease_until = adapter._tuples[("alice", "prim.example")]["t1"].lease_until
        conn.close()  # the user agent goes (a StringTransport does not report it by itself)
        yield self.stop(bus, adapter)

        bus, adapter = yield self.start(path)  # a new store object on the same file, a new adapter
        self.addCleanup(self.stop, bus, adapter)  # runs after the new connection's close (LIFO)
        principal = ("alice", "prim.example")
        self.assertTrue(adapter._acls[principal].allows("romeo@alpha.example", "subscribe"))
        self.assertFalse(adapter._acls[principal].allows("romeo@beta.example", "send"))
        self.assertEqual(adapter._class_tables[principal].class_of("bff@alpha.example"), "friends")
        restored = adapter._tuples[principal]["t1"]
        self.assertEqual(restored.permanent, (Content("application/pidf+xml", permanent), ()))
        self.assertEqual(restored.leased, (Content("application/pidf+xml", leased), ("friends",)))
        self.assertEqual(restored.lease_until, lease_until)
        self.assertTrue(restored.lease_timer.active())  # the lease runs on
        self.assertEqual(adapter._subscription_ids[("pres:alice@prim.example", "pres:romeo@alpha.example")], "sub-7")
        # ... and the protocol sees it: GETACL answers the stored ACL, UNSUBSCRIBE finds the subscription.
        conn = self.login(adapter)
        conn.send("GETACL", base)
        (got,) = conn.read()
        self.assertIn(b"<address>@alpha.example</address>", got.body)
        conn.send("UNSUBSCRIBE", base + [("To", "pres:romeo@alpha.example")])
        answers: list = []
        def unsubscribed() -> bool:
            answers.extend(r for r in conn.read() if isinstance(r, wire.Response))
            return bool(answers)

        yield until(unsubscribed)
        self.assertEqual(answers[0].code, 200)
        cancel = [op for op in bus.adapter_named("alpha").delivered if isinstance(op, Subscribe)]
        self.assertEqual((cancel[-1].duration, cancel[-1].subscript_id), (0, "sub-7"))
        yield adapter.flush()
        remaining = yield bus.store.get_values(state.SCOPE_UNSUBSCRIBE)
        self.assertEqual(remaining, {})

    @defer.inlineCallbacks
    def test_lease_that_ended_while_down_reverts(self):  # type: ignore[no-untyped-def]
        path = self.mktemp() + ".db"
        bus = make_bus(reactor=reactor, store=SQLiteStore(path, reactor=reactor))
        yield bus.started
        leased = simple_pidf("pres:alice@prim.example", "open", tuple_id="t1")
        permanent = simple_pidf("pres:alice@prim.example", "closed", tuple_id="t1")
        stored = state.StoredTuple((Content("application/pidf+xml", permanent), ()),
                                   (Content("application/pidf+xml", leased), ()), reactor.seconds() - 5)
        yield bus.store.put_value(state.SCOPE_TUPLE, state.tuple_key(("alice", "prim.example"), "t1"),
                                  state.encode_tuple(stored))
        yield bus.store.put_value(state.SCOPE_ACL, "alice@prim.example", b"<not-an-acl")  # damaged: skipped
        adapter = PrimAdapter(self.settings, bus, listen_ports={})
        bus.register(adapter)
        yield adapter.startService()
        self.addCleanup(self.stop, bus, adapter)
        restored = adapter._tuples[("alice", "prim.example")]["t1"]
        self.assertEqual((restored.leased, restored.permanent[0].body), (None, permanent))
        self.assertNotIn(("alice", "prim.example"), adapter._acls)
        yield adapter.flush()
        presence = yield bus.store.get_presence(pres_uri("alice", "prim.example"))
        self.assertEqual(presence["prim"].body, permanent)  # the reverted value was published again
