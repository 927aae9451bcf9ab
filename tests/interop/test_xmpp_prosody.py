"""Interop: the XMPP adapter as an XEP-0114 component of a real Prosody, slixmpp clients as users.

The other network is a cpimgw.testing.RecordingAdapter (domain
``other.example``) on a real bus.  Shown here:

- a message from an XMPP user reaches the recording adapter with every field;
- a message from the recording adapter reaches the XMPP user;
- a presence subscription from the XMPP user to a user behind the recording
  adapter completes (``subscribed`` in the roster) and presence flows to her;
- a subscription from the recording adapter's user to the XMPP user completes
  and her presence changes reach the recording adapter as notifies;
- the component reconnects after Prosody restarts, and while Prosody is down
  a message is answered with a failure at once (nothing queued).
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from cpimgw.adapters.xmpp.adapter import XMPPAdapter, XMPPSettings
from cpimgw.adapters.xmpp.mapping import NS_XMPP, read_cpim, read_pidf
from cpimgw.cpim.operations import (
    MEDIA_PIDF, Condition, Content, Message, Notify, Status, Subscribe, SubscriptionState,
)
from cpimgw.cpim.pidf import Note, Status as PStatus, Tuple, build_pidf
from cpimgw.cpim.uri import parse_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus
from tests.interop.prosody import ProsodyServer, SlixClient, wait_until

GW = "gw.test.localhost"
BOB_JID = "bob\\40other.example@" + GW


class ProsodyComponentTests(unittest.TestCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self):
        self.server = ProsodyServer(component_domain=GW)
        self.server.register("alice", "alicepw")
        yield self.server.start()
        self.addCleanup(self.server.stop)
        self.bus = make_bus(reactor=reactor)
        yield self.bus.started
        self.addCleanup(self.bus.stop)
        self.other = RecordingAdapter("other", ["other.example"])
        attach(self.bus, self.other)
        self.other.startService()
        settings = XMPPSettings.from_mapping({
            "mode": "component", "domain": GW, "xmpp_domains": ["test.localhost"], "port": self.server.component_port,
            "secret": "s3cret", "initial_delay": 0.2, "max_delay": 1.0, "bounce_wait": 0.5,
        })
        self.adapter = XMPPAdapter("xmpp", self.bus, settings)
        self.bus.register(self.adapter)
        self.adapter.startService()
        self.addCleanup(self.adapter.stopService)
        yield wait_until(lambda: self.adapter.connected, 10.0, what="the component handshake")
        self.alice = SlixClient("alice@test.localhost/desk", "alicepw", self.server.c2s_port)
        self.addCleanup(self.alice.stop)
        yield wait_until(self.alice.session_started.is_set, 10.0, what="alice's session")

    @inlineCallbacks
    def test_message_from_xmpp_user_reaches_other_network(self):
        self.alice.send_message(BOB_JID, "Wherefore art thou?", subject="Hi!", thread="th-1", id="m-42")
        [message] = yield self.other.wait_for(lambda op: isinstance(op, Message)).addTimeout(10, reactor)
        self.assertEqual(str(message.source), "im:alice@test.localhost")
        self.assertEqual(message.source_instance, "desk")
        self.assertEqual(str(message.destination), "im:bob@other.example")
        self.assertEqual(message.origin, "xmpp")
        self.assertEqual(message.message_id, "m-42")
        cpim = read_cpim(message.content)
        self.assertEqual(str(cpim.sender.uri), "im:alice@test.localhost")
        self.assertEqual([str(r.uri) for r in cpim.recipients], ["im:bob@other.example"])
        self.assertEqual(cpim.subjects, ((None, "Hi!"),))
        self.assertEqual(cpim.body, b"Wherefore art thou?")
        # The thread is the conversation (RFC 6121 §5.2.5), the id the message id; no XEP-0203 delay, no
        # DateTime (a live message): nothing of these needs an XMPP.* header.
        self.assertEqual(message.conversation_id, "th-1")
        self.assertIsNone(cpim.header(NS_XMPP, "Thread"))
        self.assertEqual(cpim.header(NS_XMPP, "Type").value, "chat")
        self.assertIsNone(cpim.header(NS_XMPP, "Id"))
        self.assertIsNone(cpim.date_time)

    @inlineCallbacks
    def test_message_from_other_network_reaches_xmpp_user(self):
        response = yield self.other.inject(Message(
            parse_uri("im:bob@other.example"), parse_uri("im:alice@test.localhost"),
            Content("text/plain", "grüß dich".encode(), (("charset", "utf-8"),))))
        self.assertIs(response.status, Status.INDETERMINANT, response)
        yield wait_until(lambda: self.alice.messages, 10.0, what="alice's message")
        [received] = self.alice.messages
        self.assertEqual(received["from"], BOB_JID)
        self.assertEqual(received["body"], "grüß dich")

    @inlineCallbacks
    def test_message_to_unknown_user_fails(self):
        response = yield self.other.inject(Message(
            parse_uri("im:bob@other.example"), parse_uri("im:nobody@test.localhost"), Content("text/plain", b"x")))
        self.assertIs(response.status, Status.FAILURE, response)

    @inlineCallbacks
    def test_xmpp_user_subscribes_to_other_network(self):
        self.alice.call(self.alice.client.send_presence, pto=BOB_JID, ptype="subscribe")
        [subscribe] = yield self.other.wait_for(lambda op: isinstance(op, Subscribe)).addTimeout(10, reactor)
        self.assertEqual(str(subscribe.watcher), "pres:alice@test.localhost")
        self.assertEqual(str(subscribe.target), "pres:bob@other.example")
        document = build_pidf(parse_uri("pres:bob@other.example"),
                              [Tuple("ID-phone", PStatus("open", xmpp_show="away"), notes=[Note("on a walk", "en")])])
        yield self.other.inject(Notify(subscribe.watcher, subscribe.target, Content(MEDIA_PIDF, document.to_bytes()),
                                       subscript_id=subscribe.subscript_id, state=SubscriptionState.ACTIVE))
        yield wait_until(lambda: self.alice.roster_subscription(BOB_JID) in ("to", "both"), 10.0,
                         what="alice's roster to show the subscription")
        yield wait_until(lambda: any(p["show"] == "away" for p in self.alice.presences
                                     if p["from"] == BOB_JID + "/phone"), 10.0, what="bob's presence")
        # A change flows too.
        document = build_pidf(parse_uri("pres:bob@other.example"),
                              [Tuple("ID-phone", PStatus("open", xmpp_show="dnd"), notes=[Note("busy", "en")])])
        yield self.other.inject(Notify(subscribe.watcher, subscribe.target, Content(MEDIA_PIDF, document.to_bytes()),
                                       subscript_id=subscribe.subscript_id, state=SubscriptionState.ACTIVE))
        yield wait_until(lambda: any(p["show"] == "dnd" and p["status"] == "busy" for p in self.alice.presences),
                         10.0, what="bob's presence change")

    @inlineCallbacks
    def test_other_network_subscribes_to_xmpp_user(self):
        response = yield self.other.inject(Subscribe(parse_uri("pres:carol@other.example"),
                                                     parse_uri("pres:alice@test.localhost"), 3600))
        self.assertIs(response.status, Status.SUCCESS, response)
        self.alice.send_presence(pshow="away", pstatus="in a meeting")

        def away(op):
            if not isinstance(op, Notify) or op.presence is None:
                return False
            document = read_pidf(op.presence)
            return any(t.status.xmpp_show == "away" for t in document.tuples)

        [notify] = yield self.other.wait_for(away).addTimeout(10, reactor)
        self.assertEqual(str(notify.target), "pres:alice@test.localhost")
        document = read_pidf(notify.presence)
        [item] = [t for t in document.tuples if t.status.xmpp_show == "away"]
        self.assertEqual(item.id, "ID-desk")
        self.assertEqual([n.text for n in item.notes], ["in a meeting"])

    @inlineCallbacks
    def test_component_reconnects_after_prosody_restart(self):
        yield self.server.stop()
        yield wait_until(lambda: not self.adapter.connected, 10.0, what="the component to notice")
        response = yield self.other.inject(Message(
            parse_uri("im:bob@other.example"), parse_uri("im:alice@test.localhost"), Content("text/plain", b"lost?")))
        self.assertIs(response.status, Status.FAILURE)
        self.assertEqual(response.condition, Condition.SERVICE_UNAVAILABLE)
        yield self.server.start()
        yield wait_until(lambda: self.adapter.connected, 15.0, what="the component to reconnect")
        yield self.alice.stop()
        self.alice = SlixClient("alice@test.localhost/desk2", "alicepw", self.server.c2s_port)
        self.addCleanup(self.alice.stop)
        yield wait_until(self.alice.session_started.is_set, 10.0, what="alice's new session")
        yield self.other.inject(Message(
            parse_uri("im:bob@other.example"), parse_uri("im:alice@test.localhost"), Content("text/plain", b"back")))
        yield wait_until(lambda: any(m["body"] == "back" for m in self.alice.messages), 10.0,
                         what="the message after the restart")
