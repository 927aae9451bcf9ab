"""The bot's TLS against a real server (ngircd): the certificate is verified (RFC 5280 path, RFC 6125 name).

The adapter runs in-process on the real reactor and a ``cpimgw.testing``
bus; ngircd serves TLS with a certificate for ``irc.localhost`` from a test
CA.  Trusted CA and right name: the bot signs on.  Another CA, or the right
CA but another name: the handshake is refused and the bot never registers.
"""

from __future__ import annotations

import os

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase

from cpimgw.testing import make_bus
from cpimgw_irc.adapter import IRCAdapter, IRCSettings
from cpimgw_irc.test.ngircd import WAIT, NgIRCd, make_certificates, require_ngircd


class _Lost(protocol.Protocol):
    def __init__(self) -> None:
        self.lost: defer.Deferred = defer.Deferred()
        self.received = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data

    def connectionLost(self, reason: object) -> None:  # noqa: N802
        self.reason = reason
        self.lost.callback(None)


class TLSTests(TestCase):

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        require_ngircd()
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.ca, cert, key = make_certificates(self.dir, "irc.localhost")
        other = os.path.join(self.dir, "other")
        os.makedirs(other)
        self.other_ca = make_certificates(other, "irc.localhost")[0]
        self.ngircd = NgIRCd(self.dir, cert=cert, key=key)
        self.addCleanup(self.ngircd.stop)
        yield self.ngircd.start()
        self.bus = make_bus(reactor=reactor)
        self.addCleanup(self.bus.stop)

    def adapter(self, **settings: object) -> IRCAdapter:
        values = {"domain": "irc.localhost", "port": self.ngircd.tls_port, "tls_ca": self.ca,
                  "tls_hostname": "irc.localhost", "initial_delay": 5.0, **settings}
        return IRCAdapter("irc", self.bus, IRCSettings.from_mapping(values))

    @defer.inlineCallbacks
    def test_verified_certificate_signs_on(self):  # type: ignore[no-untyped-def]
        adapter = self.adapter()
        adapter.startService()
        self.addCleanup(adapter.stopService)
        bot = yield adapter.ready.addTimeout(WAIT, reactor)
        self.assertEqual(bot.nickname, "cpimgw")
        self.assertTrue(bot.transport.getPeerCertificate() is not None)

    @defer.inlineCallbacks
    def refused(self, why: str, **settings: object):  # type: ignore[no-untyped-def]
        client = _Lost()
        yield self.adapter(**settings).endpoint().connect(protocol.Factory.forProtocol(lambda: client))
        yield client.lost.addTimeout(WAIT, reactor)
        self.assertIn(why, str(client.reason.value))
        self.assertEqual(client.received, b"")  # not one line of IRC before the certificate is checked

    def test_untrusted_ca_is_refused(self):  # type: ignore[no-untyped-def]
        return self.refused("certificate verify failed", tls_ca=self.other_ca)

    def test_other_name_is_refused(self):  # type: ignore[no-untyped-def]
        return self.refused("DNSMismatch", tls_hostname="other.localhost")
