"""TLS server material that can be replaced while listening (certificate renewal without a restart).

A listener given a :class:`ReloadableServerTLS` builds each new TLS server
connection (RFC 8446 §4: each handshake presents the certificate configured
at that moment) from the options the holder has *now*; :meth:`replace` swaps
them.  Connections already established keep their session.  Used by the
SIGHUP reload of :class:`cpimgw.service.GatewayService`.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerTLS:
    """An ``IOpenSSLServerConnectionCreator`` delegating to replaceable ``CertificateOptions``."""

    def __init__(self, options: Any) -> None:
        self.options = options

    def replace(self, options: Any) -> None:
        """Present ``options``' certificate from the next handshake on."""
        self.options = options

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Any:  # noqa: N802 (Twisted's name)
        from OpenSSL import SSL

        return SSL.Connection(self.options.getContext(), None)


def certificate_bytes(options: Any) -> bytes:
    """The DER octets of the certificate ``options`` present (to tell whether a reload changed it)."""
    from OpenSSL import crypto

    certificate = getattr(options, "certificate", None)
    if certificate is None:
        return b""
    return crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)


__all__ = ["ReloadableServerTLS", "certificate_bytes"]
