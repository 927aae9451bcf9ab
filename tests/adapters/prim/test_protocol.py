"""Tests of the PRIM connection: pipelining, no-response requests, refusals, framing loss, timeouts."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim import wire
from cpimgw.adapters.prim.protocol import PrimConnectionLost, PrimProtocol, PrimTimeout
from cpimgw.adapters.prim.wire import Parser, Request, Response


class Recorder:
    """A handler answering PINGs never, SENDs later (via ``pending``), others 200 at once."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.pending: list[tuple[Request, defer.Deferred]] = []
        self.lost = 0

    def connection_made(self, protocol: PrimProtocol) -> None:
        pass

    def connection_lost(self, protocol: PrimProtocol, reason: object) -> None:
        self.lost += 1

    def request_received(self, protocol: PrimProtocol, request: Request):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        if request.method == "SEND":
            d: defer.Deferred = defer.Deferred()
            self.pending.append((request, d))
            return d
        if request.method == "FETCH":
            raise RuntimeError("boom")
        return wire.response_to(request, 200)


class ProtocolTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.handler = Recorder()
        self.protocol = PrimProtocol(self.handler, self.clock, request_timeout=10)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def written(self) -> list:
        items = Parser().feed(self.transport.value())
        self.transport.clear()
        return items

    def test_pipelined_responses_out_of_order(self) -> None:
        first = self.protocol.send_request("SUBSCRIBE", [("From", "pres:a@x.example")])
        second = self.protocol.send_request("SEND", [("From", "im:a@x.example")])
        sent = self.written()
        self.assertEqual([(r.method, r.request_id) for r in sent], [("SUBSCRIBE", "1"), ("SEND", "2")])
        self.protocol.dataReceived(b"PRIM/1.0 2 0 408 Inbox Is Closed\r\n\r\nPRIM/1.0 1 0 201 Duration Adjusted\r\nDuration: 60\r\n\r\n")
        self.assertEqual(self.successResultOf(second).code, 408)
        response = self.successResultOf(first)
        self.assertEqual((response.code, response.header("Duration")), (201, "60"))

    def test_no_response_wanted(self) -> None:
        self.assertIsNone(self.successResultOf(self.protocol.send_request("PING", expect_response=False)))
        self.assertEqual(self.written(), [Request("PING", "-", (), b"", "PRIM/1.0")])
        self.protocol.dataReceived(b"SUBSCRIBE PRIM/1.0 - 0\r\n\r\n")
        self.assertEqual(self.handler.requests[0].request_id, "-")
        self.assertEqual(self.transport.value(), b"")  # never answer '-'

    def test_deferred_answer_keeps_identifier(self) -> None:
        self.protocol.dataReceived(b"SEND PRIM/1.0 a7 0\r\n\r\nSUBSCRIBE PRIM/1.0 a8 0\r\n\r\n")
        self.assertEqual(self.written(), [Response("a8", 200, "OK")])
        request, d = self.handler.pending[0]
        d.callback(wire.response_to(request, 101))
        self.assertEqual(self.written(), [Response("a7", 101, "Unknown Delivery Status")])

    def test_refusals_keep_the_connection(self) -> None:
        self.protocol.dataReceived(b"FROB PRIM/1.0 1 0\r\n\r\nPING PRIM/9.0 2 0\r\n\r\n"
                                   b"SUBSCRIBE PRIM/1.0 3 0\r\nTo: a\r\nTo: b\r\n\r\nSUBSCRIBE PRIM/1.0 4 0\r\n\r\n")
        self.assertEqual([(r.request_id, r.code) for r in self.written()], [("1", 501), ("2", 503), ("3", 400), ("4", 200)])
        self.assertFalse(self.transport.disconnecting)

    def test_framing_loss_answers_400_and_closes(self) -> None:
        self.protocol.dataReceived(b"SEND PRIM/1.0 9 99999999999\r\n\r\n")
        self.assertEqual([(r.request_id, r.code) for r in self.written()], [("9", 400)])
        self.assertTrue(self.transport.disconnecting)
        self.protocol.dataReceived(b"PING PRIM/1.0 10 0\r\n\r\n")
        self.assertEqual(self.transport.value(), b"")

    def test_garbage_closes_without_answer(self) -> None:
        self.protocol.dataReceived(b"\x16\x03\x01 hello tls\r\n\r\n")
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(self.transport.disconnecting)

    def test_handler_exception_is_500(self) -> None:
        self.protocol.dataReceived(b"FETCH PRIM/1.0 5 0\r\n\r\n")
        self.assertEqual(self.written(), [Response("5", 500, "Internal Server Error")])
        self.flushLoggedErrors(RuntimeError)

    def test_connection_lost_fails_outstanding(self) -> None:
        d = self.protocol.send_request("SEND")
        self.protocol.connectionLost(None)
        self.failureResultOf(d, PrimConnectionLost)
        self.assertEqual(self.handler.lost, 1)
        self.failureResultOf(self.protocol.send_request("SEND"), PrimConnectionLost)

    def test_timeout(self) -> None:
        d = self.protocol.send_request("SEND")
        self.clock.advance(9)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.failureResultOf(d, PrimTimeout)
        self.protocol.dataReceived(b"PRIM/1.0 1 0 200 OK\r\n\r\n")  # late answer: ignored

    def test_ids_not_reused_while_outstanding(self) -> None:
        ids = set()
        for _ in range(5):
            self.protocol.send_request("SEND")
        for request in self.written():
            ids.add(request.request_id)
        self.assertEqual(len(ids), 5)


class FloodTests(TestCase):
    def test_pending_requests_are_bounded(self) -> None:
        handler = Recorder()
        protocol = PrimProtocol(handler, Clock(), max_pending=2)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"".join(b"SEND PRIM/1.0 %d 0\r\n\r\n" % n for n in range(1, 5)))
        refused = Parser().feed(transport.value())
        self.assertEqual([(r.request_id, r.code) for r in refused], [("3", 500), ("4", 500)])
        transport.clear()
        request, d = handler.pending[0]
        d.callback(wire.response_to(request, 200))
        protocol.dataReceived(b"SEND PRIM/1.0 5 0\r\n\r\n")
        self.assertEqual(Parser().feed(transport.value()), [Response("1", 200, "OK")])
        self.assertEqual(len(handler.pending), 3)
