"""The legacy PRIM presence document (-01/-02 §15) and its mapping to PIDF.

draft-mazzoldi-prim-impp-01 §15 (digest §2.10): each tuple is a MIME entity
``application/presence`` with a non-MIME ``Tuple-ID`` header; several tuples
travel in ``multipart/mixed``.  The XML::

    <presence identifier="pres:foo@bar.com" date="Thu, 5 Sep 2000 15:45:45 -0500">
      <presentity><display-name/><note/></presentity>
      <contact address="im:foo@bar.com">
        <display-name/> <status value="open" detail="deferred"/>
        <preference value="1"/> <note/>
      </contact>
    </presence>

(the text names the root attribute ``address`` and the status attribute
``details``; both spellings are accepted).  Mapping to PIDF (RFC 3863):
identifier -> ``entity``; each contact -> a ``<tuple>`` whose id is the
Tuple-ID made an XML NCName (``ID-`` prefix, other characters as ``_XX``);
status value -> ``<basic>``; ``detail`` -> extension element
``<prim:detail>`` in the status; address -> ``<contact>``; preference N
(lower is better) -> ``priority`` 1/(1+N) to 3 decimals; notes -> ``<note>``;
display names -> ``<prim:display-name>``; date -> ``<timestamp>`` (RFC 3339).
Unknown elements are ignored, as -01 §15.3 says.  DOCTYPEs and entities are
refused (no expansion attacks).

The other direction, for -01/-02 user agents (:func:`pidf_to_legacy`), is the
inverse mapping: each PIDF ``<tuple>`` becomes one ``application/presence``
part of a ``multipart/mixed`` (even for a single tuple, as -01 §15.6 shows),
with ``Tuple-ID`` the tuple id with the ``ID-``/``_XX`` escaping undone, one
``<contact>`` whose status/detail/preference/display-name/note come from
``<basic>``/``<prim:detail>``/``priority``/``<prim:display-name>``/``<note>``,
and ``date`` the tuple's ``<timestamp>`` in RFC 1123 form.  The presence-level
``<prim:display-name>`` goes in the first part's ``<presentity>``, presence
notes one per part's ``<presentity>``.  What the legacy form cannot hold (and
is dropped): extension elements other than ``prim:detail``/``prim:display-name``
(RPID, capabilities, ...), ``xml:lang`` and all but the first note of a tuple,
presence notes beyond one per tuple, presence notes and display name when the
document has no tuple beyond the first, ``<basic>`` absent (sent as
``closed``, the legacy status is mandatory), priority precision
(preference = round(1/priority - 1), priority 0 -> 2^32-1), timestamps
below the second and their zone name (RFC 1123 keeps the offset), and a
tuple id ``ID-x`` that was already an NCName comes back as ``x``.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import re
from typing import Optional

import attrs
from lxml import etree
from twisted.logger import Logger

from cpimgw.cpim.errors import LimitExceededError, PresenceDocumentError
from cpimgw.cpim.signed import is_signed
from cpimgw.cpim.uri import CPIMURI

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
PRIM_PIDF_NS = "urn:x-cpimgw:params:xml:ns:prim"
MAX_DOCUMENT = 65536
MAX_PARTS = 64

_log = Logger()

_NCNAME_START = re.compile(r"^[A-Za-z_]")
_NOT_NCNAME = re.compile(r"[^A-Za-z0-9._-]")


@attrs.frozen
class LegacyContact:
    address: Optional[str]
    status: str
    detail: Optional[str] = None
    preference: Optional[int] = None
    display_name: Optional[str] = None
    note: Optional[str] = None


@attrs.frozen
class LegacyTuple:
    tuple_id: Optional[str]
    identifier: Optional[str]
    date: Optional[str]
    contacts: tuple[LegacyContact, ...] = ()
    display_name: Optional[str] = None
    note: Optional[str] = None


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_pis=True, strip_cdata=True)


def _text(element: Optional[etree._Element]) -> Optional[str]:
    if element is None:
        return None
    return (element.text or "").strip()


def _local(element: etree._Element) -> str:
    tag = element.tag
    return etree.QName(tag).localname.lower() if isinstance(tag, str) else ""


def _child(element: etree._Element, name: str) -> Optional[etree._Element]:
    for child in element:
        if _local(child) == name:
            return child
    return None


def parse_legacy_xml(data: bytes, tuple_id: Optional[str] = None) -> LegacyTuple:
    """Parse one ``application/presence`` XML document."""
    if len(data) > MAX_DOCUMENT:
        raise LimitExceededError("max_size", MAX_DOCUMENT, syntax="pidf")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise PresenceDocumentError("a DOCTYPE or ENTITY declaration is not allowed in a presence document")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as error:
        raise PresenceDocumentError(f"not well-formed XML: {error.msg}", line=error.lineno) from None
    if _local(root) != "presence":
        raise PresenceDocumentError(f"the root element is <{_local(root)}>, not <presence>")
    identifier = root.get("identifier") or root.get("address")
    presentity = _child(root, "presentity")
    contacts = []
    for child in root:
        if _local(child) != "contact":
            continue
        status = _child(child, "status")
        value = (status.get("value") if status is not None else None) or ""
        if value not in ("open", "closed"):
            raise PresenceDocumentError(f"status value {value!r} is neither open nor closed")
        preference = _child(child, "preference")
        pref_value: Optional[int] = None
        if preference is not None:
            raw = preference.get("value", "")
            if not raw.isdigit() or int(raw) >= 2**32:
                raise PresenceDocumentError(f"preference {raw[:20]!r} is not an unsigned integer below 2^32")
            pref_value = int(raw)
        contacts.append(
            LegacyContact(
                address=child.get("address"),
                status=value,
                detail=(status.get("detail") or status.get("details")) if status is not None else None,
                preference=pref_value,
                display_name=_text(_child(child, "display-name")),
                note=_text(_child(child, "note")),
            )
        )
    return LegacyTuple(
        tuple_id=tuple_id,
        identifier=identifier,
        date=root.get("date"),
        contacts=tuple(contacts),
        display_name=_text(_child(presentity, "display-name")) if presentity is not None else None,
        note=_text(_child(presentity, "note")) if presentity is not None else None,
    )


def _headers_and_body(part: bytes) -> tuple[dict[str, str], bytes]:
    part = part.lstrip(b"\r\n")
    end = part.find(b"\r\n\r\n")
    sep = 4
    if end == -1:
        end = part.find(b"\n\n")
        sep = 2
    if end == -1:
        return {}, part
    headers: dict[str, str] = {}
    for line in re.split(rb"\r?\n", part[:end]):
        name, colon, value = line.partition(b":")
        if colon:
            headers[name.strip().decode("ascii", "replace").lower()] = value.strip().decode("utf-8", "replace")
    return headers, part[end + sep:]


def _boundary(content_type: str) -> str:
    match = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', content_type, re.I)
    if not match:
        raise PresenceDocumentError("multipart/mixed without a boundary")
    return match.group(1) or match.group(2)


def parse_legacy(content_type: str, body: bytes, tuple_id: Optional[str] = None) -> list[LegacyTuple]:
    """Parse an ``application/presence`` body or a ``multipart/mixed`` of them."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/presence":
        headers, inner = _headers_and_body(body) if body.lstrip().startswith(b"Tuple-ID") else ({}, body)
        return [parse_legacy_xml(inner, headers.get("tuple-id", tuple_id))]
    if media != "multipart/mixed":
        raise PresenceDocumentError(f"{media} is not a legacy PRIM presence type")
    delimiter = b"--" + _boundary(content_type).encode("ascii")
    pieces = body.split(delimiter)
    tuples = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        if not piece.strip():
            continue
        if len(tuples) >= MAX_PARTS:
            raise LimitExceededError("max_parts", MAX_PARTS, syntax="pidf")
        headers, inner = _headers_and_body(piece)
        part_type = headers.get("content-type", "application/presence").split(";")[0].strip().lower()
        if part_type != "application/presence":
            continue
        tuples.append(parse_legacy_xml(inner.strip(b"\r\n"), headers.get("tuple-id")))
    return tuples


def ncname_id(tuple_id: str) -> str:
    """A PIDF tuple id (xs:ID) for a PRIM Tuple-ID: ``ID-`` plus ``_XX`` escapes where needed."""
    if _NCNAME_START.match(tuple_id) and not _NOT_NCNAME.search(tuple_id):
        return tuple_id
    escaped = _NOT_NCNAME.sub(lambda m: "".join(f"_{b:02X}" for b in m.group(0).encode("utf-8")), tuple_id)
    return "ID-" + escaped


def priority_for_preference(preference: int) -> str:
    """Legacy preference (lower is better) -> PIDF priority (higher is better): 1/(1+N), 3 decimals."""
    value = 1.0 / (1 + preference)
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "0") else "0"


def rfc1123_to_rfc3339(value: str) -> Optional[str]:
    text = re.sub(r"[A-Za-z]+", lambda m: m.group(0).capitalize(), value.strip())
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when.isoformat()


def legacy_to_pidf(content_type: str, body: bytes, *, entity: Optional[CPIMURI] = None) -> bytes:
    """Convert a legacy PRIM presence document to PIDF octets (digest §2.10)."""
    tuples = parse_legacy(content_type, body)
    identifier = next((t.identifier for t in tuples if t.identifier), None) or (str(entity) if entity else None)
    if not identifier:
        raise PresenceDocumentError("the presence document names no presentity")
    E = f"{{{PIDF_NS}}}"
    P = f"{{{PRIM_PIDF_NS}}}"
    root = etree.Element(E + "presence", nsmap={None: PIDF_NS, "prim": PRIM_PIDF_NS})
    root.set("entity", identifier)
    presence_notes: list[str] = []
    used: set[str] = set()
    for index, legacy in enumerate(tuples):
        for number, contact in enumerate(legacy.contacts):
            base = legacy.tuple_id or contact.address or f"t{index}"
            tid = ncname_id(base if number == 0 else f"{base}-{number}")
            while tid in used:
                tid += "_"
            used.add(tid)
            tup = etree.SubElement(root, E + "tuple", id=tid)
            status = etree.SubElement(tup, E + "status")
            etree.SubElement(status, E + "basic").text = contact.status
            if contact.detail:
                etree.SubElement(status, P + "detail").text = contact.detail
            if contact.display_name:
                etree.SubElement(tup, P + "display-name").text = contact.display_name
            if contact.address:
                element = etree.SubElement(tup, E + "contact")
                element.text = contact.address
                if contact.preference is not None:
                    element.set("priority", priority_for_preference(contact.preference))
            if contact.note:
                etree.SubElement(tup, E + "note").text = contact.note
            if legacy.date:
                stamp = rfc1123_to_rfc3339(legacy.date)
                if stamp:
                    etree.SubElement(tup, E + "timestamp").text = stamp
        if legacy.note and legacy.note not in presence_notes:
            presence_notes.append(legacy.note)
        if legacy.display_name:
            pass
    for note in presence_notes:
        etree.SubElement(root, E + "note").text = note
    names = [t.display_name for t in tuples if t.display_name]
    if names:
        etree.SubElement(root, P + "display-name").text = names[0]
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def basic_status(pidf: bytes) -> Optional[str]:
    """The first ``<basic>`` value of a PIDF document (for the client's display), or ``None``."""
    try:
        root = etree.fromstring(pidf, _parser())
    except etree.XMLSyntaxError:
        return None
    for element in root.iter(f"{{{PIDF_NS}}}basic"):
        return (element.text or "").strip()
    return None


def simple_pidf(entity: str, basic: str, *, tuple_id: str = "prim", contact: Optional[str] = None,
                note: Optional[str] = None) -> bytes:
    """A one-tuple PIDF document (for the client and tests)."""
    E = f"{{{PIDF_NS}}}"
    root = etree.Element(E + "presence", nsmap={None: PIDF_NS})
    root.set("entity", entity)
    tup = etree.SubElement(root, E + "tuple", id=ncname_id(tuple_id))
    status = etree.SubElement(tup, E + "status")
    etree.SubElement(status, E + "basic").text = basic
    if contact:
        etree.SubElement(tup, E + "contact").text = contact
    if note:
        etree.SubElement(tup, E + "note").text = note
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


MEDIA_LEGACY = "application/presence"
MAX_PREFERENCE = 2**32 - 1
_ESCAPE = re.compile(r"_([0-9A-F]{2})")
_HEADER_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


def tuple_id_from_ncname(ncname: str) -> str:
    """Undo :func:`ncname_id`: ``ID-`` prefix dropped, ``_XX`` escapes decoded (as UTF-8).

    The result is a PRIM Tuple-ID header value: octets that would break the
    header (controls, space) are %-escaped (-01 ``escaped``).
    """
    text = ncname
    if text.startswith("ID-") and len(text) > 3:
        raw = bytearray()
        position = 3
        while position < len(text):
            match = _ESCAPE.match(text, position)
            if match:
                raw.append(int(match.group(1), 16))
                position = match.end()
            else:
                raw.extend(text[position].encode("utf-8"))
                position += 1
        text = raw.decode("utf-8", "replace")
    return _HEADER_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group(0).encode("utf-8")), text)


def preference_for_priority(priority: str) -> Optional[int]:
    """PIDF priority (0..1, higher is better) -> legacy preference (lower is better): round(1/p - 1).

    The inverse of :func:`priority_for_preference`; ``0`` is the worst preference
    (2^32-1); a value that is not a number in [0, 1] gives ``None`` (omitted).
    """
    try:
        value = float(priority)
    except ValueError:
        return None
    if not 0.0 <= value <= 1.0:
        return None
    if value == 0.0:
        return MAX_PREFERENCE
    return min(MAX_PREFERENCE, max(0, round(1.0 / value - 1.0)))


def rfc3339_to_rfc1123(value: str) -> Optional[str]:
    """An RFC 3339 ``<timestamp>`` in the RFC 1123 form of the legacy ``date`` attribute (numeric zone)."""
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return email.utils.format_datetime(when.replace(microsecond=0))


def _first_text(element: etree._Element, tag: str) -> Optional[str]:
    for child in element.iter(tag):
        text = (child.text or "").strip()
        if text:
            return text
    return None


def _direct_texts(element: etree._Element, tag: str) -> list[str]:
    return [(child.text or "").strip() for child in element if child.tag == tag and (child.text or "").strip()]


def _legacy_part(identifier: str, tuple_id: Optional[str], date: Optional[str],
                 contact: Optional[etree._Element], presentity: tuple[Optional[str], Optional[str]]) -> bytes:
    root = etree.Element("presence", identifier=identifier)
    if date:
        root.set("date", date)
    display_name, note = presentity
    if display_name or note:
        element = etree.SubElement(root, "presentity")
        if display_name:
            etree.SubElement(element, "display-name").text = display_name
        if note:
            etree.SubElement(element, "note").text = note
    if contact is not None:
        root.append(contact)
    xml = etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)
    headers = f"Content-Type: {MEDIA_LEGACY}\r\n"
    if tuple_id:
        headers += f"Tuple-ID: {tuple_id}\r\n"
    return headers.encode("utf-8") + b"\r\n" + xml.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def pidf_to_legacy(document: bytes) -> tuple[str, bytes]:
    """PIDF octets -> the legacy ``multipart/mixed`` of ``application/presence`` parts (-01 §15.6).

    Returns ``(content_type, body)``.  The inverse of :func:`legacy_to_pidf`;
    what the legacy form cannot hold is listed in the module docstring.

    :raise PresenceDocumentError: not a PIDF document (or a signed one: never
        converted, the caller sends it as it is).
    :raise LimitExceededError: more than ``MAX_DOCUMENT`` octets.
    """
    if len(document) > MAX_DOCUMENT:
        raise LimitExceededError("max_size", MAX_DOCUMENT, syntax="pidf")
    if b"<!DOCTYPE" in document or b"<!ENTITY" in document:
        raise PresenceDocumentError("a DOCTYPE or ENTITY declaration is not allowed in a presence document")
    try:
        root = etree.fromstring(document, _parser())
    except etree.XMLSyntaxError as error:
        raise PresenceDocumentError(f"not well-formed XML: {error.msg}", line=error.lineno) from None
    E = f"{{{PIDF_NS}}}"
    P = f"{{{PRIM_PIDF_NS}}}"
    if root.tag != E + "presence":
        raise PresenceDocumentError(f"the root element is {root.tag!r}, not a PIDF <presence>")
    identifier = root.get("entity") or ""
    if not identifier:
        raise PresenceDocumentError("the PIDF document has no entity")
    notes = _direct_texts(root, E + "note")
    names = _direct_texts(root, P + "display-name")
    parts: list[bytes] = []
    tuples = [child for child in root if child.tag == E + "tuple"]
    if len(tuples) > MAX_PARTS:
        raise LimitExceededError("max_parts", MAX_PARTS, syntax="pidf")
    for index, tup in enumerate(tuples):
        contact = etree.Element("contact")
        address = _first_text(tup, E + "contact")
        if address:
            contact.set("address", address)
        tuple_name = next(iter(_direct_texts(tup, P + "display-name")), None)
        if tuple_name:
            etree.SubElement(contact, "display-name").text = tuple_name
        status = tup.find(E + "status")
        basic = (status.findtext(E + "basic") or "").strip() if status is not None else ""
        legacy_status = etree.SubElement(contact, "status", value=basic if basic in ("open", "closed") else "closed")
        detail = (status.findtext(P + "detail") or "").strip() if status is not None else ""
        if detail:
            legacy_status.set("detail", detail)
        element = tup.find(E + "contact")
        preference = preference_for_priority(element.get("priority")) if (
            element is not None and element.get("priority") is not None) else None
        if preference is not None:
            etree.SubElement(contact, "preference", value=str(preference))
        note = next(iter(_direct_texts(tup, E + "note")), None)
        if note:
            etree.SubElement(contact, "note").text = note
        stamp = tup.findtext(E + "timestamp")
        date = rfc3339_to_rfc1123(stamp) if stamp else None
        presentity = (names[0] if index == 0 and names else None, notes[index] if index < len(notes) else None)
        parts.append(_legacy_part(identifier, tuple_id_from_ncname(tup.get("id") or f"t{index}"), date,
                                  contact, presentity))
    if not parts:
        parts.append(_legacy_part(identifier, None, None, None, (names[0] if names else None,
                                                                 notes[0] if notes else None)))
    boundary = "prim-" + hashlib.sha256(document).hexdigest()[:24]
    while any(boundary.encode("ascii") in part for part in parts):
        boundary += "x"
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts) + delimiter + b"--\r\n"
    return f'multipart/mixed; boundary="{boundary}"', body


def legacy_content(content_type: str, body: bytes) -> tuple[str, bytes]:
    """What a -01/-02 user agent receives for a presence body: PIDF converted by
    :func:`pidf_to_legacy`, anything else (a signed PIDF, a legacy document) as it is.

    A PIDF the conversion refuses is also sent unchanged (and logged): the user
    agent then gets what a server-00 one would.
    """
    media = content_type.split(";")[0].strip().lower()
    if is_signed(media) or media != "application/pidf+xml" or not body:
        return content_type, body
    try:
        return pidf_to_legacy(body)
    except (PresenceDocumentError, LimitExceededError) as error:
        _log.warn("PIDF not converted to the legacy presence document: {error}", error=error)
        return content_type, body
