"""Tests for cpimgw.adapters.sip.transaction: RFC 3261 §17 timers on a Clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from cpimgw.adapters.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    TransactionTable,
    server_key,
)
from cpimgw.adapters.sip.wire import Request, make_response, parse_message


def message_request(branch: str = "z9hG4bKabc123", method: str = "MESSAGE") -> Request:
    return Request(
        method,
        "sip:bob@example.com",
        (
            ("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"),
            ("From", "<sip:alice@example.org>;tag=1"),
            ("To", "<sip:bob@example.com>"),
            ("Call-ID", "c1@192.0.2.1"),
            ("CSeq", f"1 {method}"),
        ),
        b"hi",
    )


class ClientTransactionTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[bytes] = []
        self.terminated: list[object] = []

    def make(self, reliable: bool = False) -> ClientTransaction:
        transaction = ClientTransaction(
            message_request(), self.sent.append, self.clock, reliable=reliable,
            on_terminated=self.terminated.append,
        )
        transaction.start()
        return transaction

    def test_timer_e_doubles_up_to_t2_then_timer_f_gives_408(self) -> None:
        transaction = self.make()
        results: list = []
        transaction.deferred.addCallback(results.append)
        times = []
        elapsed = 0.0
        while not results:
            self.clock.advance(0.25)
            elapsed += 0.25
            if len(self.sent) > len(times) + 1:
                times.append(elapsed)
        # RFC 3261 Figure 5: retransmissions at 0.5, 1.5, 3.5, 7.5, then every 4 s; F at 32 s.
        self.assertEqual(times[:6], [0.5, 1.5, 3.5, 7.5, 11.5, 15.5])
        self.assertEqual(elapsed, 32.0)
        self.assertEqual(results[0].status, 408)
        self.assertEqual(len(self.sent), 11)
        self.assertEqual(self.terminated, [transaction])

    def test_provisional_moves_to_t2_interval(self) -> None:
        transaction = self.make()
        transaction.response_received(make_response(transaction.request, 100, "Trying"))
        self.assertEqual(transaction.state, "proceeding")
        self.clock.advance(0.5)
        self.assertEqual(len(self.sent), 2)
        self.clock.advance(4)
        self.assertEqual(len(self.sent), 3)

    def test_final_response_then_timer_k_absorbs(self) -> None:
        transaction = self.make()
        results: list = []
        transaction.deferred.addCallback(results.append)
        ok = make_response(transaction.request, 202, "Accepted", to_tag="x")
        transaction.response_received(ok)
        transaction.response_received(ok)  # a retransmission is absorbed
        self.assertEqual([r.status for r in results], [202])
        self.assertEqual(transaction.state, "completed")
        self.clock.advance(5)
        self.assertEqual(transaction.state, "terminated")
        self.assertEqual(len(self.sent), 1)

    def test_reliable_has_no_retransmission(self) -> None:
        transaction = self.make(reliable=True)
        self.clock.advance(31)
        self.assertEqual(len(self.sent), 1)
        self.clock.advance(1)
        self.assertEqual(transaction.state, "terminated")

    def test_transport_error_gives_503(self) -> None:
        def broken(data: bytes) -> None:
            raise ConnectionError("gone")

        transaction = ClientTransaction(message_request(), broken, self.clock, reliable=True)
        results: list = []
        transaction.deferred.addCallback(results.append)
        transaction.start()
        self.assertEqual(results[0].status, 503)


class ServerTransactionTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[bytes] = []

    def make(self, request: Request, reliable: bool = False) -> ServerTransaction:
        return ServerTransaction(request, self.sent.append, self.clock, reliable=reliable, key=server_key(request))

    def test_retransmission_absorbed_in_trying_and_answered_in_completed(self) -> None:
        request = message_request()
        transaction = self.make(request)
        transaction.request_retransmitted(request)
        self.assertEqual(self.sent, [])
        transaction.respond(make_response(request, 200, "OK", to_tag="t"))
        self.assertEqual(len(self.sent), 1)
        transaction.request_retransmitted(request)
        self.assertEqual(self.sent[0], self.sent[1])
        self.clock.advance(31.9)
        self.assertEqual(transaction.state, "completed")
        self.clock.advance(0.1)  # Timer J = 64*T1
        self.assertEqual(transaction.state, "terminated")

    def test_invite_rejection_timer_g_until_ack(self) -> None:
        invite = message_request(method="INVITE")
        transaction = self.make(invite)
        transaction.respond(make_response(invite, 488, "Not Acceptable Here", to_tag="t"))
        self.clock.advance(0.5)
        self.clock.advance(1.0)
        self.assertEqual(len(self.sent), 3)
        ack = message_request(method="ACK")
        self.assertEqual(server_key(ack), transaction.key)
        transaction.request_retransmitted(ack)
        self.assertEqual(transaction.state, "confirmed")
        self.clock.advance(5)
        self.assertEqual(transaction.state, "terminated")
        self.assertEqual(len(self.sent), 3)

    def test_invite_timer_h(self) -> None:
        invite = message_request(method="INVITE")
        transaction = self.make(invite)
        transaction.respond(make_response(invite, 501, "Not Implemented", to_tag="t"))
        self.clock.advance(32)
        self.assertEqual(transaction.state, "terminated")


class MatchingTests(TestCase):
    def test_branch_key_and_rfc2543_fallback(self) -> None:
        table = TransactionTable()
        clock = Clock()
        request = message_request()
        server = ServerTransaction(request, lambda d: None, clock, reliable=True, key=server_key(request))
        table.add_server(server)
        self.assertIs(table.match_server(request), server)
        self.assertIsNone(table.match_server(message_request(branch="z9hG4bKother")))
        bare = message_request(branch="z9hG4bK")
        self.assertEqual(server_key(bare)[0], "2543")
        server.respond(make_response(request, 200, "OK"))
        self.assertIsNone(table.match_server(request))

    def test_client_match_by_branch_and_method(self) -> None:
        table = TransactionTable()
        transaction = ClientTransaction(message_request(), lambda d: None, Clock(), reliable=True)
        table.add_client(transaction)
        response = parse_message(make_response(message_request(), 200, "OK").to_bytes())
        self.assertIs(table.match_client(response), transaction)


class LeanCompletedServerTests(TestCase):
    """A table with a clock keeps only the final response octets for Timer J."""

    def test_completed_udp_server_lingers_lean_then_expires(self) -> None:
        clock = Clock()
        table = TransactionTable(clock)
        sent: list[bytes] = []
        request = message_request()
        server = ServerTransaction(request, sent.append, clock, reliable=False, key=server_key(request))
        table.add_server(server)
        server.respond(make_response(request, 200, "OK", to_tag="t"))
        entry = table.match_server(request)
        self.assertIsNot(entry, server)
        self.assertEqual((entry.state, entry.data, clock.getDelayedCalls().__len__()), ("completed", sent[0], 1))
        entry.request_retransmitted(request)
        self.assertEqual(sent, [sent[0], sent[0]])
        later = message_request("z9hG4bKother")
        clock.advance(10)
        other = ServerTransaction(later, sent.append, clock, reliable=False, key=server_key(later))
        table.add_server(other)
        other.respond(make_response(later, 200, "OK", to_tag="t"))
        clock.advance(22)  # 64*T1 after the first: only the first has gone
        self.assertIsNone(table.match_server(request))
        self.assertIsNotNone(table.match_server(later))
        clock.advance(10)
        self.assertIsNone(table.match_server(later))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_reliable_and_invite_keep_their_own_timers(self) -> None:
        clock = Clock()
        table = TransactionTable(clock)
        request = message_request()
        server = ServerTransaction(request, lambda data: None, clock, reliable=True, key=server_key(request))
        table.add_server(server)
        server.respond(make_response(request, 200, "OK", to_tag="t"))
        self.assertIsNone(table.match_server(request))  # TCP: terminated at once (Timer J = 0)
        invite = message_request(method="INVITE")
        server = ServerTransaction(invite, lambda data: None, clock, reliable=False, key=server_key(invite))
        table.add_server(server)
        server.respond(make_response(invite, 488, "Not Acceptable Here", to_tag="t"))
        self.assertIs(table.match_server(invite), server)

    def test_stop_forgets_lingering_entries(self) -> None:
        clock = Clock()
        table = TransactionTable(clock)
        request = message_request()
        server = ServerTransaction(request, lambda data: None, clock, reliable=False, key=server_key(request))
        table.add_server(server)
        server.respond(make_response(request, 200, "OK", to_tag="t"))
        table.stop()
        self.assertEqual((table.servers, clock.getDelayedCalls()), ({}, []))

    def test_completed_udp_client_lingers_for_timer_k(self) -> None:
        clock = Clock()
        table = TransactionTable(clock)
        request = message_request()
        client = ClientTransaction(request, lambda data: None, clock, reliable=False)
        table.add_client(client)
        client.start()
        ok = make_response(request, 200, "OK", to_tag="x")
        results: list = []
        client.deferred.addCallback(results.append)
        table.match_client(ok).response_received(ok)
        entry = table.match_client(ok)
        self.assertIsNot(entry, client)
        entry.response_received(ok)  # a retransmitted 200 is absorbed
        self.assertEqual((len(results), entry.absorbed, client.retransmissions), (1, 1, 0))
        clock.advance(0.5)  # no Timer E any more
        self.assertEqual(client.retransmissions, 0)
        clock.advance(4.5)  # T4
        self.assertIsNone(table.match_client(ok))
        self.assertEqual(clock.getDelayedCalls(), [])
