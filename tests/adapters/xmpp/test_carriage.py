"""What XMPP cannot express travels with it (issue 6): JIDs in XMPP.From/To, PIDF in ``<pidf/>``.

- a message wrapped by the XMPP side names both full JIDs in ``XMPP.From`` /
  ``XMPP.To``; on the way back a message without instances takes their
  resources, but only for the same bare JID (no header moves a message);
- the stateless codec tells the XMPP user from the addresses: the JID of
  ``XMPP.From``/``XMPP.To`` under the gateway domain is the foreign one;
- a Notify or Publish to XMPP carries its PIDF octets unmodified (and the
  operation) in ``<pidf xmlns='urn:x-cpimgw:xmpp'/>``; back, only a document
  whose entity is the stanza's sender is reused, byte for byte.
"""

from __future__ import annotations

import base64

import attrs

from twisted.trial import unittest

from cpimgw.adapters.xmpp import mapping, rules
from cpimgw.adapters.xmpp.addresses import AddressMap
from cpimgw.adapters.xmpp.codec import XMPPCodec, read_stanza
from cpimgw.cpim.operations import (
    MEDIA_PIDF, Content, Message, Notify, Publish, SubscriptionState, TerminationReason,
)
from cpimgw.cpim.uri import parse_uri
from cpimgw.testing import settle
from tests.adapters.xmpp.test_adapter import AdapterHarness

ADDRESSES = AddressMap("gw.localhost", ("xmpp.example",))
PIDF = (b"<?xml version='1.0' encoding='UTF-8'?>\n"
        b"<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid' "
        b"xmlns:dm='urn:ietf:params:xml:ns:pidf:data-model' entity='pres:bob@sip.example'>"
        b"<tuple id='a8dd3f'><status><basic>open</basic></status><timestamp>2026-01-02T10:00:00Z</timestamp></tuple>"
        b"<dm:person id='p1'><rpid:activities><rpid:meeting/></rpid:activities></dm:person>"
        b"<note>doc note</note></presence>")
BOB = parse_uri("pres:bob@sip.example")
JULIET = parse_uri("pres:juliet@xmpp.example")


def header_values(message: Message, name: str) -> list[str]:
    return [value for ns, header, value, _ in mapping.read_cpim(message.content).extension_headers
            if ns == mapping.NS_XMPP and header == name]


class MessageAddressTests(unittest.TestCase):
    def stanza(self, xml: str):
        return read_stanza(xml.encode())

    def test_full_jids_carried(self):
        message = mapping.message_to_cpim(self.stanza(
            "<message from='juliet@xmpp.example/balcony' to='romeo\\40sip.example@gw.localhost'><body>x</body>"
            "</message>"), ADDRESSES)
        self.assertEqual(header_values(message, "From"), ["juliet@xmpp.example/balcony"])
        self.assertEqual(header_values(message, "To"), ["romeo\\40sip.example@gw.localhost"])
        self.assertEqual(message.source_instance, "balcony")

    def test_resources_come_back_without_instances(self):
        message = mapping.message_to_cpim(self.stanza(
            "<message from='juliet@xmpp.example/balcony' to='bob\\40prim.example@gw.localhost/ua-7'><body>x</body>"
            "</message>"), ADDRESSES)
        # As PRIM gives it back: no instance on either side.
        back = Message(message.source, message.destination, message.content)
        stanza = mapping.cpim_to_message(back, ADDRESSES, carry_cpim=False)
        self.assertEqual((stanza["from"], stanza["to"]),
                         ("juliet@xmpp.example/balcony", "bob\\40prim.example@gw.localhost/ua-7"))

    def test_operation_instances_win(self):
        message = mapping.message_to_cpim(self.stanza(
            "<message from='juliet@xmpp.example/balcony' to='romeo\\40sip.example@gw.localhost'><body>x</body>"
            "</message>"), ADDRESSES)
        back = Message(message.source, message.destination, message.content, source_instance="phone")
        self.assertEqual(mapping.cpim_to_message(back, ADDRESSES)["from"], "juliet@xmpp.example/phone")

    def test_a_header_for_another_jid_is_ignored(self):
        cpim = (b"From: <im:mallory@sip.example>\r\nTo: <im:juliet@xmpp.example>\r\n"
                b"NS: XMPP <urn:x-cpimgw:xmpp>\r\nXMPP.From: admin@xmpp.example/console\r\n"
                b"XMPP.To: juliet@xmpp.example/secret\r\n\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi")
        forged = Message(parse_uri("im:mallory@sip.example"), parse_uri("im:juliet@xmpp.example"),
                         Content("message/cpim", cpim))
        stanza = mapping.cpim_to_message(forged, ADDRESSES)
        self.assertEqual(stanza["from"], "mallory\\40sip.example@gw.localhost")
        # The recipient's own bare JID: only the resource is taken (the message still goes to juliet).
        self.assertEqual(stanza["to"], "juliet@xmpp.example/secret")

    def test_message_id_is_the_stanza_id(self):
        operation = Message(parse_uri("im:bob@prim.example"), parse_uri("im:juliet@xmpp.example"),
                            Content("text/plain", b"hi"), message_id="m6")
        self.assertEqual(mapping.cpim_to_message(operation, ADDRESSES)["id"], "m6")
        without = Message(operation.source, operation.destination, operation.content)
        self.assertEqual(mapping.cpim_to_message(without, ADDRESSES)["id"], without.trans_id)


class CodecSideTests(unittest.TestCase):
    def test_xmpp_side_from_the_addresses(self):
        codec = XMPPCodec()
        # No type, no id, no resource: before, the codec took the destination for the XMPP user.
        data = b"<message from='juliet@xmpp.example' to='romeo\\40sip.example@gw.localhost'><body>x</body></message>"
        operation = codec.to_operation(data)
        again = codec.from_operation(Message(operation.source, operation.destination, operation.content,
                                             origin="sip"))
        stanza = read_stanza(again)
        self.assertEqual((stanza["from"], stanza["to"]),
                         ("juliet@xmpp.example", "romeo\\40sip.example@gw.localhost"))

    def test_message_from_another_network_goes_to_its_destination(self):
        stanza = read_stanza(XMPPCodec().from_operation(Message(
            parse_uri("im:bob@sip.example"), parse_uri("im:juliet@xmpp.example"), Content("text/plain", b"x"))))
        self.assertEqual((stanza["from"], stanza["to"]), ("bob\\40sip.example@gw.localhost", "juliet@xmpp.example"))


class PresenceCarriageTests(unittest.TestCase):
    def setUp(self):
        # The codec as it writes towards another cpimgw (the carriage is negotiated, XEP-0030).
        self.codec = XMPPCodec().with_private_carriage()

    def test_notify_round_trip_is_exact(self):
        notify = Notify(JULIET, BOB, Content(MEDIA_PIDF, PIDF), subscript_id="s1", expires=3600, origin="sip")
        data = self.codec.from_operation(notify)
        [stanza] = [read_stanza(part) for part in data.split(b"\n<presence")[:1]]
        self.assertEqual((stanza["from"], stanza["to"]), ("bob\\40sip.example@gw.localhost/a8dd3f",
                                                          "juliet@xmpp.example"))
        [carried] = list(stanza.elements(mapping.NS_XMPP, "pidf"))
        self.assertEqual((carried["op"], carried["state"], carried["expires"]), ("notify", "active", "3600"))
        self.assertEqual(base64.b64decode(str(carried)), PIDF)
        back = self.codec.to_operation(data)
        self.assertIsInstance(back, Notify)
        self.assertEqual((back.watcher, back.target, back.presence.body, back.state, back.expires),
                         (JULIET, BOB, PIDF, SubscriptionState.ACTIVE, 3600))

    def test_publish_keeps_instance_and_expiry(self):
        publish = Publish(BOB, Content(MEDIA_PIDF, PIDF, (("charset", "utf-8"),)), instance="ID-desk", expires=60)
        back = self.codec.to_operation(self.codec.from_operation(publish))
        self.assertIsInstance(back, Publish)
        self.assertEqual((back.presentity, back.presence, back.instance, back.expires),
                         (BOB, publish.presence, "ID-desk", 60))

    def test_final_notify_without_document(self):
        for reason, kind in ((TerminationReason.REJECTED, "unsubscribed"), (TerminationReason.TIMEOUT, "unavailable")):
            notify = Notify(JULIET, BOB, None, subscript_id="s1", state=SubscriptionState.TERMINATED, reason=reason)
            data = self.codec.from_operation(notify)
            self.assertEqual(read_stanza(data)["type"], kind)
            back = self.codec.to_operation(data)
            self.assertEqual((back.presence, back.state, back.reason), (None, SubscriptionState.TERMINATED, reason))

    def test_document_of_another_presentity_is_ignored(self):
        forged = mapping.pidf_element(Content(MEDIA_PIDF, PIDF), op="publish")
        stanza = read_stanza(b"<presence from='mallory\\40sip.example@gw.localhost/x'/>")
        stanza.addChild(forged)
        self.assertIsNone(mapping.carried_pidf(stanza, parse_uri("pres:mallory@sip.example")))
        back = self.codec.to_operation(stanza.toXml().encode())
        self.assertIsInstance(back, Publish)
        self.assertNotEqual(back.presence.body, PIDF)  # mapped from the stanza itself
        self.assertIn(b"mallory", back.presence.body)

    def test_bad_carriage_is_ignored(self):
        for text in ("not base64!", base64.b64encode(b"<nope/>").decode()):
            stanza = read_stanza(f"<presence from='bob\\40sip.example@gw.localhost/x'>"
                                 f"<pidf xmlns='urn:x-cpimgw:xmpp' op='publish'>{text}</pidf></presence>".encode())
            self.assertIsNone(mapping.carried_pidf(stanza, BOB))


class AdapterCarriageTests(AdapterHarness, unittest.TestCase):
    def setUp(self):
        super().setUp()
        # Two gateways link server to server (the carriage is never negotiated over a component link).
        self.adapter.settings = attrs.evolve(self.adapter.settings, mode="s2s")

    def notify(self):
        self.adapter.outbound[((JULIET.user, JULIET.domain_key), (BOB.user, BOB.domain_key))] = ("s1", None, None)
        self.adapter.confirmed.add(((JULIET.user, JULIET.domain_key), (BOB.user, BOB.domain_key)))
        response = self.successResultOf(self.adapter.deliver(
            Notify(JULIET, BOB, Content(MEDIA_PIDF, PIDF), subscript_id="s1", origin="sip")))
        self.assertTrue(response.ok)
        return self.sent()

    def answer_disco(self, disco, features):
        query = "".join(f"<feature var='{var}'/>" for var in features)
        self.feed(f"<iq type='result' id='{disco['id']}' from='{disco['to']}' to='{disco['from']}'>"
                  f"<query xmlns='http://jabber.org/protocol/disco#info'>{query}</query></iq>")

    def test_notify_carries_the_document_only_to_a_domain_that_advertises_it(self):
        # First notify: the domain is asked (XEP-0030 disco#info) and meanwhile gets the native form.
        disco, stanza = self.notify()
        self.assertEqual((disco.name, disco["type"], disco["to"]), ("iq", "get", "xmpp.example"))
        self.assertEqual(list(stanza.elements(mapping.NS_XMPP, "pidf")), [])
        self.answer_disco(disco, [rules.FEATURE_CARRIAGE])
        [stanza] = self.notify()  # cached per domain: not asked again
        [carried] = list(stanza.elements(mapping.NS_XMPP, "pidf"))
        self.assertEqual(base64.b64decode(str(carried)), PIDF)

    def test_an_ordinary_server_never_gets_the_carriage(self):
        disco, _ = self.notify()
        self.answer_disco(disco, ["http://jabber.org/protocol/disco#info", "urn:xmpp:ping"])
        for _ in range(2):
            [stanza] = self.notify()
            self.assertFalse([c for c in stanza.elements() if c.uri == mapping.NS_XMPP])
        disco, _ = self.notify_after_error()

    def notify_after_error(self):
        # A disco error (an entity without disco) is a "no" as well, for CARRIAGE_TTL.
        self.adapter.carriage.clear()
        disco, stanza = self.notify()
        self.feed(f"<iq type='error' id='{disco['id']}' from='{disco['to']}' to='{disco['from']}'/>")
        self.assertEqual(self.adapter.carriage["xmpp.example"][0], False)
        return disco, stanza

    def test_carried_document_published_once(self):
        dispatched = []
        original = self.bus.dispatch

        def record(operation):
            dispatched.append(operation)
            return original(operation)

        self.patch(self.bus, "dispatch", record)
        document = PIDF.replace(b"pres:bob@sip.example", b"pres:juliet@xmpp.example")
        carried = mapping.pidf_element(Content(MEDIA_PIDF, document), op="publish", instance="desk",
                                       expires=60).toXml()
        for resource in ("a8dd3f", "other"):  # one presence per tuple, each with the whole document
            self.feed(f"<presence from='juliet@xmpp.example/{resource}' to='bob\\40sip.example@gw.xmpp.example'>"
                      f"{carried}</presence>")
        [publish] = [op for op in dispatched if isinstance(op, Publish)]
        self.assertEqual((publish.presentity, publish.presence.body, publish.instance, publish.expires,
                          publish.origin), (JULIET, document, "desk", 60, "xmpp"))
        self.assertEqual(self.adapter.counters["presence-unchanged"], 1)

    def test_carried_document_of_someone_else_is_not_used(self):
        dispatched = []
        original = self.bus.dispatch
        self.patch(self.bus, "dispatch", lambda op: (dispatched.append(op), original(op))[1])
        carried = mapping.pidf_element(Content(MEDIA_PIDF, PIDF), op="publish").toXml()
        self.feed(f"<presence from='juliet@xmpp.example/desk' to='bob\\40sip.example@gw.xmpp.example'>"
                  f"<show>dnd</show>{carried}</presence>")
        [publish] = [op for op in dispatched if isinstance(op, Publish)]
        self.assertEqual(publish.presentity, JULIET)
        self.assertNotEqual(publish.presence.body, PIDF)
        self.assertIn(b"dnd", publish.presence.body)


class ConversationIdTests(unittest.TestCase):
    """A conversation id (PRIM Conversation-ID, SIP CPIM-Conversation-ID) rides on ``<cpim/>``."""

    def test_conversation_id_round_trip(self):
        from cpimgw.cpim.message import build_message

        cpim = build_message("im:bob@prim.example", ["im:juliet@xmpp.example"], b"hi")
        operation = Message(parse_uri("im:bob@prim.example"), parse_uri("im:juliet@xmpp.example"),
                            Content("message/cpim", cpim.to_bytes()), conversation_id="conv-42")
        stanza = mapping.cpim_to_message(operation, ADDRESSES)
        carried = next(child for child in stanza.elements() if child.name == "cpim")
        self.assertEqual(carried["conversation"], "conv-42")
        # Back from the same foreign user (as the stanza would travel returning to the gateway):
        stanza["from"], stanza["to"] = stanza["to"], stanza["from"]
        back = mapping.message_to_cpim(stanza, ADDRESSES)
        # The carried object names bob, not juliet: not trusted; the conversation is the stanza's own
        # <thread/> (RFC 6121 §5.2.5), which every XMPP client keeps in a reply.
        self.assertEqual(back.conversation_id, "conv-42")
        self.assertNotEqual(back.content.body, operation.content.body)
        reply = mapping.cpim_to_message(operation, ADDRESSES)
        returned = mapping.message_to_cpim(reply, AddressMap("gw.localhost", ("prim.example",)))
        self.assertEqual(returned.conversation_id, "conv-42")
