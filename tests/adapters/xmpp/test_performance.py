"""Tests of the XMPP adapter's cheap structures (issue 3): one bounce sweep, address caches, s2s limits.

The behaviour is the same as before the speed work; these tests pin what the
cheaper structures must still do: a message to XMPP is answered at exactly
``bounce_wait`` after it was sent (one timer for all of them, not one each),
an error bounce still wins, an id sent twice cannot leave a Deferred
unanswered; the memoised address mappings give equal values; the s2s limits
(``max_queue``, ``max_incoming``, ``max_domains``, ``s2s_idle_timeout``) come
from the settings, and idle s2s streams are closed by one periodic sweep.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.words.xish import domish

from cpimgw.adapters.xmpp import addresses
from cpimgw.adapters.xmpp.adapter import DEFAULTS, XMPPSettings, make_connection
from cpimgw.adapters.xmpp.addresses import AddressMap, parse_jid
from cpimgw.adapters.xmpp.hardening import StreamStats
from cpimgw.cpim.errors import ConfigError, URIError
from cpimgw.cpim.operations import Content, Message, Status
from cpimgw.cpim.uri import parse_uri
from cpimgw.testing import settle
from tests.adapters.xmpp.test_adapter import AdapterHarness
from tests.adapters.xmpp.test_s2s import GW, PEER, S2SHarness


def message(recipient: str, text: bytes = b"hi") -> Message:
    return Message(parse_uri("im:bob@sip.example"), parse_uri(recipient), Content("text/plain", text))


class BounceSweepTests(AdapterHarness, unittest.TestCase):
    def test_one_timer_for_many_messages(self):
        before = len(self.reactor.getDelayedCalls())
        deferreds = [self.sip.inject(message("im:juliet@xmpp.example", b"m%d" % i)) for i in range(50)]
        settle(self.bus)
        self.assertEqual(len(self.sent()), 50)
        self.assertEqual(len(self.reactor.getDelayedCalls()) - before, 1)
        self.assertEqual(len(self.adapter.bounces), 50)
        for deferred in deferreds:
            self.assertNoResult(deferred)
        self.reactor.advance(1.0)
        settle(self.bus)
        self.assertEqual([self.successResultOf(d).status for d in deferreds], [Status.INDETERMINANT] * 50)
        self.assertEqual(self.adapter.bounces, {})
        self.assertIsNone(self.adapter._bounce_sweep)

    def test_each_message_waits_exactly_bounce_wait(self):
        first = self.sip.inject(message("im:juliet@xmpp.example", b"one"))
        settle(self.bus)
        self.reactor.advance(0.6)
        second = self.sip.inject(message("im:juliet@xmpp.example", b"two"))
        settle(self.bus)
        self.reactor.advance(0.4)  # t = 1.0: the first is over, the second has 0.6 s left
        settle(self.bus)
        self.assertIs(self.successResultOf(first).status, Status.INDETERMINANT)
        self.assertNoResult(second)
        self.reactor.advance(0.5)
        self.assertNoResult(second)
        self.reactor.advance(0.1)  # t = 1.6
        settle(self.bus)
        self.assertIs(self.successResultOf(second).status, Status.INDETERMINANT)

    def test_bounce_of_a_later_message_leaves_the_others_waiting(self):
        first = self.sip.inject(message("im:juliet@xmpp.example", b"one"))
        second = self.sip.inject(message("im:ghost@xmpp.example", b"two"))
        settle(self.bus)
        sent = self.sent()
        ghost = sent[1]
        self.feed(f"<message from='ghost@xmpp.example' to='{ghost['from']}' id='{ghost['id']}' type='error'>"
                  "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
                  "</message>")
        self.assertIs(self.successResultOf(second).status, Status.FAILURE)
        self.assertNoResult(first)
        self.reactor.advance(1.0)
        settle(self.bus)
        self.assertIs(self.successResultOf(first).status, Status.INDETERMINANT)

    def test_same_id_twice_answers_the_first_at_once(self):
        cpim = (b"From: <im:bob@sip.example>\r\nTo: <im:juliet@xmpp.example>\r\nNS: XMPP <urn:x-cpimgw:xmpp>\r\n"
                b"XMPP.Id: same\r\n\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nx")
        first = self.sip.inject(Message(parse_uri("im:bob@sip.example"), parse_uri("im:juliet@xmpp.example"),
                                        Content("message/cpim", cpim)))
        settle(self.bus)
        second = self.sip.inject(Message(parse_uri("im:bob@sip.example"), parse_uri("im:juliet@xmpp.example"),
                                         Content("message/cpim", cpim)))
        settle(self.bus)
        self.assertEqual([s["id"] for s in self.sent()], ["same", "same"])
        self.assertIs(self.successResultOf(first).status, Status.INDETERMINANT)
        self.assertNoResult(second)
        self.reactor.advance(1.0)
        settle(self.bus)
        self.assertIs(self.successResultOf(second).status, Status.INDETERMINANT)

    def test_stop_answers_the_waiting_and_cancels_the_sweep(self):
        deferred = self.sip.inject(message("im:juliet@xmpp.example"))
        settle(self.bus)
        self.adapter.stopService()
        settle(self.bus)
        self.assertIs(self.successResultOf(deferred).status, Status.INDETERMINANT)
        self.assertIsNone(self.adapter._bounce_sweep)


class AddressCacheTests(unittest.TestCase):
    def setUp(self):
        self.addresses = AddressMap("gw.example", ("xmpp.example",))

    def test_cached_values_equal_fresh_ones(self):
        for text in ("alice@xmpp.example/desk", "bob\\40sip.example@gw.example/ua", "Alice@XMPP.example"):
            cached = self.addresses.jid_to_uri(text)
            again = self.addresses.jid_to_uri(parse_jid(text))
            fresh = self.addresses._jid_to_uri(parse_jid(text), "im")
            self.assertEqual(cached, fresh)
            self.assertEqual(again, fresh)
        uri = parse_uri("im:bob@sip.example")
        self.assertEqual(self.addresses.uri_to_jid(uri, "ua").full(), "bob\\40sip.example@gw.example/ua")
        self.assertIs(self.addresses.uri_to_jid(uri, "ua"), self.addresses.uri_to_jid(uri, "ua"))
        self.assertIs(parse_jid("alice@xmpp.example"), parse_jid("alice@xmpp.example"))

    def test_scheme_is_part_of_the_key(self):
        self.assertEqual(str(self.addresses.jid_to_uri("alice@xmpp.example", "im")[0]), "im:alice@xmpp.example")
        self.assertEqual(str(self.addresses.jid_to_uri("alice@xmpp.example", "pres")[0]), "pres:alice@xmpp.example")

    def test_two_maps_do_not_share_answers(self):
        other = AddressMap("gw.other", ("xmpp.example",))
        uri = parse_uri("im:bob@sip.example")
        self.assertEqual(self.addresses.uri_to_jid(uri).host, "gw.example")
        self.assertEqual(other.uri_to_jid(uri).host, "gw.other")

    def test_errors_are_not_cached_away(self):
        for _ in range(2):
            with self.assertRaises(URIError):
                parse_jid("a@b@c/")
            with self.assertRaises(URIError):
                self.addresses.jid_to_uri("nobody@gw.example")

    def test_caches_are_bounded(self):
        self.assertEqual(addresses.parse_jid.cache_info().maxsize, addresses.CACHE_SIZE)
        self.assertEqual(addresses._jid_to_uri.cache_info().maxsize, addresses.CACHE_SIZE)
        self.assertEqual(addresses._uri_to_jid.cache_info().maxsize, addresses.CACHE_SIZE)


class S2SLimitSettingsTests(unittest.TestCase):
    def test_defaults(self):
        settings = XMPPSettings.from_mapping({})
        self.assertEqual((settings.max_queue, settings.max_incoming, settings.max_domains, settings.s2s_idle_timeout),
                         (1000, 1000, 16, 600.0))
        self.assertEqual((DEFAULTS["max_queue"], DEFAULTS["max_incoming"], DEFAULTS["max_domains"],
                          DEFAULTS["s2s_idle_timeout"]), (1000, 1000, 16, 600.0))

    def test_passed_to_the_s2s_connection(self):
        settings = XMPPSettings.from_mapping({"max_queue": 5, "max_incoming": 7, "max_domains": 3,
                                              "s2s_idle_timeout": 60, "s2s_port": 0})
        connection = make_connection(MemoryReactorClock(), settings, StreamStats())
        self.assertEqual((connection.max_queue, connection.max_incoming, connection.max_domains,
                          connection.idle_timeout), (5, 7, 3, 60.0))

    def test_bad_values_named(self):
        for key, value in [("max_queue", 0), ("max_incoming", -1), ("max_domains", 0), ("max_domains", "16"),
                           ("s2s_idle_timeout", -1), ("max_queue", True)]:
            with self.assertRaises(ConfigError) as caught:
                XMPPSettings.from_mapping({key: value})
            self.assertIn(f"adapters.xmpp.{key}", str(caught.exception))


class IdleStreamTests(S2SHarness, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.s2s.stopService()  # the harness started it with the defaults: start again with a 60 s idle timeout
        self.s2s.idle_timeout = 60.0
        self.s2s.timeout = 1000.0  # the unauthenticated-stream timeout is another test's business
        self.s2s.startService()

    def message(self):
        stanza = domish.Element(("jabber:server", "message"))
        stanza["from"], stanza["to"], stanza["id"] = f"bob\\40sip.example@{GW}", f"alice@{PEER}", "m1"
        stanza.addElement("body", content="hello")
        return stanza

    def test_idle_outgoing_stream_closed_then_reopened(self):
        self.s2s.send(self.message())
        xs, transport, _ = self.answer_outgoing()
        self.assertIsNotNone(self.s2s.outgoing[PEER].stream)
        self.reactor.advance(self.s2s.idle_interval)  # the first sweep: not idle yet
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(60.0)
        self.assertTrue(transport.disconnecting)
        self.assertIn(b"</stream:stream>", transport.value())
        self.assertIsNone(self.s2s.outgoing[PEER].stream)
        self.assertEqual(self.s2s.counters["closed-idle"], 1)
        self.s2s.send(self.message())  # the next stanza opens a new stream
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_traffic_keeps_a_stream_open(self):
        self.s2s.send(self.message())
        xs, transport, _ = self.answer_outgoing()
        for _ in range(10):
            self.reactor.advance(30.0)
            self.s2s.send(self.message())
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.s2s.counters["closed-idle"], 0)

    def test_idle_incoming_stream_closed(self):
        xs, transport = self.secure_incoming()
        self.reactor.advance(20.0)
        xs.dataReceived(b" ")  # whitespace keepalive (RFC 6120 §4.6.1) is traffic
        self.reactor.advance(55.0)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(30.0)
        self.assertTrue(transport.disconnecting)
        self.assertNotIn(xs, self.s2s.incoming)
        self.assertEqual(self.s2s.counters["closed-idle"], 1)

    def test_zero_means_never(self):
        self.s2s.stopService()
        reactor = MemoryReactorClock()
        from cpimgw.adapters.xmpp.s2s import S2SConnection

        s2s = S2SConnection(reactor, GW, port=0, tls=None, require_tls=False, idle_timeout=0)
        s2s.startService()
        self.addCleanup(s2s.stopService)
        self.assertEqual(reactor.getDelayedCalls(), [])
