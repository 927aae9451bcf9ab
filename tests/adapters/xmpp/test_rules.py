"""The XMPP rule table (:mod:`cpimgw.adapters.xmpp.rules`) held against the stanzas the codec writes.

Each test translates a SIP or PRIM unit to XMPP with ``cpimgw translate``'s
codecs, removes what no third-party XMPP software returns (the private
``urn:x-cpimgw:xmpp`` elements: there are none to remove, as no peer
advertised them), translates the stanza back and checks that every value
returned and that the stanza held it in the XEP element the table names
(XEP-0203 delay, XEP-0172 nick, XEP-0033 addresses, XEP-0359 origin-id,
thread, XEP-0131 SHIM, XEP-0107 mood, XEP-0108 activity, RFC 7248 one
presence per tuple).
"""

from __future__ import annotations

import io

from twisted.trial import unittest

from cpimgw import fidelity
from cpimgw.adapters.prim.codec import PrimCodec
from cpimgw.adapters.sip.codec import SipCodec
from cpimgw.adapters.xmpp import mapping, rules
from cpimgw.adapters.xmpp.addresses import AddressMap
from cpimgw.adapters.xmpp.codec import XMPPCodec, read_stanza
from cpimgw.cli import main
from cpimgw.cpim.message import parse_message
from cpimgw.cpim.operations import MEDIA_CPIM, Content, Message, Subscribe, new_fetch_id
from cpimgw.cpim.pidf import parse_pidf
from cpimgw.cpim.uri import parse_uri
from cpimgw.fidelity_corpus import cpim, pidf, prim_request, sip_request

XMPP = XMPPCodec(xmpp_domains=("xmpp.example",))
SIP = SipCodec()
PRIM = PrimCodec()


def stanzas(data: bytes) -> list:
    return [read_stanza(part) for part in fidelity.xmpp_split(data)]


def third_party(data: bytes) -> bytes:
    """What any XMPP software returns: the stanza without the gateway's own elements."""
    return b"\n".join(fidelity.xmpp_strip_private(part) for part in fidelity.xmpp_split(data))


def child(stanza, namespace: str, name: str):
    found = list(stanza.elements(namespace, name))
    return found[0] if found else None


class RuleTableTests(unittest.TestCase):
    def test_every_row_names_its_section(self):
        for rule in rules.MESSAGE_RULES + rules.PRESENCE_RULES:
            self.assertRegex(rule.spec, r"(RFC|XEP)[ -]\d+", rule)
            if rule.place is None:
                self.assertTrue(rule.note, f"{rule.field}: a field without a place says why")

    def test_every_element_the_table_names_is_written(self):
        # One message and one presence that need every place of the table.
        body = cpim(["From: Alice <im:alice@sip.example>", "To: Bob <im:bob@xmpp.example>",
                     "To: Carol <im:carol@prim.example>", "cc: Dave <im:dave@sip.example>",
                     "DateTime: 2000-12-13T13:40:00-08:00", "Subject:;lang=en Hi",
                     "NS: MyFeatures <mid:MessageFeatures@id.foo.com>",
                     "MyFeatures.WackyMessageOption: Use-silly-font"],
                    ["Content-Type: text/html; charset=utf-8", "Content-ID: <1@foo.com>"], "<p>x</p>")
        operation = Message(parse_uri("im:alice@sip.example"), parse_uri("im:bob@xmpp.example"),
                            Content(MEDIA_CPIM, body), message_id="m-1", conversation_id="c-1", origin="sip")
        [stanza] = stanzas(XMPP.from_operation(operation))
        written = {(c.uri, c.name) for c in stanza.elements()}
        for place in ((rules.NS_DELAY, "delay"), (rules.NS_NICK, "nick"), (rules.NS_ADDRESS, "addresses"),
                      (mapping.NS_SID, "origin-id"), (mapping.NS_CLIENT, "thread"), (rules.NS_SHIM, "headers"),
                      (mapping.NS_CLIENT, "subject"), (mapping.NS_CLIENT, "body")):
            self.assertIn(place, written)
        names = [name for name, _ in rules.read_shim(stanza)]
        self.assertEqual(names, ["DateTime", "NS", "MyFeatures.WackyMessageOption", "Content-Type", "Content-ID"])


class PresenceRuleTests(unittest.TestCase):
    def test_every_presence_place_is_written_and_read_back(self):
        from cpimgw.cpim.operations import MEDIA_PIDF, Notify, SubscriptionState

        document = pidf("pres:romeo@sip.example", (
            '<tuple id="ID-orchard"><status><basic>open</basic></status><contact priority="0.5">im:romeo@sip.example'
            '</contact><note xml:lang="en">in the orchard</note><timestamp>2010-11-13T23:29:00Z</timestamp></tuple>\n'
            '<tuple id="ID-phone"><status><basic>closed</basic></status></tuple>\n'
            '<dm:person id="p1"><rpid:mood><rpid:happy/></rpid:mood><rpid:activities><rpid:on-the-phone/>'
            '</rpid:activities><rpid:user-input last-input="2010-11-13T22:00:00Z">idle</rpid:user-input>'
            '</dm:person>\n'))
        notify = Notify(parse_uri("pres:juliet@xmpp.example"), parse_uri("pres:romeo@sip.example"),
                        Content(MEDIA_PIDF, document), subscript_id="s1", state=SubscriptionState.PENDING,
                        expires=300, origin="sip")
        orchard, phone = stanzas(XMPP.from_operation(notify))
        # RFC 7248 §5: one presence per tuple, the instance as resource; basic as type.
        self.assertEqual((orchard["from"], phone["from"], phone["type"]),
                         ("romeo\\40sip.example@gw.localhost/orchard", "romeo\\40sip.example@gw.localhost/phone",
                          "unavailable"))
        self.assertEqual((str(orchard.status), str(orchard.priority)), ("in the orchard", "64"))
        self.assertEqual(child(orchard, rules.NS_DELAY, "delay")["stamp"], "2010-11-13T23:29:00Z")
        self.assertEqual([c.name for c in child(orchard, rules.NS_MOOD, "mood").elements()], ["happy"])
        [talking] = list(child(orchard, rules.NS_ACTIVITY, "activity").elements())
        self.assertEqual((talking.name, [c.name for c in talking.elements()]), ("talking", ["on_the_phone"]))
        self.assertEqual(child(orchard, rules.NS_IDLE, "idle")["since"], "2010-11-13T22:00:00Z")
        self.assertEqual(rules.first_shim(rules.read_shim(orchard), "Subscription-State"), "pending;expires=300")
        # Read back as a third party returns it: the same notify, the same document.
        back = XMPP.to_operation(third_party(orchard.toXml().encode()))
        self.assertEqual((back.state, back.expires), (SubscriptionState.PENDING, 300))
        returned = parse_pidf(back.presence.body)
        self.assertEqual(returned.persons, parse_pidf(document).persons)
        self.assertEqual(returned.tuples, parse_pidf(document).tuples[:1])

    def test_an_xmpp_users_mood_and_activity_become_rpid(self):
        stanza = (b"<presence from='juliet@xmpp.example/balcony' to='romeo\\40sip.example@gw.localhost'>"
                  b"<mood xmlns='http://jabber.org/protocol/mood'><in_love/><text>for Romeo</text></mood>"
                  b"<activity xmlns='http://jabber.org/protocol/activity'><relaxing><reading/></relaxing></activity>"
                  b"<idle xmlns='urn:xmpp:idle:1' since='2010-11-13T22:00:00Z'/></presence>")
        [person] = parse_pidf(XMPP.to_operation(stanza).presence.body).persons
        self.assertEqual((person.mood[0].values, person.mood[0].other[0].text), (("in_love",), "for Romeo"))
        self.assertEqual(person.activities[0].values,
                         ("{http://jabber.org/protocol/activity}relaxing", "{http://jabber.org/protocol/activity}reading"))
        self.assertEqual((person.user_input.state, person.user_input.last_input), ("idle", "2010-11-13T22:00:00Z"))


class FourExamplesTests(unittest.TestCase):
    """The examples of "no loss of information, as the far network's own software sees it"."""

    def back_to_sip(self, data: bytes) -> bytes:
        operation = SIP.to_operation(data)
        far = XMPP.from_operation(operation)
        self.assertNotIn(b"urn:x-cpimgw:xmpp", far)
        return SIP.from_operation(XMPP.to_operation(third_party(far))), far

    def test_sip_date_and_display_name(self):
        data = sip_request("MESSAGE sip:bob@xmpp.example SIP/2.0", [
            ("Via", "SIP/2.0/UDP c.sip.example;branch=z9hG4bK1"), ("Max-Forwards", "70"),
            ("From", '"Romeo Montague" <sip:romeo@sip.example>;tag=1'), ("To", "<sip:bob@xmpp.example>"),
            ("Call-ID", "d1@c"), ("CSeq", "1 MESSAGE"), ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("Content-Type", "text/plain")], b"Wherefore art thou?")
        back, far = self.back_to_sip(data)
        [stanza] = stanzas(far)
        self.assertEqual(child(stanza, rules.NS_DELAY, "delay")["stamp"], "2010-11-13T23:29:00Z")
        self.assertEqual(str(child(stanza, rules.NS_NICK, "nick")), "Romeo Montague")
        message = parse_message(SIP.parse(back)["body"]["text"].encode())
        self.assertEqual(message.sender.display_name, "Romeo Montague")
        self.assertEqual(message.date_time.value.isoformat(), "2010-11-13T23:29:00+00:00")
        self.assertEqual(fidelity.round_trip(fidelity.Unit("sip", "u", data), SIP, fidelity.SIP_PROFILE, "xmpp",
                                             XMPP, fidelity.XMPP_PROFILE).losses, ())

    def test_message_cpim_cc_to_ns_and_offset(self):
        body = cpim(["From: Alice <im:alice@sip.example>", "To: Bob <im:bob@xmpp.example>",
                     "To: Carol <im:carol@prim.example>", "cc: Dave <im:dave@xmpp.example>",
                     "DateTime: 2000-12-13T13:40:00-08:00", "NS: MyFeatures <mid:MessageFeatures@id.foo.com>",
                     "MyFeatures.WackyMessageOption: Use-silly-font"],
                    ["Content-Type: text/plain; charset=utf-8"], "Here is the text of my message.")
        data = sip_request("MESSAGE sip:bob@xmpp.example SIP/2.0", [
            ("Via", "SIP/2.0/UDP c.sip.example;branch=z9hG4bK2"), ("Max-Forwards", "70"),
            ("From", "<sip:alice@sip.example>;tag=2"), ("To", "<sip:bob@xmpp.example>"), ("Call-ID", "d2@c"),
            ("CSeq", "1 MESSAGE"), ("Content-Type", "message/cpim")], body)
        back, far = self.back_to_sip(data)
        [stanza] = stanzas(far)
        addresses = [(a["type"], a["uri"], a.getAttribute("desc"))
                     for a in child(stanza, rules.NS_ADDRESS, "addresses").elements()]
        self.assertEqual(addresses, [("to", "im:bob@xmpp.example", "Bob"), ("to", "im:carol@prim.example", "Carol"),
                                     ("cc", "im:dave@xmpp.example", "Dave")])
        shim = dict(rules.read_shim(stanza))
        self.assertEqual(shim["MyFeatures.WackyMessageOption"], "Use-silly-font")
        self.assertEqual(shim["DateTime"], "2000-12-13T13:40:00-08:00")
        self.assertEqual(child(stanza, rules.NS_DELAY, "delay")["stamp"], "2000-12-13T21:40:00Z")
        message = parse_message(SIP.parse(back)["body"]["text"].encode())
        self.assertEqual([(a.display_name, a.uri) for a in message.recipients],
                         [("Bob", "im:bob@xmpp.example"), ("Carol", "im:carol@prim.example")])
        self.assertEqual([(a.display_name, a.uri) for a in message.cc], [("Dave", "im:dave@xmpp.example")])
        self.assertEqual(message.date_time.text, "2000-12-13T13:40:00-08:00")
        self.assertIn(("mid:MessageFeatures@id.foo.com", "WackyMessageOption", "Use-silly-font", ()),
                      message.extension_headers)

    def test_sip_publish_with_rpid(self):
        document = pidf("pres:alice@sip.example", (
            '<tuple id="ID-desk"><status><basic>open</basic></status><contact priority="0.8">sip:alice@desk'
            '</contact><timestamp>2010-11-13T23:29:00Z</timestamp></tuple>\n'
            '<tuple id="ID-mobile"><status><basic>open</basic></status><contact>sip:alice@mobile</contact>'
            '<timestamp>2010-11-13T23:30:00+01:00</timestamp></tuple>\n'
            '<dm:person id="p1"><rpid:mood><rpid:happy/></rpid:mood><rpid:activities><rpid:meeting/>'
            '</rpid:activities><rpid:place-type><lt:office/></rpid:place-type><dm:note>in a meeting</dm:note>'
            '</dm:person>\n'))
        data = sip_request("PUBLISH sip:alice@sip.example SIP/2.0", [
            ("Via", "SIP/2.0/UDP c.sip.example;branch=z9hG4bK3"), ("Max-Forwards", "70"),
            ("From", "<sip:alice@sip.example>;tag=3"), ("To", "<sip:alice@sip.example>"), ("Call-ID", "p3@c"),
            ("CSeq", "1 PUBLISH"), ("Event", "presence"), ("Expires", "600"),
            ("Content-Type", "application/pidf+xml")], document)
        far = XMPP.from_operation(SIP.to_operation(data))
        self.assertNotIn(b"urn:x-cpimgw:xmpp", far)
        desk, mobile = stanzas(far)
        self.assertEqual((desk["from"], mobile["from"]), ("alice\\40sip.example@gw.localhost/desk",
                                                          "alice\\40sip.example@gw.localhost/mobile"))
        self.assertEqual([c.name for c in child(desk, rules.NS_MOOD, "mood").elements()], ["happy"])
        [category] = list(child(desk, rules.NS_ACTIVITY, "activity").elements())
        self.assertEqual((category.name, [c.name for c in category.elements()]), ("working", ["in_a_meeting"]))
        self.assertEqual(child(desk, rules.NS_DELAY, "delay")["stamp"], "2010-11-13T23:29:00Z")
        self.assertEqual(child(mobile, rules.NS_DELAY, "delay")["stamp"], "2010-11-13T22:30:00Z")
        self.assertEqual(str(desk.priority), "102")
        # Back: the PUBLISH of each presence holds the whole document again.
        returned = [parse_pidf(SIP.parse(SIP.from_operation(XMPP.to_operation(third_party(part))))["body"]
                               ["text"].encode()) for part in fidelity.xmpp_split(far)]
        original = parse_pidf(document)
        for got in returned:
            self.assertEqual(got.persons, original.persons)
        self.assertEqual({t.id: t for got in returned for t in got.tuples}, {t.id: t for t in original.tuples})
        unit = fidelity.Unit("sip", "u", data)
        self.assertEqual(fidelity.round_trip(unit, SIP, fidelity.SIP_PROFILE, "xmpp", XMPP,
                                             fidelity.XMPP_PROFILE).losses, ())

    def test_prim_send_conversation_and_message_id(self):
        data = prim_request("SEND", [("From", "im:bob@prim.example"), ("To", "im:alice@xmpp.example"),
                                     ("Message-ID", "20101113.77@prim.localhost"),
                                     ("Conversation-ID", "conv-77"), ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
                                     ("Content-Type", "text/plain; charset=utf-8")], b"hi")
        far = XMPP.from_operation(PRIM.to_operation(data))
        self.assertNotIn(b"urn:x-cpimgw:xmpp", far)
        [stanza] = stanzas(far)
        self.assertEqual(str(child(stanza, mapping.NS_CLIENT, "thread")), "conv-77")
        self.assertEqual(child(stanza, mapping.NS_SID, "origin-id")["id"], "20101113.77@prim.localhost")
        back = PRIM.parse(PRIM.from_operation(XMPP.to_operation(third_party(far))))
        headers = dict(back["headers"])
        self.assertEqual((headers["Message-ID"], headers["Conversation-ID"]),
                         ("20101113.77@prim.localhost", "conv-77"))


class SubscriptionTests(unittest.TestCase):
    def test_sip_expires_comes_back(self):
        data = sip_request("SUBSCRIBE sip:bob@xmpp.example SIP/2.0", [
            ("Via", "SIP/2.0/UDP w.sip.example;branch=z9hG4bK4"), ("Max-Forwards", "70"),
            ("From", "<sip:alice@sip.example;gr=kitchen>;tag=4"), ("To", "<sip:bob@xmpp.example>"),
            ("Call-ID", "s4@w"), ("CSeq", "1 SUBSCRIBE"), ("Event", "presence"), ("Expires", "600")])
        [stanza] = stanzas(XMPP.from_operation(SIP.to_operation(data)))
        self.assertEqual((stanza["type"], stanza["from"]), ("subscribe", "alice\\40sip.example@gw.localhost/kitchen"))
        self.assertEqual(rules.read_shim(stanza), [("Expires", "600")])
        back = XMPP.to_operation(stanza.toXml().encode())
        self.assertEqual((back.duration, back.watcher_instance), (600, "kitchen"))
        self.assertIn(b"\r\nExpires: 600\r\n", SIP.from_operation(back))

    def test_probe_stays_a_probe_and_unsubscribe_a_cancel(self):
        for kind in ("probe", "unsubscribe"):
            stanza = (f"<presence from='juliet@xmpp.example/balcony' to='romeo\\40sip.example@gw.localhost' "
                      f"type='{kind}'/>").encode()
            operation = XMPP.to_operation(stanza)
            self.assertEqual((operation.duration, operation.watcher_instance), (0, "balcony"))
            for far in (SIP, PRIM):
                again = XMPP.to_operation(XMPP.from_operation(far.to_operation(far.from_operation(operation))))
                [back] = stanzas(XMPP.from_operation(again))
                self.assertEqual((back["type"], back["from"]), (kind, "juliet@xmpp.example/balcony"), far)

    def test_default_duration_is_the_configured_one(self):
        codec = XMPPCodec(subscription_duration=3600)
        operation = codec.to_operation(b"<presence from='juliet@xmpp.example' to='romeo\\40sip.example@gw.localhost'"
                                       b" type='subscribe'/>")
        self.assertEqual(operation.duration, 3600)
        fetch = Subscribe(parse_uri("pres:romeo@sip.example"), parse_uri("pres:juliet@xmpp.example"), 0,
                          subscript_id=new_fetch_id())
        self.assertEqual(read_stanza(codec.from_operation(fetch))["type"], "probe")


class CommandTests(unittest.TestCase):
    RFC3862_5_1 = (
        "From: MR SANDERS <im:piglet@100akerwood.com>\r\n"
        "To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n"
        "DateTime: 2000-12-13T13:40:00-08:00\r\n"
        "Subject: the weather will be fine today\r\n"
        "Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n"
        "NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n"
        "Require: MyFeatures.VitalMessageOption\r\n"
        "MyFeatures.VitalMessageOption: Confirmation-requested\r\n"
        "MyFeatures.WackyMessageOption: Use-silly-font\r\n"
        "\r\n"
        "Content-type: text/xml; charset=utf-8\r\n"
        "Content-ID: <1234567890@foo.com>\r\n"
        "\r\n"
        "<body>\r\nHere is the text of my message.\r\n</body>\r\n").encode()

    def run_cli(self, *argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return main(list(argv), stdin=io.BytesIO(stdin), stdout=out, stderr=err), out.getvalue(), err.getvalue()

    def test_parse_cpim_reads_rfc3862_example(self):
        status, out, err = self.run_cli("parse", "cpim", "-", stdin=self.RFC3862_5_1)
        self.assertEqual((status, err), (0, ""))
        self.assertIn('"Confirmation-requested"', out)
        self.assertIn('"MyFeatures.VitalMessageOption"', out)

    def test_rendering_it_for_xmpp_still_refuses(self):
        # RFC 3862 §3.5: whoever renders the message for a user must understand what Require names.
        status, _, err = self.run_cli("translate", "--from", "cpim", "--to", "xmpp", "-", stdin=self.RFC3862_5_1)
        self.assertEqual(status, 2)
        self.assertIn("Require names what this gateway does not understand: MyFeatures.VitalMessageOption", err)

    def test_translate_with_a_configuration(self):
        config = self.mktemp()
        with open(config, "w") as handle:
            handle.write('[adapters.xmpp]\ndomain = "gw.example.net"\nxmpp_domains = ["example.com"]\n')
        body = prim_request("SUBSCRIBE", [("From", "pres:bob@prim.example"), ("To", "pres:juliet@example.com"),
                                          ("Duration", "600"), ("Subscription-ID", "s1")])
        out = io.StringIO()
        status = main(["translate", "--from", "prim", "--to", "xmpp", "--config", config, "-"],
                      stdin=io.BytesIO(body), stdout=out, stderr=io.StringIO())
        self.assertEqual(status, 0)
        stanza = read_stanza(out.getvalue().encode())
        self.assertEqual((stanza["from"], stanza["to"]), ("bob\\40prim.example@gw.example.net", "juliet@example.com"))
        self.assertEqual(rules.read_shim(stanza), [("Expires", "600")])  # the configured default is 86400

    def test_translate_with_a_bad_configuration(self):
        config = self.mktemp()
        with open(config, "w") as handle:
            handle.write("[adapters.xmpp]\nsubscription_duration = 'x'\n")
        status, _, err = self.run_cli("translate", "--from", "prim", "--to", "xmpp", "--config", config, "-")
        self.assertEqual(status, 2)
        self.assertEqual(err.count("\n"), 1, err)


class AddressMapTests(unittest.TestCase):
    def test_the_carried_addresses_need_no_jid(self):
        element = read_stanza(b"<message from='juliet@xmpp.example/b' to='romeo\\40sip.example@gw.localhost'>"
                              b"<body>x</body><addresses xmlns='http://jabber.org/protocol/address'>"
                              b"<address type='to' jid='romeo\\40sip.example@gw.localhost' desc='Romeo'/>"
                              b"<address type='cc' uri='im:nurse@prim.example' delivered='true'/></addresses>"
                              b"</message>")
        operation = mapping.message_to_cpim(element, AddressMap("gw.localhost", ("xmpp.example",)))
        message = mapping.read_cpim(operation.content)
        self.assertEqual([(a.display_name, a.uri) for a in message.recipients], [("Romeo", "im:romeo@sip.example")])
        self.assertEqual([a.uri for a in message.cc], ["im:nurse@prim.example"])
