"""Tests of the Message/CPIM codec (RFC 3862) in cpimgw.cpim.message.

Golden vectors: RFC 3862 §5.1 and §5.2 written out from the digest
(protocols.md §4.8), the header examples of §2.2 / §3.3-3.5 / §4.1-4.7, and
one test per parser edge case of digest §4.9.
"""

from __future__ import annotations

import datetime
import json

from twisted.trial.unittest import SynchronousTestCase

from cpimgw.cpim.errors import (
    LimitExceededError,
    MessageFormatError,
    NotUnderstoodError,
    ParseError,
)
from cpimgw.cpim.message import (
    CORE_NAMESPACE,
    CPIMAddress,
    NSDeclaration,
    build_message,
    decode_escapes,
    encode_escapes,
    find_cpim_in_multipart,
    format_date_time,
    parse_date_time,
    parse_message,
    qualified_name,
)
from cpimgw.cpim.uri import CPIMURI

MID = "mid:MessageFeatures@id.foo.com"
VITAL = frozenset({"MyFeatures.VitalMessageOption"})

CPIM_HEADERS_5_1 = (
    b"From: MR SANDERS <im:piglet@100akerwood.com>\r\n"
    b"To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n"
    b"DateTime: 2000-12-13T13:40:00-08:00\r\n"
    b"Subject: the weather will be fine today\r\n"
    b"Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n"
    b"NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n"
    b"Require: MyFeatures.VitalMessageOption\r\n"
    b"MyFeatures.VitalMessageOption: Confirmation-requested\r\n"
    b"MyFeatures.WackyMessageOption: Use-silly-font\r\n"
)
ENTITY_5_1 = (
    b"Content-type: text/xml; charset=utf-8\r\n"
    b"Content-ID: <1234567890@foo.com>\r\n"
    b"\r\n"
    b"<body>\r\n"
    b"Here is the text of my message.\r\n"
    b"</body>"
)
EXAMPLE_5_1 = b"Content-type: Message/CPIM\r\n\r\n" + CPIM_HEADERS_5_1 + b"\r\n" + ENTITY_5_1 + b"\r\n"

# RFC 3862 §5.2: the same object (with the To display name of the RFC's text)
# as the first part of multipart/signed.
SIGNED_CONTENT_TYPE = (
    "multipart/signed; boundary=next;\r\n"
    "              micalg=sha1;\r\n"
    "              protocol=application/pkcs7-signature"
)
SIGNED_PART_5_2 = (
    b"Content-type: Message/CPIM\r\n\r\n"
    + CPIM_HEADERS_5_1.replace(b"Depressed Donkey", b"Dopey Donkey")
    + b"\r\n"
    + ENTITY_5_1
)
EXAMPLE_5_2 = (
    b"--next\r\n"
    + SIGNED_PART_5_2
    + b"\r\n--next\r\n"
    b"Content-Type: application/pkcs7-signature\r\n"
    b"\r\n"
    b"(signature stuff)\r\n"
    b"--next--\r\n"
)

# The first two lines of every small test message: offsets 0 and 20, so the
# third line starts at offset 38.
FROM = b"From: <im:a@b.com>"
TO = b"To: <im:c@d.com>"
LINE3 = 38


def cpim(*lines: bytes, base: tuple[bytes, ...] = (FROM, TO), entity: bytes = b"Content-Type: text/plain\r\n\r\nhi") -> bytes:
    """A message with the base headers, then ``lines``, then ``entity``."""
    return b"\r\n".join(base + lines) + b"\r\n\r\n" + entity


class ParseErrorAssertions:
    def assert_rejected(self, data: bytes, line: int | None, offset: int | None, reason: str = "", error=MessageFormatError, **kw):
        exc = self.assertRaises(error, parse_message, data, **kw)  # type: ignore[attr-defined]
        self.assertEqual((exc.line, exc.offset), (line, offset))  # type: ignore[attr-defined]
        self.assertIn(reason, exc.reason)  # type: ignore[attr-defined]
        return exc


class Example51Tests(SynchronousTestCase):
    """RFC 3862 §5.1, field by field."""

    def setUp(self) -> None:
        self.message = parse_message(EXAMPLE_5_1, understood=VITAL)

    def test_identity(self) -> None:
        self.assertEqual(self.message.to_bytes(), EXAMPLE_5_1)
        self.assertEqual(self.message.raw, EXAMPLE_5_1)

    def test_mime_headers(self) -> None:
        self.assertEqual(self.message.mime_headers, (("Content-type", "Message/CPIM"),))

    def test_sender_and_recipients(self) -> None:
        sender = self.message.sender
        self.assertEqual(sender.display_name, "MR SANDERS")
        self.assertEqual(sender.uri, "im:piglet@100akerwood.com")
        self.assertEqual(sender.cpim_uri, CPIMURI("im", "piglet", "100akerwood.com"))
        self.assertEqual(
            self.message.recipients,
            (CPIMAddress("Depressed Donkey", "im:eeyore@100akerwood.com", CPIMURI("im", "eeyore", "100akerwood.com")),),
        )
        self.assertEqual(self.message.cc, ())

    def test_date_time(self) -> None:
        stamp = self.message.date_time
        self.assertEqual(stamp.text, "2000-12-13T13:40:00-08:00")
        self.assertEqual(stamp.value, datetime.datetime(2000, 12, 13, 21, 40, tzinfo=datetime.timezone.utc))
        self.assertEqual(stamp.value.utcoffset(), datetime.timedelta(hours=-8))

    def test_subjects(self) -> None:
        self.assertEqual(
            self.message.subjects,
            ((None, "the weather will be fine today"), ("fr", "beau temps prevu pour aujourd'hui")),
        )

    def test_namespaces_and_require(self) -> None:
        self.assertEqual(self.message.namespaces, (NSDeclaration("MyFeatures", MID),))
        self.assertEqual(self.message.require, ("MyFeatures.VitalMessageOption",))

    def test_extension_headers(self) -> None:
        self.assertEqual(
            self.message.extension_headers,
            (
                (MID, "VitalMessageOption", "Confirmation-requested", ()),
                (MID, "WackyMessageOption", "Use-silly-font", ()),
            ),
        )
        vital = self.message.header(MID, "VitalMessageOption")
        self.assertEqual(vital.name, "MyFeatures.VitalMessageOption")
        self.assertEqual(vital.prefix, "MyFeatures")
        self.assertEqual(vital.raw, b"MyFeatures.VitalMessageOption: Confirmation-requested")
        self.assertEqual(vital.qualified_name, "{mid:MessageFeatures@id.foo.com}VitalMessageOption")
        self.assertEqual((vital.line, vital.offset), (10, 345))
        self.assertIsNone(self.message.header(MID, "Absent"))

    def test_header_lines(self) -> None:
        headers = self.message.headers
        self.assertEqual([h.name for h in headers], [
            "From", "To", "DateTime", "Subject", "Subject", "NS", "Require",
            "MyFeatures.VitalMessageOption", "MyFeatures.WackyMessageOption",
        ])
        self.assertEqual(b"\r\n".join(h.raw for h in headers) + b"\r\n", CPIM_HEADERS_5_1)
        self.assertEqual((headers[0].line, headers[0].offset), (3, 30))
        self.assertEqual(headers[0].namespace, CORE_NAMESPACE)
        self.assertEqual(headers[4].params, (("lang", "fr"),))
        self.assertEqual(headers[4].raw_value, "beau temps prevu pour aujourd'hui")

    def test_entity(self) -> None:
        self.assertEqual(
            self.message.content_headers,
            (("Content-type", "text/xml; charset=utf-8"), ("Content-ID", "<1234567890@foo.com>")),
        )
        self.assertEqual(self.message.content_type, "text/xml; charset=utf-8")
        self.assertEqual(self.message.content_header("CONTENT-ID"), "<1234567890@foo.com>")
        self.assertEqual(self.message.body, b"<body>\r\nHere is the text of my message.\r\n</body>\r\n")
        self.assertEqual(EXAMPLE_5_1[self.message.body_offset:], self.message.body)

    def test_to_dict(self) -> None:
        form = self.message.to_dict()
        self.assertEqual(json.loads(json.dumps(form)), form)
        self.assertEqual(form["from"], {"display_name": "MR SANDERS", "uri": "im:piglet@100akerwood.com"})
        self.assertEqual(form["date_time"], {"text": "2000-12-13T13:40:00-08:00", "iso": "2000-12-13T13:40:00-08:00"})
        self.assertEqual(form["subjects"][1], {"lang": "fr", "text": "beau temps prevu pour aujourd'hui"})
        self.assertEqual(form["namespaces"], [{"prefix": "MyFeatures", "uri": MID}])
        self.assertEqual(form["body"], {
            "encoding": "text", "charset": "utf-8",
            "data": "<body>\r\nHere is the text of my message.\r\n</body>\r\n",
        })

    def test_require_not_understood(self) -> None:
        error = self.assertRaises(NotUnderstoodError, parse_message, EXAMPLE_5_1)
        self.assertEqual(error.names, ("MyFeatures.VitalMessageOption",))
        self.assertEqual((error.line, error.offset), (9, 305))
        self.assertIsInstance(error, MessageFormatError)

    def test_require_understood_qualified(self) -> None:
        message = parse_message(EXAMPLE_5_1, understood=frozenset({qualified_name(MID, "VitalMessageOption")}))
        self.assertEqual(message.require, ("MyFeatures.VitalMessageOption",))

    def test_require_understood_other_prefix_does_not_match(self) -> None:
        self.assertRaises(NotUnderstoodError, parse_message, EXAMPLE_5_1, understood=frozenset({"Other.VitalMessageOption"}))
        self.assertRaises(NotUnderstoodError, parse_message, EXAMPLE_5_1, understood=frozenset({qualified_name(MID, "Wacky")}))

    def test_without_outer_mime_header(self) -> None:
        data = CPIM_HEADERS_5_1 + b"\r\n" + ENTITY_5_1
        message = parse_message(data, understood=VITAL)
        self.assertEqual(message.mime_headers, ())
        self.assertEqual(message.to_bytes(), data)
        self.assertEqual((message.headers[0].line, message.headers[0].offset), (1, 0))
        self.assertEqual(message.body, b"<body>\r\nHere is the text of my message.\r\n</body>")


class Example52Tests(SynchronousTestCase):
    """RFC 3862 §5.2: the signed object is read without altering a byte."""

    def test_find_signed_part(self) -> None:
        message = find_cpim_in_multipart(EXAMPLE_5_2, SIGNED_CONTENT_TYPE, understood=VITAL)
        self.assertEqual(message.to_bytes(), SIGNED_PART_5_2)
        self.assertEqual(EXAMPLE_5_2[8 : 8 + len(SIGNED_PART_5_2)], message.raw)
        self.assertEqual(message.recipients[0].display_name, "Dopey Donkey")
        self.assertEqual(message.sender.display_name, "MR SANDERS")
        self.assertEqual(message.body, b"<body>\r\nHere is the text of my message.\r\n</body>")
        self.assertEqual(message.mime_headers, (("Content-type", "Message/CPIM"),))

    def test_signed_part_require_enforced(self) -> None:
        error = self.assertRaises(NotUnderstoodError, find_cpim_in_multipart, EXAMPLE_5_2, SIGNED_CONTENT_TYPE)
        # offsets are into the multipart body: 8 octets of "--next\r\n" first
        self.assertEqual((error.line, error.offset), (10, 8 + 305 - 4))  # 'Dopey' is 4 octets shorter than 'Depressed'

    def test_no_cpim_part(self) -> None:
        data = b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n\r\nno headers\r\n--b--\r\n"
        self.assertIsNone(find_cpim_in_multipart(data, 'multipart/mixed; boundary="b"'))

    def test_nested_multipart(self) -> None:
        inner = b"--in\r\n" + SIGNED_PART_5_2 + b"\r\n--in--"
        data = b"preamble\r\n--out\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n" + inner + b"\r\n--out--\r\n"
        message = find_cpim_in_multipart(data, "multipart/mixed; boundary=out", understood=VITAL)
        self.assertEqual(message.to_bytes(), SIGNED_PART_5_2)

    def test_boundary_text_inside_a_line_is_not_a_delimiter(self) -> None:
        data = b"--next\r\n" + SIGNED_PART_5_2 + b"\r\n--nextish\r\n\r\n--next--"
        message = find_cpim_in_multipart(data, SIGNED_CONTENT_TYPE, understood=VITAL)
        self.assertEqual(message.raw, SIGNED_PART_5_2 + b"\r\n--nextish\r\n")

    def test_edge_spaces_survive_as_escapes(self) -> None:
        """§2.2 forbids whitespace at the ends of a line: edge spaces travel as \\u0020."""
        message = build_message("im:a@b.com", ["im:c@d.com"], b"", subjects=[(None, " leading"), ("fr", "trailing  ")])
        self.assertIn(b"Subject: \\u0020leading\r\n", message.raw)
        self.assertIn(b"Subject:;lang=fr trailing\\u0020\\u0020\r\n", message.raw)
        self.assertEqual(parse_message(message.raw).subjects, ((None, " leading"), ("fr", "trailing  ")))
        blank = build_message("im:a@b.com", ["im:c@d.com"], b"", subjects=[(None, "  ")])
        self.assertEqual(parse_message(blank.raw).subjects, ((None, "  "),))

    def test_rejections(self) -> None:
        error = self.assertRaises(MessageFormatError, find_cpim_in_multipart, EXAMPLE_5_2, "multipart/signed")
        self.assertIn("boundary", error.reason)
        error = self.assertRaises(MessageFormatError, find_cpim_in_multipart, EXAMPLE_5_2, "text/plain")
        self.assertIn("not a multipart", error.reason)
        error = self.assertRaises(MessageFormatError, find_cpim_in_multipart, b"--next\r\nx", SIGNED_CONTENT_TYPE)
        self.assertEqual((error.reason, error.offset), ("multipart without its closing delimiter", 9))


class EdgeCase1NameCaseTests(SynchronousTestCase, ParseErrorAssertions):
    """Digest §4.9 item 1: header names are case-sensitive."""

    def test_lower_case_from_is_unknown(self) -> None:
        message = parse_message(cpim(b"from: <im:x@y.com>"))
        self.assertEqual(message.sender.uri, "im:a@b.com")
        self.assertEqual(message.extension_headers, ((CORE_NAMESPACE, "from", "<im:x@y.com>", ()),))
        self.assertIsNone(message.headers[2].parsed)

    def test_only_lower_case_from_means_no_from(self) -> None:
        self.assert_rejected(cpim(base=(b"from: <im:a@b.com>", TO)), 1, 0, "no From header")


class EdgeCase2WhitespaceTests(SynchronousTestCase, ParseErrorAssertions):
    """Digest §4.9 item 2: strict whitespace and line ends."""

    def test_missing_space_after_colon(self) -> None:
        self.assert_rejected(cpim(b"Subject:x"), 3, LINE3 + 8, "exactly one SP")

    def test_nothing_after_colon(self) -> None:
        self.assert_rejected(cpim(b"Subject:"), 3, LINE3 + 8, "exactly one SP")

    def test_two_spaces(self) -> None:
        self.assert_rejected(cpim(b"Subject:  x"), 3, LINE3 + 9, "more than one SP")

    def test_tab(self) -> None:
        self.assert_rejected(cpim(b"Subject:\tx"), 3, LINE3 + 8, "TAB")

    def test_trailing_space(self) -> None:
        self.assert_rejected(cpim(b"Subject: x "), 3, LINE3 + 10, "end of a line")

    def test_space_before_colon(self) -> None:
        self.assert_rejected(cpim(b"Subject : x"), 3, LINE3 + 7, "Name ':'")

    def test_bare_lf_inside_block(self) -> None:
        self.assert_rejected(cpim(b"Subject: x\nFoo: y"), 3, LINE3 + 10, "bare LF")

    def test_bare_lf_everywhere(self) -> None:
        self.assert_rejected(b"From: <im:a@b.com>\nTo: <im:c@d.com>\n\nhi", 1, 18, "bare LF")

    def test_bare_cr(self) -> None:
        self.assert_rejected(cpim(b"Subject: x\rFoo: y"), 3, LINE3 + 10, "bare CR")

    def test_folded_line(self) -> None:
        self.assert_rejected(cpim(b"Subject: x", b" continued"), 4, LINE3 + 12, "begins with whitespace")

    def test_empty_value_is_allowed(self) -> None:
        self.assertEqual(parse_message(cpim(b"Subject: ")).subjects, ((None, ""),))


class EdgeCase3ParameterTests(SynchronousTestCase, ParseErrorAssertions):
    """Digest §4.9 item 3: parameters right after the colon."""

    def test_lang(self) -> None:
        header = parse_message(cpim(b"Subject:;lang=fr texte")).headers[2]
        self.assertEqual((header.lang, header.value, header.params), ("fr", "texte", (("lang", "fr"),)))

    def test_extension_params_with_quoted_string(self) -> None:
        header = parse_message(cpim(b'Key:;lang=en;foo="a\\"b";n=42 value')).headers[2]
        self.assertEqual(header.params, (("lang", "en"), ("foo", 'a"b'), ("n", "42")))
        self.assertEqual((header.lang, header.value), ("en", "value"))

    def test_quoted_param_with_spaces_and_semicolons(self) -> None:
        header = parse_message(cpim(b'Key:;foo="x; y=z" v')).headers[2]
        self.assertEqual((header.params, header.value), ((("foo", "x; y=z"),), "v"))

    def test_space_after_semicolon_value(self) -> None:
        # after the SP everything is the value, even text that looks like a parameter
        header = parse_message(cpim(b"Subject: ;lang=fr x")).headers[2]
        self.assertEqual((header.lang, header.value), (None, ";lang=fr x"))

    def test_empty_param_name(self) -> None:
        self.assert_rejected(cpim(b"Key:;=x v"), 3, LINE3 + 4, "parameter")

    def test_unterminated_quote(self) -> None:
        self.assert_rejected(cpim(b'Key:;a="x\\" v'), 3, LINE3 + 4, "parameter")

    def test_bad_language_tag(self) -> None:
        self.assert_rejected(cpim(b"Subject:;lang=toolongtag v"), 3, LINE3 + 8, "language tag")

    def test_duplicate_param(self) -> None:
        self.assert_rejected(cpim(b"Key:;a=1;a=2 v"), 3, LINE3 + 8, "twice")

    def test_subject_takes_only_lang(self) -> None:
        self.assert_rejected(cpim(b"Subject:;foo=1 v"), 3, LINE3, "only lang")

    def test_from_takes_no_params(self) -> None:
        self.assert_rejected(cpim(base=(b"From:;lang=en <im:a@b.com>", TO)), 1, 0, "From takes no parameters")


class EdgeCase4DisplayNameTests(SynchronousTestCase, ParseErrorAssertions):
    """Digest §4.9 item 4 / §4.6: Formal-name forms."""

    def sender(self, value: bytes) -> CPIMAddress:
        return parse_message(cpim(base=(b"From: " + value, TO))).sender

    def test_token_form(self) -> None:
        self.assertEqual(self.sender(b"Winnie the Pooh <im:pooh@100akerwood.com>").display_name, "Winnie the Pooh")

    def test_quoted_form_with_separators(self) -> None:
        self.assertEqual(self.sender(b'"Pooh, Bear" <im:p@b.com>').display_name, "Pooh, Bear")

    def test_quoted_form_without_space(self) -> None:
        self.assertEqual(self.sender(b'"Pooh"<im:p@b.com>').display_name, "Pooh")

    def test_escapes_in_quotes(self) -> None:
        self.assertEqual(self.sender(b'"Pooh \\"Bear\\" \\\\ \\u00e9" <im:p@b.com>').display_name, 'Pooh "Bear" \\ \u00e9')

    def test_utf8(self) -> None:
        self.assertEqual(self.sender("Éric Dürand <im:e@b.com>".encode()).display_name, "Éric Dürand")

    def test_absent(self) -> None:
        address = self.sender(b"<im:p@b.com>")
        self.assertEqual((address.display_name, address.uri), (None, "im:p@b.com"))

    def test_empty_quoted(self) -> None:
        self.assertEqual(self.sender(b'"" <im:p@b.com>').display_name, "")

    def test_two_spaces_before_uri(self) -> None:
        self.assert_rejected(cpim(base=(b"From: Pooh  <im:p@b.com>", TO)), 1, 6, "Formal-name")

    def test_separator_in_token_form(self) -> None:
        self.assert_rejected(cpim(base=(b"From: Pooh, Bear <im:p@b.com>", TO)), 1, 6, "Formal-name")

    def test_no_space_before_uri_in_token_form(self) -> None:
        self.assert_rejected(cpim(base=(b"From: Pooh<im:p@b.com>", TO)), 1, 6, "Formal-name")

    def test_other_scheme_kept_as_text(self) -> None:
        address = self.sender(b"Alice <sip:alice@example.com;transport=tcp>")
        self.assertEqual((address.uri, address.cpim_uri), ("sip:alice@example.com;transport=tcp", None))

    def test_pres_uri_parsed(self) -> None:
        self.assertEqual(self.sender(b"<pres:p%20q@B.com>").cpim_uri, CPIMURI("pres", "p q", "B.com"))

    def test_bad_im_uri(self) -> None:
        self.assert_rejected(cpim(base=(b"From: <im:a@b_c.com>", TO)), 1, 7 + 5, "bad im: URI")

    def test_relative_uri(self) -> None:
        self.assert_rejected(cpim(base=(b"From: <piglet>", TO)), 1, 7, "not an absolute URI")

    def test_space_in_uri(self) -> None:
        self.assert_rejected(cpim(base=(b"From: <im:a @b.com>", TO)), 1, 7, "not an absolute URI")


class EdgeCase5EscapeTests(SynchronousTestCase):
    """Digest §4.9 item 5 / §4.4."""

    def subject(self, raw: bytes) -> str:
        return parse_message(cpim(b"Subject: " + raw)).subjects[0][1]

    def test_unicode_escape(self) -> None:
        self.assertEqual(self.subject(b"bell\\u0007"), "bell\x07")

    def test_backslash_and_quotes(self) -> None:
        self.assertEqual(self.subject(b"a\\\\b\\\"c\\'d"), "a\\b\"c'd")

    def test_short_forms(self) -> None:
        self.assertEqual(self.subject(b"\\b\\t\\n\\r."), "\b\t\n\r.")

    def test_unknown_escape(self) -> None:
        self.assertEqual(self.subject(b"\\q\\u12"), "qu12")

    def test_lone_trailing_backslash(self) -> None:
        self.assertEqual(self.subject(b"abc\\"), "abc")

    def test_hex_case(self) -> None:
        self.assertEqual(self.subject(b"\\u00E9\\u00e9\\u00Ea"), "\u00e9\u00e9\u00ea")

    def test_surrogate_pair(self) -> None:
        self.assertEqual(self.subject(b"\\uD83D\\ude00"), "\U0001f600")
        self.assertEqual(self.subject(b"\\ud800x"), "\ud800x")

    def test_raw_value_kept(self) -> None:
        header = parse_message(cpim(b"Subject: a\\tb")).headers[2]
        self.assertEqual((header.raw_value, header.value), ("a\\tb", "a\tb"))

    def test_encode(self) -> None:
        self.assertEqual(encode_escapes("a\\b\x08\t\n\r\x00\x1b\x7f\"'é"), "a\\\\b\\b\\t\\n\\r\\u0000\\u001B\\u007F\"'é")
        self.assertEqual(encode_escapes('say "hi"', quoted=True), 'say \\"hi\\"')
        self.assertEqual(decode_escapes(encode_escapes("x\x01\\\"\n")), "x\x01\\\"\n")


class EdgeCase6NamespaceTests(SynchronousTestCase, ParseErrorAssertions):
    """Digest §4.9 item 6 / §4.5."""

    def test_prefix_before_declaration(self) -> None:
        self.assert_rejected(cpim(b"P.X: 1", b"NS: P <mid:a>"), 3, LINE3, "before an NS header")

    def test_prefix_rebound(self) -> None:
        message = parse_message(cpim(b"NS: P <mid:a>", b"P.X: 1", b"NS: P <mid:b>", b"P.X: 2"))
        self.assertEqual(message.extension_headers, (("mid:a", "X", "1", ()), ("mid:b", "X", "2", ())))
        self.assertEqual(message.namespaces, (NSDeclaration("P", "mid:a"), NSDeclaration("P", "mid:b")))

    def test_default_namespace_changed(self) -> None:
        message = parse_message(cpim(b"Foo: 0", b"NS: <mid:d>", b"Foo: 1", b"From: <im:z@y.com>"))
        self.assertEqual(message.namespaces, (NSDeclaration(None, "mid:d"),))
        self.assertEqual(
            message.extension_headers,
            ((CORE_NAMESPACE, "Foo", "0", ()), ("mid:d", "Foo", "1", ()), ("mid:d", "From", "<im:z@y.com>", ())),
        )
        self.assertEqual(message.sender.uri, "im:a@b.com")

    def test_prefix_case_matters(self) -> None:
        self.assert_rejected(cpim(b"NS: MyFeatures <mid:a>", b"myfeatures.X: 1"), 4, LINE3 + 24, "'myfeatures'")

    def test_two_prefixes_same_uri(self) -> None:
        message = parse_message(cpim(b"NS: A <mid:a>", b"NS: B <mid:a>", b"A.X: 1", b"B.X: 2"))
        self.assertEqual([h.value for h in message.headers_named("mid:a", "X")], ["1", "2"])

    def test_ns_without_space(self) -> None:
        self.assertEqual(parse_message(cpim(b"NS: A<mid:a>")).namespaces, (NSDeclaration("A", "mid:a"),))

    def test_relative_namespace(self) -> None:
        self.assert_rejected(cpim(b"NS: A <features>"), 3, LINE3 + 4, "not an absolute URI")

    def test_namespace_with_fragment(self) -> None:
        self.assert_rejected(cpim(b"NS: A <http://x.example/ns#f>"), 3, LINE3 + 4, "fragment")

    def test_bad_ns_syntax(self) -> None:
        self.assert_rejected(cpim(b"NS: A.B <mid:x>"), 3, LINE3 + 4, "NS is")

    def test_too_many_dots_in_name(self) -> None:
        self.assert_rejected(cpim(b"NS: A <mid:a>", b"A.B.C: 1"), 4, LINE3 + 15 + 5, "Name ':'")


class EdgeCase7RequireTests(SynchronousTestCase, ParseErrorAssertions):
    """Digest §4.9 item 7 / §4.5."""

    def test_unknown_required_header(self) -> None:
        error = self.assert_rejected(cpim(b"NS: P <mid:a>", b"Require: P.X,From"), 4, LINE3 + 15, "P.X", error=NotUnderstoodError)
        self.assertEqual(error.names, ("P.X",))

    def test_feature_token(self) -> None:
        data = cpim(b"Require: Locale.MustRenderKanji")
        self.assertRaises(NotUnderstoodError, parse_message, data)
        self.assertEqual(parse_message(data, understood=frozenset({"Locale.MustRenderKanji"})).require, ("Locale.MustRenderKanji",))

    def test_core_names_always_understood(self) -> None:
        self.assertEqual(parse_message(cpim(b"Require: From,To,DateTime,cc")).require, ("From", "To", "DateTime", "cc"))

    def test_unknown_core_namespace_name(self) -> None:
        error = self.assertRaises(NotUnderstoodError, parse_message, cpim(b"Require: Subjects"))
        self.assertEqual(error.names, ("Subjects",))
        parse_message(cpim(b"Require: Subjects"), understood=frozenset({qualified_name(CORE_NAMESPACE, "Subjects")}))

    def test_syntax(self) -> None:
        self.assert_rejected(cpim(b"Require: From, To"), 3, LINE3 + 9, "Require is")

    def test_format_errors_come_first(self) -> None:
        # a malformed message is reported as such, not as "not understood"
        self.assert_rejected(cpim(b"Require: Unknown", entity=b"Content-Type: x\r\n"), 6, LINE3 + 18 + 19, "not ended")

    def test_require_is_not_core_after_default_change(self) -> None:
        message = parse_message(cpim(b"NS: <mid:d>", b"Require: X"))
        self.assertEqual((message.require, message.extension_headers), ((), (("mid:d", "Require", "X", ()),)))

    def test_required_name_after_default_change(self) -> None:
        # 'X' resolves in the default namespace in force at the Require line
        data = cpim(b"NS: C <urn:ietf:params:cpim-headers:>", b"NS: <mid:d>", b"C.Require: X")
        self.assertRaises(NotUnderstoodError, parse_message, data, understood=frozenset({qualified_name(CORE_NAMESPACE, "X")}))
        parse_message(data, understood=frozenset({qualified_name("mid:d", "X")}))


class EdgeCase8RepetitionTests(SynchronousTestCase, ParseErrorAssertions):
    """Digest §4.9 item 8 / §4.6 profile."""

    def test_several_to_and_cc(self) -> None:
        message = parse_message(cpim(b"To: B <im:b@x.com>", b"cc: <im:c@x.com>", b"cc: C2 <im:c2@x.com>"))
        self.assertEqual([a.uri for a in message.recipients], ["im:c@d.com", "im:b@x.com"])
        self.assertEqual([(a.display_name, a.uri) for a in message.cc], [(None, "im:c@x.com"), ("C2", "im:c2@x.com")])

    def test_subjects_with_different_languages(self) -> None:
        message = parse_message(cpim(b"Subject: hi", b"Subject:;lang=fr salut", b"Subject:;lang=fr-CA allo"))
        self.assertEqual(message.subjects, ((None, "hi"), ("fr", "salut"), ("fr-CA", "allo")))

    def test_subject_same_language(self) -> None:
        self.assert_rejected(cpim(b"Subject:;lang=fr a", b"Subject:;lang=FR b"), 4, LINE3 + 20, "same language")

    def test_untagged_equals_i_default(self) -> None:
        self.assert_rejected(cpim(b"Subject: a", b"Subject:;lang=i-default b"), 4, LINE3 + 12, "same language")

    def test_two_from(self) -> None:
        self.assert_rejected(cpim(b"From: <im:x@y.com>"), 3, LINE3, "From may appear only once")

    def test_two_date_time(self) -> None:
        self.assert_rejected(cpim(b"DateTime: 2000-01-01T00:00:00Z", b"DateTime: 2000-01-01T00:00:00Z"), 4, LINE3 + 32, "only once")

    def test_two_require(self) -> None:
        self.assert_rejected(cpim(b"Require: From", b"Require: To"), 4, LINE3 + 15, "only once")

    def test_no_to(self) -> None:
        self.assert_rejected(cpim(base=(FROM,)), 1, 0, "no To header")

    def test_extension_headers_repeat(self) -> None:
        self.assertEqual(len(parse_message(cpim(b"X: 1", b"X: 1")).extension_headers), 2)


class EdgeCase9EntityTests(SynchronousTestCase, ParseErrorAssertions):
    """Digest §4.9 item 9: the encapsulated MIME entity."""

    def test_no_content_headers(self) -> None:
        message = parse_message(cpim(entity=b"\r\nplain text"))
        self.assertEqual((message.content_headers, message.content_type, message.body), ((), "text/plain; charset=us-ascii", b"plain text"))
        self.assertEqual(message.to_dict()["body"], {"encoding": "text", "charset": "us-ascii", "data": "plain text"})

    def test_folded_content_header(self) -> None:
        message = parse_message(cpim(entity=b"Content-Type: text/plain;\r\n charset=utf-8\r\n\r\nx"))
        self.assertEqual(message.content_type, "text/plain; charset=utf-8")

    def test_content_headers_not_ended(self) -> None:
        self.assert_rejected(cpim(entity=b"Content-Type: text/plain\r\n"), 5, LINE3 + 2 + 26, "not ended by an empty line")

    def test_no_entity(self) -> None:
        self.assert_rejected(cpim(entity=b""), 4, LINE3 + 2, "encapsulated MIME headers are not ended")

    def test_cpim_headers_not_ended(self) -> None:
        self.assert_rejected(FROM + b"\r\n" + TO + b"\r\n", 3, 38, "CPIM message headers are not ended")

    def test_bad_content_header(self) -> None:
        self.assert_rejected(cpim(entity=b"no colon here\r\n\r\nx"), 4, LINE3 + 2, "not a MIME header")

    def test_empty_cpim_block(self) -> None:
        self.assert_rejected(b"\r\nContent-Type: text/plain\r\n\r\nx", 1, 0, "no CPIM message headers")

    def test_non_text_body_is_base64(self) -> None:
        message = parse_message(cpim(entity=b"Content-Type: application/octet-stream\r\n\r\n\x00\xff"))
        self.assertEqual(message.to_dict()["body"], {"encoding": "base64", "data": "AP8="})

    def test_undecodable_text_body_is_base64(self) -> None:
        message = parse_message(cpim(entity=b"Content-Type: text/plain; charset=utf-8\r\n\r\n\xff"))
        self.assertEqual(message.to_dict()["body"], {"encoding": "base64", "data": "/w=="})

    def test_outer_mime_block_with_other_headers(self) -> None:
        data = b"Content-Transfer-Encoding: 8bit\r\nCONTENT-TYPE: message/cpim; x=y\r\n\r\n" + cpim()
        message = parse_message(data)
        self.assertEqual(message.mime_headers, (("Content-Transfer-Encoding", "8bit"), ("CONTENT-TYPE", "message/cpim; x=y")))
        self.assertEqual((message.headers[0].line, message.headers[0].offset), (4, 68))


class EdgeCase10OctetTests(SynchronousTestCase, ParseErrorAssertions):
    """Digest §4.9 item 10: octets."""

    def test_non_utf8_header(self) -> None:
        self.assert_rejected(cpim(b"Subject: caf\xe9!"), 3, LINE3 + 12, "not UTF-8")

    def test_overlong_utf8(self) -> None:
        self.assert_rejected(cpim(b"Subject: \xc0\xaf"), 3, LINE3 + 9, "not UTF-8")

    def test_raw_control(self) -> None:
        self.assert_rejected(cpim(b"Subject: a\x00b"), 3, LINE3 + 10, "0x00")
        self.assert_rejected(cpim(b"Subject: a\x7fb"), 3, LINE3 + 10, "0x7F")

    def test_c1_controls_are_ucs_high(self) -> None:
        self.assertEqual(parse_message(cpim("Subject: a\u0085b".encode())).subjects, ((None, "a\u0085b"),))

    def test_very_long_line(self) -> None:
        text = "é" * 300_000
        message = parse_message(cpim(b"Subject: " + text.encode()))
        self.assertEqual(message.subjects, ((None, text),))

    def test_binary_body(self) -> None:
        body = b"\x00\r\n\r\n\xff\xfe\r\n\r\nContent-Type: x\r\n\r\n\x00"
        message = parse_message(cpim(entity=b"Content-Type: application/octet-stream\r\n\r\n" + body))
        self.assertEqual(message.body, body)
        self.assertEqual(message.content_headers, (("Content-Type", "application/octet-stream"),))

    def test_non_utf8_mime_header(self) -> None:
        self.assert_rejected(cpim(entity=b"Content-ID: \xff\r\n\r\nx"), 4, LINE3 + 2 + 12, "not UTF-8")

    def test_not_bytes(self) -> None:
        error = self.assertRaises(MessageFormatError, parse_message, "From: <im:a@b.com>")
        self.assertIn("not str", error.reason)

    def test_bytearray_and_memoryview(self) -> None:
        self.assertEqual(parse_message(bytearray(cpim())).raw, cpim())
        self.assertEqual(parse_message(memoryview(cpim())).raw, cpim())


class EdgeCase11DateTimeTests(SynchronousTestCase, ParseErrorAssertions):
    """Digest §4.9 item 11: RFC 3339."""

    def stamp(self, text: bytes) -> datetime.datetime:
        return parse_message(cpim(b"DateTime: " + text)).date_time.value

    def test_zulu(self) -> None:
        self.assertEqual(self.stamp(b"2001-02-01T17:16:49Z"), datetime.datetime(2001, 2, 1, 17, 16, 49, tzinfo=datetime.timezone.utc))

    def test_offset(self) -> None:
        value = self.stamp(b"2001-02-01T12:16:49-05:00")
        self.assertEqual(value, datetime.datetime(2001, 2, 1, 17, 16, 49, tzinfo=datetime.timezone.utc))
        self.assertEqual(value.utcoffset(), datetime.timedelta(hours=-5))

    def test_fraction(self) -> None:
        self.assertEqual(self.stamp(b"2001-02-01T17:16:49.25+00:00").microsecond, 250000)
        self.assertEqual(self.stamp(b"2001-02-01T17:16:49.1234567Z").microsecond, 123456)

    def test_lower_case(self) -> None:
        self.assertEqual(self.stamp(b"2001-02-01t17:16:49z"), datetime.datetime(2001, 2, 1, 17, 16, 49, tzinfo=datetime.timezone.utc))

    def test_leap_second(self) -> None:
        self.assertEqual(self.stamp(b"1998-12-31T23:59:60Z"), datetime.datetime(1999, 1, 1, tzinfo=datetime.timezone.utc))

    def test_text_kept(self) -> None:
        self.assertEqual(parse_message(cpim(b"DateTime: 2001-02-01t17:16:49z")).date_time.text, "2001-02-01t17:16:49z")

    def test_edge_spaces_survive_as_escapes(self) -> None:
        """§2.2 forbids whitespace at the ends of a line: edge spaces travel as \\u0020."""
        message = build_message("im:a@b.com", ["im:c@d.com"], b"", subjects=[(None, " leading"), ("fr", "trailing  ")])
        self.assertIn(b"Subject: \\u0020leading\r\n", message.raw)
        self.assertIn(b"Subject:;lang=fr trailing\\u0020\\u0020\r\n", message.raw)
        self.assertEqual(parse_message(message.raw).subjects, ((None, " leading"), ("fr", "trailing  ")))
        blank = build_message("im:a@b.com", ["im:c@d.com"], b"", subjects=[(None, "  ")])
        self.assertEqual(parse_message(blank.raw).subjects, ((None, "  "),))

    def test_rejections(self) -> None:
        for bad in (b"2001-02-01 17:16:49Z", b"2001-02-01T17:16:49", b"2001-13-01T00:00:00Z", b"2001-02-30T00:00:00Z",
                    b"2001-02-01T24:00:00Z", b"2001-02-01T17:16:49+24:00", b"2001-02-01T17:16:61Z",
                    b"9999-12-31T23:59:60Z", "\u0662001-02-01T17:16:49Z".encode()):
            self.assert_rejected(cpim(b"DateTime: " + bad), 3, LINE3 + 10, "DateTime")

    def test_format(self) -> None:
        tz = datetime.timezone(datetime.timedelta(hours=-8))
        self.assertEqual(format_date_time(datetime.datetime(2000, 12, 13, 13, 40, tzinfo=tz)), "2000-12-13T13:40:00-08:00")
        self.assertEqual(format_date_time(datetime.datetime(5, 1, 2, 3, 4, 5, 600, tzinfo=datetime.timezone.utc)), "0005-01-02T03:04:05.0006Z")
        self.assertRaises(ValueError, format_date_time, datetime.datetime(2000, 1, 1))
        self.assertEqual(parse_date_time("2000-12-13T13:40:00.5+05:30").isoformat(), "2000-12-13T13:40:00.500000+05:30")


class HeaderExampleTests(SynchronousTestCase):
    """Header examples of RFC 3862 §2.2, §3.3-3.5 and §4.1-4.7 (digest §10)."""

    def header(self, *lines: bytes, understood: frozenset[str] | None = None):
        return parse_message(cpim(*lines), understood=understood).headers[2:]

    def test_from(self) -> None:
        (from_line,) = parse_message(cpim(base=(b"From: Winnie the Pooh <im:pooh@100akerwood.com>", TO))).headers[:1]
        self.assertEqual(from_line.parsed, CPIMAddress("Winnie the Pooh", "im:pooh@100akerwood.com", CPIMURI("im", "pooh", "100akerwood.com")))

    def test_to_and_cc(self) -> None:
        to, cc = self.header(b"To: Winnie the Pooh <im:pooh@100akerwood.com>", b"cc: Winnie the Pooh <im:pooh@100akerwood.com>")
        self.assertEqual(to.parsed, cc.parsed)
        self.assertEqual(cc.local_name, "cc")

    def test_date_time(self) -> None:
        (stamp,) = self.header(b"DateTime: 2001-02-01T12:16:49-05:00")
        self.assertEqual(stamp.parsed.text, "2001-02-01T12:16:49-05:00")

    def test_subject_lang(self) -> None:
        (subject,) = self.header(b"Subject:;lang=fr Objet de message")
        self.assertEqual((subject.lang, subject.value), ("fr", "Objet de message"))

    def test_ns_and_require(self) -> None:
        ns, require, header = self.header(
            b"NS: MyAlias <mid:MessageFeatures@id.foo.com>",
            b"Require: MyAlias.VitalMessageOption",
            b"MyAlias.VitalMessageOption: Confirmation-requested",
            understood=frozenset({qualified_name(MID, "VitalMessageOption")}),
        )
        self.assertEqual(ns.parsed, NSDeclaration("MyAlias", MID))
        self.assertEqual(require.parsed, ("MyAlias.VitalMessageOption",))
        self.assertEqual((header.namespace, header.local_name, header.value), (MID, "VitalMessageOption", "Confirmation-requested"))

    def test_default_ns(self) -> None:
        ns, header = self.header(b"NS: <mid:MessageFeatures@id.foo.com>", b"VitalMessageOption: Confirmation-requested")
        self.assertEqual(ns.parsed, NSDeclaration(None, MID))
        self.assertEqual(header.qualified_name, "{mid:MessageFeatures@id.foo.com}VitalMessageOption")

    def test_urn_header_names(self) -> None:
        (header,) = self.header(b"Top&Tail: x")
        self.assertEqual((header.namespace, header.local_name), (CORE_NAMESPACE, "Top&Tail"))


class BuilderTests(SynchronousTestCase):
    """build_message writes canonical octets and parses back to the same values."""

    def test_canonical_bytes(self) -> None:
        tz = datetime.timezone(datetime.timedelta(hours=-8))
        message = build_message(
            CPIMURI("im", "piglet", "100akerwood.com"),
            [CPIMAddress("Depressed Donkey", "im:eeyore@100akerwood.com")],
            b"<body>\r\nHere is the text of my message.\r\n</body>\r\n",
            "text/xml; charset=utf-8",
            sender_name="MR SANDERS",
            date_time=datetime.datetime(2000, 12, 13, 13, 40, tzinfo=tz),
            subjects=[(None, "the weather will be fine today"), ("fr", "beau temps prevu pour aujourd'hui")],
            extensions=[
                (MID, "MyFeatures", "VitalMessageOption", "Confirmation-requested", ()),
                (MID, "MyFeatures", "WackyMessageOption", "Use-silly-font", ()),
            ],
            require=["MyFeatures.VitalMessageOption"],
            content_headers=[("Content-ID", "<1234567890@foo.com>")],
        )
        self.assertEqual(message.to_bytes(), CPIM_HEADERS_5_1 + b"\r\n" + ENTITY_5_1.replace(b"Content-type", b"Content-Type") + b"\r\n")
        self.assertEqual(parse_message(message.to_bytes(), understood=VITAL), message)

    def test_escapes_and_quoting(self) -> None:
        message = build_message(
            "im:a@b.com", ["xmpp:c@d.com"], b"",
            sender_name='Pooh "Bear", Esq.\t',
            cc=[CPIMAddress("Zoë", "im:z@b.com")],
            subjects=[(None, "tab\there\\ \x01 \"q\" 'a'")],
            extensions=[("http://x.example/ns", "X", "K", "v", [("lang", "en"), ("p", 'a "b"'), ("n", "1"), ("e", "")])],
        )
        self.assertEqual(message.to_bytes(), (
            'From: "Pooh \\"Bear\\", Esq.\\t" <im:a@b.com>\r\n'
            "To: <xmpp:c@d.com>\r\n"
            "cc: Zoë <im:z@b.com>\r\n"
            "Subject: tab\\there\\\\ \\u0001 \"q\" 'a'\r\n"
            "NS: X <http://x.example/ns>\r\n"
            'X.K:;lang=en;p="a \\"b\\"";n=1;e="" v\r\n'
            "\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "\r\n"
        ).encode())
        self.assertEqual(message.sender.display_name, 'Pooh "Bear", Esq.\t')
        self.assertEqual(message.subjects, ((None, "tab\there\\ \x01 \"q\" 'a'"),))
        self.assertEqual(message.extension_headers, (("http://x.example/ns", "K", "v", (("lang", "en"), ("p", 'a "b"'), ("n", "1"), ("e", ""))),))

    def test_prefix_clash_and_qualified_require(self) -> None:
        message = build_message(
            "im:a@b.com", ["im:c@d.com"], b"x",
            extensions=[("mid:one", "P", "A", "1", ()), ("mid:two", "P", "B", "2", ()), ("mid:one", "Q", "C", "3", ()),
                        (CORE_NAMESPACE, "ignored", "Custom", "4", ())],
            require=["{mid:two}B", "{mid:three}D", "Locale.MustRenderKanji"],
        )
        self.assertEqual(message.to_bytes(), (
            b"From: <im:a@b.com>\r\nTo: <im:c@d.com>\r\n"
            b"NS: P <mid:one>\r\nNS: P2 <mid:two>\r\nNS: ns <mid:three>\r\n"
            b"Require: P2.B,ns.D,Locale.MustRenderKanji\r\n"
            b"P.A: 1\r\nP2.B: 2\r\nP.C: 3\r\nCustom: 4\r\n\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nx"
        ))
        self.assertEqual(message.require, ("P2.B", "ns.D", "Locale.MustRenderKanji"))

    def test_date_time_text_and_utc(self) -> None:
        message = build_message("im:a@b.com", ["im:c@d.com"], b"", date_time=datetime.datetime(2020, 1, 2, 3, 4, 5, 120000, tzinfo=datetime.timezone.utc))
        self.assertEqual(message.date_time.text, "2020-01-02T03:04:05.12Z")
        message = build_message("im:a@b.com", ["im:c@d.com"], b"", date_time="2020-01-02t03:04:05z")
        self.assertEqual(message.date_time.text, "2020-01-02t03:04:05z")

    def test_empty_display_name_is_quoted(self) -> None:
        message = build_message("im:a@b.com", ["im:c@d.com"], b"", sender_name="")
        self.assertEqual((message.headers[0].raw, message.sender.display_name), (b'From: "" <im:a@b.com>', ""))

    def test_edge_spaces_survive_as_escapes(self) -> None:
        """§2.2 forbids whitespace at the ends of a line: edge spaces travel as \\u0020."""
        message = build_message("im:a@b.com", ["im:c@d.com"], b"", subjects=[(None, " leading"), ("fr", "trailing  ")])
        self.assertIn(b"Subject: \\u0020leading\r\n", message.raw)
        self.assertIn(b"Subject:;lang=fr trailing\\u0020\\u0020\r\n", message.raw)
        self.assertEqual(parse_message(message.raw).subjects, ((None, " leading"), ("fr", "trailing  ")))
        blank = build_message("im:a@b.com", ["im:c@d.com"], b"", subjects=[(None, "  ")])
        self.assertEqual(parse_message(blank.raw).subjects, ((None, "  "),))

    def test_rejections(self) -> None:
        cases = [
            (dict(recipients=[]), "at least one To"),
            (dict(subjects=[("not a tag", "x")]), "language tag"),
            (dict(date_time=datetime.datetime(2000, 1, 1)), "aware"),
            (dict(extensions=[("relative", "P", "A", "1", ())]), "absolute URI"),
            (dict(extensions=[("mid:x", "P.Q", "A", "1", ())]), "prefix"),
            (dict(extensions=[("mid:x", "P", "A:B", "1", ())]), "header name"),
            (dict(require=["A, B"]), "Require"),
            (dict(content_headers=[("Content-Type", "text/plain")]), "content_type"),
            (dict(content_headers=[("X-Evil", "a\r\nFrom: x")]), "control"),
            (dict(content_type="text/plain\r\nX: y"), "control"),
            (dict(recipients=["im:a@b.com>\r\nFrom: <im:x@y.com"]), "absolute URI"),
        ]
        for kw, reason in cases:
            args = dict(sender="im:a@b.com", recipients=["im:c@d.com"], body=b"")
            args.update(kw)
            error = self.assertRaises(MessageFormatError, build_message, **args)
            self.assertIn(reason, error.reason, kw)


class LimitTests(SynchronousTestCase):
    def test_max_size(self) -> None:
        error = self.assertRaises(LimitExceededError, parse_message, EXAMPLE_5_1, max_size=100)
        self.assertEqual((error.limit, error.value, error.offset), ("max_size", 100, 100))
        self.assertEqual(parse_message(EXAMPLE_5_1, max_size=len(EXAMPLE_5_1), understood=VITAL).raw, EXAMPLE_5_1)

    def test_max_headers(self) -> None:
        data = cpim(*[b"X: 1"] * 10)
        error = self.assertRaises(LimitExceededError, parse_message, data, max_headers=11)
        self.assertEqual((error.limit, error.value), ("max_headers", 11))
        self.assertEqual(len(parse_message(data, max_headers=13).headers), 12)

    def test_errors_are_parse_errors(self) -> None:
        for cls in (MessageFormatError, NotUnderstoodError, LimitExceededError):
            self.assertTrue(issubclass(cls, ParseError))
