"""Tests of cpimgw.metrics: the bus and store seams, the gauges read at scrape time, the /metrics page."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from cpimgw import metrics
from cpimgw.bus import _synchronous
from cpimgw.config import from_mapping
from cpimgw.cpim.operations import (
    Condition, Content, Message, Notify, Response, Status, Subscribe, failure, indeterminant, success,
)
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.metrics import REGISTRY, BusInstruments, instrument_store
from cpimgw.service import make_service
from cpimgw.store.memory import MemoryStore
from cpimgw.testing import BusFixture, settle
from tests.test_plugins import install_test_plugin
from tests.test_service import free_loopback_port


def value(name: str, **labels: str) -> float:
    """The current value of one sample of the process-wide registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Reads the change of samples between construction and :meth:`of`."""

    def __init__(self) -> None:
        self.before = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for family in REGISTRY.collect() for s in family.samples}

    def of(self, name: str, **labels: str) -> float:
        return value(name, **labels) - self.before.get((name, tuple(sorted(labels.items()))), 0.0)


def hello(source: str = "alice", destination: str = "bob", domain: str = "beta.example", **kw: Any) -> Message:
    return Message(im_uri(source, "alpha.example"), im_uri(destination, domain), Content("text/plain", b"hi"), **kw)


class BusSeamTests(BusFixture, TestCase):
    """Operations counted and timed where adapters meet the bus (direction in) and the bus meets them (out)."""

    def setUp(self) -> Any:
        result = super().setUp()
        self.clock = Clock()
        self.instruments = BusInstruments(self.bus, clock=self.clock.seconds)
        self.addCleanup(self.instruments.uninstall)
        return result

    def test_message_in_and_out_with_latency(self) -> None:
        delta = Delta()
        answer: Deferred[Response] = Deferred()
        self.beta.reply = lambda op: answer
        pending = self.alpha.inject(hello())
        self.assertNoResult(pending)
        self.assertEqual(delta.of("cpimgw_operations_in_flight", adapter="alpha", direction="in"), 1)
        self.assertEqual(delta.of("cpimgw_operations_in_flight", adapter="beta", direction="out"), 1)
        self.clock.advance(0.25)  # the far side takes a quarter of a second to answer
        answer.callback(success(self.beta.delivered[0]))
        self.assertIs(self.successResultOf(pending).status, Status.SUCCESS)
        self.assertEqual(delta.of("cpimgw_operations_total", adapter="alpha", direction="in", kind="message",
                                  outcome="success"), 1)
        self.assertEqual(delta.of("cpimgw_operations_total", adapter="beta", direction="out", kind="message",
                                  outcome="success"), 1)
        self.assertEqual(delta.of("cpimgw_routed_operations_total", source="alpha", destination="beta",
                                  kind="message", outcome="success"), 1)
        for adapter, direction in (("alpha", "in"), ("beta", "out")):
            self.assertEqual(delta.of("cpimgw_operation_duration_seconds_sum", adapter=adapter, direction=direction,
                                      kind="message"), 0.25)
            self.assertEqual(delta.of("cpimgw_operation_duration_seconds_bucket", adapter=adapter,
                                      direction=direction, kind="message", le="0.1"), 0)
            self.assertEqual(delta.of("cpimgw_operation_duration_seconds_bucket", adapter=adapter,
                                      direction=direction, kind="message", le="0.25"), 1)
            self.assertEqual(delta.of("cpimgw_operations_in_flight", adapter=adapter, direction=direction), 0)

    def test_failure_conditions_and_indeterminate(self) -> None:
        delta = Delta()
        self.beta.reply = lambda op: failure(op, Condition.NOT_FOUND, "no such user")
        self.successResultOf(self.alpha.inject(hello()))
        self.successResultOf(self.alpha.inject(hello(domain="nowhere.example")))
        self.beta.reply = lambda op: indeterminant(op, "sent")
        self.successResultOf(self.alpha.inject(hello(message_id="m2")))
        self.assertEqual(delta.of("cpimgw_operations_total", adapter="beta", direction="out", kind="message",
                                  outcome="item-not-found"), 1)
        self.assertEqual(delta.of("cpimgw_operations_total", adapter="alpha", direction="in", kind="message",
                                  outcome="item-not-found"), 1)
        self.assertEqual(delta.of("cpimgw_operations_total", adapter="alpha", direction="in", kind="message",
                                  outcome="remote-server-not-found"), 1)
        self.assertEqual(delta.of("cpimgw_operations_total", adapter="beta", direction="out", kind="message",
                                  outcome="indeterminate"), 1)

    def test_fast_path_stays_synchronous(self) -> None:
        # RecordingAdapter answers at once: the bus's answer has fired before dispatch returns.
        d = self.alpha.inject(hello())
        self.assertTrue(d.called)
        self.assertIs(self.successResultOf(d).status, Status.SUCCESS)
        self.assertIs(self.bus.deliver(self.beta, hello()).result.status, Status.SUCCESS)

    def test_presence_kinds(self) -> None:
        delta = Delta()
        subscribe = Subscribe(pres_uri("alice", "alpha.example"), pres_uri("bob", "beta.example"), 3600)
        self.successResultOf(self.alpha.inject(subscribe))
        settle(self.bus)
        self.assertEqual(delta.of("cpimgw_operations_total", adapter="alpha", direction="in", kind="subscribe",
                                  outcome="success"), 1)
        self.assertEqual(delta.of("cpimgw_operations_total", adapter="beta", direction="out", kind="subscribe",
                                  outcome="success"), 1)
        # The immediate notify to the watcher (RFC 3859 §4.4) goes out through alpha.
        notifies = [op for op in self.alpha.delivered if isinstance(op, Notify)]
        self.assertEqual(len(notifies), 1)
        self.assertEqual(delta.of("cpimgw_operations_total", adapter="alpha", direction="out", kind="notify",
                                  outcome="success"), 1)

    def test_duplicates_and_loops_from_the_bus_counters(self) -> None:
        from cpimgw.metrics import GatewayCollector

        class Service:
            bus = self.bus
            adapters = [self.alpha, self.beta]
            running = True

        self.successResultOf(self.alpha.inject(hello(message_id="same")))
        self.successResultOf(self.alpha.inject(hello(message_id="same")))
        self.successResultOf(self.alpha.inject(hello(max_forwards=0)))
        found = {}
        for family in GatewayCollector(Service()).collect():
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        self.assertEqual(found[("cpimgw_duplicates_dropped_total", ())], 1)
        self.assertEqual(found[("cpimgw_loops_stopped_total", ())], 1)
        self.assertEqual(found[("cpimgw_adapter_up", (("adapter", "alpha"),))], 1)

    def test_no_user_address_becomes_a_label(self) -> None:
        self.successResultOf(self.alpha.inject(hello("zed-secret-user", "quux-user")))
        self.successResultOf(self.alpha.inject(hello("zed-secret-user", "quux-user", domain="unknown-dom.example")))
        for family in REGISTRY.collect():
            for sample in family.samples:
                for label in sample.labels.values():
                    self.assertNotIn("@", label)
                    self.assertNotIn("zed-secret-user", label)
                    self.assertNotIn("unknown-dom.example", label)

    def test_uninstall_restores_the_bus_methods(self) -> None:
        self.instruments.uninstall()
        self.assertNotIn("dispatch", vars(self.bus))
        self.assertNotIn("deliver_now", vars(self.bus))


class StoreTimingTests(TestCase):
    def test_methods_timed_and_fast_path_kept(self) -> None:
        clock = Clock()
        store = instrument_store(MemoryStore(), clock=clock.seconds)
        self.successResultOf(store.open())
        delta = Delta()
        remember = _synchronous(store.remember)
        # The bus's plain variant is still found through the mark, and is timed too.
        self.assertIs(remember, store.remember_now)
        self.assertTrue(remember("k", 0.0, 10.0))
        self.assertTrue(self.successResultOf(store.remember("k2", 0.0, 10.0)))
        self.assertEqual(delta.of("cpimgw_store_operation_duration_seconds_count", operation="remember"), 2)
        self.successResultOf(store.subscriptions())
        self.assertEqual(delta.of("cpimgw_store_operation_duration_seconds_count", operation="subscriptions"), 1)

    def test_failures_counted(self) -> None:
        class Broken(MemoryStore):
            def get_value(self, scope: str, key: str, now: float | None = None) -> Any:
                raise OSError("disk gone")

        store = instrument_store(Broken())
        delta = Delta()
        self.assertRaises(OSError, store.get_value, "s", "k")
        self.assertEqual(delta.of("cpimgw_store_errors_total", operation="get_value"), 1)


class AdapterHookTests(TestCase):
    def test_hooks_count_by_bounded_label(self) -> None:
        delta = Delta()
        metrics.parse_error("sip")
        metrics.tls_failure("xmpp")
        metrics.auth_failure("prim", "client")
        self.assertEqual(delta.of("cpimgw_parse_errors_total", protocol="sip"), 1)
        self.assertEqual(delta.of("cpimgw_tls_handshake_failures_total", adapter="xmpp"), 1)
        self.assertEqual(delta.of("cpimgw_auth_failures_total", adapter="prim", peer_kind="client"), 1)

    def test_prim_framing_error_counted(self) -> None:
        from twisted.internet.testing import StringTransport

        from cpimgw.adapters.prim.protocol import PrimProtocol

        delta = Delta()
        protocol = PrimProtocol(None, Clock())
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"NOT A PRIM LINE AT ALL\r\n\r\n")
        self.assertEqual(delta.of("cpimgw_parse_errors_total", protocol="prim"), 1)

    def test_outcomes(self) -> None:
        op = hello()
        self.assertEqual(metrics.outcome_of(success(op)), "success")
        self.assertEqual(metrics.outcome_of(indeterminant(op, "x")), "indeterminate")
        self.assertEqual(metrics.outcome_of(failure(op, Condition.LOOP, "x")), "loop-detected")
        self.assertEqual(metrics.kind_of(op), "message")
        self.assertEqual(metrics.kind_of(object()), "other")


class MetricsPageTests(TestCase):
    """``GET /metrics`` on the operators' endpoint, with a real HTTP request."""

    def setUp(self) -> None:
        self.plugin: Any = install_test_plugin(self)
        self.factories = {"echo": self.plugin.echo}

    def get(self, port: int, path: str, host: str = "127.0.0.1") -> Deferred:
        from twisted.internet import reactor
        from twisted.web.client import Agent, readBody

        def read(response: Any) -> Deferred:
            d = readBody(response)
            return d.addCallback(lambda body: (response.code, response.headers.getRawHeaders(b"content-type"), body))

        d = Agent(reactor).request(b"GET", f"http://{host}:{port}{path}".encode())
        return d.addCallback(read).addTimeout(10, reactor)

    async def test_metrics_page(self) -> None:
        from twisted.internet import reactor

        port = free_loopback_port()
        config = from_mapping({"store": {"kind": "memory"}, "routing": {"srv_fallback": False},
                               "gateway": {"status_port": port, "name": "gw-metrics",
                                           "status_address": "127.0.0.1"}}, "test.toml", factories=self.factories)
        failures: list[Any] = []
        svc = make_service(config, reactor, factories=self.factories, store=MemoryStore(),
                           on_start_failure=failures.append)
        svc.startService()
        self.addCleanup(svc.stopService)
        await svc.started
        message = Message(im_uri("a", "somewhere.example"), im_uri("b", "echo.test"), Content("text/plain", b"x"))
        await svc.bus.dispatch(message)
        code, content_type, body = await self.get(port, "/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(content_type[0].startswith(b"text/plain; version=0.0.4"), content_type)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(body.decode()) for s in family.samples}
        self.assertEqual(samples[("cpimgw_adapter_up", (("adapter", "echo"),))], 1)
        self.assertEqual(samples[("cpimgw_subscriptions", ())], 0)
        self.assertEqual(samples[("cpimgw_healthy", ())], 1)
        self.assertGreaterEqual(samples[("cpimgw_operations_total", (("adapter", "echo"), ("direction", "out"),
                                                                      ("kind", "message"), ("outcome", "success")))], 1)
        self.assertIn(("process_cpu_seconds_total", ()), samples)
        # /status and /health are still there beside it.
        self.assertEqual(json.loads((await self.get(port, "/status"))[2])["gateway"], "gw-metrics")
        self.assertEqual((await self.get(port, "/health"))[2], b"ok\n")

    def test_status_address_validated(self) -> None:
        from cpimgw.cpim.errors import ConfigError

        for bad in ("localhost", "300.1.1.1", 7):
            error = self.assertRaises(ConfigError, from_mapping, {"gateway": {"status_address": bad}},
                                      factories=self.factories)
            self.assertEqual(error.key, "gateway.status_address")
        config = from_mapping({"gateway": {"status_address": "::1"}}, factories=self.factories)
        self.assertEqual(config.gateway.status_address, "::1")
        self.assertEqual(from_mapping({}, factories=self.factories).gateway.status_address, "127.0.0.1")

    def test_status_address_bound(self) -> None:
        from twisted.internet.testing import MemoryReactorClock
        from twisted.web.server import Site

        reactor = MemoryReactorClock()
        config = from_mapping({"store": {"kind": "memory"}, "routing": {"srv_fallback": False},
                               "gateway": {"status_port": 9465, "status_address": "10.1.2.3"}},
                              factories=self.factories)
        svc = make_service(config, reactor, factories=self.factories, store=MemoryStore(),
                           on_start_failure=lambda f: None)
        svc.startService()
        [(port, site, _backlog, interface)] = [s for s in reactor.tcpServers if isinstance(s[1], Site)]
        self.assertEqual((port, interface), (9465, "10.1.2.3"))
        self.successResultOf(svc.stopService())
