"""TLS material of the XMPP s2s mode: our certificate, the peers' trust roots (RFC 6120 §5, §13.7).

- :func:`ensure_self_signed` writes a self-signed certificate for the gateway
  domain (ECDSA P-256, DNS subjectAltName, key file mode 0600) into a data
  directory when none is there yet; the embedded default uses it so the s2s
  listener can offer STARTTLS with no configuration.
- :func:`load_tls` reads the certificate chain and key (PEM) and the trust
  roots (a PEM bundle, or the platform's), and returns :class:`TLSMaterial`,
  which builds the server options for incoming streams and the client
  options for outgoing ones (both with the ALPN protocol ``xmpp-server``,
  XEP-0368).  Outgoing streams verify the peer with
  ``service_identity`` against the peer's XMPP domain
  (``optionsForClientTLS(hostname=domain)``, RFC 6125 / RFC 6120 §13.7.2).
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.logger import Logger

from cpimgw.cpim.errors import ConfigError

log = Logger()

#: The ALPN protocol of s2s streams (XEP-0368).  It must be set on the server
#: side: a client offering ALPN to a pyOpenSSL server without it gets a TLS
#: ``internal_error`` alert (Prosody 0.12 offers ``xmpp-server``).
ALPN_XMPP_SERVER = b"xmpp-server"


def self_signed_paths(data_dir: str, domain: str) -> tuple[str, str]:
    """The certificate and key files :func:`ensure_self_signed` uses for ``domain``."""
    base = os.path.join(data_dir, f"xmpp-{domain}")
    return base + ".crt", base + ".key"


def make_certificate(
    domain: str,
    *,
    issuer_key: Any = None,
    issuer_name: x509.Name | None = None,
    is_ca: bool = False,
    days: int = 825,
    now: datetime.datetime | None = None,
) -> tuple[bytes, bytes, Any]:
    """A new ECDSA P-256 certificate for ``domain`` (DNS SAN): ``(cert PEM, key PEM, key)``.

    Self-signed unless ``issuer_key``/``issuer_name`` are given (a CA signs
    it); ``is_ca`` makes a CA certificate (tests build a test CA with it).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = now or datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
    certificate = builder.sign(issuer_key or key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem, key


def write_private(path: str, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only (0600)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def ensure_self_signed(data_dir: str, domain: str) -> tuple[str, str, bool]:
    """``(certificate path, key path, generated)``: a self-signed pair for ``domain`` in ``data_dir``.

    An existing pair is kept (``generated`` is ``False``); otherwise one is
    generated, the key written with mode 0600, and the fact logged.
    """
    cert_path, key_path = self_signed_paths(data_dir, domain)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path, False
    os.makedirs(data_dir, exist_ok=True)
    cert_pem, key_pem, _ = make_certificate(domain)
    write_private(key_path, key_pem)
    with open(cert_path, "wb") as handle:
        handle.write(cert_pem)
    log.info(
        "XMPP s2s: generated a self-signed certificate for {domain} in {path} (key {key}, mode 0600); "
        "peers must trust it, or configure tls_certificate/tls_key",
        domain=domain, path=cert_path, key=key_path,
    )
    return cert_path, key_path, True


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise ConfigError(f"cannot read {path!r}: {error.strerror}", key=f"adapters.xmpp.{key}") from None


@attrs.frozen
class TLSMaterial:
    """Our certificate chain and key, and the roots peers are verified against."""

    certificate: ssl.PrivateCertificate
    chain: tuple[Any, ...]
    trust_root: Any

    def server_options(self) -> ssl.CertificateOptions:
        """Options for the TLS server side of an incoming stream (our certificate for our domain)."""
        return ssl.CertificateOptions(
            privateKey=self.certificate.privateKey.original,
            certificate=self.certificate.original,
            extraCertChain=list(self.chain),
            acceptableProtocols=[ALPN_XMPP_SERVER],
        )

    def client_options(self, domain: str) -> Any:
        """Options for an outgoing stream to ``domain``: verify its certificate names ``domain``."""
        return ssl.optionsForClientTLS(domain, trustRoot=self.trust_root, clientCertificate=self.certificate,
                                       acceptableProtocols=[ALPN_XMPP_SERVER])


def load_tls(certificate_path: str, key_path: str, ca_path: str = "") -> TLSMaterial:
    """Read PEM files into :class:`TLSMaterial`; :class:`ConfigError` names the bad setting."""
    cert_pem = _read(certificate_path, "tls_certificate")
    key_pem = _read(key_path, "tls_key")
    try:
        certificates = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as error:
        raise ConfigError(f"no PEM certificate in {certificate_path!r}: {error}", key="adapters.xmpp.tls_certificate")
    try:
        private = ssl.PrivateCertificate.loadPEM(
            certificates[0].public_bytes(serialization.Encoding.PEM) + b"\n" + key_pem)
    except Exception as error:  # pyOpenSSL raises several kinds here
        raise ConfigError(f"key {key_path!r} does not load or match the certificate: {error}",
                          key="adapters.xmpp.tls_key") from None
    chain = tuple(crypto.X509.from_cryptography(c) for c in certificates[1:])
    if ca_path:
        try:
            roots = x509.load_pem_x509_certificates(_read(ca_path, "tls_ca"))
        except ValueError as error:
            raise ConfigError(f"no PEM certificate in {ca_path!r}: {error}", key="adapters.xmpp.tls_ca")
        trust_root = ssl.trustRootFromCertificates(
            [ssl.Certificate.loadPEM(c.public_bytes(serialization.Encoding.PEM)) for c in roots])
    else:
        trust_root = ssl.platformTrust()
    return TLSMaterial(private, chain, trust_root)
