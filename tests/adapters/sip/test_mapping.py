"""Tests for cpimgw.adapters.sip mapping, errors (RFC 7247 §7 tables), digest, resolver and codec."""

from __future__ import annotations

from twisted.internet.defer import succeed
from twisted.names import dns
from twisted.names.common import ResolverBase
from twisted.trial.unittest import TestCase

from cpimgw.cpim import errors as cpim_errors, message as cpim
from cpimgw.cpim.operations import (
    MEDIA_CPIM,
    Condition,
    Content,
    Message,
    Notify,
    SubscriptionState,
    TerminationReason,
    failure,
    indeterminant,
    success,
)
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.adapters.sip import errors, mapping
from cpimgw.adapters.sip.codec import SipCodec
from cpimgw.adapters.sip.digest import Challenger, Credentials, Responder, compute_response
from cpimgw.adapters.sip.resolver import SipResolver
from cpimgw.adapters.sip.transport import Target
from cpimgw.adapters.sip.wire import Request, make_response, parse_message


class ErrorTableTests(TestCase):
    def test_sip_to_xmpp_table(self) -> None:
        """RFC 7247 §7.2, every listed row plus the class defaults."""
        expected = {
            300: "redirect", 301: "gone", 302: "redirect", 305: "redirect", 380: "not-acceptable",
            400: "bad-request", 401: "not-authorized", 402: "bad-request", 403: "forbidden",
            404: "item-not-found", 405: "feature-not-implemented", 406: "not-acceptable",
            407: "registration-required", 408: "remote-server-timeout", 410: "gone", 413: "policy-violation",
            414: "policy-violation", 415: "not-acceptable", 416: "not-acceptable", 420: "feature-not-implemented",
            421: "not-acceptable", 423: "resource-constraint", 430: "recipient-unavailable",
            439: "feature-not-implemented", 440: "policy-violation", 480: "recipient-unavailable",
            481: "item-not-found", 482: "not-acceptable", 483: "not-acceptable", 484: "item-not-found",
            485: "item-not-found", 486: "recipient-unavailable", 487: "recipient-unavailable",
            488: "not-acceptable", 489: "policy-violation", 491: "unexpected-request", 493: "bad-request",
            500: "internal-server-error", 501: "feature-not-implemented", 502: "remote-server-not-found",
            503: "internal-server-error", 504: "remote-server-timeout", 505: "not-acceptable",
            513: "policy-violation", 600: "recipient-unavailable", 603: "recipient-unavailable",
            604: "item-not-found", 606: "not-acceptable",
            # unlisted codes by class
            399: "redirect", 499: "bad-request", 599: "internal-server-error", 699: "recipient-unavailable",
        }
        self.assertEqual({code: errors.xmpp_condition_for_status(code) for code in expected}, expected)
        self.assertRaises(ValueError, errors.xmpp_condition_for_status, 200)

    def test_xmpp_to_sip_table(self) -> None:
        """RFC 7247 §7.1 with the full/bare JID split."""
        rows = [
            ("bad-request", False, 400), ("conflict", False, 400), ("feature-not-implemented", False, 405),
            ("feature-not-implemented", True, 501), ("forbidden", False, 403), ("forbidden", True, 603),
            ("internal-server-error", False, 500), ("item-not-found", False, 404), ("item-not-found", True, 604),
            ("jid-malformed", False, 400), ("not-acceptable", False, 406), ("not-acceptable", True, 606),
            ("not-allowed", False, 403), ("not-authorized", False, 401), ("policy-violation", False, 403),
            ("recipient-unavailable", False, 480), ("recipient-unavailable", True, 600), ("redirect", False, 302),
            ("registration-required", False, 407), ("remote-server-not-found", False, 404),
            ("remote-server-timeout", False, 408), ("resource-constraint", False, 500),
            ("service-unavailable", False, 403), ("subscription-required", False, 400),
            # RFC 7247 §7.1 says "491 or 400"; the one shared table (cpimgw.cpim.interworking) takes 491.
            ("undefined-condition", False, 400), ("unexpected-request", False, 491),
        ]
        self.assertEqual([(c, b, errors.sip_status_for_xmpp(c, bare=b)) for c, b, _ in rows], rows)
        self.assertEqual(errors.sip_status_for_xmpp("gone", new_address=True), 301)
        self.assertEqual(errors.sip_status_for_xmpp("gone"), 410)

    def test_condition_tables_both_ways(self) -> None:
        self.assertEqual(
            {code: errors.condition_for_status(code) for code in (403, 404, 408, 415, 480, 481, 482, 486, 489, 501, 503, 603)},
            {403: Condition.FORBIDDEN, 404: Condition.NOT_FOUND, 408: Condition.TIMEOUT,
             415: Condition.UNSUPPORTED_MEDIA, 480: Condition.UNAVAILABLE, 481: Condition.NO_SUBSCRIPTION,
             482: Condition.LOOP, 486: Condition.BUSY, 489: Condition.TOO_LARGE, 501: Condition.UNSUPPORTED,
             503: Condition.SERVICE_UNAVAILABLE, 603: Condition.UNAVAILABLE},
        )
        for condition in Condition:
            code, phrase = errors.status_for_condition(condition)
            self.assertTrue(300 <= code < 700 and phrase)
        self.assertEqual(errors.status_for_condition(Condition.UNAVAILABLE), (480, "Temporarily Unavailable"))
        self.assertEqual(errors.status_for_condition(None), (500, "Server Internal Error"))


class AddressTests(TestCase):
    def test_rfc7247_examples(self) -> None:
        self.assertEqual(mapping.sip_to_cpim("sip:f%C3%BC@sip.example").uri.user, "f\u00fc")
        address = mapping.sip_to_cpim("sip:foo@sip.example;gr=bar")
        self.assertEqual((str(address.uri), address.instance), ("im:foo@sip.example", "bar"))
        self.assertEqual(mapping.cpim_to_sip(im_uri("m&m", "xmpp.example")), "sip:m&m@xmpp.example")
        self.assertEqual(mapping.cpim_to_sip(im_uri("tsch\u00fcss", "xmpp.example")), "sip:tsch%C3%BCss@xmpp.example")
        self.assertEqual(mapping.cpim_to_sip(im_uri("baz", "xmpp.example"), "qux"), "sip:baz@xmpp.example;gr=qux")
        self.assertEqual(mapping.sip_to_cpim("sip:o'malley@sip.example", "pres").uri, pres_uri("o'malley", "sip.example"))

    def test_injection_is_escaped(self) -> None:
        uri = mapping.cpim_to_sip(im_uri("a>b;c", "xmpp.example"), "r\r\nVia: x")
        self.assertNotIn("\r", uri)
        self.assertNotIn(">", uri)


class MessageMappingTests(TestCase):
    def request(self, ctype: str, body: bytes, extra: tuple = ()) -> Request:
        return Request("MESSAGE", "sip:user2@domain.com", (
            ("Via", "SIP/2.0/TCP user1pc.domain.com;branch=z9hG4bK776sgdkse"), ("Max-Forwards", "70"),
            ("From", "sip:user1@domain.com;tag=49583"), ("To", "sip:user2@domain.com"),
            ("Call-ID", "asd88asd77a@1.2.3.4"), ("CSeq", "1 MESSAGE"), ("Content-Type", ctype), *extra,
        ), body)

    def test_rfc3428_example_to_cpim(self) -> None:
        op = mapping.message_from_sip(self.request("text/plain", b"Watson, come here.",
                                                   (("Content-Language", "cs"), ("Subject", "Ahoj"))))
        self.assertEqual((str(op.source), str(op.destination)), ("im:user1@domain.com", "im:user2@domain.com"))
        self.assertEqual(op.message_id, "asd88asd77a@1.2.3.4;1")
        parsed = cpim.parse_message(op.content.body)
        self.assertEqual(parsed.body, b"Watson, come here.")
        self.assertEqual(parsed.subjects, (("cs", "Ahoj"),))
        self.assertEqual(parsed.content_header("content-language"), "cs")

    def test_cpim_to_sip_native_mode_unwraps(self) -> None:
        body = cpim.build_message(im_uri("juliet", "example.com"), [im_uri("romeo", "example.net")], b"Art thou",
                                  subjects=[("en", "Hi")]).to_bytes()
        op = Message(im_uri("juliet", "example.com"), im_uri("romeo", "example.net"), Content(MEDIA_CPIM, body),
                     source_instance="yn0cl4bnw0yr3vym")
        request = mapping.message_to_sip(op, call_id="c", from_tag="t", mode="native")
        self.assertEqual(request.body, b"Art thou")
        self.assertEqual(request.get("subject"), "Hi")
        self.assertEqual(request.from_.uri, "sip:juliet@example.com;gr=yn0cl4bnw0yr3vym")
        carried = mapping.message_to_sip(op, call_id="c", from_tag="t")
        self.assertEqual((carried.body, carried.media_type), (body, MEDIA_CPIM))

    def test_outcomes(self) -> None:
        op = Message(im_uri("a", "x.example"), im_uri("b", "y.example"), Content("text/plain", b"x"))
        request = self.request("text/plain", b"x")
        self.assertEqual(mapping.response_from_sip(op, make_response(request, 200, "OK")).status.value, "success")
        self.assertEqual(mapping.response_from_sip(op, make_response(request, 202, "Accepted")).status.value, "indeterminant")
        self.assertEqual(mapping.response_from_sip(op, make_response(request, 486, "Busy")).condition, Condition.BUSY)
        self.assertEqual(mapping.status_for_response(success(op)), (200, "OK"))
        self.assertEqual(mapping.status_for_response(indeterminant(op)), (202, "Accepted"))
        self.assertEqual(mapping.status_for_response(failure(op, Condition.NOT_FOUND, "no\r\nsuch")),
                         (404, "Not Found (no  such)"))


    def test_identity_of_a_sip_born_message_is_its_call_id_and_cseq(self) -> None:
        op = mapping.message_from_sip(self.request("text/plain", b"x"))
        request = mapping.message_to_sip(op, call_id="fresh@gw", from_tag="t")
        self.assertEqual((request.call_id, request.cseq), ("asd88asd77a@1.2.3.4", (1, "MESSAGE")))
        self.assertFalse(request.has(mapping.MESSAGE_ID_HEADER) or request.has(mapping.CONVERSATION_ID_HEADER))
        self.assertEqual(mapping.message_from_sip(request).message_id, "asd88asd77a@1.2.3.4;1")

    def test_foreign_ids_ride_in_extension_headers(self) -> None:
        body = cpim.build_message(im_uri("carol", "prim.example"), [im_uri("bob", "sip.example")], b"x").to_bytes()
        op = Message(im_uri("carol", "prim.example"), im_uri("bob", "sip.example"), Content(MEDIA_CPIM, body),
                     message_id="m6", conversation_id="conv-5", source_instance="urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
        request = mapping.message_to_sip(op, call_id="fresh@gw", from_tag="t")
        self.assertEqual((request.call_id, request.get("CPIM-Message-ID"), request.get("CPIM-Conversation-ID")),
                         ("fresh@gw", "m6", "conv-5"))
        self.assertEqual(request.from_.uri, "sip:carol@prim.example;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
        back = mapping.message_from_sip(parse_message(request.add_header("Via", "SIP/2.0/UDP gw;branch=z9hG4bKx")
                                                      .to_bytes()))
        self.assertEqual((back.message_id, back.conversation_id, back.source_instance, back.content.body),
                         ("m6", "conv-5", "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", body))

    def test_message_identity_table(self) -> None:
        def op(message_id, conversation_id=None, content=Content("text/plain", b"x")):
            return Message(im_uri("a", "x.example"), im_uri("b", "y.example"), content, message_id=message_id,
                           conversation_id=conversation_id)

        content_id = Content(MEDIA_CPIM, b"From: <im:a@x.example>\r\nTo: <im:b@y.example>\r\n\r\n"
                                         b"Content-Type: text/plain\r\nContent-ID: <12@foo.com>\r\n\r\nx")
        table = [
            (op("abc@host;7"), ("abc@host", 7, ())),
            (op(None), ("new", 1, ())),
            (op("m6", "c5"), ("new", 1, (("CPIM-Message-ID", "m6"), ("CPIM-Conversation-ID", "c5")))),
            (op("a;0"), ("new", 1, (("CPIM-Message-ID", "a;0"),))),  # CSeq 0 is not a SIP CSeq
            (op("a;99999999999"), ("new", 1, (("CPIM-Message-ID", "a;99999999999"),))),
            (op("x y;1"), ("new", 1, (("CPIM-Message-ID", "x y;1"),))),
            (op("evil\r\nVia: x"), ("new", 1, (("CPIM-Message-ID", "evil  Via: x"),))),
            (op("12@foo.com", content=content_id), ("new", 1, ())),  # already the carried Content-ID
        ]
        for operation, expected in table:
            self.assertEqual(mapping.message_identity(operation, "new"), expected, operation.message_id)

    def test_require_binds_the_recipient_not_the_relay(self) -> None:
        """RFC 3862 §3.5: a relayed body is not refused for its Require; native mode consumes it and is."""
        body = (b"From: <im:user1@domain.com>\r\nTo: <im:user2@domain.com>\r\n"
                b"NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\nRequire: MyFeatures.VitalMessageOption\r\n"
                b"MyFeatures.VitalMessageOption: Confirmation-requested\r\n\r\n"
                b"Content-Type: text/plain\r\n\r\nmust be understood")
        op = mapping.message_from_sip(self.request(MEDIA_CPIM, body))
        self.assertEqual(op.content, Content(MEDIA_CPIM, body))
        self.assertEqual(mapping.message_to_sip(op, call_id="c", from_tag="t").body, body)
        self.assertRaises(cpim_errors.NotUnderstoodError, mapping.message_to_sip, op, call_id="c", from_tag="t",
                          mode="native")
        self.assertRaises(cpim_errors.MessageFormatError, mapping.message_from_sip,
                          self.request(MEDIA_CPIM, b"From <im:broken>\r\n\r\nx"))


class PresenceMappingTests(TestCase):
    def test_publish_instance_and_lifetime_through_the_codec(self) -> None:
        """A Publish's instance is the entity-tag of its lineage; no lifetime stays none (RFC 3903 §4.1)."""
        from cpimgw.cpim.operations import Publish

        codec = SipCodec()
        pidf = b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:a@sip.example'/>"
        for instance, expires, tag in (("ID-desk", None, "ID-desk"), ("im%3Abob%40prim.example", 600,
                                                                       "im%253Abob%2540prim.example"),
                                       ("My Phone/1", None, "My%20Phone%2F1")):
            op = Publish(pres_uri("a", "sip.example"), Content("application/pidf+xml", pidf), instance=instance,
                         expires=expires)
            request = parse_message(codec.from_operation(op))
            self.assertEqual((request.get("sip-if-match"), request.expires, request.body), (tag, expires, pidf))
            back = codec.to_operation(request.to_bytes())
            self.assertEqual((back.instance, back.expires), (instance, expires))  # the tag is reversible
        self.assertEqual(mapping.entity_tag_for("a:b@c d"), "a%3Ab%40c%20d")

    def test_subscription_state_both_ways(self) -> None:
        """RFC 3856 §8 and RFC 3903 §15 values."""
        self.assertEqual(mapping.parse_subscription_state("active;expires=599"),
                         mapping.SubscriptionStateValue(SubscriptionState.ACTIVE, 599))
        self.assertEqual(mapping.parse_subscription_state("active; expires=3599").expires, 3599)
        self.assertEqual(mapping.parse_subscription_state("terminated;reason=timeout").reason, TerminationReason.TIMEOUT)
        self.assertEqual(mapping.parse_subscription_state("weird").state, SubscriptionState.PENDING)
        self.assertEqual(mapping.format_subscription_state(SubscriptionState.ACTIVE, expires=543), "active;expires=543")
        self.assertEqual(mapping.format_subscription_state(SubscriptionState.TERMINATED, reason=TerminationReason.REJECTED),
                         "terminated;reason=rejected")

    def test_notify_body_byte_for_byte(self) -> None:
        pidf = b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:a@b'/>"
        notify = Notify(pres_uri("w", "x"), pres_uri("a", "b"), Content("application/pidf+xml", pidf), subscript_id="s")
        self.assertEqual(mapping.notify_body(notify), (pidf, "application/pidf+xml"))


class DigestTests(TestCase):
    def test_rfc2617_md5_vector(self) -> None:
        """RFC 2617 §3.5 (the worked example, qop=auth)."""
        self.assertEqual(compute_response(
            algorithm="MD5", username="Mufasa", realm="testrealm@host.com", password="Circle Of Life",
            method="GET", uri="/dir/index.html", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth",
            nc="00000001", cnonce="0a4f113b"), "6629fae49393a05397450978507c4ef1")

    def test_rfc7616_sha256_vector(self) -> None:
        """RFC 7616 §3.9.1."""
        self.assertEqual(compute_response(
            algorithm="SHA-256", username="Mufasa", realm="http-auth@example.org", password="Circle of Life",
            method="GET", uri="/dir/index.html", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop="auth", nc="00000001", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")

    def test_challenge_and_answer_all_algorithms(self) -> None:
        now = [1000.0]
        for algorithm in ("SHA-512-256", "SHA-256", "MD5"):
            challenger = Challenger("sip.test", {"alice": "pw"}, lambda: now[0], algorithms=(algorithm,))
            responder = Responder({"sip.test": Credentials("alice", "pw")})
            [challenge] = challenger.challenges()
            answer = responder.authorization(challenge, "MESSAGE", "sip:bob@xmpp.test")
            self.assertEqual(challenger.check(answer, "MESSAGE"), (True, False, "alice"))
            self.assertEqual(challenger.check(answer, "PUBLISH")[0], False)
            wrong = Responder({"*": Credentials("alice", "nope")}).authorization(challenge, "MESSAGE", "sip:b@x")
            self.assertEqual(challenger.check(wrong, "MESSAGE")[0], False)
        now[0] += 1000
        self.assertEqual(challenger.check(answer, "MESSAGE"), (False, True, "alice"))


class _Zone(ResolverBase):
    """A twisted.names resolver answering from a dict (Twisted's own extension point)."""

    def __init__(self, records: dict) -> None:
        super().__init__()
        self.records = records

    def _lookup(self, name, cls, type, timeout):  # type: ignore[no-untyped-def]
        answers = [dns.RRHeader(name.decode() if isinstance(name, bytes) else name, type=t, payload=p)
                   for t, p in self.records.get((name.decode() if isinstance(name, bytes) else name), []) if t == type or type == dns.ALL_RECORDS]
        return succeed((answers, [], []))


class ResolverTests(TestCase):
    def test_rfc3263_naptr_srv_a(self) -> None:
        zone = _Zone({
            "example.com": [(dns.NAPTR, dns.Record_NAPTR(50, 50, b"s", b"SIP+D2T", b"", b"_sip._tcp.example.com")),
                            (dns.NAPTR, dns.Record_NAPTR(90, 50, b"s", b"SIP+D2U", b"", b"_sip._udp.example.com"))],
            "_sip._tcp.example.com": [(dns.SRV, dns.Record_SRV(0, 1, 5070, b"sip1.example.com"))],
            "_sip._udp.example.com": [(dns.SRV, dns.Record_SRV(0, 1, 5060, b"sip2.example.com"))],
            "sip1.example.com": [(dns.A, dns.Record_A("192.0.2.1"))],
            "sip2.example.com": [(dns.A, dns.Record_A("192.0.2.2"))],
        })
        resolver = SipResolver(dns_resolver=zone)
        targets = self.successResultOf(resolver.resolve("sip:alice@example.com"))
        self.assertEqual(targets, [Target("TCP", "192.0.2.1", 5070, "example.com"),
                                   Target("UDP", "192.0.2.2", 5060, "example.com")])

    def test_numeric_proxy_and_routes(self) -> None:
        resolver = SipResolver(use_dns=False, routes={"sip.test": Target("TCP", "127.0.0.1", 5070)})
        self.assertEqual(self.successResultOf(resolver.resolve("sip:a@127.0.0.1:5099;transport=tcp")),
                         [Target("TCP", "127.0.0.1", 5099)])
        self.assertEqual(self.successResultOf(resolver.resolve("sips:a@[::1]")), [Target("TLS", "::1", 5061)])
        self.assertEqual(self.successResultOf(resolver.resolve("sip:a@sip.test")), [Target("TCP", "127.0.0.1", 5070)])
        proxied = SipResolver(outbound_proxy=Target("UDP", "127.0.0.1", 5070))
        self.assertEqual(self.successResultOf(proxied.resolve("sip:a@anything.example")), [Target("UDP", "127.0.0.1", 5070)])


class CodecTests(TestCase):
    MESSAGE = (b"MESSAGE sip:romeo@xmpp.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
               b"From: <sip:juliet@sip.example;gr=balcony>;tag=1\r\nTo: <sip:romeo@xmpp.example>\r\n"
               b"Call-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Language: cs\r\n"
               b"Content-Length: 5\r\n\r\nAhoj!")

    def test_parse_and_translate_round_trip(self) -> None:
        codec = SipCodec()
        parsed = codec.parse(self.MESSAGE)
        self.assertEqual((parsed["method"], parsed["body"]), ("MESSAGE", {"text": "Ahoj!"}))
        op = codec.to_operation(self.MESSAGE)
        self.assertEqual((str(op.source), op.source_instance), ("im:juliet@sip.example", "balcony"))
        back = parse_message(codec.from_operation(op))
        self.assertEqual((back.method, back.uri, back.media_type), ("MESSAGE", "sip:romeo@xmpp.example", MEDIA_CPIM))
        self.assertEqual(cpim.parse_message(back.body).body, b"Ahoj!")
