"""PIDF presence documents (RFC 3863) with RPID (RFC 4480) and the data model (RFC 4479).

What it is for: every presence state that crosses the gateway is, on the bus,
an ``application/pidf+xml`` document.  This module parses such documents
(from SIP NOTIFY/PUBLISH bodies, PRIM NOTIFY bodies, CPIM notify content)
into immutable values, and generates them (from XMPP presence, PRIM tuples)
with the builders below.

Rules followed (protocols.md §5, RFC 3863 §4, RFC 4480 §3, RFC 4479 §3,
RFC 3922 §5, RFC 7248 §8):

- parsing is namespace aware and order tolerant; output is in schema order
  (``status``, extensions, ``contact``, ``note``, ``timestamp`` in a tuple;
  tuples, notes, persons, devices, extensions in the document) with stable
  prefixes (PIDF as the default namespace, ``dm``, ``rpid``, ``lt``, ``im``);
- elements we do not model are not interpreted but kept verbatim
  (:class:`Extension`) and put back at the same position among their
  siblings, so that nothing is lost (RFC 3863 §4.1.8 ignore rule);
- ``mustUnderstand`` (RFC 3863 §4.1.8): an element that carries
  ``impp:mustUnderstand="true"`` or ``"1"`` and that we do not understand
  makes its whole enclosing extension element ignored for interpretation; it
  is still kept for relaying and listed in :attr:`PresenceDocument.ignored`;
- validation: ``entity`` is a required absolute URI (``pres:`` preferred);
  tuple ids are required, unique NCNames (``xs:ID``); ``status`` is required
  with at least one child; ``basic`` is ``open`` or ``closed``; a contact
  ``priority`` outside the qvalue grammar is ignored (RFC 3863 §4.1.5
  SHOULD); timestamps follow RFC 3339 with upper-case ``T`` and ``Z``
  (§4.1.7).  Violations raise :class:`PresenceDocumentError` with the line;
- :attr:`PresenceDocument.raw` keeps the octets received so that a relay
  passes them untouched (RFC 3859 §3.1); :meth:`PresenceDocument.to_bytes`
  regenerates a document from the model;
- the XMPP ``<show xmlns='jabber:client'>`` status extension (RFC 7248 §5)
  and the provisional ``<im:im>`` of RFC 3922 are modelled
  (:attr:`Status.xmpp_show`, :attr:`Status.im`).

Hostile XML is stopped by :func:`cpimgw.cpim.xmlsafe.parse_xml` (no DOCTYPE,
no entity expansion, no external fetch, size/depth/element limits).  This
module imports nothing of Twisted.
"""

from __future__ import annotations

import datetime
import re
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Iterable, Iterator, Sequence

import attrs
from lxml import etree

from cpimgw.cpim.errors import PresenceDocumentError, URIError
from cpimgw.cpim.uri import CPIMURI, parse_uri
from cpimgw.cpim.xmlsafe import DEFAULT_MAX_DEPTH, DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_SIZE, parse_xml

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"
PIDF_IM_NS = "urn:ietf:params:xml:ns:pidf:im"
LOCATION_TYPE_NS = "urn:ietf:params:xml:ns:location-type"
JABBER_CLIENT_NS = "jabber:client"
XML_NS = "http://www.w3.org/XML/1998/namespace"

_LANG = f"{{{XML_NS}}}lang"
_MUST_UNDERSTAND = f"{{{PIDF_NS}}}mustUnderstand"
#: Prefixes used on output, in this order; other namespaces get ns1, ns2...
_PREFIXES = (("dm", DM_NS), ("rpid", RPID_NS), ("lt", LOCATION_TYPE_NS), ("im", PIDF_IM_NS))

_NCNAME = re.compile(r"^[^\W\d][\w.\-]*\Z")
_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+\Z")
_QVALUE = re.compile(r"^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})([Tt])(\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))\Z"
)
_THOUSANDTH = Decimal("0.001")


# --------------------------------------------------------------------------
# checks shared by the model and the parser


def _fail(reason: str, node: Any = None) -> PresenceDocumentError:
    line = getattr(node, "sourceline", None)
    return PresenceDocumentError(reason, line=line)


def check_timestamp(text: str, node: Any = None, what: str = "timestamp") -> str:
    """Return ``text`` if it is an RFC 3339 date-time with upper-case T/Z, else raise."""
    match = _DATETIME.match(text)
    if not match:
        raise _fail(f"{what} {text[:40]!r} is not an RFC 3339 date-time", node)
    if match.group(4) != "T" or match.group(9) == "z":
        raise _fail(f"{what} {text[:40]!r}: 'T' and 'Z' must be upper case (RFC 3863 §4.1.7)", node)
    year, month, day, hour, minute, second = (int(match.group(i)) for i in (1, 2, 3, 5, 6, 7))
    try:
        datetime.date(year, month, day)
    except ValueError:
        raise _fail(f"{what} {text[:40]!r} names a day that does not exist", node) from None
    zone_ok = match.group(10) is None or (int(match.group(10)) < 24 and int(match.group(11)) < 60)
    if hour > 23 or minute > 59 or second > 60 or not zone_ok:
        raise _fail(f"{what} {text[:40]!r} has a time out of range", node)
    return text


def is_ncname(text: str) -> bool:
    """Whether ``text`` can be an ``xs:ID`` (an XML NCName)."""
    return bool(_NCNAME.match(text))


def _check_id(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if not isinstance(value, str) or not is_ncname(value):
        raise PresenceDocumentError(f"{attribute.name} {value!r} is not an NCName (xs:ID)")


def _check_optional_id(instance: object, attribute: attrs.Attribute, value: str | None) -> None:  # type: ignore[type-arg]
    if value is not None:
        _check_id(instance, attribute, value)


def _check_optional_timestamp(instance: object, attribute: attrs.Attribute, value: str | None) -> None:  # type: ignore[type-arg]
    if value is not None:
        check_timestamp(value, what=attribute.name.rstrip("_"))


def _to_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _to_priority(value: Decimal | str | int | None) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        raise PresenceDocumentError("give a priority as a Decimal or a string, not a float")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise PresenceDocumentError(f"priority {value!r} is not a number") from None


def _to_entity(value: CPIMURI | str) -> CPIMURI | str:
    if isinstance(value, CPIMURI):
        return value
    if not isinstance(value, str):
        raise PresenceDocumentError("the entity must be a URI")
    text = value.strip()
    scheme = text.partition(":")[0].lower()
    if scheme in ("pres", "im"):
        try:
            return parse_uri(text)
        except URIError as error:
            raise PresenceDocumentError(f"entity {text[:60]!r}: {error.reason}") from None
    if not _ABSOLUTE_URI.match(text):
        raise PresenceDocumentError(f"entity {text[:60]!r} is not an absolute URI")
    return text


# --------------------------------------------------------------------------
# the model


def _canonical(node: etree._Element) -> bytes:
    """Exclusive C14N of ``node``, the form extensions are compared by.

    libxml2 refuses C14N for some well-formed input (a relative namespace
    URI, for one); such an element is compared by its plain serialisation.
    """
    try:
        return etree.tostring(node, method="c14n", exclusive=True, with_comments=True)
    except etree.C14NError:
        return etree.tostring(node, encoding="utf-8")


def _carries_must_understand(node: etree._Element) -> bool:
    for element in node.iter(etree.Element):
        if element.get(_MUST_UNDERSTAND, "").strip() in ("true", "1"):
            return True
    return False


@attrs.frozen
class Extension:
    """An element we do not model (or may not interpret), kept verbatim.

    :ivar namespace: its namespace URI (``None`` for none).
    :ivar name: its local name.
    :ivar xml: ``etree.tostring`` of the element with every namespace in
        scope where it was found, so that it can be put back anywhere.
    :ivar canonical: its exclusive C14N form (with comments): what equality
        compares, so that two copies that differ only in unused namespace
        declarations or prefixes are equal.
    :ivar index: its position among the element children of its parent when
        it was parsed; output puts it back there.  Not part of equality.
    :ivar must_understand: it holds a ``mustUnderstand`` element that we do
        not understand, so it was ignored for interpretation (RFC 3863
        §4.1.8).
    """

    namespace: str | None
    name: str
    xml: bytes = attrs.field(eq=False, repr=False)
    canonical: bytes = attrs.field(repr=False)
    index: int | None = attrs.field(default=None, eq=False)
    must_understand: bool = False

    @classmethod
    def from_element(
        cls, node: etree._Element, index: int | None = None, must_understand: bool | None = None
    ) -> "Extension":
        """Keep ``node`` (an lxml element) verbatim."""
        qname = etree.QName(node)
        if must_understand is None:
            must_understand = _carries_must_understand(node)
        xml = etree.tostring(node, with_tail=False)
        if None not in node.nsmap:
            # No default namespace is in scope here: say so, so that the
            # element keeps meaning the same inside a document with one.
            end = len(xml.split(b">", 1)[0].split(b"/", 1)[0].split(None, 1)[0])
            xml = xml[:end] + b' xmlns=""' + xml[end:]
        return cls(
            qname.namespace,
            qname.localname,
            xml,
            _canonical(node),
            index,
            must_understand,
        )

    @classmethod
    def from_xml(cls, xml: bytes | str, index: int | None = None) -> "Extension":
        """An extension from its serialised XML (parsed with the hardened parser)."""
        if isinstance(xml, str):
            xml = xml.encode("utf-8")
        return cls.from_element(parse_xml(xml), index)

    def element(self) -> etree._Element:
        """A fresh lxml copy of the element."""
        return parse_xml(self.xml, max_size=max(DEFAULT_MAX_SIZE, len(self.xml)))


@attrs.frozen
class Note:
    """A ``<note>`` (PIDF, ``dm:note`` or ``rpid:note``; also ``rpid:other``): text and language."""

    text: str
    lang: str | None = None


@attrs.frozen
class Contact:
    """A tuple's ``<contact>`` URI and its priority (qvalue 0..1, RFC 3863 §4.1.5)."""

    uri: str
    priority: Decimal | None = attrs.field(default=None, converter=_to_priority)

    @priority.validator
    def _check_priority(self, attribute: attrs.Attribute, value: Decimal | None) -> None:  # type: ignore[type-arg]
        if value is None:
            return
        if not value.is_finite() or value < 0 or value > 1 or value != value.quantize(_THOUSANDTH, ROUND_DOWN):
            raise PresenceDocumentError(f"priority {value} is not a qvalue (0 to 1, at most 3 decimals)")


@attrs.frozen
class Status:
    """A tuple's ``<status>``.

    :ivar basic: ``"open"``, ``"closed"`` or ``None`` (no ``<basic>``).
    :ivar xmpp_show: ``<show xmlns='jabber:client'>`` (away, chat, dnd, xa;
        RFC 7248 §5).
    :ivar im: the provisional RFC 3922 ``<im:im>`` value (away, busy...).
    :ivar extensions: other status extensions, verbatim.
    """

    basic: str | None = attrs.field(default=None)
    xmpp_show: str | None = None
    im: str | None = None
    extensions: tuple[Extension, ...] = attrs.field(default=(), converter=_to_tuple)

    @basic.validator
    def _check_basic(self, attribute: attrs.Attribute, value: str | None) -> None:  # type: ignore[type-arg]
        if value not in (None, "open", "closed"):
            raise PresenceDocumentError(f"basic must be 'open' or 'closed', not {value!r}")


@attrs.frozen
class _RPIDElement:
    """What every RFC 4480 element may carry: an ``id`` and a validity span."""

    from_: str | None = attrs.field(default=None, kw_only=True, validator=_check_optional_timestamp)
    until: str | None = attrs.field(default=None, kw_only=True, validator=_check_optional_timestamp)
    id: str | None = attrs.field(default=None, kw_only=True, validator=_check_optional_id)


@attrs.frozen
class _Enumerated(_RPIDElement):
    """An RPID element whose value is a set of empty child elements.

    :ivar values: the values, in order: RPID local names (``"away"``) or,
        for values from another namespace, Clark names
        (``"{urn:ietf:params:xml:ns:location-type}residence"``).
    :ivar other: ``<rpid:other>`` free texts.
    :ivar notes: ``<rpid:note>`` elements.
    :ivar extensions: children we do not model, verbatim.
    """

    values: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple)
    other: tuple[Note, ...] = attrs.field(default=(), converter=_to_tuple)
    notes: tuple[Note, ...] = attrs.field(default=(), converter=_to_tuple)
    extensions: tuple[Extension, ...] = attrs.field(default=(), converter=_to_tuple)

    @values.validator
    def _check_values(self, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:  # type: ignore[type-arg]
        for name in value:
            if name in ("note", "other") or not name:
                raise PresenceDocumentError(f"{name!r} is not a value: use the notes and other fields")


@attrs.frozen
class Activities(_Enumerated):
    """``<rpid:activities>`` (RFC 4480 §3.2): away, busy, meeting, on-the-phone..."""


@attrs.frozen
class Mood(_Enumerated):
    """``<rpid:mood>`` (RFC 4480 §3.4): happy, sad, angry..."""


@attrs.frozen
class Privacy(_Enumerated):
    """``<rpid:privacy>`` (RFC 4480 §3.7): audio, text, video, unknown."""


@attrs.frozen
class PlaceType(_Enumerated):
    """``<rpid:place-type>`` (RFC 4480 §3.6): values usually from RFC 4589 (``lt:``)."""


@attrs.frozen
class Relationship(_Enumerated):
    """``<rpid:relationship>`` (RFC 4480 §3.8): assistant, family, self..."""


@attrs.frozen
class ServiceClass(_Enumerated):
    """``<rpid:service-class>`` (RFC 4480 §3.9): electronic, postal, in-person..."""


@attrs.frozen
class PlaceIs(_RPIDElement):
    """``<rpid:place-is>`` (RFC 4480 §3.5): audio, video and text conditions."""

    audio: str | None = None
    video: str | None = None
    text: str | None = None
    notes: tuple[Note, ...] = attrs.field(default=(), converter=_to_tuple)
    extensions: tuple[Extension, ...] = attrs.field(default=(), converter=_to_tuple)


@attrs.frozen
class Sphere(_RPIDElement):
    """``<rpid:sphere>`` (RFC 4480 §3.10): ``value`` work|home|unknown, or free ``text``."""

    value: str | None = None
    text: str | None = None


@attrs.frozen
class StatusIcon(_RPIDElement):
    """``<rpid:status-icon>`` (RFC 4480 §3.11): the URI of an icon."""

    uri: str = ""


@attrs.frozen
class TimeOffset(_RPIDElement):
    """``<rpid:time-offset>`` (RFC 4480 §3.12): minutes east of UTC."""

    minutes: int = 0
    description: str | None = None


@attrs.frozen
class UserInput(_RPIDElement):
    """``<rpid:user-input>`` (RFC 4480 §3.13): ``active`` or ``idle``."""

    state: str = attrs.field(default="active")
    idle_threshold: int | None = None
    last_input: str | None = attrs.field(default=None, validator=_check_optional_timestamp)

    @state.validator
    def _check_state(self, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
        if value not in ("active", "idle"):
            raise PresenceDocumentError(f"user-input must be 'active' or 'idle', not {value!r}")


@attrs.frozen
class Tuple:
    """A PIDF ``<tuple>`` (RFC 3863 §4.1.2), a service in RFC 4479 terms.

    RPID fields (RFC 4480 §3): ``device_id`` (``dm:deviceID``), ``class_``,
    ``privacy``, ``relationship``, ``service_class``, ``status_icon``,
    ``user_input``.
    """

    id: str = attrs.field(validator=_check_id)
    status: Status = attrs.field(factory=Status)
    contact: Contact | None = None
    notes: tuple[Note, ...] = attrs.field(default=(), converter=_to_tuple)
    timestamp: str | None = attrs.field(default=None, validator=_check_optional_timestamp)
    extensions: tuple[Extension, ...] = attrs.field(default=(), converter=_to_tuple)
    device_id: str | None = None
    class_: str | None = None
    privacy: tuple[Privacy, ...] = attrs.field(default=(), converter=_to_tuple)
    relationship: Relationship | None = None
    service_class: ServiceClass | None = None
    status_icon: tuple[StatusIcon, ...] = attrs.field(default=(), converter=_to_tuple)
    user_input: UserInput | None = None


@attrs.frozen
class Person:
    """A ``<dm:person>`` (RFC 4479 §3.2) with its RPID elements (RFC 4480 §3)."""

    id: str = attrs.field(validator=_check_id)
    activities: tuple[Activities, ...] = attrs.field(default=(), converter=_to_tuple)
    mood: tuple[Mood, ...] = attrs.field(default=(), converter=_to_tuple)
    place_is: tuple[PlaceIs, ...] = attrs.field(default=(), converter=_to_tuple)
    place_type: tuple[PlaceType, ...] = attrs.field(default=(), converter=_to_tuple)
    privacy: tuple[Privacy, ...] = attrs.field(default=(), converter=_to_tuple)
    sphere: tuple[Sphere, ...] = attrs.field(default=(), converter=_to_tuple)
    status_icon: tuple[StatusIcon, ...] = attrs.field(default=(), converter=_to_tuple)
    time_offset: tuple[TimeOffset, ...] = attrs.field(default=(), converter=_to_tuple)
    user_input: UserInput | None = None
    class_: str | None = None
    notes: tuple[Note, ...] = attrs.field(default=(), converter=_to_tuple)
    timestamp: str | None = attrs.field(default=None, validator=_check_optional_timestamp)
    extensions: tuple[Extension, ...] = attrs.field(default=(), converter=_to_tuple)


@attrs.frozen
class Device:
    """A ``<dm:device>`` (RFC 4479 §3.3)."""

    id: str = attrs.field(validator=_check_id)
    device_id: str | None = None
    user_input: UserInput | None = None
    class_: str | None = None
    notes: tuple[Note, ...] = attrs.field(default=(), converter=_to_tuple)
    timestamp: str | None = attrs.field(default=None, validator=_check_optional_timestamp)
    extensions: tuple[Extension, ...] = attrs.field(default=(), converter=_to_tuple)


def _check_unique_ids(document: "PresenceDocument") -> None:
    seen: set[str] = set()
    for item in (*document.tuples, *document.persons, *document.devices):
        if item.id in seen:
            raise PresenceDocumentError(f"id {item.id!r} is used twice (xs:ID must be unique)")
        seen.add(item.id)


@attrs.frozen
class PresenceDocument:
    """A PIDF document: the presence of one presentity.

    :ivar entity: the presentity (``pres:`` URI as :class:`CPIMURI`, or
        another absolute URI as text).
    :ivar raw: the octets it was parsed from (``None`` if built): relay
        these untouched.  Not part of equality.
    :ivar namespaces: ``(prefix, uri)`` declared on the root when parsed
        (``""`` for the default).  Not part of equality.
    """

    entity: CPIMURI | str = attrs.field(converter=_to_entity)
    tuples: tuple[Tuple, ...] = attrs.field(default=(), converter=_to_tuple)
    notes: tuple[Note, ...] = attrs.field(default=(), converter=_to_tuple)
    persons: tuple[Person, ...] = attrs.field(default=(), converter=_to_tuple)
    devices: tuple[Device, ...] = attrs.field(default=(), converter=_to_tuple)
    extensions: tuple[Extension, ...] = attrs.field(default=(), converter=_to_tuple)
    raw: bytes | None = attrs.field(default=None, eq=False, repr=False)
    namespaces: tuple[tuple[str, str], ...] = attrs.field(default=(), eq=False, repr=False, converter=_to_tuple)

    def __attrs_post_init__(self) -> None:
        _check_unique_ids(self)

    @property
    def ignored(self) -> tuple[Extension, ...]:
        """Extension elements ignored for interpretation because of mustUnderstand (RFC 3863 §4.1.8)."""
        return tuple(extension for extension in _all_extensions(self) if extension.must_understand)

    def tuple_by_id(self, tuple_id: str) -> Tuple | None:
        for item in self.tuples:
            if item.id == tuple_id:
                return item
        return None

    def to_bytes(self) -> bytes:
        """A regenerated document: UTF-8 with an XML declaration, schema order, stable prefixes."""
        return _serialise(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (for logs, the ``cpimgw parse`` command and tests)."""
        result = _plain(self)
        result["namespaces"] = {prefix: uri for prefix, uri in self.namespaces}
        result["ignored"] = [_plain(extension) for extension in self.ignored]
        return result


def _all_extensions(document: PresenceDocument) -> Iterator[Extension]:
    yield from document.extensions
    for item in document.tuples:
        yield from item.status.extensions
        yield from item.extensions
    for person in document.persons:
        yield from person.extensions
    for device in document.devices:
        yield from device.extensions


def _plain(value: Any) -> Any:
    if isinstance(value, Extension):
        return {"namespace": value.namespace, "name": value.name, "xml": value.xml.decode("utf-8")}
    if isinstance(value, PresenceDocument):
        names = [field.name for field in attrs.fields(PresenceDocument) if field.name not in ("raw", "namespaces")]
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, (CPIMURI, Decimal)):
        return str(value)
    if attrs.has(type(value)):
        result = {"type": _TYPE_NAMES[type(value)]} if type(value) in _TYPE_NAMES else {}
        for field in attrs.fields(type(value)):
            result[field.name.rstrip("_")] = _plain(getattr(value, field.name))
        return result
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


# --------------------------------------------------------------------------
# parsing


class _NotUnderstood(Exception):
    """A modelled element holds a mustUnderstand element we do not model."""


class _Unmodellable(Exception):
    """A modelled element whose content we cannot model; it is kept verbatim."""


def _elements(node: etree._Element) -> list[etree._Element]:
    return [child for child in node if isinstance(child.tag, str)]


def _name(node: etree._Element) -> tuple[str | None, str]:
    tag = node.tag
    if tag[0] == "{":
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return None, tag


def _text(node: etree._Element) -> str:
    return (node.text or "").strip()


def _note(node: etree._Element) -> Note:
    return Note(node.text or "", node.get(_LANG))


def _unknown_child(node: etree._Element, index: int | None = None) -> Extension:
    """A child of a modelled element that we do not model: kept, unless it must be understood."""
    if _carries_must_understand(node):
        raise _NotUnderstood()
    return Extension.from_element(node, index, False)


def _span(node: etree._Element) -> dict[str, Any]:
    span: dict[str, Any] = {}
    for attribute, key in (("from", "from_"), ("until", "until")):
        value = node.get(attribute)
        if value is not None:
            span[key] = check_timestamp(value.strip(), node, attribute)
    identifier = node.get("id")
    if identifier is not None:
        if not is_ncname(identifier):
            raise _Unmodellable()
        span["id"] = identifier
    return span


def _parse_enumerated(cls: type[_Enumerated], node: etree._Element) -> _Enumerated:
    values: list[str] = []
    other: list[Note] = []
    notes: list[Note] = []
    extensions: list[Extension] = []
    for index, child in enumerate(_elements(node)):
        namespace, local = _name(child)
        simple = not len(child) and not _text(child) and not child.attrib
        if namespace == RPID_NS and local == "note":
            notes.append(_note(child))
        elif namespace == RPID_NS and local == "other":
            other.append(_note(child))
        elif simple and namespace == RPID_NS:
            values.append(local)
        elif simple and namespace is not None:
            values.append(f"{{{namespace}}}{local}")
        else:
            extensions.append(_unknown_child(child, index))
    return cls(values=values, other=other, notes=notes, extensions=extensions, **_span(node))


def _parse_place_is(node: etree._Element) -> PlaceIs:
    found: dict[str, str] = {}
    notes: list[Note] = []
    extensions: list[Extension] = []
    for index, child in enumerate(_elements(node)):
        namespace, local = _name(child)
        if namespace == RPID_NS and local == "note":
            notes.append(_note(child))
        elif namespace == RPID_NS and local in ("audio", "video", "text") and local not in found:
            inner = _elements(child)
            if len(inner) != 1 or _name(inner[0])[0] != RPID_NS or len(inner[0]) or child.attrib:
                extensions.append(_unknown_child(child, index))
            else:
                found[local] = _name(inner[0])[1]
        else:
            extensions.append(_unknown_child(child, index))
    return PlaceIs(notes=notes, extensions=extensions, **found, **_span(node))


def _leaf(node: etree._Element) -> None:
    """An RPID element that must hold text only."""
    for child in _elements(node):
        _unknown_child(child)
        raise _Unmodellable()


def _parse_sphere(node: etree._Element) -> Sphere:
    children = _elements(node)
    if not children:
        return Sphere(text=node.text or "", **_span(node))
    if len(children) == 1 and _name(children[0])[0] == RPID_NS and not len(children[0]) and not _text(node):
        return Sphere(value=_name(children[0])[1], **_span(node))
    for child in children:
        _unknown_child(child)
    raise _Unmodellable()


def _parse_status_icon(node: etree._Element) -> StatusIcon:
    _leaf(node)
    return StatusIcon(uri=_text(node), **_span(node))


def _parse_time_offset(node: etree._Element) -> TimeOffset:
    _leaf(node)
    try:
        minutes = int(_text(node))
    except ValueError:
        raise _Unmodellable() from None
    return TimeOffset(minutes=minutes, description=node.get("description"), **_span(node))


def _parse_user_input(node: etree._Element) -> UserInput:
    _leaf(node)
    state = _text(node)
    threshold = node.get("idle-threshold")
    last_input = node.get("last-input")
    if state not in ("active", "idle") or (threshold is not None and not threshold.strip().isdigit()):
        raise _Unmodellable()
    if threshold is not None and not threshold.strip().isascii():
        raise _Unmodellable()
    if last_input is not None:
        last_input = check_timestamp(last_input.strip(), node, "last-input")
    return UserInput(
        state=state,
        idle_threshold=int(threshold) if threshold is not None else None,
        last_input=last_input,
        **_span(node),
    )


def _parse_class(node: etree._Element) -> str:
    _leaf(node)
    return _text(node)


#: RPID elements of a person: local name -> (field, parser, repeatable).
_PERSON_RPID = {
    "activities": ("activities", lambda n: _parse_enumerated(Activities, n), True),
    "mood": ("mood", lambda n: _parse_enumerated(Mood, n), True),
    "place-is": ("place_is", _parse_place_is, True),
    "place-type": ("place_type", lambda n: _parse_enumerated(PlaceType, n), True),
    "privacy": ("privacy", lambda n: _parse_enumerated(Privacy, n), True),
    "sphere": ("sphere", _parse_sphere, True),
    "status-icon": ("status_icon", _parse_status_icon, True),
    "time-offset": ("time_offset", _parse_time_offset, True),
    "user-input": ("user_input", _parse_user_input, False),
    "class": ("class_", _parse_class, False),
}
_TUPLE_RPID = {
    "class": ("class_", _parse_class, False),
    "privacy": ("privacy", lambda n: _parse_enumerated(Privacy, n), True),
    "relationship": ("relationship", lambda n: _parse_enumerated(Relationship, n), False),
    "service-class": ("service_class", lambda n: _parse_enumerated(ServiceClass, n), False),
    "status-icon": ("status_icon", _parse_status_icon, True),
    "user-input": ("user_input", _parse_user_input, False),
}
_DEVICE_RPID = {
    "user-input": ("user_input", _parse_user_input, False),
    "class": ("class_", _parse_class, False),
}


class _Fields:
    """Collects the fields of one element being parsed, and its extensions."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.extensions: list[Extension] = []

    def keep(self, node: etree._Element, index: int, must_understand: bool | None = None) -> None:
        self.extensions.append(Extension.from_element(node, index, must_understand))

    def rpid(self, table: dict[str, Any], node: etree._Element, index: int) -> bool:
        """Model an RPID element of ``table``; False if ``node`` is not one."""
        namespace, local = _name(node)
        if namespace != RPID_NS or local not in table:
            return False
        field, parse, repeatable = table[local]
        if not repeatable and field in self.values:
            self.keep(node, index)  # a second one of a once-only element
            return True
        try:
            value = parse(node)
        except _NotUnderstood:
            self.keep(node, index, True)
            return True
        except _Unmodellable:
            self.keep(node, index)
            return True
        if repeatable:
            self.values.setdefault(field, []).append(value)
        else:
            self.values[field] = value
        return True

    def once(self, field: str, value: Any, node: etree._Element) -> None:
        if field in self.values:
            raise _fail(f"more than one <{etree.QName(node).localname}>", node)
        self.values[field] = value


def _parse_status(node: etree._Element) -> Status:
    children = _elements(node)
    if not children:
        raise _fail("<status> must have at least one child element (RFC 3863 §4.1.4)", node)
    fields = _Fields()
    for index, child in enumerate(children):
        namespace, local = _name(child)
        if namespace == PIDF_NS and local == "basic":
            basic = _text(child)
            if basic not in ("open", "closed"):
                raise _fail(f"<basic> must be 'open' or 'closed', not {basic[:20]!r}", child)
            fields.once("basic", basic, child)
        elif namespace == JABBER_CLIENT_NS and local == "show" and not len(child) and "xmpp_show" not in fields.values:
            fields.values["xmpp_show"] = _text(child)
        elif namespace == PIDF_IM_NS and local == "im" and not len(child) and "im" not in fields.values:
            fields.values["im"] = _text(child)
        else:
            fields.keep(child, index)
    return Status(extensions=fields.extensions, **fields.values)


def _parse_contact(node: etree._Element) -> Contact:
    uri = _text(node)
    if not uri:
        raise _fail("<contact> is empty", node)
    priority = node.get("priority")
    value = None
    if priority is not None and _QVALUE.match(priority.strip()):
        value = Decimal(priority.strip())
    # Out of range or malformed: the attribute is ignored (RFC 3863 §4.1.5 SHOULD).
    return Contact(uri, value)


def _parse_tuple(node: etree._Element) -> Tuple:
    identifier = node.get("id")
    if identifier is None:
        raise _fail("<tuple> has no id attribute (RFC 3863 §4.1.2)", node)
    if not is_ncname(identifier):
        raise _fail(f"tuple id {identifier[:40]!r} is not an NCName (xs:ID)", node)
    fields = _Fields()
    notes: list[Note] = []
    for index, child in enumerate(_elements(node)):
        namespace, local = _name(child)
        if namespace == PIDF_NS and local == "status":
            fields.once("status", _parse_status(child), child)
        elif namespace == PIDF_NS and local == "contact":
            fields.once("contact", _parse_contact(child), child)
        elif namespace == PIDF_NS and local == "note":
            notes.append(_note(child))
        elif namespace == PIDF_NS and local == "timestamp":
            fields.once("timestamp", check_timestamp(_text(child), child), child)
        elif namespace == DM_NS and local == "deviceID" and "device_id" not in fields.values and not len(child):
            fields.values["device_id"] = _text(child)
        elif not fields.rpid(_TUPLE_RPID, child, index):
            fields.keep(child, index)
    if "status" not in fields.values:
        raise _fail(f"tuple {identifier!r} has no <status> (RFC 3863 §4.1.4)", node)
    return Tuple(identifier, notes=notes, extensions=fields.extensions, **fields.values)


def _parse_person_or_device(node: etree._Element, cls: type, table: dict[str, Any]) -> Any:
    identifier = node.get("id")
    what = etree.QName(node).localname
    if identifier is None or not is_ncname(identifier):
        raise _fail(f"<dm:{what}> needs an id that is an NCName (RFC 4479 §3)", node)
    fields = _Fields()
    notes: list[Note] = []
    for index, child in enumerate(_elements(node)):
        namespace, local = _name(child)
        if namespace == DM_NS and local == "note":
            notes.append(_note(child))
        elif namespace == DM_NS and local == "timestamp":
            fields.once("timestamp", check_timestamp(_text(child), child), child)
        elif cls is Device and namespace == DM_NS and local == "deviceID" and "device_id" not in fields.values:
            fields.values["device_id"] = _text(child)
        elif not fields.rpid(table, child, index):
            fields.keep(child, index)
    for key, value in list(fields.values.items()):
        if isinstance(value, list):
            fields.values[key] = tuple(value)
    return cls(identifier, notes=notes, extensions=fields.extensions, **fields.values)


def _parse_entity(node: etree._Element) -> CPIMURI | str:
    entity = node.get("entity")
    if entity is None or not entity.strip():
        raise _fail("<presence> has no entity attribute (RFC 3863 §4.1.1)", node)
    try:
        return _to_entity(entity)
    except PresenceDocumentError as error:
        raise _fail(error.reason, node) from None


def parse_pidf(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> PresenceDocument:
    """Parse an ``application/pidf+xml`` body.

    :raises PresenceDocumentError: malformed XML or an invalid document
        (with the line).
    :raises LimitExceededError: a size, depth or element-count limit.
    """
    root = parse_xml(data, max_size=max_size, max_depth=max_depth, max_elements=max_elements)
    if root.tag != f"{{{PIDF_NS}}}presence":
        raise _fail(f"the root element is {root.tag!r}, not {{{PIDF_NS}}}presence", root)
    entity = _parse_entity(root)
    tuples: list[Tuple] = []
    notes: list[Note] = []
    persons: list[Person] = []
    devices: list[Device] = []
    extensions: list[Extension] = []
    seen: dict[str, etree._Element] = {}
    for index, child in enumerate(_elements(root)):
        namespace, local = _name(child)
        item: Any = None
        if namespace == PIDF_NS and local == "tuple":
            item = _parse_tuple(child)
            tuples.append(item)
        elif namespace == PIDF_NS and local == "note":
            notes.append(_note(child))
        elif namespace == DM_NS and local == "person":
            item = _parse_person_or_device(child, Person, _PERSON_RPID)
            persons.append(item)
        elif namespace == DM_NS and local == "device":
            item = _parse_person_or_device(child, Device, _DEVICE_RPID)
            devices.append(item)
        else:
            extensions.append(Extension.from_element(child, index))
        if item is not None:
            if item.id in seen:
                raise _fail(f"id {item.id!r} is used twice (xs:ID must be unique)", child)
            seen[item.id] = child
    namespaces = tuple(sorted((prefix or "", uri) for prefix, uri in root.nsmap.items()))
    return PresenceDocument(
        entity, tuples, notes, persons, devices, extensions, raw=bytes(data), namespaces=namespaces
    )


# --------------------------------------------------------------------------
# serialising


def format_priority(priority: Decimal) -> str:
    """A qvalue as text: ``0.65``, ``1``, ``0``."""
    text = format(priority.normalize(), "f")
    return text


def _clark(name: str, namespace: str = RPID_NS) -> str:
    return name if name.startswith("{") else f"{{{namespace}}}{name}"


def _used_namespaces(document: PresenceDocument) -> set[str]:
    used: set[str] = set()
    rpid_seen = False
    for item in document.tuples:
        if item.device_id is not None:
            used.add(DM_NS)
        if item.status.im is not None:
            used.add(PIDF_IM_NS)
        if item.class_ is not None or item.privacy or item.relationship or item.service_class:
            rpid_seen = True
        if item.status_icon or item.user_input:
            rpid_seen = True
        for enumerated in (*item.privacy, item.relationship, item.service_class):
            if enumerated is not None:
                used.update(_value_namespaces(enumerated.values))
    if document.persons or document.devices:
        used.add(DM_NS)
    for person in document.persons:
        for name in ("activities", "mood", "place_is", "place_type", "privacy", "sphere", "status_icon", "time_offset"):
            values = getattr(person, name)
            if values:
                rpid_seen = True
            for value in values:
                if isinstance(value, _Enumerated):
                    used.update(_value_namespaces(value.values))
        if person.user_input is not None or person.class_ is not None:
            rpid_seen = True
    for device in document.devices:
        if device.user_input is not None or device.class_ is not None:
            rpid_seen = True
    if rpid_seen:
        used.add(RPID_NS)
    return used


def _value_namespaces(values: Iterable[str]) -> set[str]:
    return {value[1:].partition("}")[0] for value in values if value.startswith("{")}


def _nsmap(document: PresenceDocument) -> dict[str | None, str]:
    used = _used_namespaces(document)
    nsmap: dict[str | None, str] = {None: PIDF_NS}
    for prefix, uri in _PREFIXES:
        if uri in used:
            nsmap[prefix] = uri
    others = sorted(used - {uri for _, uri in _PREFIXES} - {RPID_NS, PIDF_NS})
    for number, uri in enumerate(others, 1):
        nsmap[f"ns{number}"] = uri
    return nsmap


def _element(tag: str, text: str | None = None, attrib: dict[str, str] | None = None, **kw: Any) -> etree._Element:
    node = etree.Element(tag, attrib or {}, **kw)
    if text is not None:
        node.text = text
    return node


def _note_element(note: Note, namespace: str, name: str = "note") -> etree._Element:
    node = _element(f"{{{namespace}}}{name}", note.text)
    if note.lang is not None:
        node.set(_LANG, note.lang)
    return node


def _span_attributes(value: _RPIDElement) -> dict[str, str]:
    attributes = {}
    if value.id is not None:
        attributes["id"] = value.id
    if value.from_ is not None:
        attributes["from"] = value.from_
    if value.until is not None:
        attributes["until"] = value.until
    return attributes


def _assemble(
    parent: etree._Element,
    modelled: Sequence[etree._Element],
    extensions: Sequence[Extension],
    at: int,
    slots: list[bytes],
) -> None:
    """Append ``modelled`` children and put the extensions back at their positions.

    Extensions without a position go at ``at`` (the end of the extension
    slot of the schema).  An extension goes in as a placeholder comment that
    :func:`_serialise` replaces with its verbatim octets, so that lxml never
    rewrites its prefixes or namespace declarations.
    """

    def placeholder(extension: Extension) -> etree._Element:
        slots.append(extension.xml)
        return etree.Comment(f"{_SLOT}{len(slots) - 1}")

    children: list[etree._Element] = list(modelled)
    placed = [extension for extension in extensions if extension.index is not None]
    children[at:at] = [placeholder(extension) for extension in extensions if extension.index is None]
    for extension in sorted(placed, key=lambda item: item.index):  # type: ignore[arg-type, return-value]
        children.insert(min(extension.index, len(children)), placeholder(extension))  # type: ignore[arg-type]
    for child in children:
        parent.append(child)


_SLOT = "cpimgw-extension-"
_SLOT_PATTERN = re.compile(rb"<!--cpimgw-extension-(\d+)-->")

_ENUMERATED_NAMES = {
    Activities: "activities",
    Mood: "mood",
    Privacy: "privacy",
    PlaceType: "place-type",
    Relationship: "relationship",
    ServiceClass: "service-class",
}
_TYPE_NAMES: dict[type, str] = {
    **_ENUMERATED_NAMES,
    PlaceIs: "place-is",
    Sphere: "sphere",
    StatusIcon: "status-icon",
    TimeOffset: "time-offset",
    UserInput: "user-input",
}


def _rpid_element(value: Any, slots: list[bytes]) -> etree._Element:
    if isinstance(value, _Enumerated):
        node = _element(_clark(_ENUMERATED_NAMES[type(value)]), attrib=_span_attributes(value))
        modelled = [_note_element(note, RPID_NS) for note in value.notes]
        modelled += [_element(_clark(name)) for name in value.values]
        modelled += [_note_element(note, RPID_NS, "other") for note in value.other]
        _assemble(node, modelled, value.extensions, len(modelled), slots)
    elif isinstance(value, PlaceIs):
        node = _element(_clark("place-is"), attrib=_span_attributes(value))
        modelled = [_note_element(note, RPID_NS) for note in value.notes]
        for kind in ("audio", "video", "text"):
            condition = getattr(value, kind)
            if condition is not None:
                holder = _element(_clark(kind))
                holder.append(_element(_clark(condition)))
                modelled.append(holder)
        _assemble(node, modelled, value.extensions, len(modelled), slots)
    elif isinstance(value, Sphere):
        node = _element(_clark("sphere"), value.text, attrib=_span_attributes(value))
        if value.value is not None:
            node.append(_element(_clark(value.value)))
    elif isinstance(value, StatusIcon):
        node = _element(_clark("status-icon"), value.uri, attrib=_span_attributes(value))
    elif isinstance(value, TimeOffset):
        attributes = _span_attributes(value)
        if value.description is not None:
            attributes["description"] = value.description
        node = _element(_clark("time-offset"), str(value.minutes), attrib=attributes)
    elif isinstance(value, UserInput):
        attributes = _span_attributes(value)
        if value.idle_threshold is not None:
            attributes["idle-threshold"] = str(value.idle_threshold)
        if value.last_input is not None:
            attributes["last-input"] = value.last_input
        node = _element(_clark("user-input"), value.state, attrib=attributes)
    else:  # pragma: no cover - the model holds nothing else
        raise TypeError(f"not an RPID value: {value!r}")
    return node


def _status_element(status: Status, slots: list[bytes]) -> etree._Element:
    node = _element(f"{{{PIDF_NS}}}status")
    modelled = []
    if status.basic is not None:
        modelled.append(_element(f"{{{PIDF_NS}}}basic", status.basic))
    if status.xmpp_show is not None:
        modelled.append(_element(f"{{{JABBER_CLIENT_NS}}}show", status.xmpp_show, nsmap={None: JABBER_CLIENT_NS}))
    if status.im is not None:
        modelled.append(_element(f"{{{PIDF_IM_NS}}}im", status.im))
    _assemble(node, modelled, status.extensions, len(modelled), slots)
    return node


def _tuple_element(item: Tuple, slots: list[bytes]) -> etree._Element:
    node = _element(f"{{{PIDF_NS}}}tuple", attrib={"id": item.id})
    modelled = [_status_element(item.status, slots)]
    if item.device_id is not None:
        modelled.append(_element(f"{{{DM_NS}}}deviceID", item.device_id))
    if item.class_ is not None:
        modelled.append(_element(_clark("class"), item.class_))
    if item.relationship is not None:
        modelled.append(_rpid_element(item.relationship, slots))
    if item.service_class is not None:
        modelled.append(_rpid_element(item.service_class, slots))
    modelled += [_rpid_element(value, slots) for value in (*item.privacy, *item.status_icon)]
    if item.user_input is not None:
        modelled.append(_rpid_element(item.user_input, slots))
    at = len(modelled)
    if item.contact is not None:
        contact = _element(f"{{{PIDF_NS}}}contact", item.contact.uri)
        if item.contact.priority is not None:
            contact.set("priority", format_priority(item.contact.priority))
        modelled.append(contact)
    modelled += [_note_element(note, PIDF_NS) for note in item.notes]
    if item.timestamp is not None:
        modelled.append(_element(f"{{{PIDF_NS}}}timestamp", item.timestamp))
    _assemble(node, modelled, item.extensions, at, slots)
    return node


def _person_element(person: Person, slots: list[bytes]) -> etree._Element:
    node = _element(f"{{{DM_NS}}}person", attrib={"id": person.id})
    modelled = []
    for name in ("activities", "mood", "place_is", "place_type", "privacy", "sphere", "status_icon", "time_offset"):
        modelled += [_rpid_element(value, slots) for value in getattr(person, name)]
    if person.user_input is not None:
        modelled.append(_rpid_element(person.user_input, slots))
    if person.class_ is not None:
        modelled.append(_element(_clark("class"), person.class_))
    return _finish_dm(node, modelled, person, slots)


def _device_element(device: Device, slots: list[bytes]) -> etree._Element:
    node = _element(f"{{{DM_NS}}}device", attrib={"id": device.id})
    modelled = []
    if device.user_input is not None:
        modelled.append(_rpid_element(device.user_input, slots))
    if device.class_ is not None:
        modelled.append(_element(_clark("class"), device.class_))
    if device.device_id is not None:
        modelled.append(_element(f"{{{DM_NS}}}deviceID", device.device_id))
    return _finish_dm(node, modelled, device, slots)


def _finish_dm(
    node: etree._Element, modelled: list[etree._Element], item: Person | Device, slots: list[bytes]
) -> etree._Element:
    at = len(modelled)
    modelled += [_note_element(note, DM_NS) for note in item.notes]
    if item.timestamp is not None:
        modelled.append(_element(f"{{{DM_NS}}}timestamp", item.timestamp))
    _assemble(node, modelled, item.extensions, at, slots)
    return node


def _serialise(document: PresenceDocument) -> bytes:
    root = etree.Element(f"{{{PIDF_NS}}}presence", {"entity": str(document.entity)}, nsmap=_nsmap(document))
    slots: list[bytes] = []
    modelled = [_tuple_element(item, slots) for item in document.tuples]
    modelled += [_note_element(note, PIDF_NS) for note in document.notes]
    modelled += [_person_element(person, slots) for person in document.persons]
    modelled += [_device_element(device, slots) for device in document.devices]
    _assemble(root, modelled, document.extensions, len(modelled), slots)
    output = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return _SLOT_PATTERN.sub(lambda match: slots[int(match.group(1))], output)


# --------------------------------------------------------------------------
# builders for the adapters


def build_pidf(
    entity: CPIMURI | str,
    tuples: Iterable[Tuple] = (),
    notes: Iterable[Note] = (),
    persons: Iterable[Person] = (),
    devices: Iterable[Device] = (),
    extensions: Iterable[Extension] = (),
) -> PresenceDocument:
    """A presence document from model values (ids must be unique)."""
    return PresenceDocument(entity, tuple(tuples), tuple(notes), tuple(persons), tuple(devices), tuple(extensions))


_ID_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")


def tuple_id_for(instance: str) -> str:
    """The tuple id for an XMPP resource, SIP instance or PRIM tuple id (RFC 7248 §5).

    ``ID-`` followed by the instance, with every octet (of UTF-8) that is not
    an ASCII letter, digit, ``.`` or ``-`` written ``_XX``; reversible with
    :func:`instance_for`.
    """
    out = ["ID-"]
    for char in instance:
        if char in _ID_SAFE:
            out.append(char)
        else:
            out.extend(f"_{octet:02X}" for octet in char.encode("utf-8"))
    return "".join(out)


def instance_for(tuple_id: str) -> str:
    """The instance a :func:`tuple_id_for` id came from; other ids are returned as they are."""
    if not tuple_id.startswith("ID-"):
        return tuple_id
    body = tuple_id[3:]
    octets = bytearray()
    index = 0
    while index < len(body):
        char = body[index]
        pair = body[index + 1 : index + 3]
        if char == "_" and len(pair) == 2 and all(c in "0123456789ABCDEF" for c in pair):
            octets.append(int(pair, 16))
            index += 3
        else:
            octets.extend(char.encode("utf-8"))
            index += 1
    return octets.decode("utf-8", errors="replace")


def priority_from_xmpp(priority: int) -> Decimal | None:
    """XMPP ``<priority/>`` (-128..127) to a contact qvalue (RFC 3922 §5.1.5).

    Negative priorities are not mapped (``None``); 0 -> 0, 127 -> 1, the rest
    n/127 cut to three decimals so that they stay distinct (1 -> 0.007,
    13 -> 0.102, 126 -> 0.992).
    """
    if not isinstance(priority, int) or isinstance(priority, bool) or not -128 <= priority <= 127:
        raise ValueError(f"an XMPP priority is an integer from -128 to 127, not {priority!r}")
    if priority < 0:
        return None
    return (Decimal(priority) / Decimal(127)).quantize(_THOUSANDTH, rounding=ROUND_DOWN)


def xmpp_priority(priority: Decimal | None) -> int:
    """A contact qvalue to an XMPP priority (RFC 3922 §5.2): 0.001-0.007 -> 1 ... 0.992-0.999 -> 126, 1 -> 127.

    A missing priority is the lowest (RFC 3863 §4.1.5): 0.
    """
    if priority is None:
        return 0
    priority = Decimal(priority)
    if not 0 <= priority <= 1:
        raise ValueError(f"a priority is between 0 and 1, not {priority}")
    if priority == 1:
        return 127
    scaled = priority * 127
    whole = int(scaled.to_integral_value(rounding=ROUND_CEILING))
    return min(whole, 126)


class TimestampSource:
    """Timestamps for generated documents, never twice the same (RFC 3863 §4.1.7).

    Each call gives the UTC time of ``clock_seconds`` with millisecond
    precision, upper-case ``T`` and ``Z``; if that is not later than the last
    one given, one millisecond after the last one.  Use one source per
    presentity or one for the process.
    """

    def __init__(self) -> None:
        self._last_ms: int | None = None

    def __call__(self, clock_seconds: float) -> str:
        milliseconds = int(clock_seconds * 1000)
        if self._last_ms is not None and milliseconds <= self._last_ms:
            milliseconds = self._last_ms + 1
        self._last_ms = milliseconds
        moment = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=milliseconds)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{milliseconds % 1000:03d}Z"


_TIMESTAMPS = TimestampSource()


def timestamp_now(clock_seconds: float) -> str:
    """A timestamp for ``clock_seconds`` from the process-wide :class:`TimestampSource`."""
    return _TIMESTAMPS(clock_seconds)


def _unique(identifier: str, taken: set[str]) -> str:
    if identifier not in taken:
        return identifier
    number = 2
    while f"{identifier}-{number}" in taken:
        number += 1
    return f"{identifier}-{number}"


def compose(documents: Iterable[PresenceDocument], entity: CPIMURI | str) -> PresenceDocument:
    """Merge the documents of several sources of one presentity into one (RFC 3863 §4.1.2).

    Tuples, notes, persons, devices and extensions are kept in the order of
    the documents; an id already used is made unique with ``-2``, ``-3``...
    Duplicate presentity notes are kept once.  Extensions lose their
    positions (they go to the end of their slot).
    """
    taken: set[str] = set()
    tuples: list[Tuple] = []
    notes: list[Note] = []
    persons: list[Person] = []
    devices: list[Device] = []
    extensions: list[Extension] = []
    for document in documents:
        for item in document.tuples:
            identifier = _unique(item.id, taken)
            taken.add(identifier)
            tuples.append(attrs.evolve(item, id=identifier))
        for person in document.persons:
            identifier = _unique(person.id, taken)
            taken.add(identifier)
            persons.append(attrs.evolve(person, id=identifier))
        for device in document.devices:
            identifier = _unique(device.id, taken)
            taken.add(identifier)
            devices.append(attrs.evolve(device, id=identifier))
        notes.extend(note for note in document.notes if note not in notes)
        extensions.extend(attrs.evolve(extension, index=None) for extension in document.extensions)
    return PresenceDocument(entity, tuples, notes, persons, devices, extensions)


__all__ = [
    "Activities",
    "Contact",
    "Device",
    "Extension",
    "Mood",
    "Note",
    "Person",
    "PlaceIs",
    "PlaceType",
    "PresenceDocument",
    "Privacy",
    "Relationship",
    "ServiceClass",
    "Sphere",
    "Status",
    "StatusIcon",
    "TimeOffset",
    "TimestampSource",
    "Tuple",
    "UserInput",
    "build_pidf",
    "check_timestamp",
    "compose",
    "format_priority",
    "instance_for",
    "is_ncname",
    "parse_pidf",
    "priority_from_xmpp",
    "timestamp_now",
    "tuple_id_for",
    "xmpp_priority",
    "DM_NS",
    "JABBER_CLIENT_NS",
    "PIDF_IM_NS",
    "PIDF_NS",
    "RPID_NS",
]
