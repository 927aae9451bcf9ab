"""A throw-away test CA and per-domain certificates (subjectAltName DNS = the domain).

Built with ``cryptography`` at test time; nothing is checked in.
"""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


class TestCA:
    """A CA whose key signs certificates for the domains asked for."""

    def __init__(self, name: str = "cpimgw test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, domain: str) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for ``domain``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(domain)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def write(self, directory: str, domain: str) -> dict[str, str]:
        """Write the CA, and ``domain``'s certificate and key, into ``directory``; return the paths as settings."""
        cert, key = self.issue(domain)
        paths = {
            "tls_certificate": os.path.join(directory, f"{domain}.crt"),
            "tls_key": os.path.join(directory, f"{domain}.key"),
            "tls_ca": os.path.join(directory, "ca.crt"),
        }
        with open(paths["tls_certificate"], "wb") as handle:
            handle.write(cert)
        with open(paths["tls_key"], "wb") as handle:
            handle.write(key)
        with open(paths["tls_ca"], "wb") as handle:
            handle.write(self.pem)
        return paths
