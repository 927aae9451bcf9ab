"""The gateway as an operator runs it: a real Prometheus scrapes it, SIGHUP reloads it, its JSON log is searchable.

One ``twistd -n cpimgw`` process joins Prosody, Kamailio and its own PRIM
server (the three-networks fixtures), with the operators' endpoint on a free
loopback port and ``log_format = "json"``.  Messages cross every adapter --
XMPP -> SIP, SIP -> PRIM, PRIM -> XMPP -- and a PRIM user agent fails a
LOGIN.  A real Prometheus (Debian's ``prometheus``, its own configuration
and data directory in the test's temp dir, on loopback) scrapes
``/metrics`` every second, and the series are read back through its HTTP
API: each adapter's messages in and out, the pairs, the latency histograms,
the failed login, the parse errors by protocol, connections, the scrape's
own ``up``.  Then the
configuration is changed and SIGHUP sent: the change is applied while
carol's PRIM connection stays up, a broken file is refused with one line,
and Prometheus sees both reloads.  ``cpimgw status`` reads the same endpoint.
"""

from __future__ import annotations

import io
import json
import os
import signal

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread

from cpimgw.adapters.prim.client import PrimClient, PrimClientError
from tests.e2e.peers import free_port, gateway_config, traced_requests, wait_until, xmpp_jid_of
from tests.e2e.prometheus import Prometheus
from tests.e2e.world import WAIT, ThreeNetworksTestCase

#: Every secret of conf/three-networks.toml, and the wrong pass phrase the test tries: none may be logged.
SECRETS = ("s3cret", "carolpw", "davepw", "not-carols-pw")


class OperationsTests(ThreeNetworksTestCase):
    timeout = 240

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        yield self.start_peers()
        self.ports = self.gateway_ports()
        self.status_port = free_port()
        self.config_text = gateway_config(
            xmpp_component_port=self.prosody.component_port, kamailio_port=self.kamailio.port, **self.ports,
            extra=[('log_level = "info"',
                    f'log_level = "info"\nstatus_port = {self.status_port}\nlog_format = "json"')])
        self.gateway = yield self.start_gateway("gw", self.config_text)
        self.alice = yield self.xmpp_user("alice")
        self.carol = yield self.prim_user("carol")
        self.prometheus = Prometheus(os.path.join(self.dir, "prometheus"), [f"127.0.0.1:{self.status_port}"])
        self.addCleanup(self.prometheus.stop)
        yield self.prometheus.started()

    @inlineCallbacks
    def series(self, expression: str, expected: dict, what: str):  # type: ignore[no-untyped-def]
        """Ask Prometheus until it answers ``expected`` ({sorted labels tuple: value}) for ``expression`` (bounded)."""
        from twisted.internet.task import deferLater

        now = None
        for _ in range(60):  # 30 s at most: scrapes are every second
            vector = yield self.prometheus.query(expression)
            now = {tuple(sorted(dict(labels).items())): value for labels, value in vector.items()}
            if now == expected:
                return now
            yield deferLater(reactor, 0.5, lambda: None)
        raise AssertionError(f"{what}: Prometheus answers {now!r} for {expression}, expected {expected!r}\n"
                             f"{self.gateway.log()[-3000:]}")

    def json_events(self) -> list[dict]:
        """The gateway's log from its first JSON line on: every line must be one JSON object."""
        events, started = [], False
        for line in self.gateway.log().splitlines():
            if not started and not line.startswith("{"):
                continue  # twistd's own start-up lines, before the gateway switched the format
            started = True
            events.append(json.loads(line))
        return events

    @inlineCallbacks
    def test_prometheus_scrapes_the_gateway(self):  # type: ignore[no-untyped-def]
        # XMPP -> SIP: alice writes to bob, a SIP user registered at Kamailio.
        uas, workdir = yield self.sip_receiver("bob")
        self.alice.send_message(xmpp_jid_of("bob", "sip.localhost"), "metrics: XMPP to SIP")
        code, output = yield uas.ended
        self.assertEqual(code, 0, output[-2000:])
        self.assertEqual(len(traced_requests(workdir, "MESSAGE")), 1)
        # SIP -> PRIM: bob writes to carol.
        yield self.sip_send("bob@sip.localhost", "carol@prim.localhost", "metrics: SIP to PRIM")
        yield self.carol.wait_for("SEND").addTimeout(WAIT, reactor)
        # PRIM -> XMPP: carol writes to alice.
        answer = yield self.carol.send("im:alice@xmpp.localhost", b"metrics: PRIM to XMPP").addTimeout(WAIT, reactor)
        self.assertIn(answer.code, (200, 101))
        yield wait_until(lambda: self.alice.messages, WAIT, what="alice's message")
        # A PRIM user agent that gets carol's pass phrase wrong.
        intruder = PrimClient(reactor, "carol@prim.localhost", "not-carols-pw")
        self.addCleanup(lambda: intruder.protocol.close())
        failure = yield self.assertFailure(
            intruder.connect("127.0.0.1", self.ports["prim_c2s_port"]).addTimeout(WAIT, reactor), PrimClientError)
        self.assertEqual(failure.response.code, 406)

        # A PRIM peer and a SIP peer that send what is not their protocol (each refused, the gateway serves on).
        import socket

        with socket.create_connection(("127.0.0.1", self.ports["prim_c2s_port"]), timeout=5) as raw:
            raw.sendall(b"THIS IS NOT PRIM\r\n\r\n")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"THIS IS NOT SIP\r\n\r\n", ("127.0.0.1", self.ports["sip_port"]))

        # Read back through Prometheus's HTTP API.
        yield self.series('up{job="cpimgw"}', {(("__name__", "up"), ("instance", f"127.0.0.1:{self.status_port}"),
                                                ("job", "cpimgw")): 1.0}, "the scrape")
        for adapter in ("xmpp", "sip", "prim"):
            for direction in ("in", "out"):
                yield self.series(
                    f'sum(cpimgw_operations_total{{adapter="{adapter}",direction="{direction}",kind="message"}})',
                    {(): 1.0}, f"{adapter} messages {direction}")
                yield self.series(
                    f'sum(cpimgw_operation_duration_seconds_count{{adapter="{adapter}",direction="{direction}",'
                    f'kind="message"}})', {(): 1.0}, f"{adapter} latency observations {direction}")
        yield self.series(
            'sum by (source, destination) (cpimgw_routed_operations_total{kind="message",'
            'outcome=~"success|indeterminate"})',
            {(("destination", "sip"), ("source", "xmpp")): 1.0, (("destination", "prim"), ("source", "sip")): 1.0,
             (("destination", "xmpp"), ("source", "prim")): 1.0}, "the protocol pairs")
        yield self.series('sum(cpimgw_operations_total{kind="message",outcome!~"success|indeterminate"})', {},
                          "no failed message")
        yield self.series('cpimgw_auth_failures_total{adapter="prim"}',
                          {(("__name__", "cpimgw_auth_failures_total"), ("adapter", "prim"),
                            ("instance", f"127.0.0.1:{self.status_port}"), ("job", "cpimgw"),
                            ("peer_kind", "client")): 1.0}, "the failed PRIM login")
        yield self.series('sum by (adapter) (cpimgw_adapter_up)',
                          {(("adapter", "prim"),): 1.0, (("adapter", "sip"),): 1.0, (("adapter", "xmpp"),): 1.0},
                          "adapters up")
        yield self.series('sum by (adapter, peer_kind) (cpimgw_connections{peer_kind=~"component|client"})',
                          {(("adapter", "prim"), ("peer_kind", "client")): 1.0,
                           (("adapter", "xmpp"), ("peer_kind", "component")): 1.0}, "connections")
        yield self.series("sum by (protocol) (cpimgw_parse_errors_total)",
                          {(("protocol", "prim"),): 1.0, (("protocol", "sip"),): 1.0}, "parse errors by protocol")
        yield self.series("sum(cpimgw_healthy)", {(): 1.0}, "health")
        yield self.series("sum by (adapter, queue) (cpimgw_queued)",
                          {(("adapter", "xmpp"), ("queue", "bounce_wait")): 0.0,
                           (("adapter", "xmpp"), ("queue", "s2s_queue")): 0.0}, "nothing left waiting")
        # The quantiles the dashboard draws are computable from the histogram.
        p99 = yield self.prometheus.query(
            'histogram_quantile(0.99, sum by (le) (cpimgw_operation_duration_seconds_bucket{direction="out",'
            'kind="message"}))')
        [(labels, value)] = p99.items()
        self.assertTrue(0 < value < 32, value)

        # The JSON log: one object per line, the failed login with account and address, no secret anywhere.
        events = self.json_events()
        self.assertTrue(events)
        [failed] = [e for e in events if e.get("event") == "prim.login.failed"]
        self.assertEqual(failed["account"], "pres:carol@prim.localhost")
        self.assertRegex(failed["peer"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual((failed["protocol"], failed["condition"]), ("prim", "not-authorized"))
        log_text = self.gateway.log()
        for secret in SECRETS:
            self.assertNotIn(secret, log_text)

        # cpimgw status on the same endpoint.
        from cpimgw.status import run as status

        out, err = io.StringIO(), io.StringIO()
        code = yield deferToThread(status, f"http://127.0.0.1:{self.status_port}", out, err)
        self.assertEqual(code, 0, err.getvalue())
        text = out.getvalue()
        self.assertIn("gateway three-networks: healthy", text)
        self.assertRegex(text, r"prim: running; connections client 1, outbound 0, server 0; in 1, out 1")
        self.assertIn("authentication failures 1", text)

    @inlineCallbacks
    def test_sighup_reload_keeps_connections(self):  # type: ignore[no-untyped-def]
        answer = yield self.carol.send("im:alice@xmpp.localhost", b"before the reload").addTimeout(WAIT, reactor)
        self.assertIn(answer.code, (200, 101))
        # The policy now refuses messages from prim.localhost, and a route is added; SIGHUP.
        with open(self.gateway.config) as handle:
            text = handle.read()
        text = text.replace("[routing]\n", '[routing.domains]\n"elsewhere.example" = "xmpp"\n\n[routing]\n', 1)
        text += '\n[policy]\ndeny_domains = ["prim.localhost"]\n'
        with open(self.gateway.config, "w") as handle:
            handle.write(text)
        os.kill(self.gateway.process.pid, signal.SIGHUP)
        yield wait_until(lambda: any(e.get("event") == "config.reloaded" for e in self.json_events()), WAIT,
                         what="the reload")
        changes = [e["change"] for e in self.json_events() if e.get("event") == "config.changed"]
        self.assertEqual(changes, ["routing.domains.elsewhere.example: added -> xmpp",
                                   "policy.deny_domains: [] -> [prim.localhost]"])
        # carol's connection is the same one, and the new policy holds at once.
        self.assertFalse(self.carol.closed.called)
        refused = yield self.assertFailure(
            self.carol.send("im:alice@xmpp.localhost", b"after the reload").addTimeout(WAIT, reactor), PrimClientError)
        self.assertEqual(refused.response.code, 402)  # PRIM's "Forbidden"
        # A broken file: refused with one line, the running configuration stays, nothing is dropped.
        with open(self.gateway.config, "w") as handle:
            handle.write(text.replace("[routing.domains]", "[routing.domains", 1))
        os.kill(self.gateway.process.pid, signal.SIGHUP)
        yield wait_until(lambda: any(e.get("event") == "config.reload_refused" for e in self.json_events()), WAIT,
                         what="the refusal")
        [refused_event] = [e for e in self.json_events() if e.get("event") == "config.reload_refused"]
        self.assertIn("TOML syntax error", refused_event["error"])
        self.assertNotIn("\n", refused_event["message"])
        self.assertFalse(self.carol.closed.called)
        still = yield self.assertFailure(
            self.carol.send("im:alice@xmpp.localhost", b"after the refusal").addTimeout(WAIT, reactor), PrimClientError)
        self.assertEqual(still.response.code, 402)
        # The policy back as it was: delivered again, on the same connection, the XMPP link never re-opened.
        with open(self.gateway.config, "w") as handle:
            handle.write(text.replace('deny_domains = ["prim.localhost"]', "deny_domains = []"))
        os.kill(self.gateway.process.pid, signal.SIGHUP)
        yield wait_until(lambda: sum(e.get("event") == "config.reloaded" for e in self.json_events()) == 2, WAIT,
                         what="the second reload")
        answer = yield self.carol.send("im:alice@xmpp.localhost", b"allowed again").addTimeout(WAIT, reactor)
        self.assertIn(answer.code, (200, 101))
        yield wait_until(lambda: any(m["body"] == "allowed again" for m in self.alice.messages), WAIT,
                         what="alice's message after the reloads")
        self.assertEqual([m["body"] for m in self.alice.messages], ["before the reload", "allowed again"])
        self.assertEqual(self.gateway.count_in_log(r"XMPP component \S+ authenticated"), 1)
        yield self.series("sum by (result) (cpimgw_config_reloads_total)",
                          {(("result", "applied"),): 2.0, (("result", "refused"),): 1.0}, "the reloads")
