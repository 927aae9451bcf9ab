"""Pure mapping between XMPP stanzas and CPIM operations (RFC 3922 §4-6, RFC 7248, RFC 7572).

No sockets, no reactor: stanzas are ``domish.Element`` values, time is passed
in.  The tables:

Messages, XMPP -> CPIM (RFC 3922 §4.1, RFC 7572 §4), as a ``Message`` whose
content is a Message/CPIM object built with :func:`cpimgw.cpim.message.build_message`:

=====================================  =====================================================
XMPP                                   Message/CPIM
=====================================  =====================================================
``from`` / ``to`` (resource kept       ``From`` / ``To`` ``<im:...>`` (resource stripped,
on the side)                           ``Message.source_instance`` / ``destination_instance``)
``<body/>`` of the stanza's language   encapsulated ``text/plain; charset=utf-8``
stanza ``xml:lang``                    encapsulated ``Content-Language`` (RFC 7572 §4)
other ``<body xml:lang=L/>``           ``XMPP.Body;lang=L``
``<subject xml:lang=L/>``              ``Subject:;lang=L`` (RFC 3922 §4.1.4)
``type``, ``id``                       ``XMPP.Type``, ``XMPP.Id``
``<thread parent=P/>``                 ``XMPP.Thread;parent=P``
XEP-0359 origin-id / stanza-id         ``XMPP.Origin-ID``, ``XMPP.Stanza-ID;by=B``
                                       (origin-id, else id, is ``Message.message_id``)
XEP-0085 chat state                    ``XMPP.Chat-State``; without a body the content is
                                       ``application/im-iscomposing+xml`` (RFC 3994,
                                       RFC 7573 §7: composing = active, else idle)
XEP-0184 request / received            ``XMPP.Receipt-Request``, ``XMPP.Receipt-Received``
XEP-0071 ``<html/>``                   ``XMPP.XHTML-IM`` (the element's XML)
RFC 3923 ``<e2e/>``                    no Message/CPIM object: the content IS the signed
                                       or encrypted MIME entity (:mod:`.e2e`; line ends
                                       restored to canonical CRLF)
any other child element                ``XMPP.Element`` (its XML)
no ``<body/>`` at all                  ``XMPP.No-Body: true``
``from`` / ``to`` as full JIDs         ``XMPP.From``, ``XMPP.To`` (the resources, and which
                                       side is the XMPP user: the JID under the gateway
                                       domain is the foreign one)
XEP-0203 ``<delay stamp=/>``           ``DateTime`` (none without it: a live message)
XEP-0172 ``<nick/>``                   the display name of ``From``
XEP-0033 ``<addresses/>`` to / cc      every ``To`` / ``cc`` with its display name
``<thread/>``                          ``Message.conversation_id``
XEP-0131 SHIM ``<headers/>``           ``NS``, ``Require``, extension and ``Content-*``
                                       headers (:func:`_shim_fields`)
=====================================  =====================================================

The places are the rows of :data:`.rules.MESSAGE_RULES` and
:data:`.rules.PRESENCE_RULES`; CPIM -> XMPP writes the same elements
(:func:`_add_native_headers`), so nothing with a standard XMPP place needs
the private carriage.

``XMPP`` is the prefix of :data:`NS_XMPP`; a header value that Message/CPIM
cannot hold as it is (empty, or with a space at either end) is written
base64 with ``;enc=b64`` (or ``;enc=empty``).  CPIM -> XMPP reads the same
headers back, so a message that leaves XMPP and comes back is the same
stanza.  Towards another cpimgw only (negotiated by the adapter, XEP-0030)
a Message/CPIM object from another protocol is also carried unmodified in
``<cpim xmlns='urn:x-cpimgw:xmpp'>`` (base64); an inbound stanza that carries
one whose ``From`` is its sender yields exactly those octets.

CPIM -> XMPP (RFC 3922 §4.2): a message without an instance takes the
resource of ``XMPP.From`` / ``XMPP.To`` when that JID's bare part is the one
the address maps to (so an instance survives networks that have none, and a
header can never move a message to another JID); ``cc``, every ``To``,
``DateTime``, the display name, ``NS`` and extension headers go to their XEP
places (:data:`.rules.MESSAGE_RULES`); the message id is ``<origin-id/>``
and the conversation ``<thread/>``;
``Require`` naming anything but the ``XMPP.*`` headers fails the message
(:class:`~cpimgw.cpim.errors.NotUnderstoodError`); only ``text/plain``
(us-ascii or utf-8) becomes ``<body/>``; a ``multipart/signed`` or
``application/pkcs7-mime`` content (bare, or wrapped in Message/CPIM)
becomes RFC 3923 ``<e2e/>`` with a ``<body/>`` fallback
(:func:`.e2e.fallback_text`); ``id`` is ``XMPP.Id``, else
``Content-ID``, else the ``Message.message_id`` (PRIM Message-ID, SIP
Call-ID...), else the TransID.

Presence (RFC 3922 §5, RFC 7248 §5): XMPP presence -> one PIDF tuple per
resource (``tuple_id_for(resource)``; a bare JID's is ``ID-``, which the
adapter only publishes while no resource has, see
:meth:`.adapter.XMPPAdapter._on_bare_availability`), ``basic`` open/closed, ``<show/>`` as
``<show xmlns='jabber:client'/>`` in ``<status>``, ``<status/>`` as tuple
notes, ``<priority/>`` as contact priority n/127 (a negative priority in
``<priority xmlns='urn:x-cpimgw:xmpp'/>``), other children kept as tuple
extension elements, and for away, xa and dnd an RPID ``dm:person`` hint
(:func:`rpid_person`: activities away / away + user-input idle / busy) for
SIP user agents that read RPID only.  PIDF -> XMPP: one presence per tuple from
``target/instance``, the same fields back; provisional ``im:im`` and RPID
activities give a ``<show/>`` when there is no XMPP show (:func:`_show_for`).

PIDF -> XMPP also writes the tuple timestamp as XEP-0203 ``<delay/>``, the
first person's RPID mood, activities and idle as XEP-0107 ``<mood/>``,
XEP-0108 ``<activity/>`` and XEP-0319 ``<idle/>``, and what no element holds
(persons, devices, contacts, document notes and extensions, tuple ids not of
the ``ID-resource`` form) as SHIM ``PIDF-*`` headers holding the RFC 3863
XML (:func:`_residue_headers`), read back by :func:`presence_to_pidf`.
Towards another cpimgw only, the document also travels in
``<pidf xmlns='urn:x-cpimgw:xmpp'>`` (:func:`pidf_element`): the PIDF
octets unmodified (base64), with the operation in attributes.  A presence
that carries one whose ``entity`` is its sender (:func:`carried_pidf`; any
other is ignored, so nobody can speak for someone else) yields exactly
those octets.

Signed presence (RFC 3923 §5, RFC 3863 §4): a ``<presence/>`` whose
``<e2e xmlns='urn:ietf:params:xml:ns:xmpp-e2e'/>`` holds a
``multipart/signed`` PIDF of its sender (:func:`signed_presence`, checked
with :func:`cpimgw.cpim.signed.signed_pidf`, line ends canonical CRLF as
for messages) is published as that signed entity, octet for octet; the
``<e2e/>`` is never a PIDF extension.  A signed document on the bus goes to
an XMPP watcher as the presences of the PIDF it signs (show/status as for
any PIDF) each with the ``<e2e/>`` holding the signed entity unchanged
(:func:`notify_document`).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from decimal import Decimal
from typing import Any, Iterable, Sequence

import attrs

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from cpimgw.adapters.xmpp import e2e, rules
from cpimgw.adapters.xmpp.addresses import AddressMap, parse_jid
from cpimgw.adapters.xmpp.hardening import HardenedElementStream, StreamLimits, StreamRejected
from cpimgw.cpim.errors import MessageFormatError, NotUnderstoodError, ParseError
from cpimgw.cpim.message import (
    CPIMAddress,
    CPIMMessage,
    build_message,
    decode_escapes,
    parse_date_time,
    parse_message,
    qualified_name,
)
from cpimgw.cpim.operations import MEDIA_CPIM, MEDIA_PIDF, Content, Message, Subscribe, is_fetch_id
from cpimgw.cpim.pidf import (
    Activities,
    Contact,
    Extension,
    Note,
    Person,
    PresenceDocument,
    Status,
    Tuple,
    UserInput,
    build_pidf,
    instance_for,
    parse_pidf,
    priority_from_xmpp,
    tuple_id_for,
    xmpp_priority,
)
from cpimgw.cpim.signed import inner_pidf, is_signed, signed_pidf
from cpimgw.cpim.uri import CPIMURI, parse_uri

#: Our namespace: CPIM extension headers (prefix ``XMPP``) and XML elements.
NS_XMPP = "urn:x-cpimgw:xmpp"
PREFIX = "XMPP"
NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_CLIENT = "jabber:client"
NS_COMPONENT = "jabber:component:accept"
NS_SERVER = "jabber:server"
STANZA_NAMESPACES = (NS_CLIENT, NS_COMPONENT, NS_SERVER)
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_SID = "urn:xmpp:sid:0"
NS_XHTML_IM = "http://jabber.org/protocol/xhtml-im"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_ISCOMPOSING = "urn:ietf:params:xml:ns:im-iscomposing"
MEDIA_ISCOMPOSING = "application/im-iscomposing+xml"
CHAT_STATES = ("active", "composing", "paused", "inactive", "gone")
SHOWS = ("away", "chat", "dnd", "xa")
#: The XMPP.* headers a Require may name: we understand all of them.
HEADER_NAMES = (
    "Type", "Id", "Body", "Thread", "Origin-ID", "Stanza-ID", "Chat-State", "Receipt-Request",
    "Receipt-Received", "XHTML-IM", "Element", "No-Body", "Subject", "Lang", "From", "To",
)
UNDERSTOOD = frozenset(qualified_name(NS_XMPP, name) for name in HEADER_NAMES)
#: What an XMPP element in a header value or a fragment may weigh.
FRAGMENT_LIMITS = StreamLimits(max_stanza_size=65536, max_depth=32, max_elements=2000)

# RPID activities / RFC 3922 provisional im:im values -> <show/> (digest §5.3).
_ACTIVITY_SHOW = {"away": "away", "busy": "dnd", "on-the-phone": "dnd", "meeting": "dnd",
                  "vacation": "xa", "holiday": "xa", "permanent-absence": "xa", "sleeping": "xa"}
#: ``<show/>`` -> (RPID activities, RPID user-input state) of the dm:person hint (digest §5.3).
SHOW_RPID: dict[str, tuple[tuple[str, ...], str | None]] = {
    "away": (("away",), None),
    "xa": (("away",), "idle"),
    "dnd": (("busy",), None),
}
_IM_SHOW = {"away": "away", "busy": "dnd", "dnd": "dnd", "xa": "xa", "chat": "chat",
            "extended-away": "xa", "idle": "away"}


class StanzaError(ParseError):
    """A stanza that cannot be mapped; ``condition`` is the stanza error to answer."""

    syntax = "xmpp"

    def __init__(self, reason: str, condition: str = "bad-request", **kw: object) -> None:
        self.condition = condition
        super().__init__(reason, **kw)  # type: ignore[arg-type]


# -- small helpers ---------------------------------------------------------


def lang_of(element: domish.Element) -> str | None:
    """The element's own ``xml:lang`` (not inherited)."""
    return element.attributes.get((NS_XML, "lang"))


def _children(stanza: domish.Element) -> list[domish.Element]:
    return [child for child in stanza.elements()]


def _is_core(child: domish.Element, stanza: domish.Element, name: str) -> bool:
    return child.name == name and child.uri in (stanza.uri,) + STANZA_NAMESPACES


def _text(element: domish.Element) -> str:
    return "".join(str(part) for part in element.children if isinstance(part, str))


def element_xml(element: domish.Element, default_uri: str = "") -> str:
    """The element serialised on its own; elements of ``default_uri`` (the stanza's) carry no xmlns."""
    return element.toXml(defaultUri=default_uri)


def parse_fragment(xml: str | bytes, namespace: str = NS_CLIENT) -> domish.Element:
    """One XML element from text, through the hardened parser (restricted XML, limits)."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    stream = HardenedElementStream(FRAGMENT_LIMITS)
    found: list[domish.Element] = []
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    try:
        stream.parse(b"<wrapper xmlns='" + namespace.encode() + b"'>" + xml + b"</wrapper>")
    except StreamRejected as error:
        raise StanzaError(f"bad XML element: {error.reason}", "bad-request") from None
    if len(found) != 1:
        raise StanzaError(f"expected one XML element, found {len(found)}", "bad-request")
    found[0].parent = None
    return found[0]


def _encode_value(value: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    if value == "":
        return "-", (("enc", "empty"),)
    if value != value.strip(" ") or value[:1] in "\t" or value[-1:] in "\t":
        return base64.b64encode(value.encode("utf-8")).decode("ascii"), (("enc", "b64"),)
    return value, ()


def _decode_value(value: str, params: Sequence[tuple[str, str]]) -> str:
    encoding = dict(params).get("enc")
    if encoding == "empty":
        return ""
    if encoding == "b64":
        try:
            return base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise StanzaError("an XMPP.* header with enc=b64 is not base64 UTF-8", "bad-request") from None
    return value


def _ext(name: str, value: str, params: Iterable[tuple[str, str]] = ()) -> tuple[str, str, str, str, tuple]:
    text, encoding = _encode_value(value)
    return (NS_XMPP, PREFIX, name, text, tuple(params) + encoding)


def _jid_attr(stanza: domish.Element, name: str) -> JID:
    value = stanza.getAttribute(name)
    if not value:
        raise StanzaError(f"the {stanza.name} has no '{name}' address", "bad-request")
    try:
        return parse_jid(value)
    except ParseError as error:
        raise StanzaError(error.reason, "jid-malformed") from None


# -- messages: XMPP -> CPIM ------------------------------------------------


def _carried_cpim(stanza: domish.Element) -> tuple[bytes, str | None] | None:
    """The Message/CPIM octets carried in ``<cpim xmlns='urn:x-cpimgw:xmpp'/>`` and the
    conversation id of the operation (its ``conversation`` attribute), if any."""
    for child in _children(stanza):
        if child.uri == NS_XMPP and child.name == "cpim":
            try:
                octets = base64.b64decode(_text(child).encode("ascii"), validate=True)
            except (binascii.Error, ValueError, UnicodeError):
                raise StanzaError("the carried message/cpim is not base64", "bad-request") from None
            return octets, child.getAttribute("conversation") or None
    return None


def message_to_cpim(
    stanza: domish.Element,
    addresses: AddressMap,
    *,
    now: datetime.datetime | None = None,
    origin: str = "",
    peer_gateways: Iterable[str] = (),
) -> Message:
    """Map an XMPP ``<message/>`` to a CPIM ``Message`` (RFC 3922 §4.1).

    :param now: unused: ``DateTime`` is the XEP-0203 ``<delay/>`` of the
        stanza, or none (a live message; RFC 3862 §4.4 makes it optional).
    :param peer_gateways: domains of other cpimgw gateways (they advertise
        :data:`.rules.FEATURE_CARRIAGE`): a sender under one of them is the
        foreign address its escaped localpart names (XEP-0106), as for our own
        gateway domain, so that the message keeps its original sender.
    :raise StanzaError: with the stanza error condition to answer.
    """
    sender = _jid_attr(stanza, "from")
    recipient = _jid_attr(stanza, "to")
    if sender.host.lower() in peer_gateways and sender.user:
        addresses_of_sender = AddressMap(sender.host)
    else:
        addresses_of_sender = addresses
    try:
        source, source_instance = addresses_of_sender.jid_to_uri(stanza["from"], "im")
        destination, destination_instance = addresses.jid_to_uri(stanza["to"], "im")
    except ParseError as error:
        raise StanzaError(error.reason, "jid-malformed") from None
    message_id = None
    extensions: list[tuple] = []
    stanza_lang = lang_of(stanza)
    kind = stanza.getAttribute("type")
    if kind:
        extensions.append(_ext("Type", kind))
    sender_name: str | None = None
    delay: str | None = None
    addressed: tuple[list, list] | None = None
    threads: list[tuple[str, str | None]] = []
    bodies: list[tuple[str | None, str]] = []
    subjects: list[tuple[str | None, str]] = []
    chat_state = None
    for child in _children(stanza):
        if _is_core(child, stanza, "body"):
            bodies.append((lang_of(child), _text(child)))
        elif _is_core(child, stanza, "subject"):
            subjects.append((lang_of(child), _text(child)))
        elif _is_core(child, stanza, "thread"):
            parent = child.getAttribute("parent")
            threads.append((_text(child), parent))
        elif child.uri == NS_SID and child.name == "origin-id" and child.getAttribute("id"):
            message_id = child["id"]
        elif child.uri == rules.NS_NICK and child.name == "nick" and sender_name is None and _text(child).strip():
            sender_name = _text(child)
        elif child.uri == rules.NS_DELAY and child.name == "delay" and delay is None and child.getAttribute("stamp"):
            delay = child["stamp"]
            if set(child.attributes) != {"stamp"} or _text(child):
                extensions.append(_ext("Element", element_xml(child, stanza.uri)))  # its from / reason as they are
        elif child.uri == rules.NS_SHIM and child.name == "headers":
            continue  # read below (rules.read_shim)
        elif child.uri == rules.NS_ADDRESS and child.name == "addresses" and addressed is None:
            addressed = _read_addresses(child, addresses)
            if addressed is None:
                extensions.append(_ext("Element", element_xml(child, stanza.uri)))
        elif child.uri == NS_SID and child.name == "stanza-id" and child.getAttribute("id"):
            by = child.getAttribute("by")
            extensions.append(_ext("Stanza-ID", child["id"], (("by", by),) if by else ()))
        elif child.uri == NS_CHATSTATES and child.name in CHAT_STATES:
            chat_state = child.name
            extensions.append(_ext("Chat-State", child.name))
        elif child.uri == NS_RECEIPTS and child.name == "request":
            extensions.append(_ext("Receipt-Request", "yes"))
        elif child.uri == NS_RECEIPTS and child.name == "received":
            extensions.append(_ext("Receipt-Received", child.getAttribute("id") or ""))
        elif child.uri == NS_XHTML_IM and child.name == "html":
            extensions.append(_ext("XHTML-IM", element_xml(child, stanza.uri)))
        elif (child.uri == NS_XMPP and child.name == "cpim") or (child.uri == e2e.NS_E2E and child.name == "e2e"):
            continue
        else:
            extensions.append(_ext("Element", element_xml(child, stanza.uri)))
    if message_id is None:
        message_id = stanza.getAttribute("id") or None
    shim = _shim_fields(rules.read_shim(stanza))
    content_id = shim.content_header("Content-ID")
    if stanza.getAttribute("id") and stanza["id"] != (content_id.strip("<>") if content_id else message_id):
        extensions.insert(1 if kind else 0, _ext("Id", stanza["id"]))
    conversation_id = None
    if threads:
        conversation_id = threads[0][0] or None
        if len(threads) > 1 or threads[0][1] or not threads[0][0]:
            for text, parent in threads:
                extensions.append(_ext("Thread", text, (("parent", parent),) if parent else ()))
    extensions.append(_ext("From", sender.full()))
    extensions.append(_ext("To", recipient.full()))

    carried = _carried_cpim(stanza)
    if carried is not None:
        octets, carried_conversation = carried
        try:
            inner = parse_message(octets, understood=UNDERSTOOD)
            if inner.sender.cpim_uri is not None and inner.sender.cpim_uri.same_principal(source):
                return Message(
                    source, destination, Content(MEDIA_CPIM, inner.to_bytes()),
                    message_id=message_id, origin=origin,
                    source_instance=source_instance, destination_instance=destination_instance,
                    conversation_id=carried_conversation or conversation_id,
                )
        except ParseError:
            pass  # not trustworthy: map the stanza itself

    secured = e2e.find_e2e(stanza)
    if secured is not None:
        # RFC 3923 §3: the signed/encrypted MIME entity is the message; its octets are the content.
        try:
            content = e2e.content_from_e2e(e2e.e2e_text(secured))
        except ParseError as error:
            raise StanzaError(f"RFC 3923 <e2e/>: {error.reason}", "bad-request") from None
        return Message(
            source, destination, content, message_id=message_id, origin=origin,
            source_instance=source_instance, destination_instance=destination_instance,
            conversation_id=conversation_id,
        )

    primary_index = None
    for index, (lang, _) in enumerate(bodies):
        if lang is None or lang == stanza_lang:
            primary_index = index
            break
    if primary_index is None and bodies:
        primary_index = 0
    for index, (lang, text) in enumerate(bodies):
        if index != primary_index:
            extensions.append(_ext("Body", text, (("lang", lang),) if lang else ()))
    content_headers = []
    if stanza_lang:
        content_headers.append(("Content-Language", stanza_lang))
    if primary_index is not None:
        body_lang = bodies[primary_index][0]
        if body_lang is not None and body_lang != stanza_lang:
            content_headers.append(("Content-Language", body_lang))
            if stanza_lang:
                content_headers = [("Content-Language", body_lang)]
                extensions.append(_ext("Lang", stanza_lang))
        body = bodies[primary_index][1].encode("utf-8")
        content_type = shim.content_type or "text/plain; charset=utf-8"
    elif chat_state is not None:
        extensions.append(_ext("No-Body", "true"))
        state = "active" if chat_state == "composing" else "idle"
        body = (
            "<?xml version='1.0' encoding='UTF-8'?>\n"
            f"<isComposing xmlns='{NS_ISCOMPOSING}'><state>{state}</state></isComposing>"
        ).encode("utf-8")
        content_type = MEDIA_ISCOMPOSING + "; charset=utf-8"
    else:
        extensions.append(_ext("No-Body", "true"))
        body = b""
        content_type = "text/plain; charset=utf-8"

    simple_subjects = []
    for lang, text in subjects:
        if text == "" or text != text.strip():
            extensions.append(_ext("Subject", text, (("lang", lang),) if lang else ()))
        else:
            simple_subjects.append((lang, text))
    date_time: datetime.datetime | str | None = None
    if shim.date_time is not None:
        date_time = shim.date_time  # the DateTime as written, offset included (rules.MESSAGE_RULES)
    elif delay is not None:
        try:
            date_time = parse_date_time(delay.strip())
        except ValueError:
            raise StanzaError("<delay/> stamp is not an XEP-0082 DateTime", "bad-request") from None
    recipients: list[Any] = [destination]
    copies: list[Any] = []
    if addressed is not None:
        tos, copies = addressed
        if tos and any(a.cpim_uri is not None and a.cpim_uri.same_principal(destination) for a in tos):
            recipients = tos
        elif tos:
            recipients = [destination, *tos]
    content_headers.extend(pair for pair in shim.content_headers if pair[0].lower() != "content-type")
    try:
        cpim = build_message(
            source, recipients, body, content_type,
            sender_name=sender_name, cc=copies,
            date_time=date_time, subjects=simple_subjects, extensions=[*extensions, *shim.extensions],
            content_headers=content_headers, require=shim.require,
        )
    except MessageFormatError as error:
        raise StanzaError(f"cannot be written as Message/CPIM: {error.reason}", "bad-request") from None
    return Message(
        source, destination, Content(MEDIA_CPIM, cpim.to_bytes()),
        message_id=message_id, origin=origin,
        source_instance=source_instance, destination_instance=destination_instance,
        conversation_id=conversation_id,
    )


@attrs.frozen
class ShimFields:
    """What the XEP-0131 headers of a message say in Message/CPIM terms (:data:`.rules.MESSAGE_RULES`)."""

    date_time: str | None = None
    require: tuple[str, ...] = ()
    extensions: tuple[tuple, ...] = ()
    content_headers: tuple[tuple[str, str], ...] = ()

    @property
    def content_type(self) -> str | None:
        return self.content_header("Content-Type")

    def content_header(self, name: str) -> str | None:
        return rules.first_shim(self.content_headers, name)


_NS_VALUE = re.compile(r"^\s*(?:([^\s<]+)\s*)?<([^>]*)>\s*$")
_CORE_HEADERS = ("From", "To", "cc", "DateTime", "Subject", "NS", "Require")


def _shim_fields(headers: Sequence[tuple[str, str]]) -> ShimFields:
    """Read the SHIM headers back into Message/CPIM headers (the inverse of :func:`_shim_headers`).

    ``NS`` declares the prefixes of the ``Prefix.Name`` headers; a header
    whose name has no declared prefix is an extension in the SHIM namespace
    itself (XEP-0131 §4 names such as ``Priority`` or ``Expires``).
    """
    if not headers:
        return ShimFields()
    prefixes: dict[str, str] = {}
    for name, value in headers:
        if name == "NS":
            match = _NS_VALUE.match(value)
            if match and match.group(1):
                prefixes[match.group(1)] = match.group(2)
    date_time = None
    require: list[str] = []
    extensions: list[tuple] = []
    content: list[tuple[str, str]] = []
    for raw_name, value in headers:
        name, *raw_params = raw_name.split(";")
        params = tuple((k.strip(), v.strip()) for k, _, v in (p.partition("=") for p in raw_params) if k.strip())
        if name == "DateTime" and date_time is None:
            try:
                parse_date_time(value.strip())
                date_time = value.strip()
            except ValueError:
                pass
        elif name == "Require":
            require.extend(item.strip() for item in value.split(",") if item.strip())
        elif name.lower().startswith("content-"):
            if name.lower() not in ("content-length", "content-language"):
                content.append((name, value))
        elif name in _CORE_HEADERS:
            continue
        elif "." in name and name.split(".", 1)[0] in prefixes:
            prefix, _, local = name.partition(".")
            if local:
                extensions.append((prefixes[prefix], prefix, local, decode_escapes(value), params))
        elif name and all(c.isalnum() or c in "-_" for c in name):
            extensions.append((rules.NS_SHIM, "SHIM", name, decode_escapes(value), params))
    return ShimFields(date_time, tuple(require), tuple(extensions), tuple(content))


def _read_addresses(element: domish.Element, addresses: AddressMap) -> tuple[list, list] | None:
    """``(To addresses, cc addresses)`` of an XEP-0033 ``<addresses/>``, or ``None`` when it holds
    anything else (bcc, replyto...: kept whole as an ``XMPP.Element``)."""
    tos: list[CPIMAddress] = []
    copies: list[CPIMAddress] = []
    for item in element.elements(rules.NS_ADDRESS, "address"):
        kind = item.getAttribute("type")
        if kind not in ("to", "cc"):
            return None
        uri_text = item.getAttribute("uri")
        try:
            if uri_text:
                uri = parse_uri(uri_text)
            elif item.getAttribute("jid"):
                uri = addresses.jid_to_uri(item["jid"], "im")[0]
                uri_text = str(uri)
            else:
                return None
        except ParseError:
            return None
        address = CPIMAddress(item.getAttribute("desc") or None, uri_text, uri)
        (tos if kind == "to" else copies).append(address)
    return tos, copies


# -- messages: CPIM -> XMPP ------------------------------------------------


def _with_resource(jid: JID, carried: str | None) -> str:
    """``jid`` with the resource of the carried full JID when its bare JID is ``jid``'s, else ``jid``."""
    if carried:
        try:
            other = parse_jid(carried)
        except ParseError:
            return jid.full()
        if other.resource and (other.user, other.host) == (jid.user, jid.host):
            return other.full()
    return jid.full()


def _mime_type(value: str | None) -> tuple[str, dict[str, str]]:
    if not value:
        return "text/plain", {"charset": "us-ascii"}
    kind, *rest = value.split(";")
    params = {}
    for item in rest:
        key, _, val = item.strip().partition("=")
        params[key.strip().lower()] = val.strip().strip('"')
    return kind.strip().lower(), params


def read_cpim(content: Content) -> CPIMMessage:
    """Parse a message's Message/CPIM content, refusing what ``Require`` names and XMPP cannot honour."""
    if content.media_type != MEDIA_CPIM:
        raise MessageFormatError(f"content is {content.media_type}, not message/cpim")
    return parse_message(content.body, understood=UNDERSTOOD)


def cpim_to_message(
    operation: Message,
    addresses: AddressMap,
    *,
    namespace: str = NS_CLIENT,
    default_type: str | None = None,
    carry_cpim: bool = True,
) -> domish.Element:
    """Map a CPIM ``Message`` to an XMPP ``<message/>`` (RFC 3922 §4.2, RFC 7572 §5).

    :param default_type: the ``type`` when the message carries no
        ``XMPP.Type`` (RFC 7572: none or ``normal``).
    :param carry_cpim: also carry the Message/CPIM octets unmodified (the
        adapter sets it for messages from other protocols).
    :raise NotUnderstoodError: ``Require`` names what XMPP cannot honour.
    :raise ParseError: content that is not valid Message/CPIM.
    """
    stanza = domish.Element((namespace, "message"))
    sender = addresses.uri_to_jid(operation.source, operation.source_instance)
    recipient = addresses.uri_to_jid(operation.destination, operation.destination_instance)
    stanza["from"] = sender.full()
    stanza["to"] = recipient.full()
    if operation.content.media_type != MEDIA_CPIM:
        # RFC 3860 allows other formats: text/plain is a body, a signed or encrypted object is
        # RFC 3923 <e2e/> (with a <body/> fallback), the rest is refused.
        kind, params = operation.content.media_type, dict(operation.content.parameters)
        secured = e2e.is_secured(kind)
        plain = kind == "text/plain" and params.get("charset", "utf-8").lower() in ("utf-8", "us-ascii")
        if not secured and not plain:
            raise MessageFormatError(f"{kind} cannot be carried in an XMPP message")
        stanza["id"] = operation.message_id or operation.trans_id
        if default_type:
            stanza["type"] = default_type
        if secured:
            content_type = e2e.format_content_type(operation.content)
            stanza.addElement("body", content=e2e.fallback_text(content_type, operation.content.body))
            stanza.addChild(e2e.e2e_element(e2e.entity_text(content_type, operation.content.body)))
            return stanza
        stanza.addElement("body", content=operation.content.body.decode("utf-8", errors="strict"))
        return stanza
    cpim = read_cpim(operation.content)
    values: dict[str, list[tuple[str, tuple]]] = {}
    for namespace_uri, name, value, params in cpim.extension_headers:
        if namespace_uri == NS_XMPP:
            values.setdefault(name, []).append((_decode_value(value, params), params))

    def first(name: str) -> str | None:
        return values[name][0][0] if name in values else None

    if operation.source_instance is None:
        stanza["from"] = _with_resource(sender, first("From"))
    if operation.destination_instance is None:
        stanza["to"] = _with_resource(recipient, first("To"))
    kind = first("Type") or default_type
    if kind:
        stanza["type"] = kind
    content_id = cpim.content_header("Content-ID")
    stanza["id"] = first("Id") or (content_id.strip("<>") if content_id else operation.message_id or operation.trans_id)
    media, params = _mime_type(cpim.content_header("Content-Type"))
    language = cpim.content_header("Content-Language")
    stanza_lang = first("Lang") or language
    if stanza_lang:
        stanza[(NS_XML, "lang")] = stanza_lang
    for lang, text in cpim.subjects:
        subject = stanza.addElement("subject", content=text)
        if lang:
            subject[(NS_XML, "lang")] = lang
    for text, params_ in values.get("Subject", []):
        subject = stanza.addElement("subject", content=text)
        lang = dict(params_).get("lang")
        if lang:
            subject[(NS_XML, "lang")] = lang
    if first("No-Body") != "true":
        if media == "text/plain" and params.get("charset", "us-ascii").lower() in ("utf-8", "us-ascii", "utf8"):
            try:
                text = cpim.body.decode("utf-8")
            except UnicodeDecodeError:
                raise MessageFormatError("a text/plain body that is not UTF-8") from None
            body = stanza.addElement("body", content=text)
            if language and first("Lang"):
                body[(NS_XML, "lang")] = language
        elif media == "text/plain":
            raise MessageFormatError(f"text/plain in charset {params.get('charset')} is not mapped (RFC 3922 §4.2)")
        elif e2e.is_secured(media):
            fallback = e2e.fallback_text(cpim.content_header("Content-Type") or media, cpim.body)
            stanza.addElement("body", content=fallback)
        elif media != MEDIA_ISCOMPOSING and _textual(media, params):
            # Text of another type (text/html, XML...): the text in <body/>, its type in SHIM (rules.MESSAGE_RULES).
            try:
                text = cpim.body.decode("utf-8")
            except UnicodeDecodeError:
                raise MessageFormatError(f"a {media} body that is not UTF-8 has no place in XMPP") from None
            body = stanza.addElement("body", content=text)
            if language and first("Lang"):
                body[(NS_XML, "lang")] = language
    for text, params_ in values.get("Body", []):
        body = stanza.addElement("body", content=text)
        lang = dict(params_).get("lang")
        if lang:
            body[(NS_XML, "lang")] = lang
    for text, params_ in values.get("Thread", []):
        thread = stanza.addElement("thread", content=text)
        parent = dict(params_).get("parent")
        if parent:
            thread["parent"] = parent
    if "Thread" not in values and operation.conversation_id:
        stanza.addElement("thread", content=operation.conversation_id)  # RFC 6121 §5.2.5
    chat_state = first("Chat-State")
    if chat_state is None and media == MEDIA_ISCOMPOSING:
        chat_state = "composing" if b"<state>active</state>" in cpim.body.replace(b" ", b"") else "active"
    if chat_state in CHAT_STATES:
        stanza.addElement((NS_CHATSTATES, chat_state))
    if first("Receipt-Request") is not None:
        stanza.addElement((NS_RECEIPTS, "request"))
    received = first("Receipt-Received")
    if received is not None:
        element = stanza.addElement((NS_RECEIPTS, "received"))
        if received:
            element["id"] = received
    origin_id = first("Origin-ID") or operation.message_id
    if origin_id:
        # XEP-0359 §3: the gateway originates this stanza; the message's own id, verbatim.
        stanza.addElement((NS_SID, "origin-id"))["id"] = origin_id
    for text, params_ in values.get("Stanza-ID", []):
        element = stanza.addElement((NS_SID, "stanza-id"))
        element["id"] = text
        by = dict(params_).get("by")
        if by:
            element["by"] = by
    own_delay = False
    for name in ("XHTML-IM", "Element"):
        for text, _ in values.get(name, []):
            element = parse_fragment(text, namespace)
            own_delay = own_delay or (element.uri == rules.NS_DELAY and element.name == "delay")
            stanza.addChild(element)
    _add_native_headers(stanza, cpim, media, params, own_delay=own_delay)
    if e2e.is_secured(media):
        # RFC 3923 §3: the signed/encrypted entity the Message/CPIM object wraps, octets unchanged.
        stanza.addChild(e2e.e2e_element(e2e.entity_text(
            cpim.content_header("Content-Type") or media, cpim.body, cpim.content_header("Content-Transfer-Encoding"))))
    if carry_cpim:
        carried = stanza.addElement((NS_XMPP, "cpim"), content=base64.b64encode(operation.content.body).decode("ascii"))
        if operation.conversation_id:
            carried["conversation"] = operation.conversation_id
    return stanza


def _textual(media: str, params: dict[str, str]) -> bool:
    """A type whose body is character data (RFC 2046 §4.1 text/*, RFC 7303 XML types), in UTF-8 or ASCII."""
    charset = params.get("charset", "utf-8").lower()
    return (media.startswith("text/") or media.endswith("+xml") or media in ("application/xml", "application/json")) \
        and charset in ("utf-8", "utf8", "us-ascii")


#: The encapsulated Content-Type an XMPP <body/> stands for without saying it.
XMPP_CONTENT_TYPE = "text/plain;charset=utf-8"


def _normal_type(value: str) -> str:
    media, params = _mime_type(value)
    return ";".join([media] + [f"{k}={v.lower() if k == 'charset' else v}" for k, v in sorted(params.items())])


def _shim_headers(cpim: CPIMMessage, media: str) -> list[tuple[str, str]]:
    """The XEP-0131 headers of a Message/CPIM object: what has no element of its own (rules.MESSAGE_RULES)."""
    headers: list[tuple[str, str]] = []
    date_time = cpim.date_time
    if date_time is not None and date_time.text != rules.utc_stamp(date_time.value):
        headers.append(("DateTime", date_time.text))
    used = {h.namespace for h in cpim.headers if not h.is_core and h.namespace not in (NS_XMPP, rules.NS_SHIM)}
    for header in cpim.headers:
        if header.is_core and header.local_name == "NS":
            if getattr(header.parsed, "uri", None) in used:
                headers.append(("NS", header.raw_value))
        elif header.is_core and header.local_name == "Require":
            headers.append(("Require", header.raw_value))
        elif not header.is_core and header.namespace != NS_XMPP:
            name = header.local_name if header.namespace == rules.NS_SHIM else header.name
            name += "".join(f";{k}={v}" for k, v in header.params)
            # As written, RFC 3862 §2.3 escapes kept: a control character has no place in XML text.
            headers.append((name, header.raw_value))
    content_type = cpim.content_header("Content-Type")
    if media != MEDIA_ISCOMPOSING and not e2e.is_secured(media) and content_type is not None \
            and _normal_type(content_type) != XMPP_CONTENT_TYPE:
        headers.append(("Content-Type", content_type))
    elif content_type is None:
        headers.append(("Content-Type", "text/plain; charset=us-ascii"))
    for name, value in cpim.content_headers:
        if name.lower().startswith("content-") and name.lower() not in (
                "content-type", "content-language", "content-length", "content-transfer-encoding"):
            headers.append((name, value))
    return headers


def _add_native_headers(stanza: domish.Element, cpim: CPIMMessage, media: str, params: dict[str, str], *,
                        own_delay: bool) -> None:
    """nick, addresses, delay and SHIM headers of a Message/CPIM object (:data:`.rules.MESSAGE_RULES`)."""
    sender_name = cpim.sender.display_name
    if sender_name:
        stanza.addElement((rules.NS_NICK, "nick"), content=sender_name)  # XEP-0172 §4.2
    recipients, copies = cpim.recipients, cpim.cc
    if len(recipients) > 1 or copies or any(address.display_name for address in recipients):
        element = stanza.addElement((rules.NS_ADDRESS, "addresses"))  # XEP-0033 §4
        for kind, items in (("to", recipients), ("cc", copies)):
            for address in items:
                item = element.addElement("address")
                item["type"] = kind
                item["uri"] = address.uri
                if address.display_name:
                    item["desc"] = address.display_name
                item["delivered"] = "true"
    if cpim.date_time is not None and not own_delay:
        stanza.addChild(rules.delay_element(rules.utc_stamp(cpim.date_time.value)))  # XEP-0203 §3
    shim = _shim_headers(cpim, media)
    if shim:
        stanza.addChild(rules.shim_element(shim))


# -- presence: XMPP -> PIDF ------------------------------------------------

NS_CAPS = "http://jabber.org/protocol/caps"


def presence_type(stanza: domish.Element) -> str:
    """``available`` for a presence without ``type``, else the ``type``."""
    return stanza.getAttribute("type") or "available"


def presence_to_pidf(
    stanza: domish.Element,
    addresses: AddressMap,
    *,
    timestamp: str | None = None,
) -> tuple[CPIMURI, str | None, Content]:
    """Map an available/unavailable ``<presence/>`` to ``(pres: presentity, resource, PIDF Content)``.

    RFC 3922 §5.1, RFC 7248 §5: one tuple for the sending resource.
    """
    sender = _jid_attr(stanza, "from")
    try:
        entity, resource = addresses.jid_to_uri(sender, "pres")
    except ParseError as error:
        raise StanzaError(error.reason, "jid-malformed") from None
    kind = presence_type(stanza)
    if kind not in ("available", "unavailable"):
        raise StanzaError(f"a presence of type {kind} carries no presence state", "bad-request")
    stanza_lang = lang_of(stanza)
    show = None
    notes: list[Note] = []
    priority = 0
    extensions: list[Extension] = []
    delay: str | None = None
    rpid_children: dict[str, domish.Element] = {}
    for child in _children(stanza):
        if _is_core(child, stanza, "show"):
            show = _text(child).strip()
            if show not in SHOWS:
                raise StanzaError(f"<show>{show[:20]}</show> is not away, chat, dnd or xa", "bad-request")
        elif _is_core(child, stanza, "status"):
            notes.append(Note(_text(child), lang_of(child) or stanza_lang))
        elif _is_core(child, stanza, "priority"):
            try:
                priority = int(_text(child).strip())
                if not -128 <= priority <= 127:
                    raise ValueError
            except ValueError:
                raise StanzaError("<priority/> is not an integer from -128 to 127", "bad-request") from None
        elif child.uri == e2e.NS_E2E and child.name == "e2e":
            continue  # the signed document itself (signed_presence), never a PIDF extension
        elif child.uri == rules.NS_SHIM and child.name == "headers":
            continue  # read below (rules.read_shim)
        elif child.uri == rules.NS_DELAY and child.name == "delay" and set(child.attributes) == {"stamp"} \
                and delay is None:
            delay = child["stamp"].strip()
        elif (child.uri, child.name) in ((rules.NS_MOOD, "mood"), (rules.NS_ACTIVITY, "activity"),
                                         (rules.NS_IDLE, "idle")) and child.name not in rpid_children:
            rpid_children[child.name] = child
        else:
            extensions.append(Extension.from_xml(element_xml(child).encode("utf-8")))  # own xmlns: PIDF needs it
    qvalue = priority_from_xmpp(priority)
    if priority < 0:
        extensions.append(Extension.from_xml(f"<priority xmlns='{NS_XMPP}'>{priority}</priority>".encode()))
    contact_uri = addresses.jid_to_uri(sender, "im")[0]
    if delay is not None:
        try:
            timestamp = rules.stamp_of(delay)  # XEP-0203: when this presence was set
        except ValueError:
            raise StanzaError("<delay/> stamp is not an XEP-0082 DateTime", "bad-request") from None
    item = Tuple(
        tuple_id_for(resource) if resource else "ID-",
        Status("open" if kind == "available" else "closed", xmpp_show=show),
        Contact(str(contact_uri), qvalue),
        notes,
        timestamp,
        extensions,
    )
    person = rpid_person(item.id, show, timestamp) if kind == "available" else None
    if rpid_children:
        person = _person_from_xeps(item.id, person, rpid_children, timestamp)
    document = build_pidf(entity, [item], persons=[person] if person is not None else [])
    residue = _pidf_residue(rules.read_shim(stanza))
    if residue:
        document = _with_residue(document, residue)
    # No charset parameter: the document's XML declaration names UTF-8 (RFC 3023 §3.2), and a watcher
    # gets the same Content-Type as for the other networks' presence.
    return entity, resource, Content(MEDIA_PIDF, document.to_bytes())


def person_id_for(tuple_id: str) -> str:
    """The id of the RPID ``dm:person`` hint of the tuple ``tuple_id`` (``p-`` + the tuple id).

    Derived from the tuple id, so that the persons of several resources stay
    distinct when the presence service composes their documents (RFC 4479 §3.1: one
    id space per document).
    """
    return f"p-{tuple_id}"


def rpid_person(tuple_id: str, show: str | None, timestamp: str | None = None) -> Person | None:
    """The RPID ``dm:person`` hint for an available presence's ``<show/>`` (digest §5.3, RFC 4480).

    ==============  =================================================
    ``<show/>``     ``<dm:person>``
    ==============  =================================================
    (none), chat    none
    away            ``<rpid:activities><rpid:away/>``
    xa              ``<rpid:activities><rpid:away/>`` and
                    ``<rpid:user-input>idle</rpid:user-input>``
    dnd             ``<rpid:activities><rpid:busy/>``
    ==============  =================================================

    SIP user agents (baresip among them) read RPID, not the ``jabber:client``
    ``<show/>`` extension that stays in the tuple status as the first source of
    truth for XMPP.
    """
    if show not in SHOW_RPID:
        return None
    activities, user_input = SHOW_RPID[show]
    return Person(
        person_id_for(tuple_id),
        activities=[Activities(values=activities)],
        user_input=UserInput(state=user_input) if user_input is not None else None,
        timestamp=timestamp,
    )


def signed_presence(stanza: domish.Element, entity: CPIMURI) -> Content | None:
    """The signed PIDF a ``<presence/>`` holds in RFC 3923 ``<e2e/>`` (RFC 3923 §5, RFC 3863 §4).

    ``None`` when the stanza has no ``<e2e/>``.  Otherwise the entity's
    line ends are made canonical (CRLF, :func:`.e2e.content_from_e2e`) and
    the result must be a ``multipart/signed`` whose first part is a PIDF
    document of ``entity`` (the sender's ``pres:`` URI), checked with
    :func:`cpimgw.cpim.signed.signed_pidf`; the returned Content's octets
    are the signed body, unchanged.

    :raise StanzaError: ``bad-request`` for an entity that is not a MIME
        entity, not signed, or not a signed PIDF of the sender (nobody
        publishes a document signed for someone else through us).
    """
    secured = e2e.find_e2e(stanza)
    if secured is None:
        return None
    try:
        content = e2e.content_from_e2e(e2e.e2e_text(secured))
    except ParseError as error:
        raise StanzaError(f"RFC 3923 <e2e/> in a presence: {error.reason}", "bad-request") from None
    if not is_signed(content.media_type):
        raise StanzaError(f"RFC 3923 <e2e/> in a presence holds {content.media_type}; only a signed PIDF "
                          "(multipart/signed, RFC 3923 §5) can be relayed", "bad-request")
    try:
        signed_pidf(content.body, content.parameters, entity)
    except ParseError as error:
        raise StanzaError(f"RFC 3923 <e2e/> in a presence: {error.reason}", "bad-request") from None
    return content


def notify_document(content: Content, target: CPIMURI | None = None) -> tuple[PresenceDocument, domish.Element | None]:
    """``(document, <e2e/> or None)`` of a presence Content going to an XMPP watcher.

    A ``multipart/signed`` PIDF (RFC 3863 §4) gives the PIDF it signs (for
    the show/status of the presences) and the RFC 3923 ``<e2e/>`` holding the
    signed entity, its octets unchanged (each CR written ``&#13;``); plain
    PIDF gives the document and ``None``.

    :param target: the presentity; when given, a signed document must be its own.
    :raise ParseError: neither PIDF nor a signed PIDF (of ``target``).
    """
    if is_signed(content.media_type):
        if target is not None:
            octets = signed_pidf(content.body, content.parameters, target)
        else:
            octets = inner_pidf(content.body, content.parameters)
        document = parse_pidf(octets)
        text = e2e.entity_text(e2e.format_content_type(content), content.body)
        return document, e2e.e2e_element(text)
    return read_pidf(content), None


def from_resource(stanza: domish.Element, resource: str) -> domish.Element:
    """A copy of a bare-JID ``<presence/>`` as if its sender's ``resource`` had sent it.

    RFC 6121 §4.3.2 / §4.5.2: ``unavailable`` from the bare JID says that no
    resource of the account is available; the adapter maps it to
    ``unavailable`` from each resource it has published (one closed tuple
    each, RFC 3922 §5.1), never to a tuple of its own.
    """
    sender = _jid_attr(stanza, "from")
    copy = domish.Element((stanza.uri, stanza.name), defaultUri=stanza.defaultUri,
                          attribs=dict(stanza.attributes))
    copy["from"] = JID(tuple=(sender.user, sender.host, resource)).full()
    for child in stanza.children:
        copy.children.append(child)  # shared, read only: the original keeps them as its own
    return copy


# -- presence: PIDF -> XMPP ------------------------------------------------


def _show_for(item: Tuple, document: PresenceDocument) -> str | None:
    """The ``<show/>`` of a tuple: its ``jabber:client`` show, else a hint (digest §5.3).

    In order, the first that gives a value wins:

    1. ``<show xmlns='jabber:client'/>`` in the tuple status (RFC 7248 §5);
    2. the provisional RFC 3922 ``<im:im>`` (away, busy/dnd, xa/extended-away,
       chat, idle -> away);
    3. the RPID activities of the document's persons (RFC 4480 §3.2), in order:

       ==============================================  ========
       ``rpid:activities``                             ``<show/>``
       ==============================================  ========
       away                                            away (xa when that
                                                       person's ``rpid:user-input``
                                                       is idle, as :func:`rpid_person`
                                                       writes xa)
       busy, meeting, on-the-phone                     dnd
       vacation, holiday, permanent-absence, sleeping  xa
       anything else                                   (none)
       ==============================================  ========
    """
    if item.status.xmpp_show in SHOWS:
        return item.status.xmpp_show
    if item.status.im and item.status.im.lower() in _IM_SHOW:
        return _IM_SHOW[item.status.im.lower()]
    for person in document.persons:
        for activities in person.activities:
            for value in activities.values:
                if value in _ACTIVITY_SHOW:
                    show = _ACTIVITY_SHOW[value]
                    if show == "away" and person.user_input is not None and person.user_input.state == "idle":
                        return "xa"
                    return show
    return None


def pidf_to_presences(
    document: PresenceDocument,
    target: CPIMURI,
    recipient: JID,
    addresses: AddressMap,
    *,
    namespace: str = NS_CLIENT,
    carry: domish.Element | None = None,
    headers: Sequence[tuple[str, str]] = (),
    residue: bool = True,
) -> list[domish.Element]:
    """One ``<presence/>`` per tuple of ``document`` (RFC 3922 §5.2, RFC 7248 §5).

    Each carries its tuple's timestamp as XEP-0203 ``<delay/>``, the first
    person's RPID mood, activities and idle as XEP-0107 / XEP-0108 / XEP-0319
    elements, ``headers`` (the operation: subscription state, expiry) and,
    with ``residue``, what of the document those elements cannot hold as
    SHIM ``PIDF-*`` headers (:data:`.rules.PRESENCE_RULES`).

    ``from`` is the target's JID with the tuple's instance as resource; a
    document without tuples gives one presence from the bare JID: its notes
    as statuses, ``unavailable`` (nothing is known, RFC 3863 §4.1: never
    shown as available).

    :param carry: a :func:`pidf_element`, or the RFC 3923 ``<e2e/>`` of a
        signed document (:func:`notify_document`), added to every presence
        (each may be the only one a receiver keeps).
    """
    presences = []
    for item in document.tuples:
        instance = instance_for(item.id)
        stanza = domish.Element((namespace, "presence"))
        stanza["from"] = addresses.uri_to_jid(target, instance or None).full()
        stanza["to"] = recipient.full()
        if item.status.basic == "closed":
            stanza["type"] = "unavailable"
        show = _show_for(item, document)
        if show and item.status.basic != "closed":
            stanza.addElement("show", content=show)
        for note in item.notes or document.notes:
            status = stanza.addElement("status", content=note.text)
            if note.lang:
                status[(NS_XML, "lang")] = note.lang
        priority = None
        children = []
        for extension in item.extensions:
            element = parse_fragment(extension.xml, namespace)
            if element.uri == NS_XMPP and element.name == "priority":
                try:
                    priority = int(_text(element))
                except ValueError:
                    pass
                continue
            children.append(element)
        if priority is None and item.contact is not None and item.contact.priority is not None:
            priority = xmpp_priority(item.contact.priority)
        if priority:
            stanza.addElement("priority", content=str(priority))
        for element in children:
            stanza.addChild(element)
        if item.timestamp:
            try:
                stanza.addChild(rules.delay_element(rules.stamp_of(item.timestamp)))
            except ValueError:
                pass
        if document.persons:
            _add_rpid_elements(stanza, document.persons[0])
        shim = list(headers)
        if residue:
            shim.extend(_residue_headers(document, item, stanza, target, addresses))
        if shim:
            stanza.addChild(rules.shim_element(shim))
        presences.append(stanza)
    if not document.tuples:
        stanza = domish.Element((namespace, "presence"))
        stanza["from"] = addresses.uri_to_jid(target).full()
        stanza["to"] = recipient.full()
        if not document.notes:
            # Nothing known of the presentity (RFC 3863 §4.1): XMPP shows that as offline.
            stanza["type"] = "unavailable"
        for note in document.notes:
            status = stanza.addElement("status", content=note.text)
            if note.lang:
                status[(NS_XML, "lang")] = note.lang
        shim = list(headers)
        if residue:
            shim.extend(_document_residue(document))
        if shim:
            stanza.addChild(rules.shim_element(shim))
        presences.append(stanza)
    if carry is not None:
        for stanza in presences:
            stanza.addChild(carry)
    return presences


# -- presence: the RPID elements and the SHIM residue ------------------------

#: RPID activities (RFC 4480 §3.2) -> XEP-0108 (general, specific); the rest has no XEP-0108 value.
ACTIVITY_XEP0108: dict[str, tuple[str, str | None]] = {
    "appointment": ("having_appointment", None), "breakfast": ("eating", "having_breakfast"),
    "dinner": ("eating", "having_dinner"), "meal": ("eating", None), "holiday": ("inactive", "scheduled_holiday"),
    "vacation": ("inactive", "on_vacation"), "sleeping": ("inactive", "sleeping"), "in-transit": ("traveling", None),
    "travel": ("traveling", "on_a_trip"), "steering": ("traveling", "driving"), "meeting": ("working", "in_a_meeting"),
    "working": ("working", None), "on-the-phone": ("talking", "on_the_phone"), "playing": ("relaxing", "gaming"),
    "shopping": ("relaxing", "shopping"), "tv": ("relaxing", "watching_tv"), "worship": ("inactive", "praying"),
}
_XEP0108_ACTIVITY = {value: key for key, value in ACTIVITY_XEP0108.items()}
_XEP0108_GENERAL = {general: key for key, (general, specific) in ACTIVITY_XEP0108.items() if specific is None}
#: The SHIM headers that hold what of a PIDF document no XMPP element holds (RFC 3863 / RFC 4479 XML).
RESIDUE_HEADERS = ("PIDF-Tuple", "PIDF-Person", "PIDF-Device", "PIDF-Note", "PIDF-Extension")


def _add_rpid_elements(stanza: domish.Element, person: Person) -> None:
    """XEP-0107 mood, XEP-0108 activity and XEP-0319 idle of an RPID person (RFC 4480 §3.2, §3.4, §3.13)."""
    for mood in person.mood[:1]:
        values = [v for v in mood.values if not v.startswith("{")]
        if values:
            element = stanza.addElement((rules.NS_MOOD, "mood"))
            element.addElement(values[0])
            for other in mood.other[:1]:
                element.addElement("text", content=other.text)
    for activities in person.activities[:1]:
        prefix = "{" + rules.NS_ACTIVITY + "}"
        own = [value[len(prefix):] for value in activities.values if value.startswith(prefix)]
        known = [value for value in activities.values if value in ACTIVITY_XEP0108]
        general = specific = None
        if known:
            general, specific = ACTIVITY_XEP0108[known[0]]
            specific = own[-1] if own else specific
        elif own:
            general, specific = own[0], (own[1] if len(own) > 1 else None)
        if general:
            element = stanza.addElement((rules.NS_ACTIVITY, "activity"))
            category = element.addElement(general)
            if specific:
                category.addElement(specific)
    if person.user_input is not None and person.user_input.state == "idle" and person.user_input.last_input:
        try:
            since = rules.utc_stamp(parse_date_time(person.user_input.last_input))
        except ValueError:
            return
        stanza.addElement((rules.NS_IDLE, "idle"))["since"] = since


def _person_from_xeps(tuple_id: str, hint: Person | None, found: dict[str, domish.Element],
                      timestamp: str | None) -> Person:
    """The RPID person of XEP-0107 mood, XEP-0108 activity and XEP-0319 idle (the inverse of
    :func:`_add_rpid_elements`), merged into the ``<show/>`` hint."""
    from cpimgw.cpim.pidf import Mood

    person = hint or Person(person_id_for(tuple_id), timestamp=timestamp)
    mood = found.get("mood")
    if mood is not None:
        values = [child.name for child in mood.elements() if child.name != "text"]
        texts = [_text(child) for child in mood.elements() if child.name == "text"]
        if values:
            person = attrs.evolve(person, mood=[Mood(values=values[:1], other=[Note(t) for t in texts[:1]])])
    activity = found.get("activity")
    if activity is not None:
        for general in activity.elements():
            specific = next((c.name for c in general.elements() if c.name != "text"), None)
            prefix = "{" + rules.NS_ACTIVITY + "}"
            value = _XEP0108_ACTIVITY.get((general.name, specific))
            if value is not None:
                values = [value]
            else:
                # XEP-0108 values RPID has no name for travel as values of their own namespace (RFC 4480 §3.2).
                base = _XEP0108_GENERAL.get(general.name)
                values = [base] if base else [prefix + general.name]
                if specific:
                    values.append(prefix + specific)
            person = attrs.evolve(person, activities=[Activities(values=values)])
            break
    idle = found.get("idle")
    if idle is not None and idle.getAttribute("since"):
        try:
            since = rules.utc_stamp(parse_date_time(idle["since"]))
        except ValueError:
            raise StanzaError("<idle/> since is not an XEP-0082 DateTime", "bad-request") from None
        person = attrs.evolve(person, user_input=UserInput(state="idle", last_input=since))
    return person


def _fragments(document: PresenceDocument) -> dict[str, list[str]]:
    """The XML of every tuple, person, device, note and extension of ``document`` (own namespace
    declarations each), by kind."""
    from lxml import etree

    root = etree.fromstring(document.to_bytes(), parser=etree.XMLParser(resolve_entities=False, no_network=True))
    out: dict[str, list[str]] = {}
    kinds = {"tuple": "PIDF-Tuple", "person": "PIDF-Person", "device": "PIDF-Device", "note": "PIDF-Note"}
    for child in root:
        if not isinstance(child.tag, str):
            continue
        local = etree.QName(child).localname
        kind = kinds.get(local, "PIDF-Extension")
        out.setdefault(kind, []).append(etree.tostring(child, encoding="unicode", with_tail=False))
    return out


def _document_residue(document: PresenceDocument) -> list[tuple[str, str]]:
    """SHIM headers for the persons, devices, notes and extensions of a document (no XMPP element holds them)."""
    rest = attrs.evolve(document, tuples=())
    found = _fragments(rest) if (rest.persons or rest.devices or rest.notes or rest.extensions) else {}
    return [(kind, xml) for kind in RESIDUE_HEADERS[1:] for xml in found.get(kind, ())]


def _residue_headers(document: PresenceDocument, item: Tuple, stanza: domish.Element, target: CPIMURI,
                     addresses: AddressMap) -> list[tuple[str, str]]:
    """The SHIM headers of one tuple's presence: the tuple's XML when the stanza's own elements do not
    give it back exactly, and the rest of the document when it is not what those elements give."""
    probe = domish.Element((stanza.uri, stanza.name), attribs=dict(stanza.attributes))
    for child in stanza.children:
        probe.children.append(child)
    try:
        _, _, content = presence_to_pidf(probe, addresses, timestamp=_NO_TIMESTAMP)
        rebuilt = parse_pidf(content.body)
    except ParseError:
        rebuilt = None
    headers: list[tuple[str, str]] = []
    if rebuilt is None or rebuilt.tuples != (item,):
        headers.extend(("PIDF-Tuple", xml) for xml in _fragments(build_pidf(document.entity, [item]))["PIDF-Tuple"])
    if rebuilt is None or rebuilt.persons != document.persons or document.devices or document.notes \
            or document.extensions:
        rest = attrs.evolve(document, tuples=())
        if rest.persons or rest.devices or rest.notes or rest.extensions:
            found = _fragments(rest)
            headers.extend((kind, xml) for kind in RESIDUE_HEADERS[1:] for xml in found.get(kind, ()))
        if not rest.persons and (rebuilt is None or rebuilt.persons):
            headers.append(("PIDF-Person", ""))  # no person at all (not the one the elements would give)
    return headers


#: A receipt time no document holds: a tuple rebuilt with it differs from any tuple without a timestamp.
_NO_TIMESTAMP = "0001-01-01T00:00:00Z"


def _pidf_residue(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in headers:
        if name in RESIDUE_HEADERS:
            found.setdefault(name, []).append(value)
    return found


def _with_residue(document: PresenceDocument, residue: dict[str, list[str]]) -> PresenceDocument:
    """``document`` with the parts its SHIM ``PIDF-*`` headers hold (they are the sender's own: the
    document's entity stays the sender's)."""
    entity = str(document.entity)
    parts = [value for kind in RESIDUE_HEADERS for value in residue.get(kind, ()) if value]
    text = ("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='" + entity.replace("'", "&apos;") + "'>"
            + "".join(parts) + "</presence>")
    try:
        carried = parse_pidf(text.encode("utf-8"))
    except ParseError as error:
        raise StanzaError(f"SHIM PIDF headers: {error.reason}", "bad-request") from None
    tuples = carried.tuples if "PIDF-Tuple" in residue else document.tuples
    persons = carried.persons if "PIDF-Person" in residue else document.persons
    return build_pidf(document.entity, tuples, carried.notes or document.notes, persons, carried.devices,
                      carried.extensions or document.extensions)


#: The attributes of ``<pidf xmlns='urn:x-cpimgw:xmpp'/>`` that describe the carried operation.
PIDF_ATTRIBUTES = ("op", "type", "state", "expires", "reason", "instance")


def pidf_element(content: Content | None, **attributes: object) -> domish.Element:
    """``<pidf xmlns='urn:x-cpimgw:xmpp' op=... state=...>base64 PIDF</pidf>``: the document XMPP cannot hold.

    ``attributes`` whose value is ``None`` are left out; ``type`` is the
    Content-Type when it is not plain ``application/pidf+xml``.
    """
    element = domish.Element((NS_XMPP, "pidf"))
    if content is not None:
        if content.parameters:
            element["type"] = content.content_type
        element.addContent(base64.b64encode(content.body).decode("ascii"))
    for name, value in attributes.items():
        if value is not None:
            element[name] = str(value)
    return element


def carried_pidf(stanza: domish.Element, entity: CPIMURI) -> tuple[Content | None, dict[str, str]] | None:
    """The PIDF a presence carries in ``<pidf xmlns='urn:x-cpimgw:xmpp'/>`` and its attributes.

    ``None`` when there is none, or when it is not trustworthy: not base64,
    not a PIDF document, or about another presentity than ``entity`` (the
    stanza's sender), so a stanza can only carry its sender's own presence.
    The content is ``None`` for a final notify that carries no document.
    """
    for child in stanza.elements(NS_XMPP, "pidf"):
        attributes = {name: child[name] for name in PIDF_ATTRIBUTES if child.hasAttribute(name)}
        text = _text(child).strip()
        if not text:
            return (None, attributes) if attributes.get("op") == "notify" else None
        try:
            octets = base64.b64decode(text.encode("ascii"), validate=True)
            document = parse_pidf(octets)
        except (binascii.Error, ValueError, UnicodeError, ParseError):
            return None
        if not isinstance(document.entity, CPIMURI) or not document.entity.same_principal(entity):
            return None
        media, parameters = MEDIA_PIDF, ()
        if "type" in attributes:
            kind, params = _mime_type(attributes["type"])
            if kind != MEDIA_PIDF:
                return None
            parameters = tuple(sorted(params.items()))
        return Content(media, octets, parameters), attributes
    return None


def read_pidf(content: Content) -> PresenceDocument:
    """Parse a PIDF Content (any other media type is refused)."""
    if content.media_type != MEDIA_PIDF:
        raise ParseError(f"presence content is {content.media_type}, not {MEDIA_PIDF}", syntax="pidf")
    return parse_pidf(content.body)


def subscribe_presence(operation: Subscribe, addresses: AddressMap, *, cancel: bool | None = None,
                       namespace: str = NS_CLIENT, default_duration: int | None = None,
                       with_instance: bool = True) -> domish.Element:
    """The ``<presence/>`` of a ``Subscribe`` (RFC 3922 §5.3, :data:`.rules.PRESENCE_RULES`).

    A duration is ``subscribe`` with the duration in the SHIM header
    ``Expires`` (XEP-0131 §4) unless it is ``default_duration`` (what a
    ``subscribe`` without one asks for); duration 0 is ``unsubscribe`` when it cancels
    a running subscription (``cancel``; ``None``: decided by the SubscriptID,
    :func:`cpimgw.cpim.operations.is_fetch_id`), else ``probe`` (a fetch).
    The watcher's instance is the resource of ``from`` (``with_instance``;
    the adapter sends from the bare JID, as a user's server does, RFC 6121
    §3.1.1).
    """
    watcher = addresses.uri_to_jid(operation.watcher, operation.watcher_instance if with_instance else None)
    target = addresses.uri_to_jid(operation.target)
    if operation.duration:
        stanza = simple_presence(watcher, target, "subscribe", stanza_id=operation.trans_id, namespace=namespace)
        if operation.duration != default_duration:
            stanza.addChild(rules.shim_element([("Expires", str(operation.duration))]))
        return stanza
    if cancel is None:
        cancel = not is_fetch_id(operation.subscript_id)
    return simple_presence(watcher, target, "unsubscribe" if cancel else "probe", namespace=namespace)


def subscription_duration(stanza: domish.Element, default: int) -> int:
    """The duration a ``subscribe`` asks for: its SHIM ``Expires`` (XEP-0131 §4), else ``default``."""
    value = rules.first_shim(rules.read_shim(stanza), "Expires")
    if value is not None and value.strip().isdigit() and 0 < int(value) <= 2**31 - 1:
        return int(value)
    return default


def notify_headers(state: str, expires: int | None = None, reason: str | None = None) -> list[tuple[str, str]]:
    """The SHIM ``Subscription-State`` of a notify (RFC 6665 §8.2.3 syntax; XEP-0131 §4)."""
    value = state
    if reason:
        value += f";reason={reason}"
    elif expires is not None:
        value += f";expires={expires}"
    return [("Subscription-State", value)]


def read_notify_headers(stanza: domish.Element) -> tuple[str, int | None, str | None] | None:
    """``(state, expires, reason)`` of a presence's SHIM ``Subscription-State``, or ``None``."""
    value = rules.first_shim(rules.read_shim(stanza), "Subscription-State")
    if value is None:
        return None
    head, *params = [part.strip() for part in value.split(";")]
    expires = reason = None
    for param in params:
        key, _, val = param.partition("=")
        if key.lower() == "expires" and val.isdigit() and len(val) <= 10:
            expires = int(val)
        elif key.lower() == "reason" and val:
            reason = val.lower()
    return head.lower(), expires, reason


def simple_presence(
    sender: JID, recipient: JID, kind: str | None = None, *, stanza_id: str | None = None, namespace: str = NS_CLIENT
) -> domish.Element:
    """A ``<presence/>`` of ``kind`` (subscribe, subscribed, unsubscribe, unsubscribed, probe, unavailable)."""
    stanza = domish.Element((namespace, "presence"))
    stanza["from"] = sender.full()
    stanza["to"] = recipient.full()
    if kind:
        stanza["type"] = kind
    if stanza_id:
        stanza["id"] = stanza_id
    return stanza


def error_reply(stanza: domish.Element, condition: str, error_type: str, text: str = "") -> domish.Element:
    """The ``type='error'`` answer to ``stanza`` (RFC 6120 §8.3): addresses swapped, original children kept."""
    reply = domish.Element((stanza.uri, stanza.name))
    if stanza.getAttribute("to"):
        reply["from"] = stanza["to"]
    if stanza.getAttribute("from"):
        reply["to"] = stanza["from"]
    if stanza.getAttribute("id"):
        reply["id"] = stanza["id"]
    reply["type"] = "error"
    error = reply.addElement("error")
    error["type"] = error_type
    error.addElement((NS_STANZAS, condition))
    if text:
        error.addElement((NS_STANZAS, "text"), content=text[:1000])
    return reply


def stanza_error_condition(stanza: domish.Element) -> tuple[str, str]:
    """``(condition, text)`` of a ``type='error'`` stanza (``undefined-condition`` if none)."""
    for child in _children(stanza):
        if child.name == "error":
            condition, text = "undefined-condition", ""
            for item in child.elements():
                if item.uri == NS_STANZAS and item.name == "text":
                    text = _text(item)
                elif item.uri == NS_STANZAS:
                    condition = item.name
            return condition, text
    return "undefined-condition", ""


def priority_qvalue(priority: int) -> Decimal | None:
    """Re-export for the codec: XMPP priority -> qvalue."""
    return priority_from_xmpp(priority)
