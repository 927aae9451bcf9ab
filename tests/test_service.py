"""Tests of cpimgw.service: building, ordered start and stop, start failures, logs."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from cpimgw.bus import Bus
from cpimgw.config import from_mapping
from cpimgw.cpim.errors import ConfigError
from cpimgw.interfaces import IAdapter
from cpimgw.policy import DefaultPolicy
from cpimgw.service import GatewayService, _stop_reactor_with_failure, adapter_addresses, make_service
from cpimgw.store.memory import MemoryStore
from tests.test_plugins import install_test_plugin


class RecordingStore(MemoryStore):
    """A real MemoryStore that also notes when it is opened and closed."""

    def __init__(self, events: list[Any]) -> None:
        super().__init__()
        self.events = events

    def open(self) -> Deferred[None]:
        self.events.append(("store", "open"))
        return super().open()

    def close(self) -> Deferred[None]:
        self.events.append(("store", "close"))
        return super().close()


class ServiceTests(TestCase):
    def setUp(self) -> None:
        self.plugin: Any = install_test_plugin(self)
        self.factories = {"echo": self.plugin.echo, "ohce": self.plugin.ohce}
        self.events: list[Any] = self.plugin.EVENTS
        del self.events[:]
        self.reactor = MemoryReactorClock()
        self.store = RecordingStore(self.events)
        self.failures: list[Failure] = []
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def build(self, text: dict[str, Any] | None = None, **kw: Any) -> GatewayService:
        data = {"store": {"kind": "memory"}, "routing": {"srv_fallback": False}}
        data.update(text or {})
        config = from_mapping(data, "test.toml", factories=self.factories)
        kw.setdefault("factories", self.factories)
        kw.setdefault("store", self.store)
        kw.setdefault("on_start_failure", self.failures.append)
        return make_service(config, self.reactor, **kw)

    def messages(self, level: LogLevel | None = None) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.logged if level is None or e.get("log_level") is level]

    def test_built(self) -> None:
        svc = self.build()
        self.assertTrue(verifyObject(IService, svc))
        self.assertIsInstance(svc.bus, Bus)
        self.assertIs(svc.bus.store, self.store)
        self.assertEqual([a.name for a in svc.adapters], ["echo"])  # ohce is disabled by default
        self.assertTrue(verifyObject(IAdapter, svc.adapters[0]))
        self.assertIs(svc.getServiceNamed("echo"), svc.adapters[0])
        self.assertEqual(list(svc), svc.adapters)
        self.assertEqual(svc.adapters[0].settings["domains"], ("echo.test",))

    def test_start_and_stop_order(self) -> None:
        svc = self.build({"adapters": {"ohce": {"enabled": True}}})
        svc.startService()
        self.assertIsNone(self.successResultOf(svc.started))
        self.assertEqual(self.events, [("store", "open"), ("start", "echo"), ("start", "ohce")])
        self.assertTrue(svc.bus.running)
        self.assertEqual([(port, host) for port, _, _, host in self.reactor.tcpServers], [(0, "127.0.0.1"), (0, "127.0.0.1")])
        del self.events[:]
        self.successResultOf(svc.stopService())
        self.assertEqual(self.events, [("stop", "ohce"), ("stop", "echo"), ("store", "close")])
        self.assertFalse(svc.bus.running)
        self.assertFalse(svc.running)
        self.assertEqual(self.failures, [])

    def test_logs_what_it_serves(self) -> None:
        svc = self.build()
        svc.startService()
        text = self.messages(LogLevel.info)
        serving = [t for t in text if t.startswith("adapter echo serving")]
        self.assertEqual(len(serving), 1, text)
        self.assertIn("domains echo.test on tcp:", serving[0])
        event = next(e for e in self.logged if e.get("adapter") == "echo" and "addresses" in e)
        self.assertEqual(event["domains"], ("echo.test",))
        self.assertEqual(event["addresses"], adapter_addresses(svc.adapters[0]))
        self.assertIn("cpimgw cpimgw started: adapters echo", text)
        self.successResultOf(svc.stopService())
        self.assertIn("cpimgw cpimgw stopped", self.messages())

    def test_adapter_start_failure(self) -> None:
        svc = self.build({"adapters": {"ohce": {"enabled": True, "fail": True}}})
        svc.startService()
        failure = self.failureResultOf(svc.started, RuntimeError)
        self.assertEqual(str(failure.value), "echo refused to start: fail = true")
        self.assertEqual(self.failures, [failure])
        # echo started, ohce failed: echo is stopped again and the store closed.
        self.assertEqual(
            self.events, [("store", "open"), ("start", "echo"), ("start", "ohce"), ("stop", "echo"), ("store", "close")]
        )
        critical = self.messages(LogLevel.critical)
        self.assertEqual(len(critical), 1, critical)
        self.assertTrue(
            critical[0].startswith(
                "cpimgw failed while starting adapter 'ohce': echo refused to start: fail = true; stopping"
            ),
            critical[0],
        )
        self.assertFalse(svc.running)
        self.successResultOf(svc.stopService())
        self.flushLoggedErrors(RuntimeError)

    def test_store_failure(self) -> None:
        class BrokenStore(MemoryStore):
            def open(self) -> Deferred[None]:
                raise OSError("disk on fire")

        svc = self.build(store=BrokenStore())
        svc.startService()
        self.failureResultOf(svc.started, OSError)
        self.assertEqual(self.events, [])  # no adapter was started
        self.assertEqual(len(self.failures), 1)
        critical = self.messages(LogLevel.critical)
        self.assertTrue(critical[0].startswith("cpimgw failed while opening the store and starting the bus: disk on fire"))
        self.flushLoggedErrors(OSError)

    def test_default_failure_stops_reactor(self) -> None:
        self.reactor.running = True
        _stop_reactor_with_failure(self.reactor)(Failure(RuntimeError("x")))
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(len(self.reactor.triggers["after"]["shutdown"]), 1)

    def test_stop_while_starting(self) -> None:
        started: Deferred[None] = Deferred()

        class SlowStore(RecordingStore):
            def open(inner) -> Deferred[None]:
                super().open()
                return started

        svc = self.build(store=SlowStore(self.events))
        svc.startService()
        stopping = svc.stopService()
        self.assertNoResult(stopping)
        started.callback(None)
        self.successResultOf(stopping)
        # The bus had opened the store; no adapter started after the stop request.
        self.assertEqual(self.events, [("store", "open"), ("store", "close")])
        self.assertIsNone(self.successResultOf(svc.started))

    def test_build_config_error(self) -> None:
        error = self.assertRaises(ConfigError, self.build, {"adapters": {"echo": {"port": 70000}}})
        self.assertEqual(str(error), "test.toml: adapters.echo.port: must be a TCP port number, got 70000")

    def test_no_adapters(self) -> None:
        config = from_mapping({"store": {"kind": "memory"}, "routing": {"srv_fallback": False}}, None, factories={})
        svc = make_service(config, self.reactor, factories={}, on_start_failure=self.failures.append)
        svc.startService()
        self.successResultOf(svc.started)
        self.assertIn("cpimgw cpimgw started: adapters (none)", self.messages())
        self.successResultOf(svc.stopService())

    def test_parts_from_config(self) -> None:
        config = from_mapping(
            {
                "store": {"kind": "memory"},
                "policy": {"presence": "deny", "deny_domains": ["bad.example"]},
                "presence": {"max_duration": 600, "default_duration": 60},
                "routing": {"domains": {"elsewhere.example": "echo"}},
            },
            factories=self.factories,
        )
        svc = make_service(config, self.reactor, factories=self.factories, on_start_failure=self.failures.append)
        self.assertIsInstance(svc.store, MemoryStore)
        self.assertIsInstance(svc.bus.policy, DefaultPolicy)
        self.assertEqual(svc.bus.policy.presence, "deny")
        svc.startService()
        adapter = self.successResultOf(svc.bus.adapter_for("elsewhere.example"))
        self.assertEqual(adapter.name, "echo")
        self.successResultOf(svc.stopService())

    def test_bus_max_forwards_wired(self) -> None:
        self.assertEqual(self.build().bus.max_forwards, 120)
        self.assertEqual(self.build({"bus": {"max_forwards": 7}}).bus.max_forwards, 7)

    def test_log_level(self) -> None:
        from twisted.logger import Logger

        svc = self.build({"gateway": {"log_level": "warn"}}, apply_log_level=True)
        svc.startService()
        self.successResultOf(svc.started)
        Logger(namespace="cpimgw.elsewhere").warn("a warning")
        Logger(namespace="twisted.other").info("twisted info")
        self.successResultOf(svc.stopService())
        text = self.messages()
        self.assertNotIn("cpimgw cpimgw started: adapters echo", text)
        self.assertIn("a warning", text)
        self.assertIn("twisted info", text)
        # Restored once stopped.
        Logger(namespace="cpimgw.elsewhere").info("info again")
        self.assertIn("info again", self.messages())

    def test_adapter_addresses(self) -> None:
        class Plain:
            listening_addresses = ("udp:127.0.0.1:5060",)

        class Nothing:
            pass

        self.assertEqual(adapter_addresses(Plain()), ["udp:127.0.0.1:5060"])
        self.assertEqual(adapter_addresses(Nothing()), [])


def free_loopback_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StatusEndpointTests(TestCase):
    """The operators' endpoint, fetched with a real HTTP request on 127.0.0.1."""

    def setUp(self) -> None:
        self.plugin: Any = install_test_plugin(self)
        self.factories = {"echo": self.plugin.echo}
        self.failures: list[Failure] = []

    def build(self, port: int) -> GatewayService:
        from twisted.internet import reactor

        config = from_mapping({"store": {"kind": "memory"}, "routing": {"srv_fallback": False},
                               "gateway": {"status_port": port, "name": "gw-test"}},
                              "test.toml", factories=self.factories)
        return make_service(config, reactor, factories=self.factories, store=MemoryStore(),
                            on_start_failure=self.failures.append)

    def get(self, port: int, path: str) -> Deferred:
        from twisted.internet import reactor
        from twisted.web.client import Agent, readBody

        def read(response: Any) -> Deferred:
            return readBody(response).addCallback(lambda body: (response.code, body))

        d = Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}{path}".encode())
        return d.addCallback(read).addTimeout(10, reactor)

    async def test_status_and_health(self) -> None:
        import json

        port = free_loopback_port()
        svc = self.build(port)
        svc.startService()
        await svc.started
        self.assertEqual(svc.status_listener.getHost().host, "127.0.0.1")
        code, body = await self.get(port, "/health")
        self.assertEqual((code, body), (200, b"ok\n"))
        svc.bus.counters["dispatched"] += 3
        code, body = await self.get(port, "/status")
        self.assertEqual(code, 200)
        view = json.loads(body)
        self.assertEqual(view["gateway"], "gw-test")
        self.assertTrue(view["healthy"])
        self.assertEqual(view["counters"]["dispatched"], 3)
        self.assertEqual(view["adapters"], {"echo": {"running": True, "connected": None}})
        self.assertEqual(view["store"], {"subscriptions": 0, "presence": 0, "duplicate_keys": 0, "values": 0})
        # An adapter that says it lost its network makes the gateway unhealthy.
        adapter = svc.adapters[0]
        adapter.connected = False
        code, body = await self.get(port, "/health")
        self.assertEqual((code, body), (503, b"adapter echo not connected\n"))
        self.assertEqual(json.loads((await self.get(port, "/status"))[1])["adapters"]["echo"]["connected"], False)
        await svc.stopService()
        self.assertIsNone(svc.status_listener)
        from twisted.internet.error import ConnectError

        with self.assertRaises(ConnectError):
            await self.get(port, "/health")

    def test_off_by_default(self) -> None:
        config = from_mapping({"store": {"kind": "memory"}, "routing": {"srv_fallback": False}},
                              factories=self.factories)
        self.assertEqual(config.gateway.status_port, 0)
        reactor = MemoryReactorClock()
        svc = make_service(config, reactor, factories=self.factories, store=MemoryStore(),
                           on_start_failure=self.failures.append)
        svc.startService()
        from twisted.web.server import Site

        self.assertEqual([server for server in reactor.tcpServers if isinstance(server[1], Site)], [])
        self.assertIsNone(svc.status_listener)
        self.successResultOf(svc.stopService())

    def test_bad_status_port_refused(self) -> None:
        for bad in (-1, 70000, "80", True):
            error = self.assertRaises(ConfigError, from_mapping, {"gateway": {"status_port": bad}},
                                      factories=self.factories)
            self.assertEqual(error.key, "gateway.status_port")
