"""Tests of RFC 3923 ``<e2e/>`` carriage (cpimgw.adapters.xmpp.e2e, the mapping and the adapter).

Every signed object here is a real S/MIME signature: ``multipart/signed``
over a Message/CPIM entity, detached PKCS #7 made by ``cryptography``
(:class:`tests.e2e.smime.Signer`), and every check verifies it again
(:func:`verify_detached`: the CMS SignedData parsed with pyasn1-modules,
the ``messageDigest`` attribute compared with the SHA-256 of the signed
octets, the ECDSA signature over the signed attributes checked with the
signer's key, and the signer's certificate checked against the test CA).
"""

from __future__ import annotations

import base64
import hashlib

from twisted.trial import unittest

from cpimgw.adapters.xmpp import e2e, mapping
from cpimgw.adapters.xmpp.addresses import AddressMap
from cpimgw.cpim.message import build_message, parse_message
from cpimgw.cpim.operations import MEDIA_CPIM, Content, Message, Status
from cpimgw.cpim.uri import parse_uri
from tests.adapters.xmpp.test_adapter import AdapterHarness
from tests.e2e.smime import CRLF, Signer, cpim_entity

ALICE = "im:alice@xmpp.example"
CAROL = "im:carol@prim.example"
CAROL_JID = "carol\\40prim.example@gw.xmpp.example"


def verify_detached(content_type: str, body: bytes, signer: Signer) -> bytes:
    """Verify a ``multipart/signed`` (RFC 1847, RFC 5751 §3.5.3); return the signed entity's octets.

    Fails (AssertionError) unless the signature is valid for exactly those
    octets and was made with a certificate issued by ``signer``'s CA.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from pyasn1.codec.der import decoder, encoder
    from pyasn1_modules import rfc5652

    _, params = e2e.split_content_type(content_type)
    boundary = dict((name.lower(), value.strip('"')) for name, value in params)["boundary"].encode()
    delimiter = CRLF + b"--" + boundary
    assert body.startswith(b"--" + boundary + CRLF), body[:80]
    first = body[len(boundary) + 4:]
    entity, _, rest = first.partition(delimiter)
    signature_part = rest.partition(CRLF)[2].partition(delimiter)[0]
    der = base64.b64decode(signature_part.partition(CRLF + CRLF)[2])
    info, _ = decoder.decode(der, asn1Spec=rfc5652.ContentInfo())
    assert info["contentType"] == rfc5652.id_signedData
    signed_data, _ = decoder.decode(info["content"], asn1Spec=rfc5652.SignedData())
    [signer_info] = list(signed_data["signerInfos"])
    attributes = signer_info["signedAttrs"]
    digests = [attribute["attrValues"][0] for attribute in attributes
               if attribute["attrType"] == rfc5652.id_messageDigest]
    message_digest, _ = decoder.decode(digests[0], asn1Spec=rfc5652.MessageDigest())
    if bytes(message_digest) != hashlib.sha256(entity).digest():
        raise AssertionError("the messageDigest is not the SHA-256 of the signed entity")
    signed_attributes = bytearray(encoder.encode(attributes))
    signed_attributes[0] = 0x31  # RFC 5652 §5.4: the DER of the SET OF, not of the [0] IMPLICIT
    certificates = [x509.load_der_x509_certificate(encoder.encode(choice["certificate"]))
                    for choice in signed_data["certificates"]]
    [certificate] = certificates
    ca = x509.load_pem_x509_certificate(signer.ca_pem)
    certificate.verify_directly_issued_by(ca)
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(bytes(signer_info["signature"]), bytes(signed_attributes), ec.ECDSA(hashes.SHA256()))
    return entity


class VerifierTests(unittest.TestCase):
    """The verifier itself refuses what it must (so a passing check means something)."""

    def test_verifies_and_refuses_a_changed_octet(self) -> None:
        signer = Signer.create(ALICE)
        entity = cpim_entity(ALICE, CAROL, "checked")
        content_type, body = signer.sign(entity)
        self.assertEqual(verify_detached(content_type, body, signer), entity)
        self.assertRaises(AssertionError, verify_detached, content_type, body.replace(b"checked", b"chocked"), signer)
        other = Signer.create(ALICE)
        from cryptography.exceptions import InvalidSignature

        self.assertRaises((InvalidSignature, ValueError), verify_detached, content_type, body, other)


class SignedFixture:
    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.signer = Signer.create(ALICE)
        self.entity = cpim_entity(ALICE, CAROL, "signed by alice, for carol")
        self.content_type, self.body = self.signer.sign(self.entity)
        self.mime = b"Content-Type: " + self.content_type.encode() + CRLF + CRLF + self.body


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class InboundTests(SignedFixture, unittest.TestCase):
    """XMPP <e2e/> -> a Message whose content is the signed entity (RFC 3923 §3.1), signature intact."""

    addresses = AddressMap("gw.xmpp.example", ["xmpp.example"])

    def stanza(self, e2e_xml: str, extra: str = "") -> object:
        return mapping.parse_fragment(
            f"<message from='alice@xmpp.example/desk' to='{CAROL_JID}' type='chat' id='m1'>{extra}"
            f"<e2e xmlns='{e2e.NS_E2E}'>{e2e_xml}</e2e></message>")

    def check(self, operation: Message) -> None:
        self.assertEqual(operation.content.media_type, "multipart/signed")
        self.assertEqual(operation.content.body, self.body)  # byte for byte, CRLF restored
        self.assertEqual(dict(operation.content.parameters)["protocol"], '"application/pkcs7-signature"')
        self.assertEqual(verify_detached(operation.content.content_type, operation.content.body, self.signer),
                         self.entity)
        self.assertEqual((str(operation.source), str(operation.destination)), (ALICE, CAROL))
        self.assertEqual((operation.source_instance, operation.message_id), ("desk", "m1"))

    def test_raw_crlf_normalised_by_xml(self) -> None:
        # XML 1.0 §2.11: the parser turns CR LF into LF; the entity's canonical CRLF comes back.
        stanza = self.stanza(escape(self.mime.decode("ascii")))
        self.assertNotIn("\r", e2e.e2e_text(e2e.find_e2e(stanza)))
        self.check(mapping.message_to_cpim(stanza, self.addresses, origin="xmpp"))

    def test_cr_escaped(self) -> None:
        stanza = self.stanza(escape(self.mime.decode("ascii")).replace("\r", "&#13;"))
        self.assertIn("\r\n", e2e.e2e_text(e2e.find_e2e(stanza)))
        self.check(mapping.message_to_cpim(stanza, self.addresses, origin="xmpp"))

    def test_cdata_on_its_own_line_with_a_fallback_body(self) -> None:
        # RFC 3923's examples: the entity in CDATA, the element pretty-printed.
        stanza = self.stanza("\n    <![CDATA[" + self.mime.decode("ascii") + "]]>\n  ",
                             extra="<body>signed message</body><thread>t1</thread>")
        operation = mapping.message_to_cpim(stanza, self.addresses, origin="xmpp")
        self.check(operation)

    def test_pkcs7_mime_base64_is_decoded(self) -> None:
        der = bytes(range(256)) * 3
        text = ("Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n"
                "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(der).decode("ascii"))
        content = e2e.content_from_e2e(text)
        self.assertEqual((content.media_type, content.body), ("application/pkcs7-mime", der))
        self.assertEqual(content.parameters, (("smime-type", "enveloped-data"), ("name", "smime.p7m")))

    def test_refused(self) -> None:
        table = [
            ("no header block", "just text"),
            ("no content type", "X-Other: 1\n\nbody"),
            ("not secured", "Content-Type: text/plain\n\nhello"),
            ("no boundary", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"\n\nx"),
            ("bad base64", "Content-Type: application/pkcs7-mime\nContent-Transfer-Encoding: base64\n\n!!!"),
            ("unknown encoding", "Content-Type: application/pkcs7-mime\nContent-Transfer-Encoding: x-uue\n\nx"),
            ("bad header", "Content-Type: application/pkcs7-mime\nnot a header\n\nx"),
        ]
        for what, text in table:
            with self.assertRaises(mapping.StanzaError, msg=what) as caught:
                mapping.message_to_cpim(self.stanza(escape(text)), self.addresses)
            self.assertEqual(caught.exception.condition, "bad-request", what)
            self.assertIn("RFC 3923", caught.exception.reason, what)


class OutboundTests(SignedFixture, unittest.TestCase):
    """A signed Message -> XMPP <e2e/> whose character data is the canonical entity (RFC 3923 §3.1)."""

    addresses = AddressMap("gw.xmpp.example", ["xmpp.example"])

    def received(self, stanza: object) -> tuple[str, str, bytes]:
        """(body text, Content-Type, entity body) as a receiver parsing the serialised stanza finds them."""
        parsed = mapping.parse_fragment(stanza.toXml())  # type: ignore[attr-defined]
        text = e2e.e2e_text(e2e.find_e2e(parsed))
        head, _, body = text.encode("utf-8").partition(CRLF + CRLF)
        self.assertTrue(head.startswith(b"Content-Type: "), head)
        return str(parsed.body), head[len(b"Content-Type: "):].decode(), body

    def test_wrapped_in_message_cpim(self) -> None:
        # What a PRIM SEND of a multipart/signed becomes on the bus (-01 §17.2): a Message/CPIM wrapper.
        wrapper = build_message(CAROL, [ALICE], self.body, self.content_type).to_bytes()
        operation = Message(parse_uri(CAROL), parse_uri(ALICE), Content(MEDIA_CPIM, wrapper), origin="prim")
        stanza = mapping.cpim_to_message(operation, self.addresses, carry_cpim=False)
        self.assertEqual([child.name for child in stanza.elements()], ["body", "e2e"])
        text, content_type, body = self.received(stanza)
        self.assertEqual(text, "signed by alice, for carol")  # the signed Message/CPIM's text/plain
        self.assertEqual((content_type, body), (self.content_type, self.body))
        self.assertEqual(verify_detached(content_type, body, self.signer), self.entity)

    def test_wrapped_and_carried(self) -> None:
        wrapper = build_message(CAROL, [ALICE], self.body, self.content_type).to_bytes()
        operation = Message(parse_uri(CAROL), parse_uri(ALICE), Content(MEDIA_CPIM, wrapper), origin="prim")
        stanza = mapping.cpim_to_message(operation, self.addresses, carry_cpim=True)
        self.assertEqual([child.name for child in stanza.elements()], ["body", "e2e", "cpim"])
        carried = base64.b64decode(str(next(stanza.elements(mapping.NS_XMPP, "cpim"))))
        self.assertEqual(carried, wrapper)
        self.assertEqual(parse_message(carried).body, self.body)

    def test_bare_signed_content(self) -> None:
        # What an <e2e/> from XMPP (or a SIP MESSAGE body) is on the bus: the multipart/signed itself.
        media, params = e2e.split_content_type(self.content_type)
        operation = Message(parse_uri(CAROL), parse_uri(ALICE), Content(media, self.body, params),
                            message_id="sip-call-1", origin="sip")
        stanza = mapping.cpim_to_message(operation, self.addresses, default_type="chat")
        self.assertEqual((stanza["id"], stanza["type"]), ("sip-call-1", "chat"))
        self.assertIn("&#13;", stanza.toXml())
        text, content_type, body = self.received(stanza)
        self.assertEqual(text, "signed by alice, for carol")
        self.assertEqual(body, self.body)
        self.assertEqual(verify_detached(content_type, body, self.signer), self.entity)

    def test_binary_pkcs7_mime_is_base64(self) -> None:
        der = bytes(range(256))
        operation = Message(parse_uri(CAROL), parse_uri(ALICE),
                            Content("application/pkcs7-mime", der, (("smime-type", "enveloped-data"),)))
        stanza = mapping.cpim_to_message(operation, self.addresses)
        text = e2e.e2e_text(e2e.find_e2e(mapping.parse_fragment(stanza.toXml())))
        self.assertTrue(text.startswith("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
                                        "Content-Transfer-Encoding: base64\r\n\r\n"), text[:120])
        self.assertEqual(str(stanza.body), "[encrypted message]")
        self.assertEqual(e2e.content_from_e2e(text).body, der)  # and back

    def test_other_media_still_refused(self) -> None:
        operation = Message(parse_uri(CAROL), parse_uri(ALICE), Content("image/png", b"\x89PNG"))
        self.assertRaises(mapping.MessageFormatError, mapping.cpim_to_message, operation, self.addresses)


class FallbackTextTests(SignedFixture, unittest.TestCase):
    def test_table(self) -> None:
        signer = self.signer
        pidf = b"Content-Type: application/pidf+xml" + CRLF + CRLF + b"<presence/>"
        text_part = b"Content-Type: text/plain; charset=utf-8" + CRLF + CRLF + "plain, signed: é".encode()
        table = [
            (self.content_type, self.body, "signed by alice, for carol"),
            (*signer.sign(pidf), "[signed message]"),
            (*signer.sign(text_part), "plain, signed: é"),
            ("application/pkcs7-mime; smime-type=enveloped-data", b"\x30\x80", "[encrypted message]"),
            ('application/pkcs7-mime; smime-type="signed-data"', b"\x30\x80", "[signed message]"),
            ("multipart/signed; boundary=x", b"garbage", "[signed message]"),
        ]
        for content_type, body, expected in table:
            self.assertEqual(e2e.fallback_text(content_type, body), expected, content_type)


class LineEndTests(unittest.TestCase):
    def test_canonical_line_ends(self) -> None:
        table = [(b"a\nb", b"a\r\nb"), (b"a\r\nb", b"a\r\nb"), (b"a\rb", b"a\r\nb"),
                 (b"a\r\r\nb\n\n", b"a\r\n\r\nb\r\n\r\n")]
        for given, expected in table:
            self.assertEqual(e2e.canonical_line_ends(given), expected, given)

    def test_content_type_parameters_keep_quotes(self) -> None:
        media, params = e2e.split_content_type('Multipart/Signed; protocol="application/pkcs7-signature"; '
                                               'micalg=sha-256; boundary="a;b"')
        self.assertEqual(media, "multipart/signed")
        self.assertEqual(params, (("protocol", '"application/pkcs7-signature"'), ("micalg", "sha-256"),
                                  ("boundary", '"a;b"')))
        self.assertEqual(e2e.format_content_type(Content(media, b"", params)),
                         'multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="a;b"')
        # Values another adapter gave unquoted are quoted where MIME needs it.
        self.assertEqual(e2e.format_content_type(Content("multipart/signed", b"",
                                                         (("protocol", "application/pkcs7-signature"),))),
                         'multipart/signed; protocol="application/pkcs7-signature"')


class AdapterE2ETests(SignedFixture, AdapterHarness, unittest.TestCase):
    """Both directions through the adapter on a component stream (StringTransport)."""

    def test_inbound_reaches_the_other_network_signed(self) -> None:
        mime = escape(self.mime.decode("ascii"))  # raw CR LF: the stream parser makes it LF
        self.feed(f"<message from='alice@xmpp.example/desk' to='bob\\40sip.example@gw.xmpp.example' type='chat' "
                  f"id='e2e-1'><e2e xmlns='{e2e.NS_E2E}'>{mime}</e2e></message>")
        [message] = self.sip.of_type(Message)
        self.assertEqual((message.content.media_type, message.content.body), ("multipart/signed", self.body))
        self.assertEqual(message.origin, "xmpp")
        self.assertEqual(verify_detached(message.content.content_type, message.content.body, self.signer),
                         self.entity)
        self.assertEqual(self.sent(), [])  # no error answered

    def test_inbound_bad_entity_answered_bad_request(self) -> None:
        self.feed("<message from='alice@xmpp.example/desk' to='bob\\40sip.example@gw.xmpp.example' id='e2e-2'>"
                  f"<e2e xmlns='{e2e.NS_E2E}'>Content-Type: text/plain\n\nnot signed</e2e></message>")
        self.assertEqual(self.sip.of_type(Message), [])
        [error] = self.sent()
        self.assertEqual((error["type"], error["id"]), ("error", "e2e-2"))
        self.assertIsNotNone(next(error.elements()).firstChildElement())

    def test_outbound_delivered_as_e2e(self) -> None:
        media, params = e2e.split_content_type(self.content_type)
        operation = Message(parse_uri("im:bob@sip.example"), parse_uri("im:juliet@xmpp.example"),
                            Content(media, self.body, params), origin="sip")
        deferred = self.adapter.deliver(operation)
        [stanza] = self.sent()
        self.assertEqual(str(stanza.body), "signed by alice, for carol")
        text = e2e.e2e_text(e2e.find_e2e(stanza))
        head, _, body = text.encode().partition(CRLF + CRLF)
        self.assertEqual(body, self.body)  # CR survived the wire as &#13;
        self.assertEqual(verify_detached(head.decode()[len("Content-Type: "):], body, self.signer), self.entity)
        self.reactor.advance(1.0)
        self.assertIs(self.successResultOf(deferred).status, Status.INDETERMINANT)
