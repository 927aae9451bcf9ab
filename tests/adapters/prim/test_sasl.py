"""Tests of PRIM SASL (PLAIN, CRAM-MD5, EXTERNAL; -01 §13.1, server-00 §9.2, RFC 2195)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim import sasl
from cpimgw.adapters.prim.sasl import SASLError, ServerExchange


class HelperTests(TestCase):
    def test_rfc2195_vector(self) -> None:
        """RFC 2195 §2: tanstaaftanstaaf over <1896.697170952@postoffice.reston.mci.net>."""
        digest = sasl.cram_md5_digest("tanstaaftanstaaf", b"<1896.697170952@postoffice.reston.mci.net>")
        self.assertEqual(digest, "b913a602c7eda7a495b4e6e7334d3890")

    def test_prim_body_layout(self) -> None:
        """The draft's layout: user CRLF 32 hex digits -> 50 octets for prim.fujitsu.com, 55 for suga@..."""
        challenge = b"<20010226095208.1018677043.foo1.bar.fujitsu.com>"
        self.assertEqual(len(challenge), 48)
        self.assertEqual(len(sasl.cram_md5_response("prim.fujitsu.com", "x", challenge)), 50)
        self.assertEqual(len(sasl.cram_md5_response("suga@prim.fujitsu.com", "x", challenge)), 55)
        self.assertEqual(sasl.plain_response("prim.fujitsu.com", "hi there!"), b"prim.fujitsu.com\r\nhi there!")
        self.assertEqual(len(sasl.plain_response("suga@prim.fujitsu.com", "hi there!")), 32)

    def test_mechanism_lists(self) -> None:
        self.assertEqual(sasl.parse_mechanisms("CRAM-MD5,PLAIN"), ["CRAM-MD5", "PLAIN"])
        self.assertEqual(sasl.parse_mechanisms("CRAM-MD5 PLAIN"), ["CRAM-MD5", "PLAIN"])
        self.assertEqual(sasl.parse_mechanisms(" cram-md5 , plain "), ["CRAM-MD5", "PLAIN"])
        self.assertEqual(sasl.parse_mechanisms(None), [])
        self.assertEqual(sasl.format_mechanisms(["CRAM-MD5", "PLAIN"]), "CRAM-MD5,PLAIN")

    def test_challenge_shape(self) -> None:
        challenge = sasl.make_challenge("prim.example", now=982145528)
        self.assertTrue(challenge.startswith(b"<982145528."))
        self.assertTrue(challenge.endswith(b"@prim.example>"))
        self.assertNotEqual(challenge, sasl.make_challenge("prim.example", now=982145528))


SECRETS = {"prim.fujitsu.com": "hi there!", "suga@prim.fujitsu.com": "pass"}


def exchange(**kw) -> ServerExchange:  # type: ignore[no-untyped-def]
    return ServerExchange(secret_for=SECRETS.get, host="gw.example", **kw)


class ServerExchangeTests(TestCase):
    def test_cram_md5(self) -> None:
        server = exchange()
        mechanism, challenge = server.start(["CRAM-MD5", "PLAIN"])
        self.assertEqual(mechanism, "CRAM-MD5")
        body = sasl.cram_md5_response("prim.fujitsu.com", "hi there!", challenge)
        self.assertEqual(server.finish("CRAM-MD5", body, "prim.fujitsu.com"), "prim.fujitsu.com")

    def test_cram_md5_wrong_secret(self) -> None:
        server = exchange()
        _, challenge = server.start(["CRAM-MD5"])
        body = sasl.cram_md5_response("prim.fujitsu.com", "guess", challenge)
        self.assertRaises(SASLError, server.finish, "CRAM-MD5", body, "prim.fujitsu.com")

    def test_plain_needs_tls(self) -> None:
        self.assertRaises(SASLError, exchange().start, ["PLAIN"])
        server = exchange(tls=True)
        self.assertEqual(server.start(["PLAIN"]), ("PLAIN", b""))
        body = b"prim.fujitsu.com\r\nhi there!"
        self.assertEqual(server.finish("PLAIN", body, "prim.fujitsu.com"), "prim.fujitsu.com")

    def test_plain_rfc4616_form(self) -> None:
        server = exchange(tls=True)
        server.start(["PLAIN"])
        self.assertEqual(server.finish("PLAIN", b"\x00suga@prim.fujitsu.com\x00pass", "suga@prim.fujitsu.com"),
                         "suga@prim.fujitsu.com")

    def test_claim_mismatch(self) -> None:
        server = exchange(tls=True)
        server.start(["PLAIN"])
        self.assertRaises(SASLError, server.finish, "PLAIN", b"prim.fujitsu.com\r\nhi there!", "other.example")

    def test_external(self) -> None:
        server = exchange(tls=True, external_identities=("a.example",))
        self.assertEqual(server.start(["EXTERNAL", "CRAM-MD5"]), ("EXTERNAL", b""))
        self.assertEqual(server.finish("EXTERNAL", b"", "a.example"), "a.example")
        spoof = exchange(tls=True, external_identities=("evil.example",))
        spoof.start(["EXTERNAL"])
        self.assertRaises(SASLError, spoof.finish, "EXTERNAL", b"", "a.example")

    def test_external_needs_certificate(self) -> None:
        self.assertRaises(SASLError, exchange(tls=True).start, ["EXTERNAL"])

    def test_init_twice(self) -> None:
        server = exchange()
        server.start(["CRAM-MD5"])
        self.assertRaises(SASLError, server.start, ["CRAM-MD5"])

    def test_continue_without_init_and_changed_mechanism(self) -> None:
        self.assertRaises(SASLError, exchange().finish, "CRAM-MD5", b"a\r\nb", "a")
        server = exchange(tls=True)
        server.start(["CRAM-MD5"])
        self.assertRaises(SASLError, server.finish, "PLAIN", b"prim.fujitsu.com\r\nhi there!", "prim.fujitsu.com")

    def test_client_response(self) -> None:
        self.assertEqual(sasl.client_response("EXTERNAL", "a", None, b""), b"")
        self.assertEqual(sasl.client_response("PLAIN", "a", "b", b""), b"a\r\nb")
        self.assertRaises(SASLError, sasl.client_response, "CRAM-MD5", "a", None, b"<x>")
