"""Tests of cpimgw.adapters.xmpp.mapping as tables from RFC 3922 §3-5, RFC 7248 and RFC 7572 (digest §7-8)."""

from __future__ import annotations

import datetime
from decimal import Decimal

from twisted.trial import unittest
from twisted.words.protocols.jabber.jid import JID

from cpimgw.adapters.xmpp import mapping, rules
from cpimgw.adapters.xmpp.addresses import AddressMap
from cpimgw.cpim.errors import NotUnderstoodError
from cpimgw.cpim.message import build_message
from cpimgw.cpim.operations import MEDIA_CPIM, Content, Message
from cpimgw.cpim.pidf import Contact, Note, Status, Tuple, build_pidf, parse_pidf
from cpimgw.cpim.uri import parse_uri

ADDRESSES = AddressMap("gw.example.net", ("example.com", "example.net"))
NOW = datetime.datetime(2004, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def stanza(xml: str):
    return mapping.parse_fragment(xml.encode("utf-8"))


class MessageToCPIMTests(unittest.TestCase):
    def test_rfc3922_message_example(self):
        """RFC 3922 §4.1 example: Juliet to Romeo with two subjects."""
        operation = mapping.message_to_cpim(stanza(
            "<message from='juliet@example.com/balcony' to='romeo@example.net/orchard'>"
            "<subject>Hi!</subject><subject xml:lang='cz'>Ahoj!</subject>"
            "<body>Wherefore art thou, Romeo?</body></message>"), ADDRESSES, now=NOW)
        cpim = mapping.read_cpim(operation.content)
        rows = [
            (str(operation.source), "im:juliet@example.com"),
            (operation.source_instance, "balcony"),
            (str(operation.destination), "im:romeo@example.net"),
            (operation.destination_instance, "orchard"),
            (str(cpim.sender.uri), "im:juliet@example.com"),
            ([str(r.uri) for r in cpim.recipients], ["im:romeo@example.net"]),
            (cpim.subjects, ((None, "Hi!"), ("cz", "Ahoj!"))),
            (cpim.content_header("Content-Type"), "text/plain; charset=utf-8"),
            (cpim.body, b"Wherefore art thou, Romeo?"),
            # No XEP-0203 <delay/>: the message is live, there is no DateTime to give (RFC 3862 §4.4 optional).
            (cpim.date_time, None),
            (operation.content.media_type, MEDIA_CPIM),
        ]
        for got, expected in rows:
            self.assertEqual(got, expected)
        self.assertIn(b"Subject:;lang=cz Ahoj!\r\n", operation.content.body)

    def test_rfc7572_content_language(self):
        """RFC 7572 §4 example 3: xml:lang='cs' <-> Content-Language: cs."""
        operation = mapping.message_to_cpim(stanza(
            "<message from='juliet@example.com/yn0cl4bnw0yr3vym' to='romeo@example.net' xml:lang='cs'>"
            "<body>Ahoj!</body></message>"), ADDRESSES, now=NOW)
        cpim = mapping.read_cpim(operation.content)
        self.assertEqual(cpim.content_header("Content-Language"), "cs")
        self.assertEqual(operation.source_instance, "yn0cl4bnw0yr3vym")
        back = mapping.cpim_to_message(operation, ADDRESSES, carry_cpim=False)
        self.assertEqual(back[(mapping.NS_XML, "lang")], "cs")
        self.assertEqual(back["from"], "juliet@example.com/yn0cl4bnw0yr3vym")
        self.assertEqual(back["to"], "romeo@example.net")

    def test_foreign_recipient(self):
        operation = mapping.message_to_cpim(stanza(
            "<message from='juliet@example.com/b' to='o\\27malley\\40sip.example@gw.example.net'>"
            "<body>x</body></message>"), ADDRESSES, now=NOW)
        self.assertEqual(str(operation.destination), "im:o'malley@sip.example")

    def test_chat_state_only_is_iscomposing(self):
        operation = mapping.message_to_cpim(stanza(
            "<message from='juliet@example.com/b' to='romeo@example.net' type='chat'>"
            "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"), ADDRESSES)
        cpim = mapping.read_cpim(operation.content)
        self.assertEqual(cpim.content_header("Content-Type"), "application/im-iscomposing+xml; charset=utf-8")
        self.assertIn(b"<state>active</state>", cpim.body)
        back = mapping.cpim_to_message(operation, ADDRESSES, carry_cpim=False)
        self.assertEqual([c.name for c in back.elements()], ["composing"])

    def test_missing_from_is_bad_request(self):
        with self.assertRaises(mapping.StanzaError) as caught:
            mapping.message_to_cpim(stanza("<message to='romeo@example.net'><body>x</body></message>"), ADDRESSES)
        self.assertEqual(caught.exception.condition, "bad-request")

    def test_carried_cpim_used_only_from_its_sender(self):
        original = build_message(parse_uri("im:bob@sip.example"), [parse_uri("im:juliet@example.com")], b"signed")
        import base64

        carried = base64.b64encode(original.to_bytes()).decode()
        genuine = mapping.message_to_cpim(stanza(
            f"<message from='bob\\40sip.example@gw.example.net' to='juliet@example.com'><body>signed</body>"
            f"<cpim xmlns='urn:x-cpimgw:xmpp'>{carried}</cpim></message>"), ADDRESSES)
        self.assertEqual(genuine.content.body, original.to_bytes())
        forged = mapping.message_to_cpim(stanza(
            f"<message from='mallory@example.com/x' to='juliet@example.com'><body>signed</body>"
            f"<cpim xmlns='urn:x-cpimgw:xmpp'>{carried}</cpim></message>"), ADDRESSES)
        self.assertNotEqual(forged.content.body, original.to_bytes())
        self.assertEqual(str(mapping.read_cpim(forged.content).sender.uri), "im:mallory@example.com")


class CPIMToMessageTests(unittest.TestCase):
    def message(self, **kw):
        cpim = build_message(parse_uri("im:bob@sip.example"), [parse_uri("im:juliet@example.com")], **kw)
        return Message(parse_uri("im:bob@sip.example"), parse_uri("im:juliet@example.com"),
                       Content(MEDIA_CPIM, cpim.to_bytes()), origin="sip")

    def test_rfc3922_cpim_to_xmpp(self):
        """RFC 3922 §4.2: From/To stripped of im:, Subject with lang, Content-ID as id, body; cc in XEP-0033,
        DateTime in XEP-0203, Content-ID also in XEP-0131 SHIM."""
        operation = self.message(
            body="Wherefore?".encode(), subjects=[(None, "Hi!"), ("cz", "Ahoj!")],
            cc=[parse_uri("im:nurse@example.com")], date_time="2004-05-01T12:00:00Z",
            content_headers=[("Content-ID", "<123456789@example.net>")])
        element = mapping.cpim_to_message(operation, ADDRESSES, carry_cpim=False)
        rows = [
            (element["from"], "bob\\40sip.example@gw.example.net"),
            (element["to"], "juliet@example.com"),
            (element["id"], "123456789@example.net"),
            ([(s.getAttribute((mapping.NS_XML, "lang")), str(s)) for s in element.elements() if s.name == "subject"],
             [(None, "Hi!"), ("cz", "Ahoj!")]),
            (str(element.body), "Wherefore?"),
            (element.getAttribute("type"), None),
        ]
        for got, expected in rows:
            self.assertEqual(got, expected)
        [addresses] = list(element.elements(rules.NS_ADDRESS, "addresses"))
        self.assertEqual([(a["type"], a["uri"], a["delivered"]) for a in addresses.elements()],
                         [("to", "im:juliet@example.com", "true"), ("cc", "im:nurse@example.com", "true")])
        [delay] = list(element.elements(rules.NS_DELAY, "delay"))
        self.assertEqual(delay["stamp"], "2004-05-01T12:00:00Z")
        self.assertEqual(rules.read_shim(element), [("Content-ID", "<123456789@example.net>")])

    def test_carried_unmodified(self):
        operation = self.message(body=b"x")
        element = mapping.cpim_to_message(operation, ADDRESSES, carry_cpim=True)
        import base64

        [carried] = [c for c in element.elements() if c.uri == mapping.NS_XMPP]
        self.assertEqual(base64.b64decode(str(carried)), operation.content.body)

    def test_require_unknown_refused(self):
        operation = self.message(body=b"x", extensions=[("urn:example:f", "F", "Vital", "1", ())], require=["F.Vital"])
        self.assertRaises(NotUnderstoodError, mapping.cpim_to_message, operation, ADDRESSES)

    def test_other_text_in_body_with_its_type(self):
        # Text of another type is still text (RFC 6121 §5.2.3); its type rides in XEP-0131 SHIM.
        operation = self.message(body=b"<p>x</p>", content_type="text/html; charset=utf-8")
        element = mapping.cpim_to_message(operation, ADDRESSES, carry_cpim=True)
        self.assertEqual([c.name for c in element.elements()], ["body", "headers", "cpim"])
        self.assertEqual(str(element.body), "<p>x</p>")
        self.assertEqual(rules.read_shim(element), [("Content-Type", "text/html; charset=utf-8")])
        back = mapping.message_to_cpim(_swap(element), ADDRESSES)
        self.assertEqual(mapping.read_cpim(back.content).content_type, "text/html; charset=utf-8")

    def test_binary_has_no_place(self):
        operation = self.message(body=b"\xff\xfe", content_type="application/octet-stream")
        element = mapping.cpim_to_message(operation, ADDRESSES, carry_cpim=False)
        self.assertEqual(list(element.elements(mapping.NS_CLIENT, "body")), [])

    def test_latin1_not_mapped(self):
        operation = self.message(body="é".encode("latin-1"), content_type="text/plain; charset=iso-8859-1")
        self.assertRaises(Exception, mapping.cpim_to_message, operation, ADDRESSES)


class PresenceTests(unittest.TestCase):
    # RFC 3922 §5.1 / RFC 7248 §5 rows: (stanza, basic, show, notes, priority, tuple id)
    TABLE = [
        ("<presence from='juliet@example.com/balcony' to='romeo@example.net'/>",
         "open", None, [], Decimal("0"), "ID-balcony"),
        ("<presence from='juliet@example.com/balcony' to='romeo@example.net' type='unavailable'/>",
         "closed", None, [], Decimal("0"), "ID-balcony"),
        ("<presence from='juliet@example.com/balcony' to='romeo@example.net'><show>away</show>"
         "<status>retired to the chamber</status><priority>13</priority></presence>",
         "open", "away", [("retired to the chamber", None)], Decimal("0.102"), "ID-balcony"),
        ("<presence from='juliet@example.com/yn0cl4bnw0yr3vym' to='romeo@example.net'><show>dnd</show></presence>",
         "open", "dnd", [], Decimal("0"), "ID-yn0cl4bnw0yr3vym"),
        ("<presence from='juliet@example.com/b' to='romeo@example.net' xml:lang='en'><status>out</status>"
         "<status xml:lang='cs'>pryč</status><priority>127</priority></presence>",
         "open", None, [("out", "en"), ("pryč", "cs")], Decimal("1"), "ID-b"),
        ("<presence from='juliet@example.com/b' to='romeo@example.net'><priority>-1</priority></presence>",
         "open", None, [], None, "ID-b"),
    ]

    def test_xmpp_to_pidf(self):
        for xml, basic, show, notes, priority, tuple_id in self.TABLE:
            entity, resource, content = mapping.presence_to_pidf(stanza(xml), ADDRESSES, timestamp="2004-05-01T12:00:00Z")
            self.assertEqual(str(entity), "pres:juliet@example.com")
            document = parse_pidf(content.body)
            self.assertEqual(str(document.entity), "pres:juliet@example.com")
            [item] = document.tuples
            self.assertEqual(item.id, tuple_id)
            self.assertEqual(item.status.basic, basic)
            self.assertEqual(item.status.xmpp_show, show)
            self.assertEqual([(n.text, n.lang) for n in item.notes], notes)
            self.assertEqual(item.contact.uri, "im:juliet@example.com")
            self.assertEqual(item.contact.priority, priority)
            self.assertEqual(item.timestamp, "2004-05-01T12:00:00Z")

    def test_rfc7248_show_embedded(self):
        """RFC 7248 §5 example NOTIFY body: <show xmlns='jabber:client'>away</show> inside <status>."""
        _, _, content = mapping.presence_to_pidf(stanza(
            "<presence from='juliet@example.com/balcony' to='romeo@example.net'><show>away</show></presence>"), ADDRESSES)
        self.assertIn(b"<status><basic>open</basic><show xmlns=\"jabber:client\">away</show></status>", content.body)

    def test_pidf_to_xmpp(self):
        """RFC 3922 §5.2: one presence per tuple, from user@host/tuple, priority 0.102 -> 13."""
        document = build_pidf(parse_uri("pres:romeo@sip.example"), [
            Tuple("ID-orchard", Status("open", xmpp_show="chat"), Contact("im:romeo@sip.example", "0.102"),
                  [Note("in the orchard", "en")]),
            Tuple("ID-phone", Status("closed")),
            Tuple("t3", Status("open", im="busy")),
        ])
        presences = mapping.pidf_to_presences(document, parse_uri("pres:romeo@sip.example"),
                                              JID("juliet@example.com"), ADDRESSES)
        rows = [(p["from"], p.getAttribute("type"), str(p.show) if p.show else None,
                 str(p.priority) if p.priority else None) for p in presences]
        self.assertEqual(rows, [
            ("romeo\\40sip.example@gw.example.net/orchard", None, "chat", "13"),
            ("romeo\\40sip.example@gw.example.net/phone", "unavailable", None, None),
            ("romeo\\40sip.example@gw.example.net/t3", None, "dnd", None),
        ])
        self.assertEqual(str(presences[0].status), "in the orchard")

    def test_zero_tuple_pidf(self):
        document = build_pidf(parse_uri("pres:romeo@sip.example"))
        # Nothing is known of romeo (RFC 3863 §4.1): XMPP shows that as offline, from the bare JID.
        [offline] = mapping.pidf_to_presences(document, parse_uri("pres:romeo@sip.example"),
                                              JID("juliet@example.com"), ADDRESSES)
        self.assertEqual((offline["from"], offline["type"]), ("romeo\\40sip.example@gw.example.net", "unavailable"))
        document = build_pidf(parse_uri("pres:romeo@sip.example"), notes=[Note("gone fishing")])
        [only] = mapping.pidf_to_presences(document, parse_uri("pres:romeo@sip.example"),
                                           JID("juliet@example.com"), ADDRESSES)
        self.assertEqual((only["from"], str(only.status)), ("romeo\\40sip.example@gw.example.net", "gone fishing"))

    def test_bad_presence(self):
        for xml in ("<presence from='j@example.com/b' to='r@example.net'><show>sleepy</show></presence>",
                    "<presence from='j@example.com/b' to='r@example.net'><priority>200</priority></presence>"):
            self.assertRaises(mapping.StanzaError, mapping.presence_to_pidf, stanza(xml), ADDRESSES)


class ErrorReplyTests(unittest.TestCase):
    def test_error_reply(self):
        reply = mapping.error_reply(stanza("<message from='a@example.com/r' to='b@example.net' id='x1'/>"),
                                    "item-not-found", "cancel", "no such user")
        self.assertEqual((reply["from"], reply["to"], reply["id"], reply["type"]),
                         ("b@example.net", "a@example.com/r", "x1", "error"))
        self.assertEqual(mapping.stanza_error_condition(reply), ("item-not-found", "no such user"))


def _swap(element):
    """The stanza as it would come back: the same element, the carriage removed (a third party drops it)."""
    copy = mapping.parse_fragment(element.toXml())
    copy.children = [c for c in copy.children if getattr(c, "uri", None) != mapping.NS_XMPP]
    return copy
