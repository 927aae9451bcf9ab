"""Property tests for cpimgw.cpim.pidf: build -> to_bytes -> parse gives an equal value.

Documents are drawn with hypothesis from the model (tuples, notes in
languages, priorities, RPID activities/mood/user-input, extension elements)
and built with :func:`build_pidf`; a second property checks that arbitrary
or mutated octets only ever raise :class:`ParseError`.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from xml.sax.saxutils import escape

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.pidf import (
    Activities,
    Contact,
    Device,
    Extension,
    Mood,
    Note,
    Person,
    PresenceDocument,
    Status,
    Tuple,
    UserInput,
    build_pidf,
    parse_pidf,
    tuple_id_for,
)
from cpimgw.cpim.uri import pres_uri

SETTINGS = settings(max_examples=200, deadline=None)

ACTIVITIES = ("away", "busy", "meeting", "on-the-phone", "lunch", "travel", "vacation", "working", "unknown")
MOODS = ("happy", "sad", "angry", "bored", "in_love", "sleepy", "unknown")

xml_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="\ufffe\uffff")
    | st.sampled_from("\n\t <>&'\""),
    max_size=30,
)
langs = st.sampled_from([None, "en", "fr", "de-CH", "cs", "ja"])
notes = st.lists(st.builds(Note, xml_text, langs), max_size=3).map(tuple)
priorities = st.none() | st.integers(0, 1000).map(lambda n: Decimal(n) / 1000)
uris = st.from_regex(r"\A(im|tel|sip|mailto):[a-z0-9]{1,8}(@[a-z]{1,8}\.com)?\Z")
timestamps = st.none() | st.datetimes(
    min_value=datetime.datetime(1990, 1, 1), max_value=datetime.datetime(2100, 1, 1)
).map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z")
extensions = st.lists(
    st.builds(
        lambda number, name, text: Extension.from_xml(
            f'<x{number}:{name} xmlns:x{number}="urn:example:ext{number}">{escape(text)}</x{number}:{name}>'
        ),
        st.integers(0, 3),
        st.sampled_from(["geo", "location", "mytag", "complexExtension"]),
        xml_text,
    ),
    max_size=2,
).map(tuple)
statuses = st.builds(
    Status,
    basic=st.sampled_from(["open", "closed"]),
    xmpp_show=st.none() | st.sampled_from(["away", "chat", "dnd", "xa"]),
    im=st.none() | st.sampled_from(["away", "busy"]),
    extensions=extensions,
)
user_inputs = st.none() | st.builds(
    UserInput, state=st.sampled_from(["active", "idle"]), idle_threshold=st.none() | st.integers(0, 10**6)
)


@st.composite
def documents(draw: st.DrawFn) -> PresenceDocument:
    instances = draw(st.lists(st.text(max_size=12), max_size=4, unique_by=tuple_id_for))
    tuples = [
        Tuple(
            tuple_id_for(instance),
            draw(statuses),
            draw(st.none() | st.builds(Contact, uris, priorities)),
            notes=draw(notes),
            timestamp=draw(timestamps),
            extensions=draw(extensions),
            user_input=draw(user_inputs),
        )
        for instance in instances
    ]
    persons = [
        Person(
            f"p{number}",
            activities=draw(
                st.lists(
                    st.builds(
                        Activities,
                        values=st.lists(st.sampled_from(ACTIVITIES), min_size=1, max_size=3).map(tuple),
                        notes=notes,
                        other=notes,
                        from_=timestamps,
                        until=timestamps,
                    ),
                    max_size=2,
                ).map(tuple)
            ),
            mood=draw(
                st.lists(
                    st.builds(Mood, values=st.lists(st.sampled_from(MOODS), min_size=1, max_size=2).map(tuple)),
                    max_size=1,
                ).map(tuple)
            ),
            user_input=draw(user_inputs),
            notes=draw(notes),
            timestamp=draw(timestamps),
            extensions=draw(extensions),
        )
        for number in range(draw(st.integers(0, 2)))
    ]
    devices = [
        Device(f"d{number}", device_id=f"urn:uuid:{number}", user_input=draw(user_inputs), notes=draw(notes))
        for number in range(draw(st.integers(0, 1)))
    ]
    return build_pidf(
        pres_uri(draw(st.from_regex(r"\A[a-z0-9]{1,10}\Z")), "example.com"),
        tuples,
        draw(notes),
        persons,
        devices,
        draw(extensions),
    )


class RoundTripProperties(unittest.TestCase):
    @SETTINGS
    @given(documents())
    def test_build_serialise_parse_is_identity(self, document: PresenceDocument) -> None:
        octets = document.to_bytes()
        parsed = parse_pidf(octets)
        self.assertEqual(parsed, document)
        self.assertEqual(parsed.raw, octets)
        # Regenerating what was parsed gives the same octets again.
        self.assertEqual(parse_pidf(parsed.to_bytes()).to_bytes(), parsed.to_bytes())


class HostileProperties(unittest.TestCase):
    @SETTINGS
    @given(st.binary(max_size=300))
    def test_arbitrary_octets_only_raise_parse_errors(self, data: bytes) -> None:
        try:
            parse_pidf(data)
        except ParseError:
            pass

    @SETTINGS
    @given(documents(), st.data())
    def test_mutated_documents_only_raise_parse_errors(self, document: PresenceDocument, data: st.DataObject) -> None:
        octets = bytearray(document.to_bytes())
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, len(octets) - 1))
            choice = data.draw(st.integers(0, 2))
            if choice == 0:
                del octets[position]
            elif choice == 1:
                octets.insert(position, data.draw(st.sampled_from(b"<>&;:/\"'=!?x\x00\xff")))
            else:
                octets[position] = data.draw(st.integers(0, 255))
        try:
            parse_pidf(bytes(octets))
        except ParseError:
            pass
