"""What an ordinary XMPP client receives from SIP: the XEP elements, never the gateway's private carriage.

One gateway (``twistd -n cpimgw``) attached to Prosody as an XEP-0114
component and to Kamailio; alice is a slixmpp user of ``xmpp.localhost``.
A sipp user sends a MESSAGE with a display name, a ``Date`` and a
conversation (``CPIM-Conversation-ID``); alice's client receives a stanza
with XEP-0203 ``<delay/>``, XEP-0172 ``<nick/>``, ``<thread/>`` and XEP-0359
``<origin-id/>`` -- and no ``urn:x-cpimgw:xmpp`` element, as Prosody never
advertised it (XEP-0030).
"""

from __future__ import annotations

from twisted.internet.defer import inlineCallbacks

from cpimgw.adapters.xmpp.codec import read_stanza
from tests.e2e.peers import sip_header, traced_requests, wait_until
from tests.e2e.world import WAIT, ThreeNetworksTestCase

NS_DELAY = "urn:xmpp:delay"
NS_NICK = "http://jabber.org/protocol/nick"
NS_SID = "urn:xmpp:sid:0"


class NativeXMPPTests(ThreeNetworksTestCase):
    @inlineCallbacks
    def test_sip_message_reaches_a_slixmpp_user_in_xep_elements(self):  # type: ignore[no-untyped-def]
        workdir = yield self.sip_send(
            "bob@sip.localhost", "alice@xmpp.localhost", "Wherefore art thou?", "text/plain; charset=utf-8",
            display="Romeo Montague",
            headers=(("Date", "Sat, 13 Nov 2010 23:29:00 GMT"), ("CPIM-Conversation-ID", "balcony-scene")))
        [sent] = traced_requests(workdir, "MESSAGE")
        self.assertIn(b'From: "Romeo Montague" <sip:bob@sip.localhost>', sent)
        yield wait_until(lambda: self.alice.stanzas, WAIT, what="alice's message")
        [text] = self.alice.stanzas
        stanza = read_stanza(text.encode("utf-8"))
        self.assertNotIn("urn:x-cpimgw:xmpp", text)

        def one(namespace: str, name: str):  # type: ignore[no-untyped-def]
            found = [child for child in stanza.elements() if (child.uri, child.name) == (namespace, name)]
            self.assertEqual(len(found), 1, f"<{name} xmlns='{namespace}'/> in {text}")
            return found[0]

        self.assertEqual(one(NS_DELAY, "delay")["stamp"], "2010-11-13T23:29:00Z")
        self.assertEqual(str(one(NS_NICK, "nick")), "Romeo Montague")
        self.assertEqual(str(one("jabber:client", "thread")), "balcony-scene")
        call_id = sip_header(sent, "Call-ID")
        self.assertEqual(one(NS_SID, "origin-id")["id"], f"{call_id};1")  # the message's identity: Call-ID;CSeq
        self.assertEqual(str(one("jabber:client", "body")).strip(), "Wherefore art thou?")
