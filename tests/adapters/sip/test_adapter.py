"""Tests for cpimgw.adapters.sip.adapter over TCP StringTransports on a MemoryReactorClock."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from cpimgw.cpim import message as cpim
from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import (
    MEDIA_CPIM,
    Condition,
    Content,
    Message,
    Publish,
    Subscribe,
    failure,
    indeterminant,
)
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.interfaces import IAdapter, IMessaging, IPresence
from cpimgw.testing import RecordingAdapter, attach, make_bus, settle
from cpimgw.adapters.sip.adapter import SipAdapter, SipSettings, defaults
from cpimgw.adapters.sip.wire import Request, Response, StreamFramer, parse_message

PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'entity="pres:alice@sip.test"><tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)


def sip_request(method: str, uri: str, extra: str = "", body: bytes = b"", *, to_tag: str = "",
                call_id: str = "call-1", cseq: int = 1, from_uri: str = "sip:alice@sip.test") -> bytes:
    to = f"<{uri}>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bK{method}{cseq}{call_id}\r\n"
        f"From: <{from_uri}>;tag=ft1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
        f"Max-Forwards: 70\r\nContact: <sip:alice@127.0.0.1:40000;transport=tcp>\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class AdapterFixture:
    reply = None
    #: extra adapter settings for a test class
    settings: dict = {}

    def setUp(self) -> None:
        self.bus = make_bus()
        self.reactor = self.bus.reactor
        self.xmpp = RecordingAdapter("xmpp", ["xmpp.test"], reply=self.reply)
        attach(self.bus, self.xmpp)
        settings = SipSettings.from_mapping({
            "domains": ["sip.test"], "transports": ["tcp"], "port": 5070,
            "routes": {"sip.test": "sip:127.0.0.1:5080;transport=tcp"}, "use_dns": False,
            **self.settings,
        })
        self.adapter = SipAdapter(self.bus, settings, reactor=self.reactor)
        self.bus.register(self.adapter)
        self.adapter.startService()
        factory = self.reactor.tcpServers[0][1]
        self.peer = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.peer.makeConnection(self.transport)

    def tearDown(self):  # type: ignore[no-untyped-def]
        return self.adapter.stopService()

    def send(self, data: bytes) -> list:
        self.transport.clear()
        self.peer.dataReceived(data)
        settle(self.bus)
        return self.received()

    def received(self) -> list:
        data = self.transport.value()
        self.transport.clear()
        return [parse_message(m) for m in StreamFramer().feed(data)]

    def outbound(self):  # type: ignore[no-untyped-def]
        """Complete the gateway's outbound TCP connection to 127.0.0.1:5080."""
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        self.assertEqual((host, port), ("127.0.0.1", 5080))
        protocol = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5080))
        protocol.makeConnection(transport)
        return protocol, transport


class MessageInTests(AdapterFixture, TestCase):
    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IAdapter, self.adapter))
        self.assertTrue(IMessaging.providedBy(self.adapter) and IPresence.providedBy(self.adapter))

    def test_rfc3428_message_reaches_the_bus_and_200(self) -> None:
        out = self.send(sip_request("MESSAGE", "sip:bob@xmpp.test", "Content-Type: text/plain\r\n"
                                    "Subject: hi\r\n", b"Watson, come here."))
        self.assertEqual([r.status for r in out], [200])
        self.assertIsNotNone(out[0].to.tag)
        [message] = self.xmpp.delivered
        self.assertEqual((str(message.source), str(message.destination)), ("im:alice@sip.test", "im:bob@xmpp.test"))
        parsed = cpim.parse_message(message.content.body)
        self.assertEqual((parsed.body, parsed.subjects), (b"Watson, come here.", ((None, "hi"),)))
        self.assertEqual(message.max_forwards, 69)  # the bus took one hop

    def test_message_cpim_carried_byte_for_byte(self) -> None:
        body = cpim.build_message(im_uri("alice", "sip.test"), [im_uri("bob", "xmpp.test")], b"x").to_bytes()
        self.send(sip_request("MESSAGE", "sip:bob@xmpp.test", "Content-Type: message/cpim\r\n", body))
        self.assertEqual(self.xmpp.delivered[0].content, Content(MEDIA_CPIM, body))

    def test_unknown_content_type_415(self) -> None:
        out = self.send(sip_request("MESSAGE", "sip:bob@xmpp.test", "Content-Type: application/x-unknown\r\n", b"x"))
        self.assertEqual((out[0].status, out[0].get("accept")), (415, "text/plain"))

    def test_invite_488_options_200_unknown_501(self) -> None:
        self.assertEqual(self.send(sip_request("INVITE", "sip:bob@xmpp.test"))[0].status, 488)
        self.assertEqual(self.send(sip_request("OPTIONS", "sip:bob@xmpp.test", call_id="c2"))[0].status, 200)
        out = self.send(sip_request("FOO", "sip:bob@xmpp.test", call_id="c3"))
        self.assertEqual(out[0].status, 501)
        self.assertIn("MESSAGE", out[0].get("allow"))

    def test_bad_request_400_with_reason_and_keeps_serving(self) -> None:
        bad = sip_request("MESSAGE", "sip:bob@xmpp.test").replace(b"CSeq: 1 MESSAGE", b"CSeq: 1 INVITE")
        out = self.send(bad)
        self.assertEqual(out[0].status, 400)
        self.assertIn("does not match", out[0].reason)
        self.assertEqual(self.send(sip_request("MESSAGE", "sip:bob@xmpp.test", call_id="c9"))[0].status, 200)

    def test_unknown_scheme_416_and_require_420(self) -> None:
        out = self.send(sip_request("MESSAGE", "sip:bob@xmpp.test").replace(b"MESSAGE sip:", b"MESSAGE soap.beep:"))
        self.assertEqual(out[0].status, 416)
        out = self.send(sip_request("MESSAGE", "sip:bob@xmpp.test", "Require: nothingIknow\r\n", call_id="c4"))
        self.assertEqual((out[0].status, out[0].get("unsupported")), (420, "nothingIknow"))

    def test_retransmission_absorbed(self) -> None:
        data = sip_request("MESSAGE", "sip:bob@xmpp.test")
        first = self.send(data)
        second = self.send(data)
        self.assertEqual(len(self.xmpp.delivered), 1)  # over TCP the bus's duplicate guard (Call-ID;CSeq)
        self.assertEqual([first[0].status, second[0].status], [200, 200])


class MessageFailureTests(AdapterFixture, TestCase):
    @staticmethod
    def reply(operation):  # type: ignore[no-untyped-def,override]
        if str(operation.destination).startswith("im:relay"):
            return indeterminant(operation)
        return failure(operation, Condition.UNAVAILABLE, "offline")

    def test_failure_maps_to_480_and_indeterminant_to_202(self) -> None:
        out = self.send(sip_request("MESSAGE", "sip:bob@xmpp.test"))
        self.assertEqual(out[0].status, 480)
        self.assertIn("offline", out[0].reason)
        out = self.send(sip_request("MESSAGE", "sip:relay@xmpp.test", call_id="c2"))
        self.assertEqual(out[0].status, 202)


class MessageOutTests(AdapterFixture, TestCase):
    def test_message_to_sip_and_200_is_success(self) -> None:
        body = cpim.build_message(im_uri("juliet", "xmpp.test"), [im_uri("romeo", "sip.test")], b"hi").to_bytes()
        op = Message(im_uri("juliet", "xmpp.test"), im_uri("romeo", "sip.test"), Content(MEDIA_CPIM, body),
                     source_instance="balcony")
        results: list = []
        self.adapter.deliver(op).addCallback(results.append)
        protocol, transport = self.outbound()
        [request] = [parse_message(m) for m in StreamFramer().feed(transport.value())]
        self.assertEqual(request.method, "MESSAGE")
        self.assertEqual(request.uri, "sip:romeo@sip.test")
        self.assertEqual(request.from_.uri, "sip:juliet@xmpp.test;gr=balcony")
        self.assertEqual(request.body, body)
        self.assertEqual(request.media_type, MEDIA_CPIM)
        response = Response(200, "OK", tuple((n, v) for n, v in request.headers
                                             if n in ("Via", "From", "To", "Call-ID", "CSeq")))
        protocol.dataReceived(response.to_bytes())
        self.assertEqual(results[0].status.value, "success")
        self.assertEqual(results[0].native_code, 200)

    def test_202_is_indeterminant_and_404_failure(self) -> None:
        for code, status in ((202, "indeterminant"), (404, "failure")):
            op = Message(im_uri("juliet", "xmpp.test"), im_uri("romeo", "sip.test"), Content("text/plain", b"x"))
            results: list = []
            self.adapter.deliver(op).addCallback(results.append)
            if code == 202:
                protocol, transport = self.outbound()
            [request] = [parse_message(m) for m in StreamFramer().feed(transport.value())]
            transport.clear()
            response = Response(code, "X", tuple((n, v) for n, v in request.headers
                                                 if n in ("Via", "From", "To", "Call-ID", "CSeq")))
            protocol.dataReceived(response.to_bytes())
            self.assertEqual(results[0].status.value, status)
        self.assertEqual(results[0].condition, Condition.NOT_FOUND)

    def test_timeout_is_408_failure(self) -> None:
        op = Message(im_uri("juliet", "xmpp.test"), im_uri("romeo", "sip.test"), Content("text/plain", b"x"))
        results: list = []
        self.adapter.deliver(op).addCallback(results.append)
        self.outbound()
        self.reactor.advance(32)
        self.assertEqual((results[0].condition, results[0].native_code), (Condition.TIMEOUT, 408))


class PresenceTests(AdapterFixture, TestCase):
    def test_sip_watcher_gets_200_then_notify(self) -> None:
        out = self.send(sip_request("SUBSCRIBE", "sip:juliet@xmpp.test", "Event: presence\r\nExpires: 600\r\n"
                                    "Accept: application/pidf+xml\r\n"))
        self.assertEqual(out[0].status, 200)
        self.assertEqual(out[0].expires, 600)
        [subscribe] = self.xmpp.of_type(Subscribe)
        self.assertEqual((str(subscribe.watcher), str(subscribe.target)), ("pres:alice@sip.test", "pres:juliet@xmpp.test"))
        # the presence service's first notify (pending: the XMPP side has not said yes... it has: success)
        notifies = [m for m in out[1:] + self.received() if isinstance(m, Request)]
        self.assertEqual([n.method for n in notifies], ["NOTIFY"])
        self.assertTrue(notifies[0].get("subscription-state").startswith(("active", "pending")))
        self.assertEqual(notifies[0].to.tag, "ft1")
        # a publish on the XMPP side reaches the SIP watcher byte for byte
        self.xmpp.inject(Publish(pres_uri("juliet", "xmpp.test"), Content("application/pidf+xml", PIDF),
                                 instance="balcony"))
        settle(self.bus)
        # RFC 3856 §6.12: not within 5 s of the first NOTIFY; it leaves when the interval is over
        self.assertEqual([m for m in self.received() if isinstance(m, Request)], [])
        self.reactor.advance(5)
        later = [m for m in self.received() if isinstance(m, Request)]
        self.assertEqual(later[-1].body, PIDF)
        self.assertEqual(later[-1].media_type, "application/pidf+xml")

    def test_bad_event_489_and_interval_423(self) -> None:
        out = self.send(sip_request("SUBSCRIBE", "sip:juliet@xmpp.test", "Event: dialog\r\n"))
        self.assertEqual((out[0].status, out[0].get("allow-events")), (489, "presence"))
        out = self.send(sip_request("SUBSCRIBE", "sip:juliet@xmpp.test", "Event: presence\r\nExpires: 5\r\n", call_id="c2"))
        self.assertEqual((out[0].status, out[0].get("min-expires")), (423, "60"))

    def test_rfc3903_publish_etag_lineage(self) -> None:
        out = self.send(sip_request("PUBLISH", "sip:alice@sip.test", "Event: presence\r\nExpires: 3600\r\n"
                                    "Content-Type: application/pidf+xml\r\n", PIDF))
        self.assertEqual(out[0].status, 200)
        etag = out[0].get("sip-etag")
        self.assertEqual(out[0].expires, 3600)
        refresh = self.send(sip_request("PUBLISH", "sip:alice@sip.test", f"Event: presence\r\nSIP-If-Match: {etag}\r\n"
                                        "Expires: 3600\r\n", call_id="c2"))
        self.assertEqual(refresh[0].status, 200)
        self.assertNotEqual(refresh[0].get("sip-etag"), etag)
        stale = self.send(sip_request("PUBLISH", "sip:alice@sip.test", f"Event: presence\r\nSIP-If-Match: {etag}\r\n",
                                      call_id="c3"))
        self.assertEqual(stale[0].status, 412)

    def signed(self, entity: str = "pres:alice@sip.test") -> tuple[str, bytes, bytes]:
        """(Content-Type, multipart/signed body, the PIDF it signs) -- the signature part is opaque here."""
        pidf = PIDF.replace(b"pres:alice@sip.test", entity.encode())
        body = (b"--sig\r\nContent-Type: application/pidf+xml\r\n\r\n" + pidf + b"\r\n--sig\r\n"
                b"Content-Type: application/pkcs7-signature\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQE=\r\n--sig--\r\n")
        return 'multipart/signed;protocol="application/pkcs7-signature";micalg=sha-256;boundary=sig', body, pidf

    def test_signed_publish_is_relayed_octet_for_octet(self) -> None:
        """RFC 3863 §4: the ESC takes a signed PIDF of the publisher and relays the very octets."""
        content_type, body, _ = self.signed()
        out = self.send(sip_request("PUBLISH", "sip:alice@sip.test", "Event: presence\r\nExpires: 3600\r\n"
                                    f"Content-Type: {content_type}\r\n", body))
        self.assertEqual(out[0].status, 200)
        stored = self.successResultOf(self.bus.store.get_presence(pres_uri("alice", "sip.test")))
        [content] = stored.values()
        self.assertEqual((content.media_type, content.body), ("multipart/signed", body))

    def test_signed_publish_refusals(self) -> None:
        content_type, body, _ = self.signed("pres:mallory@sip.test")
        out = self.send(sip_request("PUBLISH", "sip:alice@sip.test", "Event: presence\r\n"
                                    f"Content-Type: {content_type}\r\n", body))
        self.assertEqual(out[0].status, 400)
        self.assertIn("not for the publisher", out[0].reason)
        out = self.send(sip_request("PUBLISH", "sip:alice@sip.test", "Event: presence\r\n"
                                    "Content-Type: text/plain\r\n", b"x", call_id="c2"))
        self.assertEqual((out[0].status, out[0].get_all("accept")), (415, ("application/pidf+xml", "multipart/signed")))

    def watch(self, accept: str, call_id: str) -> list:
        """A SIP watcher of juliet@xmpp.test, who publishes a signed document: the last NOTIFY with a body."""
        if not self.adapter.watchers:
            content_type, body, _ = self.signed("pres:juliet@xmpp.test")
            params = tuple(tuple(p.split("=", 1)) for p in content_type.split(";")[1:])
            self.xmpp.inject(Publish(pres_uri("juliet", "xmpp.test"), Content("multipart/signed", body, params),
                                     instance="balcony"))
            settle(self.bus)
        out = self.send(sip_request("SUBSCRIBE", "sip:juliet@xmpp.test",
                                    f"Event: presence\r\nExpires: 600\r\n{accept}", call_id=call_id,
                                    from_uri=f"sip:{call_id}@sip.test"))
        self.reactor.advance(5)
        notifies = [m for m in out + self.received() if isinstance(m, Request) and m.body]
        return notifies[-1:]

    def test_watcher_that_accepts_signed_documents_gets_them(self) -> None:
        [notify] = self.watch("Accept: application/pidf+xml, multipart/signed\r\n", "w1")
        _, body, _ = self.signed("pres:juliet@xmpp.test")
        self.assertEqual((notify.media_type, notify.body), ("multipart/signed", body))
        self.assertIn("boundary=sig", notify.get("content-type"))

    def test_watcher_that_accepts_pidf_only_gets_the_signed_pidf(self) -> None:
        """RFC 3856 §6.7 / RFC 3261 §8.2.3: never a body the Accept does not list; the PIDF octets it signs."""
        for accept, call_id in (("Accept: application/pidf+xml\r\n", "w2"), ("", "w3")):
            [notify] = self.watch(accept, call_id)
            _, _, pidf = self.signed("pres:juliet@xmpp.test")
            self.assertEqual((notify.media_type, notify.body), ("application/pidf+xml", pidf), accept)

    def test_gateway_subscribes_to_sip_user_and_relays_notify(self) -> None:
        results: list = []
        op = Subscribe(pres_uri("juliet", "xmpp.test"), pres_uri("alice", "sip.test"), 600)
        self.adapter.deliver(op).addCallback(results.append)
        protocol, transport = self.outbound()
        [request] = [parse_message(m) for m in StreamFramer().feed(transport.value())]
        transport.clear()
        self.assertEqual((request.method, request.get("event"), request.expires), ("SUBSCRIBE", "presence", 600))
        ok = Response(200, "OK", tuple((n, v + (";tag=srv" if n == "To" else "")) for n, v in request.headers
                                       if n in ("Via", "From", "To", "Call-ID", "CSeq")) + (("Expires", "600"),))
        protocol.dataReceived(ok.to_bytes())
        self.assertEqual((results[0].status.value, results[0].duration), ("success", 600))
        notify = (
            f"NOTIFY sip:juliet@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bKn1\r\n"
            f"From: <sip:alice@sip.test>;tag=srv\r\nTo: {request.get('from')}\r\nCall-ID: {request.call_id}\r\n"
            f"CSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: active;expires=599\r\n"
            f"Content-Type: application/pidf+xml\r\nContent-Length: {len(PIDF)}\r\n\r\n"
        ).encode() + PIDF
        protocol.dataReceived(notify)
        settle(self.bus)
        [answer] = [parse_message(m) for m in StreamFramer().feed(transport.value())]
        self.assertEqual(answer.status, 200)


class SettingsTests(TestCase):
    def test_defaults_are_loopback_udp_tcp(self) -> None:
        settings = SipSettings.from_mapping(defaults())
        self.assertEqual((settings.interface, settings.transports), ("127.0.0.1", ("UDP", "TCP")))

    def test_bad_settings_name_the_key(self) -> None:
        error = self.assertRaises(ConfigError, SipSettings.from_mapping, {"transports": ["carrier-pigeon"]})
        self.assertEqual(error.key, "adapters.sip.transports")
        error = self.assertRaises(ConfigError, SipSettings.from_mapping, {"outbound_proxy": "sip:proxy.example"})
        self.assertEqual(error.key, "outbound_proxy")
