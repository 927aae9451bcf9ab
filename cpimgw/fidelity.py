"""Measured "no loss of information": every native unit through every other protocol and back.

For a unit of protocol A and each other protocol B the engine runs the path
the gateway runs, with nothing but the ``INativeCodec`` plugins::

    A unit --A.to_operation--> CPIM op --B.from_operation--> B unit(s)
           --B.to_operation--> CPIM op --A.from_operation--> A unit(s)

and compares the ORIGINAL and the RETURNED A unit field by field, on the
fields CPIM can express: the addressing, the RFC 3860 message and its
Message/CPIM headers (RFC 3862 §3-§4: From, To, cc, DateTime, Subject with
its language, NS-qualified extension headers, Require, the encapsulated
MIME headers and body), the RFC 3859 operation fields (subscription state,
lifetime, instance) and the presence document (RFC 3863 tuples, notes,
contact and priority, timestamps, extension elements; RFC 4480 persons and
devices), each read from the codec's ``parse()`` JSON and from the carried
Message/CPIM (:mod:`cpimgw.cpim.message`) or PIDF (:mod:`cpimgw.cpim.pidf`).

What is not compared is listed, with the reason, in each protocol's
:class:`Profile` (``excluded``): only what is truly hop-by-hop (transport and
transaction identifiers, Via, CSeq, tags, MaxForwards which every hop
decrements, PRIM request ids...).  Fields a gateway must *create* when the
original had none (an XMPP ``id``, a PRIM ``Message-ID`` or ``Date``...) are
in ``generated``: they may appear on the way back, never change.

Two matrices.  The headline is the *native* one: every far unit is
serialised to octets, stripped of every private carriage of the gateway
(:attr:`Profile.strip_private`: XMPP's ``urn:x-cpimgw:xmpp`` elements) and
parsed again, as a third-party peer would return it, and the codecs write no
private carriage at all (``with_private_carriage`` is not called): what
comes back was held in a standard place.  The *carriage* matrix is the same
between two cpimgw gateways, where the carriage is negotiated (XEP-0030).
Shipped corpora name the adapter settings they are written for
(``SETTINGS``; :func:`configured`).

A unit is "equal" when every compared field of the original came back with
the same value and nothing appeared that is not in ``generated``.  The
engine also reports, for A -> B one way, which fields of A had no place in
B's native form and travelled only inside the carried Message/CPIM or PIDF
(or not at all).

The engine is pure: no network, no reactor, no clock but the codecs' own.
A fourth protocol joins the matrix by shipping an ``INativeCodec`` and a
corpus: either a module ``cpimgw.fidelity_corpus.<name>`` with ``UNITS``, a
``corpus()`` method on its codec, or files in ``<corpus dir>/<name>/``; and,
for a precise comparison, a ``fidelity_profile`` attribute on the codec (a
:class:`Profile`); without one its ``parse()`` JSON is compared whole.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import importlib
import json
import os
import re
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import unquote

import attrs

from cpimgw.cpim.errors import CPIMGWError
from cpimgw.cpim.operations import MEDIA_CPIM, MEDIA_PIDF

#: How many units of one protocol the engine accepts (a corpus is not a stress test).
DEFAULT_MAX_UNITS = 10000
#: How large one corpus file may be.
DEFAULT_MAX_UNIT_SIZE = 1 << 20

NS_XML = "http://www.w3.org/XML/1998/namespace"
#: The XMPP adapter's own namespace: its CPIM extension headers and its private carriage.
NS_X_GATEWAY = "urn:x-cpimgw:xmpp"
#: The SIP adapter's namespace for SIP's end-to-end headers in Message/CPIM.
NS_X_SIP = "urn:x-cpimgw:sip"


# --------------------------------------------------------------------------- values


@attrs.frozen
class Unit:
    """One native unit of a corpus: its protocol, a short name, its octets."""

    protocol: str
    name: str
    data: bytes = attrs.field(repr=False)


@attrs.frozen
class Fields:
    """The compared fields of one unit.

    :ivar values: field name -> a hashable, comparable value.
    :ivar carried: the names whose value was read from inside a carried
        Message/CPIM object or PIDF document (not from the native form).
    """

    values: Mapping[str, Any]
    carried: frozenset[str] = frozenset()


@attrs.frozen
class Profile:
    """How to compare the units of one protocol.

    :ivar name: the codec name.
    :ivar fields: ``(octets, codec) -> Fields``.
    :ivar excluded: what is not compared (header / field / attribute) and why.
    :ivar generated: fields that the way back may add when the original had
        none, and why (they must still be equal when the original had one).
    :ivar split: native octets that ``from_operation`` gave -> the units in
        them (XMPP writes one presence per PIDF tuple).
    :ivar carries: media types this protocol carries as they are
        (``message/cpim``, ``application/pidf+xml``): where both ends carry
        one, the matrix must read 100%.
    :ivar strip_private: a unit's octets without any private carriage of
        the gateway (what a third-party peer understands and returns).
    :ivar no_place: what CPIM can express and this protocol has no standard
        place for, and why (the RFC/XEP section): the residual losses.
    """

    name: str
    fields: Callable[[bytes, Any], Fields]
    excluded: Mapping[str, str] = attrs.field(factory=dict)
    generated: Mapping[str, str] = attrs.field(factory=dict)
    split: Callable[[bytes], list[bytes]] = attrs.field(default=lambda data: [data])
    carries: frozenset[str] = frozenset()
    strip_private: Callable[[bytes], bytes] = attrs.field(default=lambda data: data)
    no_place: Callable[[], Mapping[str, str]] = attrs.field(default=lambda: {})


@attrs.frozen
class Loss:
    """One field of one unit that did not survive a path (or the unit itself, field ``*``)."""

    source: str
    far: str
    unit: str
    field: str
    original: Any
    returned: Any
    reason: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        """``(source, far, unit, field)``: what a test pins."""
        return (self.source, self.far, self.unit, self.field)


@attrs.frozen
class Carriage:
    """A field of ``source`` that had no native place in ``far``, over ``units`` units.

    ``where`` is ``"carried"`` (only inside the carried Message/CPIM or PIDF)
    or ``"absent"`` (nowhere in the far unit).
    """

    source: str
    far: str
    field: str
    where: str
    units: int


@attrs.frozen
class Cell:
    """One path ``source -> far -> source`` over the source's corpus."""

    source: str
    far: str
    total: int
    equal: int
    losses: tuple[Loss, ...] = ()
    carriage: tuple[Carriage, ...] = ()
    must_be_full: bool = False
    fields: int = 0
    kept: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.equal / self.total if self.total else 100.0


@attrs.frozen
class Matrix:
    """Every path of every protocol; ``profiles`` say what was compared and what was not."""

    protocols: tuple[str, ...]
    cells: Mapping[tuple[str, str], Cell]
    profiles: Mapping[str, Profile] = attrs.field(factory=dict)
    native: bool = True

    def cell(self, source: str, far: str) -> Cell:
        return self.cells[(source, far)]

    @property
    def losses(self) -> tuple[Loss, ...]:
        return tuple(loss for cell in self.cells.values() for loss in cell.losses)


# --------------------------------------------------------------------------- small helpers


def _put(values: dict[str, Any], name: str, value: Any) -> None:
    """Record a field; empty values are the same as absent ones."""
    if value is None or value == "" or value == () or value == frozenset():
        return
    values[name] = value


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _content_type(value: str | None) -> str | None:
    """A Content-Type normalised: media type and parameter names lower case, values unquoted, sorted."""
    if not value:
        return None
    media, *params = [part.strip() for part in value.split(";")]
    pairs = []
    for param in params:
        if not param:
            continue
        key, _, val = param.partition("=")
        key = key.strip().lower()
        val = val.strip().strip('"')
        if key == "charset":
            val = val.lower()
        pairs.append(f"{key}={val}")
    return ";".join([media.lower(), *sorted(pairs)])


def _media(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _text_or_b64(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode("ascii")


def _instant(value: datetime.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).isoformat()


def _rfc1123(value: str | None) -> str | None:
    if not value:
        return None
    text = re.sub(r"[A-Za-z]+", lambda m: m.group(0).capitalize(), value.strip())
    try:
        return _instant(email.utils.parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError):
        return "unparsable:" + value


# --------------------------------------------------------------------------- Message/CPIM and PIDF


def cpim_fields(data: bytes, values: dict[str, Any], carried: set[str], *, own_namespaces: Sequence[str] = ()) -> None:
    """The fields of a Message/CPIM object (RFC 3862 §3-§4), into ``values`` (names ``cpim.*``, ``content.*``, ``body``).

    Extension headers of ``own_namespaces`` are left out: they are the
    protocol's own native fields, compared natively.
    """
    from cpimgw.cpim.errors import NotUnderstoodError
    from cpimgw.cpim.message import parse_message

    try:
        message = parse_message(data)
    except NotUnderstoodError as error:
        # Reading is not understanding: Require binds the recipient (RFC 3862 §3.5), not this comparison.
        message = parse_message(data, understood=frozenset(error.names))
    before = set(values)
    _put(values, "cpim.from", (message.sender.display_name, message.sender.uri))
    _put(values, "cpim.to", tuple((a.display_name, a.uri) for a in message.recipients))
    _put(values, "cpim.cc", tuple((a.display_name, a.uri) for a in message.cc))
    if message.date_time is not None:
        values["datetime"] = _instant(message.date_time.value)
    _put(values, "subject", tuple(sorted(message.subjects, key=repr)))
    _put(values, "cpim.require", tuple(message.require))
    _put(values, "cpim.ext", tuple(sorted(
        ((ns, name, value, tuple(params)) for ns, name, value, params in message.extension_headers
         if ns not in own_namespaces and ns != NS_X_GATEWAY), key=repr)))
    _put(values, "cpim.ext.xmpp", tuple(sorted(
        ((name, value, tuple(params)) for ns, name, value, params in message.extension_headers
         if ns == NS_X_GATEWAY and ns not in own_namespaces), key=repr)))
    _put(values, "content.type", _content_type(message.content_header("Content-Type")) or "text/plain;charset=us-ascii")
    _put(values, "content.language", message.content_header("Content-Language"))
    _put(values, "content.headers", tuple(sorted(
        (name.lower(), value) for name, value in message.content_headers
        if name.lower() not in ("content-type", "content-language", "content-length"))))
    _put(values, "body", _text_or_b64(message.body))
    carried.update(set(values) - before)


def own_extensions(data: bytes, namespace: str) -> dict[str, str]:
    """The values of the Message/CPIM extension headers of ``namespace`` (first of each name)."""
    from cpimgw.cpim.message import parse_message

    found: dict[str, str] = {}
    from cpimgw.cpim.errors import NotUnderstoodError

    try:
        message = parse_message(data)
    except NotUnderstoodError as error:
        message = parse_message(data, understood=frozenset(error.names))
    for ns, name, value, _params in message.extension_headers:
        if ns == namespace:
            found.setdefault(name, value)
    return found


def _norm(value: Any) -> Any:
    """A hashable, order-preserving normal form of a PIDF model value (extensions by their C14N form)."""
    from cpimgw.cpim.pidf import Extension

    if isinstance(value, Extension):
        return ("ext", value.namespace, value.name, value.canonical.decode("utf-8", "replace"))
    if attrs.has(type(value)):
        return (type(value).__name__,) + tuple(
            (field.name, _norm(getattr(value, field.name))) for field in attrs.fields(type(value))
            if field.eq is not False)
    if isinstance(value, (tuple, list)):
        return tuple(_norm(item) for item in value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def pidf_fields(data: bytes, values: dict[str, Any], carried: set[str]) -> None:
    """The fields of a PIDF document (RFC 3863 §4, RFC 4479/4480), names ``pidf.*``.

    Tuples, persons and devices are keyed by their id; within each, every
    attribute of the model is its own field; notes and extensions compare
    as sets (their order carries no meaning, RFC 3863 §4.1).
    """
    from cpimgw.cpim.pidf import parse_pidf

    document = parse_pidf(data)
    before = set(values)
    _put(values, "pidf.entity", str(document.entity))
    _put(values, "pidf.note", tuple(sorted(_norm(document.notes), key=repr)))
    _put(values, "pidf.ext", tuple(sorted(_norm(document.extensions), key=repr)))
    for kind, items in (("tuple", document.tuples), ("person", document.persons), ("device", document.devices)):
        for item in items:
            for field in attrs.fields(type(item)):
                if field.name == "id":
                    continue
                value = getattr(item, field.name)
                if field.name == "status":
                    _put(values, f"pidf.{kind}[{item.id}].basic", value.basic)
                    _put(values, f"pidf.{kind}[{item.id}].show", value.xmpp_show)
                    _put(values, f"pidf.{kind}[{item.id}].im", value.im)
                    _put(values, f"pidf.{kind}[{item.id}].status-ext",
                         tuple(sorted(_norm(value.extensions), key=repr)))
                    continue
                normal = _norm(value)
                if field.name in ("notes", "extensions") and isinstance(normal, tuple):
                    normal = tuple(sorted(normal, key=repr))
                _put(values, f"pidf.{kind}[{item.id}].{field.name.rstrip('_')}", normal)
    carried.update(set(values) - before)


# --------------------------------------------------------------------------- XMPP


def _x_children(element: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(element.get("children", ()))


def _x_text(element: Mapping[str, Any]) -> str:
    return element.get("text", "")


def _x_canonical(element: Mapping[str, Any]) -> str:
    return _canonical_json(element)


NS_X_CLIENT = ("jabber:client", "jabber:server", "jabber:component:accept")


def xmpp_fields(data: bytes, codec: Any) -> Fields:
    """The fields of one XMPP stanza (RFC 6120/6121 and the XEPs the RFC 3922 mapping carries)."""
    stanza = codec.parse(data)
    attributes = stanza.get("attributes", {})
    values: dict[str, Any] = {"stanza": stanza["name"]}
    kind = stanza["name"]
    lang = attributes.get("xml:lang")
    if attributes.get("type") == "error":
        # An error answers one stanza (RFC 6120 §8.3): its condition, type and text are compared.
        values["type"] = "error"
        for child in _x_children(stanza):
            if child["name"] == "error":
                _put(values, "error.type", child.get("attributes", {}).get("type"))
                for item in _x_children(child):
                    if item["name"] == "text":
                        _put(values, "error.text", _x_text(item))
                    else:
                        _put(values, "error.condition", item["name"])
        return Fields(values)
    _put(values, "from", attributes.get("from"))
    _put(values, "type", attributes.get("type"))
    if kind == "message" or attributes.get("type") in ("subscribe", "unsubscribe", "probe", "subscribed",
                                                         "unsubscribed"):
        _put(values, "to", attributes.get("to"))
    if kind == "message":
        _put(values, "id", attributes.get("id"))
    for name, value in attributes.items():
        if name not in ("from", "to", "type", "id", "xml:lang"):
            _put(values, f"attribute.{name}", value)
    texts: dict[str, list[Any]] = {}
    others: list[str] = []
    for child in _x_children(stanza):
        name, namespace = child["name"], child.get("namespace")
        child_lang = child.get("attributes", {}).get("xml:lang") or lang
        if namespace in NS_X_CLIENT and name in ("body", "subject", "status"):
            texts.setdefault(name, []).append((child_lang, _x_text(child)))
        elif namespace in NS_X_CLIENT and name == "thread":
            texts.setdefault("thread", []).append((child.get("attributes", {}).get("parent"), _x_text(child)))
        elif namespace in NS_X_CLIENT and name == "show":
            _put(values, "show", _x_text(child).strip())
        elif namespace in NS_X_CLIENT and name == "priority":
            priority = _x_text(child).strip()
            if priority not in ("0", "+0", "-0"):
                _put(values, "priority", priority)
        elif namespace == "http://jabber.org/protocol/chatstates":
            _put(values, "chat-state", name)
        elif namespace == "urn:xmpp:receipts":
            _put(values, f"receipt.{name}", child.get("attributes", {}).get("id") or "yes")
        elif namespace == "urn:xmpp:sid:0" and name == "origin-id":
            _put(values, "origin-id", child.get("attributes", {}).get("id"))
        elif namespace == "urn:xmpp:sid:0" and name == "stanza-id":
            texts.setdefault("stanza-id", []).append(
                (child.get("attributes", {}).get("by"), child.get("attributes", {}).get("id")))
        elif namespace == "urn:xmpp:delay" and name == "delay":
            attrs_ = child.get("attributes", {})
            stamp = attrs_.get("stamp", "")
            try:
                from cpimgw.cpim.message import parse_date_time

                stamp = _instant(parse_date_time(stamp.strip()))
            except ValueError:
                pass
            _put(values, "delay", (stamp, attrs_.get("from"), _x_text(child)))
        elif namespace == "http://jabber.org/protocol/xhtml-im" and name == "html":
            _put(values, "xhtml-im", _x_canonical(child))
        elif namespace == NS_X_GATEWAY and name in ("cpim", "pidf"):
            continue  # excluded: see XMPP_PROFILE.excluded
        else:
            others.append(_x_canonical(child))
    for name, items in texts.items():
        values[name] = tuple(sorted(items, key=repr))
    _put(values, "elements", tuple(sorted(others)))
    return Fields(values)


def xmpp_strip_private(data: bytes) -> bytes:
    """The stanza without the gateway's own ``urn:x-cpimgw:xmpp`` elements, as any other XMPP software
    returns it (it does not know them; RFC 6120 §8.4 lets it ignore them)."""
    from cpimgw.adapters.xmpp.codec import read_stanza

    stanza = read_stanza(data)
    kept = [child for child in stanza.children
            if not (getattr(child, "uri", None) == NS_X_GATEWAY and getattr(child, "name", None) in ("cpim", "pidf"))]
    if len(kept) == len(stanza.children):
        return data
    stanza.children = kept
    return stanza.toXml().encode("utf-8")


def _rules_without_place() -> dict[str, str]:
    from cpimgw.adapters.xmpp.rules import MESSAGE_RULES, PRESENCE_RULES

    return {rule.field: f"{rule.spec}: {rule.note}" for rule in MESSAGE_RULES + PRESENCE_RULES if rule.place is None}


def xmpp_split(data: bytes) -> list[bytes]:
    """The stanzas the XMPP codec wrote (one per line start: text cannot hold a raw ``<``)."""
    return [part for part in re.split(rb"\n(?=<(?:message|presence|iq)[\s>/])", data) if part.strip()]


XMPP_PROFILE = Profile(
    name="xmpp",
    fields=xmpp_fields,
    excluded={
        "presence id": "the id of a broadcast presence tracks errors on one hop (RFC 6120 §8.1.3); "
                       "the gateway answers them itself and a PIDF document has no stanza id",
        "to of an available/unavailable presence": "a broadcast: the server addresses one copy to each contact, "
                       "the gateway publishes it once and addresses one copy to each watcher "
                       "(RFC 3922 §5.1, RFC 6121 §4.4); the to of a subscription request is compared",
        "id of a subscription request": "pairs the request with its error on one hop (RFC 6120 §8.1.3); a "
                                        "SUBSCRIBE or PRIM SUBSCRIBE has its own transaction",
        "from, to and id of an error": "an error answers one stanza: its addresses and id are that stanza's, "
                                       "swapped (RFC 6120 §8.3.1), as a SIP or PRIM response belongs to its "
                                       "transaction (RFC 3261 §8.2.6, draft-ietf-prim-server-00 §4)",
        "the stanza kind of an error": "a message, presence or iq error says the same failure (RFC 6120 §8.3); "
                                       "an error the gateway writes for a response is a message error",
        "order of children": "XMPP gives sibling order no meaning across body/subject/thread/extensions; "
                             "Message/CPIM headers and PIDF have their own fixed order",
        "inherited xml:lang": "a child's language is compared as its effective language, the stanza's own "
                              "xml:lang being the default of its children (RFC 6120 §8.1.5)",
        "<priority>0</priority>": "0 is the default priority (RFC 6121 §4.7.2.3)",
        "<cpim xmlns='urn:x-cpimgw:xmpp'/>": "the gateway's own carriage of the Message/CPIM object, read back by "
                                             "the gateway; not user content",
        "<pidf xmlns='urn:x-cpimgw:xmpp'/>": "the gateway's own carriage of the PIDF document and its notify/publish "
                                             "operation, read back by the gateway; not user content",
    },
    generated={
        "id": "a message without an id gets one on the way back (the TransID): RFC 6120 §8.1.3 "
              "lets any entity stamp one",
        "origin-id": "a message that crossed SIP or PRIM has an identity there (Call-ID;CSeq, Message-ID); the "
                     "gateway originates the stanza that brings it back and names it (XEP-0359 §3)",
        "delay": "a presence that crossed SIP or PRIM carries the PIDF <timestamp> the gateway gave it when it "
                 "arrived (RFC 3863 §4.1.7), a message that crossed PRIM the Date its SEND must carry "
                 "(draft-ietf-prim-server-00 §5): they come back as XEP-0203 <delay/>",
    },
    split=xmpp_split,
    carries=frozenset(),
    strip_private=xmpp_strip_private,
    no_place=lambda: _rules_without_place(),
)


# --------------------------------------------------------------------------- SIP


def _sip_uri(uri: str | None) -> str | None:
    """A SIP URI reduced to what CPIM maps: scheme, user@host and the ``gr`` instance (RFC 7247 §5)."""
    if not uri:
        return None
    uri = uri.strip().strip("<>")
    head, *params = uri.split(";")
    scheme, _, rest = head.partition(":")
    rest = rest.split("?", 1)[0]
    user, at, host = rest.rpartition("@")
    user = unquote(user)  # escaped and unescaped characters are the same user (RFC 3261 §19.1.4)
    host = host.split(":", 1)[0].lower()  # the port is transport
    text = f"{scheme.lower()}:{user}{at}{host}"
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "gr":
            text += f";gr={value}"
    return text


SIP_HOP_HEADERS = {
    "via": "the path of one request (RFC 3261 §8.1.1.7, §20.42); each hop writes its own",
    "call-id": "identifies one dialog or transaction between two user agents (RFC 3261 §8.1.1.4); the gateway is "
               "a B2BUA (RFC 7247 §5) and opens its own",
    "cseq": "orders the requests of one dialog (RFC 3261 §8.1.1.5)",
    "max-forwards": "decremented at every hop (RFC 3261 §8.1.1.6, RFC 3860 §4.1 MaxForwards)",
    "content-length": "framing of this octet stream (RFC 3261 §20.14)",
    "contact": "where this user agent takes in-dialog requests (RFC 3261 §8.1.1.8): dialog state",
    "route": "the path of one request", "record-route": "the path of one dialog",
    "user-agent": "names the software of the last hop (the gateway is a B2BUA)",
    "allow": "the methods the last hop accepts", "supported": "extensions of the last hop",
    "accept": "what the last hop accepts", "allow-events": "what the last hop accepts",
    "authorization": "credentials for one hop (RFC 3261 §22)",
    "proxy-authorization": "credentials for one hop (RFC 3261 §22)",
    "sip-if-match": "the entity-tag the ESC gave one publication (RFC 3903 §4.1): hop-local",
    "sip-etag": "the entity-tag the ESC gave one publication (RFC 3903 §4.1): hop-local",
    "from tag / to tag": "dialog identifiers (RFC 3261 §19.3)",
    "request-uri of a NOTIFY": "the subscriber's Contact, the remote target of the dialog (RFC 6665 §4.1.3)",
    "date of a NOTIFY/PUBLISH": "the time of this request on this hop; the presence time travels in the PIDF "
                                "<timestamp> (RFC 3863 §4.1.7)",
    "Content-Type parameters of a PIDF body": "the XML declaration carries the encoding (RFC 3023 §3.2)",
    "URI parameters other than gr (transport, lr, maddr, user...)": "they say how to reach a URI, not whose it is "
        "(RFC 3261 §19.1.1, §19.1.4: compared URIs ignore them unless both have them); gr names the instance "
        "(RFC 5627 §4.2) and is compared",
    "From/To header parameters": "tag is dialog state (RFC 3261 §19.3); no other From/To parameter is defined "
                                 "for a user address (RFC 3261 §20.20, §20.39)",
}
_SIP_ADDRESSING = {"from", "to", "content-type", "event"}
#: The headers each method's fields read natively; any other header is compared as it is (``header.*``).
_SIP_NATIVE_BY_METHOD = {
    "MESSAGE": _SIP_ADDRESSING | {"subject", "content-language", "date"},
    "SUBSCRIBE": _SIP_ADDRESSING | {"expires"},
    "PUBLISH": _SIP_ADDRESSING | {"expires", "date"},
    "NOTIFY": _SIP_ADDRESSING | {"subscription-state", "date"},
}


def _headers_by_name(parsed: dict[str, Any]) -> tuple[dict[str, list[str]], Callable[[str], str | None]]:
    """The headers of a parsed SIP or PRIM request by lower-case name, and a first-value lookup."""
    headers: dict[str, list[str]] = {}
    for name, value in parsed["headers"]:
        headers.setdefault(name.lower(), []).append(value)

    def first(name: str) -> str | None:
        return headers.get(name, [None])[0]

    return headers, first


def sip_fields(data: bytes, codec: Any) -> Fields:
    """The fields of one SIP request (RFC 3261, RFC 3428 MESSAGE, RFC 3903 PUBLISH, RFC 6665 NOTIFY)."""
    parsed = codec.parse(data)
    values: dict[str, Any] = {}
    carried: set[str] = set()
    if parsed.get("kind") != "request":
        values["status"] = parsed.get("status")
        return Fields(values)
    method = parsed["method"]
    values["method"] = method
    headers, first = _headers_by_name(parsed)

    if method != "NOTIFY":
        _put(values, "request-uri", _sip_uri(parsed.get("uri")))
    for key in ("from", "to"):
        address = parsed.get(key) or {}
        _put(values, key, _sip_uri(address.get("uri")))
        _put(values, f"{key}.display", address.get("display"))
    _put(values, "event", first("event"))
    media = _media(first("content-type"))
    body = parsed.get("body", {})
    octets = body["text"].encode("utf-8") if "text" in body else base64.b64decode(body.get("base64", ""))
    if method == "MESSAGE":
        if media == MEDIA_CPIM:
            # SIP.* extension headers stand for the SIP headers of the request: compared as those (header.*).
            cpim_fields(octets, values, carried, own_namespaces=(NS_X_SIP,))
        else:
            language = first("content-language")
            subject = first("subject")
            if subject is not None:
                values["subject"] = ((language, subject),)  # RFC 7572 §4: the subject is in the message's language
            _put(values, "content.type", _content_type(first("content-type")) or "text/plain")
            _put(values, "content.language", language)
            _put(values, "body", _text_or_b64(octets))
        if first("date") and "datetime" not in values:
            values["datetime"] = _rfc1123(first("date"))
        if "from.display" not in values and values.get("cpim.from", (None,))[0]:
            # In a message/cpim body the sender's display name is in the CPIM From (RFC 3862 §4.1).
            values["from.display"] = values["cpim.from"][0]
            carried.add("from.display")
    else:
        state = first("subscription-state")
        if state is not None:
            head, _, params = state.partition(";")
            values["sub.state"] = head.strip().lower()
            for param in params.split(";"):
                key, _, value = param.partition("=")
                if key.strip().lower() in ("expires", "reason"):
                    _put(values, f"sub.{key.strip().lower()}", value.strip().lower())
        if method in ("PUBLISH", "SUBSCRIBE"):
            _put(values, "expires", first("expires"))
        if octets:
            _put(values, "content.type", media)
            if media == MEDIA_PIDF:
                pidf_fields(octets, values, carried)
            else:
                _put(values, "body", _text_or_b64(octets))
    native = _SIP_NATIVE_BY_METHOD.get(method, _SIP_ADDRESSING)
    for name, items in headers.items():
        if name in native or name in SIP_HOP_HEADERS:
            continue
        values[f"header.{name}"] = tuple(items)
    return Fields(values, frozenset(carried))


SIP_PROFILE = Profile(
    name="sip",
    fields=sip_fields,
    excluded=SIP_HOP_HEADERS,
    generated={
        "expires": "a PUBLISH without Expires has the default lifetime, 3600 s (RFC 3903 §5.3)",
        "cpim.from": "a body sent as message/cpim names the native From in its From header (RFC 3862 §4.1)",
        "cpim.to": "a body sent as message/cpim names the native To in its To header (RFC 3862 §4.2)",
        "cpim.ext.xmpp": "a message that crossed XMPP names the stanza it was there (its full JIDs, type, id) in the "
                         "XMPP adapter's own extension headers, which a recipient ignores (RFC 3862 §3.4, §6)",
    },
    carries=frozenset({MEDIA_CPIM, MEDIA_PIDF}),
)


# --------------------------------------------------------------------------- PRIM


PRIM_NS = "http://www.fujitsulabs.com/prim/"
PRIM_HOP_HEADERS = {
    "request id": "pairs a request with its response on one connection (draft-ietf-prim-server-00 §4)",
    "version": "negotiated per connection (server-00 §4, RFC 2145 rules)",
    "x-max-forwards": "MaxForwards, decremented at every hop (RFC 3860 §4.1); PRIM has no field for it, gateways "
                      "pass it in this extension header",
    "astrength": "the weakest authentication strength of the relay path so far (-01 §15.4): per hop",
    "subscription-id": "identifies the subscription on one network; SIP names it by its dialog, XMPP by the JID "
                       "pair, and the gateway's subscription table maps one leg to the other (RFC 3859 §4.4)",
    "date of a NOTIFY/PUBLISH": "the time of this command on this hop; the presence time travels in the PIDF "
                                "<timestamp> (RFC 3863 §4.1.7)",
    "Content-Type parameters of a PIDF body": "the XML declaration carries the encoding (RFC 3023 §3.2)",
    "the media type of a NOTIFY/PUBLISH body": "the document is compared as the PIDF it is (RFC 3863 §4): "
                                               "application/pidf+xml, the draft's application/cpim-pidf+xml and "
                                               "the legacy application/presence say one presence",
    "date of a SUBSCRIBE/FETCH": "the time of this command on this hop (draft-ietf-prim-server-00 §5); a "
                                 "subscription has its Duration, compared",
}
_PRIM_NATIVE = {"from", "to", "message-id", "conversation-id", "reply-to", "date", "content-type", "duration",
                "tuple-id", "pi-type"}


def prim_fields(data: bytes, codec: Any) -> Fields:
    """The fields of one PRIM command (draft-ietf-prim-server-00, draft-mazzoldi-prim-impp-01/-02)."""
    parsed = codec.parse(data)
    values: dict[str, Any] = {}
    carried: set[str] = set()
    if parsed.get("kind") != "request":
        values["code"] = parsed.get("code")
        return Fields(values)
    method = parsed["method"]
    values["method"] = method
    headers, first = _headers_by_name(parsed)

    body = parsed["body"].encode("utf-8") if "body" in parsed else base64.b64decode(parsed.get("body_base64", ""))
    scheme = "im:" if method == "SEND" else "pres:"
    for key in ("from", "to"):
        value = first(key)
        if value is not None and ":" not in value.split("@", 1)[0]:
            value = scheme + value  # -02: ids without their scheme
        _put(values, key, value)
    media = _media(first("content-type"))
    if method == "SEND":
        own: dict[str, str] = {}
        if media == MEDIA_CPIM:
            cpim_fields(body, values, carried, own_namespaces=(PRIM_NS,))
            own = own_extensions(body, PRIM_NS)
        else:
            _put(values, "content.type", _content_type(first("content-type")))
            _put(values, "body", _text_or_b64(body))
        for name in ("Message-ID", "Conversation-ID", "Reply-To"):
            _put(values, name.lower(), first(name.lower()) or own.get(name))
        if "datetime" not in values and first("date"):
            values["datetime"] = _rfc1123(first("date"))
    else:
        duration = first("duration")
        if method in ("NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE"):
            _put(values, "duration", duration)
            _put(values, "instance", first("x-from-instance"))
        elif method == "FETCH":
            _put(values, "instance", first("x-from-instance"))
        else:
            _put(values, "tuple-id", first("tuple-id"))
            pi_type = first("pi-type") or "permanent"
            _put(values, "pi-type", pi_type)
            if pi_type in ("leased", "renew"):
                _put(values, "duration", duration)
        if body:
            if media in (MEDIA_PIDF, "application/cpim-pidf+xml"):
                pidf_fields(body, values, carried)
            else:
                # Legacy application/presence (or message/cpim around PIDF): what CPIM expresses of it
                # is the PIDF the codec makes of it (RFC 3863 §4).
                operation = codec.to_operation(data)
                presence = getattr(operation, "presence", None)
                if presence is not None and presence.media_type == MEDIA_PIDF:
                    pidf_fields(presence.body, values, carried)
                else:
                    _put(values, "body", _text_or_b64(body))
    for name, items in headers.items():
        if name in _PRIM_NATIVE or name in PRIM_HOP_HEADERS or name == "subscription-id":
            continue
        values[f"header.{name}"] = tuple(items)
    return Fields(values, frozenset(carried))


PRIM_PROFILE = Profile(
    name="prim",
    fields=prim_fields,
    excluded=PRIM_HOP_HEADERS,
    generated={
        "message-id": "SEND needs a Message-ID (-01 §15.8): the gateway makes one when the message had none",
        "conversation-id": "SEND needs a Conversation-ID (-01 §15.9): the gateway makes one when the message "
                           "had none",
        "datetime": "SEND carries a Date (server-00 §5): the gateway stamps the time of sending when the "
                    "message had none",
        "cpim.from": "a body sent as message/cpim names the native From (RFC 3862 §4.1, -01 §17.2)",
        "cpim.to": "a body sent as message/cpim names the native To (RFC 3862 §4.2, -01 §17.2)",
        "cpim.ext.xmpp": "a message that crossed XMPP names the stanza it was there (its full JIDs, type, id) in the "
                         "XMPP adapter's own extension headers, which a recipient ignores (RFC 3862 §3.4, §6)",
        "tuple-id": "PUBLISH names the tuple it updates: the gateway names one when the publication had none",
    },
    carries=frozenset({MEDIA_CPIM, MEDIA_PIDF}),
)


# --------------------------------------------------------------------------- generic


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = _canonical_json(value)
    else:
        _put(out, prefix, value)


def generic_fields(data: bytes, codec: Any) -> Fields:
    """A protocol without a profile: its whole ``parse()`` JSON, flattened."""
    values: dict[str, Any] = {}
    _flatten(codec.parse(data), "", values)
    return Fields(values)


PROFILES: dict[str, Profile] = {p.name: p for p in (XMPP_PROFILE, SIP_PROFILE, PRIM_PROFILE)}


def profile_for(codec: Any) -> Profile:
    """The codec's own ``fidelity_profile``, else a built-in one, else the generic one."""
    own = getattr(codec, "fidelity_profile", None)
    if isinstance(own, Profile):
        return own
    return PROFILES.get(codec.name) or Profile(name=codec.name, fields=generic_fields)


# --------------------------------------------------------------------------- corpora


def _check_units(protocol: str, units: Iterable[Any], max_units: int) -> tuple[Unit, ...]:
    found = []
    for item in units:
        if isinstance(item, Unit):
            found.append(item)
        else:
            name, data = item
            found.append(Unit(protocol, str(name), bytes(data)))
        if len(found) > max_units:
            raise CPIMGWError(f"the {protocol} corpus holds more than {max_units} units")
    return tuple(found)


def load_corpus(
    protocol: str,
    directory: str | None = None,
    codec: Any = None,
    *,
    max_units: int = DEFAULT_MAX_UNITS,
    max_unit_size: int = DEFAULT_MAX_UNIT_SIZE,
) -> tuple[Unit, ...]:
    """The corpus of ``protocol``.

    ``directory``: every regular file in ``directory/protocol/`` (sorted by
    name; one unit each, octets as they are).  Else the codec's
    ``corpus()``, else the module ``cpimgw.fidelity_corpus.<protocol>``'s
    ``UNITS`` (``(name, octets)`` pairs); else no units.
    """
    if directory is not None:
        folder = os.path.join(directory, protocol)
        if not os.path.isdir(folder):
            return ()
        units = []
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not os.path.isfile(path) or name.startswith("."):
                continue
            if os.path.getsize(path) > max_unit_size:
                raise CPIMGWError(f"{path}: larger than {max_unit_size} octets")
            with open(path, "rb") as handle:
                units.append((os.path.splitext(name)[0], handle.read()))
        return _check_units(protocol, units, max_units)
    corpus = getattr(codec, "corpus", None)
    if callable(corpus):
        return _check_units(protocol, corpus(), max_units)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", protocol):
        return ()
    try:
        module = importlib.import_module(f"cpimgw.fidelity_corpus.{protocol}")
    except ModuleNotFoundError:
        return ()
    return _check_units(protocol, getattr(module, "UNITS", ()), max_units)


# --------------------------------------------------------------------------- the engine


def _describe(error: BaseException) -> str:
    describe = getattr(error, "describe", None)
    text = describe() if callable(describe) else (str(error) or type(error).__name__)
    return f"{type(error).__name__}: " + " ".join(str(text).split())


def _merge(parts: Sequence[Fields]) -> Fields:
    """Several returned units (one per XMPP presence) read as one: the union of their fields."""
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, list[Any]] = {}
    for part in parts:
        for key, value in part.values.items():
            if value not in merged.setdefault(key, []):
                merged[key].append(value)
    values = {key: (items[0] if len(items) == 1 else ("several values:",) + tuple(sorted(items, key=repr)))
              for key, items in merged.items()}
    carried = frozenset().union(*(part.carried for part in parts))
    return Fields(values, carried)


def _is_record(value: Any) -> bool:
    """A :func:`_norm` form of a model value: ``(TypeName, (field, value), ...)``."""
    return (isinstance(value, tuple) and len(value) > 1 and isinstance(value[0], str) and value[0][:1].isupper()
            and all(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) for item in value[1:]))


_SCHEME = re.compile(r"^(?:sips?|im|pres|xmpp):", re.IGNORECASE)


def _leaves(value: Any) -> list[str]:
    if _is_record(value):
        return [leaf for _, item in value[1:] for leaf in _leaves(item)]  # the values, not the field names
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in _leaves(item)]
    if isinstance(value, Mapping):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if value is None or isinstance(value, bool):
        return []
    text = str(value)
    if text.startswith("{"):
        try:
            return _leaves(json.loads(text))  # an element in its canonical JSON form: its texts and attributes
        except ValueError:
            pass
    text = _SCHEME.sub("", text.strip())  # an address is held whatever scheme the far protocol spells it with
    return [text] if len(text) >= 2 else []


def _carriage(original: Fields, far: Sequence[Fields]) -> dict[str, str]:
    """For each field of the original: ``native``, ``carried`` or ``absent`` in the far unit(s)."""
    native_text = []
    carried_text = []
    for part in far:
        for key, value in part.values.items():
            (carried_text if key in part.carried else native_text).extend(_leaves(value))
    # XEP-0106 escapes a foreign address in a JID's localpart (user\\40domain): read it unescaped.
    native_blob = "\x00".join(native_text).lower().replace("\\40", "@")
    carried_blob = "\x00".join(carried_text).lower().replace("\\40", "@")
    out = {}
    for key, value in original.values.items():
        if key in _STRUCTURAL:
            continue
        leaves = [leaf.lower() for leaf in _leaves(value)]
        if all(leaf in native_blob for leaf in leaves):
            out[key] = "native"
        elif all(leaf in native_blob or leaf in carried_blob for leaf in leaves):
            out[key] = "carried"
        else:
            out[key] = "absent"
    return out


#: Fields that say what kind of unit it is, not a value it carries: not counted in the one-way coverage.
_STRUCTURAL = frozenset({"method", "stanza", "request-uri"})


@attrs.frozen
class Trip:
    """The outcome of one unit on one path."""

    equal: bool
    losses: tuple[Loss, ...]
    carriage: Mapping[str, str]
    #: The original's fields, and how many of them came back unchanged.
    compared: int = 0
    kept: int = 0


def round_trip(unit: Unit, codec_a: Any, profile_a: Profile, far: str, codec_b: Any, profile_b: Profile, *,
               native: bool = True) -> Trip:
    """Send one unit of A through B and back; compare the original and the returned unit.

    ``native``: the far units are stripped of every private carriage
    (:attr:`Profile.strip_private`) before they are parsed again, as a
    third-party peer of B would return them.
    """

    def lost(field: str, original: Any, returned: Any, reason: str) -> Loss:
        return Loss(unit.protocol, far, unit.name, field, original, returned, reason)

    try:
        original = profile_a.fields(unit.data, codec_a)
    except (CPIMGWError, ValueError, KeyError, TypeError, UnicodeError) as error:
        return Trip(False, (lost("*", None, None, f"the unit itself does not parse: {_describe(error)}"),), {})
    stage = f"{unit.protocol}.to_operation"
    try:
        operation = codec_a.to_operation(unit.data)
        stage = f"{far}.from_operation"
        far_octets = codec_b.from_operation(operation)
        far_units = profile_b.split(bytes(far_octets))
        if native:
            far_units = [profile_b.strip_private(octets) for octets in far_units]
        if not far_units:
            return Trip(False, (lost("*", type(operation).__name__, None,
                                     f"{far} has no unit for this {type(operation).__name__.lower()}"),), {})
        stage = f"{far} fields"
        far_fields = [profile_b.fields(octets, codec_b) for octets in far_units]
        returned_parts = []
        for octets in far_units:
            stage = f"{far}.to_operation"
            back_operation = codec_b.to_operation(octets)
            stage = f"{unit.protocol}.from_operation"
            back = codec_a.from_operation(back_operation)
            stage = f"{unit.protocol} fields of the returned unit"
            returned_parts.extend(profile_a.fields(part, codec_a) for part in profile_a.split(bytes(back)))
    except (CPIMGWError, ValueError, KeyError, TypeError, UnicodeError, AttributeError) as error:
        return Trip(False, (lost("*", None, None, f"failed at {stage}: {_describe(error)}"),), {})
    returned = _merge(returned_parts)
    carriage = _carriage(original, far_fields)
    losses = []
    for key, value in original.values.items():
        if key not in returned.values:
            where = carriage.get(key, "absent")
            why = (f"no place in {far}" if where == "absent"
                   else f"reached {far} ({where}) but did not come back")
            losses.append(lost(key, value, None, why))
        elif returned.values[key] != value:
            losses.append(lost(key, value, returned.values[key], f"changed on the way through {far}"))
    for key, value in returned.values.items():
        if key not in original.values and key not in profile_a.generated:
            losses.append(lost(key, None, value, f"appeared on the way through {far}"))
    lost_fields = {loss.field for loss in losses if loss.field in original.values}
    compared = len(original.values)
    return Trip(not losses, tuple(losses), carriage, compared, compared - len(lost_fields))


def corpus_settings(protocol: str) -> Mapping[str, Any] | None:
    """The adapter settings a shipped corpus is written for (its module's ``SETTINGS``), if any."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", protocol):
        return None
    try:
        module = importlib.import_module(f"cpimgw.fidelity_corpus.{protocol}")
    except ModuleNotFoundError:
        return None
    return getattr(module, "SETTINGS", None)


def configured(name: str, codec: Any, settings: Mapping[str, Any] | None = None) -> Any:
    """The codec as an adapter with ``settings`` (default: its corpus's) maps, when it can be configured
    (``for_settings``), else the codec itself."""
    settings = settings if settings is not None else corpus_settings(name)
    for_settings = getattr(codec, "for_settings", None)
    return for_settings(settings) if settings is not None and callable(for_settings) else codec


def with_carriage(codec: Any) -> Any:
    """The codec as it writes towards another cpimgw (its ``with_private_carriage()``), else itself."""
    variant = getattr(codec, "with_private_carriage", None)
    return variant() if callable(variant) else codec


def run_matrix(
    codecs: Mapping[str, Any],
    corpora: Mapping[str, Sequence[Unit]],
    *,
    protocols: Sequence[str] | None = None,
    native: bool = True,
) -> Matrix:
    """Every unit of every protocol through every other protocol and back.

    ``native`` (the headline): private carriage off and stripped, as a
    third-party peer would return the far units; else the codecs write their
    private carriage as towards another cpimgw (:func:`with_carriage`).
    """
    names = tuple(protocols) if protocols is not None else tuple(sorted(corpora))
    profiles = {name: profile_for(codecs[name]) for name in names}
    codecs = {name: configured(name, codecs[name]) for name in names}
    if not native:
        codecs = {name: with_carriage(codec) for name, codec in codecs.items()}
    cells: dict[tuple[str, str], Cell] = {}
    for source in names:
        for far in names:
            if far == source:
                continue
            losses: list[Loss] = []
            counts: dict[tuple[str, str], int] = {}
            equal = 0
            fields = kept = 0
            units = corpora.get(source, ())
            for unit in units:
                trip = round_trip(unit, codecs[source], profiles[source], far, codecs[far], profiles[far],
                                  native=native)
                equal += trip.equal
                if trip.compared:
                    fields += trip.compared
                    kept += trip.kept
                else:  # the unit did not make the trip: none of its fields was held
                    try:
                        fields += len(profiles[source].fields(unit.data, codecs[source]).values)
                    except (CPIMGWError, ValueError, KeyError, TypeError, UnicodeError):
                        pass
                losses.extend(trip.losses)
                for key, where in trip.carriage.items():
                    if where != "native":
                        counts[(key, where)] = counts.get((key, where), 0) + 1
            carriage = tuple(Carriage(source, far, key, where, n) for (key, where), n in sorted(counts.items()))
            full = {MEDIA_CPIM, MEDIA_PIDF} <= profiles[far].carries
            cells[(source, far)] = Cell(source, far, len(units), equal, tuple(losses), carriage, full, fields, kept)
    return Matrix(names, cells, profiles, native)


# --------------------------------------------------------------------------- output


def _short(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _table(matrix: Matrix, title: str, mark_full: bool) -> list[str]:
    names = matrix.protocols
    width = max([len("source \\ far")] + [len(n) for n in names])
    column = 18
    lines = [title, ""]
    lines.append("source \\ far".ljust(width) + "".join(n.rjust(column) for n in names))
    for source in names:
        row = source.ljust(width)
        for far in names:
            if far == source:
                row += "-".rjust(column)
                continue
            cell = matrix.cell(source, far)
            mark = "*" if mark_full and cell.must_be_full else ""
            row += f"{cell.equal}/{cell.total} {cell.percent:5.1f}%{mark}".rjust(column)
        lines.append(row)
    return lines


def coverage(cell: Cell) -> tuple[int, int]:
    """``(fields the far unit held, fields)`` over the cell's units: one-way coverage.

    In the native matrix the far unit is what a third-party peer returns
    (serialised, re-parsed, private carriage stripped), so a field of the
    original that came back unchanged was held by the far unit in a
    standard place -- its own fields, or the Message/CPIM object or PIDF
    document it carries as its standard body (RFC 3862, RFC 3863).
    """
    return cell.kept, cell.fields


def format_matrix(matrix: Matrix, *, verbose: bool = False, carriage: Matrix | None = None) -> str:
    """The native matrix (rows: source, columns: far protocol), the carriage matrix when given, the one-way
    coverage of each path, every field that did not survive, and what is not compared and why."""
    names = matrix.protocols
    lines = _table(matrix, "round trip source -> far -> source, native (no private carriage; far units as "
                           "bytes, re-parsed as a third-party peer returns them): units equal in every field "
                           "CPIM can express", True)
    lines.append("")
    lines.append("* the far protocol carries Message/CPIM and PIDF as they are: must be 100%")
    if carriage is not None:
        lines.append("")
        lines.extend(_table(carriage, "the same between two cpimgw gateways (private carriage negotiated, "
                                      "XEP-0030):", False))
    lines.append("")
    lines.append("one way source -> far: share of the source's fields the far unit holds in a standard place "
                 "(came back unchanged with no private carriage)")
    for source in names:
        parts = []
        for far in names:
            if far == source:
                continue
            native, total = coverage(matrix.cell(source, far))
            share = 100.0 * native / total if total else 100.0
            parts.append(f"-> {far} {native}/{total} {share:5.1f}%")
        lines.append(f"  {source.ljust(6)} " + "   ".join(parts))
    losses = matrix.losses
    lines.append("")
    if not losses:
        lines.append("no field was lost")
    else:
        lines.append(f"fields that did not survive ({len(losses)}):")
        for loss in losses:
            lines.append(f"  {loss.source} -> {loss.far} -> {loss.source}  {loss.unit}  {loss.field}: {loss.reason}")
            if verbose:
                lines.append(f"      sent:     {_short(loss.original, 160)}")
                lines.append(f"      returned: {_short(loss.returned, 160)}")
    if losses:
        fars = sorted({loss.far for loss in losses})
        for far in fars:
            profile = matrix.profiles.get(far)
            reasons = profile.no_place() if profile is not None else {}
            if reasons:
                lines.append("")
                lines.append(f"what {far} has no standard place for, and why:")
                lines.extend(f"  {what}: {why}" for what, why in reasons.items())
    if carriage is not None and carriage.losses:
        lines.append("")
        lines.append(f"with the private carriage, fields that did not survive ({len(carriage.losses)}):")
        for loss in carriage.losses:
            lines.append(f"  {loss.source} -> {loss.far} -> {loss.source}  {loss.unit}  {loss.field}: {loss.reason}")
    if verbose:
        lines.append("")
        lines.append("one way (by value: approximate where the two protocols spell addresses differently): "
                     "fields with no native place in the far protocol")
        for source in names:
            for far in names:
                if far == source:
                    continue
                cell = matrix.cell(source, far)
                carried = [f"{c.field} ({c.units})" for c in cell.carriage if c.where == "carried"]
                absent = [f"{c.field} ({c.units})" for c in cell.carriage if c.where == "absent"]
                lines.append(f"  {source} -> {far}:")
                lines.append("    only inside the carried Message/CPIM or PIDF: " + (", ".join(carried) or "none"))
                lines.append("    not found in the far unit: " + (", ".join(absent) or "none"))
    lines.append("")
    lines.append("not compared, and why:")
    for name in names:
        profile = matrix.profiles.get(name)
        if profile is None:
            continue
        for what, why in profile.excluded.items():
            lines.append(f"  {name}: {what}: {why}")
        for what, why in profile.generated.items():
            lines.append(f"  {name}: {what} (may be added when absent): {why}")
    return "\n".join(lines) + "\n"

