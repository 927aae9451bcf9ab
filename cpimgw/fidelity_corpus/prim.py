"""The PRIM corpus of ``cpimgw fidelity``: commands as the gateway receives them.

SEND (draft-ietf-prim-server-00 §5, -01 §17) with ``text/plain`` and with
``message/cpim`` bodies, ``Message-ID``/``Conversation-ID``/``Date``/
``Reply-To``, -02 identifiers without their scheme; NOTIFY with PIDF
(RFC 3863, RPID RFC 4480), with ``Duration`` and the final ``Duration: 0``;
the legacy ``application/presence`` document of -01 §15 (digest §2.10);
PUBLISH with ``Tuple-ID`` and ``PI-Type`` permanent / leased.
"""

from __future__ import annotations

from cpimgw.fidelity_corpus import cpim, crlf, presence_documents, prim_request

BOB = "im:bob@prim.example"
ALICE = "im:alice@xmpp.example"
DATE = "Thu, 30 Mar 2000 09:59:34 -0500"


def _send(name: str, headers: list[tuple[str, str]], body: bytes, *, from_: str = BOB, to: str = ALICE) -> tuple[str, bytes]:
    return (f"send-{name}", prim_request("SEND", [("From", from_), ("To", to)] + headers, body))


_CPIM_HEAD = ["From: Bob <im:bob@prim.example>", "To: <im:alice@xmpp.example>"]

_SENDS = [
    _send("plain", [("Message-ID", "m1a2b3"), ("Conversation-ID", "conv-1"), ("Date", DATE),
                    ("Content-Type", "text/plain; charset=UTF-8")], b"Hello from PRIM"),
    _send("no-ids", [("Content-Type", "text/plain; charset=UTF-8")], b"no Message-ID, no Date"),
    _send("reply-to", [("Message-ID", "m2"), ("Conversation-ID", "conv-1"), ("Date", DATE),
                       ("Reply-To", "im:team@prim.example"), ("Content-Type", "text/plain; charset=UTF-8")],
          b"answer the team"),
    _send("unicode", [("Message-ID", "m3"), ("Conversation-ID", "conv-2"), ("Date", "Fri, 31 Mar 2000 18:00:00 +0900"),
                      ("Content-Type", "text/plain; charset=UTF-8")], "\u3053\u3093\u306b\u3061\u306f \u00e9\u00e8".encode()),
    _send("html", [("Message-ID", "m4"), ("Conversation-ID", "conv-3"), ("Date", DATE),
                   ("Content-Type", "text/html; charset=UTF-8")], b"<p>Hello <b>Alice</b></p>"),
    _send("scheme-less-ids", [("Message-ID", "m5"), ("Conversation-ID", "conv-4"), ("Date", DATE),
                              ("Content-Type", "text/plain; charset=UTF-8")], b"-02 style ids",
          from_="bob@prim.example", to="alice@xmpp.example"),
    _send("cpim-plain", [("Message-ID", "m6"), ("Conversation-ID", "conv-5"), ("Date", "Sat, 01 Apr 2000 10:00:00 +0000"),
                         ("Content-Type", "message/cpim")],
          cpim(_CPIM_HEAD + ["DateTime: 2000-04-01T10:00:00+00:00"], ["Content-Type: text/plain; charset=utf-8"],
               "already Message/CPIM")),
    _send("cpim-prim-headers", [("Message-ID", "m7"), ("Conversation-ID", "conv-5"), ("Date", "Sat, 01 Apr 2000 10:05:00 +0000"),
                                ("Content-Type", "message/cpim")],
          cpim(_CPIM_HEAD + ["DateTime: 2000-04-01T10:05:00+00:00", "NS: PRIM <http://www.fujitsulabs.com/prim/>",
                             "PRIM.Message-ID: m7", "PRIM.Conversation-ID: conv-5"],
               ["Content-Type: text/plain; charset=utf-8"], "with the PRIM ids inside")),
    _send("cpim-subjects", [("Message-ID", "m8"), ("Conversation-ID", "conv-6"), ("Date", "Sat, 01 Apr 2000 11:00:00 +0000"),
                            ("Content-Type", "message/cpim")],
          cpim(_CPIM_HEAD + ["DateTime: 2000-04-01T11:00:00+00:00", "Subject: Lunch", "Subject:;lang=de Mittagessen",
                             "NS: PRIM <http://www.fujitsulabs.com/prim/>", "PRIM.Message-ID: m8",
                             "PRIM.Conversation-ID: conv-6"],
               ["Content-Type: text/plain; charset=utf-8", "Content-Language: en"], "Noon?")),
    _send("cpim-extension", [("Message-ID", "m9"), ("Conversation-ID", "conv-7"), ("Date", "Sat, 01 Apr 2000 12:00:00 +0000"),
                             ("Content-Type", "message/cpim")],
          cpim(_CPIM_HEAD + ["DateTime: 2000-04-01T12:00:00+00:00", "NS: Ex <urn:example:im-features>",
                             "Ex.Priority: urgent", "Ex.Label:;lang=en work", "NS: PRIM <http://www.fujitsulabs.com/prim/>",
                             "PRIM.Message-ID: m9", "PRIM.Conversation-ID: conv-7"],
               ["Content-Type: text/plain; charset=utf-8"], "with extension headers")),
    _send("cpim-html", [("Message-ID", "m10"), ("Conversation-ID", "conv-8"), ("Date", "Sat, 01 Apr 2000 13:00:00 +0000"),
                        ("Content-Type", "message/cpim")],
          cpim(_CPIM_HEAD + ["DateTime: 2000-04-01T13:00:00+00:00", "NS: PRIM <http://www.fujitsulabs.com/prim/>",
                             "PRIM.Message-ID: m10", "PRIM.Conversation-ID: conv-8"],
               ["Content-Type: text/html; charset=utf-8", "Content-ID: <part1@prim.example>"],
               "<p>rich <i>text</i></p>")),
    _send("cpim-no-prim-ids", [("Message-ID", "m11"), ("Conversation-ID", "conv-9"), ("Date", "Sat, 01 Apr 2000 14:00:00 +0000"),
                               ("Content-Type", "message/cpim")],
          cpim(_CPIM_HEAD + ["DateTime: 2000-04-01T14:00:00+00:00"], ["Content-Type: text/plain; charset=utf-8"],
               "ids only on the PRIM command")),
]

_PRES = "pres:bob@prim.example"
_DOCUMENTS = presence_documents(_PRES)


def _notify(name: str, headers: list[tuple[str, str]], body: bytes = b"", content_type: str = "application/pidf+xml") -> tuple[str, bytes]:
    head = [("From", _PRES), ("To", "pres:alice@xmpp.example"), ("Subscription-ID", f"sub-{name}"), ("Date", DATE)] + headers
    if body:
        head.append(("Content-Type", content_type))
    return (f"notify-{name}", prim_request("NOTIFY", head, body))


def _publish(name: str, headers: list[tuple[str, str]], body: bytes, content_type: str = "application/pidf+xml") -> tuple[str, bytes]:
    return (f"publish-{name}", prim_request("PUBLISH", [("From", _PRES)] + headers + [("Content-Type", content_type)], body))


LEGACY = crlf(
    '<presence identifier="pres:bob@prim.example" date="Thu, 5 Sep 2000 15:45:45 -0500">\n'
    "   <presentity><note>I'm Hungry.</note></presentity>\n"
    '   <contact address="im:bob@prim.example"><status value="open"/><preference value="1"/></contact>\n'
    "</presence>\n")

_NOTIFIES = [_notify(name, [("Duration", "3600")], body) for i, (name, body) in enumerate(_DOCUMENTS) if i != 8] + [
    _notify("no-duration", [], _DOCUMENTS[8][1]),
    _notify("final", [("Duration", "0")]),
    _notify("legacy", [("Duration", "600")], LEGACY, "application/presence"),
]
_PUBLISHES = [
    _publish("permanent-" + _DOCUMENTS[0][0], [("Tuple-ID", "ID-desk"), ("PI-Type", "permanent")], _DOCUMENTS[0][1]),
    _publish("leased-" + _DOCUMENTS[3][0], [("Tuple-ID", "ID-desk"), ("PI-Type", "leased"), ("Duration", "600")],
             _DOCUMENTS[3][1]),
    _publish("leased-" + _DOCUMENTS[6][0], [("Tuple-ID", "ID-desk"), ("PI-Type", "leased"), ("Duration", "1800")],
             _DOCUMENTS[6][1]),
    _publish("permanent-" + _DOCUMENTS[8][0], [("Tuple-ID", "ID-desk"), ("PI-Type", "permanent")], _DOCUMENTS[8][1]),
    _publish("permanent-" + _DOCUMENTS[10][0], [("Tuple-ID", "ID-desk"), ("PI-Type", "permanent")], _DOCUMENTS[10][1]),
    _publish("legacy", [("Tuple-ID", "im%3Abob%40prim.example"), ("PI-Type", "permanent")], LEGACY, "application/presence"),
]

_SENDS.append(_send("message-id-at-sign", [("Message-ID", "20101113.77@prim.localhost"),
                                          ("Conversation-ID", "conv-20101113"), ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
                                          ("Content-Type", "text/plain; charset=utf-8")], b"ids with an at sign"))
# Every subscription state a NOTIFY can report (RFC 3859 §4.4; RFC 6665 §4.1.3 reasons in X-Subscription-State).
_NOTIFIES += [
    _notify("pending", [("Duration", "120"), ("X-Subscription-State", "pending")], _DOCUMENTS[0][1]),
] + [
    _notify(f"terminated-{reason}", [("Duration", "0"), ("X-Subscription-State", f"terminated;reason={reason}")])
    for reason in ("timeout", "rejected", "noresource", "giveup", "probation")
]


def _subscribe(name: str, method: str, headers: list[tuple[str, str]]) -> tuple[str, bytes]:
    head = [("From", "pres:bob@prim.example"), ("To", "pres:alice@xmpp.example"), ("Date", DATE)] + headers
    return (f"{method.lower()}-{name}", prim_request(method, head))


# Subscribe, cancel (server-00: SUBSCRIBE Duration 0 with the subscription's id) and fetch (RFC 3859 §4.3).
_SUBSCRIBES = [
    _subscribe("one-hour", "SUBSCRIBE", [("Duration", "3600"), ("Subscription-ID", "sub-1")]),
    _subscribe("ten-minutes", "SUBSCRIBE", [("Duration", "600"), ("Subscription-ID", "sub-2")]),
    _subscribe("cancel", "SUBSCRIBE", [("Duration", "0"), ("Subscription-ID", "sub-1")]),
    _subscribe("once", "FETCH", []),
]

def _response(code: int, phrase: str) -> tuple[str, bytes]:
    return (f"response-{code}", f"PRIM/1.0 7 0 {code} {phrase}\r\n\r\n".encode())  # no body: length 0


# A failure of each PRIM status (draft-ietf-prim-server-00 §4, -01 §16).
_RESPONSES = [_response(code, phrase) for code, phrase in (
    (300, "Redirect"), (400, "Bad Request"), (401, "Unauthorized"), (402, "Forbidden"), (403, "Not Found"),
    (404, "No Such Subscription"), (406, "Not Authenticated"), (407, "Timeout"), (408, "Unavailable"),
    (409, "Conflict"), (410, "Refused"), (500, "Server Error"), (501, "Not Implemented"),
    (502, "Bad Gateway"), (503, "Service Unavailable"), (504, "Gateway Timeout"), (505, "Busy"))]

UNITS = tuple(_SENDS + _NOTIFIES + _PUBLISHES + _SUBSCRIBES + _RESPONSES)
