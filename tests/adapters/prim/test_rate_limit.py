"""Per-peer-IP request-rate limit of PRIM (``max_request_rate``): a request over the
rate is answered 500 with a reason naming the rate and the wait (protocols.md §2.7
has no "service unavailable"), counted and logged once per interval -- driven with
StringTransport and Clock."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim.adapter import PrimSettings
from cpimgw.adapters.prim.protocol import PrimProtocol
from cpimgw.adapters.prim.wire import Parser, Request
from cpimgw.cpim.errors import ConfigError
from cpimgw.limits import RequestRateGuard

from tests.adapters.prim.test_adapter import Connection, PrimFixture
from tests.adapters.prim.test_protocol import Recorder


def ping(request_id: str) -> bytes:
    return Request("PING", request_id, (), b"").to_bytes()


class ProtocolRateLimitTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.guard = RequestRateGuard(2, 2, self.clock)
        self.handler = Recorder()
        self.protocols = []
        self.transports = []
        for port in (1000, 1001):  # two connections from one address share its bucket
            protocol = PrimProtocol(self.handler, self.clock, rate_guard=self.guard)
            transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", port))
            protocol.makeConnection(transport)
            self.protocols.append(protocol)
            self.transports.append(transport)

    def answers(self, index: int) -> list:
        items = Parser().feed(self.transports[index].value())
        self.transports[index].clear()
        return [(r.request_id, r.code, r.reason) for r in items]

    def test_over_the_rate_answers_500_and_counts(self) -> None:
        self.protocols[0].dataReceived(ping("1") + ping("2"))
        self.protocols[1].dataReceived(ping("3"))
        self.assertEqual(self.answers(0), [("1", 200, "OK"), ("2", 200, "OK")])
        self.assertEqual(self.answers(1), [("3", 500, "Internal Server Error (request rate exceeded, retry in 1 s)")])
        self.assertEqual(len(self.handler.requests), 2)
        self.assertEqual(self.protocols[1].counters["rate_limited"], 1)
        self.assertEqual(self.guard.refused, 1)
        self.assertFalse(self.transports[1].disconnecting)
        self.clock.advance(0.5)
        self.protocols[1].dataReceived(ping("4"))
        self.assertEqual(self.answers(1), [("4", 200, "OK")])

    def test_no_response_request_over_the_rate_is_dropped_counted(self) -> None:
        self.protocols[0].dataReceived(ping("1") + ping("2") + ping("-"))
        self.assertEqual([a[0] for a in self.answers(0)], ["1", "2"])
        self.assertEqual(self.protocols[0].counters["rate_limited"], 1)
        self.assertEqual(len(self.handler.requests), 2)

    def test_other_addresses_and_no_guard_are_not_limited(self) -> None:
        other = PrimProtocol(self.handler, self.clock, rate_guard=self.guard)
        other_transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.10", 1000))
        other.makeConnection(other_transport)
        self.protocols[0].dataReceived(ping("1") + ping("2") + ping("3"))
        other.dataReceived(ping("1"))
        self.assertEqual([r.code for r in Parser().feed(other_transport.value())], [200])
        free = PrimProtocol(self.handler, self.clock)
        free_transport = StringTransport()
        free.makeConnection(free_transport)
        free.dataReceived(b"".join(ping(str(i)) for i in range(1, 501)))
        self.assertEqual({r.code for r in Parser().feed(free_transport.value())}, {200})


class AdapterRateLimitTests(PrimFixture, TestCase):
    def test_adapter_guard_shared_by_connections_and_counted(self) -> None:
        self.adapter.rate_guard = RequestRateGuard(3, 3, self.bus.reactor)
        first, second = Connection(self.adapter, "client"), Connection(self.adapter, "client")
        for conn in (first, second):
            self.addCleanup(conn.close)
        for _ in range(2):
            first.send("SEND")  # before LOGIN: answered 401 at once (or 500 over the rate)
            second.send("SEND")
        codes = [r.code for r in first.read() + second.read()]
        self.assertEqual(sorted(codes), [401, 401, 401, 500])
        self.assertEqual(self.adapter.counters["rate_limited"], 1)

    def test_settings(self) -> None:
        self.assertEqual((self.settings.max_request_rate, self.settings.request_burst), (200.0, 400.0))
        self.assertTrue(self.adapter.rate_guard.enabled)
        off = PrimSettings.from_mapping({"max_request_rate": 0})
        self.assertEqual(off.max_request_rate, 0.0)
        for value in (-1, "x", False):
            with self.assertRaises(ConfigError) as caught:
                PrimSettings.from_mapping({"request_burst": value})
            self.assertEqual(caught.exception.key, "adapters.prim.request_burst")
