"""Tests for cpimgw.cpim.signed: a signed PIDF (RFC 1847 multipart/signed over RFC 3863 PIDF)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from cpimgw.cpim import signed
from cpimgw.cpim.errors import ParseError, PresenceDocumentError
from cpimgw.cpim.uri import pres_uri

PIDF = (b'<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
        b'entity="pres:carol@prim.example"><tuple id="signed"><status><basic>open</basic></status>'
        b"<note>signed-presence</note></tuple></presence>")
SIGNATURE = b"MIIBVgYJKoZIhvcNAQcCoIIBRzCCAUMCAQExDzANBglghkgBZQMEAgEFADALBgkqhkiG9w0BBwExggEe"
CONTENT_TYPE = 'multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="--b1"'
PARAMS = (("protocol", '"application/pkcs7-signature"'), ("micalg", "sha-256"), ("boundary", '"--b1"'))


def multipart(first_type: str = "application/pidf+xml", document: bytes = PIDF, boundary: bytes = b"--b1",
              extra: bytes = b"") -> bytes:
    return (b"preamble\r\n--" + boundary + b"\r\nContent-Type: " + first_type.encode() + b"\r\n" + extra + b"\r\n"
            + document + b"\r\n--" + boundary + b"\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + SIGNATURE + b"\r\n--" + boundary + b"--\r\nepilogue")


class SignedPIDFTests(TestCase):
    def test_the_signed_document_is_the_first_part_octet_for_octet(self) -> None:
        body = multipart()
        self.assertEqual(signed.signed_pidf(body, PARAMS, pres_uri("carol", "prim.example")), PIDF)
        self.assertEqual(signed.signed_pidf(body, CONTENT_TYPE, pres_uri("carol", "PRIM.example")), PIDF)
        self.assertEqual(signed.inner_pidf(body, PARAMS), PIDF)
        part = signed.signed_part(body, PARAMS)
        self.assertEqual((part.media_type, part.headers), ("application/pidf+xml",
                                                           (("Content-Type", "application/pidf+xml"),)))

    def test_base64_signed_part(self) -> None:
        import base64

        body = multipart(document=base64.encodebytes(PIDF).replace(b"\n", b"\r\n").rstrip(b"\r\n"),
                         extra=b"Content-Transfer-Encoding: base64\r\n")
        self.assertEqual(signed.signed_pidf(body, PARAMS, pres_uri("carol", "prim.example")), PIDF)

    def test_refusals(self) -> None:
        carol = pres_uri("carol", "prim.example")
        cases = [
            (multipart(), PARAMS, pres_uri("mallory", "prim.example"), "not for the publisher"),
            (multipart(first_type="text/plain"), PARAMS, carol, "text/plain, not application/pidf+xml"),
            (multipart(document=b"<presence"), PARAMS, carol, ""),
            (multipart(), (("protocol", "x"),), carol, "boundary"),
            (multipart().replace(b"----b1--", b"----b1"), PARAMS, carol, "closing delimiter"),
            (b"--b1\r\nContent-Type: application/pidf+xml\r\n\r\n" + PIDF + b"\r\n--b1--", (("boundary", "b1"),), carol,
             "1 parts"),
            (multipart(extra=b"Content-Transfer-Encoding: quoted-printable\r\n"), PARAMS, carol, "quoted-printable"),
        ]
        for body, params, presentity, words in cases:
            with self.assertRaises(PresenceDocumentError, msg=words) as caught:
                signed.signed_pidf(body, params, presentity)
            self.assertIsInstance(caught.exception, ParseError)
            self.assertIn(words, caught.exception.reason)

    def test_a_boundary_text_inside_a_line_is_not_a_delimiter(self) -> None:
        document = PIDF.replace(b"signed-presence", b"x ----b1 y")
        self.assertEqual(signed.inner_pidf(multipart(document=document), PARAMS), document)

    def test_media_type(self) -> None:
        self.assertTrue(signed.is_signed("Multipart/Signed"))
        self.assertFalse(signed.is_signed("application/pidf+xml"))
