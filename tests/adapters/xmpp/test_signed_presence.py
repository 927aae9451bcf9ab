"""Tests of signed presence over XMPP: RFC 3923 §5 ``<e2e/>`` in ``<presence/>`` both ways.

Every signed document is a real S/MIME signature (``multipart/signed`` over
an ``application/pidf+xml`` entity, :class:`tests.e2e.smime.Signer`) and is
verified again at the receiving end with
:func:`tests.adapters.xmpp.test_e2e.verify_detached`.

- XMPP -> bus: the sender's signed PIDF becomes the published document,
  octet for octet (CRLF restored after XML made the line ends LF);
  a document signed for someone else, or an ``<e2e/>`` that is not a signed
  PIDF, is refused with ``bad-request`` and nothing is published.
- bus -> XMPP: a Notify whose content is a signed PIDF gives the presences
  of the PIDF it signs (show/status) each holding ``<e2e/>`` with the
  signed entity unchanged.
"""

from __future__ import annotations

from twisted.trial import unittest

from cpimgw.adapters.xmpp import e2e, mapping
from cpimgw.adapters.xmpp.addresses import AddressMap
from cpimgw.cpim.errors import PresenceDocumentError
from cpimgw.cpim.operations import Content, Notify, Status, Subscribe
from cpimgw.cpim.pidf import parse_pidf
from cpimgw.cpim.uri import parse_uri
from tests.adapters.xmpp.test_adapter import AdapterHarness
from tests.adapters.xmpp.test_e2e import escape, verify_detached
from tests.e2e.smime import CRLF, Signer, pidf_entity

JULIET = "pres:juliet@xmpp.example"
BOB = "pres:bob@sip.example"
TO = "bob\\40sip.example@gw.xmpp.example"


def signed_content(signer: Signer, entity: bytes) -> tuple[str, bytes, Content]:
    content_type, body = signer.sign(entity)
    media, params = e2e.split_content_type(content_type)
    return content_type, body, Content(media, body, params)


class MappingTests(unittest.TestCase):
    """The pure functions: :func:`mapping.signed_presence` and :func:`mapping.notify_document`."""

    addresses = AddressMap("gw.xmpp.example", ["xmpp.example"])

    def setUp(self) -> None:
        self.signer = Signer.create("im:juliet@xmpp.example")
        self.entity = pidf_entity(JULIET, "open", "signed juliet")
        self.content_type, self.body, self.content = signed_content(self.signer, self.entity)
        self.mime = b"Content-Type: " + self.content_type.encode() + CRLF + CRLF + self.body

    def presence(self, text: str) -> object:
        return mapping.parse_fragment(f"<presence from='juliet@xmpp.example/balcony' to='{TO}'><show>dnd</show>"
                                      f"<e2e xmlns='{e2e.NS_E2E}'>{text}</e2e></presence>")

    def test_signed_presence_lf_restored(self) -> None:
        # As a server delivers it: XML turned every CRLF into LF.
        stanza = self.presence(escape(self.mime.decode("ascii").replace("\r\n", "\n")))
        content = mapping.signed_presence(stanza, parse_uri(JULIET))
        self.assertEqual(content.media_type, "multipart/signed")
        self.assertEqual(content.body, self.body)
        self.assertEqual(verify_detached(content.content_type, content.body, self.signer), self.entity)

    def test_no_e2e(self) -> None:
        stanza = mapping.parse_fragment(f"<presence from='juliet@xmpp.example/b' to='{TO}'/>")
        self.assertIsNone(mapping.signed_presence(stanza, parse_uri(JULIET)))

    def test_e2e_not_an_extension_of_the_mapped_pidf(self) -> None:
        stanza = self.presence(escape(self.mime.decode("ascii")))
        _, resource, content = mapping.presence_to_pidf(stanza, self.addresses)
        [item] = parse_pidf(content.body).tuples
        self.assertEqual((resource, item.status.xmpp_show, item.extensions), ("balcony", "dnd", ()))

    def test_refused(self) -> None:
        other = pidf_entity("pres:romeo@xmpp.example", "open", "not juliet")
        other_type, other_body = self.signer.sign(other)
        cases = {
            "signed for someone else": b"Content-Type: " + other_type.encode() + CRLF + CRLF + other_body,
            "not signed": b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data" + CRLF
                          + b"Content-Transfer-Encoding: base64" + CRLF + CRLF + b"AAEC" + CRLF,
            "no header block": b"just text",
            "signed message, not PIDF": b"Content-Type: " + self.content_type.encode() + CRLF + CRLF
                                        + self.body.replace(b"application/pidf+xml", b"text/plain"),
        }
        for what, mime in cases.items():
            with self.assertRaises(mapping.StanzaError, msg=what) as caught:
                mapping.signed_presence(self.presence(escape(mime.decode("ascii"))), parse_uri(JULIET))
            self.assertEqual(caught.exception.condition, "bad-request", what)
            self.assertIn("RFC 3923", caught.exception.reason, what)

    def test_notify_document(self) -> None:
        document, element = mapping.notify_document(self.content, parse_uri(JULIET))
        self.assertEqual([(t.id, t.status.basic) for t in document.tuples], [("signed", "open")])
        text = e2e.e2e_text(e2e.find_e2e(mapping.parse_fragment(
            f"<presence>{element.toXml()}</presence>")))
        self.assertEqual(text.encode("ascii"), self.mime)  # &#13; kept every CR
        self.assertRaises(PresenceDocumentError, mapping.notify_document, self.content, parse_uri(BOB))


class AdapterSignedPresenceTests(AdapterHarness, unittest.TestCase):
    """Both directions through the adapter on a component stream (StringTransport)."""

    def setUp(self) -> None:
        super().setUp()
        self.juliet = Signer.create("im:juliet@xmpp.example")
        self.bob = Signer.create("im:bob@sip.example")

    def test_inbound_signed_presence_published_unchanged(self) -> None:
        entity = pidf_entity(JULIET, "open", "signed juliet")
        content_type, body, _ = signed_content(self.juliet, entity)
        mime = (b"Content-Type: " + content_type.encode() + CRLF + CRLF + body).decode("ascii")
        self.feed(f"<presence from='juliet@xmpp.example/balcony' to='{TO}'><show>away</show>"
                  f"<e2e xmlns='{e2e.NS_E2E}'>{escape(mime)}</e2e></presence>")
        self.assertEqual(self.sent(), [])  # nothing refused
        documents = self.successResultOf(self.bus.store.get_presence(parse_uri(JULIET)))
        self.assertEqual(list(documents), ["balcony"])
        published = documents["balcony"]
        self.assertEqual((published.media_type, published.body), ("multipart/signed", body))
        self.assertEqual(verify_detached(published.content_type, published.body, self.juliet), entity)
        self.assertEqual(self.adapter.counters.get("presence-signed-in"), 1)

    def test_inbound_forged_signed_presence_refused(self) -> None:
        entity = pidf_entity("pres:romeo@xmpp.example", "open", "for romeo")
        content_type, body, _ = signed_content(self.juliet, entity)
        mime = (b"Content-Type: " + content_type.encode() + CRLF + CRLF + body).decode("ascii")
        self.feed(f"<presence from='juliet@xmpp.example/balcony' to='{TO}' id='p1'>"
                  f"<e2e xmlns='{e2e.NS_E2E}'>{escape(mime)}</e2e></presence>")
        [error] = self.sent()
        self.assertEqual((error["type"], error["id"]), ("error", "p1"))
        self.assertEqual(self.successResultOf(self.bus.store.get_presence(parse_uri(JULIET))), {})
        self.assertEqual(self.adapter.counters.get("presence-refused"), 1)

    def test_outbound_signed_notify(self) -> None:
        # juliet (XMPP) watches bob (SIP); bob's document is signed.
        self.feed(f"<presence from='juliet@xmpp.example/b' to='{TO}' type='subscribe' id='s1'/>")
        self.reactor.advance(0)
        [subscribe] = self.sip.of_type(Subscribe)
        self.sent()
        entity = pidf_entity(BOB, "open", "signed bob")
        content_type, body, content = signed_content(self.bob, entity)
        response = self.successResultOf(self.sip.inject(Notify(
            subscribe.watcher, subscribe.target, content, subscript_id=subscribe.subscript_id)))
        self.assertIs(response.status, Status.SUCCESS, response)
        [presence] = [s for s in self.sent() if s.name == "presence" and s.getAttribute("type") is None]
        self.assertEqual((presence["from"], presence["to"]), (TO + "/signed", "juliet@xmpp.example"))
        self.assertEqual(str(presence.status), "signed bob")
        self.assertEqual([child.name for child in presence.elements()], ["status", "e2e"])
        text = e2e.e2e_text(e2e.find_e2e(presence))
        head, _, received = text.encode("ascii").partition(CRLF + CRLF)
        self.assertEqual(head.decode(), "Content-Type: " + content_type)
        self.assertEqual(received, body)
        self.assertEqual(verify_detached(content_type, received, self.bob), entity)

    def test_outbound_signed_for_someone_else_refused(self) -> None:
        entity = pidf_entity("pres:mallory@sip.example", "open", "not bob")
        _, _, content = signed_content(self.bob, entity)
        response = self.successResultOf(self.adapter.deliver(Notify(
            parse_uri(JULIET), parse_uri(BOB), content, subscript_id="abc")))
        self.assertIs(response.status, Status.FAILURE)
        self.assertEqual(self.sent(), [])
