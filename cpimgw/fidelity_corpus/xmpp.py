"""The XMPP corpus of ``cpimgw fidelity``: stanzas as the gateway receives them (RFC 6120/6121, XEPs).

Messages: chat/normal/headline/error types, bodies and subjects in several
``xml:lang``, threads with a parent (XEP-0201), XHTML-IM (XEP-0071), chat
states (XEP-0085), receipts (XEP-0184), origin-id/stanza-id (XEP-0359),
delay (XEP-0203), out-of-band data and other extension elements.  Presences:
each ``<show/>``, statuses in several languages, priorities (negative too),
several resources of one user, unavailable, caps and vCard extensions.
Senders are XMPP users at ``xmpp.example``; recipients are users of other
networks behind the gateway domain ``gw.localhost`` (XEP-0106 escaped).
"""

from __future__ import annotations

#: The ``[adapters.xmpp]`` settings the corpus is written for: its users are at xmpp.example, the users
#: of other networks under gw.localhost (what ``cpimgw translate --config`` gives the codec).
SETTINGS = {"domain": "gw.localhost", "xmpp_domains": ["xmpp.example"]}

A = "from='juliet@xmpp.example/balcony' to='romeo\\40sip.example@gw.localhost'"
B = "from='juliet@xmpp.example/balcony' to='bob\\40prim.example@gw.localhost'"
P = "from='juliet@xmpp.example/balcony' to='romeo\\40sip.example@gw.localhost'"

_MESSAGES = [
    ("plain", f"<message {A}><body>plain</body></message>"),
    ("chat", f"<message {A} type='chat' id='c1'><body>chat</body></message>"),
    ("normal", f"<message {A} type='normal' id='n1'><body>normal</body></message>"),
    ("headline", f"<message {B} type='headline'><subject>News</subject><body>headline</body></message>"),
    ("error", f"<message {A} type='error' id='e1'><error type='cancel'>"
              "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"),
    ("languages", f"<message {A} xml:lang='en'><subject>Hi</subject><subject xml:lang='fr'>Salut</subject>"
                  "<body>Hello</body><body xml:lang='fr'>Bonjour</body><body xml:lang='de'>Hallo</body></message>"),
    ("body-lang-only", f"<message {B}><body xml:lang='cs'>Ahoj!</body></message>"),
    ("body-lang-differs", f"<message {A} xml:lang='en'><body xml:lang='de'>nur Deutsch</body></message>"),
    ("thread", f"<message {A} type='chat'><body>t</body><thread>th1</thread></message>"),
    ("thread-parent", f"<message {B} type='chat'><body>t</body><thread parent='p0'>th2</thread></message>"),
    ("composing", f"<message {A} type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"),
    ("paused", f"<message {B} type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>"),
    ("active-with-body", f"<message {A} type='chat'><body>x</body>"
                         "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"),
    ("gone", f"<message {A} type='chat'><gone xmlns='http://jabber.org/protocol/chatstates'/></message>"),
    ("receipt-request", f"<message {A} id='r1'><body>ack?</body><request xmlns='urn:xmpp:receipts'/></message>"),
    ("receipt-received", f"<message {B} id='r2'><received xmlns='urn:xmpp:receipts' id='r1'/></message>"),
    ("origin-stanza-id", f"<message {A} id='s1'><body>ids</body><origin-id xmlns='urn:xmpp:sid:0' id='o-1'/>"
                         "<stanza-id xmlns='urn:xmpp:sid:0' id='s-9' by='xmpp.example'/></message>"),
    ("xhtml-im", f"<message {A}><body>Hi there</body><html xmlns='http://jabber.org/protocol/xhtml-im'>"
                 "<body xmlns='http://www.w3.org/1999/xhtml'><p>Hi <em>there</em></p></body></html></message>"),
    ("delay", f"<message {B}><body>delayed</body>"
              "<delay xmlns='urn:xmpp:delay' from='xmpp.example' stamp='2002-09-10T23:08:25Z'/></message>"),
    ("oob", f"<message {A}><body>oob</body><x xmlns='jabber:x:oob'><url>https://example.com/f.png</url></x></message>"),
    ("spaces", f"<message {A}><body>  leading and trailing spaces  </body><subject> spaced </subject></message>"),
    ("control-characters", f"<message {A}><body>line one\nline two\r\n\ttabbed \\ backslash</body></message>"),
    ("unicode", f"<message {B}><body>emoji \U0001F600 and \u00fcn\u00efc\u00f6d\u00e9, \u4e2d\u6587</body></message>"),
    ("empty-subject-body", f"<message {A}><subject/><body></body></message>"),
    ("escaped-jids", "<message from='m\\26m@xmpp.example/r' to='o\\27malley\\40sip.example@gw.localhost'>"
                     "<body>escapes</body></message>"),
    ("to-instance", "<message from='juliet@xmpp.example' to='bob\\40prim.example@gw.localhost/ua-7'>"
                    "<body>to an instance</body></message>"),
]

_PRESENCES = [
    ("available", f"<presence {P}/>"),
    ("unavailable", f"<presence {P} type='unavailable'/>"),
    ("unavailable-status", f"<presence {P} type='unavailable'><status>bye</status></presence>"),
    ("show-away", f"<presence {P}><show>away</show></presence>"),
    ("show-chat-priority", f"<presence {P}><show>chat</show><priority>5</priority></presence>"),
    ("show-dnd-status", f"<presence {P}><show>dnd</show><status>busy</status><priority>127</priority></presence>"),
    ("show-xa-negative-priority", f"<presence {P}><show>xa</show><priority>-5</priority></presence>"),
    ("status-languages", f"<presence {P} xml:lang='en'><status>out</status>"
                         "<status xml:lang='cs'>pry\u010d</status></presence>"),
    ("caps", f"<presence {P}><priority>13</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
             "node='https://example.com/client' ver='v='/></presence>"),
    ("second-resource", "<presence from='juliet@xmpp.example/\u00fcn\u00ef code' "
                        "to='romeo\\40sip.example@gw.localhost'><priority>1</priority></presence>"),
    ("third-resource-vcard", "<presence from='juliet@xmpp.example/phone' to='romeo\\40sip.example@gw.localhost'>"
                             "<priority>0</priority><x xmlns='vcard-temp:x:update'><photo>abc</photo></x></presence>"),
]

_MESSAGES += [
    ("nick-delay-thread", f"<message {A} type='chat' id='m-7'><body>hello</body><thread>conv-1</thread>"
                          "<nick xmlns='http://jabber.org/protocol/nick'>Juliet C.</nick>"
                          "<delay xmlns='urn:xmpp:delay' stamp='2010-11-13T23:29:00Z'/></message>"),
    ("shim-headers", f"<message {A}><body>with headers</body><headers xmlns='http://jabber.org/protocol/shim'>"
                     "<header name='Priority'>urgent</header><header name='In-Reply-To'>123@example</header>"
                     "</headers></message>"),
]
_PRESENCES += [
    ("mood-activity", f"<presence {P}><show>away</show><mood xmlns='http://jabber.org/protocol/mood'><happy/>"
                      "<text>sunny</text></mood><activity xmlns='http://jabber.org/protocol/activity'><eating>"
                      "<having_lunch/></eating></activity></presence>"),
    ("idle", f"<presence {P}><show>xa</show><idle xmlns='urn:xmpp:idle:1' since='2010-11-13T22:00:00Z'/></presence>"),
    ("delay", f"<presence {P}><status>set earlier</status>"
              "<delay xmlns='urn:xmpp:delay' stamp='2010-11-13T21:00:00Z'/></presence>"),
]
# Subscription requests (RFC 6121 §3): subscribe (default and with a SHIM Expires), from a resource,
# unsubscribe, and probe (a fetch, RFC 3922 §5.3).
_SUBSCRIPTIONS = [
    ("subscribe", f"<presence {P} type='subscribe'/>"),
    ("subscribe-expires", f"<presence {P} type='subscribe'><headers xmlns='http://jabber.org/protocol/shim'>"
                          "<header name='Expires'>600</header></headers></presence>"),
    ("unsubscribe", f"<presence {P} type='unsubscribe'/>"),
    ("probe", f"<presence {P} type='probe'/>"),
]

# An error of each RFC 6120 §8.3.3 condition the RFC 7247 §7 tables name, as answers to a message.
_ERRORS = [(f"error-{condition}",
            f"<message from='romeo\\40sip.example@gw.localhost' to='juliet@xmpp.example/balcony' type='error' "
            f"id='e-{condition}'><error type='{kind}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            f"</error></message>")
           for condition, kind in (
               ("bad-request", "modify"), ("not-authorized", "auth"), ("forbidden", "auth"),
               ("item-not-found", "cancel"), ("not-acceptable", "modify"), ("remote-server-timeout", "wait"),
               ("gone", "cancel"), ("policy-violation", "modify"), ("feature-not-implemented", "cancel"),
               ("recipient-unavailable", "wait"), ("resource-constraint", "wait"),
               ("remote-server-not-found", "cancel"), ("internal-server-error", "cancel"),
               ("service-unavailable", "cancel"), ("redirect", "modify"), ("unexpected-request", "wait"))]

UNITS = tuple((f"message-{name}", xml.encode("utf-8")) for name, xml in _MESSAGES + _ERRORS) + tuple(
    (f"presence-{name}", xml.encode("utf-8")) for name, xml in _PRESENCES) + tuple(
    (f"presence-{name}", xml.encode("utf-8")) for name, xml in _SUBSCRIPTIONS)
