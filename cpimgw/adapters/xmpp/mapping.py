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
(receipt time)                         ``DateTime`` (RFC 3922 §4.1 MAY)
=====================================  =====================================================

``XMPP`` is the prefix of :data:`NS_XMPP`; a header value that Message/CPIM
cannot hold as it is (empty, or with a space at either end) is written
base64 with ``;enc=b64`` (or ``;enc=empty``).  CPIM -> XMPP reads the same
headers back, so a message that leaves XMPP and comes back is the same
stanza.  A Message/CPIM object from another protocol is also carried
unmodified in ``<cpim xmlns='urn:x-cpimgw:xmpp'>`` (base64); an inbound stanza
that carries one whose ``From`` is its sender yields exactly those octets.

CPIM -> XMPP (RFC 3922 §4.2): a message without an instance takes the
resource of ``XMPP.From`` / ``XMPP.To`` when that JID's bare part is the one
the address maps to (so an instance survives networks that have none, and a
header can never move a message to another JID); ``cc``, ``DateTime`` and ``NS`` are not passed;
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

What XMPP presence cannot express (RPID persons and devices, timestamps,
contacts, document notes, unknown extensions, tuple ids not of the
``ID-resource`` form, and the operation itself: notify or publish, its
subscription state, expiry, reason and instance) travels in
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
from decimal import Decimal
from typing import Iterable, Sequence

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from cpimgw.adapters.xmpp import e2e
from cpimgw.adapters.xmpp.addresses import AddressMap, parse_jid
from cpimgw.adapters.xmpp.hardening import HardenedElementStream, StreamLimits, StreamRejected
from cpimgw.cpim.errors import MessageFormatError, NotUnderstoodError, ParseError
from cpimgw.cpim.message import CPIMMessage, build_message, parse_message, qualified_name
from cpimgw.cpim.operations import MEDIA_CPIM, MEDIA_PIDF, Content, Message
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
from cpimgw.cpim.uri import CPIMURI

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
) -> Message:
    """Map an XMPP ``<message/>`` to a CPIM ``Message`` (RFC 3922 §4.1).

    :param now: the receipt time for ``DateTime`` (``None``: no DateTime).
    :raise StanzaError: with the stanza error condition to answer.
    """
    sender = _jid_attr(stanza, "from")
    recipient = _jid_attr(stanza, "to")
    try:
        source, source_instance = addresses.jid_to_uri(stanza["from"], "im")
        destination, destination_instance = addresses.jid_to_uri(stanza["to"], "im")
    except ParseError as error:
        raise StanzaError(error.reason, "jid-malformed") from None
    message_id = None
    extensions: list[tuple] = []
    stanza_lang = lang_of(stanza)
    kind = stanza.getAttribute("type")
    if kind:
        extensions.append(_ext("Type", kind))
    if stanza.getAttribute("id"):
        extensions.append(_ext("Id", stanza["id"]))
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
            extensions.append(_ext("Thread", _text(child), (("parent", parent),) if parent else ()))
        elif child.uri == NS_SID and child.name == "origin-id" and child.getAttribute("id"):
            message_id = child["id"]
            extensions.append(_ext("Origin-ID", child["id"]))
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
    extensions.append(_ext("From", sender.full()))
    extensions.append(_ext("To", recipient.full()))

    carried = _carried_cpim(stanza)
    if carried is not None:
        octets, conversation_id = carried
        try:
            inner = parse_message(octets, understood=UNDERSTOOD)
            if inner.sender.cpim_uri is not None and inner.sender.cpim_uri.same_principal(source):
                return Message(
                    source, destination, Content(MEDIA_CPIM, inner.to_bytes()),
                    message_id=message_id, origin=origin,
                    source_instance=source_instance, destination_instance=destination_instance,
                    conversation_id=conversation_id,
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
        content_type = "text/plain; charset=utf-8"
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
    try:
        cpim = build_message(
            source, [destination], body, content_type,
            date_time=now, subjects=simple_subjects, extensions=extensions,
            content_headers=content_headers,
        )
    except MessageFormatError as error:
        raise StanzaError(f"cannot be written as Message/CPIM: {error.reason}", "bad-request") from None
    return Message(
        source, destination, Content(MEDIA_CPIM, cpim.to_bytes()),
        message_id=message_id, origin=origin,
        source_instance=source_instance, destination_instance=destination_instance,
    )


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
    origin_id = first("Origin-ID")
    if origin_id:
        stanza.addElement((NS_SID, "origin-id"))["id"] = origin_id
    for text, params_ in values.get("Stanza-ID", []):
        element = stanza.addElement((NS_SID, "stanza-id"))
        element["id"] = text
        by = dict(params_).get("by")
        if by:
            element["by"] = by
    for name in ("XHTML-IM", "Element"):
        for text, _ in values.get(name, []):
            stanza.addChild(parse_fragment(text, namespace))
    if e2e.is_secured(media):
        # RFC 3923 §3: the signed/encrypted entity the Message/CPIM object wraps, octets unchanged.
        stanza.addChild(e2e.e2e_element(e2e.entity_text(
            cpim.content_header("Content-Type") or media, cpim.body, cpim.content_header("Content-Transfer-Encoding"))))
    if carry_cpim:
        carried = stanza.addElement((NS_XMPP, "cpim"), content=base64.b64encode(operation.content.body).decode("ascii"))
        if operation.conversation_id:
            carried["conversation"] = operation.conversation_id
    return stanza


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
        else:
            extensions.append(Extension.from_xml(element_xml(child).encode("utf-8")))  # own xmlns: PIDF needs it
    qvalue = priority_from_xmpp(priority)
    if priority < 0:
        extensions.append(Extension.from_xml(f"<priority xmlns='{NS_XMPP}'>{priority}</priority>".encode()))
    contact_uri = addresses.jid_to_uri(sender, "im")[0]
    item = Tuple(
        tuple_id_for(resource) if resource else "ID-",
        Status("open" if kind == "available" else "closed", xmpp_show=show),
        Contact(str(contact_uri), qvalue),
        notes,
        timestamp,
        extensions,
    )
    person = rpid_person(item.id, show, timestamp) if kind == "available" else None
    document = build_pidf(entity, [item], persons=[person] if person is not None else [])
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
) -> list[domish.Element]:
    """One ``<presence/>`` per tuple of ``document`` (RFC 3922 §5.2, RFC 7248 §5).

    ``from`` is the target's JID with the tuple's instance as resource; a
    document without tuples gives one presence from the bare JID when it has
    notes, else none (digest §7.5 decision) -- unless ``carry`` is given:
    then an ``unavailable`` from the bare JID carries the document (nothing
    is known: never shown as available).

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
        presences.append(stanza)
    if not document.tuples and (document.notes or carry is not None):
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
        presences.append(stanza)
    if carry is not None:
        for stanza in presences:
            stanza.addChild(carry)
    return presences


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
