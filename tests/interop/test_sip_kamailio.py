"""Interop: the gateway subscribes through a Kamailio presence server to a SIP user; the user's PUBLISH
reaches the CPIM test adapter as a notify (RFC 6665, RFC 3856, RFC 3903)."""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from cpimgw.cpim.operations import Notify, Status, Subscribe, SubscriptionState
from cpimgw.cpim.uri import pres_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus
from cpimgw.adapters.sip.adapter import SipAdapter, SipSettings
from tests.interop.kamailio import KamailioPresence
from tests.interop.sipp import SippProcess, free_port

PUBLISH = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="PUBLISH alice">
  <send retrans="500">
    <![CDATA[
      PUBLISH sip:alice@sip.test SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:alice@sip.test>;tag=[pid]SIPpTag[call_number]
      To: <sip:alice@sip.test>
      Call-ID: [call_id]
      CSeq: 1 PUBLISH
      Max-Forwards: 70
      Event: presence
      Expires: 300
      Content-Type: application/pidf+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@sip.test"><tuple id="t1"><status><basic>open</basic></status><note>via PUBLISH</note></tuple></presence>
    ]]>
  </send>
  <recv response="200" />
</scenario>
"""


class KamailioPresenceTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_publish_reaches_the_test_adapter_as_notify(self):  # type: ignore[no-untyped-def]
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        kamailio = KamailioPresence(workdir, "sip.test")
        self.addCleanup(kamailio.stop)
        port = yield kamailio.started()
        bus = make_bus(reactor=reactor)
        self.addCleanup(bus.stop)
        watcher_side = RecordingAdapter("cpim-test", ["xmpp.test"])
        attach(bus, watcher_side)
        adapter = SipAdapter(bus, SipSettings.from_mapping({
            "domains": ["sip.test"], "port": 0, "transports": ["udp"], "use_dns": False,
            "outbound_proxy": f"sip:127.0.0.1:{port};transport=udp",
        }), reactor=reactor)
        bus.register(adapter)
        adapter.startService()
        self.addCleanup(adapter.stopService)

        first = watcher_side.wait_for(lambda op: isinstance(op, Notify), 1)
        response = yield watcher_side.inject(Subscribe(pres_uri("juliet", "xmpp.test"), pres_uri("alice", "sip.test"), 300))
        self.assertIs(response.status, Status.SUCCESS, (response, kamailio.log[-3000:]))
        self.assertEqual(response.duration, 300)
        yield first

        published = watcher_side.wait_for(
            lambda op: isinstance(op, Notify) and op.presence is not None and b"via PUBLISH" in op.presence.body, 1)
        sipp_dir = os.path.join(workdir, "sipp")
        os.makedirs(sipp_dir)
        sipp = SippProcess(PUBLISH, [f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
                                     "-m", "1", "-t", "u1", "-timeout", "20s"], sipp_dir)
        self.addCleanup(sipp.stop)
        code, output = yield sipp.ended
        self.assertEqual(code, 0, output[-2000:])
        [notify] = yield published
        self.assertEqual((str(notify.watcher), str(notify.target)), ("pres:juliet@xmpp.test", "pres:alice@sip.test"))
        self.assertIs(notify.state, SubscriptionState.ACTIVE)
        self.assertEqual(notify.presence.media_type, "application/pidf+xml")
        self.assertIn(b"<basic>open</basic>", notify.presence.body)
