"""RPID hints for XMPP ``<show/>`` values, both directions (digest §5.3, RFC 4480, RFC 7248 §5).

Found by the baresip end-to-end test: an XMPP ``away`` reached SIP watchers as
basic open plus the ``jabber:client`` show extension only, which SIP user agents
do not read.  XMPP -> PIDF now adds a ``dm:person`` with RPID activities (and
user-input idle for xa); PIDF -> XMPP keeps the ``jabber:client`` show first and
reads RPID only when there is none.
"""

from __future__ import annotations

from twisted.trial import unittest
from twisted.words.protocols.jabber.jid import JID

from cpimgw.adapters.xmpp import mapping
from cpimgw.adapters.xmpp.addresses import AddressMap
from cpimgw.adapters.xmpp.codec import read_stanza
from cpimgw.cpim.pidf import Activities, Person, UserInput, compose, parse_pidf
from cpimgw.cpim.uri import parse_uri

ADDRESSES = AddressMap("gw.localhost", ("xmpp.example",))
JULIET = parse_uri("pres:juliet@xmpp.example")
WATCHER = JID("romeo\\40sip.example@gw.localhost")
STAMP = "2026-01-02T10:00:00Z"

#: <show/> -> (RPID activities, user-input state) of the dm:person; None: no person at all.
FORWARD = [
    (None, None),
    ("chat", None),
    ("away", (("away",), None)),
    ("xa", (("away",), "idle")),
    ("dnd", (("busy",), None)),
]


def presence(show: str | None = None, kind: str | None = None, resource: str = "balcony") -> str:
    type_attr = f" type='{kind}'" if kind else ""
    show_xml = f"<show>{show}</show>" if show else ""
    return f"<presence from='juliet@xmpp.example/{resource}'{type_attr}>{show_xml}</presence>"


def to_pidf(xml: str):
    _, _, content = mapping.presence_to_pidf(read_stanza(xml.encode()), ADDRESSES, timestamp=STAMP)
    return content


def shows_of(pidf: bytes) -> list[str | None]:
    stanzas = mapping.pidf_to_presences(parse_pidf(pidf), JULIET, WATCHER, ADDRESSES)
    return [next((mapping._text(child) for child in stanza.elements() if child.name == "show"), None)
            for stanza in stanzas]


def sip_pidf(status: str = "<basic>open</basic>", person: str = "") -> bytes:
    """A PIDF as a SIP UA publishes it: one tuple, RPID in a dm:person."""
    return ("<?xml version='1.0' encoding='UTF-8'?>"
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:dm='urn:ietf:params:xml:ns:pidf:data-model' "
            "xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid' xmlns:im='urn:ietf:params:xml:ns:pidf:im' "
            "xmlns:x='jabber:client' entity='pres:juliet@xmpp.example'>"
            f"<tuple id='ID-phone'><status>{status}</status></tuple>{person}</presence>").encode()


def person_xml(activities: str = "", user_input: str = "") -> str:
    inner = f"<rpid:activities>{activities}</rpid:activities>" if activities else ""
    if user_input:
        inner += f"<rpid:user-input>{user_input}</rpid:user-input>"
    return f"<dm:person id='p1'>{inner}</dm:person>"


class XMPPToPIDFTests(unittest.TestCase):
    def test_table(self):
        for show, expected in FORWARD:
            with self.subTest(show=show):
                document = parse_pidf(to_pidf(presence(show)).body)
                self.assertEqual(document.tuples[0].status.xmpp_show, show)  # still the first source of truth
                if expected is None:
                    self.assertEqual(document.persons, ())
                    continue
                activities, idle = expected
                self.assertEqual(document.persons, (Person(
                    "p-ID-balcony", activities=[Activities(values=activities)],
                    user_input=UserInput(state=idle) if idle else None, timestamp=STAMP),))

    def test_exact_document_for_xa(self):
        self.assertEqual(to_pidf(presence("xa")).body, (
            b"<?xml version='1.0' encoding='UTF-8'?>\n"
            b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
            b'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="pres:juliet@xmpp.example">'
            b'<tuple id="ID-balcony"><status><basic>open</basic><show xmlns="jabber:client">xa</show></status>'
            b'<contact priority="0">im:juliet@xmpp.example</contact><timestamp>2026-01-02T10:00:00Z</timestamp>'
            b'</tuple><dm:person id="p-ID-balcony"><rpid:activities><rpid:away/></rpid:activities>'
            b"<rpid:user-input>idle</rpid:user-input><dm:timestamp>2026-01-02T10:00:00Z</dm:timestamp>"
            b"</dm:person></presence>"))

    def test_rpid_prefix_for_sip_uas(self):
        # baresip (modules/presence) matches the literal <rpid:away/> / <rpid:busy/> text.
        self.assertIn(b"<rpid:away/>", to_pidf(presence("away")).body)
        self.assertIn(b"<rpid:busy/>", to_pidf(presence("dnd")).body)

    def test_unavailable_has_no_person(self):
        document = parse_pidf(to_pidf(presence("away", kind="unavailable")).body)
        self.assertEqual(document.tuples[0].status.basic, "closed")
        self.assertEqual(document.persons, ())

    def test_persons_of_resources_stay_distinct_when_composed(self):
        documents = [parse_pidf(to_pidf(presence("away", resource=name)).body) for name in ("a", "b")]
        composed = compose(documents, JULIET)
        self.assertEqual([person.id for person in composed.persons], ["p-ID-a", "p-ID-b"])
        self.assertEqual(shows_of(composed.to_bytes()), ["away", "away"])

    def test_rpid_person_function(self):
        self.assertIsNone(mapping.rpid_person("ID-x", None))
        self.assertIsNone(mapping.rpid_person("ID-x", "chat"))
        self.assertEqual(mapping.rpid_person("ID-x", "dnd"),
                         Person("p-ID-x", activities=[Activities(values=("busy",))]))


class PIDFToXMPPTests(unittest.TestCase):
    #: (tuple status, dm:person) -> the <show/> of the XMPP presence.
    TABLE = [
        # no hint at all
        ("<basic>open</basic>", "", None),
        ("<basic>open</basic>", person_xml("<rpid:unknown/>"), None),
        ("<basic>open</basic>", person_xml("<rpid:lunch/>"), None),
        # RPID activities when there is no show extension
        ("<basic>open</basic>", person_xml("<rpid:away/>"), "away"),
        ("<basic>open</basic>", person_xml("<rpid:away/>", "idle"), "xa"),
        ("<basic>open</basic>", person_xml("<rpid:away/>", "active"), "away"),
        ("<basic>open</basic>", person_xml("<rpid:busy/>"), "dnd"),
        ("<basic>open</basic>", person_xml("<rpid:meeting/>"), "dnd"),
        ("<basic>open</basic>", person_xml("<rpid:on-the-phone/>"), "dnd"),
        ("<basic>open</basic>", person_xml("<rpid:vacation/>"), "xa"),
        ("<basic>open</basic>", person_xml("<rpid:holiday/>"), "xa"),
        ("<basic>open</basic>", person_xml("<rpid:permanent-absence/>"), "xa"),
        ("<basic>open</basic>", person_xml("<rpid:sleeping/>"), "xa"),
        ("<basic>open</basic>", person_xml("<rpid:lunch/><rpid:busy/>"), "dnd"),  # first mapped value
        # the jabber:client show is the first source of truth
        ("<basic>open</basic><x:show>chat</x:show>", person_xml("<rpid:busy/>"), "chat"),
        ("<basic>open</basic><x:show>away</x:show>", person_xml("<rpid:busy/>"), "away"),
        ("<basic>open</basic><x:show>dnd</x:show>", person_xml("<rpid:away/>", "idle"), "dnd"),
        # then the provisional RFC 3922 im:im, then RPID
        ("<basic>open</basic><im:im>busy</im:im>", person_xml("<rpid:away/>"), "dnd"),
        # closed: no show whatever the hints
        ("<basic>closed</basic>", person_xml("<rpid:away/>"), None),
    ]

    def test_table(self):
        for status, person, expected in self.TABLE:
            with self.subTest(status=status, person=person):
                self.assertEqual(shows_of(sip_pidf(status, person)), [expected])


class RoundTripTests(unittest.TestCase):
    def test_show_survives_with_and_without_the_extension(self):
        for show in (None, "chat", "away", "xa", "dnd"):
            with self.subTest(show=show):
                octets = to_pidf(presence(show)).body
                self.assertEqual(shows_of(octets), [show])
                # A SIP UA that republishes only basic + RPID (drops jabber:client show):
                document = parse_pidf(octets)
                stripped = document.__class__(
                    document.entity,
                    [item.__class__(item.id, item.status.__class__(item.status.basic)) for item in document.tuples],
                    persons=document.persons)
                expected = show if show != "chat" else None  # chat has no RPID hint (digest §5.3)
                self.assertEqual(shows_of(stripped.to_bytes()), [expected])

    def test_presence_back_to_xmpp_is_the_same_stanza(self):
        stanza = ("<presence from='juliet@xmpp.example/balcony' to='romeo\\40sip.example@gw.localhost'>"
                  "<show>xa</show><status>zzz</status><priority>5</priority></presence>")
        content = to_pidf(stanza)
        back = mapping.pidf_to_presences(parse_pidf(content.body), JULIET, WATCHER, ADDRESSES)
        # The same stanza, with the PIDF timestamp of its arrival as XEP-0203 delay (RFC 3863 §4.1.7).
        expected = stanza.replace("</presence>", f"<delay xmlns='urn:xmpp:delay' stamp='{STAMP}'/></presence>")
        self.assertEqual([element.toXml() for element in back], [read_stanza(expected.encode()).toXml()])
