"""Tests of im: and pres: URIs (RFC 3860 §3, RFC 3859 §3, digest §3.5) in cpimgw.cpim.uri."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from cpimgw.cpim.errors import ParseError, URIError
from cpimgw.cpim.uri import IM, PRES, CPIMURI, im_uri, parse_uri, pres_uri


class ParseTests(SynchronousTestCase):
    def test_im(self) -> None:
        uri = parse_uri("im:pooh@100akerwood.com")
        self.assertEqual(uri, CPIMURI("im", "pooh", "100akerwood.com"))
        self.assertEqual((uri.address, str(uri)), ("pooh@100akerwood.com", "im:pooh@100akerwood.com"))

    def test_pres(self) -> None:
        self.assertEqual(parse_uri("pres:eeyore@100akerwood.com"), CPIMURI("pres", "eeyore", "100akerwood.com"))

    def test_scheme_case(self) -> None:
        uri = parse_uri("IM:Pooh@100AkerWood.COM")
        self.assertEqual((uri.scheme, uri.user, uri.domain), ("im", "Pooh", "100AkerWood.COM"))
        self.assertEqual(str(uri), "im:Pooh@100AkerWood.COM")

    def test_domain_only(self) -> None:
        uri = parse_uri("im:example.com")
        self.assertEqual((uri.user, uri.domain, uri.address, str(uri)), ("", "example.com", "example.com", "im:example.com"))

    def test_address_literal(self) -> None:
        self.assertEqual(parse_uri("pres:a@[192.0.2.1]").domain, "[192.0.2.1]")
        self.assertEqual(parse_uri("pres:a@[::1]").domain, "[::1]")

    def test_trailing_dot(self) -> None:
        uri = parse_uri("im:a@Example.COM.")
        self.assertEqual((uri.domain, uri.domain_key), ("Example.COM.", "example.com"))

    def test_only_some_schemes(self) -> None:
        self.assertEqual(parse_uri("pres:a@b.com", schemes=[PRES]).scheme, "pres")
        error = self.assertRaises(URIError, parse_uri, "im:a@b.com", schemes=[PRES])
        self.assertEqual((error.offset, error.reason), (0, "expected a pres: URI, got 'im:a@b.com'"))


class EscapeTests(SynchronousTestCase):
    def test_utf8_local_part(self) -> None:
        uri = parse_uri("im:%C3%A9ric%20d@b.com")
        self.assertEqual(uri.user, "éric d")
        self.assertEqual(str(uri), "im:%C3%A9ric%20d@b.com")

    def test_lower_case_hex(self) -> None:
        self.assertEqual(parse_uri("im:%c3%a9@b.com").user, "é")

    def test_serialise_escapes(self) -> None:
        self.assertEqual(str(im_uri("a@b <c>", "d.com")), "im:a%40b%20%3Cc%3E@d.com")
        self.assertEqual(str(im_uri("jürgen", "d.com")), "im:j%C3%BCrgen@d.com")
        self.assertEqual(str(im_uri("x.y+z", "d.com")), "im:x.y+z@d.com")

    def test_percent_round_trip(self) -> None:
        uri = im_uri("100%", "d.com")
        self.assertEqual(str(uri), "im:100%25@d.com")
        self.assertEqual(parse_uri(str(uri)), uri)

    def test_escaped_at(self) -> None:
        self.assertEqual(parse_uri("im:a%40b@c.com").user, "a@b")


class PrincipalTests(SynchronousTestCase):
    def test_im_and_pres_same_principal(self) -> None:
        im = parse_uri("im:alice@Example.com")
        pres = parse_uri("pres:alice@example.COM.")
        self.assertTrue(im.same_principal(pres))
        self.assertEqual(im.principal(), ("alice", "example.com"))
        self.assertNotEqual(im, pres)

    def test_local_part_case_matters(self) -> None:
        self.assertFalse(parse_uri("im:Alice@example.com").same_principal(parse_uri("im:alice@example.com")))

    def test_conversions(self) -> None:
        uri = parse_uri("im:alice@example.com?subject=hi")
        self.assertEqual(uri.as_pres(), CPIMURI("pres", "alice", "example.com"))
        self.assertEqual(uri.as_pres().as_im(), CPIMURI("im", "alice", "example.com"))

    def test_constructors(self) -> None:
        self.assertEqual(im_uri("a", "b.com"), CPIMURI(IM, "a", "b.com"))
        self.assertEqual(pres_uri("a", "b.com"), CPIMURI(PRES, "a", "b.com"))
        self.assertRaises(URIError, im_uri, "a", "b_c.com")
        self.assertRaises(URIError, pres_uri, "a", "")

    def test_hashable(self) -> None:
        self.assertEqual(len({parse_uri("im:a@b.com"), parse_uri("im:a@b.com"), parse_uri("pres:a@b.com")}), 2)


class HeaderTests(SynchronousTestCase):
    def test_headers(self) -> None:
        uri = parse_uri("im:a@b.com?subject=hello%20there&body=caf%C3%A9&x=")
        self.assertEqual(uri.headers, (("subject", "hello there"), ("body", "café"), ("x", "")))
        self.assertEqual(str(uri), "im:a@b.com?subject=hello%20there&body=caf%C3%A9&x=")

    def test_escaped_delimiters(self) -> None:
        uri = parse_uri("im:a@b.com?a%26b=c%3Dd%3F")
        self.assertEqual(uri.headers, (("a&b", "c=d?"),))
        self.assertEqual(parse_uri(str(uri)), uri)

    def test_question_mark_in_value(self) -> None:
        self.assertEqual(parse_uri("im:a@b.com?x=1?y").headers, (("x", "1?y"),))


class RejectionTests(SynchronousTestCase):
    """Every rejection of parse_uri, with its offset."""

    def rejected(self, text: object, offset: int | None, reason: str) -> None:
        error = self.assertRaises(URIError, parse_uri, text)
        self.assertIsInstance(error, ParseError)
        self.assertEqual(error.syntax, "uri")
        self.assertEqual(error.offset, offset)
        self.assertIn(reason, error.reason)

    def test_not_text(self) -> None:
        self.rejected(b"im:a@b.com", None, "must be text")

    def test_too_long(self) -> None:
        self.rejected("im:a@" + "b" * 5000, None, "longer than 4096")

    def test_other_scheme(self) -> None:
        self.rejected("sip:a@b.com", 0, "expected a im: or pres: URI")

    def test_no_scheme(self) -> None:
        self.rejected("a@b.com", 0, "expected")

    def test_space(self) -> None:
        self.rejected("im:a b@c.com", 4, "space, control or non-ASCII")

    def test_control(self) -> None:
        self.rejected("im:a@c.com\r\nX", 10, "space, control or non-ASCII")

    def test_non_ascii(self) -> None:
        self.rejected("im:é@c.com", 3, "non-ASCII")

    def test_delimiters(self) -> None:
        self.rejected("im:a>b@c.com", 4, "'>' may not appear")
        self.rejected('im:"a"@c.com', 3, "'\"' may not appear")
        self.rejected("im:a@c.com?x=<y>", 13, "'<' may not appear")

    def test_authority(self) -> None:
        self.rejected("im://a@c.com", 3, "no authority part")

    def test_empty(self) -> None:
        self.rejected("im:", 3, "the address is empty")
        self.rejected("im:?x=1", 3, "the address is empty")

    def test_empty_local_part(self) -> None:
        self.rejected("pres:@c.com", 5, "empty local part")

    def test_unescaped_at(self) -> None:
        self.rejected("im:a@b@c.com", 4, "unescaped '@'")

    def test_bad_escape(self) -> None:
        self.rejected("im:a%2@c.com", 4, "bad %-escape in the local part")
        self.rejected("im:a%@c.com", 4, "bad %-escape in the local part")
        self.rejected("im:a%zz@c.com", 4, "bad %-escape")

    def test_not_utf8(self) -> None:
        self.rejected("im:%FF@c.com", 3, "not UTF-8 after %-decoding")

    def test_empty_domain(self) -> None:
        self.rejected("im:a@", 5, "the domain is empty")

    def test_domain_characters(self) -> None:
        self.rejected("im:a@b_c.com", 5, "the domain holds '_'")
        self.rejected("im:a@c.com:5060", 5, "the domain holds ':'")
        self.rejected("im:a@c.com#frag", 5, "the domain holds '#'")
        self.rejected("im:a@[::1", 5, "the domain holds '['")

    def test_domain_labels(self) -> None:
        self.rejected("im:ab@c..com", 6, "label ''")
        self.rejected("im:ab@-c.com", 6, "label '-c'")
        self.rejected("im:ab@c-.com", 6, "label 'c-'")
        self.rejected("im:ab@" + "x" * 64 + ".com", 6, "not a valid host name label")

    def test_headers(self) -> None:
        self.rejected("im:a@c.com?", 11, "header '' is not hname=hvalue")
        self.rejected("im:a@c.com?x", 11, "header 'x' is not hname=hvalue")
        self.rejected("im:a@c.com?a=1&=x", 15, "header '=x' is not hname=hvalue")
        self.rejected("im:a@c.com?a=1&b=%G0", 17, "bad %-escape in a header")
        self.rejected("im:a@c.com?a=%FF", 11, "a header value is not UTF-8")


users = st.text(max_size=20)
domains = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?(\.[A-Za-z0-9]{1,10}){0,3}", fullmatch=True)
headers = st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=8)), max_size=3).map(tuple)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from([IM, PRES]), users, domains, headers)
    def test_serialise_then_parse(self, scheme: str, user: str, domain: str, pairs) -> None:
        uri = CPIMURI(scheme, user, domain, pairs)
        text = str(uri)
        self.assertEqual(parse_uri(text), uri)
        self.assertTrue(text.isascii())
        self.assertFalse(any(c in text for c in ' <>"'))

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=40))
    def test_any_text_is_uri_or_uri_error(self, text: str) -> None:
        try:
            uri = parse_uri("im:" + text)
        except URIError as error:
            self.assertTrue(error.offset is None or 0 <= error.offset <= len(text) + 3)
        else:
            self.assertEqual(parse_uri(str(uri)), uri)
