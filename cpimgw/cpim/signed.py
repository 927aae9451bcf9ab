"""Signed presence documents: a PIDF inside ``multipart/signed`` (RFC 1847, RFC 5751, RFC 3863 §4).

RFC 3859 §3.1 / RFC 3863 §4 let a presentity sign its document end to end:
the document is the first part of a ``multipart/signed`` whose second part
is the signature (``application/pkcs7-signature``).  A gateway cannot check
the signature for the watcher (it has not the watcher's trust anchors) and
must not change one octet of the signed entity; what it can and does check
before accepting such a publication (:func:`signed_pidf`):

- the body is a well-formed RFC 2046 §5.1.1 multipart with the boundary of
  its Content-Type and exactly two parts (RFC 1847 §2.1);
- the first part is ``application/pidf+xml`` (or the draft name
  ``application/cpim-pidf+xml``) and parses as PIDF
  (:func:`cpimgw.cpim.pidf.parse_pidf`);
- its ``entity`` is the publisher (the same principal), so that nobody
  publishes a document signed for somebody else through us.

The octets are then relayed unchanged.  :func:`inner_pidf` gives the first
part's PIDF octets for a receiver that cannot take ``multipart/signed``
(a SIP watcher whose Accept does not list it, RFC 3856 §6.7 / RFC 3261
§8.2.3): the signed entity's body, octet for octet, without its signature.

Pure: nothing here imports Twisted or an adapter.
"""

from __future__ import annotations

import base64
import binascii
from typing import Iterable

import attrs

from cpimgw.cpim.errors import PresenceDocumentError
from cpimgw.cpim.uri import CPIMURI

MEDIA_SIGNED = "multipart/signed"
PIDF_TYPES = ("application/pidf+xml", "application/cpim-pidf+xml")
#: The most header lines the signed part may have (a MIME entity's own headers).
MAX_PART_HEADERS = 32


@attrs.frozen
class SignedPart:
    """The signed entity of a ``multipart/signed`` body.

    :ivar headers: its MIME headers, ``(name, value)`` as written.
    :ivar body: its body octets (the transfer encoding undone), e.g. the PIDF document.
    :ivar media_type: its Content-Type's type/subtype, lower case.
    """

    headers: tuple[tuple[str, str], ...]
    body: bytes
    media_type: str


def _params(parameters: Iterable[tuple[str, str]] | str) -> dict[str, str]:
    """Content-Type parameters (a full ``type/subtype;k=v`` string or pairs) -> lower-case names, unquoted values."""
    if isinstance(parameters, str):
        pairs = []
        for piece in parameters.split(";")[1:]:
            name, _, value = piece.partition("=")
            pairs.append((name, value))
        parameters = pairs
    out: dict[str, str] = {}
    for name, value in parameters:
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[name.strip().lower()] = value
    return out


def _fail(reason: str, offset: int | None = None) -> PresenceDocumentError:
    return PresenceDocumentError(f"multipart/signed presence: {reason}", offset=offset)


def _parts(body: bytes, boundary: str) -> list[tuple[int, int]]:
    """(start, end) of each body part between the delimiters (RFC 2046 §5.1.1: the CRLF before a
    delimiter belongs to the delimiter)."""
    delimiter = b"--" + boundary.encode("utf-8")
    positions = []
    search = 0
    while True:
        found = body.find(delimiter, search)
        if found < 0:
            raise _fail("no closing delimiter", len(body))
        search = found + len(delimiter)
        if found != 0 and body[found - 2:found] != b"\r\n":
            continue  # not at the start of a line
        close = body.startswith(b"--", search)
        if not close:
            eol = body.find(b"\r\n", search)
            if eol < 0 or body[search:eol].strip(b" \t"):
                continue  # a line that only begins with the boundary text
        positions.append((found, search, close))
        if close:
            break
    parts = []
    for (start, after, close), (next_start, _, _) in zip(positions, positions[1:]):
        if close:
            break
        part_start = body.find(b"\r\n", after) + 2
        parts.append((part_start, max(part_start, next_start - 2)))
    return parts


def signed_part(body: bytes, parameters: Iterable[tuple[str, str]] | str) -> SignedPart:
    """The first (signed) part of a ``multipart/signed`` body.

    :param parameters: the body's Content-Type parameters (pairs) or its whole Content-Type.
    :raise PresenceDocumentError: no boundary, not two parts, bad part headers.
    """
    params = _params(parameters)
    boundary = params.get("boundary")
    if not boundary or len(boundary) > 70:
        raise _fail("no usable boundary parameter (RFC 2046 §5.1.1)")
    parts = _parts(body, boundary)
    if len(parts) != 2:
        raise _fail(f"{len(parts)} parts; RFC 1847 §2.1 wants the signed entity and the signature")
    start, end = parts[0]
    part = body[start:end]
    split = part.find(b"\r\n\r\n")
    if part.startswith(b"\r\n"):
        head, content = b"", part[2:]
    elif split < 0:
        raise _fail("the signed part has no blank line after its headers", start)
    else:
        head, content = part[:split], part[split + 4:]
    headers: list[tuple[str, str]] = []
    for line in head.split(b"\r\n") if head else ():
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip().decode("utf-8", "replace"))
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise _fail(f"bad header line {line[:40]!r} in the signed part", start)
        headers.append((name.strip().decode("ascii", "replace"), value.strip().decode("utf-8", "replace")))
        if len(headers) > MAX_PART_HEADERS:
            raise _fail(f"more than {MAX_PART_HEADERS} headers in the signed part", start)
    values = {name.lower(): value for name, value in headers}
    content_type = values.get("content-type", "text/plain")
    media_type = content_type.split(";", 1)[0].strip().lower()
    encoding = values.get("content-transfer-encoding", "").strip().lower()
    if encoding == "base64":
        try:
            content = base64.b64decode(b"".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _fail("the signed part is not valid base64", start) from None
    elif encoding not in ("", "7bit", "8bit", "binary"):
        raise _fail(f"Content-Transfer-Encoding {encoding!r} of the signed part is not supported", start)
    return SignedPart(tuple(headers), content, media_type)


def is_signed(media_type: str) -> bool:
    return media_type.strip().lower() == MEDIA_SIGNED


def inner_pidf(body: bytes, parameters: Iterable[tuple[str, str]] | str) -> bytes:
    """The PIDF octets a ``multipart/signed`` presence body signs (its first part's body).

    :raise PresenceDocumentError: not a signed PIDF.
    """
    part = signed_part(body, parameters)
    if part.media_type not in PIDF_TYPES:
        raise _fail(f"the signed part is {part.media_type}, not application/pidf+xml")
    return part.body


def signed_pidf(body: bytes, parameters: Iterable[tuple[str, str]] | str, presentity: CPIMURI | None) -> bytes:
    """Check a signed presence publication; return the PIDF octets it signs.

    :param presentity: the publisher; the document's ``entity`` must name
        the same principal (``None``: not checked).
    :raise PresenceDocumentError: not two parts, the first not a PIDF
        document, a PIDF that does not parse, or one for another entity.
    """
    from cpimgw.cpim.pidf import parse_pidf

    document_octets = inner_pidf(body, parameters)
    document = parse_pidf(document_octets)
    if presentity is not None:
        entity = document.entity
        if not isinstance(entity, CPIMURI) or not entity.same_principal(presentity):
            raise _fail(f"the signed document is for {entity}, not for the publisher {presentity}")
    return document_octets
