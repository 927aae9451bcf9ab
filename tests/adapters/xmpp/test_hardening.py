"""Tests of cpimgw.adapters.xmpp.hardening: restricted XML, caps, linear text, TCP_NODELAY."""

from __future__ import annotations

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.words.protocols.jabber import xmlstream
from zope.interface import implementer

from cpimgw.adapters.xmpp.hardening import (
    HardenedElementStream,
    HardenedXmlStream,
    StreamLimits,
    StreamRejected,
    StreamStats,
    TokenBucket,
    harden_factory,
)

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
)

#: perf-reliability.md §B1: the 643-byte, 5-level billion-laughs variant (48.6 s in plain domish).
ENTITY_BOMB = (
    b"<?xml version='1.0'?><!DOCTYPE stream:stream ["
    b"<!ENTITY a '" + b"a" * 148 + b"'>"
    b"<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
    b"<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>"
    b"<!ENTITY d '&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;'>"
    b"<!ENTITY e '&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;'>"
    b"]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" to='example.com'><message><body>&e;</body></message>"
)


@implementer(ITCPTransport)
class TCPStringTransport(StringTransport):
    """A StringTransport that also records the TCP_NODELAY flag (ITCPTransport)."""

    nodelay = False

    def setTcpNoDelay(self, enabled):
        self.nodelay = bool(enabled)

    def getTcpNoDelay(self):
        return self.nodelay

    def setTcpKeepAlive(self, enabled):
        pass

    def getTcpKeepAlive(self):
        return False

    def loseWriteConnection(self):
        self.loseConnection()

    def abortConnection(self):
        self.loseConnection()


def make_stream(limits=StreamLimits(), stats=None, clock=None, transport_class=TCPStringTransport):
    factory = harden_factory(xmlstream.XmlStreamServerFactory(xmlstream.ListenAuthenticator), limits, stats, clock)
    xs = factory.buildProtocol(None)
    received = []
    xs.addObserver("/message", received.append)
    transport = transport_class()
    xs.makeConnection(transport)
    return xs, transport, received


class ElementStreamTests(unittest.TestCase):
    def parse_all(self, data, limits=StreamLimits()):
        stream = HardenedElementStream(limits)
        elements = []
        stream.DocumentStartEvent = lambda root: None
        stream.ElementEvent = elements.append
        stream.DocumentEndEvent = lambda: None
        stream.parse(data)
        return elements

    def test_normal_stanzas(self):
        elements = self.parse_all(HEADER + b"<message to='a@b'><body>hi &amp; bye</body></message><presence/>")
        self.assertEqual([e.name for e in elements], ["message", "presence"])
        self.assertEqual(str(elements[0].body), "hi & bye")
        self.assertEqual(elements[0].uri, "jabber:client")

    def test_text_split_over_many_reads_is_joined(self):
        stream = HardenedElementStream()
        elements = []
        stream.DocumentStartEvent = lambda root: None
        stream.ElementEvent = elements.append
        data = HEADER + b"<message><body>" + b"ab\n" * 3000 + b"</body></message>"
        for index in range(0, len(data), 7):
            stream.parse(data[index : index + 7])
        self.assertEqual(str(elements[0].body), "ab\n" * 3000)
        self.assertEqual(len(elements[0].body.children), 1)

    def test_doctype_rejected(self):
        with self.assertRaises(StreamRejected) as caught:
            self.parse_all(b"<?xml version='1.0'?><!DOCTYPE x SYSTEM 'file:///etc/passwd'><x/>")
        self.assertEqual(caught.exception.condition, "restricted-xml")

    def test_comment_and_pi_rejected(self):
        for data in (HEADER + b"<!-- hi -->", HEADER + b"<?php echo 1; ?>"):
            with self.assertRaises(StreamRejected) as caught:
                self.parse_all(data)
            self.assertEqual(caught.exception.condition, "restricted-xml")

    def test_undeclared_prefix_not_well_formed(self):
        with self.assertRaises(StreamRejected) as caught:
            self.parse_all(HEADER + b"<foo:message/>")
        self.assertEqual(caught.exception.condition, "not-well-formed")
        self.assertIn("unbound prefix", caught.exception.reason)

    def test_undefined_entity_not_well_formed(self):
        with self.assertRaises(StreamRejected) as caught:
            self.parse_all(HEADER + b"<message>&lol;</message>")
        self.assertEqual(caught.exception.condition, "not-well-formed")

    def test_size_cap(self):
        limits = StreamLimits(max_stanza_size=10000)
        elements = self.parse_all(HEADER + b"<message><body>" + b"x" * 9000 + b"</body></message>", limits)
        self.assertEqual(len(elements), 1)
        with self.assertRaises(StreamRejected) as caught:
            self.parse_all(HEADER + b"<message><body>" + b"x" * 20000, limits)
        self.assertEqual(caught.exception.condition, "policy-violation")

    def test_size_counted_per_stanza(self):
        limits = StreamLimits(max_stanza_size=10000)
        stanza = b"<message><body>" + b"x" * 6000 + b"</body></message>"
        elements = self.parse_all(HEADER + stanza * 5, limits)
        self.assertEqual(len(elements), 5)

    def test_depth_cap(self):
        with self.assertRaises(StreamRejected) as caught:
            self.parse_all(HEADER + b"<a>" * 70, StreamLimits(max_depth=64))
        self.assertEqual(caught.exception.condition, "policy-violation")
        self.assertEqual(len(self.parse_all(HEADER + b"<a>" * 64 + b"</a>" * 64)), 1)

    def test_element_count_cap(self):
        with self.assertRaises(StreamRejected) as caught:
            self.parse_all(HEADER + b"<message>" + b"<x/>" * 200, StreamLimits(max_elements=100))
        self.assertEqual(caught.exception.condition, "policy-violation")


class XmlStreamTests(unittest.TestCase):
    def test_tcp_nodelay(self):
        xs, transport, received = make_stream()
        self.assertTrue(transport.nodelay)

    def test_stanzas_dispatched(self):
        xs, transport, received = make_stream()
        xs.dataReceived(HEADER + b"<message to='a@example.com'><body>x</body></message>")
        self.assertEqual(len(received), 1)
        self.assertFalse(transport.disconnecting)

    def test_entity_bomb_restricted_xml(self):
        stats = StreamStats()
        xs, transport, received = make_stream(stats=stats)
        self.assertEqual(len(ENTITY_BOMB), 643)
        xs.dataReceived(ENTITY_BOMB)
        self.assertIn(b"<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())
        self.assertIn(b"</stream:stream>", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(received, [])
        self.assertEqual(stats.rejected["restricted-xml"], 1)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_newline_flood_policy_violation(self):
        stats = StreamStats()
        xs, transport, received = make_stream(stats=stats)
        xs.dataReceived(HEADER + b"<message><body>")
        flood = b"a\n" * (1024 * 1024)
        for index in range(0, len(flood), 65536):
            xs.dataReceived(flood[index : index + 65536])
        self.assertIn(b"<policy-violation", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(stats.rejected["policy-violation"], 1)
        self.assertEqual(received, [])

    def test_malformed_not_well_formed(self):
        stats = StreamStats()
        xs, transport, received = make_stream(stats=stats)
        xs.dataReceived(HEADER + b"<message></presence>")
        self.assertIn(b"<not-well-formed", transport.value())
        self.assertEqual(stats.rejected["not-well-formed"], 1)
        # Data after the rejection is ignored, not parsed.
        xs.dataReceived(b"<message/>")
        self.assertEqual(received, [])

    def test_other_stream_keeps_serving(self):
        bad, bad_transport, _ = make_stream()
        good, good_transport, received = make_stream()
        good.dataReceived(HEADER)
        bad.dataReceived(ENTITY_BOMB)
        good.dataReceived(b"<message><body>still here</body></message>")
        self.assertTrue(bad_transport.disconnecting)
        self.assertFalse(good_transport.disconnecting)
        self.assertEqual(str(received[0].body), "still here")

    def test_rate_limit_pauses_and_resumes(self):
        clock = Clock()
        xs, transport, received = make_stream(StreamLimits(max_rate=1000, burst=2000), clock=clock)
        xs.dataReceived(HEADER)
        xs.dataReceived(b"<message><body>" + b"x" * 2500 + b"</body></message>")
        self.assertEqual(transport.producerState, "paused")
        clock.advance(2)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(len(received), 1)


class TokenBucketTests(unittest.TestCase):
    def test_bucket(self):
        clock = Clock()
        bucket = TokenBucket(100, 200, clock)
        self.assertEqual(bucket.take(150), 0.0)
        self.assertEqual(bucket.take(100), 0.5)
        clock.advance(1.5)
        self.assertEqual(bucket.take(100), 0.0)

    def test_limits_validated(self):
        self.assertRaises(ValueError, StreamLimits, max_stanza_size=9999)
