"""Differential tests of :func:`cpimgw.cpim.message.build_message`'s direct construction.

``build_message`` builds its :class:`CPIMMessage` from what it writes instead
of parsing its own output (the SIP/XMPP data path's cost, perf-reliability
A2).  These tests pin that the direct result is equal, field for field
(header values, line numbers, octet offsets, structured values), to what
:func:`parse_message` makes of the same octets, and that inputs the builder
cannot write fail the same way as before (the slow path parses them back).
"""

from __future__ import annotations

import datetime

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.message import CORE_NAMESPACE, CPIMAddress, build_message, parse_message
from cpimgw.cpim.uri import im_uri

from tests.cpim.test_message_properties import (
    addresses,
    bodies,
    content_types,
    date_times,
    display_names,
    names,
    namespaces,
    texts,
    uri_text,
)

SETTINGS = settings(max_examples=200, deadline=None)
langs = st.from_regex(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8}){0,2}", fullmatch=True)
# Duplicates allowed here: the direct path must refuse what the parser refuses.
any_subjects = st.lists(st.tuples(st.none() | langs | st.just("i-default"), texts), max_size=3)
any_params = st.lists(st.tuples(names, st.text(max_size=8)), max_size=3)
any_extensions = st.lists(st.tuples(namespaces, names, names, texts, any_params), max_size=3)


def parsed_again(message):  # type: ignore[no-untyped-def]
    required = [name for header in message.headers if header.local_name == "Require"
                and header.namespace == CORE_NAMESPACE for name in header.parsed]
    return parse_message(message.to_bytes(), max_size=max(len(message.raw), 1 << 20),
                         understood=frozenset(required))


class DirectEqualsParsedTests(SynchronousTestCase):
    @SETTINGS
    @given(
        sender=addresses,
        sender_name=display_names,
        recipients=st.lists(st.tuples(display_names, addresses), min_size=1, max_size=3),
        cc=st.lists(st.tuples(display_names, addresses), max_size=2),
        date_time=date_times,
        subjects=any_subjects,
        extensions=any_extensions,
        require=st.lists(st.sampled_from(["x.Name", "feature", "{urn:xmpp:receipts}request"]), max_size=2),
        body=bodies,
        content_type=content_types,
        content_language=st.none() | langs,
    )
    def test_same_message_or_same_error(self, sender, sender_name, recipients, cc, date_time, subjects,
                                        extensions, require, body, content_type, content_language) -> None:
        kwargs = dict(
            sender_name=sender_name,
            cc=[CPIMAddress(name, uri_text(uri)) for name, uri in cc],
            date_time=date_time, subjects=subjects, extensions=extensions, require=require,
            content_headers=[("Content-Language", content_language)] if content_language else (),
        )
        recipients_ = [CPIMAddress(name, uri_text(uri)) for name, uri in recipients]
        try:
            built = build_message(sender, recipients_, body, content_type, **kwargs)
        except (ParseError, UnicodeEncodeError) as error:
            # Whatever the builder refuses, it refuses with a parse error (or
            # cannot encode a lone surrogate, as before).
            self.assertIsInstance(error, (ParseError, UnicodeEncodeError))
            return
        self.assertEqual(built, parsed_again(built))


class ExamplesTests(SynchronousTestCase):
    def test_sip_path_message(self) -> None:
        """The message the SIP adapter builds for a text/plain MESSAGE, line by line."""
        built = build_message(im_uri("sipp", "sip.test"), [im_uri("bob", "xmpp.test")], b"hello",
                              "text/plain", subjects=[("en", "hi")],
                              content_headers=[("Content-Language", "en")])
        self.assertEqual(built.to_bytes(), b"From: <im:sipp@sip.test>\r\nTo: <im:bob@xmpp.test>\r\n"
                                           b"Subject:;lang=en hi\r\n\r\nContent-Type: text/plain\r\n"
                                           b"Content-Language: en\r\n\r\nhello")
        self.assertEqual(built, parsed_again(built))
        self.assertEqual([(h.line, h.offset) for h in built.headers], [(1, 0), (2, 26), (3, 50)])
        self.assertEqual(built.body_offset, 123)
        self.assertEqual(built.sender.cpim_uri, im_uri("sipp", "sip.test"))

    def test_duplicate_subject_language_refused(self) -> None:
        with self.assertRaises(ParseError) as caught:
            build_message("im:a@b.example", ["im:c@d.example"], b"", subjects=[(None, "x"), ("i-default", "y")])
        self.assertIn("Subject repeats", caught.exception.reason)

    def test_duplicate_extension_parameter_refused(self) -> None:
        with self.assertRaises(ParseError) as caught:
            build_message("im:a@b.example", ["im:c@d.example"], b"",
                          extensions=[("urn:x", "x", "N", "v", [("p", "1"), ("p", "2")])])
        self.assertIn("given twice", caught.exception.reason)

    def test_extension_in_core_namespace_is_parsed_back(self) -> None:
        built = build_message("im:a@b.example", ["im:c@d.example"], b"",
                              extensions=[(CORE_NAMESPACE, "x", "Subject", "hello", [])])
        self.assertEqual(built.subjects, ((None, "hello"),))
        self.assertEqual(built, parsed_again(built))

    def test_bad_im_uri_is_the_parsers_error(self) -> None:
        with self.assertRaises(ParseError) as caught:
            build_message("im:a@b@c.example", ["im:c@d.example"], b"")
        self.assertEqual(caught.exception.line, 1)

    def test_date_time_value(self) -> None:
        when = datetime.datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
        built = build_message("im:a@b.example", ["im:c@d.example"], b"", date_time=when)
        self.assertEqual(built.date_time.text, "2026-01-02T03:04:05.6+02:00")
        self.assertEqual(built.date_time.value, when)
        self.assertEqual(built, parsed_again(built))
