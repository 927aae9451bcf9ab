"""Interop: baresip (a real SIP UA) watches a user behind the CPIM test adapter through the gateway
and sees its presence change (RFC 6665 / RFC 3856 notifier side, PIDF carried byte for byte)."""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from cpimgw.cpim.operations import Content, Publish, Status, Subscribe
from cpimgw.cpim.uri import pres_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus
from cpimgw.adapters.sip.adapter import SipAdapter, SipSettings
from tests.interop.baresip import Baresip

PIDF = (b'<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
        b'entity="pres:juliet@xmpp.test"><tuple id="ID-balcony"><status><basic>open</basic></status>'
        b'<note>on the balcony</note></tuple></presence>')


class BaresipWatcherTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def contacts_until(self, baresip: Baresip, word: str):  # type: ignore[no-untyped-def]
        answer = ""
        for _ in range(20):  # bounded: at most ~10 s
            answer = yield baresip.command("/contacts")
            if word in answer:
                return answer
            yield deferLater(reactor, 0.2, lambda: None)
        raise AssertionError(f"baresip never showed {word!r}: {answer!r}\n{baresip.log[-2000:]}")

    @inlineCallbacks
    def test_baresip_sees_presence_change(self):  # type: ignore[no-untyped-def]
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        bus = make_bus(reactor=reactor)
        self.addCleanup(bus.stop)
        presentity_side = RecordingAdapter("cpim-test", ["xmpp.test"])
        attach(bus, presentity_side)
        adapter = SipAdapter(bus, SipSettings.from_mapping(
            {"domains": ["sip.test"], "port": 0, "transports": ["udp"], "use_dns": False}), reactor=reactor)
        bus.register(adapter)
        adapter.startService()
        self.addCleanup(adapter.stopService)
        subscribed = presentity_side.wait_for(lambda op: isinstance(op, Subscribe), 1)
        baresip = Baresip(
            workdir,
            f'<sip:carol@sip.test>;regint=0;pubint=0;outbound="sip:127.0.0.1:{adapter.ports["UDP"]};transport=udp"',
            ['"Juliet" <sip:juliet@xmpp.test>;presence=p2p'],
        )
        self.addCleanup(baresip.stop)
        [subscribe] = yield subscribed
        self.assertEqual((str(subscribe.watcher), str(subscribe.target)), ("pres:carol@sip.test", "pres:juliet@xmpp.test"))
        yield self.contacts_until(baresip, "Unknown")
        response = yield presentity_side.inject(
            Publish(pres_uri("juliet", "xmpp.test"), Content("application/pidf+xml", PIDF), instance="balcony"))
        self.assertIs(response.status, Status.SUCCESS)
        answer = yield self.contacts_until(baresip, "Online")
        self.assertIn("sip:juliet@xmpp.test", answer)
