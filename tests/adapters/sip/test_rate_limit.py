"""Per-source request-rate limit of the SIP stack (``max_request_rate``): 503 with
Retry-After (RFC 3261 §21.5.4) for new requests over the rate, retransmissions
and responses untouched -- on a MemoryReactorClock with StringTransport (TCP) and
Twisted's FakeDatagramTransport (UDP)."""

from __future__ import annotations

from twisted.internet.testing import FakeDatagramTransport, MemoryReactorClock
from twisted.trial.unittest import TestCase

from cpimgw.cpim.errors import ConfigError
from cpimgw.adapters.sip.adapter import SipSettings
from cpimgw.adapters.sip.stack import SipStack
from cpimgw.adapters.sip.transport import UDPTransport
from cpimgw.adapters.sip.wire import Response, make_response, parse_message

from tests.adapters.sip.test_adapter import AdapterFixture, sip_request


class _Answering:
    """A core that answers every request 200 and records what it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def request_received(self, request, transaction, source) -> None:  # type: ignore[no-untyped-def]
        self.seen.append(request.get("call-id") or "")
        transaction.respond(make_response(request, 200, "OK", to_tag="t"))


def udp_options(call_id: str) -> bytes:
    return (
        f"OPTIONS sip:gw@sip.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{call_id}\r\n"
        f"From: <sip:a@sip.test>;tag=f\r\nTo: <sip:gw@sip.test>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class UDPRateLimitTests(TestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.core = _Answering()
        self.stack = SipStack(self.reactor, self.core, max_request_rate=2, request_burst=3)
        self.stack.udp = UDPTransport(self.stack)
        self.wire = FakeDatagramTransport()
        self.stack.udp.makeConnection(self.wire)

    def tearDown(self):  # type: ignore[no-untyped-def]
        return self.stack.stop()

    def datagram(self, data: bytes, host: str = "192.0.2.1") -> Response:
        self.wire.written.clear()
        self.stack.udp.datagramReceived(data, (host, 5060))
        [(packet, address)] = self.wire.written
        self.assertEqual(address, (host, 5060))
        response = parse_message(packet)
        assert isinstance(response, Response)
        return response

    def test_over_the_rate_answers_503_with_retry_after(self) -> None:
        statuses = [self.datagram(udp_options(f"c{i}")).status for i in range(3)]
        self.assertEqual(statuses, [200, 200, 200])
        refused = self.datagram(udp_options("c3"))
        self.assertEqual((refused.status, refused.reason), (503, "Service Unavailable (request rate)"))
        self.assertEqual(refused.get("retry-after"), "1")  # 1 token short at 2/s: 0.5 s, rounded up
        self.assertEqual(refused.get("call-id"), "c3")
        self.assertEqual(self.stack.counters["rate_limited"], 1)
        self.assertEqual(self.core.seen, ["c0", "c1", "c2"])
        self.reactor.advance(0.5)
        self.assertEqual(self.datagram(udp_options("c4")).status, 200)

    def test_retransmissions_are_absorbed_not_counted(self) -> None:
        first = udp_options("same")
        for _ in range(10):
            self.assertEqual(self.datagram(first).status, 200)
        self.assertEqual(self.core.seen, ["same"])
        self.assertEqual(self.datagram(udp_options("other")).status, 200)
        self.assertNotIn("rate_limited", self.stack.counters)

    def test_retransmission_of_a_refused_request_gets_the_same_503_uncounted(self) -> None:
        for i in range(3):
            self.datagram(udp_options(f"c{i}"))
        self.assertEqual(self.datagram(udp_options("late")).status, 503)
        self.assertEqual(self.datagram(udp_options("late")).status, 503)
        self.assertEqual(self.stack.counters["rate_limited"], 1)

    def test_sources_are_limited_separately_and_responses_never(self) -> None:
        for i in range(4):
            self.datagram(udp_options(f"c{i}"))
        self.assertEqual(self.datagram(udp_options("x"), host="192.0.2.2").status, 200)
        response = make_response(parse_message(udp_options("r")), 200, "OK", to_tag="t").to_bytes()
        for _ in range(10):
            self.stack.udp.datagramReceived(response, ("192.0.2.1", 5060))
        self.assertEqual(self.stack.counters["unmatched_responses"], 10)
        self.assertEqual(self.stack.counters["rate_limited"], 1)

    def test_off_by_default_on_the_bare_stack(self) -> None:
        stack = SipStack(self.reactor, self.core)
        self.assertFalse(stack.rate_guard.enabled)


class TCPRateLimitTests(AdapterFixture, TestCase):
    settings = {"max_request_rate": 5, "request_burst": 5}

    def test_tcp_request_over_the_rate_gets_503_and_the_stream_keeps_serving(self) -> None:
        statuses = [self.send(sip_request("OPTIONS", "sip:gw@sip.test", call_id=f"c{i}"))[0].status
                    for i in range(6)]
        self.assertEqual(statuses, [200] * 5 + [503])
        [refused] = self.send(sip_request("OPTIONS", "sip:gw@sip.test", call_id="c6"))
        self.assertEqual(refused.get("retry-after"), "1")
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.adapter.stack.counters["rate_limited"], 2)
        self.reactor.advance(1)
        self.assertEqual(self.send(sip_request("OPTIONS", "sip:gw@sip.test", call_id="c7"))[0].status, 200)


class SettingsTests(TestCase):
    def test_defaults(self) -> None:
        settings = SipSettings.from_mapping({})
        self.assertEqual((settings.max_request_rate, settings.request_burst), (200.0, 400.0))

    def test_bad_values_are_config_errors(self) -> None:
        for value in (-1, "fast", True):
            with self.assertRaises(ConfigError) as caught:
                SipSettings.from_mapping({"max_request_rate": value})
            self.assertEqual(caught.exception.key, "adapters.sip.max_request_rate")
