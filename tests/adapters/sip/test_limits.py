"""Limits of the SIP adapter: stream idle timeout, connection caps, the RFC 3856
§6.12 NOTIFY rate limit, RFC 3263 failover, and the CSeq of a digest retry in a
dialog -- all on a MemoryReactorClock with StringTransports."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import Content, Message, Notify, Status, Subscribe, SubscriptionState, TerminationReason
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.adapters.sip.adapter import SipSettings
from cpimgw.adapters.sip.digest import compute_response, parse_auth_params
from cpimgw.adapters.sip.transport import Target
from cpimgw.adapters.sip.wire import Request, Response, StreamFramer, parse_message

from tests.adapters.sip.test_adapter import PIDF, AdapterFixture, sip_request


def answer(request: Request, status: int, reason: str, *extra: tuple[str, str], to_tag: str = "srv") -> bytes:
    copied = tuple((n, v + (f";tag={to_tag}" if n == "To" and "tag=" not in v else ""))
                   for n, v in request.headers if n in ("Via", "From", "To", "Call-ID", "CSeq"))
    return Response(status, reason, copied + extra).to_bytes()


def requests_in(transport: StringTransport) -> list:
    data = transport.value()
    transport.clear()
    return [parse_message(m) for m in StreamFramer().feed(data)]


class IdleTimeoutTests(AdapterFixture, TestCase):
    def test_idle_stream_closed_after_idle_timeout(self) -> None:
        self.reactor.advance(179)
        self.assertFalse(self.transport.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.adapter.stack.counters["idle_closed"], 1)

    def test_trickled_bytes_do_not_keep_a_stream_open_but_messages_do(self) -> None:
        request = sip_request("OPTIONS", "sip:gw@sip.test")
        for second in range(170):  # a slow-loris: one byte a second, never a whole message
            self.peer.dataReceived(request[second:second + 1])
            self.reactor.advance(1)
        self.reactor.advance(10)
        self.assertTrue(self.transport.disconnecting)

    def test_complete_message_and_keepalive_reset_the_timer(self) -> None:
        self.reactor.advance(170)
        self.send(sip_request("OPTIONS", "sip:gw@sip.test"))
        self.reactor.advance(170)
        self.peer.dataReceived(b"\r\n\r\n")  # RFC 5626 keep-alive
        self.reactor.advance(170)
        self.assertFalse(self.transport.disconnecting)
        self.reactor.advance(10)
        self.assertTrue(self.transport.disconnecting)


class ConnectionCapTests(AdapterFixture, TestCase):
    settings = {"max_connections": 3, "max_connections_per_host": 2}

    def connect(self, host: str):  # type: ignore[no-untyped-def]
        factory = self.reactor.tcpServers[0][1]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, 40001))
        if protocol is not None:
            protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", host, 40001)))
        return protocol

    def test_per_host_then_total_cap(self) -> None:
        # the fixture's peer is one stream from 127.0.0.1
        self.assertIsNotNone(self.connect("127.0.0.1"))
        self.assertIsNone(self.connect("127.0.0.1"))  # 2 per host
        self.assertIsNotNone(self.connect("127.0.0.2"))
        self.assertIsNone(self.connect("127.0.0.3"))  # 3 in all
        self.assertEqual(self.adapter.stack.counters["connections_refused"], 2)
        self.peer.connectionLost(None)
        self.assertIsNotNone(self.connect("127.0.0.3"))

    def test_outbound_over_the_cap_fails_503(self) -> None:
        self.connect("127.0.0.1")
        self.connect("127.0.0.2")
        results: list = []
        self.adapter.deliver(Message(im_uri("juliet", "xmpp.test"), im_uri("romeo", "sip.test"),
                                     Content("text/plain", b"x"))).addCallback(results.append)
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", host, port)))
        self.assertEqual((results[0].status, results[0].native_code), (Status.FAILURE, 503))

    def test_settings_are_checked(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            SipSettings.from_mapping({"max_connections": 0})
        self.assertEqual(caught.exception.key, "adapters.sip.max_connections")
        with self.assertRaises(ConfigError):
            SipSettings.from_mapping({"notify_min_interval": -1})


class NotifyHelpers(AdapterFixture):
    def subscribe(self) -> str:
        out = self.send(sip_request("SUBSCRIBE", "sip:juliet@xmpp.test", "Event: presence\r\nExpires: 600\r\n"))
        self.assertEqual(out[0].status, 200)
        self.assertEqual([m.method for m in out[1:] + self.received() if isinstance(m, Request)], ["NOTIFY"])
        [subscription] = self.adapter.watchers
        return subscription

    def notify(self, subscript_id: str, body: bytes, state=SubscriptionState.ACTIVE, reason=None):  # type: ignore[no-untyped-def]
        results: list = []
        self.adapter.deliver(Notify(pres_uri("alice", "sip.test"), pres_uri("juliet", "xmpp.test"),
                                    Content("application/pidf+xml", body), subscript_id=subscript_id,
                                    state=state, reason=reason)).addCallback(results.append)
        return results[0] if results else None


class NotifyRateLimitTests(NotifyHelpers, TestCase):
    def test_changes_within_5_s_are_coalesced_latest_wins(self) -> None:
        subscription = self.subscribe()
        self.reactor.advance(1)
        first = self.notify(subscription, PIDF.replace(b"open", b"closed"))
        second = self.notify(subscription, PIDF)
        self.assertEqual((first.status, second.status), (Status.INDETERMINANT, Status.INDETERMINANT))
        self.assertEqual(self.received(), [])
        self.reactor.advance(3.9)
        self.assertEqual(self.received(), [])
        self.reactor.advance(0.1)  # 5 s after the first NOTIFY
        [notify] = [m for m in self.received() if isinstance(m, Request)]
        self.assertEqual(notify.body, PIDF)
        self.assertEqual(self.adapter.stack.counters["notifies_coalesced"], 1)
        # the next change waits for 5 s after that NOTIFY, not after the first
        self.notify(subscription, PIDF)
        self.reactor.advance(4.9)
        self.assertEqual(self.received(), [])
        self.reactor.advance(0.1)
        self.assertEqual([m.method for m in self.received() if isinstance(m, Request)], ["NOTIFY"])

    def test_after_the_interval_a_notify_goes_at_once(self) -> None:
        subscription = self.subscribe()
        self.reactor.advance(5)
        self.notify(subscription, PIDF)
        self.assertEqual([m.method for m in self.received() if isinstance(m, Request)], ["NOTIFY"])

    def test_termination_is_not_delayed_and_replaces_the_pending_change(self) -> None:
        subscription = self.subscribe()
        self.notify(subscription, PIDF)
        self.notify(subscription, b"", state=SubscriptionState.TERMINATED, reason=TerminationReason.DEACTIVATED)
        [notify] = [m for m in self.received() if isinstance(m, Request)]
        self.assertEqual(notify.get("subscription-state"), "terminated;reason=deactivated")
        self.reactor.advance(10)
        self.assertEqual(self.received(), [])


class NotifyRateLimitOffTests(NotifyHelpers, TestCase):
    settings = {"notify_min_interval": 0}

    def test_interval_zero_disables_the_limit(self) -> None:
        subscription = self.subscribe()
        self.notify(subscription, PIDF)
        self.notify(subscription, PIDF)
        self.assertEqual([m.method for m in self.received() if isinstance(m, Request)], ["NOTIFY", "NOTIFY"])


class FailoverTests(AdapterFixture, TestCase):
    def test_refused_target_then_next_target_with_next_cseq(self) -> None:
        targets = [Target("TCP", "127.0.0.1", 5081), Target("TCP", "127.0.0.1", 5082)]
        self.adapter.resolver.resolve = lambda uri: succeed(targets)  # type: ignore[method-assign]
        results: list = []
        self.adapter.deliver(Message(im_uri("juliet", "xmpp.test"), im_uri("romeo", "sip.test"),
                                     Content("text/plain", b"x"))).addCallback(results.append)
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        self.assertEqual(port, 5081)
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        self.assertEqual(port, 5082)
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        [request] = requests_in(transport)
        self.assertEqual(request.cseq, (2, "MESSAGE"))
        protocol.dataReceived(answer(request, 200, "OK"))
        self.assertEqual((results[0].status, results[0].native_code), (Status.SUCCESS, 200))
        self.assertEqual(self.adapter.stack.counters["failovers"], 1)

    def test_503_moves_on_and_the_last_answer_counts(self) -> None:
        targets = [Target("TCP", "127.0.0.1", 5080), Target("TCP", "127.0.0.1", 5080)]
        self.adapter.resolver.resolve = lambda uri: succeed(targets)  # type: ignore[method-assign]
        results: list = []
        self.adapter.deliver(Message(im_uri("juliet", "xmpp.test"), im_uri("romeo", "sip.test"),
                                     Content("text/plain", b"x"))).addCallback(results.append)
        protocol, transport = self.outbound()
        [first] = requests_in(transport)
        protocol.dataReceived(answer(first, 503, "Service Unavailable"))
        [second] = requests_in(transport)
        self.assertEqual((first.cseq[0], second.cseq[0]), (1, 2))
        protocol.dataReceived(answer(second, 503, "Service Unavailable"))
        self.assertEqual((results[0].status, results[0].native_code), (Status.FAILURE, 503))


class DigestInDialogTests(AdapterFixture, TestCase):
    settings = {"credentials": {"sip.test": "gw:secret"}}

    def test_digest_retry_takes_the_dialogs_next_cseq(self) -> None:
        results: list = []
        self.adapter.deliver(Subscribe(pres_uri("juliet", "xmpp.test"), pres_uri("alice", "sip.test"), 600)
                             ).addCallback(results.append)
        protocol, transport = self.outbound()
        [initial] = requests_in(transport)
        challenge = 'Digest realm="sip.test", nonce="n1", qop="auth", algorithm=MD5'
        protocol.dataReceived(answer(initial, 401, "Unauthorized", ("WWW-Authenticate", challenge)))
        [retry] = requests_in(transport)
        self.assertEqual((initial.cseq, retry.cseq), ((1, "SUBSCRIBE"), (2, "SUBSCRIBE")))
        self.assertEqual(retry.call_id, initial.call_id)
        _, params = parse_auth_params(retry.get("authorization"))
        self.assertEqual(params["response"], compute_response(
            algorithm="MD5", username="gw", realm="sip.test", password="secret", method="SUBSCRIBE",
            uri=retry.uri, nonce="n1", qop="auth", nc=params["nc"], cnonce=params["cnonce"]))
        protocol.dataReceived(answer(retry, 200, "OK", ("Expires", "600")))
        self.assertEqual(results[0].status, Status.SUCCESS)
        # the unsubscribe in the dialog comes after both: CSeq 3 (RFC 3261 §12.2.1.1)
        [subscript_id] = self.adapter.outgoing
        self.adapter.deliver(Subscribe(pres_uri("juliet", "xmpp.test"), pres_uri("alice", "sip.test"), 0,
                                       subscript_id=subscript_id))
        [unsubscribe] = requests_in(transport)
        self.assertEqual((unsubscribe.cseq, unsubscribe.expires), ((3, "SUBSCRIBE"), 0))
        self.assertEqual(unsubscribe.to.tag, "srv")

    def test_refused_credentials_are_not_retried_forever(self) -> None:
        results: list = []
        self.adapter.deliver(Message(im_uri("juliet", "xmpp.test"), im_uri("romeo", "sip.test"),
                                     Content("text/plain", b"x"))).addCallback(results.append)
        protocol, transport = self.outbound()
        challenge = ("WWW-Authenticate", 'Digest realm="sip.test", nonce="n1", algorithm=MD5')
        [first] = requests_in(transport)
        protocol.dataReceived(answer(first, 401, "Unauthorized", challenge))
        [second] = requests_in(transport)
        protocol.dataReceived(answer(second, 401, "Unauthorized", challenge))
        self.assertEqual(requests_in(transport), [])
        self.assertEqual((results[0].status, results[0].native_code), (Status.FAILURE, 401))


class SizeTests(TestCase):
    def test_size_without_serialising_matches_to_bytes(self) -> None:
        from cpimgw.adapters.sip.adapter import _size

        for headers, body in (
            ((("To", "<sip:a@b>"),), b"hello"),
            ((("To", "<sip:a@b>"), ("Content-Length", "99"), ("l", "3")), b"hello"),
            ((("Subject", "caf\u00e9 \u2603"),), "\u00e9t\u00e9".encode()),
            ((), b""),
        ):
            request = Request("MESSAGE", "sip:a@b.example", headers, body)
            self.assertEqual(_size(request), len(request.to_bytes()))


class RandomHexTests(TestCase):
    def test_pooled_randomness_is_fresh_across_refills(self) -> None:
        from cpimgw.adapters.sip import wire

        values = [wire.random_hex(6) for _ in range(2000)]  # 12 kB: crosses 4 kB pool refills
        self.assertEqual(len(set(values)), len(values))
        self.assertTrue(all(len(v) == 12 and int(v, 16) >= 0 for v in values))
        self.assertEqual(len(wire.random_hex(5000)), 10000)  # more than one pool at once
