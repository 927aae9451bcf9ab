"""Tests of cpimgw.adapters.xmpp.addresses (RFC 3922 §3, RFC 7247 §5, XEP-0106)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from cpimgw.adapters.xmpp.addresses import AddressMap, escape_localpart, parse_jid, unescape_localpart
from cpimgw.cpim.errors import URIError
from cpimgw.cpim.uri import parse_uri

GATEWAY = AddressMap("gw.xmpp.example", ("xmpp.example", "example.com"))


class EscapingTests(unittest.TestCase):
    # XEP-0106 §5 examples (unescaped -> escaped).
    XEP0106 = [
        ("space cadet", "space\\20cadet"),
        ('call me "ishmael"', "call\\20me\\20\\22ishmael\\22"),
        ("at&t guy", "at\\26t\\20guy"),
        ("d'artagnan", "d\\27artagnan"),
        ("/.fanboy", "\\2f.fanboy"),
        ("::foo::", "\\3a\\3afoo\\3a\\3a"),
        ("<foo>", "\\3cfoo\\3e"),
        ("user@host", "user\\40host"),
        ("c:\\net", "c\\3a\\net"),
        ("c:\\\\net", "c\\3a\\\\net"),
        ("c:\\cool stuff", "c\\3a\\cool\\20stuff"),
        ("c:\\5commas", "c\\3a\\5c5commas"),
    ]

    def test_xep0106_table(self):
        for raw, escaped in self.XEP0106:
            self.assertEqual(escape_localpart(raw), escaped, raw)
            self.assertEqual(unescape_localpart(escaped), raw, escaped)

    def test_leading_space_refused(self):
        self.assertRaises(URIError, escape_localpart, " bob")
        self.assertRaises(URIError, escape_localpart, "bob ")

    @settings(max_examples=200, deadline=None)
    @given(st.text(min_size=1, max_size=40).filter(lambda t: t.strip() == t))
    def test_round_trip(self, text):
        self.assertEqual(unescape_localpart(escape_localpart(text)), text)


class JidToUriTests(unittest.TestCase):
    # (JID, scheme, expected URI text, expected resource) — RFC 3922 §3, RFC 7247 §5.3.
    TABLE = [
        ("juliet@example.com/balcony", "im", "im:juliet@example.com", "balcony"),
        ("romeo@example.net/orchard", "pres", "pres:romeo@example.net", "orchard"),
        ("m\\26m@xmpp.example", "im", "im:m&m@xmpp.example", None),
        ("o\\27malley@xmpp.example", "im", "im:o'malley@xmpp.example", None),
        ("a\\2fb@xmpp.example", "pres", "pres:a/b@xmpp.example", None),
        ("tschüss@xmpp.example", "im", "im:tsch%C3%BCss@xmpp.example", None),
        ("baz@xmpp.example/qux", "im", "im:baz@xmpp.example", "qux"),
        # Foreign users under the gateway domain.
        ("bob\\40sip.example@gw.xmpp.example", "im", "im:bob@sip.example", None),
        ("bob\\40sip.example@gw.xmpp.example/gruu1", "pres", "pres:bob@sip.example", "gruu1"),
        ("o\\27malley\\40sip.example@gw.xmpp.example", "im", "im:o'malley@sip.example", None),
        ("gw.xmpp.example", "im", "im:gw.xmpp.example", None),
    ]

    def test_table(self):
        for jid, scheme, expected, resource in self.TABLE:
            uri, got_resource = GATEWAY.jid_to_uri(jid, scheme)
            self.assertEqual(str(uri), expected, jid)
            self.assertEqual(got_resource, resource, jid)

    def test_gateway_jid_without_foreign_domain(self):
        self.assertRaises(URIError, GATEWAY.jid_to_uri, "bob@gw.xmpp.example")

    def test_invalid_jid(self):
        self.assertRaises(URIError, GATEWAY.jid_to_uri, "a@b@c")
        self.assertRaises(URIError, parse_jid, "")


class UriToJidTests(unittest.TestCase):
    TABLE = [
        ("im:juliet@example.com", None, "juliet@example.com"),
        ("im:m&m@xmpp.example", None, "m\\26m@xmpp.example"),
        ("pres:o'malley@xmpp.example", "res", "o\\27malley@xmpp.example/res"),
        ("im:tsch%C3%BCss@xmpp.example", None, "tschüss@xmpp.example"),
        ("im:bob@sip.example", None, "bob\\40sip.example@gw.xmpp.example"),
        ("im:bob@sip.example", "gr1", "bob\\40sip.example@gw.xmpp.example/gr1"),
        ("im:o'malley@sip.example", None, "o\\27malley\\40sip.example@gw.xmpp.example"),
        ("im:f%C3%BC@sip.example", None, "fü\\40sip.example@gw.xmpp.example"),
        ("pres:alice@prim.example", None, "alice\\40prim.example@gw.xmpp.example"),
    ]

    def test_table(self):
        for uri, resource, expected in self.TABLE:
            self.assertEqual(GATEWAY.uri_to_jid(parse_uri(uri), resource).full(), expected, uri)

    @settings(max_examples=200, deadline=None)
    @given(
        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="@%"), min_size=1, max_size=20),
        st.sampled_from(["sip.example", "xmpp.example", "prim.example"]),
    )
    def test_round_trip(self, user, domain):
        uri = parse_uri(f"im:x@{domain}")
        import attrs

        uri = attrs.evolve(uri, user=user.lower())
        try:
            jid = GATEWAY.uri_to_jid(uri)
        except URIError:
            return  # a character stringprep prohibits; refused, not mangled
        back, _ = GATEWAY.jid_to_uri(jid)
        self.assertEqual(back.principal(), uri.principal())
