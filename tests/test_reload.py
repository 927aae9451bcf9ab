"""Tests of GatewayService.reload (what SIGHUP runs): routes, policy and TLS certificates, broken files refused."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from cpimgw.config import find_adapter_factories, load_config
from cpimgw.cpim.operations import Condition, Content, Message, Status
from cpimgw.cpim.uri import im_uri
from cpimgw.service import make_service
from cpimgw.store.memory import MemoryStore
from tests.adapters.prim.certs import TestCA
from tests.test_metrics import Delta

BASE = """
[gateway]
name = "reloading"

[store]
kind = "memory"

[routing]
srv_fallback = false
{routes}

[policy]
message = "{message}"
deny_domains = {deny}

[adapters.xmpp]
enabled = false

[adapters.sip]
enabled = false

[adapters.prim]
local_domains = ["prim.example"]
listen_host = "127.0.0.1"
s2s_port = 0
c2s_port = 0
srv_lookup = false
users = {{ carol = "carolpw-never-logged" }}
{tls}
"""


class ReloadTests(TestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "gateway.toml")
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def write(self, *, routes: str = "", message: str = "allow", deny: str = "[]", tls: str = "") -> None:
        with open(self.path, "w") as handle:
            handle.write(BASE.format(routes=routes, message=message, deny=deny, tls=tls))

    def start(self) -> Any:
        self.reactor = MemoryReactorClock()
        config = load_config(self.path)
        svc = make_service(config, self.reactor, factories=find_adapter_factories(), store=MemoryStore(),
                           on_start_failure=lambda failure: self.fail(failure))
        svc.startService()
        self.successResultOf(svc.started)
        self.addCleanup(svc.stopService)
        return svc

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def test_routes_and_policy_applied(self) -> None:
        self.write()
        svc = self.start()
        prim = svc.adapters[0]
        # A connection that is up before the reload stays up after it.
        session_transport = StringTransport()
        from cpimgw.adapters.prim.server import Session

        protocol = prim.make_protocol(Session(prim, "client"))
        protocol.makeConnection(session_transport)

        def hang_up() -> None:
            from twisted.internet.error import ConnectionDone
            from twisted.python.failure import Failure

            protocol.connectionLost(Failure(ConnectionDone()))

        self.addCleanup(hang_up)
        self.assertIsNone(svc.bus.adapter_for_now("elsewhere.example"))
        delta = Delta()
        self.write(routes='[routing.domains]\n"elsewhere.example" = "prim"', message="deny",
                   deny='["bad.example"]')
        changes = svc.reload()
        self.assertEqual(changes, [
            "routing.domains.elsewhere.example: added -> prim",
            "policy.message: allow -> deny",
            "policy.deny_domains: [] -> [bad.example]",
        ])
        self.assertIs(svc.bus.adapter_for_now("elsewhere.example"), prim)
        self.assertEqual(svc.config.policy.message, "deny")
        self.assertEqual(dict(svc.config.routing.domains), {"elsewhere.example": "prim"})
        answer = self.successResultOf(svc.bus.dispatch(Message(
            im_uri("carol", "prim.example"), im_uri("dave", "elsewhere.example"), Content("text/plain", b"x"))))
        self.assertIs(answer.status, Status.FAILURE)
        self.assertIs(answer.condition, Condition.FORBIDDEN)
        self.assertFalse(session_transport.disconnecting)
        self.assertIn(protocol.handler, prim.sessions)
        self.assertEqual(len(self.named("config.changed")), 3)
        [done] = self.named("config.reloaded")
        self.assertEqual(done["count"], 3)
        self.assertEqual(delta.of("cpimgw_config_reloads_total", result="applied"), 1)
        # Nothing changed: nothing to apply, still a reload.
        self.assertEqual(svc.reload(), [])

    def test_broken_file_refused_running_config_kept(self) -> None:
        self.write(routes='[routing.domains]\n"elsewhere.example" = "prim"')
        svc = self.start()
        running = svc.config
        routes, policy = svc.bus.routes, svc.bus.policy
        delta = Delta()
        for broken in ('[routing\n"x" = 1', '[routing.domains]\n"elsewhere.example" = "nosuchadapter"',
                       '[policy]\nmessage = "sometimes"'):
            with open(self.path, "w") as handle:
                handle.write(broken)
            del self.events[:]
            self.assertEqual(svc.reload(), [])
            [refused] = self.named("config.reload_refused")
            text = refused["error"]
            self.assertNotIn("\n", text)
            self.assertIn(self.path, text)
            self.assertIs(svc.config, running)
            self.assertIs(svc.bus.routes, routes)
            self.assertIs(svc.bus.policy, policy)
            self.assertIs(svc.bus.adapter_for_now("elsewhere.example"), svc.adapters[0])
        self.assertEqual(delta.of("cpimgw_config_reloads_total", result="refused"), 3)
        os.remove(self.path)
        self.assertEqual(svc.reload(), [])
        self.assertIn("cannot read", self.named("config.reload_refused")[-1]["error"])

    def test_restart_only_changes_reported_not_applied(self) -> None:
        self.write()
        svc = self.start()
        with open(self.path, "a") as handle:
            handle.write("max_connections_per_ip = 3\n")
        self.assertEqual(svc.reload(), [])
        [warning] = self.named("config.needs_restart")
        self.assertEqual(warning["key"], "[adapters.prim]")
        self.assertEqual(svc.adapters[0].settings.max_connections_per_ip, 64)

    def test_tls_certificates_reloaded(self) -> None:
        ca = TestCA()
        paths = ca.write(self.dir, "prim.example")
        tls = "\n".join(f'{key} = "{value}"' for key, value in paths.items())
        self.write(tls=tls)
        svc = self.start()
        prim = svc.adapters[0]

        def serving_certificate() -> bytes:
            options = prim.server_tls_options()
            return options.certificate.to_cryptography().public_bytes(_PEM)

        from cryptography.hazmat.primitives.serialization import Encoding

        _PEM = Encoding.PEM
        with open(paths["tls_certificate"], "rb") as handle:
            first = handle.read()
        self.assertEqual(serving_certificate(), first)
        # The same files again: nothing to reload.
        self.assertEqual(svc.reload(), [])
        # Renewed in place (as an ACME client does): the next handshake presents the new one.
        renewed, key = ca.issue("prim.example")
        with open(paths["tls_certificate"], "wb") as handle:
            handle.write(renewed)
        with open(paths["tls_key"], "wb") as handle:
            handle.write(key)
        self.assertEqual(svc.reload(), [f"adapters.prim TLS: certificate {paths['tls_certificate']} reloaded"])
        self.assertEqual(serving_certificate(), renewed)
        # A broken certificate is refused; the one in use stays.
        with open(paths["tls_certificate"], "wb") as handle:
            handle.write(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        self.assertEqual(svc.reload(), [])
        [refused] = self.named("config.reload_refused")
        self.assertIn("TLS material of adapter prim does not load", refused["error"])
        self.assertEqual(serving_certificate(), renewed)
        # A key that does not match the certificate is refused too.
        with open(paths["tls_certificate"], "wb") as handle:
            handle.write(ca.issue("prim.example")[0])
        self.assertEqual(svc.reload(), [])
        self.assertEqual(len(self.named("config.reload_refused")), 2)
        self.assertEqual(serving_certificate(), renewed)

    def test_built_in_defaults_have_nothing_to_reload(self) -> None:
        from cpimgw.config import from_mapping

        config = from_mapping({"store": {"kind": "memory"}, "routing": {"srv_fallback": False},
                               "adapters": {"xmpp": {"enabled": False}, "sip": {"enabled": False},
                                            "prim": {"enabled": False}}})
        svc = make_service(config, MemoryReactorClock(), store=MemoryStore(), on_start_failure=lambda f: None)
        self.assertEqual(svc.reload(), [])
        self.assertEqual(len(self.named("config.reload_refused")), 1)


TLS_ADAPTERS = """
[gateway]
name = "reloading-tls"
data_dir = "{dir}"

[store]
kind = "memory"

[routing]
srv_fallback = false

[adapters.prim]
enabled = false

[adapters.sip]
domains = ["sip.example"]
interface = "127.0.0.1"
transports = ["tls"]
tls_port = {sip_port}
use_dns = false
tls_certificate = "{sip_cert}"
tls_key = "{sip_key}"

[adapters.xmpp]
mode = "s2s"
domain = "gw.example"
xmpp_domains = ["xmpp.example"]
s2s_interface = "127.0.0.1"
s2s_port = 0
tls_certificate = "{xmpp_cert}"
tls_key = "{xmpp_key}"
"""


class ListenerTLSReloadTests(TestCase):
    """SIP's TLS listener and XMPP's s2s streams present a renewed certificate after a reload, on a real socket."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.ca = TestCA()
        self.sip = self.ca.write(self.dir, "sip.example")
        self.xmpp = self.ca.write(self.dir, "gw.example")
        from tests.test_service import free_loopback_port

        self.path = os.path.join(self.dir, "gateway.toml")
        with open(self.path, "w") as handle:
            handle.write(TLS_ADAPTERS.format(dir=self.dir, sip_port=free_loopback_port(),
                                             sip_cert=self.sip["tls_certificate"], sip_key=self.sip["tls_key"],
                                             xmpp_cert=self.xmpp["tls_certificate"], xmpp_key=self.xmpp["tls_key"]))

    def renew(self, paths: dict[str, str], domain: str) -> bytes:
        certificate, key = self.ca.issue(domain)
        with open(paths["tls_certificate"], "wb") as handle:
            handle.write(certificate)
        with open(paths["tls_key"], "wb") as handle:
            handle.write(key)
        return certificate

    def presented(self, port: int, domain: str) -> Any:
        """Connect to 127.0.0.1:port with TLS (trusting the test CA) and fire with the certificate presented (PEM)."""
        from twisted.internet import reactor, ssl
        from twisted.internet.defer import Deferred
        from twisted.internet.endpoints import SSL4ClientEndpoint
        from twisted.internet.interfaces import IHandshakeListener
        from twisted.internet.protocol import Protocol
        from zope.interface import implementer

        seen: Deferred = Deferred()

        @implementer(IHandshakeListener)
        class Peek(Protocol):
            def connectionMade(self) -> None:  # noqa: N802 (Twisted name)
                self.transport.write(b"\r\n")  # drives the handshake

            def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted name)
                pass

            def handshakeCompleted(self) -> None:  # noqa: N802 (Twisted name)
                if not seen.called:
                    seen.callback(ssl.Certificate.peerFromTransport(self.transport).dumpPEM())
                self.transport.loseConnection()

        options = ssl.optionsForClientTLS(domain, trustRoot=ssl.Certificate.loadPEM(self.ca.pem))
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, options)
        return endpoint.connect(_factory(Peek)).addCallback(lambda _: seen).addTimeout(10, reactor)

    async def test_sip_and_xmpp_certificates_renewed(self) -> None:
        from cryptography import x509
        from twisted.internet import reactor

        config = load_config(self.path)
        svc = make_service(config, reactor, factories=find_adapter_factories(), store=MemoryStore(),
                           on_start_failure=lambda failure: None)
        svc.startService()
        self.addCleanup(svc.stopService)
        await svc.started
        sip = svc.bus.adapter_named("sip")
        xmpp = svc.bus.adapter_named("xmpp")
        port = sip.stack.local_ports["TLS"]

        def der(pem: bytes) -> bytes:
            return x509.load_pem_x509_certificate(pem).public_bytes(_DER)

        from cryptography.hazmat.primitives.serialization import Encoding

        _DER = Encoding.DER
        with open(self.sip["tls_certificate"], "rb") as handle:
            first = handle.read()
        self.assertEqual(der(await self.presented(port, "sip.example")), der(first))
        renewed_sip = self.renew(self.sip, "sip.example")
        renewed_xmpp = self.renew(self.xmpp, "gw.example")
        changes = svc.reload()
        self.assertEqual(sorted(changes), sorted([
            f"adapters.sip TLS: certificate {self.sip['tls_certificate']} reloaded",
            f"adapters.xmpp TLS: certificate {self.xmpp['tls_certificate']} reloaded",
        ]))
        self.assertEqual(der(await self.presented(port, "sip.example")), der(renewed_sip))
        self.assertEqual(der(xmpp.connection.tls.certificate.dumpPEM()), der(renewed_xmpp))
        self.assertEqual(der(xmpp.connection.server_options.certificate.to_cryptography().public_bytes(
            Encoding.PEM)), der(renewed_xmpp))
        # A key that is not the certificate's: refused, the renewed ones stay.
        with open(self.sip["tls_key"], "wb") as handle:
            handle.write(self.ca.issue("sip.example")[1])
        self.assertEqual(svc.reload(), [])
        self.assertEqual(der(await self.presented(port, "sip.example")), der(renewed_sip))


def _factory(protocol: type) -> Any:
    from twisted.internet.protocol import Factory

    return Factory.forProtocol(protocol)
