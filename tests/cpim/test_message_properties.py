"""Property tests of the Message/CPIM codec (RFC 3862) in cpimgw.cpim.message.

- Messages generated through ``build_message`` (unicode display names,
  subjects with languages, controls, quotes, backslashes, extension headers
  with parameters, binary bodies holding CRLFCRLF and NUL) parse back to the
  values given and to the same octets.
- Random mutations and truncations of valid messages never raise anything but
  a ``ParseError``; whatever parses still round-trips byte for byte.
"""

from __future__ import annotations

import datetime
import json

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.message import (
    CPIMAddress,
    build_message,
    decode_escapes,
    encode_escapes,
    find_cpim_in_multipart,
    parse_message,
)
from cpimgw.cpim.uri import CPIMURI

from tests.cpim.test_message import EXAMPLE_5_1, EXAMPLE_5_2, SIGNED_CONTENT_TYPE

SETTINGS = settings(max_examples=200, deadline=None)

NAME_CHARS = "!#$%&'*+-^_`|~" + "abcXYZ019"
names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=8)
langs = st.from_regex(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8}){0,2}", fullmatch=True)
# Any text: edge spaces are written as \u0020 escapes by the builder.
texts = st.text(max_size=40)
domains = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,2}\.(com|example|org)", fullmatch=True)
cpim_uris = st.builds(CPIMURI, st.sampled_from(["im", "pres"]), st.text(min_size=1, max_size=12), domains)
other_uris = st.sampled_from(["sip:alice@example.com;transport=tcp", "xmpp:juliet@example.com/balcony", "tel:+1-201-555-0123", "mailto:x@y.org?subject=a"])
addresses = st.one_of(cpim_uris, other_uris)
display_names = st.none() | st.text(max_size=20)
namespaces = st.sampled_from(["mid:MessageFeatures@id.foo.com", "http://example.com/ns/a", "urn:xmpp:receipts", "mid:other@x"])
param_values = st.text(max_size=12)
params = st.tuples(
    st.none() | langs,
    st.lists(st.tuples(names.filter(lambda n: n != "lang"), param_values), max_size=3, unique_by=lambda p: p[0]),
).map(lambda pair: ([("lang", pair[0])] if pair[0] else []) + pair[1])
extensions = st.lists(st.tuples(namespaces, names, names, texts, params), max_size=4)
subjects = st.lists(st.tuples(st.none() | langs, texts), max_size=3, unique_by=lambda s: (s[0] or "i-default").lower())
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: datetime.timezone(datetime.timedelta(minutes=m)))
date_times = st.none() | st.datetimes(timezones=offsets)
bodies = st.binary(max_size=64) | st.builds(lambda a, b: a + b"\r\n\r\n\x00" + b, st.binary(max_size=16), st.binary(max_size=16))
content_types = st.sampled_from(["text/plain; charset=utf-8", "application/octet-stream", "text/xml; charset=us-ascii", "message/cpim"])


def uri_text(address: CPIMURI | str) -> str:
    return address if isinstance(address, str) else str(address)


class BuildThenParseTests(SynchronousTestCase):
    @SETTINGS
    @given(
        sender=addresses,
        sender_name=display_names,
        recipients=st.lists(st.tuples(display_names, addresses), min_size=1, max_size=3),
        cc=st.lists(st.tuples(display_names, addresses), max_size=2),
        date_time=date_times,
        subjects=subjects,
        extensions=extensions,
        body=bodies,
        content_type=content_types,
    )
    def test_values_and_octets(self, sender, sender_name, recipients, cc, date_time, subjects, extensions, body, content_type) -> None:
        message = build_message(
            sender,
            [CPIMAddress(name, uri_text(uri)) for name, uri in recipients],
            body,
            content_type,
            sender_name=sender_name,
            cc=[CPIMAddress(name, uri_text(uri)) for name, uri in cc],
            date_time=date_time,
            subjects=subjects,
            extensions=extensions,
            require=[f"{{{ns}}}{name}" for ns, _, name, _, _ in extensions[:1]],
            content_headers=[("Content-ID", "<1@x>")],
        )
        self.assertEqual((message.sender.display_name, message.sender.uri), (sender_name, uri_text(sender)))
        if isinstance(sender, CPIMURI):
            self.assertEqual(message.sender.cpim_uri, sender)
        self.assertEqual([(a.display_name, a.uri) for a in message.recipients], [(n, uri_text(u)) for n, u in recipients])
        self.assertEqual([(a.display_name, a.uri) for a in message.cc], [(n, uri_text(u)) for n, u in cc])
        if date_time is None:
            self.assertIsNone(message.date_time)
        else:
            self.assertEqual(message.date_time.value, date_time)
            self.assertEqual(message.date_time.value.utcoffset(), date_time.utcoffset())
        self.assertEqual(message.subjects, tuple(subjects))
        self.assertEqual(message.extension_headers, tuple((ns, name, value, tuple(p)) for ns, _, name, value, p in extensions))
        self.assertEqual((message.body, message.content_type), (body, content_type))
        self.assertEqual(message.content_headers, (("Content-Type", content_type), ("Content-ID", "<1@x>")))
        raw = message.to_bytes()
        self.assertTrue(raw.endswith(b"\r\n\r\n" + body))
        again = parse_message(raw, understood=frozenset(message.require))
        self.assertEqual(again, message)
        self.assertEqual(again.to_bytes(), raw)
        json.dumps(message.to_dict())

    @SETTINGS
    @given(st.text())
    def test_escapes_round_trip(self, text: str) -> None:
        encoded = encode_escapes(text)
        self.assertEqual(decode_escapes(encoded), text)
        self.assertFalse(any(ord(c) < 0x20 or ord(c) == 0x7F for c in encoded))
        quoted = encode_escapes(text, quoted=True)
        self.assertEqual(decode_escapes(quoted), text)


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    for kind, position, chunk in edits:
        position %= len(data) + 1
        if kind == 0:
            data = data[:position] + chunk + data[position:]
        elif kind == 1:
            data = data[:position] + data[position + len(chunk) :]
        elif kind == 2:
            data = data[:position] + chunk + data[position + len(chunk) :]
        else:
            data = data[:position]
    return data


interesting = st.sampled_from([b"\r\n", b"\n", b"\r", b" ", b"\t", b"\x00", b"\\", b'"', b"<", b">", b";", b":", b".", b"\xff", b"\xc3", b"\\u", b"\r\n\r\n", b"--next", b";lang=", b"NS: ", b"Require: "])
edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1000), interesting | st.binary(min_size=1, max_size=4)), min_size=1, max_size=4)


class MutationTests(SynchronousTestCase):
    def check(self, data: bytes, understood: frozenset[str] | None = None) -> None:
        try:
            message = parse_message(data, understood=understood)
        except ParseError as error:
            self.assertIsInstance(error.reason, str)
            self.assertTrue(error.offset is None or 0 <= error.offset <= len(data), error)
            return
        self.assertEqual(message.to_bytes(), data)
        json.dumps(message.to_dict())

    @SETTINGS
    @given(edits, st.booleans())
    def test_mutated_example(self, changes, understand) -> None:
        self.check(mutate(EXAMPLE_5_1, changes), frozenset({"MyFeatures.VitalMessageOption"}) if understand else None)

    @SETTINGS
    @given(st.integers(0, len(EXAMPLE_5_1)))
    def test_truncated_example(self, length: int) -> None:
        self.check(EXAMPLE_5_1[:length], frozenset({"MyFeatures.VitalMessageOption"}))

    @SETTINGS
    @given(
        display_names, subjects, extensions, bodies, edits,
    )
    def test_mutated_built_message(self, name, subjects, extensions, body, changes) -> None:
        message = build_message("im:a@b.com", ["im:c@d.com"], body, sender_name=name, subjects=subjects, extensions=extensions)
        self.check(mutate(message.to_bytes(), changes))

    @SETTINGS
    @given(st.binary(max_size=200))
    def test_random_bytes(self, data: bytes) -> None:
        self.check(data)

    @SETTINGS
    @given(edits)
    def test_mutated_multipart(self, changes) -> None:
        data = mutate(EXAMPLE_5_2, changes)
        try:
            message = find_cpim_in_multipart(data, SIGNED_CONTENT_TYPE, understood=frozenset({"MyFeatures.VitalMessageOption"}))
        except ParseError:
            return
        if message is not None:
            self.assertIn(message.to_bytes(), data)
