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
