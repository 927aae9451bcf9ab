"""The SIP stack's UDP path on loopback (real reactor): 400 with a reason for bad input, responses
dropped, the transport keeps serving, retransmissions absorbed by the server transaction."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from cpimgw.cpim.operations import Message
from cpimgw.testing import RecordingAdapter, attach, make_bus
from cpimgw.adapters.sip.adapter import SipAdapter, SipSettings
from cpimgw.adapters.sip.wire import parse_message
from tests.adapters.sip.test_wire import crlf


class _Peer(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.waiting: list[Deferred] = []

    def datagramReceived(self, data: bytes, addr: object) -> None:  # noqa: N802
        self.received.append(data)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(data)

    def next(self) -> Deferred:
        d: Deferred = Deferred()
        self.waiting.append(d)
        return d.addTimeout(5, reactor)


def message(call_id: str, extra: str = "") -> bytes:
    return crlf(
        f"""MESSAGE sip:bob@xmpp.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{call_id}
From: <sip:alice@sip.test>;tag=1
To: <sip:bob@xmpp.test>
Call-ID: {call_id}
CSeq: 1 MESSAGE
{extra}Content-Type: text/plain
Content-Length: 2

""",
        b"hi",
    )


class UDPStackTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_bad_input_then_good_and_retransmission(self):  # type: ignore[no-untyped-def]
        bus = make_bus(reactor=reactor)
        self.addCleanup(bus.stop)
        sink = RecordingAdapter("cpim-test", ["xmpp.test"])
        attach(bus, sink)
        adapter = SipAdapter(bus, SipSettings.from_mapping(
            {"domains": ["sip.test"], "port": 0, "transports": ["udp"], "use_dns": False}), reactor=reactor)
        bus.register(adapter)
        adapter.startService()
        self.addCleanup(adapter.stopService)
        peer = _Peer()
        port = reactor.listenUDP(0, peer, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        gateway = ("127.0.0.1", adapter.ports["UDP"])

        answer = peer.next()
        peer.transport.write(message("bad1", 'Contact: "Joe" <sip:joe@example.org>;;,;,,\r\n'), gateway)
        bad = parse_message((yield answer))
        self.assertEqual(bad.status, 400)
        self.assertIn("empty", bad.reason)
        self.assertIn("399", bad.get("warning"))

        peer.transport.write(b"SIP/2.0 4294967301 better not break the receiver\r\n\r\n", gateway)  # dropped
        answer = peer.next()
        data = message("good1")
        peer.transport.write(data, gateway)
        first = parse_message((yield answer))
        self.assertEqual(first.status, 200)
        answer = peer.next()
        peer.transport.write(data, gateway)  # retransmission: the same answer, no second delivery
        second = yield answer
        self.assertEqual(second, first.to_bytes())
        self.assertEqual(len([op for op in sink.delivered if isinstance(op, Message)]), 1)
        self.assertEqual(adapter.stack.counters.get("rejected_unparsable"), 1)
        self.assertEqual(adapter.stack.counters.get("dropped_unparsable"), 1)

    @inlineCallbacks
    def test_datagram_bigger_than_8192_octets(self):  # type: ignore[no-untyped-def]
        """Twisted reads 8192 octets per datagram by default; a 20 kB MESSAGE must arrive whole."""
        bus = make_bus(reactor=reactor)
        self.addCleanup(bus.stop)
        sink = RecordingAdapter("cpim-test", ["xmpp.test"])
        attach(bus, sink)
        adapter = SipAdapter(bus, SipSettings.from_mapping(
            {"domains": ["sip.test"], "port": 0, "transports": ["udp"], "use_dns": False}), reactor=reactor)
        bus.register(adapter)
        adapter.startService()
        self.addCleanup(adapter.stopService)
        peer = _Peer()
        port = reactor.listenUDP(0, peer, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        body = b"x" * 20000
        data = message("big1").replace(b"Content-Length: 2\r\n\r\nhi", b"Content-Length: 20000\r\n\r\n" + body)
        answer = peer.next()
        peer.transport.write(data, ("127.0.0.1", adapter.ports["UDP"]))
        self.assertEqual(parse_message((yield answer)).status, 200)
        [delivered] = [op for op in sink.delivered if isinstance(op, Message)]
        self.assertTrue(delivered.content.body.endswith(body))
