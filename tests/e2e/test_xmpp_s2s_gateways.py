"""Two cpimgw gateways linked over XMPP server-to-server negotiate the private carriage (XEP-0030).

Gateway A serves SIP users of ``sip-a.localhost`` and is the XMPP server of
``gw-a.localhost``; gateway B serves PRIM users of ``prim-b.localhost`` and
is the XMPP server of ``gw-b.localhost``.  Each has the other's domain as an
XMPP domain and reaches it over a real s2s stream on loopback (STARTTLS,
each trusting the other's certificate, then dialback, XEP-0220).  The SIP and
PRIM sides are recording adapters: what is under test is the XMPP link.

Shown: the first message goes in the native form while A asks B's disco#info;
B advertises ``urn:x-cpimgw:xmpp:carriage``, so the next messages carry the
Message/CPIM object in ``<cpim/>``; once B has asked A in turn, B maps A's
JIDs back to the original addresses and delivers the carried octets
unchanged -- and a domain that does not advertise the feature never gets it
(tests/adapters/xmpp/test_carriage.py).
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from cpimgw.adapters.xmpp.adapter import XMPPAdapter, XMPPSettings
from cpimgw.adapters.xmpp.tls import ensure_self_signed
from cpimgw.cpim.message import build_message
from cpimgw.cpim.operations import MEDIA_CPIM, Content, Message, Status
from cpimgw.cpim.uri import parse_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus
from tests.interop.prosody import free_port, wait_until

WAIT = 15.0  # seconds: the bound of every wait on the other gateway


class XMPPLinkedGatewaysTests(TestCase):
    timeout = 60

    def gateway(self, domain: str, other: str, port: int, other_port: int, local: RecordingAdapter,
                pair: tuple[str, str], other_certificate: str):
        bus = make_bus(reactor=reactor)
        self.addCleanup(bus.stop)
        attach(bus, local)
        local.startService()
        self.addCleanup(local.stopService)
        # STARTTLS both ways, each gateway trusting the other's certificate (RFC 6120 §5, §13.7.2).
        settings = XMPPSettings.from_mapping({
            "mode": "s2s", "domain": domain, "xmpp_domains": [other], "s2s_interface": "127.0.0.1",
            "s2s_port": port, "peers": {other: f"127.0.0.1:{other_port}"}, "require_tls": True,
            "tls_certificate": pair[0], "tls_key": pair[1], "tls_ca": other_certificate,
            "data_dir": self.mktemp(), "bounce_wait": 0.0, "s2s_timeout": 10.0,
        })
        adapter = XMPPAdapter("xmpp", bus, settings)
        bus.register(adapter)
        adapter.startService()
        self.addCleanup(adapter.stopService)
        return adapter

    def setUp(self):
        port_a, port_b = free_port(), free_port()
        self.sip = RecordingAdapter("sip", ["sip-a.localhost"])
        self.prim = RecordingAdapter("prim", ["prim-b.localhost"])
        pair_a = ensure_self_signed(self.mktemp(), "gw-a.localhost")[:2]
        pair_b = ensure_self_signed(self.mktemp(), "gw-b.localhost")[:2]
        self.a = self.gateway("gw-a.localhost", "gw-b.localhost", port_a, port_b, self.sip, pair_a, pair_b[0])
        self.b = self.gateway("gw-b.localhost", "gw-a.localhost", port_b, port_a, self.prim, pair_b, pair_a[0])

    def message(self, n: int) -> Message:
        cpim = build_message(parse_uri("im:bob@sip-a.localhost"), [parse_uri("im:carol@prim-b.localhost")],
                             f"message {n}".encode(), sender_name="Bob",
                             extensions=[("urn:example:x", "X", "Mark", str(n), ())])
        return Message(parse_uri("im:bob@sip-a.localhost"), parse_uri("im:carol%40prim-b.localhost@gw-b.localhost"),
                       Content(MEDIA_CPIM, cpim.to_bytes()), message_id=f"m-{n}", origin="sip")

    @inlineCallbacks
    def send(self, n: int):
        response = yield self.sip.inject(self.message(n))
        self.assertIsNot(response.status, Status.FAILURE, response)
        yield wait_until(lambda: len(self.prim.of_type(Message)) >= n, WAIT, what=f"message {n} at gateway B")
        return self.prim.of_type(Message)[n - 1]

    @inlineCallbacks
    def test_carriage_is_negotiated_then_used(self):
        first = yield self.send(1)
        # Native form: B sees a sender under gw-a (not known as a gateway yet) and the XEP elements.
        self.assertEqual(str(first.destination), "im:carol@prim-b.localhost")
        self.assertNotEqual(first.content.body, self.message(1).content.body)
        self.assertIn(b"From: Bob <im:bob%40sip-a.localhost@gw-a.localhost>", first.content.body)
        self.assertIn(b"X.Mark: 1", first.content.body)  # the extension header crossed in SHIM
        yield wait_until(lambda: self.a.carriage.get("gw-b.localhost", (False,))[0], WAIT,
                         what="gateway A to learn that B reads the carriage")
        self.assertEqual(self.a.counters["disco-out"], 1)
        # The next message carries <cpim/>; B asks A in turn, then trusts A's carriage.
        yield self.send(2)
        yield wait_until(lambda: self.b.carriage.get("gw-a.localhost", (False,))[0], WAIT,
                         what="gateway B to learn that A is a gateway")
        third = yield self.send(3)
        self.assertEqual(third.content.body, self.message(3).content.body)  # the carried octets, unchanged
        self.assertEqual(str(third.source), "im:bob@sip-a.localhost")  # the original sender, not a JID
        self.assertEqual((self.a.counters["disco-out"], self.b.counters["disco-out"]), (1, 1))  # cached per domain
