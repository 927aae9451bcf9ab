"""Round-trip fidelity: a corpus of XMPP stanzas goes XMPP -> CPIM -> XMPP and comes back equal.

Every mapped field is compared (see :func:`fields`).  What is NOT preserved,
and why (asserted by :data:`NOT_PRESERVED` being the only differences the
comparison ignores):

- the order of child elements: subjects, bodies, thread, chat state,
  receipts, ids, XHTML-IM, then other elements (Message/CPIM headers have a
  fixed order; XMPP gives sibling order no meaning across these elements);
- an explicit ``xml:lang`` on a body or status equal to the language it
  inherits: only the effective language is kept;
- a presence's ``id`` and an explicit ``<priority>0</priority>``: a PIDF
  document has no stanza id, and priority 0 is the default;
- a presence's ``to``: presence is published once and sent to each watcher;
- a message without an XEP-0359 origin-id comes back with one naming its
  id (the gateway originates the stanza, XEP-0359 §3), and a presence
  without XEP-0203 delay comes back with the PIDF timestamp of its arrival
  (RFC 3863 §4.1.7) as delay;
- case in localparts (nodeprep folds it before the gateway sees the JID).
"""

from __future__ import annotations

import datetime

from twisted.trial import unittest
from twisted.words.protocols.jabber.jid import JID

from cpimgw.adapters.xmpp import mapping
from cpimgw.adapters.xmpp.addresses import AddressMap

ADDRESSES = AddressMap("gw.example.net", ("example.com",))
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
NOT_PRESERVED = ("child order", "inherited xml:lang", "presence id", "priority 0", "presence to", "origin-id added",
                 "delay added", "case")

A = "from='juliet@example.com/balcony' to='romeo\\40sip.example@gw.example.net'"
MESSAGES = [
    f"<message {A}><body>plain</body></message>",
    f"<message {A} type='chat'><body>chat</body></message>",
    f"<message {A} type='normal' id='n1'><body>normal</body></message>",
    f"<message {A} type='headline'><subject>News</subject><body>headline</body></message>",
    f"<message {A} type='error' id='e1'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
    f"<message {A} xml:lang='en'><subject>Hi</subject><subject xml:lang='fr'>Salut</subject><body>Hello</body>"
    "<body xml:lang='fr'>Bonjour</body><body xml:lang='de'>Hallo</body></message>",
    f"<message {A}><body xml:lang='cs'>Ahoj!</body></message>",
    f"<message {A} xml:lang='en'><body xml:lang='de'>only German</body></message>",
    f"<message {A} type='chat'><body>t</body><thread>th1</thread></message>",
    f"<message {A} type='chat'><body>t</body><thread parent='p0'>th2</thread></message>",
    f"<message {A} type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    f"<message {A} type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>",
    f"<message {A} type='chat'><body>x</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    f"<message {A} type='chat'><gone xmlns='http://jabber.org/protocol/chatstates'/></message>",
    f"<message {A} id='r1'><body>ack?</body><request xmlns='urn:xmpp:receipts'/></message>",
    f"<message {A} id='r2'><received xmlns='urn:xmpp:receipts' id='r1'/></message>",
    f"<message {A} id='s1'><body>ids</body><origin-id xmlns='urn:xmpp:sid:0' id='o-1'/>"
    "<stanza-id xmlns='urn:xmpp:sid:0' id='s-9' by='example.com'/></message>",
    f"<message {A}><body>Hi there</body><html xmlns='http://jabber.org/protocol/xhtml-im'>"
    "<body xmlns='http://www.w3.org/1999/xhtml'><p>Hi <em>there</em></p></body></html></message>",
    f"<message {A}><body>delayed</body><delay xmlns='urn:xmpp:delay' from='example.com' stamp='2002-09-10T23:08:25Z'/></message>",
    f"<message {A}><body>oob</body><x xmlns='jabber:x:oob'><url>https://example.com/f.png</url></x></message>",
    f"<message {A}><body>  leading and trailing spaces  </body><subject> spaced </subject></message>",
    f"<message {A}><body>line one\nline two\r\n\ttabbed \\ backslash</body></message>",
    f"<message {A}><body>emoji 😀 and ünïcödé, 中文</body></message>",
    f"<message {A}><subject/><body></body></message>",
    "<message from='m\\26m@example.com/r' to='o\\27malley\\40sip.example@gw.example.net'><body>escapes</body></message>",
    "<message from='juliet@example.com' to='bob\\40prim.example@gw.example.net/ua-7'><body>to an instance</body></message>",
]
P = "from='juliet@example.com/balcony' to='romeo\\40sip.example@gw.example.net'"
PRESENCES = [
    f"<presence {P}/>",
    f"<presence {P} type='unavailable'/>",
    f"<presence {P} type='unavailable'><status>bye</status></presence>",
    f"<presence {P}><show>away</show></presence>",
    f"<presence {P}><show>chat</show><priority>5</priority></presence>",
    f"<presence {P}><show>dnd</show><status>busy</status><priority>127</priority></presence>",
    f"<presence {P}><show>xa</show><priority>-5</priority></presence>",
    f"<presence {P} xml:lang='en'><status>out</status><status xml:lang='cs'>pryč</status></presence>",
    f"<presence {P}><priority>13</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/></presence>",
    "<presence from='juliet@example.com/ünï code' to='romeo\\40sip.example@gw.example.net'><priority>1</priority></presence>",
    f"<presence {P}><priority>0</priority><x xmlns='vcard-temp:x:update'><photo>abc</photo></x></presence>",
]

CORE = {"body", "subject", "thread", "show", "status", "priority"}


def _lang(element, inherited):
    return element.getAttribute((mapping.NS_XML, "lang")) or inherited


def fields(element, kind):
    """Every mapped field of a stanza, independent of child order and inherited language."""
    lang = element.getAttribute((mapping.NS_XML, "lang"))
    result = {
        "name": element.name, "from": element.getAttribute("from"), "type": element.getAttribute("type"),
    }
    if kind == "message":
        result["to"] = element.getAttribute("to")
        result["id"] = element.getAttribute("id")
    core, other = [], []
    priority = 0
    for child in element.elements():
        if child.name in CORE and child.uri == element.uri:
            text = "".join(str(c) for c in child.children if isinstance(c, str))
            if child.name == "priority":
                priority = int(text)
            elif child.name == "thread":
                core.append(("thread", child.getAttribute("parent"), text))
            else:
                core.append((child.name, _lang(child, lang), text))
        else:
            other.append(child.toXml())
    result["core"] = sorted(core, key=repr)
    result["other"] = sorted(other)
    if kind == "presence":
        result["priority"] = priority
    return result


class FidelityTests(unittest.TestCase):
    def test_corpus_size(self):
        self.assertGreaterEqual(len(MESSAGES) + len(PRESENCES), 30)

    def test_messages_round_trip(self):
        for xml in MESSAGES:
            original = mapping.parse_fragment(xml.encode())
            operation = mapping.message_to_cpim(original, ADDRESSES, now=NOW, origin="xmpp")
            back = mapping.cpim_to_message(operation, ADDRESSES, carry_cpim=False)
            expected = fields(original, "message")
            if expected["id"] is None:
                expected["id"] = back["id"]  # a stanza without id gets the TransID
            got = fields(back, "message")
            if not any(child.name == "origin-id" for child in original.elements()):
                added = f"<origin-id xmlns='urn:xmpp:sid:0' id='{back['id']}'/>"
                if operation.message_id is not None:
                    got["other"].remove(added)  # XEP-0359 §3: the gateway names the stanza it originates
            self.assertEqual(got, expected, xml)

    def test_presences_round_trip(self):
        for xml in PRESENCES:
            original = mapping.parse_fragment(xml.encode())
            entity, resource, content = mapping.presence_to_pidf(original, ADDRESSES, timestamp="2026-01-01T00:00:00Z")
            document = mapping.read_pidf(content)
            [back] = mapping.pidf_to_presences(document, entity, JID(original["to"]), ADDRESSES)
            got = fields(back, "presence")
            got["other"].remove("<delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>")  # the arrival time
            self.assertEqual(got, fields(original, "presence"), xml)
            self.assertEqual(back["to"], original["to"])
