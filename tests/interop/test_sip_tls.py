"""Interop: the SIP adapter's TLS transport (RFC 3261 §26, RFC 5922) on loopback.

The Debian sipp build has no TLS (``sipp -v``: ``SIPp v3.6.1-SCTP-PCAP-RTPSTREAM``),
so the TLS client is a second instance of our own stack (pyOpenSSL with
``service_identity``) plus, as an independent implementation, ``openssl
s_client``.  A test CA and certificates are made in the test with the
``cryptography`` package:

- a certificate for the SIP domain, from the trusted CA: the MESSAGE is
  delivered and answered 200;
- a certificate from a CA the client does not trust: the handshake is refused
  and the client's transaction fails at once with 503 (nothing delivered);
- a certificate from the trusted CA for another name: refused the same way
  (the domain the request is routed for is checked, RFC 5922 §4).
"""

from __future__ import annotations

import datetime
import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from cpimgw.cpim.operations import Content, Message, Status
from cpimgw.cpim.uri import im_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus
from cpimgw.adapters.sip.adapter import SipAdapter, SipSettings
from tests.interop import require_module, require_program

DOMAIN = "gw.test"


def make_ca(name: str):  # type: ignore[no-untyped-def]
    """A self-signed CA: (key, certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca_key, ca_cert, dns_name: str):  # type: ignore[no-untyped-def]
    """A server certificate for ``dns_name`` signed by the CA: (key, certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pem(path: str, *objects) -> str:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    with open(path, "wb") as handle:
        for item in objects:
            if hasattr(item, "private_bytes"):
                handle.write(item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
            else:
                handle.write(item.public_bytes(serialization.Encoding.PEM))
    return path


class _Collect(ProcessProtocol):
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.output = b""
        self.answered = False
        self.ended: Deferred = Deferred()

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(self.data)  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.output += data
        if not self.answered and b"SIP/2.0 200" in self.output \
                and b"\r\n\r\n" in self.output.split(b"SIP/2.0 200", 1)[1]:
            self.answered = True
            self.transport.signalProcess("TERM")  # type: ignore[union-attr]

    errReceived = outReceived

    def processEnded(self, reason) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        self.ended.callback(self.output.decode("utf-8", "replace"))


class TlsTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        require_module("cryptography")
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.ca_key, self.ca = make_ca("cpimgw test CA")
        self.ca_path = write_pem(os.path.join(self.dir, "ca.pem"), self.ca)

    def server(self, cert_name: str, *, trusted: bool = True) -> SipAdapter:
        """The gateway serving DOMAIN over TLS with a certificate for ``cert_name``."""
        ca_key, ca = (self.ca_key, self.ca) if trusted else make_ca("some other CA")
        key, cert = make_leaf(ca_key, ca, cert_name)
        bus = make_bus(reactor=reactor)
        self.addCleanup(bus.stop)
        self.sink = RecordingAdapter("cpim-test", [DOMAIN])
        attach(bus, self.sink)
        adapter = SipAdapter(bus, SipSettings.from_mapping({
            "domains": ["sip-server.test"], "port": 0, "tls_port": 0, "transports": ["tcp", "tls"],
            "use_dns": False, "tls_certificate": write_pem(os.path.join(self.dir, "server.pem"), cert),
            "tls_key": write_pem(os.path.join(self.dir, "server.key"), key),
        }), reactor=reactor)
        bus.register(adapter)
        adapter.startService()
        self.addCleanup(adapter.stopService)
        return adapter

    def client(self, server: SipAdapter) -> SipAdapter:
        """A second gateway whose route to DOMAIN is the server's TLS port; it trusts our CA only."""
        bus = make_bus(reactor=reactor)
        self.addCleanup(bus.stop)
        attach(bus, RecordingAdapter("xmpp", ["client.test"]))
        adapter = SipAdapter(bus, SipSettings.from_mapping({
            "domains": ["sip-client.test"], "port": 0, "transports": ["tcp"], "use_dns": False,
            "tls_ca": self.ca_path, "routes": {DOMAIN: f"sips:127.0.0.1:{server.ports['TLS']}"},
        }), reactor=reactor)
        bus.register(adapter)
        adapter.startService()
        self.addCleanup(adapter.stopService)
        return adapter

    def message(self) -> Message:
        return Message(im_uri("alice", "client.test"), im_uri("bob", DOMAIN), Content("text/plain", b"over TLS"))

    @inlineCallbacks
    def test_trusted_certificate_for_the_domain(self):  # type: ignore[no-untyped-def]
        server = self.server(DOMAIN)
        client = self.client(server)
        response = yield client.deliver(self.message()).addTimeout(20, reactor)
        self.assertEqual((response.status, response.native_code), (Status.SUCCESS, 200))
        [delivered] = self.sink.delivered
        self.assertEqual(str(delivered.destination), f"im:bob@{DOMAIN}")
        self.assertIn(b"over TLS", delivered.content.body)
        [stream] = client.stack.open_streams
        self.assertEqual(stream.transport_name, "TLS")

    @inlineCallbacks
    def test_untrusted_certificate_refused(self):  # type: ignore[no-untyped-def]
        server = self.server(DOMAIN, trusted=False)
        client = self.client(server)
        response = yield client.deliver(self.message()).addTimeout(20, reactor)
        self.assertEqual((response.status, response.native_code), (Status.FAILURE, 503))
        self.assertEqual(self.sink.delivered, [])

    @inlineCallbacks
    def test_certificate_for_another_name_refused(self):  # type: ignore[no-untyped-def]
        server = self.server("other.test")
        client = self.client(server)
        response = yield client.deliver(self.message()).addTimeout(20, reactor)
        self.assertEqual((response.status, response.native_code), (Status.FAILURE, 503))
        self.assertEqual(self.sink.delivered, [])

    @inlineCallbacks
    def test_openssl_s_client_sends_a_message(self):  # type: ignore[no-untyped-def]
        openssl = require_program("openssl")
        server = self.server(DOMAIN)
        port = server.ports["TLS"]
        body = b"hello from openssl"
        request = (
            f"MESSAGE sip:bob@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKossl1\r\n"
            f"From: <sip:carol@sip-client.test>;tag=o1\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: ossl-1\r\n"
            f"CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        protocol = _Collect(request)
        process = reactor.spawnProcess(
            protocol, openssl,
            [openssl, "s_client", "-quiet", "-connect", f"127.0.0.1:{port}", "-servername", DOMAIN,
             "-CAfile", self.ca_path, "-verify_return_error", "-verify_hostname", DOMAIN],
            env={"PATH": "/usr/bin:/bin"},
        )
        killer = reactor.callLater(20, lambda: process.signalProcess("KILL"))
        output = yield protocol.ended
        if killer.active():
            killer.cancel()
        self.assertIn("SIP/2.0 200 OK", output)
        [delivered] = self.sink.delivered
        self.assertIn(body, delivered.content.body)
