"""Tests for cpimgw.cpim.pidf: PIDF (RFC 3863), RPID (RFC 4480), RFC 3922/7248 presence.

The documents are the RFC examples as protocols.md §10 lists them (RFC 3863
§4.2.2, §4.2.4, §4.3.1-4.3.3; RFC 4480 §3 snippets and the §4 full
document; RFC 3922 §5 presence examples; RFC 7248 show extension).
"""

from __future__ import annotations

import json
from decimal import Decimal

from lxml import etree
from twisted.trial import unittest

from cpimgw.cpim.errors import ParseError, PresenceDocumentError
from cpimgw.cpim.pidf import (
    PIDF_NS,
    RPID_NS,
    Activities,
    Contact,
    Device,
    Extension,
    Mood,
    Note,
    Person,
    PlaceIs,
    PlaceType,
    PresenceDocument,
    Privacy,
    Relationship,
    ServiceClass,
    Sphere,
    Status,
    StatusIcon,
    TimeOffset,
    TimestampSource,
    Tuple,
    UserInput,
    build_pidf,
    compose,
    instance_for,
    parse_pidf,
    priority_from_xmpp,
    timestamp_now,
    tuple_id_for,
    xmpp_priority,
)
from cpimgw.cpim.uri import pres_uri

RFC3863_MINIMAL_PREFIXED = b"""<?xml version="1.0" encoding="UTF-8"?>
<impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
    entity="pres:someone@example.com">
  <impp:tuple id="sg89ae">
    <impp:status>
      <impp:basic>open</impp:basic>
    </impp:status>
    <impp:contact priority="0.8">tel:+09012345678</impp:contact>
  </impp:tuple>
</impp:presence>
"""

RFC3863_MINIMAL_DEFAULT = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    entity="pres:someone@example.com">
  <tuple id="sg89ae">
    <status>
      <basic>open</basic>
    </status>
    <contact priority="0.8">tel:+09012345678</contact>
  </tuple>
</presence>
"""

RFC3863_STATUS_EXTENSION = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:local="urn:example-com:pidf-status-type"
    entity="pres:someone@example.com">
  <tuple id="ub93s3">
    <status>
      <basic>open</basic>
      <local:location>home</local:location>
    </status>
    <contact>im:someone@example.com</contact>
  </tuple>
</presence>
"""

RFC3863_MULTI_TUPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
    entity="pres:someone@example.com">
  <impp:tuple id="ck38g9">
    <impp:status>
      <impp:basic>open</impp:basic>
    </impp:status>
    <impp:contact priority="0.65">tel:+09012345678</impp:contact>
  </impp:tuple>
  <impp:tuple id="md66je">
    <impp:status>
      <impp:basic>open</impp:basic>
    </impp:status>
    <impp:contact priority="1.0">
       im:someone@mobilecarrier.net</impp:contact>
    <impp:note xml:lang="en">Don't Disturb Please!</impp:note>
    <impp:note xml:lang="fr">Ne derangez pas, s'il vous plait</impp:note>
    <impp:timestamp>2001-10-27T16:49:29Z</impp:timestamp>
  </impp:tuple>
  <impp:note xml:lang="en">I'll be in Tokyo next week</impp:note>
</impp:presence>
"""

RFC3863_EXTENSIONS = b"""<?xml version="1.0" encoding="UTF-8"?>
<impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
    xmlns:myex="http://id.example.com/presence/"
    entity="pres:someone@example.com">
  <impp:tuple id="ck38g9">
    <impp:status>
      <impp:basic>open</impp:basic>
    </impp:status>
    <myex:mytupletag>Extended value in tuple</myex:mytupletag>
    <impp:contact priority="0.65">tel:+09012345678</impp:contact>
  </impp:tuple>
  <impp:tuple id="md66je">
    <impp:status>
      <impp:basic>open</impp:basic>
    </impp:status>
    <impp:contact priority="1.0">
       im:someone@mobilecarrier.net</impp:contact>
  </impp:tuple>
  <myex:mytag>My extended presentity information</myex:mytag>
</impp:presence>
"""

RFC3863_MUST_UNDERSTAND = b"""<?xml version="1.0" encoding="UTF-8"?>
<impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
    xmlns:myex="http://id.mycompany.com/presence/"
    entity="pres:someone@example.com">
  <impp:tuple id="tj25ds">
    <impp:status>
      <impp:basic>open</impp:basic>
    </impp:status>
    <myex:complexExtension>
      <myex:ex1 impp:mustUnderstand="1">val1</myex:ex1>
      <myex:ex2>val2</myex:ex2>
    </myex:complexExtension>
    <impp:contact priority="0.725">tel:+09012345678</impp:contact>
  </impp:tuple>
  <myex:mytag>My extended presentity information</myex:mytag>
</impp:presence>
"""

RFC4480_FULL = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
     xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
     xmlns:lt="urn:ietf:params:xml:ns:location-type"
     xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
     entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status>
      <basic>open</basic>
    </status>
    <dm:deviceID>urn:x-mac:0003ba4811e3</dm:deviceID>
    <rpid:relationship><rpid:self/></rpid:relationship>
    <rpid:service-class><rpid:electronic/></rpid:service-class>
    <contact priority="0.8">im:someone@mobilecarrier.net</contact>
    <note xml:lang="en">Don't Disturb Please!</note>
    <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
    <timestamp>2005-10-27T16:49:29Z</timestamp>
  </tuple>

  <tuple id="ty4658">
    <status>
      <basic>open</basic>
    </status>
    <rpid:relationship><rpid:assistant/></rpid:relationship>
    <contact priority="1.0">mailto:secretary@example.com</contact>
  </tuple>

  <tuple id="eg92n8">
    <status>
      <basic>open</basic>
    </status>
    <dm:deviceID>urn:x-mac:0003ba4811e3</dm:deviceID>
    <rpid:class>email</rpid:class>
    <rpid:service-class><rpid:electronic/></rpid:service-class>
    <rpid:status-icon>http://example.com/mail.png</rpid:status-icon>
    <contact>mailto:someone@example.com</contact>
  </tuple>

  <note>I'll be in Tokyo next week</note>

  <dm:device id="pc122">
    <rpid:user-input idle-threshold="600"
      last-input="2004-10-21T13:20:00.000-05:00">idle</rpid:user-input>
    <dm:deviceID>urn:device:0003ba4811e3</dm:deviceID>
    <dm:note>PC</dm:note>
  </dm:device>

  <dm:person id="p1">
    <rpid:activities from="2005-05-30T12:00:00+05:00"
      until="2005-05-30T17:00:00+05:00">
      <rpid:note>Far away</rpid:note>
      <rpid:away/>
    </rpid:activities>
    <rpid:class>calendar</rpid:class>
    <rpid:mood>
      <rpid:angry/>
      <rpid:other>brooding</rpid:other>
    </rpid:mood>
    <rpid:place-is>
      <rpid:audio>
        <rpid:noisy/>
      </rpid:audio>
    </rpid:place-is>
    <rpid:place-type><lt:residence/></rpid:place-type>
    <rpid:privacy><rpid:unknown/></rpid:privacy>
    <rpid:sphere>bowling league</rpid:sphere>
    <rpid:status-icon>http://example.com/play.gif</rpid:status-icon>
    <rpid:time-offset>-240</rpid:time-offset>
    <dm:note>Scoring 120</dm:note>
    <dm:timestamp>2005-05-30T16:09:44+05:00</dm:timestamp>
  </dm:person>
</presence>
"""

_RPID_WRAPPER = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
     xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
     xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
     xmlns:x="urn:example:x"
     entity="pres:someone@example.com">
  <dm:person id="p1">%s</dm:person>
</presence>
"""


def person_of(snippet: bytes) -> Person:
    document = parse_pidf(_RPID_WRAPPER % snippet)
    return document.persons[0]


def rfc3922(status_body: bytes, tuple_tail: bytes = b"", entity: bytes = b"pres:juliet@example.com") -> bytes:
    return (
        b"<?xml version='1.0' encoding='UTF-8'?>\n"
        b"<presence xmlns='urn:ietf:params:xml:ns:pidf'\n"
        b"          xmlns:im='urn:ietf:params:xml:ns:pidf:im'\n"
        b"          entity='" + entity + b"'>\n"
        b"  <tuple id='balcony'>\n"
        b"    <status>" + status_body + b"</status>\n" + tuple_tail + b"  </tuple>\n</presence>\n"
    )


class RFC3863Tests(unittest.TestCase):
    def test_minimal_prefixed(self) -> None:
        document = parse_pidf(RFC3863_MINIMAL_PREFIXED)
        self.assertEqual(document.entity, pres_uri("someone", "example.com"))
        self.assertEqual(
            document.tuples,
            (Tuple("sg89ae", Status("open"), Contact("tel:+09012345678", Decimal("0.8"))),),
        )
        self.assertEqual(document.raw, RFC3863_MINIMAL_PREFIXED)
        self.assertEqual(document.namespaces, (("impp", PIDF_NS),))

    def test_minimal_default_namespace_is_the_same_model(self) -> None:
        prefixed = parse_pidf(RFC3863_MINIMAL_PREFIXED)
        default = parse_pidf(RFC3863_MINIMAL_DEFAULT)
        self.assertEqual(prefixed, default)
        self.assertEqual(default.namespaces, (("", PIDF_NS),))

    def test_status_extension_location(self) -> None:
        document = parse_pidf(RFC3863_STATUS_EXTENSION)
        status = document.tuples[0].status
        self.assertEqual(status.basic, "open")
        self.assertEqual(len(status.extensions), 1)
        location = status.extensions[0]
        self.assertEqual((location.namespace, location.name), ("urn:example-com:pidf-status-type", "location"))
        self.assertEqual(etree.fromstring(location.xml).text, "home")
        self.assertFalse(location.must_understand)
        self.assertEqual(document.tuples[0].contact, Contact("im:someone@example.com"))
        self.assertEqual(document.ignored, ())

    def test_multi_tuple_notes_timestamp(self) -> None:
        document = parse_pidf(RFC3863_MULTI_TUPLE)
        first, second = document.tuples
        self.assertEqual(first.id, "ck38g9")
        self.assertEqual(first.contact, Contact("tel:+09012345678", Decimal("0.65")))
        self.assertEqual(second.contact, Contact("im:someone@mobilecarrier.net", Decimal("1.0")))
        self.assertEqual(
            second.notes,
            (Note("Don't Disturb Please!", "en"), Note("Ne derangez pas, s'il vous plait", "fr")),
        )
        self.assertEqual(second.timestamp, "2001-10-27T16:49:29Z")
        self.assertEqual(document.notes, (Note("I'll be in Tokyo next week", "en"),))

    def test_extension_elements(self) -> None:
        document = parse_pidf(RFC3863_EXTENSIONS)
        (tuple_extension,) = document.tuples[0].extensions
        self.assertEqual((tuple_extension.namespace, tuple_extension.name), ("http://id.example.com/presence/", "mytupletag"))
        self.assertEqual(tuple_extension.index, 1)
        (top,) = document.extensions
        self.assertEqual(top.name, "mytag")
        self.assertEqual(etree.fromstring(top.xml).text, "My extended presentity information")
        self.assertEqual(document.tuples[1].extensions, ())

    def test_extension_keeps_its_position_and_c14n(self) -> None:
        document = parse_pidf(RFC3863_EXTENSIONS)
        output = document.to_bytes()
        tree = etree.fromstring(output)
        first = tree.find(f"{{{PIDF_NS}}}tuple")
        self.assertEqual(
            [etree.QName(child).localname for child in first],
            ["status", "mytupletag", "contact"],
        )
        original = etree.fromstring(RFC3863_EXTENSIONS)
        for path in ("{*}tuple/{http://id.example.com/presence/}mytupletag", "{http://id.example.com/presence/}mytag"):
            before = etree.tostring(original.find(path), method="c14n", exclusive=True)
            after = etree.tostring(tree.find(path), method="c14n", exclusive=True)
            self.assertEqual(before, after)
        self.assertEqual(parse_pidf(output), document)

    def test_must_understand(self) -> None:
        document = parse_pidf(RFC3863_MUST_UNDERSTAND)
        (extension,) = document.tuples[0].extensions
        self.assertEqual(extension.name, "complexExtension")
        self.assertTrue(extension.must_understand)
        self.assertEqual(document.ignored, (extension,))
        self.assertEqual(document.tuples[0].status, Status("open"))
        self.assertEqual(document.tuples[0].contact, Contact("tel:+09012345678", Decimal("0.725")))
        # mytag has no mustUnderstand: unknown, kept, but not reported.
        self.assertFalse(document.extensions[0].must_understand)
        # Kept verbatim for relaying, mustUnderstand attribute included.
        output = document.to_bytes()
        self.assertIn(b'<myex:ex1 impp:mustUnderstand="1">val1</myex:ex1>', output)
        again = parse_pidf(output)
        self.assertEqual(again, document)
        self.assertEqual([item.name for item in again.ignored], ["complexExtension"])

    def test_must_understand_in_a_known_element_ignores_it(self) -> None:
        person = person_of(
            b'<rpid:activities><rpid:away/><x:new xmlns:impp="urn:ietf:params:xml:ns:pidf" '
            b'impp:mustUnderstand="true"/></rpid:activities><rpid:mood><rpid:happy/></rpid:mood>'
        )
        self.assertEqual(person.activities, ())
        self.assertEqual(person.mood, (Mood(values=("happy",)),))
        (kept,) = person.extensions
        self.assertEqual((kept.namespace, kept.name, kept.must_understand), (RPID_NS, "activities", True))

    def test_unknown_child_without_must_understand_is_kept_inside(self) -> None:
        person = person_of(b"<rpid:activities><rpid:away/><x:new>z</x:new></rpid:activities>")
        (activities,) = person.activities
        self.assertEqual(activities.values, ("away",))
        self.assertEqual([(e.namespace, e.name) for e in activities.extensions], [("urn:example:x", "new")])

    def test_zero_tuples(self) -> None:
        document = parse_pidf(
            b"<?xml version='1.0' encoding='UTF-8'?>\n"
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:juliet@example.com'/>"
        )
        self.assertEqual(document, PresenceDocument(pres_uri("juliet", "example.com")))
        self.assertEqual(parse_pidf(document.to_bytes()), document)


class RFC4480Tests(unittest.TestCase):
    def test_activities(self) -> None:
        person = person_of(
            b'<rpid:activities from="2005-05-30T12:00:00+05:00" until="2005-05-30T17:00:00+05:00">'
            b"<rpid:note>Far away</rpid:note><rpid:away/></rpid:activities>"
        )
        self.assertEqual(
            person.activities,
            (
                Activities(
                    values=("away",),
                    notes=(Note("Far away"),),
                    from_="2005-05-30T12:00:00+05:00",
                    until="2005-05-30T17:00:00+05:00",
                ),
            ),
        )

    def test_activities_several_and_other(self) -> None:
        person = person_of(
            b"<rpid:activities><rpid:on-the-phone/><rpid:meeting/>"
            b'<rpid:other xml:lang="en">skydiving</rpid:other></rpid:activities>'
        )
        self.assertEqual(person.activities[0].values, ("on-the-phone", "meeting"))
        self.assertEqual(person.activities[0].other, (Note("skydiving", "en"),))

    def test_mood(self) -> None:
        person = person_of(b"<rpid:mood><rpid:angry/><rpid:other>brooding</rpid:other></rpid:mood>")
        self.assertEqual(person.mood, (Mood(values=("angry",), other=(Note("brooding"),)),))

    def test_place_is(self) -> None:
        person = person_of(
            b"<rpid:place-is><rpid:audio><rpid:noisy/></rpid:audio><rpid:video><rpid:dark/></rpid:video>"
            b"<rpid:text><rpid:uncomfortable/></rpid:text></rpid:place-is>"
        )
        self.assertEqual(person.place_is, (PlaceIs(audio="noisy", video="dark", text="uncomfortable"),))

    def test_place_type(self) -> None:
        person = person_of(
            b'<rpid:place-type xmlns:lt="urn:ietf:params:xml:ns:location-type"><lt:residence/></rpid:place-type>'
        )
        self.assertEqual(
            person.place_type, (PlaceType(values=("{urn:ietf:params:xml:ns:location-type}residence",)),)
        )

    def test_privacy(self) -> None:
        person = person_of(b"<rpid:privacy><rpid:text/><rpid:video/></rpid:privacy>")
        self.assertEqual(person.privacy, (Privacy(values=("text", "video")),))

    def test_sphere_value_and_text(self) -> None:
        self.assertEqual(person_of(b"<rpid:sphere><rpid:work/></rpid:sphere>").sphere, (Sphere(value="work"),))
        self.assertEqual(
            person_of(b"<rpid:sphere>bowling league</rpid:sphere>").sphere, (Sphere(text="bowling league"),)
        )

    def test_status_icon_time_offset_user_input_class(self) -> None:
        person = person_of(
            b"<rpid:status-icon>http://example.com/play.gif</rpid:status-icon>"
            b'<rpid:time-offset description="Eastern">-240</rpid:time-offset>'
            b'<rpid:user-input idle-threshold="600" last-input="2004-10-21T13:20:00.000-05:00">idle'
            b"</rpid:user-input><rpid:class>calendar</rpid:class>"
        )
        self.assertEqual(person.status_icon, (StatusIcon(uri="http://example.com/play.gif"),))
        self.assertEqual(person.time_offset, (TimeOffset(minutes=-240, description="Eastern"),))
        self.assertEqual(
            person.user_input,
            UserInput(state="idle", idle_threshold=600, last_input="2004-10-21T13:20:00.000-05:00"),
        )
        self.assertEqual(person.class_, "calendar")

    def test_bad_rpid_value_is_kept_not_modelled(self) -> None:
        person = person_of(b"<rpid:time-offset>soon</rpid:time-offset>")
        self.assertEqual(person.time_offset, ())
        self.assertEqual([(e.name, e.must_understand) for e in person.extensions], [("time-offset", False)])

    def test_full_document(self) -> None:
        document = parse_pidf(RFC4480_FULL)
        self.assertEqual([item.id for item in document.tuples], ["bs35r9", "ty4658", "eg92n8"])
        first, second, third = document.tuples
        self.assertEqual(first.device_id, "urn:x-mac:0003ba4811e3")
        self.assertEqual(first.relationship, Relationship(values=("self",)))
        self.assertEqual(first.service_class, ServiceClass(values=("electronic",)))
        self.assertEqual(first.contact, Contact("im:someone@mobilecarrier.net", Decimal("0.8")))
        self.assertEqual(first.timestamp, "2005-10-27T16:49:29Z")
        self.assertEqual(second.relationship, Relationship(values=("assistant",)))
        self.assertEqual(second.contact.priority, Decimal("1"))
        self.assertEqual(third.class_, "email")
        self.assertEqual(third.status_icon, (StatusIcon(uri="http://example.com/mail.png"),))
        self.assertIsNone(third.contact.priority)
        self.assertEqual(document.notes, (Note("I'll be in Tokyo next week"),))
        self.assertEqual(
            document.devices,
            (
                Device(
                    "pc122",
                    device_id="urn:device:0003ba4811e3",
                    user_input=UserInput(
                        state="idle", idle_threshold=600, last_input="2004-10-21T13:20:00.000-05:00"
                    ),
                    notes=(Note("PC"),),
                ),
            ),
        )
        (person,) = document.persons
        self.assertEqual(
            person,
            Person(
                "p1",
                activities=(
                    Activities(
                        values=("away",),
                        notes=(Note("Far away"),),
                        from_="2005-05-30T12:00:00+05:00",
                        until="2005-05-30T17:00:00+05:00",
                    ),
                ),
                mood=(Mood(values=("angry",), other=(Note("brooding"),)),),
                place_is=(PlaceIs(audio="noisy"),),
                place_type=(PlaceType(values=("{urn:ietf:params:xml:ns:location-type}residence",)),),
                privacy=(Privacy(values=("unknown",)),),
                sphere=(Sphere(text="bowling league"),),
                status_icon=(StatusIcon(uri="http://example.com/play.gif"),),
                time_offset=(TimeOffset(minutes=-240),),
                class_="calendar",
                notes=(Note("Scoring 120"),),
                timestamp="2005-05-30T16:09:44+05:00",
            ),
        )
        self.assertEqual(document.ignored, ())

    def test_full_document_round_trip(self) -> None:
        document = parse_pidf(RFC4480_FULL)
        output = document.to_bytes()
        self.assertTrue(output.startswith(b"<?xml version='1.0' encoding='UTF-8'?>"))
        self.assertIn(b'xmlns="urn:ietf:params:xml:ns:pidf"', output)
        self.assertIn(b'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"', output)
        self.assertIn(b'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"', output)
        self.assertIn(b'xmlns:lt="urn:ietf:params:xml:ns:location-type"', output)
        again = parse_pidf(output)
        self.assertEqual(again, document)
        self.assertEqual(again.to_bytes(), output)

    def test_to_dict(self) -> None:
        data = parse_pidf(RFC4480_FULL).to_dict()
        json.dumps(data)  # JSON-friendly
        self.assertEqual(data["entity"], "pres:someone@example.com")
        self.assertEqual(data["tuples"][0]["contact"], {"uri": "im:someone@mobilecarrier.net", "priority": "0.8"})
        self.assertEqual(data["tuples"][0]["notes"][1], {"text": "Ne derangez pas, s'il vous plait", "lang": "fr"})
        self.assertEqual(data["tuples"][0]["status"]["basic"], "open")
        self.assertEqual(data["persons"][0]["activities"][0]["values"], ["away"])
        self.assertEqual(data["persons"][0]["activities"][0]["from"], "2005-05-30T12:00:00+05:00")
        self.assertEqual(data["persons"][0]["class"], "calendar")
        self.assertEqual(data["namespaces"]["rpid"], RPID_NS)
        self.assertEqual(data["namespaces"][""], PIDF_NS)
        self.assertEqual(data["ignored"], [])

    def test_to_dict_extensions(self) -> None:
        data = parse_pidf(RFC3863_MUST_UNDERSTAND).to_dict()
        json.dumps(data)
        self.assertEqual(data["extensions"][0]["name"], "mytag")
        self.assertEqual(data["extensions"][0]["namespace"], "http://id.mycompany.com/presence/")
        self.assertIn("My extended presentity information", data["extensions"][0]["xml"])
        self.assertEqual([item["name"] for item in data["ignored"]], ["complexExtension"])


class RFC3922Tests(unittest.TestCase):
    """The presence examples of RFC 3922 §5 and the RFC 7248 show extension."""

    def test_open(self) -> None:
        document = parse_pidf(rfc3922(b"<basic>open</basic>"))
        self.assertEqual(document.tuples, (Tuple("balcony", Status("open")),))
        self.assertEqual(instance_for(document.tuples[0].id), "balcony")

    def test_unavailable(self) -> None:
        document = parse_pidf(rfc3922(b"<basic>closed</basic>", entity=b"pres:romeo@example.net"))
        self.assertEqual(document.tuples[0].status.basic, "closed")
        self.assertEqual(str(document.entity), "pres:romeo@example.net")

    def test_show_as_im_extension(self) -> None:
        document = parse_pidf(rfc3922(b"<basic>open</basic><im:im>away</im:im>"))
        self.assertEqual(document.tuples[0].status, Status("open", im="away"))
        self.assertIn(b"<im:im>away</im:im>", document.to_bytes())

    def test_show_as_jabber_client_extension(self) -> None:
        body = (
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:juliet@example.com'>"
            b"<tuple id='ID-balcony'><status><basic>open</basic>"
            b"<show xmlns='jabber:client'>away</show></status></tuple></presence>"
        )
        document = parse_pidf(body)
        self.assertEqual(document.tuples[0].status, Status("open", xmpp_show="away"))
        output = document.to_bytes()
        self.assertIn(b'<show xmlns="jabber:client">away</show>', output)
        self.assertEqual(parse_pidf(output), document)

    def test_status_text_as_note(self) -> None:
        document = parse_pidf(
            rfc3922(b"<basic>open</basic>", b"    <note xml:lang='en'>retired to the chamber</note>\n")
        )
        self.assertEqual(document.tuples[0].notes, (Note("retired to the chamber", "en"),))

    def test_priority_13(self) -> None:
        document = parse_pidf(
            rfc3922(b"<basic>open</basic>", b"    <contact priority='0.102'>im:juliet@example.com</contact>\n")
        )
        self.assertEqual(document.tuples[0].contact, Contact("im:juliet@example.com", priority_from_xmpp(13)))
        self.assertEqual(xmpp_priority(document.tuples[0].contact.priority), 13)

    def test_built_like_the_xmpp_adapter_would(self) -> None:
        document = build_pidf(
            pres_uri("juliet", "example.com"),
            [
                Tuple(
                    tuple_id_for("balcony"),
                    Status("open", xmpp_show="away"),
                    Contact("im:juliet@example.com", priority_from_xmpp(13)),
                    notes=[Note("retired to the chamber", "en")],
                    timestamp="2004-01-01T00:00:00.000Z",
                )
            ],
        )
        self.assertEqual(
            document.to_bytes(),
            b"<?xml version='1.0' encoding='UTF-8'?>\n"
            b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:juliet@example.com">'
            b'<tuple id="ID-balcony"><status><basic>open</basic><show xmlns="jabber:client">away</show>'
            b'</status><contact priority="0.102">im:juliet@example.com</contact>'
            b'<note xml:lang="en">retired to the chamber</note>'
            b"<timestamp>2004-01-01T00:00:00.000Z</timestamp></tuple></presence>",
        )
        self.assertEqual(parse_pidf(document.to_bytes()), document)


class ValidationTests(unittest.TestCase):
    def check_error(self, body: bytes, line: int | None, words: str) -> PresenceDocumentError:
        error = self.assertRaises(PresenceDocumentError, parse_pidf, body)
        self.assertEqual(error.line, line)
        self.assertIn(words, error.reason)
        self.assertEqual(error.syntax, "pidf")
        return error

    def test_entity_required(self) -> None:
        self.check_error(b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>", 1, "no entity")

    def test_entity_absolute_uri(self) -> None:
        self.check_error(b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='juliet'/>", 1, "absolute URI")
        document = parse_pidf(b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:juliet@example.com'/>")
        self.assertEqual(document.entity, "sip:juliet@example.com")

    def test_bad_pres_uri(self) -> None:
        self.check_error(b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:a@b c'/>", 1, "entity")

    def test_wrong_root(self) -> None:
        self.check_error(b"<presence entity='pres:a@example.com'/>", 1, "root element")

    def test_tuple_id_required(self) -> None:
        body = rfc3922(b"<basic>open</basic>").replace(b" id='balcony'", b"")
        self.check_error(body, 5, "no id")

    def test_tuple_id_ncname(self) -> None:
        self.check_error(rfc3922(b"<basic>open</basic>").replace(b"balcony", b"9balcony"), 5, "NCName")
        self.check_error(rfc3922(b"<basic>open</basic>").replace(b"balcony", b"a:b"), 5, "NCName")

    def test_tuple_id_unique(self) -> None:
        body = RFC3863_MULTI_TUPLE.replace(b"md66je", b"ck38g9")
        self.check_error(body, 10, "used twice")

    def test_status_required(self) -> None:
        body = RFC3863_MINIMAL_DEFAULT.replace(b"<status>\n      <basic>open</basic>\n    </status>", b"")
        self.check_error(body, 4, "no <status>")

    def test_status_needs_a_child(self) -> None:
        body = RFC3863_MINIMAL_DEFAULT.replace(b"<basic>open</basic>", b"")
        self.check_error(body, 5, "at least one child")

    def test_basic_open_or_closed(self) -> None:
        self.check_error(RFC3863_MINIMAL_DEFAULT.replace(b">open<", b">ajar<"), 6, "'open' or 'closed'")

    def test_timestamp_upper_case(self) -> None:
        self.check_error(RFC3863_MULTI_TUPLE.replace(b"2001-10-27T16:49:29Z", b"2001-10-27t16:49:29z"), 18, "upper case")

    def test_timestamp_rfc3339(self) -> None:
        self.check_error(RFC3863_MULTI_TUPLE.replace(b"2001-10-27T16:49:29Z", b"27 Oct 2001"), 18, "RFC 3339")
        self.check_error(RFC3863_MULTI_TUPLE.replace(b"2001-10-27T16:49:29Z", b"2001-02-30T16:49:29Z"), 18, "day")

    def test_priority_out_of_range_is_ignored(self) -> None:
        for value in (b"1.5", b"0.1234", b"-0.1", b"high"):
            document = parse_pidf(RFC3863_MINIMAL_DEFAULT.replace(b"0.8", value))
            self.assertEqual(document.tuples[0].contact, Contact("tel:+09012345678", None), value)

    def test_malformed_xml_has_line_and_offset(self) -> None:
        error = self.assertRaises(
            PresenceDocumentError, parse_pidf, RFC3863_MINIMAL_DEFAULT.replace(b"</status>", b"</statu>")
        )
        self.assertEqual(error.line, 7)
        self.assertIsNotNone(error.offset)
        self.assertIn("not well-formed", error.reason)

    def test_model_validation(self) -> None:
        self.assertRaises(PresenceDocumentError, Tuple, "1x")
        self.assertRaises(PresenceDocumentError, Status, "maybe")
        self.assertRaises(PresenceDocumentError, Contact, "im:a@b", Decimal("1.5"))
        self.assertRaises(PresenceDocumentError, Contact, "im:a@b", Decimal("0.1234"))
        self.assertRaises(PresenceDocumentError, Tuple, "a", timestamp="2005-01-01t00:00:00Z")
        self.assertRaises(
            PresenceDocumentError, build_pidf, "pres:a@example.com", [Tuple("a"), Tuple("a")]
        )
        self.assertRaises(ParseError, build_pidf, "no-scheme")


class BuilderTests(unittest.TestCase):
    def test_tuple_id_for(self) -> None:
        self.assertEqual(tuple_id_for("balcony"), "ID-balcony")
        self.assertEqual(tuple_id_for("my phone"), "ID-my_20phone")
        self.assertEqual(tuple_id_for("a_b"), "ID-a_5Fb")
        self.assertEqual(tuple_id_for("Jürgen"), "ID-J_C3_BCrgen")
        self.assertEqual(tuple_id_for(""), "ID-")
        for instance in ("balcony", "my phone", "a_b", "Jürgen", "1", "x/y@z", "_5F"):
            self.assertEqual(instance_for(tuple_id_for(instance)), instance)
            Tuple(tuple_id_for(instance))  # a valid NCName
        self.assertEqual(instance_for("sg89ae"), "sg89ae")

    def test_priority_from_xmpp(self) -> None:
        expected = {0: "0", 1: "0.007", 2: "0.015", 13: "0.102", 126: "0.992", 127: "1"}
        for priority, qvalue in expected.items():
            self.assertEqual(priority_from_xmpp(priority), Decimal(qvalue), priority)
        self.assertIsNone(priority_from_xmpp(-1))
        self.assertIsNone(priority_from_xmpp(-128))
        self.assertRaises(ValueError, priority_from_xmpp, 128)
        values = [priority_from_xmpp(n) for n in range(128)]
        self.assertEqual(len(set(values)), 128)

    def test_xmpp_priority(self) -> None:
        expected = {"0": 0, "0.001": 1, "0.007": 1, "0.008": 2, "0.015": 2, "0.102": 13, "0.992": 126, "0.999": 126, "1": 127}
        for qvalue, priority in expected.items():
            self.assertEqual(xmpp_priority(Decimal(qvalue)), priority, qvalue)
        self.assertEqual(xmpp_priority(None), 0)
        for n in range(128):
            self.assertEqual(xmpp_priority(priority_from_xmpp(n)), n)
        self.assertRaises(ValueError, xmpp_priority, Decimal("1.1"))

    def test_timestamp_source(self) -> None:
        source = TimestampSource()
        self.assertEqual(source(1117454984.5), "2005-05-30T12:09:44.500Z")
        self.assertEqual(source(1117454984.5), "2005-05-30T12:09:44.501Z")
        self.assertEqual(source(1117454984.0), "2005-05-30T12:09:44.502Z")
        self.assertEqual(source(1117454990.25), "2005-05-30T12:09:50.250Z")
        first = timestamp_now(0.0)
        second = timestamp_now(0.0)
        self.assertNotEqual(first, second)
        Tuple("a", timestamp=first)  # valid RFC 3339, upper case

    def test_build_and_round_trip_with_extensions(self) -> None:
        location = Extension.from_xml(b'<l:location xmlns:l="urn:example-com:pidf-status-type">home</l:location>')
        geo = Extension.from_xml(b'<g:geo xmlns:g="urn:example:geo"><g:lat>1</g:lat></g:geo>')
        document = build_pidf(
            "pres:someone@example.com",
            [Tuple("t1", Status("open", extensions=[location]), extensions=[geo])],
            notes=[Note("hello", "en")],
            persons=[Person("p1", activities=[Activities(values=["busy"])])],
            devices=[Device("d1", device_id="urn:uuid:1")],
        )
        again = parse_pidf(document.to_bytes())
        self.assertEqual(again, document)
        self.assertEqual(again.tuples[0].status.extensions[0].name, "location")

    def test_compose(self) -> None:
        phone = parse_pidf(rfc3922(b"<basic>open</basic>"))
        laptop = build_pidf(
            "pres:juliet@example.com",
            [Tuple("balcony", Status("closed")), Tuple("ID-laptop", Status("open"))],
            persons=[Person("p1", mood=[Mood(values=["happy"])])],
        )
        other = build_pidf("pres:juliet@example.com", persons=[Person("p1")], notes=[Note("n")])
        merged = compose([phone, laptop, other], pres_uri("juliet", "example.com"))
        self.assertEqual([item.id for item in merged.tuples], ["balcony", "balcony-2", "ID-laptop"])
        self.assertEqual([item.status.basic for item in merged.tuples], ["open", "closed", "open"])
        self.assertEqual([person.id for person in merged.persons], ["p1", "p1-2"])
        self.assertEqual(merged.notes, (Note("n"),))
        self.assertEqual(parse_pidf(merged.to_bytes()), merged)


class RelativeNamespaceTests(unittest.TestCase):
    """libxml2 refuses exclusive C14N of a relative namespace URI; the parser must not leak that."""

    DOCUMENT = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b.com">'
        b'<tuple id="t"><status><basic>open</basic></status>'
        b'<x:foo xmlns:x="rel/ns">1</x:foo></tuple></presence>'
    )

    def test_extension_in_relative_namespace_is_kept(self) -> None:
        document = parse_pidf(self.DOCUMENT)
        (extension,) = document.tuples[0].extensions
        self.assertEqual((extension.namespace, extension.name), ("rel/ns", "foo"))
        self.assertEqual(parse_pidf(document.to_bytes()), document)
