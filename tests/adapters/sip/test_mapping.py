"""Tests for cpimgw.adapters.sip mapping, errors (RFC 7247 §7 tables), digest, resolver and codec."""

from __future__ import annotations

from twisted.internet.defer import succeed
from twisted.names import dns
from twisted.names.common import ResolverBase
from twisted.trial.unittest import TestCase

from cpimgw.cpim import message as cpim
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
            ("undefined-condition", False, 400), ("unexpected-request", False, 400),
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


class PresenceMappingTests(TestCase):
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
