"""Tests of the pure PRIM <-> CPIM mapping (digest §2.11, §2.12) and its status tables."""

from __future__ import annotations

import datetime

from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim import mapping
from cpimgw.adapters.prim.wire import PrimError, Request, Response, parse_command
from cpimgw.cpim.message import parse_message
from cpimgw.cpim.operations import (
    MEDIA_CPIM, Condition, Content, Message, Notify, Status, Subscribe, SubscriptionState, TerminationReason, failure,
    indeterminant,
    success,
)
from cpimgw.cpim.uri import im_uri, pres_uri

SEND = (
    b"SEND PRIM/1.0 12 5\r\n"
    b"From: im:alice@a.example\r\n"
    b"To: im:bob@b.example\r\n"
    b"Message-ID: 20010226095208.abc\r\n"
    b"Conversation-ID: conv-7\r\n"
    b"Date: Thu, 30 Mar 2000 09:59:34 -0500\r\n"
    b"Content-Type: text/plain; charset=UTF-8\r\n"
    b"\r\n"
    b"hello"
)


class SendMappingTests(TestCase):
    def test_send_to_message_wraps_in_cpim(self) -> None:
        """-01 §17.2: To/From/Date copied, Message-ID/Conversation-ID as PRIM.* headers, body unchanged."""
        message = mapping.send_to_message(parse_command(SEND), origin="prim", now=0)
        self.assertEqual((message.source, message.destination), (im_uri("alice", "a.example"), im_uri("bob", "b.example")))
        self.assertEqual(message.message_id, "20010226095208.abc")
        self.assertEqual(message.content.media_type, MEDIA_CPIM)
        self.assertEqual(message.content.body, (
            b"From: <im:alice@a.example>\r\n"
            b"To: <im:bob@b.example>\r\n"
            b"DateTime: 2000-03-30T09:59:34-05:00\r\n"
            b"NS: PRIM <http://www.fujitsulabs.com/prim/>\r\n"
            b"PRIM.Message-ID: 20010226095208.abc\r\n"
            b"PRIM.Conversation-ID: conv-7\r\n"
            b"\r\n"
            b"Content-Type: text/plain; charset=UTF-8\r\n"
            b"\r\n"
            b"hello"))
        parsed = parse_message(message.content.body)
        self.assertEqual(parsed.body, b"hello")
        self.assertEqual(parsed.header(mapping.PRIM_NS, "Conversation-ID").value, "conv-7")

    def test_cpim_body_carried_byte_for_byte(self) -> None:
        body = b"From: <im:alice@a.example>\r\nTo: <im:bob@b.example>\r\n\r\nContent-Type: text/plain\r\n\r\nhi"
        request = Request("SEND", "1", (("From", "im:alice@a.example"), ("To", "im:bob@b.example"),
                                        ("Message-ID", "m"), ("Content-Type", "message/cpim")), body)
        message = mapping.send_to_message(request, origin="prim", now=0)
        self.assertEqual(message.content, Content("message/cpim", body))

    def test_message_to_send_round_trip(self) -> None:
        message = mapping.send_to_message(parse_command(SEND), origin="prim", now=0)
        headers, body = mapping.message_to_send(message, now=0, astrength="weak")
        self.assertEqual(body, message.content.body)
        self.assertEqual(dict(headers), {
            "From": "im:alice@a.example", "To": "im:bob@b.example", "Message-ID": "20010226095208.abc",
            "Conversation-ID": "conv-7", "Date": "Thu, 30 Mar 2000 09:59:34 -0500", "AStrength": "weak",
            "X-Max-Forwards": "120", "Content-Type": "message/cpim"})

    def test_foreign_message_gets_ids(self) -> None:
        message = Message(im_uri("romeo", "x.example"), im_uri("bob", "b.example"),
                          Content("text/plain", b"hi"), trans_id="t" * 32, message_id="origin id/1")
        headers = dict(mapping.message_to_send(message, now=954428374)[0])
        self.assertEqual(headers["Message-ID"], "origin%20id/1")
        # No conversation known: the message is one of its own, and maps back to none.
        self.assertEqual(headers["Conversation-ID"], "origin%20id/1")
        self.assertEqual(headers["Date"], "Thu, 30 Mar 2000 14:59:34 +0000")
        self.assertNotIn(mapping.FROM_INSTANCE_HEADER, headers)
        back = mapping.send_to_message(Request("SEND", "1", tuple(mapping.message_to_send(message, now=0)[0]),
                                               b"x"), origin="prim", now=0)
        self.assertEqual((back.message_id, back.conversation_id), ("origin id/1", None))

    def test_conversation_and_instances_ride_in_headers(self) -> None:
        message = Message(im_uri("alice", "sip.example"), im_uri("bob", "b.example"),
                          Content("message/cpim", b"From: <im:alice@sip.example>\r\n\r\nContent-Type: text/plain\r\n\r\nx"),
                          message_id="m6", conversation_id="conv 5",
                          source_instance="urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", destination_instance="balcony")
        headers = mapping.message_to_send(message, now=0, max_forwards_header=False)[0]
        self.assertEqual([h for h in headers if h[0] not in ("From", "To", "Date", "Content-Type")], [
            ("Message-ID", "m6"), ("Conversation-ID", "conv%205"),
            ("X-From-Instance", "urn%3Auuid%3Af81d4fae-7dec-11d0-a765-00a0c91e6bf6"), ("X-To-Instance", "balcony")])
        back = mapping.send_to_message(Request("SEND", "1", tuple(headers), message.content.body), origin="prim", now=0)
        self.assertEqual((back.message_id, back.conversation_id, back.source_instance, back.destination_instance),
                         ("m6", "conv 5", "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "balcony"))

    def test_unescape_token_only_inverts_the_canonical_escape(self) -> None:
        # "@" is written as it is (a local@domain Message-ID comes back verbatim): "a%40b" is not canonical.
        for wire_form, value in (("m6", "m6"), ("a@b%3B1", "a@b;1"), ("a%40b%3B1", "a%40b%3B1"), ("a%3bb", "a%3bb"),
                                 ("50%", "50%"), ("%FF", "%FF"), ("caf%C3%A9", "caf\u00e9")):
            self.assertEqual(mapping.unescape_token(wire_form), value, wire_form)

    def test_message_id_with_an_at_sign_is_not_escaped(self) -> None:
        message = Message(im_uri("a", "prim.example"), im_uri("b", "xmpp.example"),
                          Content("text/plain", b"x"), message_id="20101113.77@prim.localhost")
        headers = dict(mapping.message_to_send(message, now=0)[0])
        self.assertEqual(headers["Message-ID"], "20101113.77@prim.localhost")

    def test_garbled_message_id_form(self) -> None:
        request = Request("SEND", "1", (("Message-IDab12", "im:alice@a.example"),))
        self.assertEqual(mapping.message_id_of(request), "ab12")

    def test_missing_to(self) -> None:
        request = Request("SEND", "1", (("From", "im:alice@a.example"), ("Content-Type", "text/plain")), b"x")
        self.assertRaises(PrimError, mapping.send_to_message, request, origin="prim", now=0)

    def test_address_without_scheme(self) -> None:
        self.assertEqual(mapping.prim_address("Joe@Example.NET", "pres", "From"), pres_uri("Joe", "Example.NET"))
        self.assertEqual(mapping.prim_address("pres:joe@example.net", "im", "To"), im_uri("joe", "example.net"))

    def test_dates(self) -> None:
        when = mapping.parse_date("thu, 30 MAR 2000 09:59:34 -0500")
        self.assertEqual(when, datetime.datetime(2000, 3, 30, 14, 59, 34, tzinfo=datetime.timezone.utc))
        self.assertRaises(PrimError, mapping.parse_date, "yesterday")


class PresenceMappingTests(TestCase):
    def test_subscription_state_header_table(self) -> None:
        # (state, reason) -> X-Subscription-State; None where Duration says it (digest §2.12).
        table = [
            ((SubscriptionState.ACTIVE, None), None),
            ((SubscriptionState.PENDING, None), "pending"),
            ((SubscriptionState.TERMINATED, TerminationReason.DEACTIVATED), None),
            ((SubscriptionState.TERMINATED, TerminationReason.TIMEOUT), "terminated;reason=timeout"),
            ((SubscriptionState.TERMINATED, TerminationReason.REJECTED), "terminated;reason=rejected"),
            ((SubscriptionState.TERMINATED, None), "terminated"),
        ]
        for (state, reason), text in table:
            self.assertEqual(mapping.format_subscription_state(state, reason), text, (state, reason))
            if text is not None:
                self.assertEqual(mapping.parse_subscription_state(text), (state, reason))
        self.assertEqual(mapping.parse_subscription_state("weird;reason=timeout"), (SubscriptionState.PENDING, None))

    def test_notify_state_round_trip(self) -> None:
        for state, reason, expires in ((SubscriptionState.PENDING, None, 120),
                                       (SubscriptionState.TERMINATED, TerminationReason.TIMEOUT, None),
                                       (SubscriptionState.TERMINATED, TerminationReason.DEACTIVATED, None),
                                       (SubscriptionState.ACTIVE, None, 300)):
            op = Notify(pres_uri("bob", "b.example"), pres_uri("alice", "a.example"), None, subscript_id="s1",
                        state=state, reason=reason, expires=expires)
            headers, body = mapping.notify_to_request(op, now=0)
            back = mapping.notify_from_request(Request("NOTIFY", "1", tuple(headers), body), origin="prim")
            self.assertEqual((back.state, back.reason), (state, reason))
            if state is not SubscriptionState.TERMINATED:
                self.assertEqual(back.expires, expires)

    def test_subscribe_round_trip(self) -> None:
        op = Subscribe(pres_uri("alice", "a.example"), pres_uri("bob", "b.example"), 600, subscript_id="s1")
        method, headers = mapping.subscribe_to_request(op, now=0)
        request = Request(method, "3", tuple(headers))
        back = mapping.subscribe_from_request(request, origin="prim")
        self.assertEqual((back.watcher, back.target, back.duration, back.subscript_id), (op.watcher, op.target, 600, "s1"))

    def test_unsubscribe_and_fetch(self) -> None:
        base = (("From", "pres:alice@a.example"), ("To", "pres:bob@b.example"))
        cancel = mapping.subscribe_from_request(Request("UNSUBSCRIBE", "1", base), origin="p", known_id="s1")
        self.assertEqual((cancel.duration, cancel.subscript_id), (0, "s1"))
        fetch = mapping.subscribe_from_request(Request("FETCH", "2", base), origin="p")
        self.assertEqual(fetch.duration, 0)
        self.assertNotEqual(fetch.subscript_id, "s1")

    def test_subscribe_codes(self) -> None:
        op = Subscribe(pres_uri("a", "a.example"), pres_uri("b", "b.example"), 86400)
        self.assertEqual(mapping.subscribe_code(op, success(op, duration=3600)), 201)
        self.assertEqual(mapping.subscribe_code(op, success(op, duration=86400)), 200)
        self.assertEqual(mapping.subscribe_code(op, failure(op, Condition.BUSY, "x")), 505)
        self.assertEqual(mapping.subscribe_code(op, failure(op, Condition.FORBIDDEN, "x")), 402)

    def test_notify_round_trip(self) -> None:
        pidf = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:bob@b.example"/>'
        op = Notify(pres_uri("alice", "a.example"), pres_uri("bob", "b.example"),
                    Content("application/pidf+xml", pidf), subscript_id="s1", expires=300)
        headers, body = mapping.notify_to_request(op, now=0)
        back = mapping.notify_from_request(Request("NOTIFY", "4", tuple(headers), body), origin="prim")
        self.assertEqual((back.watcher, back.target, back.presence, back.subscript_id, back.expires),
                         (op.watcher, op.target, op.presence, "s1", 300))
        self.assertIs(back.state, SubscriptionState.ACTIVE)

    def test_notify_duration_zero_terminates(self) -> None:
        request = Request("NOTIFY", "5", (("From", "pres:bob@b.example"), ("To", "pres:alice@a.example"),
                                          ("Subscription-ID", "s1"), ("Duration", "0")))
        self.assertIs(mapping.notify_from_request(request, origin="p").state, SubscriptionState.TERMINATED)

    def test_presence_in_cpim_unwrapped(self) -> None:
        pidf = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:bob@b.example"/>'
        body = (b"From: <im:bob@b.example>\r\nTo: <im:alice@a.example>\r\n\r\n"
                b"Content-Type: application/cpim-pidf+xml\r\n\r\n" + pidf)
        self.assertEqual(mapping.presence_content("message/cpim", body), Content("application/pidf+xml", pidf))


class StatusTableTests(TestCase):
    """digest §2.12, row by row."""

    ROWS = [
        # PRIM, CPIM status, condition, SIP, XMPP
        (200, Status.SUCCESS, None, 200, None),
        (201, Status.SUCCESS, None, 200, None),
        (101, Status.INDETERMINANT, None, 202, None),
        (300, Status.FAILURE, Condition.NO_ROUTE, 302, "redirect"),
        (400, Status.FAILURE, Condition.BAD_REQUEST, 400, "bad-request"),
        (401, Status.FAILURE, Condition.NOT_AUTHORIZED, 401, "not-authorized"),
        (402, Status.FAILURE, Condition.FORBIDDEN, 403, "forbidden"),
        (403, Status.FAILURE, Condition.NOT_FOUND, 404, "item-not-found"),
        (404, Status.FAILURE, Condition.NO_SUBSCRIPTION, 481, "item-not-found"),
        (406, Status.FAILURE, Condition.NOT_AUTHORIZED, 403, "not-authorized"),
        (407, Status.FAILURE, Condition.TIMEOUT, 408, "remote-server-timeout"),
        (408, Status.FAILURE, Condition.UNAVAILABLE, 480, "recipient-unavailable"),
        (410, Status.FAILURE, Condition.FORBIDDEN, 403, "policy-violation"),
        (500, Status.FAILURE, Condition.INTERNAL, 500, "internal-server-error"),
        (501, Status.FAILURE, Condition.UNSUPPORTED, 501, "feature-not-implemented"),
        (502, Status.FAILURE, Condition.NO_ROUTE, 502, "remote-server-not-found"),
        (503, Status.FAILURE, Condition.NOT_ACCEPTABLE, 505, "not-acceptable"),
        (504, Status.FAILURE, Condition.TIMEOUT, 504, "remote-server-timeout"),
        (505, Status.FAILURE, Condition.BUSY, 503, "resource-constraint"),
    ]

    def test_rows(self) -> None:
        for code, status, condition, sip, xmpp in self.ROWS:
            self.assertEqual(mapping.cpim_status(code), (status, condition), code)
            self.assertEqual(mapping.PRIM_TO_SIP[code], sip, code)
            self.assertEqual(mapping.PRIM_TO_XMPP[code], xmpp, code)

    def test_unlisted_codes_by_class(self) -> None:
        self.assertEqual(mapping.cpim_status(299), (Status.SUCCESS, None))
        self.assertEqual(mapping.cpim_status(499), (Status.FAILURE, Condition.BAD_REQUEST))
        self.assertEqual(mapping.cpim_status(599), (Status.FAILURE, Condition.INTERNAL))

    def test_conditions_back_to_prim(self) -> None:
        op = Message(im_uri("a", "a.example"), im_uri("b", "b.example"), Content("text/plain", b""))
        expected = {
            Condition.BAD_REQUEST: 400, Condition.FORBIDDEN: 402, Condition.NOT_FOUND: 403,
            Condition.NO_SUBSCRIPTION: 404, Condition.UNAVAILABLE: 408, Condition.UNSUPPORTED: 501,
            Condition.NO_ROUTE: 502, Condition.TIMEOUT: 504, Condition.INTERNAL: 500, Condition.BUSY: 500,
        }
        for condition, code in expected.items():
            self.assertEqual(mapping.prim_code(failure(op, condition, "x"), "SEND"), code, condition)
        self.assertEqual(set(mapping.CONDITION_TO_PRIM), set(Condition))
        self.assertEqual(mapping.prim_code(success(op)), 200)
        self.assertEqual(mapping.prim_code(indeterminant(op), "SEND"), 101)

    def test_cpim_response(self) -> None:
        response = mapping.cpim_response("t1", Response("9", 201, "Duration Adjusted", (("Duration", "3600"),)))
        self.assertEqual((response.status, response.duration, response.native_code), (Status.SUCCESS, 3600, 201))


class WrapTests(TestCase):
    """The fast Message/CPIM wrapper writes exactly what cpimgw.cpim.message.build_message writes."""

    def test_same_octets_as_build_message(self) -> None:
        from cpimgw.cpim.message import build_message

        when = datetime.datetime(2000, 3, 30, 9, 59, 34, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
        cases = [
            ("text/plain; charset=UTF-8", "20010226095208.abc", "conv-7", None),
            ("application/octet-stream", "m%20x", None, "im:alice@a.example"),
            ("text/plain", None, None, None),
        ]
        for content_type, message_id, conversation_id, reply_to in cases:
            fast = mapping.wrap_cpim(im_uri("alice", "a.example"), im_uri("bob", "b.example"), content_type, b"body\r\n",
                                     date_time=when, message_id=message_id, conversation_id=conversation_id,
                                     reply_to=reply_to)
            extensions = [(mapping.PRIM_NS, "PRIM", n, v, ()) for n, v in
                          (("Message-ID", message_id), ("Conversation-ID", conversation_id), ("Reply-To", reply_to)) if v]
            full = build_message(im_uri("alice", "a.example"), [im_uri("bob", "b.example")], b"body\r\n", content_type,
                                 date_time=when, extensions=extensions).to_bytes()
            self.assertEqual(fast, full, content_type)

    def test_odd_values_take_the_full_builder(self) -> None:
        data = mapping.wrap_cpim(im_uri("alice", "a.example"), im_uri("bob", "b.example"), "text/plain", b"x",
                                 date_time=None, message_id='odd "id" <x>', conversation_id=None)
        self.assertEqual(parse_message(data).header(mapping.PRIM_NS, "Message-ID").value, 'odd "id" <x>')
