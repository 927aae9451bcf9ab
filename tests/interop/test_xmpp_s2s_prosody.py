"""Interop: the XMPP adapter as a server-to-server peer of a real Prosody (dialback over verified STARTTLS).

The fixture makes a test CA and two certificates with ``cryptography`` (one
for the Prosody domain ``xmpp.example``, one for the gateway domain
``gw.example``, DNS subjectAltNames), starts Prosody on loopback with s2s
(``s2s_require_encryption = true``, ``s2s_secure_auth = false``: dialback
authenticates, the CA in ``ssl.cafile``) and c2s for a slixmpp user, and a
``twisted.names`` DNS server on loopback that Prosody's libunbound forwards
to: it answers ``_xmpp-server._tcp.gw.example`` with the gateway's port
chosen at run time (RFC 6120 §3.2.1).  The gateway reaches Prosody through
its static ``peers`` table.  The other network is a RecordingAdapter.

Shown: a message each way over s2s with TLS; a presence subscription of the
Prosody user to a user behind the gateway completes; a raw TCP peer that
sends a stanza without dialback is refused with ``<not-authorized/>``; a
peer whose certificate the gateway does not trust gets no stream (the
message for it fails with ``remote-server-not-found``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.names import authority, dns, server
from twisted.trial import unittest

from cpimgw.adapters.xmpp.adapter import XMPPAdapter, XMPPSettings
from cpimgw.adapters.xmpp.s2s import S2SConnection
from cpimgw.adapters.xmpp.tls import load_tls, make_certificate, write_private
from cpimgw.cpim.operations import MEDIA_PIDF, Condition, Content, Message, Notify, Status, Subscribe, SubscriptionState
from cpimgw.cpim.pidf import Status as PStatus, Tuple, build_pidf
from cpimgw.cpim.uri import parse_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus
from tests.interop import require_module, require_program
from tests.interop.prosody import SlixClient, free_port, port_open, wait_until

XMPP = "xmpp.example"
GW = "gw.example"
EVIL = "evil.example"
BOB_JID = "bob\\40other.example@" + GW

CONFIG = """\
-- Loopback-only Prosody with s2s for cpimgw interop tests (tests/interop/test_xmpp_s2s_prosody.py).
run_as_root = true
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{dir}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ {s2s} }}
s2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{ }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "presence"; "message"; "posix"; }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = true
s2s_secure_auth = false
authentication = "internal_hashed"
storage = "internal"
certificates = "{dir}/certs"
ssl = {{ certificate = "{dir}/xmpp.crt"; key = "{dir}/xmpp.key"; cafile = "{dir}/ca.crt" }}
unbound = {{ forward = "127.0.0.1@{dns}"; resolvconf = false; hoststxt = false;
            options = {{ ["do-not-query-localhost:"] = "no" }} }}

VirtualHost "{host}"
"""


class ZoneAuthority(authority.FileAuthority):
    """A tiny in-memory zone (twisted.names) for the gateway's domain."""

    def __init__(self, zone: bytes, records: dict) -> None:
        authority.FileAuthority.__init__(self, None)
        self.soa = (zone, dns.Record_SOA(mname=zone, rname=b"root." + zone, serial=1, refresh=60, retry=60,
                                         expire=60, minimum=60))
        self.records = {zone: [self.soa[1]], **records}


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(20):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free UDP+TCP port")


class Certificates:
    """A test CA and certificates signed by it, written to ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        ca_pem, ca_key_pem, self.ca_key = make_certificate("cpimgw test CA", is_ca=True)
        from cryptography import x509

        self.ca_name = x509.load_pem_x509_certificate(ca_pem).subject
        self.ca = self._write("ca.crt", ca_pem)

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def issue(self, domain: str, name: str) -> tuple[str, str]:
        cert_pem, key_pem, _ = make_certificate(domain, issuer_key=self.ca_key, issuer_name=self.ca_name)
        key_path = os.path.join(self.directory, name + ".key")
        write_private(key_path, key_pem)
        return self._write(name + ".crt", cert_pem), key_path


class RawPeer(protocol.Protocol):
    """A TCP client that opens a jabber:server stream and sends a stanza without dialback."""

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.transport.write(
            f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
            f"streams' xmlns:db='jabber:server:dialback' from='{XMPP}' to='{GW}' version='1.0'>".encode())
        self.transport.write(f"<message from='mallory@{XMPP}' to='{BOB_JID}'><body>forged</body></message>".encode())

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.data += data

    def connectionLost(self, reason) -> None:  # noqa: N802 - Twisted's name
        self.closed.callback(self.data)


class ProsodyS2STests(unittest.TestCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self):
        require_module("slixmpp")
        prosody = require_program("prosody")
        prosodyctl = require_program("prosodyctl")
        self.dir = tempfile.mkdtemp(prefix="cpimgw-prosody-s2s-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        for sub in ("data", "certs"):
            os.makedirs(os.path.join(self.dir, sub))
        certs = Certificates(self.dir)
        certs.issue(XMPP, "xmpp")
        gw_cert, gw_key = certs.issue(GW, "gw")

        # An s2s peer with a certificate nobody here trusts (self-signed by an unknown key).
        evil_cert, evil_key, _ = make_certificate(EVIL)
        evil_paths = (os.path.join(self.dir, "evil.crt"), os.path.join(self.dir, "evil.key"))
        with open(evil_paths[0], "wb") as handle:
            handle.write(evil_cert)
        write_private(evil_paths[1], evil_key)
        self.evil = S2SConnection(reactor, EVIL, port=0, tls=load_tls(*evil_paths))
        self.evil.startService()
        self.addCleanup(self.evil.stopService)

        # The gateway, on a port chosen now.
        self.bus = make_bus(reactor=reactor)
        yield self.bus.started
        self.addCleanup(self.bus.stop)
        self.other = RecordingAdapter("other", ["other.example"])
        attach(self.bus, self.other)
        self.other.startService()
        self.c2s_port, self.s2s_port = free_port(), free_port()
        settings = XMPPSettings.from_mapping({
            "mode": "s2s", "domain": GW, "xmpp_domains": [XMPP, EVIL], "s2s_port": 0,
            "peers": {XMPP: f"127.0.0.1:{self.s2s_port}", EVIL: f"127.0.0.1:{self.evil.port}"},
            "tls_certificate": gw_cert, "tls_key": gw_key, "tls_ca": certs.ca,
            "s2s_timeout": 15.0, "bounce_wait": 10.0,
        })
        self.adapter = XMPPAdapter("xmpp", self.bus, settings)
        self.bus.register(self.adapter)
        self.adapter.startService()
        self.addCleanup(self.adapter.stopService)
        self.s2s = self.adapter.connection
        gw_port = self.s2s.port

        # DNS for Prosody: _xmpp-server._tcp.gw.example -> 127.0.0.1:gw_port.
        zone = GW.encode()
        records = {b"_xmpp-server._tcp." + zone: [dns.Record_SRV(0, 0, gw_port, zone)]}
        names = ZoneAuthority(zone, records)
        names.records[zone].append(dns.Record_A("127.0.0.1"))
        factory = server.DNSServerFactory(authorities=[names])
        dns_port = free_udp_tcp_port()
        udp = reactor.listenUDP(dns_port, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        self.addCleanup(udp.stopListening)
        tcp = reactor.listenTCP(dns_port, factory, interface="127.0.0.1")
        self.addCleanup(tcp.stopListening)

        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        with open(self.config, "w") as handle:
            handle.write(CONFIG.format(dir=self.dir, c2s=self.c2s_port, s2s=self.s2s_port, dns=dns_port, host=XMPP))
        subprocess.run([prosodyctl, "--config", self.config, "register", "alice", XMPP, "alicepw"],
                       cwd=self.dir, check=True, timeout=20, capture_output=True)
        out = open(os.path.join(self.dir, "prosody.stdout"), "ab")
        self.process = subprocess.Popen([prosody, "-F", "--config", self.config], cwd=self.dir,
                                        stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.addCleanup(self._stop_prosody)
        yield wait_until(lambda: port_open(self.c2s_port) and port_open(self.s2s_port), 15.0, what="prosody's ports")
        self.alice = SlixClient(f"alice@{XMPP}/desk", "alicepw", self.c2s_port)
        self.addCleanup(self.alice.stop)
        yield wait_until(self.alice.session_started.is_set, 10.0, what="alice's session")

    @inlineCallbacks
    def _stop_prosody(self):
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                yield wait_until(lambda: process.poll() is not None, 10.0, what="prosody to exit")
            except AssertionError:
                process.kill()
                yield wait_until(lambda: process.poll() is not None, 5.0, what="prosody to die")
        if os.environ.get("CPIMGW_KEEP_LOGS"):
            shutil.copy(os.path.join(self.dir, "prosody.log"), os.environ["CPIMGW_KEEP_LOGS"])

    def prosody_log(self) -> str:
        try:
            with open(os.path.join(self.dir, "prosody.log")) as handle:
                return handle.read()
        except OSError:
            return ""

    def assert_tls_out(self):
        entry = self.s2s.outgoing[XMPP]
        self.assertIsNotNone(entry.stream)
        self.assertTrue(entry.stream.transport.TLS, "the outgoing stream to Prosody is not TLS")

    @inlineCallbacks
    def test_message_from_prosody_user_reaches_other_network(self):
        self.alice.send_message(BOB_JID, "over s2s", id="m-1")
        [message] = yield self.other.wait_for(lambda op: isinstance(op, Message)).addTimeout(30, reactor)
        self.assertEqual(str(message.source), f"im:alice@{XMPP}")
        self.assertEqual(message.source_instance, "desk")
        self.assertEqual(str(message.destination), "im:bob@other.example")
        self.assertEqual(message.message_id, "m-1")
        self.assertGreaterEqual(self.s2s.counters["dialback-in-valid"], 1)
        self.assertGreaterEqual(self.s2s.counters["stanza-in"], 1)
        [incoming] = [xs for xs in self.s2s.incoming if xs.authenticator.authenticated]
        self.assertEqual(incoming.authenticator.authenticated, {XMPP})
        self.assertTrue(incoming.transport.TLS, "the incoming stream from Prosody is not TLS")

    @inlineCallbacks
    def test_message_from_other_network_reaches_prosody_user(self):
        response = yield self.other.inject(Message(
            parse_uri("im:bob@other.example"), parse_uri(f"im:alice@{XMPP}"),
            Content("text/plain", "grüß dich".encode(), (("charset", "utf-8"),))))
        yield wait_until(lambda: self.alice.messages, 30.0, what="alice's message")
        [received] = self.alice.messages
        self.assertEqual(received["from"], BOB_JID)
        self.assertEqual(received["body"], "grüß dich")
        self.assertIn(response.status, (Status.INDETERMINANT, Status.SUCCESS), response)
        self.assert_tls_out()
        self.assertEqual(self.s2s.counters["stream-out"], 1)

    @inlineCallbacks
    def test_presence_subscription_completes(self):
        self.alice.call(self.alice.client.send_presence, pto=BOB_JID, ptype="subscribe")
        [subscribe] = yield self.other.wait_for(lambda op: isinstance(op, Subscribe)).addTimeout(30, reactor)
        self.assertEqual(str(subscribe.watcher), f"pres:alice@{XMPP}")
        self.assertEqual(str(subscribe.target), "pres:bob@other.example")
        document = build_pidf(parse_uri("pres:bob@other.example"),
                              [Tuple("ID-phone", PStatus("open", xmpp_show="away"))])
        yield self.other.inject(Notify(subscribe.watcher, subscribe.target, Content(MEDIA_PIDF, document.to_bytes()),
                                       subscript_id=subscribe.subscript_id, state=SubscriptionState.ACTIVE))
        yield wait_until(lambda: self.alice.roster_subscription(BOB_JID) in ("to", "both"), 30.0,
                         what="alice's roster to show the subscription")
        yield wait_until(lambda: any(p["show"] == "away" for p in self.alice.presences
                                     if p["from"] == BOB_JID + "/phone"), 30.0, what="bob's presence")
        self.assert_tls_out()

    @inlineCallbacks
    def test_unauthenticated_peer_refused(self):
        peer = RawPeer()
        yield protocol.ClientCreator(reactor, lambda: peer).connectTCP("127.0.0.1", self.s2s.port)
        data = yield peer.closed.addTimeout(15, reactor)
        self.assertIn(b"<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", data)
        self.assertEqual(self.s2s.counters["refused-not-authorized"], 1)
        self.assertEqual(self.s2s.stats.rejected["not-authorized"], 1)
        self.assertEqual(self.other.delivered, [])

    @inlineCallbacks
    def test_untrusted_certificate_refused(self):
        response = yield self.other.inject(Message(
            parse_uri("im:bob@other.example"), parse_uri(f"im:mallory@{EVIL}"), Content("text/plain", b"secret")))
        self.assertIs(response.status, Status.FAILURE, response)
        self.assertEqual(response.condition, Condition.NO_ROUTE)
        self.assertEqual(self.s2s.counters["stream-out-failed-tls"], 1)
        self.assertIsNone(self.s2s.outgoing[EVIL].stream)
        self.assertEqual(self.evil.counters["stanza-in"], 0)
