"""Unit tests of the XMPP s2s attachment (cpimgw.adapters.xmpp.s2s): dialback (XEP-0220/0185), STARTTLS, refusals.

Streams are driven through ``StringTransport`` (extended with a recorded
``startTLS``) on a ``MemoryReactorClock``: no sockets, no wall clock.
"""

from __future__ import annotations

import os
import stat

from hypothesis import given, settings, strategies as st
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest
from twisted.words.xish import domish
from tx_xmpp.server import generateKey

from cpimgw.adapters.xmpp.adapter import XMPPAdapter, XMPPSettings
from cpimgw.adapters.xmpp.mapping import parse_fragment
from cpimgw.adapters.xmpp.s2s import S2SConnection, dialback_key, failure_kind
from cpimgw.adapters.xmpp.tls import ensure_self_signed, load_tls
from cpimgw.cpim.operations import Condition, Content, Message, Status
from cpimgw.cpim.uri import parse_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus

GW = "gw.example"
PEER = "xmpp.example"
PEER_HEADER = (f"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
               f"xmlns:db='jabber:server:dialback' from='{PEER}' to='{GW}' version='1.0'>").encode()
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"


class TLSStringTransport(StringTransport):
    """A ``StringTransport`` that records ``startTLS`` (the TLS layer itself is not under test here)."""

    TLS = False
    tls_options = None

    def startTLS(self, options):  # noqa: N802 - Twisted's name
        self.tls_options = options
        self.TLS = True


def tls_material(test: unittest.TestCase, domain: str = GW):
    directory = test.mktemp()
    certificate, key, _ = ensure_self_signed(directory, domain)
    return load_tls(certificate, key)


def elements(data: bytes) -> list[domish.Element]:
    """The top-level elements in ``data`` (stream header and footer stripped)."""
    text = data.decode()
    if "<stream:stream" in text:
        text = text[text.index(">", text.index("<stream:stream")) + 1 :]
    text = text.replace("</stream:stream>", "")
    wrapper = parse_fragment(("<x xmlns:stream='http://etherx.jabber.org/streams' "
                              "xmlns:db='jabber:server:dialback'>" + text + "</x>").encode(), "jabber:server")
    return list(wrapper.elements())


class DialbackKeyTests(unittest.TestCase):
    def test_xep0220_example_key(self):
        # The XEP-0220 example (originating example.org, receiving xmpp.example.com), as in wokkel's tests.
        self.assertEqual(dialback_key("s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F"),
                         "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643")

    @settings(max_examples=200, deadline=None)
    @given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=40),
           st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True), st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True),
           st.from_regex(r"[A-Za-z0-9]{1,20}", fullmatch=True))
    def test_same_as_wokkel(self, secret, receiving, originating, stream_id):
        self.assertEqual(dialback_key(secret, receiving, originating, stream_id),
                         generateKey(secret, receiving, originating, stream_id))

    def test_roles_matter(self):
        self.assertNotEqual(dialback_key("s", "a.example", "b.example", "1"),
                            dialback_key("s", "b.example", "a.example", "1"))


class S2SHarness:
    require_tls = True

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.tls = tls_material(self) if self.require_tls else None
        self.s2s = S2SConnection(self.reactor, GW, port=0, tls=self.tls, require_tls=self.require_tls,
                                 peers={PEER: ("127.0.0.1", 5269)}, secret="gw-secret", timeout=30.0)
        self.received: list[domish.Element] = []
        self.s2s.router.addObserver("/message", self.received.append)
        self.s2s.router.addObserver("/presence", self.received.append)
        self.s2s.startService()
        self.addCleanup(self.s2s.stopService)

    # -- incoming ---------------------------------------------------------

    def incoming(self):
        xs = self.s2s.factory.buildProtocol(None)
        transport = TLSStringTransport()
        xs.makeConnection(transport)
        xs.dataReceived(PEER_HEADER)
        return xs, transport

    def secure_incoming(self):
        xs, transport = self.incoming()
        if self.require_tls:
            xs.dataReceived(f"<starttls xmlns='{NS_TLS}'/>".encode())
            xs.dataReceived(PEER_HEADER)
        transport.clear()
        return xs, transport

    # -- outgoing ---------------------------------------------------------

    def answer_outgoing(self, *, dialback: str | None = "valid"):
        """Play the peer on the last outgoing connection up to dialback; return (xs, transport, sent elements)."""
        host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
        self.assertEqual((host, port), ("127.0.0.1", 5269))
        xs = factory.buildProtocol(None)
        transport = TLSStringTransport()
        xs.makeConnection(transport)
        header = (f"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
                  f"xmlns:db='jabber:server:dialback' from='{PEER}' to='{GW}' id='S1' version='1.0'>").encode()
        xs.dataReceived(header)
        if self.require_tls:
            xs.dataReceived(f"<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls></stream:features>"
                            .encode())
            self.assertIn(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", transport.value())
            xs.dataReceived(f"<proceed xmlns='{NS_TLS}'/>".encode())
            self.assertTrue(transport.TLS)
            transport.clear()
            xs.dataReceived(header.replace(b"id='S1'", b"id='S2'"))
        xs.dataReceived(b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        sent = elements(transport.value())
        transport.clear()
        if dialback is not None:
            xs.dataReceived(f"<db:result from='{PEER}' to='{GW}' type='{dialback}'/>".encode())
        return xs, transport, sent


class IncomingTests(S2SHarness, unittest.TestCase):
    def test_features_offer_required_starttls_then_dialback(self):
        xs, transport = self.incoming()
        data = transport.value()
        self.assertIn(b"from='gw.example'", data)
        self.assertIn(b"id='", data)
        self.assertIn(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>", data)
        self.assertNotIn(b"urn:xmpp:features:dialback", data)
        transport.clear()
        xs.dataReceived(f"<starttls xmlns='{NS_TLS}'/>".encode())
        self.assertEqual(transport.value(), b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertIsNotNone(transport.tls_options)
        transport.clear()
        xs.dataReceived(PEER_HEADER)
        data = transport.value()
        self.assertIn(b"<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>", data)
        self.assertNotIn(b"starttls", data)

    def test_stanza_before_dialback_not_authorized(self):
        xs, transport = self.secure_incoming()
        xs.dataReceived(f"<message from='eve@{PEER}' to='bob@{GW}'><body>x</body></message>".encode())
        self.assertIn(b"<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.s2s.counters["refused-not-authorized"], 1)
        self.assertEqual(self.s2s.stats.rejected["not-authorized"], 1)
        self.assertEqual(self.received, [])

    def test_dialback_before_tls_is_policy_violation(self):
        xs, transport = self.incoming()
        transport.clear()
        xs.dataReceived(f"<db:result from='{PEER}' to='{GW}'>abc</db:result>".encode())
        self.assertIn(b"<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())
        self.assertEqual(self.reactor.tcpClients, [])

    def test_wrong_host_unknown(self):
        xs = self.s2s.factory.buildProtocol(None)
        transport = TLSStringTransport()
        xs.makeConnection(transport)
        xs.dataReceived(PEER_HEADER.replace(f"to='{GW}'".encode(), b"to='other.example'"))
        self.assertIn(b"<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())
        self.assertEqual(self.s2s.counters["refused-host-unknown"], 1)

    def test_client_namespace_invalid(self):
        xs = self.s2s.factory.buildProtocol(None)
        transport = TLSStringTransport()
        xs.makeConnection(transport)
        xs.dataReceived(PEER_HEADER.replace(b"xmlns='jabber:server'", b"xmlns='jabber:client'"))
        self.assertIn(b"<invalid-namespace xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())

    def receive_result(self, answer: str):
        """The peer sends db:result; we verify it with the peer's Authoritative Server, which answers ``answer``."""
        xs, transport = self.secure_incoming()
        stream_id = xs.sid
        xs.dataReceived(f"<db:result from='{PEER}' to='{GW}'>peer-key</db:result>".encode())
        self.assertEqual(transport.value(), b"")  # nothing until the Authoritative Server answered
        verify_xs, verify_transport, sent = self.answer_outgoing(dialback=None)
        [verify] = sent
        self.assertEqual((verify.uri, verify.name), ("jabber:server:dialback", "verify"))
        self.assertEqual((verify["from"], verify["to"], verify["id"], str(verify)), (GW, PEER, stream_id, "peer-key"))
        verify_xs.dataReceived(f"<db:verify from='{PEER}' to='{GW}' id='{stream_id}' type='{answer}'/>".encode())
        return xs, transport

    def test_result_verified_then_stanzas_accepted(self):
        xs, transport = self.receive_result("valid")
        [result] = elements(transport.value())
        self.assertEqual((result.name, result["from"], result["to"], result["type"]), ("result", GW, PEER, "valid"))
        self.assertEqual(xs.authenticator.authenticated, {PEER})
        self.assertEqual(self.s2s.counters["dialback-in-valid"], 1)
        xs.dataReceived(f"<message from='alice@{PEER}/desk' to='bob\\40sip.example@{GW}'><body>hi</body></message>"
                        .encode())
        [message] = self.received
        self.assertEqual((message["from"], str(message.body)), (f"alice@{PEER}/desk", "hi"))

    def test_unauthenticated_from_is_invalid_from(self):
        xs, transport = self.receive_result("valid")
        transport.clear()
        xs.dataReceived(f"<message from='mallory@evil.example' to='bob@{GW}'><body>x</body></message>".encode())
        self.assertIn(b"<invalid-from xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())
        self.assertEqual(self.s2s.counters["refused-invalid-from"], 1)
        self.assertEqual(self.received, [])

    def test_stanza_for_another_domain_host_unknown(self):
        xs, transport = self.receive_result("valid")
        transport.clear()
        xs.dataReceived(f"<message from='alice@{PEER}' to='bob@elsewhere.example'><body>x</body></message>".encode())
        self.assertIn(b"<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())

    def test_failed_verification_not_authorized(self):
        xs, transport = self.receive_result("invalid")
        data = transport.value()
        [result, error] = elements(data)[:2]
        self.assertEqual((result.name, result["type"]), ("result", "invalid"))
        self.assertIn(b"<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", data)
        self.assertEqual(xs.authenticator.authenticated, set())
        self.assertEqual(self.s2s.counters["dialback-in-failed"], 1)

    def test_authoritative_verify(self):
        xs, transport = self.secure_incoming()
        key = dialback_key("gw-secret", PEER, GW, "abc123")
        xs.dataReceived(f"<db:verify from='{PEER}' to='{GW}' id='abc123'>{key}</db:verify>".encode())
        xs.dataReceived(f"<db:verify from='{PEER}' to='{GW}' id='abc124'>{key}</db:verify>".encode())
        [valid, invalid] = elements(transport.value())
        self.assertEqual((valid.name, valid["from"], valid["to"], valid["id"], valid["type"]),
                         ("verify", GW, PEER, "abc123", "valid"))
        self.assertEqual((invalid["id"], invalid["type"]), ("abc124", "invalid"))
        self.assertEqual(self.s2s.counters["dialback-verify-valid"], 1)
        self.assertEqual(self.s2s.counters["dialback-verify-invalid"], 1)

    def test_domains_per_stream_bounded(self):
        self.s2s.max_domains = 2
        self.s2s.peers.update({f"p{index}.example": ("127.0.0.1", 5269) for index in range(3)})
        xs, transport = self.secure_incoming()
        for index in range(3):
            xs.dataReceived(f"<db:result from='p{index}.example' to='{GW}'>k</db:result>".encode())
        self.assertEqual(len(self.reactor.tcpClients), 2)  # one verification stream each for p0, p1
        self.assertIn(b"<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())
        self.assertEqual(xs.authenticator.verifying, {"p0.example", "p1.example"})

    def test_incoming_streams_bounded(self):
        self.s2s.max_incoming = 1
        self.incoming()
        xs, transport = self.incoming()
        self.assertIn(b"<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())

    def test_idle_unauthenticated_stream_times_out(self):
        xs, transport = self.secure_incoming()
        self.reactor.advance(30.0)
        self.assertIn(b"<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())

    def test_oversized_stanza_policy_violation(self):
        xs, transport = self.receive_result("valid")
        transport.clear()
        xs.dataReceived(f"<message from='alice@{PEER}' to='bob@{GW}'><body>".encode() + b"x" * 70000)
        self.assertIn(b"<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", transport.value())


class OutgoingTests(S2SHarness, unittest.TestCase):
    def message(self, to=f"alice@{PEER}"):
        stanza = domish.Element(("jabber:server", "message"))
        stanza["from"], stanza["to"], stanza["id"] = f"bob\\40sip.example@{GW}", to, "m1"
        stanza.addElement("body", content="hello")
        return stanza

    def test_starttls_dialback_then_queue_flushed(self):
        self.s2s.send(self.message())
        xs, transport, sent = self.answer_outgoing(dialback=None)
        [result] = sent
        self.assertEqual((result.name, result["from"], result["to"]), ("result", GW, PEER))
        self.assertEqual(str(result), dialback_key("gw-secret", PEER, GW, "S2"))  # the stream ID after TLS
        self.assertEqual(transport.value(), b"")  # nothing before the peer says valid
        xs.dataReceived(f"<db:result from='{PEER}' to='{GW}' type='valid'/>".encode())
        [message] = elements(transport.value())
        self.assertEqual((message.name, message["to"], str(message.body)), ("message", f"alice@{PEER}", "hello"))
        transport.clear()
        self.s2s.send(self.message())  # the stream is reused
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(len(elements(transport.value())), 1)
        self.assertEqual(self.s2s.counters["stream-out"], 1)

    def test_client_tls_verifies_peer_domain(self):
        self.s2s.send(self.message())
        xs, transport, sent = self.answer_outgoing(dialback=None)
        self.assertEqual(transport.tls_options._hostnameASCII, PEER)

    def test_dialback_refused_bounces_queue(self):
        self.s2s.send(self.message())
        self.answer_outgoing(dialback="invalid")
        [bounce] = self.received
        self.assertEqual((bounce["type"], bounce["from"], bounce["to"], bounce["id"]),
                         ("error", f"alice@{PEER}", f"bob\\40sip.example@{GW}", "m1"))
        self.assertEqual(bounce.error.firstChildElement().name, "remote-server-not-found")
        self.assertEqual(self.s2s.counters["stream-out-failed-dialback"], 1)

    def test_timeout_bounces_queue(self):
        self.s2s.send(self.message())
        host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
        xs = factory.buildProtocol(None)
        transport = TLSStringTransport()
        xs.makeConnection(transport)  # connected, but the peer never answers
        self.reactor.advance(30.0)
        [bounce] = self.received
        self.assertEqual(bounce["type"], "error")
        self.assertEqual(self.s2s.counters["stream-out-failed-timeout"], 1)
        self.assertTrue(transport.disconnecting)
        from twisted.internet.error import ConnectionAborted
        from twisted.python.failure import Failure

        xs.connectionLost(Failure(ConnectionAborted()))  # the end of the stream after the timeout is quiet
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_no_tls_offered_refused_when_required(self):
        self.s2s.send(self.message())
        host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
        xs = factory.buildProtocol(None)
        transport = TLSStringTransport()
        xs.makeConnection(transport)
        xs.dataReceived(PEER_HEADER.replace(f"from='{PEER}' to='{GW}'".encode(), f"from='{PEER}' id='S1'".encode()))
        xs.dataReceived(b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        self.assertNotIn(b"db:result", transport.value())
        self.assertFalse(transport.TLS)
        self.assertEqual(len(self.received), 1)

    def test_queue_is_bounded(self):
        self.s2s.max_queue = 2
        for _ in range(3):
            self.s2s.send(self.message())
        self.assertEqual(len(self.received), 1)
        self.assertEqual(self.s2s.counters["bounced-queue-full"], 1)

    def test_srv_lookup_then_default_port(self):
        from twisted.internet.defer import fail, succeed
        from twisted.names import client, dns
        from twisted.names.error import DNSNameError

        asked = []

        def lookup(name, *args, **kw):
            asked.append(name)
            if name == "_xmpp-server._tcp.srv.example":
                record = dns.RRHeader(name, dns.SRV, payload=dns.Record_SRV(0, 0, 5270, "xmpp.srv.example"))
                return succeed(([record], [], []))
            return fail(DNSNameError(name))

        self.patch(client, "lookupService", lookup)
        self.s2s.send(self.message("alice@srv.example"))
        self.s2s.send(self.message("alice@nosrv.example"))
        self.assertEqual(asked, ["_xmpp-server._tcp.srv.example", "_xmpp-server._tcp.nosrv.example"])
        self.assertEqual([(host, port) for host, port, *_ in self.reactor.tcpClients],
                         [("xmpp.srv.example", 5270), ("nosrv.example", 5269)])

    def test_failure_kinds(self):
        from OpenSSL import SSL
        from twisted.internet.error import ConnectionRefusedError
        from twisted.python.failure import Failure

        self.assertEqual(failure_kind(Failure(SSL.Error([("SSL routines", "", "certificate verify failed")]))), "tls")
        self.assertEqual(failure_kind(Failure(ConnectionRefusedError())), "connect")


class PlainDialbackTests(S2SHarness, unittest.TestCase):
    """With ``require_tls = false`` and no certificate, dialback runs on the plain stream."""

    require_tls = False

    def test_features_offer_dialback_only(self):
        xs, transport = self.incoming()
        self.assertIn(b"<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>", transport.value())
        self.assertNotIn(b"starttls", transport.value())

    def test_outgoing_without_tls(self):
        message = domish.Element(("jabber:server", "message"))
        message["from"], message["to"] = f"bob@{GW}", f"alice@{PEER}"
        self.s2s.send(message)
        xs, transport, sent = self.answer_outgoing(dialback="valid")
        self.assertEqual(sent[0]["to"], PEER)
        self.assertIn(b"<message", transport.value())


class EmbeddedDefaultTests(unittest.TestCase):
    def test_default_is_s2s_with_generated_certificate(self):
        bus = make_bus()
        data_dir = self.mktemp()
        settings = XMPPSettings.from_mapping({"data_dir": data_dir})
        adapter = XMPPAdapter("xmpp", bus, settings)
        self.assertIsInstance(adapter.connection, S2SConnection)
        self.assertFalse(os.path.exists(data_dir))  # nothing written before the start
        adapter.startService()
        self.addCleanup(adapter.stopService)
        [(port, factory, backlog, interface)] = bus.reactor.tcpServers
        self.assertEqual((port, interface), (25269, "127.0.0.1"))
        key_path = os.path.join(data_dir, "xmpp-gw.localhost.key")
        self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)
        from cryptography import x509

        with open(os.path.join(data_dir, "xmpp-gw.localhost.crt"), "rb") as handle:
            certificate = x509.load_pem_x509_certificate(handle.read())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["gw.localhost"])
        # A second start reuses the pair.
        self.assertFalse(ensure_self_signed(data_dir, "gw.localhost")[2])

    def test_adapter_over_s2s(self):
        bus = make_bus()
        other = RecordingAdapter("sip", ["sip.example"])
        attach(bus, other)
        other.startService()
        settings = XMPPSettings.from_mapping({
            "domain": GW, "xmpp_domains": [PEER], "s2s_port": 0, "require_tls": False,
            "peers": {PEER: "127.0.0.1:5269"}, "data_dir": self.mktemp(), "bounce_wait": 5.0,
        })
        adapter = XMPPAdapter("xmpp", bus, settings)
        bus.register(adapter)
        adapter.startService()
        self.addCleanup(adapter.stopService)
        self.assertEqual(adapter.listening_addresses, adapter.connection.listening_addresses)
        response = other.inject(Message(parse_uri("im:bob@sip.example"), parse_uri(f"im:alice@{PEER}"),
                                        Content("text/plain", b"hi")))
        # The stream cannot be set up (the peer refuses): the message fails with remote-server-not-found.
        host, port, factory, timeout, bind = bus.reactor.tcpClients[-1]
        from twisted.internet.error import ConnectionRefusedError
        from twisted.python.failure import Failure

        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        result = self.successResultOf(response)
        self.assertIs(result.status, Status.FAILURE)
        self.assertEqual(result.condition, Condition.NO_ROUTE)
        self.assertEqual(adapter.connection.counters["stream-out-failed-connect"], 1)
