"""Interop: HTTP Digest (RFC 3261 §22, RFC 7616) against real peers.

- Kamailio (``auth`` + ``auth_db`` on db_text) challenges the gateway's
  outgoing SUBSCRIBE -- the initial one and the in-dialog unsubscribe, whose
  retry must keep the dialog's CSeq increasing -- and MESSAGE; the gateway
  answers with the credentials of its ``credentials`` setting.
- The gateway challenges sipp (``auth_domains``): sipp answers the 401 with
  ``[authentication]`` and the MESSAGE is delivered; without credentials it
  is refused and nothing reaches the bus.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from cpimgw.cpim.operations import Content, Message, Notify, Status, Subscribe
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus
from cpimgw.adapters.sip.adapter import SipAdapter, SipSettings
from tests.interop import require_program
from tests.interop.kamailio import DigestAuth, KamailioPresence
from tests.interop.sipp import SippProcess, free_port

AUTH_MESSAGE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="MESSAGE with digest">
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:bob@xmpp.test SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@sip.test>;tag=[pid]SIPpTag[call_number]
      To: <sip:bob@xmpp.test>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      hello with digest
    ]]>
  </send>
  <recv response="401" auth="true" />
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:bob@xmpp.test SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@sip.test>;tag=[pid]SIPpTag[call_number]
      To: <sip:bob@xmpp.test>
      Call-ID: [call_id]
      CSeq: 2 MESSAGE
      Max-Forwards: 70
      [authentication username=sipp password={password}]
      Content-Type: text/plain
      Content-Length: [len]

      hello with digest
    ]]>
  </send>
  <recv response="{final}" />
</scenario>
"""


class KamailioChallengesTheGatewayTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_subscribe_unsubscribe_and_message_answer_the_challenge(self):  # type: ignore[no-untyped-def]
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        kamailio = KamailioPresence(workdir, "sip.test",
                                    auth=DigestAuth("sip.test", "xmpp.test", {"gw": "s3cret"}))
        self.addCleanup(kamailio.stop)
        port = yield kamailio.started()
        bus = make_bus(reactor=reactor)
        self.addCleanup(bus.stop)
        xmpp = RecordingAdapter("cpim-test", ["xmpp.test"])
        attach(bus, xmpp)
        adapter = SipAdapter(bus, SipSettings.from_mapping({
            "domains": ["sip.test"], "port": 0, "transports": ["udp"], "use_dns": False,
            "outbound_proxy": f"sip:127.0.0.1:{port};transport=udp",
            "credentials": {"sip.test": "gw:s3cret"},
        }), reactor=reactor)
        bus.register(adapter)
        adapter.startService()
        self.addCleanup(adapter.stopService)

        first = xmpp.wait_for(lambda op: isinstance(op, Notify), 1)
        subscribe = Subscribe(pres_uri("juliet", "xmpp.test"), pres_uri("alice", "sip.test"), 300)
        response = yield xmpp.inject(subscribe)
        self.assertIs(response.status, Status.SUCCESS, (response, kamailio.log[-3000:]))
        yield first.addTimeout(10, reactor)
        [state] = adapter.outgoing.values()
        self.assertEqual(state.dialog.local_cseq, 2)  # challenged, then answered

        response = yield xmpp.inject(Subscribe(pres_uri("juliet", "xmpp.test"), pres_uri("alice", "sip.test"), 0,
                                               subscript_id=subscribe.subscript_id))
        self.assertIs(response.status, Status.SUCCESS, (response, kamailio.log[-3000:]))
        self.assertEqual(state.dialog.local_cseq, 4)  # the in-dialog retry took the next CSeq too

        response = yield xmpp.inject(Message(im_uri("juliet", "xmpp.test"), im_uri("alice", "sip.test"),
                                             Content("text/plain", b"hello Kamailio")))
        self.assertEqual((response.status, response.native_code), (Status.SUCCESS, 200), kamailio.log[-3000:])
        self.assertEqual(adapter.stack.counters.get("digest_retries"), 3)
        for _ in range(50):  # Kamailio's stderr lags: at most 5 s
            if "AUTH OK MESSAGE gw" in kamailio.log:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        log = kamailio.log
        for method in ("SUBSCRIBE", "MESSAGE"):
            self.assertIn(f"AUTH OK {method} gw", log)
        self.assertEqual(log.count("AUTH OK SUBSCRIBE gw"), 2)


class GatewayChallengesSippTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        require_program("sipp")
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.bus = make_bus(reactor=reactor)
        self.addCleanup(self.bus.stop)
        self.xmpp = RecordingAdapter("cpim-test", ["xmpp.test"])
        attach(self.bus, self.xmpp)
        self.adapter = SipAdapter(self.bus, SipSettings.from_mapping({
            "domains": ["sip.test"], "port": 0, "transports": ["udp"], "use_dns": False,
            "auth_realm": "sip.test", "auth_domains": ["sip.test"], "auth_users": {"sipp": "s3cret"},
            "auth_algorithms": ["MD5"],
        }), reactor=reactor)
        self.bus.register(self.adapter)
        self.adapter.startService()
        self.addCleanup(self.adapter.stopService)

    def run_sipp(self, password: str, final: int):  # type: ignore[no-untyped-def]
        sipp = SippProcess(AUTH_MESSAGE.format(password=password, final=final),
                           [f"127.0.0.1:{self.adapter.ports['UDP']}", "-i", "127.0.0.1", "-p", str(free_port()),
                            "-m", "1", "-t", "u1", "-timeout", "20s"], self.workdir)
        self.addCleanup(sipp.stop)
        return sipp.ended

    @inlineCallbacks
    def test_sipp_answers_the_challenge(self):  # type: ignore[no-untyped-def]
        code, output = yield self.run_sipp("s3cret", 200)
        self.assertEqual(code, 0, output[-2000:])
        [message] = self.xmpp.of_type(Message)
        self.assertEqual(str(message.source), "im:sipp@sip.test")
        self.assertIn(b"hello with digest", message.content.body)

    @inlineCallbacks
    def test_wrong_password_is_refused(self):  # type: ignore[no-untyped-def]
        code, output = yield self.run_sipp("wrong", 401)
        self.assertEqual(code, 0, output[-2000:])
        self.assertEqual(self.xmpp.of_type(Message), [])
