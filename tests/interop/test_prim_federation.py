"""Two cpimgw instances federating over PRIM server-to-server (draft-ietf-prim-server-00) with TLS.

One trial process, the real reactor, real TCP on 127.0.0.1 (ephemeral ports):
gateway A serves ``a.example`` and peers with ``b.example``; gateway B the
reverse.  Each has its own bus and a PRIM user agent logged in
(``alice@a.example``, ``bob@b.example``) through :class:`PrimClient`.  The
servers verify each other with a test CA (subjectAltName DNS = the domain),
STARTTLS, then LOGIN with SASL EXTERNAL.  Shown: messages both ways (body
octets and Message-ID unchanged), presence subscriptions both ways, and a
peer that is unauthenticated or claims a domain it has not proven refused.

Each gateway has its own loopback address (A 127.0.0.2, B 127.0.0.3; Linux
routes all of 127/8 to lo), so that the peer verification of
draft-ietf-prim-server-00 §9.1 (DNS, then VERIFYSERVER to the claimed
domain's server) can tell servers apart: a hand-driven peer binds the
address it pretends to have.
"""

from __future__ import annotations

import attrs
from twisted.internet import defer, reactor, ssl
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim import wire
from cpimgw.adapters.prim.adapter import PeerSettings, PrimAdapter, PrimSettings
from cpimgw.adapters.prim.client import PrimClient
from cpimgw.adapters.prim.presence_doc import basic_status
from cpimgw.adapters.prim.protocol import PrimProtocol
from cpimgw.adapters.prim.server import login_to_peer
from cpimgw.adapters.prim.sasl import SASLError
from cpimgw.testing import make_bus
from tests.adapters.prim.certs import TestCA

WAIT = 10  # seconds: every wait on the network is bounded


def bounded(d: defer.Deferred, seconds: float = WAIT) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


ADDRESSES = {"a.example": "127.0.0.2", "b.example": "127.0.0.3"}


class TwoGateways(TestCase):
    """Gateways A (a.example) and B (b.example) peering over TLS, with alice on A and bob on B."""

    timeout = 60
    #: per domain, settings over the fixture's
    extra_settings: dict = {}
    #: whether the gateways use STARTTLS towards each other
    peer_tls = True

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        self.directory = self.mktemp()
        import os

        os.makedirs(self.directory)
        self.ca = TestCA()
        self.gateways = {}
        for domain, peer, user in (("a.example", "b.example", "alice"), ("b.example", "a.example", "bob")):
            address = ADDRESSES[domain]
            bus = make_bus(reactor=reactor)
            yield bus.started
            settings = PrimSettings.from_mapping({
                "local_domains": [domain],
                "users": {user: f"{user}-secret"},
                "peers": {peer: {"host": "127.0.0.1", "port": 1}},
                "srv_lookup": False,
                "listen_host": address,
                "outbound_address": address,
                **self.ca.write(self.directory, domain),
                **self.extra_settings.get(domain, {}),
            })
            adapter = PrimAdapter(settings, bus, listen_ports={"server": 0, "client": 0})
            bus.register(adapter)
            yield adapter.startService()
            self.gateways[domain] = (bus, adapter)
            self.addCleanup(bus.stop)
            self.addCleanup(adapter.stopService)
        for domain, (bus, adapter) in self.gateways.items():
            peer = "b.example" if domain == "a.example" else "a.example"
            port = self.gateways[peer][1].port_of("server")
            adapter.settings = attrs.evolve(adapter.settings, peers={
                peer: PeerSettings(peer, ADDRESSES[peer], port, tls=self.peer_tls)})
        self.alice = yield self.client("a.example", "alice")
        self.bob = yield self.client("b.example", "bob")

    @defer.inlineCallbacks
    def client(self, domain: str, user: str):  # type: ignore[no-untyped-def]
        adapter = self.gateways[domain][1]
        client = PrimClient(reactor, f"{user}@{domain}", f"{user}-secret")
        yield bounded(client.connect(adapter.settings.listen_host, adapter.port_of("client")))
        yield bounded(client.listen())
        self.addCleanup(client.protocol.close)
        return client


    @defer.inlineCallbacks
    def raw_peer(self, target: str, *, cert_domain: str | None = None, ca: TestCA | None = None,
                 bind: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
        """A hand-driven server connection from ``bind`` to ``target``'s s2s port, optionally with TLS
        as ``cert_domain``."""
        adapter = self.gateways[target][1]
        protocol = PrimProtocol(None, reactor, request_timeout=WAIT)
        endpoint = HostnameEndpoint(reactor, ADDRESSES[target], adapter.port_of("server"), bindAddress=(bind, 0))
        yield bounded(connectProtocol(endpoint, protocol))
        self.addCleanup(protocol.close)
        if cert_domain is not None:
            issuer = ca or self.ca
            cert, key = issuer.issue(cert_domain)
            options = ssl.optionsForClientTLS(
                target, trustRoot=ssl.Certificate.loadPEM(self.ca.pem),
                clientCertificate=ssl.PrivateCertificate.loadPEM(cert + key))
            answer = yield bounded(protocol.send_request("STARTTLS"))
            self.assertEqual(answer.code, 200)
            yield bounded(protocol.start_tls(options))
        return protocol


class FederationTests(TwoGateways):

    @defer.inlineCallbacks
    def test_messages_both_ways(self):  # type: ignore[no-untyped-def]
        body = "Grüße from a.example \x00\xff".encode("utf-8")
        answer = yield bounded(self.alice.send("im:bob@b.example", body, message_id="m-1", conversation_id="c-1"))
        self.assertEqual(answer.code, 200)
        received = yield bounded(self.bob.wait_for("SEND"))
        self.assertEqual(received.body, body)
        self.assertEqual(received.header("From"), "im:alice@a.example")
        self.assertEqual(received.header("Message-ID"), "m-1")
        self.assertEqual(received.header("Conversation-ID"), "c-1")
        self.assertEqual(received.header("Content-Type"), "text/plain; charset=UTF-8")
        # alice logged in with CRAM-MD5 on a plain connection: the weakest link is "weak"
        self.assertEqual(received.header("AStrength"), "weak")
        answer = yield bounded(self.bob.send("im:alice@a.example", b"reply", conversation_id="c-1"))
        self.assertEqual(answer.code, 200)
        received = yield bounded(self.alice.wait_for("SEND"))
        self.assertEqual((received.body, received.header("From")), (b"reply", "im:bob@b.example"))

    @defer.inlineCallbacks
    def test_closed_inbox_and_unknown_user(self):  # type: ignore[no-untyped-def]
        yield bounded(self.bob.silence())
        answer = yield bounded(self.alice.send("im:bob@b.example", b"anyone?", ok=(408,)))
        self.assertEqual(answer.code, 408)

    @defer.inlineCallbacks
    def test_presence_both_ways(self):  # type: ignore[no-untyped-def]
        answer = yield bounded(self.alice.subscribe("pres:bob@b.example", 600))
        self.assertIn(answer.code, (200, 201))
        yield bounded(self.bob.publish_status("open", note="at my desk"))
        notify = yield bounded(self.alice.wait_for("NOTIFY", lambda r: b"open" in r.body))
        self.assertEqual(notify.header("From"), "pres:bob@b.example")
        self.assertEqual(notify.header("To"), "pres:alice@a.example")
        self.assertEqual(basic_status(notify.body), "open")
        self.assertIn(b"at my desk", notify.body)
        answer = yield bounded(self.bob.subscribe("pres:alice@a.example", 600))
        self.assertIn(answer.code, (200, 201))
        yield bounded(self.alice.publish_status("closed"))
        notify = yield bounded(self.bob.wait_for("NOTIFY", lambda r: b"closed" in r.body))
        self.assertEqual(notify.header("From"), "pres:alice@a.example")
        answer = yield bounded(self.alice.unsubscribe("pres:bob@b.example"))
        self.assertEqual(answer.code, 200)

    def spoofed_send(self, protocol: PrimProtocol) -> defer.Deferred:
        return bounded(protocol.send_request("SEND", [
            ("From", "im:alice@a.example"), ("To", "im:bob@b.example"), ("Message-ID", "spoof"),
            ("Conversation-ID", "spoof"), ("Content-Type", "text/plain")], b"I am alice, honest"))

    @defer.inlineCallbacks
    def test_unauthenticated_peer_refused(self):  # type: ignore[no-untyped-def]
        protocol = yield self.raw_peer("b.example")
        answer = yield self.spoofed_send(protocol)
        # B asked a.example's server (VERIFYSERVER) about 127.0.0.1, which is not one of A's addresses
        self.assertEqual(answer.code, 402)
        self.assertEqual(self.gateways["b.example"][1].counters["verify_failed"], 1)
        answer = yield bounded(protocol.send_request("LOGIN", [("Domain", "a.example"), ("Auth-State", "init"),
                                                               ("SASL-Mech", "CRAM-MD5")]))
        self.assertEqual(answer.code, 406)  # TLS first (s2s_require_tls)
        self.assertEqual(self.bob.received, [])

    @defer.inlineCallbacks
    def test_spoofing_peer_refused(self):  # type: ignore[no-untyped-def]
        protocol = yield self.raw_peer("b.example", cert_domain="evil.example")
        with self.assertRaises(SASLError):
            yield login_to_peer(protocol, domain="a.example", mechanisms=["EXTERNAL"], secret=None)
        protocol = yield self.raw_peer("b.example", cert_domain="evil.example")
        answer = yield self.spoofed_send(protocol)
        self.assertEqual(answer.code, 402)
        self.assertEqual(self.bob.received, [])
        self.assertEqual(self.gateways["b.example"][1].counters["spoofing_refused"], 1)

    @defer.inlineCallbacks
    def test_untrusted_certificate_refused(self):  # type: ignore[no-untyped-def]
        protocol = yield self.raw_peer("b.example", cert_domain="a.example", ca=TestCA("rogue CA"))
        try:
            answer = yield self.spoofed_send(protocol)
        except Exception:  # the handshake failed and the connection closed: refused too
            answer = None
        self.assertTrue(answer is None or answer.code in (401, 402))
        self.assertEqual(self.bob.received, [])

    @defer.inlineCallbacks
    def test_verifyserver(self):  # type: ignore[no-untyped-def]
        protocol = yield self.raw_peer("b.example")
        answer = yield bounded(protocol.send_request("VERIFYSERVER", [("Server-Address", "127.0.0.3")]))
        self.assertEqual((answer.code, answer.header("Server-Address")), (200, "127.0.0.3"))
        answer = yield bounded(protocol.send_request("VERIFYSERVER", [("Server-Address", "192.0.2.7")]))
        self.assertEqual(answer.code, 403)
        self.assertTrue(self.gateways["b.example"][1].verifies_peers())


class CommandLineTests(TwoGateways):
    """``cpimgw prim`` (cpimgw.adapters.prim.cli) against the same two gateways."""

    def run_cli(self, *argv: str) -> defer.Deferred:
        import argparse
        import io

        from cpimgw.adapters.prim import cli

        parser = argparse.ArgumentParser(prog="cpimgw")
        cli.register(parser.add_subparsers(dest="command"))
        port = self.gateways["a.example"][1].port_of("client")
        args = parser.parse_args(["prim", "--server", f"{ADDRESSES['a.example']}:{port}", "--user", "alice@a.example",
                                  "--password", "alice-secret", *argv])
        self.assertIs(args.run, cli.run)
        out = io.StringIO()
        return bounded(cli.session(reactor, args, out)).addCallback(lambda status: (status, out.getvalue()))

    @defer.inlineCallbacks
    def test_cli_send(self):  # type: ignore[no-untyped-def]
        status, output = yield self.run_cli("send", "im:bob@b.example", "hello from the command line")
        self.assertEqual(status, 0)
        self.assertIn("SEND answered 200 OK", output)
        received = yield bounded(self.bob.wait_for("SEND"))
        self.assertEqual(received.body, b"hello from the command line")

    @defer.inlineCallbacks
    def test_cli_subscribe_prints_presence(self):  # type: ignore[no-untyped-def]
        yield bounded(self.bob.publish_status("open"))
        reactor.callLater(0.5, self.bob.publish_status, "closed")
        status, output = yield self.run_cli("subscribe", "pres:bob@b.example", "--wait", "2")
        self.assertEqual(status, 0)
        self.assertIn("presence of pres:bob@b.example: closed", output)

    @defer.inlineCallbacks
    def test_cli_wrong_password(self):  # type: ignore[no-untyped-def]
        import argparse
        import io

        from cpimgw.adapters.prim import cli

        parser = argparse.ArgumentParser(prog="cpimgw")
        cli.register(parser.add_subparsers(dest="command"))
        port = self.gateways["a.example"][1].port_of("client")
        args = parser.parse_args(["prim", "--server", f"{ADDRESSES['a.example']}:{port}", "--user", "alice@a.example",
                                  "--password", "nope", "publish", "open"])
        out = io.StringIO()
        status = yield bounded(cli.session(reactor, args, out))
        self.assertEqual(status, 2)
        self.assertIn("406", out.getvalue())


class Redirector:
    """A PRIM server for b.example that authenticates A (STARTTLS + EXTERNAL) and then
    answers every request with ``300 Redirect`` to the real server of b.example."""

    def __init__(self, options: object, target: tuple[str, int]) -> None:
        self.options = options
        self.target = target
        self.redirected = 0

    def connection_made(self, protocol: PrimProtocol) -> None:
        pass

    def connection_lost(self, protocol: PrimProtocol, reason: object) -> None:
        pass

    def request_received(self, protocol: PrimProtocol, request: wire.Request):  # type: ignore[no-untyped-def]
        if request.method == "STARTTLS":
            protocol.respond(request, 200)
            protocol.start_tls(self.options)
            return None
        if request.method == "LOGIN":
            if request.header("Auth-State") == "init":
                return wire.response_to(request, 100, [("Domain", "a.example"), ("Auth-State", "init"),
                                                       ("SASL-Mech", "EXTERNAL")])
            return wire.response_to(request, 200, [("Domain", "a.example"), ("Auth-State", "continue")])
        self.redirected += 1
        return wire.response_to(request, 300, [("Redirect", f"{self.target[0]} {self.target[1]}")])


class RedirectTests(TwoGateways):
    @defer.inlineCallbacks
    def test_300_redirect_followed(self):  # type: ignore[no-untyped-def]
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.protocol import Factory

        cert, key = self.ca.issue("b.example")
        options = ssl.PrivateCertificate.loadPEM(cert + key).options()
        redirector = Redirector(options, (ADDRESSES["b.example"], self.gateways["b.example"][1].port_of("server")))
        factory = Factory.forProtocol(lambda: PrimProtocol(redirector, reactor))
        listening = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(listening.stopListening)
        adapter = self.gateways["a.example"][1]
        adapter.settings = attrs.evolve(adapter.settings, peers={
            "b.example": PeerSettings("b.example", "127.0.0.1", listening.getHost().port)})
        answer = yield bounded(self.alice.send("im:bob@b.example", b"via the redirect"))
        self.assertEqual(answer.code, 200)
        received = yield bounded(self.bob.wait_for("SEND"))
        self.assertEqual(received.body, b"via the redirect")
        self.assertEqual(redirector.redirected, 1)


class VerifyServerTests(TwoGateways):
    """server-00 §9.1 / §7.3.5: a peer that proves nothing is checked against the domain it speaks for."""

    extra_settings = {"a.example": {"server_addresses": ["127.0.0.4"]}}

    def plain_send(self, protocol: PrimProtocol, message_id: str) -> defer.Deferred:
        return bounded(protocol.send_request("SEND", [
            ("From", "im:alice@a.example"), ("To", "im:bob@b.example"), ("Message-ID", message_id),
            ("Conversation-ID", "v"), ("Content-Type", "text/plain")], b"verified " + message_id.encode()))

    @defer.inlineCallbacks
    def test_peer_at_the_domains_address(self):  # type: ignore[no-untyped-def]
        protocol = yield self.raw_peer("b.example", bind=ADDRESSES["a.example"])  # no TLS, no LOGIN
        answer = yield self.plain_send(protocol, "v1")
        self.assertEqual(answer.code, 200)
        received = yield bounded(self.bob.wait_for("SEND"))
        self.assertEqual((received.body, received.header("AStrength")), (b"verified v1", "weak"))
        b = self.gateways["b.example"][1]
        self.assertEqual((b.counters["verify_by_address"], b.counters["verify_by_verifyserver"]), (1, 0))
        answer = yield self.plain_send(protocol, "v2")  # proven for the rest of the connection
        self.assertEqual(answer.code, 200)
        self.assertEqual(b.counters["verify_by_address"], 1)

    @defer.inlineCallbacks
    def test_peer_confirmed_by_verifyserver(self):  # type: ignore[no-untyped-def]
        # 127.0.0.4 is not what a.example resolves to (127.0.0.2), but A lists it as one of its servers
        protocol = yield self.raw_peer("b.example", bind="127.0.0.4")
        answer = yield self.plain_send(protocol, "v3")
        self.assertEqual(answer.code, 200)
        received = yield bounded(self.bob.wait_for("SEND"))
        self.assertEqual(received.header("Message-ID"), "v3")
        self.assertEqual(self.gateways["b.example"][1].counters["verify_by_verifyserver"], 1)

    @defer.inlineCallbacks
    def test_spoofing_peer_refused_by_verifyserver(self):  # type: ignore[no-untyped-def]
        protocol = yield self.raw_peer("b.example", bind="127.0.0.9")
        answer, again = yield defer.gatherResults([self.plain_send(protocol, "s1"), self.plain_send(protocol, "s2")])
        self.assertEqual((answer.code, again.code), (402, 402))
        b = self.gateways["b.example"][1]
        self.assertEqual((b.counters["spoofing_refused"], b.counters["verify_failed"]), (2, 1))  # one callback for both
        self.assertEqual(self.bob.received, [])


class UnauthenticatedFederationTests(TwoGateways):
    """No TLS, no secrets: each gateway proves its domain to the other through VERIFYSERVER."""

    peer_tls = False
    # A sends from 127.0.0.4 (its outbound address), which B cannot find by resolving a.example
    extra_settings = {"a.example": {"outbound_address": "127.0.0.4", "tls_certificate": "", "tls_key": "",
                                    "tls_ca": ""}}

    @defer.inlineCallbacks
    def test_messages_both_ways_verified(self):  # type: ignore[no-untyped-def]
        answer = yield bounded(self.alice.send("im:bob@b.example", b"over plain TCP", message_id="u-1"))
        self.assertEqual(answer.code, 200)
        received = yield bounded(self.bob.wait_for("SEND"))
        self.assertEqual((received.body, received.header("Message-ID")), (b"over plain TCP", "u-1"))
        self.assertEqual(self.gateways["b.example"][1].counters["verify_by_verifyserver"], 1)
        answer = yield bounded(self.bob.send("im:alice@a.example", b"and back"))
        self.assertEqual(answer.code, 200)
        received = yield bounded(self.alice.wait_for("SEND"))
        self.assertEqual(received.body, b"and back")
        self.assertEqual(self.gateways["a.example"][1].counters["verify_by_address"], 1)
