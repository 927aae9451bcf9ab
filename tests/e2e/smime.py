"""S/MIME for the end-to-end signature tests (RFC 3862 §5.2, RFC 5751 §3.5, RFC 3923).

- :class:`Signer`: a test CA and one user's certificate (subjectAltName URI
  ``im:user@domain``, RFC 3862 §6.2 / RFC 3923 §10) made with ``cryptography``,
  and :meth:`Signer.sign` which wraps a MIME entity (a Message/CPIM object, a
  PIDF document) in ``multipart/signed`` with a detached
  ``application/pkcs7-signature`` (``PKCS7SignatureBuilder``, DER, base64).
- :func:`find_signed`: unwrap what a receiver got (Message/CPIM wrappers added
  on the way) down to the ``multipart/signed`` entity.
- :func:`verify`: ``openssl smime -verify`` on those octets against the CA,
  run with ``getProcessOutputAndValue`` (never blocking the reactor); fires with
  the signed content and the signer's certificate.
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import uuid
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue

from cpimgw.cpim.message import parse_message
from tests.interop import require_program

CRLF = b"\r\n"


def _name(common_name: str) -> Any:
    from cryptography.x509.oid import NameOID
    from cryptography import x509

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@attrs.define
class Signer:
    """A test CA and the certificate of ``address`` (``im:user@domain``) it issued."""

    address: str
    ca_pem: bytes = b""
    cert_pem: bytes = b""
    key: Any = None
    certificate: Any = None

    @classmethod
    def create(cls, address: str) -> "Signer":
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder()
              .subject_name(_name("cpimgw e2e test CA")).issuer_name(_name("cpimgw e2e test CA"))
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                           crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(_name(address)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(address)]), critical=False)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        return cls(address, ca.public_bytes(pem), cert.public_bytes(pem), key, cert)

    def sign(self, entity: bytes) -> tuple[str, bytes]:
        """``multipart/signed`` (RFC 5751 §3.5.3) over the MIME ``entity`` (its headers, CRLF CRLF, its body).

        Returns (Content-Type value, body octets).  The entity must already be
        in canonical form (CRLF line ends), as RFC 5751 §3.1.1 requires.
        """
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.serialization import pkcs7

        if re.search(rb"(?<!\r)\n", entity):
            raise ValueError("the entity to sign must use CRLF line ends")
        signature = (pkcs7.PKCS7SignatureBuilder().set_data(entity)
                     .add_signer(self.certificate, self.key, hashes.SHA256())
                     .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature,
                                                        pkcs7.PKCS7Options.Binary]))
        boundary = "signed-" + uuid.uuid4().hex
        encoded = base64.encodebytes(signature).replace(b"\n", CRLF)
        body = (b"--" + boundary.encode() + CRLF + entity + CRLF
                + b"--" + boundary.encode() + CRLF
                + b"Content-Type: application/pkcs7-signature; name=smime.p7s" + CRLF
                + b"Content-Transfer-Encoding: base64" + CRLF
                + b"Content-Disposition: attachment; filename=smime.p7s" + CRLF + CRLF
                + encoded
                + b"--" + boundary.encode() + b"--" + CRLF)
        content_type = f'multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="{boundary}"'
        return content_type, body

    def write(self, directory: str) -> str:
        """Write the CA certificate; return its path."""
        path = os.path.join(directory, "ca.pem")
        with open(path, "wb") as handle:
            handle.write(self.ca_pem)
        return path


def cpim_entity(sender: str, recipient: str, text: str, date_time: str = "2026-11-22T10:00:00Z") -> bytes:
    """A Message/CPIM object (RFC 3862 §3) as a MIME entity ready to be signed (RFC 3862 §5.2)."""
    lines = [
        "Content-Type: message/cpim",
        "",
        f"From: <{sender}>",
        f"To: <{recipient}>",
        f"DateTime: {date_time}",
        "",
        "Content-Type: text/plain; charset=utf-8",
        "",
        text,
    ]
    return CRLF.join(line.encode("utf-8") for line in lines)


def pidf_entity(entity: str, basic: str, note: str) -> bytes:
    """A PIDF document (RFC 3863) as a MIME entity ready to be signed."""
    document = ('<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
                f'entity="{entity}"><tuple id="signed"><status><basic>{basic}</basic></status>'
                f"<note>{note}</note></tuple></presence>")
    return b"Content-Type: application/pidf+xml" + CRLF + CRLF + document.encode()


def find_signed(content_type: str, body: bytes, depth: int = 4) -> tuple[str, bytes]:
    """The ``multipart/signed`` inside what a receiver got: (its Content-Type, its octets).

    Message/CPIM wrappers (the gateway wraps a foreign body in one, RFC 3862)
    are opened; anything else that is not multipart/signed fails the test.
    """
    for _ in range(depth):
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "multipart/signed":
            return content_type, body
        if media != "message/cpim":
            raise AssertionError(f"received {content_type!r}, not multipart/signed: {body[:300]!r}")
        inner = parse_message(body)
        content_type, body = inner.content_type, inner.body
    raise AssertionError("multipart/signed not found within the Message/CPIM wrappers")


@attrs.frozen
class Verified:
    content: bytes       #: the signed entity as openssl gives it back
    signer_pem: bytes    #: the signer's certificate
    signer_uris: tuple[str, ...]  #: its subjectAltName URIs


@inlineCallbacks
def verify(content_type: str, body: bytes, ca_path: str, workdir: str):  # type: ignore[no-untyped-def]
    """``openssl smime -verify`` the multipart/signed (``content_type``, ``body``) against the CA at ``ca_path``.

    Fires with :class:`Verified`; fails the test when openssl does not say
    "Verification successful".
    """
    from cryptography import x509

    openssl = require_program("openssl")
    os.makedirs(workdir, exist_ok=True)
    message = os.path.join(workdir, "received.eml")
    content = os.path.join(workdir, "content.out")
    signer = os.path.join(workdir, "signer.pem")
    with open(message, "wb") as handle:
        handle.write(b"MIME-Version: 1.0" + CRLF + b"Content-Type: " + content_type.encode() + CRLF + CRLF + body)
    out, err, code = yield getProcessOutputAndValue(
        openssl, ["smime", "-verify", "-in", message, "-inform", "SMIME", "-CAfile", ca_path, "-binary",
                  "-out", content, "-signer", signer], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        reactor=reactor)
    text = (out + err).decode("utf-8", "replace")
    if code != 0 or "Verification successful" not in text:
        raise AssertionError(f"openssl smime -verify failed ({code}): {text}\n{body[:2000]!r}")
    with open(content, "rb") as handle:
        signed = handle.read()
    with open(signer, "rb") as handle:
        signer_pem = handle.read()
    cert = x509.load_pem_x509_certificate(signer_pem)
    uris = tuple(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier))
    return Verified(signed, signer_pem, uris)
