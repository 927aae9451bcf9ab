"""Tests of cpimgw.adapters.xmpp.adapter through a real component stream on Twisted's doubles.

The adapter's ComponentConnection connects through a MemoryReactorClock; the
test plays the XMPP server on a StringTransport (XEP-0114 handshake, then
stanzas), and the other network is a cpimgw.testing.RecordingAdapter.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.words.xish import domish
from zope.interface.verify import verifyObject

from cpimgw.adapters.xmpp.adapter import DEFAULTS, XMPPAdapter, XMPPSettings
from cpimgw.adapters.xmpp.mapping import parse_fragment, read_cpim
from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import (
    MEDIA_PIDF, Condition, Content, Message, Notify, Publish, Status, Subscribe, SubscriptionState,
    TerminationReason, failure, success,
)
from cpimgw.cpim.pidf import Note, Status as PStatus, Tuple, build_pidf, parse_pidf
from cpimgw.cpim.uri import parse_uri
from cpimgw.interfaces import IAdapter, IMessaging, IPresence
from cpimgw.testing import RecordingAdapter, attach, make_bus, settle

SERVER_HEADER = (
    b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'"
    b" from='gw.xmpp.example' id='s1'>"
)


class AdapterHarness:
    reply = None

    def setUp(self):
        self.bus = make_bus()
        self.reactor = self.bus.reactor
        self.sip = RecordingAdapter("sip", ["sip.example"], reply=self.reply)
        attach(self.bus, self.sip)
        self.sip.startService()
        settings = XMPPSettings.from_mapping(
            {"mode": "component", "domain": "gw.xmpp.example", "xmpp_domains": ["xmpp.example"], "port": 5347,
             "bounce_wait": 1.0}
        )
        self.adapter = XMPPAdapter("xmpp", self.bus, settings)
        self.bus.register(self.adapter)
        self.adapter.startService()
        self.addCleanup(self.adapter.stopService)
        self.connect()

    def connect(self):
        host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
        self.factory = factory
        self.xs = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.xs.makeConnection(self.transport)
        self.xs.dataReceived(SERVER_HEADER)
        self.xs.dataReceived(b"<handshake/>")
        self.transport.clear()

    def feed(self, xml):
        self.xs.dataReceived(xml.encode("utf-8") if isinstance(xml, str) else xml)
        settle(self.bus)

    def sent(self):
        """The stanzas the adapter wrote since the last call."""
        data = self.transport.value()
        self.transport.clear()
        if not data:
            return []
        wrapper = parse_fragment(b"<x>" + data + b"</x>", "jabber:component:accept")
        return list(wrapper.elements())


class SettingsTests(unittest.TestCase):
    def test_defaults_valid(self):
        settings = XMPPSettings.from_mapping({})
        self.assertEqual(settings.mode, "s2s")
        self.assertEqual((settings.s2s_interface, settings.s2s_port), ("127.0.0.1", 25269))
        self.assertTrue(settings.require_tls)
        self.assertEqual(settings.peers, ())
        self.assertEqual(settings.max_stanza_size, 65536)
        self.assertEqual(settings.xmpp_domains, ("localhost",))

    def test_bad_settings_named(self):
        for key, value in [("port", 0), ("max_stanza_size", 5), ("mode", "p2p"), ("xmpp_domains", "x"),
                           ("carry_cpim", "yes"), ("nonsense", 1), ("s2s_port", 70000), ("require_tls", 1),
                           ("peers", ["x"]), ("s2s_timeout", 0)]:
            with self.assertRaises(ConfigError) as caught:
                XMPPSettings.from_mapping({key: value})
            self.assertIn(f"adapters.xmpp.{key}", str(caught.exception))

    def test_peers_table(self):
        settings = XMPPSettings.from_mapping({"peers": {"Xmpp.Example": "127.0.0.1:25270", "v6.example": "[::1]:5270",
                                                        "bare.example": "xmpp.bare.example"}})
        self.assertEqual(settings.peers, (("bare.example", ("xmpp.bare.example", 5269)),
                                          ("v6.example", ("::1", 5270)), ("xmpp.example", ("127.0.0.1", 25270))))
        for bad in ("", "host:0", "host:x", "[::1", "[::1]5", "a:b:c"):
            with self.assertRaises(ConfigError) as caught:
                XMPPSettings.from_mapping({"peers": {"p.example": bad}})
            self.assertIn("adapters.xmpp.peers.p.example", str(caught.exception))

    def test_certificate_needs_key(self):
        with self.assertRaises(ConfigError) as caught:
            XMPPSettings.from_mapping({"tls_certificate": "gw.pem"})
        self.assertIn("adapters.xmpp.tls_key", str(caught.exception))

    def test_plugin_defaults_equal(self):
        import importlib
        plugin = importlib.import_module("twisted.plugins.cpimgw_xmpp")
        self.assertEqual(plugin.xmpp.defaults(), DEFAULTS)


class MessageTests(AdapterHarness, unittest.TestCase):
    def test_interfaces(self):
        verifyObject(IAdapter, self.adapter)
        self.assertTrue(IMessaging.providedBy(self.adapter))
        self.assertTrue(IPresence.providedBy(self.adapter))
        self.assertEqual(self.adapter.domains, ("xmpp.example",))

    def test_component_handshake_and_nodelay_stream(self):
        self.assertTrue(self.adapter.connected)
        self.assertEqual(self.adapter.stats.streams_opened, 1)

    def test_xmpp_message_reaches_other_network(self):
        self.feed(
            "<message from='juliet@xmpp.example/balcony' to='bob\\40sip.example@gw.xmpp.example' id='m1'"
            " type='chat'><subject>Hi!</subject><subject xml:lang='cz'>Ahoj!</subject>"
            "<body>Wherefore art thou, Romeo?</body><origin-id xmlns='urn:xmpp:sid:0' id='o-1'/></message>"
        )
        [message] = self.sip.of_type(Message)
        self.assertEqual(str(message.source), "im:juliet@xmpp.example")
        self.assertEqual(message.source_instance, "balcony")
        self.assertEqual(str(message.destination), "im:bob@sip.example")
        self.assertEqual(message.message_id, "o-1")
        self.assertEqual(message.origin, "xmpp")
        cpim = read_cpim(message.content)
        self.assertEqual(cpim.subjects, ((None, "Hi!"), ("cz", "Ahoj!")))
        self.assertEqual(cpim.body, b"Wherefore art thou, Romeo?")
        self.assertEqual(cpim.content_header("Content-Type"), "text/plain; charset=utf-8")

    def test_failure_answered_with_stanza_error(self):
        self.sip.reply = lambda op: failure(op, Condition.NOT_FOUND, "no such user", native_code=404)
        self.feed("<message from='juliet@xmpp.example/b' to='nobody\\40sip.example@gw.xmpp.example' id='m2'>"
                  "<body>x</body></message>")
        [reply] = self.sent()
        self.assertEqual(reply["type"], "error")
        self.assertEqual(reply["id"], "m2")
        self.assertEqual(reply["to"], "juliet@xmpp.example/b")
        error = next(reply.elements())
        self.assertEqual(error["type"], "cancel")
        self.assertEqual([c.name for c in error.elements()], ["item-not-found", "text"])

    def test_no_route_is_remote_server_not_found(self):
        self.feed("<message from='juliet@xmpp.example/b' to='x\\40nowhere.example@gw.xmpp.example' id='m3'>"
                  "<body>x</body></message>")
        [reply] = self.sent()
        self.assertEqual(reply["type"], "error")
        self.assertIn(next(next(reply.elements()).elements()).name, ("remote-server-not-found", "item-not-found"))

    def test_receipt_acknowledged_locally_on_success(self):
        self.feed("<message from='juliet@xmpp.example/b' to='bob\\40sip.example@gw.xmpp.example' id='r1'>"
                  "<body>x</body><request xmlns='urn:xmpp:receipts'/></message>")
        [receipt] = self.sent()
        received = next(receipt.elements())
        self.assertEqual((received.uri, received.name, received["id"]), ("urn:xmpp:receipts", "received", "r1"))
        self.assertEqual(receipt["from"], "bob\\40sip.example@gw.xmpp.example")

    def test_bad_stanza_bad_request(self):
        self.feed("<message to='bob\\40sip.example@gw.xmpp.example' id='b1'><body>x</body></message>")
        [reply] = self.sent()
        self.assertEqual(next(next(reply.elements()).elements()).name, "bad-request")
        self.assertEqual(self.sip.delivered, [])

    def test_other_network_message_reaches_xmpp(self):
        message = Message(parse_uri("im:bob@sip.example"), parse_uri("im:juliet@xmpp.example"),
                          Content("text/plain", b"hello juliet", (("charset", "utf-8"),)))
        deferred = self.sip.inject(message)
        settle(self.bus)
        [stanza] = self.sent()
        self.assertEqual(stanza.name, "message")
        self.assertEqual(stanza["from"], "bob\\40sip.example@gw.xmpp.example")
        self.assertEqual(stanza["to"], "juliet@xmpp.example")
        self.assertEqual(str(stanza.body), "hello juliet")
        self.assertNoResult(deferred)
        self.reactor.advance(1.0)
        settle(self.bus)
        self.assertIs(self.successResultOf(deferred).status, Status.INDETERMINANT)

    def test_bounce_becomes_failure(self):
        deferred = self.sip.inject(Message(parse_uri("im:bob@sip.example"), parse_uri("im:ghost@xmpp.example"),
                                           Content("text/plain", b"hi")))
        settle(self.bus)
        [stanza] = self.sent()
        self.feed(f"<message from='ghost@xmpp.example' to='{stanza['from']}' id='{stanza['id']}' type='error'>"
                  "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
        response = self.successResultOf(deferred)
        self.assertIs(response.status, Status.FAILURE)
        self.assertEqual(response.condition, Condition.FORBIDDEN)
        self.assertEqual(response.native_code, 403)

    def test_server_away_answers_failure_at_once(self):
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.xs.connectionLost(Failure(ConnectionLost()))
        self.assertFalse(self.adapter.connected)
        deferred = self.sip.inject(Message(parse_uri("im:bob@sip.example"), parse_uri("im:juliet@xmpp.example"),
                                           Content("text/plain", b"hi")))
        settle(self.bus)
        response = self.successResultOf(deferred)
        self.assertIs(response.status, Status.FAILURE)
        self.assertEqual(response.condition, Condition.SERVICE_UNAVAILABLE)
        self.assertEqual(self.transport.value(), b"")

    def test_reconnects_with_backoff(self):
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.xs.connectionLost(Failure(ConnectionLost()))
        self.factory.clientConnectionLost(self.reactor.connectors[-1], Failure(ConnectionLost()))
        self.assertFalse(self.adapter.connected)
        calls = [c for c in self.reactor.getDelayedCalls() if getattr(c.func, "__name__", "") == "reconnector"]
        self.assertEqual(len(calls), 1)
        # initial_delay with Twisted's normal jitter (unbounded: 1.2 failed now and then); 6 sigma is never reached.
        self.assertLessEqual(calls[0].getTime() - self.reactor.seconds(), 1.0 * (1 + 6 * self.factory.jitter))
        self.reactor.advance(5)
        self.assertEqual(self.factory.retries, 1)
        self.connect()
        self.assertTrue(self.adapter.connected)

    def test_require_unknown_refused(self):
        from cpimgw.cpim.message import build_message

        cpim = build_message(parse_uri("im:bob@sip.example"), [parse_uri("im:juliet@xmpp.example")], b"x",
                             extensions=[("urn:example:x", "X", "Vital", "1", ())], require=["X.Vital"])
        deferred = self.sip.inject(Message(parse_uri("im:bob@sip.example"), parse_uri("im:juliet@xmpp.example"),
                                           Content("message/cpim", cpim.to_bytes())))
        settle(self.bus)
        response = self.successResultOf(deferred)
        self.assertIs(response.status, Status.FAILURE)
        self.assertEqual(response.condition, Condition.UNSUPPORTED)
        self.assertEqual(self.sent(), [])

    def test_rfc3862_example_parses_but_is_not_rendered_for_xmpp(self):
        # RFC 3862 §5.1: parsing it is fine (cpimgw parse); rendering it for an XMPP user is not (§3.5).
        from cpimgw.cpim.message import parse_message
        from tests.adapters.xmpp.test_rules import CommandTests

        example = CommandTests.RFC3862_5_1.replace(b"eeyore@100akerwood.com", b"juliet@xmpp.example").replace(
            b"piglet@100akerwood.com", b"bob@sip.example")
        self.assertEqual(parse_message(example, understood=frozenset({"MyFeatures.VitalMessageOption"})).require,
                         ("MyFeatures.VitalMessageOption",))
        deferred = self.sip.inject(Message(parse_uri("im:bob@sip.example"), parse_uri("im:juliet@xmpp.example"),
                                           Content("message/cpim", example)))
        settle(self.bus)
        response = self.successResultOf(deferred)
        self.assertEqual((response.status, response.condition, response.native_code),
                         (Status.FAILURE, Condition.UNSUPPORTED, 420))  # SIP 420 Bad Extension (RFC 3261 §21.4.15)
        self.assertIn("MyFeatures.VitalMessageOption", response.reason)
        self.assertEqual(self.sent(), [])

    def test_disco_ping_version(self):
        self.feed("<iq type='get' id='d1' from='juliet@xmpp.example/b' to='gw.xmpp.example'>"
                  "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
                  "<iq type='get' id='p1' from='juliet@xmpp.example/b' to='gw.xmpp.example'><ping xmlns='urn:xmpp:ping'/></iq>"
                  "<iq type='get' id='v1' from='juliet@xmpp.example/b' to='gw.xmpp.example'>"
                  "<query xmlns='jabber:iq:version'/></iq>"
                  "<iq type='set' id='x1' from='juliet@xmpp.example/b' to='gw.xmpp.example'><foo xmlns='urn:x'/></iq>")
        disco, ping, version, other = self.sent()
        query = next(disco.elements())
        identity = next(query.elements())
        self.assertEqual((identity["category"], identity["type"]), ("gateway", "cpim"))
        features = [f["var"] for f in query.elements() if f.name == "feature"]
        self.assertIn("urn:xmpp:ping", features)
        self.assertEqual((ping["type"], ping["id"]), ("result", "p1"))
        self.assertEqual(str(next(next(version.elements()).elements())), "cpimgw")
        self.assertEqual(other["type"], "error")


class PresenceTests(AdapterHarness, unittest.TestCase):
    def test_presence_published_once_per_change(self):
        stanza = ("<presence from='juliet@xmpp.example/balcony' to='bob\\40sip.example@gw.xmpp.example'>"
                  "<show>away</show><status>out</status><priority>13</priority></presence>")
        self.feed(stanza)
        self.feed(stanza)
        self.assertEqual(self.adapter.counters.get("presence-unchanged"), 1)
        self.assertEqual(self.adapter.counters.get("presence-in"), 1)

    def test_xmpp_user_subscribes_to_other_network(self):
        self.feed("<presence from='juliet@xmpp.example/b' to='bob\\40sip.example@gw.xmpp.example' type='subscribe' id='s1'/>")
        self.reactor.advance(0)
        settle(self.bus)
        [subscribe] = self.sip.of_type(Subscribe)
        self.assertEqual(str(subscribe.watcher), "pres:juliet@xmpp.example")
        self.assertEqual(str(subscribe.target), "pres:bob@sip.example")
        self.assertEqual(subscribe.duration, 86400)
        # The other network said yes and bob published nothing yet: the first notify (RFC 3859, active,
        # a document without tuples) confirms the subscription at once, and shows bob offline.
        first = [(s.getAttribute("type"), s["from"]) for s in self.sent() if s.name == "presence"]
        self.assertEqual(first, [("subscribed", "bob\\40sip.example@gw.xmpp.example"),
                                 ("unavailable", "bob\\40sip.example@gw.xmpp.example")])
        # The other network notifies an active state with a document.
        document = build_pidf(parse_uri("pres:bob@sip.example"),
                              [Tuple("ID-desk", PStatus("open", xmpp_show="dnd"), notes=[Note("busy", "en")])])
        response = self.successResultOf(self.sip.inject(Notify(
            subscribe.watcher, subscribe.target, Content(MEDIA_PIDF, document.to_bytes()),
            subscript_id=subscribe.subscript_id)))
        settle(self.bus)
        self.assertIs(response.status, Status.SUCCESS, response)
        stanzas = self.sent()
        kinds = [(s.getAttribute("type"), s["from"]) for s in stanzas]
        self.assertNotIn(("subscribed", "bob\\40sip.example@gw.xmpp.example"), kinds)  # once is enough
        presence = [s for s in stanzas if s.getAttribute("type") is None][-1]
        self.assertEqual(presence["from"], "bob\\40sip.example@gw.xmpp.example/desk")
        self.assertEqual(str(presence.show), "dnd")
        self.assertEqual(str(presence.status), "busy")

    def test_other_network_subscribes_to_xmpp_user(self):
        operation = Subscribe(parse_uri("pres:bob@sip.example"), parse_uri("pres:juliet@xmpp.example"), 3600)
        deferred = self.adapter.deliver(operation)
        [stanza] = self.sent()
        self.assertEqual((stanza["type"], stanza["from"], stanza["to"]),
                         ("subscribe", "bob\\40sip.example@gw.xmpp.example", "juliet@xmpp.example"))
        self.assertNoResult(deferred)
        self.feed("<presence from='juliet@xmpp.example' to='bob\\40sip.example@gw.xmpp.example' type='subscribed'/>")
        response = self.successResultOf(deferred)
        self.assertIs(response.status, Status.SUCCESS)
        self.assertEqual(response.duration, 3600)

    def test_xmpp_user_refuses(self):
        operation = Subscribe(parse_uri("pres:bob@sip.example"), parse_uri("pres:juliet@xmpp.example"), 3600)
        deferred = self.adapter.deliver(operation)
        self.feed("<presence from='juliet@xmpp.example' to='bob\\40sip.example@gw.xmpp.example' type='unsubscribed'/>")
        response = self.successResultOf(deferred)
        self.assertEqual(response.condition, Condition.FORBIDDEN)

    def test_notify_terminated_rejected_unsubscribed(self):
        response = self.successResultOf(self.adapter.deliver(Notify(
            parse_uri("pres:juliet@xmpp.example"), parse_uri("pres:bob@sip.example"), None, subscript_id="abc",
            state=SubscriptionState.TERMINATED, reason=TerminationReason.REJECTED)))
        self.assertIs(response.status, Status.SUCCESS)
        [stanza] = self.sent()
        self.assertEqual((stanza["type"], stanza["to"]), ("unsubscribed", "juliet@xmpp.example"))
