"""Tests for the SIP adapter's 415 fallback to the native form (RFC 3261 §8.1.3.5/§21.4.16, RFC 3428 §7).

Outgoing MESSAGEs in the default ``message_mode = "cpim"`` carry message/cpim;
a UAS that answers 415 with an Accept without message/cpim gets one retry
with the inner text/plain (or text/html), and is remembered.  Driven over
TCP StringTransports on the bus's MemoryReactorClock.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from cpimgw.cpim import message as cpim
from cpimgw.cpim.interworking import CONDITION_TO_PRIM
from cpimgw.cpim.operations import MEDIA_CPIM, Condition, Content, Message, Status
from cpimgw.cpim.uri import im_uri
from cpimgw.adapters.sip import mapping
from cpimgw.adapters.sip.adapter import NativePreferences
from cpimgw.adapters.sip.wire import Response, StreamFramer, parse_message
from tests.adapters.sip.test_adapter import AdapterFixture

JULIET = im_uri("juliet", "xmpp.test")
ROMEO = im_uri("romeo", "sip.test")
SIGNED_TYPE = 'multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary=b1'
SIGNED_BODY = (
    b"--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    b"--b1\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n--b1--\r\n"
)


def cpim_message(body: bytes = b"hi", content_type: str = "text/plain; charset=utf-8") -> Message:
    wrapped = cpim.build_message(JULIET, [ROMEO], body, content_type).to_bytes()
    return Message(JULIET, ROMEO, Content(MEDIA_CPIM, wrapped))


class OutboundFixture(AdapterFixture):
    """The adapter fixture plus the far end of the gateway's outbound connection."""

    def setUp(self) -> None:
        super().setUp()
        self.connection = None

    def deliver(self, op: Message) -> list:
        results: list = []
        self.adapter.deliver(op).addCallback(results.append)
        return results

    def sent(self) -> list:
        """The requests the gateway has written to 127.0.0.1:5080 since the last call."""
        if self.connection is None:
            self.connection = self.outbound()
        _, transport = self.connection
        data = transport.value()
        transport.clear()
        return [parse_message(m) for m in StreamFramer().feed(data)]

    def answer(self, request, code: int, reason: str, *extra: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
        protocol, _ = self.connection
        headers = tuple((n, v) for n, v in request.headers if n in ("Via", "From", "To", "Call-ID", "CSeq"))
        protocol.dataReceived(Response(code, reason, headers + extra).to_bytes())


class NativeFallbackTests(OutboundFixture, TestCase):

    def test_415_accept_text_plain_retries_native_then_200_success(self) -> None:
        results = self.deliver(cpim_message())
        [first] = self.sent()
        self.assertEqual(first.media_type, MEDIA_CPIM)
        self.answer(first, 415, "Unsupported Media Type", ("Accept", "text/plain"))
        self.assertEqual(results, [])
        [retry] = self.sent()
        self.assertEqual(retry.method, "MESSAGE")
        self.assertEqual(retry.media_type, "text/plain")
        self.assertEqual(retry.body, b"hi")
        self.assertEqual(retry.call_id, first.call_id)
        self.assertEqual(retry.cseq, (first.cseq[0] + 1, "MESSAGE"))
        self.assertNotEqual(retry.top_via.branch, first.top_via.branch)  # a new transaction
        self.answer(retry, 200, "OK")
        self.assertEqual((results[0].status, results[0].native_code), (Status.SUCCESS, 200))
        self.assertEqual(self.adapter.stack.counters["message_native_fallback"], 1)

    def test_inner_text_html_is_retried_when_accepted_by_wildcard(self) -> None:
        results = self.deliver(cpim_message(b"<p>hi</p>", "text/html"))
        [first] = self.sent()
        self.answer(first, 415, "Unsupported Media Type", ("Accept", "application/im-iscomposing+xml, text/*"))
        [retry] = self.sent()
        self.assertEqual((retry.media_type, retry.body), ("text/html", b"<p>hi</p>"))
        self.answer(retry, 202, "Accepted")
        self.assertEqual(results[0].status, Status.INDETERMINANT)

    def test_415_accept_message_cpim_is_not_retried(self) -> None:
        results = self.deliver(cpim_message())
        [first] = self.sent()
        self.answer(first, 415, "Unsupported Media Type", ("Accept", "text/plain, message/cpim"))
        self.assertEqual(self.sent(), [])
        self.assertEqual((results[0].status, results[0].condition, results[0].native_code),
                         (Status.FAILURE, Condition.UNSUPPORTED_MEDIA, 415))
        self.assertIn("accepts text/plain, message/cpim", results[0].reason)
        self.assertNotIn("message_native_fallback", self.adapter.stack.counters)

    def test_415_accept_message_wildcard_is_not_retried(self) -> None:
        results = self.deliver(cpim_message())
        [first] = self.sent()
        self.answer(first, 415, "Unsupported Media Type", ("Accept", "message/*"))
        self.assertEqual(self.sent(), [])
        self.assertEqual(results[0].condition, Condition.UNSUPPORTED_MEDIA)

    def test_signed_content_is_not_retried(self) -> None:
        results = self.deliver(Message(JULIET, ROMEO, Content(SIGNED_TYPE, SIGNED_BODY)))
        [first] = self.sent()
        self.assertEqual(first.media_type, "multipart/signed")
        self.answer(first, 415, "Unsupported Media Type", ("Accept", "text/plain"))
        self.assertEqual(self.sent(), [])
        self.assertEqual((results[0].status, results[0].condition), (Status.FAILURE, Condition.UNSUPPORTED_MEDIA))
        self.assertEqual(results[0].reason, "Unsupported Media Type: the recipient accepts text/plain; "
                                            "the content is multipart/signed, which has no other form")

    def test_cpim_wrapping_a_signed_body_is_not_retried(self) -> None:
        results = self.deliver(cpim_message(SIGNED_BODY, SIGNED_TYPE))
        [first] = self.sent()
        self.answer(first, 415, "Unsupported Media Type", ("Accept", "text/plain, text/html"))
        self.assertEqual(self.sent(), [])
        self.assertEqual(results[0].condition, Condition.UNSUPPORTED_MEDIA)
        self.assertIn("accepts text/plain, text/html", results[0].reason)
        self.assertIn("signed (multipart/signed)", results[0].reason)
        self.assertEqual(len(self.adapter.native_targets), 0)

    def test_inner_type_not_accepted_is_not_retried(self) -> None:
        results = self.deliver(cpim_message(b"<p>hi</p>", "text/html"))
        [first] = self.sent()
        self.answer(first, 415, "Unsupported Media Type", ("Accept", "text/plain"))
        self.assertEqual(self.sent(), [])
        self.assertEqual(results[0].reason, "Unsupported Media Type: the recipient accepts text/plain; "
                                            "its native form is text/html")

    def test_second_415_is_final(self) -> None:
        results = self.deliver(cpim_message())
        [first] = self.sent()
        self.answer(first, 415, "Unsupported Media Type", ("Accept", "text/plain"))
        [retry] = self.sent()
        self.answer(retry, 415, "Unsupported Media Type", ("Accept", "text/plain"))
        self.assertEqual(self.sent(), [])
        self.assertEqual((results[0].condition, results[0].native_code), (Condition.UNSUPPORTED_MEDIA, 415))
        self.assertIn("the retry in the other form was refused too", results[0].reason)

    def test_remembered_target_gets_native_directly(self) -> None:
        results = self.deliver(cpim_message(b"one"))
        [first] = self.sent()
        self.answer(first, 415, "Unsupported Media Type", ("Accept", "text/plain"))
        [retry] = self.sent()
        self.answer(retry, 200, "OK")
        later = self.deliver(cpim_message(b"two"))
        [direct] = self.sent()
        self.assertEqual((direct.media_type, direct.body), ("text/plain", b"two"))
        self.answer(direct, 200, "OK")
        self.assertEqual([r.status for r in results + later], [Status.SUCCESS, Status.SUCCESS])
        self.assertEqual(self.adapter.stack.counters["message_native_fallback"], 1)
        self.assertEqual(self.adapter.stack.counters["message_native_direct"], 1)
        # after the TTL the default form is tried again
        self.reactor.advance(self.adapter.native_targets.ttl + 1)
        self.deliver(cpim_message(b"three"))
        [again] = self.sent()
        self.assertEqual(again.media_type, MEDIA_CPIM)

    def test_remembered_target_that_now_wants_cpim_gets_it_and_is_forgotten(self) -> None:
        self.adapter.native_targets.remember("sip:romeo@sip.test")
        results = self.deliver(cpim_message())
        [direct] = self.sent()
        self.assertEqual(direct.media_type, "text/plain")
        self.answer(direct, 415, "Unsupported Media Type", ("Accept", "message/cpim"))
        [retry] = self.sent()
        self.assertEqual(retry.media_type, MEDIA_CPIM)
        self.assertEqual(retry.cseq[0], direct.cseq[0] + 1)
        self.answer(retry, 200, "OK")
        self.assertEqual(results[0].status, Status.SUCCESS)
        self.assertFalse(self.adapter.native_targets.wants_native("sip:romeo@sip.test"))

    def test_unsupported_media_reaches_prim_as_400(self) -> None:
        # PRIM has no 415 (digest §2.12); 400 with the reason is the closest answer.
        self.assertEqual(CONDITION_TO_PRIM[Condition.UNSUPPORTED_MEDIA], 400)


class NativeModeTests(OutboundFixture, TestCase):
    """With ``message_mode = "native"`` nothing is retried: the native form was already sent."""

    settings = {"message_mode": "native"}

    def test_415_in_native_mode_is_final(self) -> None:
        results = self.deliver(cpim_message())
        [first] = self.sent()
        self.assertEqual(first.media_type, "text/plain")
        self.answer(first, 415, "Unsupported Media Type", ("Accept", "text/html"))
        self.assertEqual(self.sent(), [])
        self.assertEqual(results[0].condition, Condition.UNSUPPORTED_MEDIA)


class AcceptTests(TestCase):
    def test_accepted_media_lowercases_and_drops_parameters(self) -> None:
        response = Response(415, "Unsupported Media Type",
                            (("Accept", "Text/Plain;q=0.5, text/html"), ("Accept", "bogus, text/plain")))
        self.assertEqual(mapping.accepted_media(response), ("text/plain", "text/html"))
        self.assertEqual(mapping.accepted_media(Response(415, "X")), ())

    def test_media_accepted_wildcards(self) -> None:
        self.assertTrue(mapping.media_accepted("text/plain; charset=utf-8", ("text/*",)))
        self.assertTrue(mapping.media_accepted("message/cpim", ("*/*",)))
        self.assertFalse(mapping.media_accepted("message/cpim", ("text/*", "message/sipfrag")))

    def test_native_acceptable(self) -> None:
        self.assertTrue(mapping.native_acceptable("text/plain", ()))  # no Accept: text/plain only
        self.assertFalse(mapping.native_acceptable("text/html", ()))
        self.assertFalse(mapping.native_acceptable("multipart/signed; boundary=x", ("*/*",)))


class NativePreferencesTests(TestCase):
    def test_lru_bound_and_ttl(self) -> None:
        now = [0.0]
        prefs = NativePreferences(lambda: now[0], max_entries=2, ttl=10)
        prefs.remember("sip:a@x")
        prefs.remember("sip:b@x")
        self.assertTrue(prefs.wants_native("sip:a@x"))  # a is now the most recent
        prefs.remember("sip:c@x")  # evicts b
        self.assertEqual([prefs.wants_native(t) for t in ("sip:a@x", "sip:b@x", "sip:c@x")], [True, False, True])
        now[0] = 10.0
        self.assertFalse(prefs.wants_native("sip:a@x"))
        self.assertEqual(len(prefs), 1)
        self.assertRaises(ValueError, NativePreferences, lambda: 0.0, max_entries=0)
