"""The XMPP rule table: where every field CPIM can express goes in a stanza, as data.

One row per field of RFC 3862 Message/CPIM (§3-§4), of the RFC 3860/3859
operations and of the RFC 3863/4480 presence document, naming the XMPP place
its ecosystem defines for it and the section that defines it.  A row whose
``place`` is ``None`` says why XMPP has no standard place at all.  The
mapping (:mod:`.mapping`) and through it the adapter and the codec
(``cpimgw translate``, ``cpimgw fidelity``) write and read exactly these
places: one code path.  Tests iterate the table (tests/adapters/xmpp/test_rules.py).

The places:

- XEP-0203 ``<delay xmlns='urn:xmpp:delay' stamp=.../>``: ``DateTime``; the
  stamp is UTC (XEP-0203 §3, XEP-0082 §3.2), so a DateTime written with
  another offset also travels as written in the SHIM header ``DateTime``.
- XEP-0172 ``<nick xmlns='http://jabber.org/protocol/nick'/>``: the display
  name of ``From`` (XEP-0172 §4.2, nick in messages).
- XEP-0033 ``<addresses xmlns='http://jabber.org/protocol/address'/>``: every
  ``To`` (with its display name in ``desc``) and every ``cc``, each
  ``delivered='true'`` (XEP-0033 §4.6: the gateway delivered the message; no
  multicast service may deliver it again) with the CPIM URI in ``uri``
  (XEP-0033 §4.4: an address that is not a JID).
- XEP-0359 ``<origin-id xmlns='urn:xmpp:sid:0' id=.../>``: the message's
  identity (PRIM ``Message-ID``, the SIP-born ``Call-ID;CSeq``), verbatim.
- ``<thread/>`` (RFC 6121 §5.2.5, XEP-0201): the conversation
  (PRIM ``Conversation-ID``).
- XEP-0131 SHIM ``<headers xmlns='http://jabber.org/protocol/shim'/>``: every
  Message/CPIM header and encapsulated MIME header with no element of its
  own: ``NS`` declarations, ``Require``, NS-qualified extension headers
  (written ``Prefix.Name`` with their ``;param=value``\\ s, as in RFC 3862
  §3.4), the encapsulated ``Content-Type`` when it is not the XMPP default
  and the other ``Content-*`` headers; in presence, the operation's
  subscription state, expiry and termination reason.
- XEP-0107 ``<mood xmlns='http://jabber.org/protocol/mood'/>`` and XEP-0108
  ``<activity xmlns='http://jabber.org/protocol/activity'/>``: RPID mood and
  activities (RFC 4480 §3.2, §3.4) of the presentity's person.
- XEP-0319 ``<idle xmlns='urn:xmpp:idle:1' since=.../>``: RPID
  ``user-input`` idle with its ``last-input`` (RFC 4480 §3.10).
- RFC 7248 §5 / RFC 6121 §4.7: one presence per PIDF tuple, the tuple's
  instance as resource; ``<show/>``, ``<status/>`` (tuple notes),
  ``<priority/>`` (contact priority); the tuple ``<timestamp>`` as XEP-0203
  ``<delay/>`` on that presence.
"""

from __future__ import annotations

import datetime
from typing import Iterable, Sequence

import attrs
from twisted.words.xish import domish

NS_SHIM = "http://jabber.org/protocol/shim"
NS_DELAY = "urn:xmpp:delay"
NS_NICK = "http://jabber.org/protocol/nick"
NS_ADDRESS = "http://jabber.org/protocol/address"
NS_MOOD = "http://jabber.org/protocol/mood"
NS_ACTIVITY = "http://jabber.org/protocol/activity"
NS_IDLE = "urn:xmpp:idle:1"
#: The XEP-0030 feature a gateway advertises when it reads its private ``<cpim/>``/``<pidf/>`` carriage.
FEATURE_CARRIAGE = "urn:x-cpimgw:xmpp:carriage"


@attrs.frozen
class Rule:
    """One row: a CPIM field, its XMPP place (``None``: no standard place) and the section that says so."""

    field: str
    place: str | None
    spec: str
    note: str = ""


#: Message/CPIM (RFC 3862) and RFC 3860 message -> XMPP ``<message/>``.
MESSAGE_RULES: tuple[Rule, ...] = (
    Rule("From", "message@from (JID under the gateway domain)", "RFC 3922 §4.2, RFC 7247 §5, XEP-0106"),
    Rule("From display name", f"<nick xmlns='{NS_NICK}'/>", "XEP-0172 §4.2"),
    Rule("To", "message@to; every To also in <address type='to' uri= desc=/>",
         "RFC 3922 §4.2; XEP-0033 §4, §4.4"),
    Rule("To display name", "<address type='to' desc=/>", "XEP-0033 §4.3"),
    Rule("cc", f"<addresses xmlns='{NS_ADDRESS}'><address type='cc' uri= desc= delivered='true'/>",
         "XEP-0033 §4.6"),
    Rule("DateTime", f"<delay xmlns='{NS_DELAY}' stamp=/> (UTC)", "XEP-0203 §3, XEP-0082 §3.2"),
    Rule("DateTime offset", f"<headers xmlns='{NS_SHIM}'><header name='DateTime'/>",
         "XEP-0131 §4; XEP-0203 §3 (the stamp MUST be UTC)"),
    Rule("Subject", "<subject xml:lang=/>", "RFC 6121 §5.2.4, RFC 3922 §4.1.4"),
    Rule("NS", "SHIM <header name='NS'/>", "XEP-0131 §4; RFC 3862 §4.6"),
    Rule("Require", "SHIM <header name='Require'/>", "XEP-0131 §4; RFC 3862 §4.7",
         "a Require naming what XMPP cannot render refuses the message (RFC 3862 §3.5)"),
    Rule("extension header", "SHIM <header name='Prefix.Name;param=value'/>", "XEP-0131 §4; RFC 3862 §3.4"),
    Rule("Content-Type text/plain; charset=utf-8", "<body/>", "RFC 6121 §5.2.3"),
    Rule("Content-Type (other)", "SHIM <header name='Content-Type'/>, text in <body/>",
         "XEP-0131 §4; RFC 6121 §5.2.3"),
    Rule("Content-Language", "xml:lang", "RFC 6120 §8.1.5, RFC 7572 §4"),
    Rule("Content-ID, Content-Disposition, other Content-*", "SHIM <header name='Content-...'/>", "XEP-0131 §4"),
    Rule("body", "<body/>", "RFC 6121 §5.2.3"),
    Rule("body that is not UTF-8 text", None, "RFC 6121 §5.2.3",
         "<body/> holds character data only; a signed or encrypted entity is RFC 3923 <e2e/>"),
    Rule("message id (Message-ID)", "<origin-id xmlns='urn:xmpp:sid:0' id=/>", "XEP-0359 §3"),
    Rule("conversation id (Conversation-ID)", "<thread/>", "RFC 6121 §5.2.5, XEP-0201 §3"),
    Rule("source instance", "message@from resource", "RFC 7247 §5.2, RFC 7572 §4"),
    Rule("destination instance", "message@to resource", "RFC 7247 §5.2, RFC 7572 §4"),
    Rule("Require naming what XMPP cannot render", None, "RFC 3862 §3.5",
         "Require binds whoever renders the message: refused (feature-not-implemented, SIP 420), never "
         "delivered half-understood"),
    Rule("isComposing refresh, contenttype, lastactive", None, "RFC 7573 §7, XEP-0085 §5",
         "XEP-0085 chat states hold the state only (active/composing); the rest of an RFC 3994 document has "
         "no XMPP place"),
    Rule("MaxForwards", None, "RFC 3860 §4.1",
         "decremented at every hop: XMPP routes by server-to-server streams and has no hop count"),
    Rule("TransID", None, "RFC 3860 §4.1", "identifies one request/response pair on the bus: hop by hop"),
)

#: RFC 3863 PIDF / RFC 4480 RPID and the RFC 3859 notify/publish -> XMPP ``<presence/>``.
PRESENCE_RULES: tuple[Rule, ...] = (
    Rule("tuple", "one <presence/> per tuple, the instance as resource", "RFC 7248 §5, RFC 3922 §5.2"),
    Rule("basic", "presence@type (none / unavailable)", "RFC 3922 §5.2, RFC 6121 §4.7.1"),
    Rule("<show xmlns='jabber:client'/> in status", "<show/>", "RFC 7248 §5, RFC 6121 §4.7.2.1"),
    Rule("tuple note", "<status xml:lang=/>", "RFC 6121 §4.7.2.2, RFC 3922 §5.2"),
    Rule("contact priority", "<priority/>", "RFC 6121 §4.7.2.3, RFC 7248 §5"),
    Rule("tuple timestamp", f"<delay xmlns='{NS_DELAY}' stamp=/>", "XEP-0203 §3, RFC 3863 §4.1.7"),
    Rule("RPID mood", f"<mood xmlns='{NS_MOOD}'/>", "XEP-0107 §2, RFC 4480 §3.4"),
    Rule("RPID activities", f"<activity xmlns='{NS_ACTIVITY}'/>", "XEP-0108 §2, RFC 4480 §3.2"),
    Rule("RPID user-input idle, last-input", f"<idle xmlns='{NS_IDLE}' since=/>", "XEP-0319 §2, RFC 4480 §3.10"),
    Rule("subscription state, expires, reason (notify)", "SHIM <header name='Subscription-State'/>",
         "XEP-0131 §4; RFC 6665 §8.2.3, RFC 3859 §4.4"),
    Rule("subscription duration (subscribe)", "SHIM <header name='Expires'/> on <presence type='subscribe'/>",
         "XEP-0131 §4 (Expires); RFC 3859 §4.3"),
    Rule("fetch (subscribe, duration 0, new SubscriptID)", "<presence type='probe'/>", "RFC 6121 §4.3, RFC 3922 §5.3"),
    Rule("cancel (subscribe, duration 0, same SubscriptID)", "<presence type='unsubscribe'/>",
         "RFC 6121 §3.3, RFC 3922 §5.3"),
    Rule("watcher instance", "presence@from resource", "RFC 7248 §4, RFC 6121 §3.1.1"),
)


# -- XEP-0131 SHIM ----------------------------------------------------------


def shim_element(headers: Sequence[tuple[str, str]]) -> domish.Element:
    """``<headers xmlns='http://jabber.org/protocol/shim'><header name=N>V</header>...`` (XEP-0131 §4)."""
    element = domish.Element((NS_SHIM, "headers"))
    for name, value in headers:
        header = element.addElement("header", content=value)
        header["name"] = name
    return element


def read_shim(stanza: domish.Element) -> list[tuple[str, str]]:
    """The ``(name, value)`` of every XEP-0131 header the stanza carries, in order."""
    found = []
    for child in stanza.elements(NS_SHIM, "headers"):
        for header in child.elements(NS_SHIM, "header"):
            name = header.getAttribute("name")
            if name:
                found.append((name, "".join(str(part) for part in header.children if isinstance(part, str))))
    return found


def first_shim(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            return value
    return None


# -- XEP-0203 delay / XEP-0082 dates ---------------------------------------


def utc_stamp(value: datetime.datetime) -> str:
    """XEP-0082 §3.2 DateTime in UTC (``Z``), fractions only when non-zero."""
    value = value.astimezone(datetime.timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def stamp_of(text: str) -> str:
    """An RFC 3339 timestamp as an XEP-0082 UTC stamp: as written when it is UTC already (``Z``), else
    converted.  :raise ValueError: not an RFC 3339 date-time."""
    from cpimgw.cpim.message import parse_date_time

    value = parse_date_time(text.strip())
    return text.strip() if text.strip().endswith("Z") else utc_stamp(value)


def delay_element(stamp: str) -> domish.Element:
    element = domish.Element((NS_DELAY, "delay"))
    element["stamp"] = stamp
    return element


def find_child(stanza: domish.Element, namespace: str, name: str) -> domish.Element | None:
    for child in stanza.elements(namespace, name):
        return child
    return None
