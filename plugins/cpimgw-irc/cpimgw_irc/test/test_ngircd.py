"""The IRC adapter against a real IRC server (Debian's ngircd), beside XMPP, SIP and PRIM.

One gateway process (``twistd -n cpimgw --config``, from the main
repository's ``conf/three-networks.toml`` plus an ``[adapters.irc]`` table)
joins a real Prosody (alice, slixmpp), a real Kamailio (SIP users are sipp
scenarios) and a real ngircd, reached over TLS with the certificate
verified against a test CA (RFC 2812 §3.1 registration, IRCv3 CAP).  The
IRC user dan is a ``twisted.words`` client of the same ngircd.

- messages both ways between dan (IRC) and alice (XMPP), and dan's reply
  without an address going to whoever wrote to him last;
- a SIP watcher of ``dan@irc.localhost`` sees dan go AWAY (RFC 3856
  NOTIFY, PIDF with the away text and RPID ``away``);
- a message to a nick that is not online comes back to the XMPP sender as
  ``recipient-unavailable`` (IRC 401 ERR_NOSUCHNICK).

The fixtures of the main repository's end-to-end tests (``tests.e2e``) are
used as they are: these tests run from a checkout of cpimgw, as its
``.ci/run`` runs them.
"""

from __future__ import annotations

import os
import re

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest

from cpimgw_irc.test.ngircd import NgIRCd, connect_user, in_ci, make_certificates, require_ngircd

try:
    from tests.e2e.peers import gateway_config, sip_body, sip_header, traced_requests, wait_until, xmpp_jid_of
    from tests.e2e.world import WAIT, ThreeNetworksTestCase
except ImportError as error:  # installed without a checkout of cpimgw: no e2e fixtures
    if in_ci():
        raise
    WAIT = 15.0
    _missing = str(error)

    class ThreeNetworksTestCase:  # type: ignore[no-redef]
        def setUp(self):  # type: ignore[no-untyped-def]
            raise SkipTest(f"the cpimgw checkout's tests.e2e fixtures are not importable: {_missing}")

    from twisted.trial.unittest import TestCase as _TestCase

    ThreeNetworksTestCase = type("ThreeNetworksTestCase", (ThreeNetworksTestCase, _TestCase), {})  # type: ignore

IRC_DOMAIN = "irc.localhost"
IRC_SECTION = """
[adapters.irc]
enabled = true
domain = "irc.localhost"
host = "127.0.0.1"
port = {port}
tls = true
tls_ca = "{ca}"
tls_hostname = "irc.localhost"
nickname = "cpimgw"
poll_interval = 1.0
delivery_timeout = 10.0
"""


class IRCBesideThreeNetworksTestCase(ThreeNetworksTestCase):
    """Prosody + Kamailio + ngircd + one twistd gateway running xmpp, sip, prim and irc."""

    timeout = 120

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        require_ngircd()
        yield self.start_peers()
        ngircd_dir = os.path.join(self.dir, "ngircd")
        os.makedirs(ngircd_dir)
        ca, cert, key = make_certificates(ngircd_dir, IRC_DOMAIN)
        self.ngircd = NgIRCd(ngircd_dir, name=IRC_DOMAIN, cert=cert, key=key)
        self.addCleanup(self.ngircd.stop)
        yield self.ngircd.start()
        self.ports = self.gateway_ports()
        config = gateway_config(xmpp_component_port=self.prosody.component_port, kamailio_port=self.kamailio.port,
                                **self.ports) + IRC_SECTION.format(port=self.ngircd.tls_port, ca=ca)
        self.gateway = yield self.start_gateway("gw", config)
        yield wait_until(lambda: "IRC adapter irc signed on" in self.gateway.log(), WAIT,
                         what="the gateway's IRC bot to sign on")
        self.alice = yield self.xmpp_user("alice")
        self.dan = yield connect_user(self.ngircd.port, "dan")
        self.addCleanup(self._quit, self.dan)

    def _quit(self, user):  # type: ignore[no-untyped-def]
        if user.transport is not None:
            user.transport.loseConnection()

    def context(self) -> str:
        return f"\n--- gateway log ---\n{self.gateway.log()[-3000:]}\n--- ngircd ---\n{self.ngircd.log()[-1500:]}"


class MessageTests(IRCBesideThreeNetworksTestCase):

    @inlineCallbacks
    def test_irc_to_xmpp_and_reply(self):  # type: ignore[no-untyped-def]
        self.dan.msg("cpimgw", "alice@xmpp.localhost: Hello Alice, from IRC")
        yield wait_until(lambda: self.alice.messages, WAIT, what="alice's message" + self.context())
        [received] = self.alice.messages
        self.assertEqual(received["body"], "Hello Alice, from IRC")
        self.assertEqual(received["from"].split("/")[0], xmpp_jid_of("dan", IRC_DOMAIN))
        self.assertEqual(received["to"].split("/")[0], "alice@xmpp.localhost")
        # alice answers; dan reads it from the bot with alice named, and answers without an address.
        self.alice.send_message(xmpp_jid_of("dan", IRC_DOMAIN), "Hello Dan, from XMPP")
        yield wait_until(lambda: self.dan.texts(sender="cpimgw"), WAIT, what="dan's message" + self.context())
        self.assertEqual(self.dan.texts(sender="cpimgw"), ["<alice@xmpp.localhost> Hello Dan, from XMPP"])
        self.dan.msg("cpimgw", "and back again")
        yield wait_until(lambda: len(self.alice.messages) == 2, WAIT, what="alice's second message" + self.context())
        self.assertEqual(self.alice.messages[1]["body"], "and back again")

    @inlineCallbacks
    def test_xmpp_to_irc_long_text_is_split(self):  # type: ignore[no-untyped-def]
        words = " ".join(f"word{n}" for n in range(150))  # ~1000 octets: more than one IRC line holds
        self.alice.send_message(xmpp_jid_of("dan", IRC_DOMAIN), words)
        yield wait_until(lambda: len(self.dan.texts(sender="cpimgw")) >= 2, WAIT, what="the parts" + self.context())
        yield wait_until(lambda: "word149" in " ".join(self.dan.texts(sender="cpimgw")), WAIT,
                         what="the last part" + self.context())
        parts = self.dan.texts(sender="cpimgw")
        self.assertTrue(all(p.startswith("<alice@xmpp.localhost> ") for p in parts), parts)
        self.assertEqual(" ".join(p[len("<alice@xmpp.localhost> "):] for p in parts), words)
        self.assertIn("split into", self.gateway.log())

    @inlineCallbacks
    def test_message_to_a_nick_not_online_fails_back_to_the_sender(self):  # type: ignore[no-untyped-def]
        self.alice.call(self.alice.client.send_raw,
                        f"<message to='{xmpp_jid_of('nobody', IRC_DOMAIN)}' type='chat' id='irc-401'>"
                        "<body>anybody there?</body></message>")
        yield wait_until(lambda: any("irc-401" in s and 'type="error"' in s for s in self.alice.stanzas), WAIT,
                         what="the error answered to alice" + self.context())
        [error] = [s for s in self.alice.stanzas if "irc-401" in s]
        condition = re.search(r"<([a-z-]+) xmlns=[\"']urn:ietf:params:xml:ns:xmpp-stanzas[\"']", error)
        self.assertIsNotNone(condition, error)
        self.assertEqual(condition.group(1), "recipient-unavailable", error)

    @inlineCallbacks
    def test_irc_user_refused_is_told(self):  # type: ignore[no-untyped-def]
        self.dan.msg("cpimgw", "nobody@nowhere.invalid: hello?")
        yield wait_until(lambda: self.dan.texts("NOTICE", "cpimgw"), WAIT, what="the notice to dan" + self.context())
        [notice] = self.dan.texts("NOTICE", "cpimgw")
        self.assertTrue(notice.startswith("not delivered to nobody@nowhere.invalid"), notice)


class PresenceTests(IRCBesideThreeNetworksTestCase):

    @inlineCallbacks
    def test_sip_watcher_sees_irc_user_go_away(self):  # type: ignore[no-untyped-def]
        process, workdir = self.sip_watch("bob@sip.localhost", f"dan@{IRC_DOMAIN}")

        def with_basic(basic: bytes) -> list[bytes]:
            return [n for n in traced_requests(workdir, "NOTIFY") if b"<basic>" + basic in sip_body(n)]

        yield wait_until(lambda: with_basic(b"open") or process.ended.called, WAIT,
                         what="the NOTIFY of dan online" + self.context())
        self.assertFalse(process.ended.called, process.protocol.output.decode("utf-8", "replace")[-2000:])
        self.dan.away("gone fishing")

        def away() -> list[bytes]:
            return [n for n in traced_requests(workdir, "NOTIFY") if b"gone fishing" in sip_body(n)]

        yield wait_until(lambda: away() or process.ended.called, WAIT, what="the NOTIFY of dan away" + self.context())
        self.assertFalse(process.ended.called, process.protocol.output.decode("utf-8", "replace")[-2000:])
        yield process.stop()
        [notify, *_] = away()
        self.assertEqual(sip_header(notify, "Content-Type"), "application/pidf+xml")
        self.assertTrue(sip_header(notify, "Subscription-State").startswith("active"))
        body = sip_body(notify)
        self.assertIn(b"<basic>open</basic>", body)
        self.assertRegex(body.decode(), r"<rpid:activities>\s*<rpid:away\s*/>")


class PrimTests(IRCBesideThreeNetworksTestCase):

    @inlineCallbacks
    def test_irc_and_prim_both_ways(self):  # type: ignore[no-untyped-def]
        self.carol = yield self.prim_user("carol")
        self.dan.msg("cpimgw", "carol@prim.localhost: Hello Carol, from IRC")
        send = yield self.carol.wait_for("SEND").addTimeout(WAIT, reactor)
        self.assertEqual((send.header("From"), send.header("To")), ("im:dan@irc.localhost", "im:carol@prim.localhost"))
        self.assertIn(b"Hello Carol, from IRC", send.body)
        answer = yield self.carol.send("im:dan@irc.localhost", b"Hello Dan, from PRIM").addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        yield wait_until(lambda: self.dan.texts(sender="cpimgw"), WAIT, what="dan's message" + self.context())
        self.assertEqual(self.dan.texts(sender="cpimgw"), ["<carol@prim.localhost> Hello Dan, from PRIM"])


class IRCWatcherTests(IRCBesideThreeNetworksTestCase):

    @inlineCallbacks
    def test_irc_user_watches_xmpp_user(self):  # type: ignore[no-untyped-def]
        self.dan.msg("cpimgw", "!watch alice@xmpp.localhost")
        yield wait_until(lambda: self.alice.roster_subscription(xmpp_jid_of("dan", IRC_DOMAIN)) in ("from", "both"),
                         WAIT, what="alice to authorise dan" + self.context())
        self.alice.send_presence(pshow="away", pstatus="in a meeting")
        yield wait_until(lambda: any("in a meeting" in t for t in self.dan.texts("NOTICE", "cpimgw")), WAIT,
                         what="dan's notice of alice away" + self.context())
        self.assertIn("alice@xmpp.localhost is away: in a meeting", self.dan.texts("NOTICE", "cpimgw"))
