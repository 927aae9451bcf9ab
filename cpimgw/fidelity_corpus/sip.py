"""The SIP/SIMPLE corpus of ``cpimgw fidelity``: requests as the gateway receives them.

MESSAGE (RFC 3428) with ``text/plain``, ``text/html``, ``message/cpim``
(RFC 3862: Subject in several languages, DateTime, cc, display names, NS
extension headers, encapsulated Content-Language/Content-ID), SIP
``Subject``/``Content-Language``/``Date``, GRUU instances (RFC 5627) and
%-escaped user parts; PUBLISH (RFC 3903) and NOTIFY (RFC 6665, RFC 3856) with
PIDF (RFC 3863): several tuples, RPID activities/mood/place (RFC 4480), notes
in several languages, device/person (RFC 4479), unknown extension elements.
"""

from __future__ import annotations

from cpimgw.fidelity_corpus import cpim, presence_documents, sip_request

ALICE = "sip:alice@sip.example"
BOB = "sip:bob@xmpp.example"


def _message(name: str, extra: list[tuple[str, str]], body: bytes, *, uri: str = BOB, from_: str = f"<{ALICE}>;tag=a73kszlfl",
             to: str = f"<{BOB}>") -> tuple[str, bytes]:
    headers = [
        ("Via", "SIP/2.0/UDP client.sip.example:5060;branch=z9hG4bK776sgdkse"),
        ("Max-Forwards", "70"),
        ("From", from_),
        ("To", to),
        ("Call-ID", f"{name}@client.sip.example"),
        ("CSeq", "1 MESSAGE"),
    ] + extra
    return (f"message-{name}", sip_request(f"MESSAGE {uri} SIP/2.0", headers, body))


_CPIM_FROM = "From: Alice <im:alice@sip.example>"
_CPIM_TO = "To: Bob <im:bob@xmpp.example>"

_MESSAGES = [
    _message("text-plain", [("Content-Type", "text/plain")], b"Watson, come here."),
    _message("utf8", [("Content-Type", "text/plain; charset=UTF-8")],
             "\u00c7a va? \u4f60\u597d \U0001F600".encode("utf-8")),
    _message("subject-language", [("Subject", "Dinner"), ("Content-Language", "fr"),
                                  ("Content-Type", "text/plain; charset=utf-8")], "On d\u00eene \u00e0 8h ?".encode()),
    _message("content-language", [("Content-Language", "de"), ("Content-Type", "text/plain;charset=utf-8")],
             "Guten Tag".encode()),
    _message("date", [("Date", "Sat, 13 Nov 2010 23:29:00 GMT"), ("Content-Type", "text/plain")], b"dated"),
    _message("text-html", [("Content-Type", "text/html; charset=utf-8")],
             b"<html><body><p>Hello <b>Bob</b></p></body></html>"),
    _message("display-name", [("Content-Type", "text/plain")], b"from a named sender",
             from_=f'"Alice Liddell" <{ALICE}>;tag=99sa0xk'),
    _message("gruu-instance", [("Content-Type", "text/plain")], b"from one device",
             from_=f"<{ALICE};gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>;tag=fe1",
             uri=f"{BOB};gr=balcony"),
    _message("escaped-user", [("Content-Type", "text/plain")], b"escaped",
             from_="<sip:o%27malley@sip.example>;tag=5e", uri="sip:m%26m@xmpp.example", to="<sip:m%26m@xmpp.example>"),
    _message("iscomposing", [("Content-Type", "application/im-iscomposing+xml")],
             b"<?xml version='1.0' encoding='UTF-8'?>\n<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'>"
             b"<state>active</state><contenttype>text/plain</contenttype></isComposing>"),
    _message("cpim-simple", [("Content-Type", "message/cpim")],
             cpim([_CPIM_FROM, _CPIM_TO, "DateTime: 2026-03-01T12:00:00Z"],
                  ["Content-Type: text/plain; charset=utf-8"], "wrapped by the sender")),
    _message("cpim-subjects", [("Content-Type", "message/cpim")],
             cpim([_CPIM_FROM, _CPIM_TO, "DateTime: 2026-03-01T12:00:00.250+01:00", "Subject: Holiday",
                   "Subject:;lang=fr Vacances", "Subject:;lang=ja \u4f11\u6687"],
                  ["Content-Type: text/plain; charset=utf-8", "Content-Language: en"], "See you in June.")),
    _message("cpim-extension", [("Content-Type", "message/cpim")],
             cpim([_CPIM_FROM, _CPIM_TO, "NS: MyFeatures <mid:MessageFeatures@id.foo.com>",
                   "MyFeatures.VitalMessageOption: Confirmation-requested",
                   "MyFeatures.WackyMessageOption: Use-silly-font"],
                  ["Content-Type: text/plain; charset=utf-8"], "with extension headers")),
    _message("cpim-require", [("Content-Type", "message/cpim")],
             cpim([_CPIM_FROM, _CPIM_TO, "NS: MyFeatures <mid:MessageFeatures@id.foo.com>",
                   "Require: MyFeatures.VitalMessageOption",
                   "MyFeatures.VitalMessageOption: Confirmation-requested"],
                  ["Content-Type: text/plain; charset=utf-8"], "must be understood")),
    _message("cpim-cc", [("Content-Type", "message/cpim")],
             cpim([_CPIM_FROM, _CPIM_TO, "cc: Carol <im:carol@prim.example>"],
                  ["Content-Type: text/plain; charset=utf-8"], "copied to Carol")),
    _message("cpim-html-content-id", [("Content-Type", "message/cpim")],
             cpim([_CPIM_FROM, _CPIM_TO],
                  ["Content-Type: text/html; charset=utf-8", "Content-ID: <1234567890@foo.com>",
                   "Content-Disposition: inline"], "<p>rich <i>text</i></p>")),
]


def _presence(method: str, name: str, body: bytes, extra: list[tuple[str, str]]) -> tuple[str, bytes]:
    if method == "PUBLISH":
        start = f"PUBLISH {ALICE} SIP/2.0"
        addresses = [("From", f"<{ALICE}>;tag=1234wxyz"), ("To", f"<{ALICE}>")]
    else:
        start = f"NOTIFY sip:bob@client.xmpp.example:5070 SIP/2.0"
        addresses = [("From", f"<{ALICE}>;tag=ffd2"), ("To", f"<{BOB}>;tag=xfg9")]
    headers = [("Via", "SIP/2.0/TCP pua.sip.example;branch=z9hG4bK652hsge"), ("Max-Forwards", "70")] + addresses + [
        ("Call-ID", f"{name}@pua.sip.example"), ("CSeq", f"1 {method}"), ("Event", "presence")] + extra
    if body:
        headers.append(("Content-Type", "application/pidf+xml"))
    return (f"{method.lower()}-{name}", sip_request(start, headers, body))


_DOCUMENTS = presence_documents("pres:alice@sip.example")
_PUBLISHES = [_presence("PUBLISH", name, body, [("Expires", "3600")]) for name, body in _DOCUMENTS]
_NOTIFY_STATES = ["active;expires=599", "active;expires=3600", "pending;expires=120", "active;expires=60"]
_NOTIFIES = [
    _presence("NOTIFY", name, body, [("Subscription-State", _NOTIFY_STATES[i % len(_NOTIFY_STATES)])])
    for i, (name, body) in enumerate(_DOCUMENTS[:3] + _DOCUMENTS[4:6] + _DOCUMENTS[7:9])
] + [_presence("NOTIFY", "terminated", b"", [("Subscription-State", "terminated;reason=timeout")])]

_MESSAGES += [
    # A SIP MESSAGE with a Date and a display name (RFC 3261 §20.17, §20.20): time and name travel.
    _message("date-display-name", [("Date", "Sat, 13 Nov 2010 23:29:00 GMT"), ("Content-Type", "text/plain")],
             b"Wherefore art thou?", from_=f'"Romeo Montague" <{ALICE}>;tag=rm1'),
    # RFC 3862 §5.1-like: cc, a second To with a display name, an NS extension, a DateTime with an offset.
    _message("cpim-cc-to-ns-offset", [("Content-Type", "message/cpim")],
             cpim([_CPIM_FROM, _CPIM_TO, "To: Carol <im:carol@prim.example>", "cc: Dave <im:dave@xmpp.example>",
                   "DateTime: 2000-12-13T13:40:00-08:00", "Subject: the weather will be fine today",
                   "NS: MyFeatures <mid:MessageFeatures@id.foo.com>",
                   "MyFeatures.WackyMessageOption: Use-silly-font"],
                  ["Content-Type: text/plain; charset=utf-8", "Content-ID: <1234567890@foo.com>"],
                  "Here is the text of my message.")),
]
_MESSAGES.append(
    # SIP's own end-to-end headers (RFC 3261 §20.26, §20.21, §20.31, §20.25).
    _message("priority-reply-to", [("Priority", "urgent"), ("In-Reply-To", "70710@saturn.bell-tel.com"),
                                   ("Reply-To", "Bob <sip:bob@biloxi.example.com>"), ("Organization", "Boxes by Bob"),
                                   ("Content-Type", "text/plain")], b"urgent, with a reply address"))
_NOTIFIES += [
    _presence("NOTIFY", f"terminated-{reason}", b"", [("Subscription-State", f"terminated;reason={reason}")])
    for reason in ("rejected", "noresource", "deactivated", "giveup", "probation")
] + [_presence("NOTIFY", "pending-empty", b"", [("Subscription-State", "pending;expires=300")])]


def _subscribe(name: str, expires: str, *, watcher: str = f"<{ALICE}>;tag=w1") -> tuple[str, bytes]:
    headers = [("Via", "SIP/2.0/UDP watcher.sip.example;branch=z9hG4bK9w"), ("Max-Forwards", "70"),
               ("From", watcher), ("To", f"<{BOB}>"), ("Call-ID", f"{name}@watcher.sip.example"),
               ("CSeq", "1 SUBSCRIBE"), ("Event", "presence"), ("Accept", "application/pidf+xml"),
               ("Expires", expires)]
    return (f"subscribe-{name}", sip_request(f"SUBSCRIBE {BOB} SIP/2.0", headers))


# SUBSCRIBE (RFC 3856, RFC 6665 §4.1): a lifetime, another, a watcher's instance (RFC 5627 gr), and Expires: 0.
_SUBSCRIBES = [
    _subscribe("ten-minutes", "600"),
    _subscribe("one-hour", "3600"),
    _subscribe("instance", "1800", watcher=f"<{ALICE};gr=kitchen>;tag=w2"),
    _subscribe("zero", "0"),
]

def _response(code: int, phrase: str) -> tuple[str, bytes]:
    headers = [("Via", "SIP/2.0/UDP client.sip.example:5060;branch=z9hG4bK776sgdkse"),
               ("From", f"<{ALICE}>;tag=a73kszlfl"), ("To", f"<{BOB}>;tag=9fxced76sl"),
               ("Call-ID", f"response-{code}@client.sip.example"), ("CSeq", "1 MESSAGE")]
    return (f"response-{code}", sip_request(f"SIP/2.0 {code} {phrase}", headers))


# A final failure of each kind (RFC 3261 §21.4-§21.6, every RFC 7247 §7 row the gateway answers with).
_RESPONSES = [_response(code, phrase) for code, phrase in (
    (400, "Bad Request"), (401, "Unauthorized"), (403, "Forbidden"), (404, "Not Found"), (406, "Not Acceptable"), (408, "Request Timeout"),
    (410, "Gone"), (413, "Request Entity Too Large"), (415, "Unsupported Media Type"), (420, "Bad Extension"),
    (480, "Temporarily Unavailable"), (481, "Call/Transaction Does Not Exist"), (482, "Loop Detected"),
    (486, "Busy Here"), (488, "Not Acceptable Here"), (500, "Server Internal Error"), (501, "Not Implemented"),
    (502, "Bad Gateway"), (503, "Service Unavailable"), (504, "Server Time-out"), (603, "Decline"))]

UNITS = tuple(_MESSAGES + _PUBLISHES + _NOTIFIES + _SUBSCRIBES + _RESPONSES)
