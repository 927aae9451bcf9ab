"""Tests of the PRIM framing codec (draft-ietf-prim-server-00 §4-§6, -01 §8-§9, digest §2.4-2.7).

The worked examples are the drafts' own (server-00 §9.2, -01 §13.1) with their
byte lengths; the torture cases follow the style of RFC 4475.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim import wire
from cpimgw.adapters.prim.wire import Parser, PrimError, PrimLimitError, Request, Response, parse_command
from cpimgw.cpim.errors import ParseError


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


LOGIN_INIT = crlf(
    "LOGIN PRIM/1.0 0224 0\n"
    "Domain: prim.fujitsu.com\n"
    "Auth-State: init\n"
    "SASL-Mech: CRAM-MD5,PLAIN\n"
    "\n"
)
CHALLENGE = crlf(
    "PRIM/1.0 0224 48 100 Authentication Continued\n"
    "Domain: prim.fujitsu.com\n"
    "Auth-State: init\n"
    "SASL-Mech: CRAM-MD5\n"
    "\n"
    "<20010226095208.1018677043.foo1.bar.fujitsu.com>"
)
CRAM_SERVER = crlf(
    "LOGIN PRIM/1.0 0225 50\n"
    "Domain: prim.fujitsu.com\n"
    "Auth-State: continue\n"
    "SASL-Mech: CRAM-MD5\n"
    "Content-Type: text/plain\n"
    "\n"
    "prim.fujitsu.com\n"
    "106d12b16fc323dc2f3d19b587f8d0ff"
)
PLAIN_SERVER = crlf(
    "LOGIN PRIM/1.0 84505230 27\n"
    "Domain: prim.fujitsu.com\n"
    "Auth-State: continue\n"
    "SASL-Mech: PLAIN\n"
    "Content-Type: text/plain\n"
    "\n"
    "prim.fujitsu.com\n"
    "hi there!"
)
CRAM_CLIENT = crlf(
    "LOGIN PP/1.0 0225 55\n"
    "From: pres:suga@prim.fujitsu.com\n"
    "Auth-State: continue\n"
    "SASL-Mech: CRAM-MD5\n"
    "Content-Type: text/plain\n"
    "\n"
    "suga@prim.fujitsu.com\n"
    "106d12b16fc323dc2f3d19b587f8d0ff"
)
PLAIN_CLIENT = crlf(
    "LOGIN PP/1.0 84505230 32\n"
    "From: pres:suga@prim.fujitsu.com\n"
    "Auth-State: continue\n"
    "SASL-Mech: PLAIN\n"
    "Content-Type: text/plain\n"
    "\n"
    "suga@prim.fujitsu.com\n"
    "hi there!"
)
LOGIN_INIT_01 = crlf(
    "LOGIN PP/1.0 0224 0\n"
    "From: pres:suga@prim.fujitsu.com\n"
    "Auth-State: init\n"
    "SASL-Mech: CRAM-MD5 PLAIN\n"
    "\n"
)


class WorkedExampleTests(TestCase):
    """The LOGIN exchanges of server-00 §9.2 and -01 §13.1, with their byte lengths."""

    def test_login_init(self) -> None:
        command = parse_command(LOGIN_INIT)
        self.assertEqual(command, Request(
            "LOGIN", "0224",
            (("Domain", "prim.fujitsu.com"), ("Auth-State", "init"), ("SASL-Mech", "CRAM-MD5,PLAIN")),
            b"", "PRIM/1.0"))
        self.assertEqual(command.to_bytes(), LOGIN_INIT)

    def test_challenge_48_octets(self) -> None:
        command = parse_command(CHALLENGE)
        self.assertIsInstance(command, Response)
        self.assertEqual((command.request_id, command.code, command.phrase), ("0224", 100, "Authentication Continued"))
        self.assertEqual(command.body, b"<20010226095208.1018677043.foo1.bar.fujitsu.com>")
        self.assertEqual(len(command.body), 48)
        self.assertEqual(command.header("SASL-Mech"), "CRAM-MD5")
        self.assertEqual(command.to_bytes(), CHALLENGE)

    def test_cram_md5_lengths(self) -> None:
        server = parse_command(CRAM_SERVER)
        client = parse_command(CRAM_CLIENT)
        self.assertEqual(len(server.body), 50)
        self.assertEqual(len(client.body), 55)
        self.assertEqual(server.body, b"prim.fujitsu.com\r\n106d12b16fc323dc2f3d19b587f8d0ff")
        self.assertEqual(client.version, "PP/1.0")
        self.assertEqual(server.to_bytes(), CRAM_SERVER)
        self.assertEqual(client.to_bytes(), CRAM_CLIENT)

    def test_plain_lengths(self) -> None:
        server = parse_command(PLAIN_SERVER)
        client = parse_command(PLAIN_CLIENT)
        self.assertEqual((len(server.body), len(client.body)), (27, 32))
        self.assertEqual(server.request_id, "84505230")
        self.assertEqual(client.body, b"suga@prim.fujitsu.com\r\nhi there!")

    def test_01_login_init(self) -> None:
        command = parse_command(LOGIN_INIT_01)
        self.assertEqual(command.header("SASL-Mech"), "CRAM-MD5 PLAIN")
        self.assertEqual(command.header("From"), "pres:suga@prim.fujitsu.com")

    def test_pipelined_stream(self) -> None:
        """All five commands in one read, then byte by byte: same result."""
        stream = LOGIN_INIT + CHALLENGE + CRAM_SERVER + PLAIN_SERVER + LOGIN_INIT_01
        whole = Parser().feed(stream)
        parser = Parser()
        pieces = []
        for index in range(len(stream)):
            pieces.extend(parser.feed(stream[index:index + 1]))
        self.assertEqual(whole, pieces)
        self.assertEqual([c.request_id for c in whole], ["0224", "0224", "0225", "84505230", "0224"])


class FramingTests(TestCase):
    def test_leading_blank_lines_skipped(self) -> None:
        parser = Parser()
        self.assertEqual(parser.feed(b"\r\n\r\n\n"), [])
        items = parser.feed(b"\r\nPING PRIM/1.0 - 0\r\n\r\n")
        self.assertEqual(items, [Request("PING", "-", (), b"", "PRIM/1.0")])
        self.assertFalse(items[0].wants_response)

    def test_binary_body(self) -> None:
        body = bytes(range(256)) + b"\r\n\r\nLOGIN PRIM/1.0 1 0\r\n\r\n"
        data = (b"SEND PRIM/1.0 7 %d\r\nFrom: im:a@x.example\r\nTo: im:b@y.example\r\n"
                b"Content-Type: application/octet-stream\r\n\r\n" % len(body)) + body
        command = parse_command(data)
        self.assertEqual(command.body, body)
        self.assertEqual(command.to_bytes(), data)

    def test_response_phrase_with_spaces(self) -> None:
        command = parse_command(b"PRIM/1.0 9 0 408 Inbox Is Closed\r\n\r\n")
        self.assertEqual((command.code, command.phrase), (408, "Inbox Is Closed"))

    def test_versions_accepted(self) -> None:
        for token in ("PRIM/1.0", "PP/1.0", "IMP/1.0", "PRIM-PR/1.0", "PRIM-IM/1.0", "PRIM/1.7"):
            command = parse_command(f"PING {token} - 0\r\n\r\n".encode())
            self.assertEqual(command.version, token)

    def test_version_service(self) -> None:
        self.assertEqual(wire.parse_version("PP/1.0").service, "presence")
        self.assertEqual(wire.parse_version("PRIM-IM/1.0").service, "im")
        self.assertIsNone(wire.parse_version("PRIM/1.0").service)

    def test_legacy_default_content_type(self) -> None:
        command = parse_command(b"SEND IMP/1.0 3 2\r\nFrom: im:a@x.example\r\nTo: im:b@x.example\r\n\r\nhi")
        self.assertEqual(command.content_type, "text/plain; charset=UTF-8")

    def test_serialise_refuses_dash_response(self) -> None:
        self.assertRaises(ValueError, wire.serialise, Response("-", 200))
        self.assertRaises(ValueError, wire.serialise, Request("PING", "a b"))
        self.assertRaises(ValueError, wire.serialise, Request("SEND", "1", (("To", "x\r\nFrom: y"),)))


class TortureTests(TestCase):
    """RFC 4475-style hostile input: each gets its decided outcome."""

    def refused(self, data: bytes) -> PrimError:
        items = Parser().feed(data)
        self.assertEqual(len(items), 1)
        self.assertIsInstance(items[0], PrimError)
        return items[0]

    def fatal(self, data: bytes, **limits: int) -> ParseError:
        parser = Parser(**limits)
        error = self.assertRaises((PrimError, PrimLimitError), parser.feed, data)
        self.assertTrue(error.fatal)
        return error

    def test_length_larger_than_body(self) -> None:
        """The parser waits for the missing octets; a file of one command says it is short."""
        parser = Parser()
        self.assertEqual(parser.feed(b"SEND PRIM/1.0 1 10\r\nContent-Type: text/plain\r\n\r\nshort"), [])
        error = self.assertRaises(PrimError, parse_command, b"SEND PRIM/1.0 1 10\r\nContent-Type: text/plain\r\n\r\nshort")
        self.assertIn("shorter", error.reason)

    def test_length_smaller_than_body(self) -> None:
        """The extra octets are the next start line: garbage there loses framing."""
        data = b"SEND PRIM/1.0 1 2\r\nContent-Type: text/plain\r\n\r\nhello\r\n\r\n"
        error = self.assertRaises(PrimError, parse_command, data)
        self.assertTrue(error.fatal)
        parser = Parser()
        self.assertRaises(PrimError, parser.feed, data)

    def test_duplicate_single_value_header(self) -> None:
        error = self.refused(b"SEND PRIM/1.0 5 0\r\nTo: im:a@x.example\r\nTo: im:b@x.example\r\n\r\n")
        self.assertEqual((error.code, error.request_id, error.fatal), (400, "5", False))
        self.assertIn("To", error.reason)
        self.assertEqual(error.line, 3)

    def test_huge_content_length(self) -> None:
        error = self.fatal(b"SEND PRIM/1.0 1 99999999999999999999999999\r\n\r\n")
        self.assertEqual(error.limit, "max_body")

    def test_length_over_limit(self) -> None:
        error = self.fatal(b"SEND PRIM/1.0 8 70000\r\n\r\n", max_body=65536)
        self.assertEqual((error.limit, error.request_id), ("max_body", "8"))

    def test_huge_duration(self) -> None:
        error = self.refused(b"SUBSCRIBE PRIM/1.0 2 0\r\nDuration: 123456789012345678901\r\n\r\n")
        self.assertEqual(error.code, 400)

    def test_negative_length(self) -> None:
        self.fatal(b"SEND PRIM/1.0 1 -5\r\n\r\n")

    def test_unknown_method(self) -> None:
        error = self.refused(b"FROBNICATE PRIM/1.0 3 0\r\n\r\n")
        self.assertEqual((error.code, error.method), (501, "FROBNICATE"))

    def test_unsupported_version(self) -> None:
        self.assertEqual(self.refused(b"PING PRIM/2.0 3 0\r\n\r\n").code, 503)
        self.assertEqual(self.refused(b"PING SIP/2.0 3 0\r\n\r\n").code, 503)

    def test_malformed_version(self) -> None:
        self.assertEqual(self.refused(b"PING PRIM-1.0 3 0\r\n\r\n").code, 400)

    def test_content_transfer_encoding(self) -> None:
        error = self.refused(b"SEND PRIM/1.0 4 1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nx")
        self.assertEqual(error.code, 400)

    def test_body_without_content_type(self) -> None:
        self.assertEqual(self.refused(b"SEND PRIM/1.0 4 1\r\n\r\nx").code, 400)

    def test_bad_header_line(self) -> None:
        self.assertEqual(self.refused(b"SEND PRIM/1.0 4 0\r\nno colon here\r\n\r\n").code, 400)

    def test_folded_header_refused(self) -> None:
        self.assertEqual(self.refused(b"SEND PRIM/1.0 4 0\r\nTo: im:a@x.example\r\n  folded\r\n\r\n").code, 400)

    def test_bad_request_identifier(self) -> None:
        self.fatal(b"PING PRIM/1.0 a_b 0\r\n\r\n")
        self.fatal(b"PING PRIM/1.0 " + b"1" * 41 + b" 0\r\n\r\n")

    def test_response_with_dash(self) -> None:
        self.fatal(b"PRIM/1.0 - 0 200 OK\r\n\r\n")

    def test_too_few_fields(self) -> None:
        self.fatal(b"PING PRIM/1.0 1\r\n\r\n")
        self.fatal(b" PING PRIM/1.0 1 0\r\n\r\n")

    def test_lowercase_method(self) -> None:
        self.fatal(b"ping PRIM/1.0 1 0\r\n\r\n")

    def test_line_too_long(self) -> None:
        self.fatal(b"SEND PRIM/1.0 1 0\r\nX: " + b"a" * 9000, max_line=8192)

    def test_too_many_headers(self) -> None:
        data = b"SEND PRIM/1.0 1 0\r\n" + b"X-A: b\r\n" * 70 + b"\r\n"
        self.assertEqual(self.fatal(data, max_headers=64).limit, "max_headers")

    def test_no_feed_after_fatal(self) -> None:
        parser = Parser()
        self.assertRaises(PrimError, parser.feed, b"garbage here\r\n\r\n")
        self.assertRaises(PrimError, parser.feed, b"PING PRIM/1.0 - 0\r\n\r\n")

    def test_refused_command_does_not_stop_the_stream(self) -> None:
        data = b"FOO PRIM/1.0 1 0\r\n\r\nPING PRIM/1.0 2 0\r\n\r\n"
        items = Parser().feed(data)
        self.assertEqual(items[0].code, 501)
        self.assertEqual(items[1], Request("PING", "2", (), b"", "PRIM/1.0"))


header_names = st.sampled_from(["From", "To", "Subscription-ID", "X-Extra", "Date", "Conversation-ID"])
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters="\r\n"), max_size=40)


class PropertyTests(TestCase):
    @settings(max_examples=200, deadline=None)
    @given(
        method=st.sampled_from(sorted(wire.KNOWN_METHODS)),
        request_id=st.one_of(st.just("-"), st.text(alphabet="abcXYZ0123456789", min_size=1, max_size=40)),
        headers=st.dictionaries(header_names, header_values, max_size=5),
        body=st.binary(max_size=300),
    )
    def test_round_trip(self, method: str, request_id: str, headers: dict, body: bytes) -> None:
        items = tuple(headers.items())
        if body:
            items += (("Content-Type", "application/octet-stream"),)
        command = Request(method, request_id, items, body)
        data = command.to_bytes()
        self.assertEqual(parse_command(data), command)
        self.assertEqual(parse_command(data).to_bytes(), data)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=400))
    def test_arbitrary_octets_raise_only_parse_errors(self, data: bytes) -> None:
        parser = Parser()
        try:
            parser.feed(data)
        except ParseError:
            pass
