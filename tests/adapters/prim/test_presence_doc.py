"""Tests of the legacy application/presence document and its PIDF mapping (-01 §15, digest §2.10)."""

from __future__ import annotations

import email.utils

import attrs
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


class PidfToLegacyTests(TestCase):
    """The inverse mapping, for -01/-02 user agents (digest §2.10 read backwards)."""

    def test_example_round_trips(self) -> None:
        """-01 §15.6 -> PIDF -> legacy: the same tuples, contacts, names, notes and instants."""
        content_type, body = presence_doc.pidf_to_legacy(presence_doc.legacy_to_pidf(CONTENT_TYPE, EXAMPLE))
        self.assertTrue(content_type.startswith('multipart/mixed; boundary="prim-'))
        original = presence_doc.parse_legacy(CONTENT_TYPE, EXAMPLE)
        back = presence_doc.parse_legacy(content_type, body)
        # the example's "Thu, 5 Sep 2000" was a Tuesday: the instant is kept, the weekday corrected
        self.assertEqual([email.utils.parsedate_to_datetime(t.date) for t in back],
                         [email.utils.parsedate_to_datetime(t.date) for t in original])
        self.assertEqual([t.date for t in back], ["Tue, 05 Sep 2000 15:45:45 -0500",
                                                  "Tue, 05 Sep 2000 16:30:28 -0500"])
        self.assertEqual([attrs.evolve(t, date=None) for t in back], [attrs.evolve(t, date=None) for t in original])
        self.assertEqual(back[0], presence_doc.LegacyTuple(
            "im:foo@bar.com", "pres:foo@bar.com", "Tue, 05 Sep 2000 15:45:45 -0500",
            (presence_doc.LegacyContact("im:foo@bar.com", "open", None, 1, "IM", None),), "FOO (^^)v", "I'm Hungry."))
        self.assertIn(b"\r\nTuple-ID: tel:+1-800-IGOTYOU\r\n", body)
        self.assertTrue(body.endswith(b"--\r\n"))

    def test_pidf_values_and_losses(self) -> None:
        pidf = (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" '
                b'entity="pres:romeo@example.com"><tuple id="ID-balcony"><status><basic>open</basic></status>'
                b'<r:activities><r:busy/></r:activities><contact priority="0.25">im:romeo@example.com</contact>'
                b'<note xml:lang="en">first</note><note>second</note><timestamp>2024-01-02T03:04:05.678Z</timestamp>'
                b'</tuple><tuple id="ID-2"><status/><contact priority="0">tel:+1</contact></tuple>'
                b'<note>hello</note><note>world</note><note>lost</note></presence>')
        content_type, body = presence_doc.pidf_to_legacy(pidf)
        first, second = presence_doc.parse_legacy(content_type, body)
        self.assertEqual(first, presence_doc.LegacyTuple(
            "balcony", "pres:romeo@example.com", "Tue, 02 Jan 2024 03:04:05 +0000",
            (presence_doc.LegacyContact("im:romeo@example.com", "open", None, 3, None, "first"),), None, "hello"))
        self.assertEqual(second, presence_doc.LegacyTuple(
            "2", "pres:romeo@example.com", None,
            (presence_doc.LegacyContact("tel:+1", "closed", None, 2**32 - 1),), None, "world"))
        self.assertNotIn(b"busy", body)
        self.assertNotIn(b"lost", body)

    def test_no_tuple(self) -> None:
        pidf = (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y.example">'
                b'<note>away</note></presence>')
        content_type, body = presence_doc.pidf_to_legacy(pidf)
        self.assertEqual(presence_doc.parse_legacy(content_type, body), [
            presence_doc.LegacyTuple(None, "pres:x@y.example", None, (), None, "away")])

    def test_helpers(self) -> None:
        for tuple_id in ("tuple1", "im:foo@bar.com", "1abc", "tel:+1-800-IGOTYOU", "caf\u00e9"):
            self.assertEqual(presence_doc.tuple_id_from_ncname(presence_doc.ncname_id(tuple_id)), tuple_id)
        self.assertEqual(presence_doc.tuple_id_from_ncname("ID-a_20b"), "a%20b")
        self.assertEqual([presence_doc.preference_for_priority(p) for p in ("1", "0.5", "0.25", "0.001", "0",
                                                                            "2", "x")],
                         [0, 1, 3, 999, 2**32 - 1, None, None])
        self.assertEqual(presence_doc.rfc3339_to_rfc1123("2000-09-05T15:45:45-05:00"),
                         "Tue, 05 Sep 2000 15:45:45 -0500")
        self.assertIsNone(presence_doc.rfc3339_to_rfc1123("yesterday"))

    def test_refused_and_passed_through(self) -> None:
        for document in (b"<presence", b"<presence/>", b'<!DOCTYPE x [<!ENTITY a "b">]><presence/>',
                         b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>'):
            self.assertRaises(PresenceDocumentError, presence_doc.pidf_to_legacy, document)
        signed = 'multipart/signed; protocol="application/pkcs7-signature"; boundary="s1"'
        self.assertEqual(presence_doc.legacy_content(signed, b"--s1..."), (signed, b"--s1..."))
        self.assertEqual(presence_doc.legacy_content("application/presence", b"<presence/>"),
                         ("application/presence", b"<presence/>"))
        self.assertEqual(presence_doc.legacy_content("application/pidf+xml", b"<presence"),
                         ("application/pidf+xml", b"<presence"))
        pidf = presence_doc.simple_pidf("pres:a@b.example", "open")
        self.assertEqual(presence_doc.legacy_content("application/pidf+xml", pidf), presence_doc.pidf_to_legacy(pidf))
