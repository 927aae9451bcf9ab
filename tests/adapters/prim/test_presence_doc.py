"""Tests of the legacy application/presence document and its PIDF mapping (-01 §15, digest §2.10)."""

from __future__ import annotations

from lxml import etree
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim import presence_doc
from cpimgw.cpim.errors import PresenceDocumentError

# -01 §15.6, with CRLF line ends and the MIME-Version of the top entity.
CONTENT_TYPE = 'multipart/mixed; boundary="0123456789"'
EXAMPLE = (
    "--0123456789\r\n"
    "Content-Type: application/presence\r\n"
    "Tuple-ID: im:foo@bar.com\r\n"
    "\r\n"
    '<presence identifier="pres:foo@bar.com"\r\n'
    '          date="Thu, 5 Sep 2000 15:45:45 -0500">\r\n'
    "   <presentity>\r\n"
    "      <display-name>FOO (^^)v</display-name>\r\n"
    "      <note>I'm Hungry.</note>\r\n"
    "   </presentity>\r\n"
    '   <contact address="im:foo@bar.com">\r\n'
    "      <display-name>IM</display-name>\r\n"
    '      <status value="open"/>\r\n'
    '      <preference value="1"/>\r\n'
    "   </contact>\r\n"
    "</presence>\r\n"
    "\r\n"
    "--0123456789\r\n"
    "Content-Type: application/presence\r\n"
    "Tuple-ID: tel:+1-800-IGOTYOU\r\n"
    "\r\n"
    '<presence identifier="pres:foo@bar.com"\r\n'
    '          date="Thu, 5 Sep 2000 16:30:28 -0500">\r\n'
    '   <contact address="tel:+1-800-IGOTYOU">\r\n'
    "      <display-name>Phone(Office)</display-name>\r\n"
    '      <status value="open" detail="deferred"/>\r\n'
    "   </contact>\r\n"
    "</presence>\r\n"
    "\r\n"
    "--0123456789--\r\n"
).encode("utf-8")

P = "{urn:ietf:params:xml:ns:pidf}"
X = "{" + presence_doc.PRIM_PIDF_NS + "}"


class LegacyTests(TestCase):
    def test_parse_example(self) -> None:
        tuples = presence_doc.parse_legacy(CONTENT_TYPE, EXAMPLE)
        self.assertEqual([t.tuple_id for t in tuples], ["im:foo@bar.com", "tel:+1-800-IGOTYOU"])
        self.assertEqual(tuples[0].identifier, "pres:foo@bar.com")
        self.assertEqual((tuples[0].display_name, tuples[0].note), ("FOO (^^)v", "I'm Hungry."))
        self.assertEqual(tuples[0].contacts[0], presence_doc.LegacyContact(
            "im:foo@bar.com", "open", None, 1, "IM", None))
        self.assertEqual(tuples[1].contacts[0].detail, "deferred")

    def test_to_pidf(self) -> None:
        root = etree.fromstring(presence_doc.legacy_to_pidf(CONTENT_TYPE, EXAMPLE))
        self.assertEqual(root.get("entity"), "pres:foo@bar.com")
        tuples = root.findall(P + "tuple")
        self.assertEqual([t.get("id") for t in tuples], ["ID-im_3Afoo_40bar.com", "ID-tel_3A_2B1-800-IGOTYOU"])
        first, second = tuples
        self.assertEqual(first.findtext(f"{P}status/{P}basic"), "open")
        self.assertEqual(first.find(P + "contact").text, "im:foo@bar.com")
        self.assertEqual(first.find(P + "contact").get("priority"), "0.5")
        self.assertEqual(first.findtext(P + "timestamp"), "2000-09-05T15:45:45-05:00")
        self.assertEqual(first.findtext(X + "display-name"), "IM")
        self.assertEqual(second.findtext(f"{P}status/{X}detail"), "deferred")
        self.assertIsNone(second.find(P + "contact").get("priority"))
        self.assertEqual(root.findtext(P + "note"), "I'm Hungry.")

    def test_single_document_and_address_spelling(self) -> None:
        body = b'<presence address="pres:x@y.example"><contact address="im:x@y.example"><status value="closed" details="deferred"/></contact></presence>'
        root = etree.fromstring(presence_doc.legacy_to_pidf("application/presence", body))
        self.assertEqual(root.get("entity"), "pres:x@y.example")
        self.assertEqual(root.findtext(f"{P}tuple/{P}status/{P}basic"), "closed")
        self.assertEqual(root.findtext(f"{P}tuple/{P}status/{X}detail"), "deferred")

    def test_preference_to_priority(self) -> None:
        self.assertEqual([presence_doc.priority_for_preference(n) for n in (0, 1, 3, 999, 2**32 - 1)],
                         ["1", "0.5", "0.25", "0.001", "0"])

    def test_bad_documents(self) -> None:
        for body in (b"<presence><contact><status value='maybe'/></contact></presence>",
                     b"<notpresence/>", b"<presence", b'<!DOCTYPE x [<!ENTITY a "b">]><presence/>',
                     b"<presence><contact><status value='open'/><preference value='4294967296'/></contact></presence>"):
            self.assertRaises(PresenceDocumentError, presence_doc.parse_legacy, "application/presence", body)
        self.assertRaises(PresenceDocumentError, presence_doc.parse_legacy, "multipart/mixed", EXAMPLE)

    def test_ncname(self) -> None:
        self.assertEqual(presence_doc.ncname_id("tuple1"), "tuple1")
        self.assertEqual(presence_doc.ncname_id("1abc"), "ID-1abc")
