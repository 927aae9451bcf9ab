"""RFC 3923 signed and encrypted objects in XMPP messages: ``<e2e xmlns='urn:ietf:params:xml:ns:xmpp-e2e'/>``.

RFC 3923 §3-§6: the sender signs (``multipart/signed``, RFC 5751 §3.5 /
RFC 1847) or encrypts (``application/pkcs7-mime``) a Message/CPIM object
(RFC 3862) and sends the resulting MIME entity -- its header lines, an empty
line, its body -- as the character data of ``<e2e/>``.  This module is the
pure translation between that text and a bus :class:`~cpimgw.cpim.operations.Content`
whose media type and parameters are the entity's ``Content-Type`` and whose
octets are its body, untouched by the gateway (RFC 3923 §8: a gateway passes
the object on, it cannot and must not re-sign it).

Line ends.  S/MIME signs the *canonical* form of the entity: every line
ends with CRLF (RFC 5751 §3.1.1, RFC 2046 §4.1.1), and that is what the
bus carries, byte for byte.  XML, however, normalises CR LF (and a lone CR)
to LF in character data (XML 1.0 §2.11), so text that crossed an XMPP
server reaches us LF-only, unless the sender escaped each CR as ``&#13;``.
The decision here:

- inbound (:func:`content_from_e2e`): every line end -- CRLF, LF or a lone
  CR -- is restored to CRLF before anything else (RFC 5751 §3.1.1
  canonicalisation, which is what the signer hashed), so the signature
  verifies at the receiver whether or not the sender escaped CR; leading
  white space before the first header (an ``<e2e>`` pretty-printed on its
  own line, RFC 3923's CDATA examples) is not part of the entity, and
  white space after its last line is kept as one line end (a MIME body's
  epilogue, RFC 2046 §5.1.1, is not signed);
- outbound (:func:`e2e_element`): the canonical CRLF octets are written
  with each CR escaped as ``&#13;``, so the element's XML character data is
  exactly the canonical entity; a receiver behind a server that re-serialises
  it without the escape gets LF line ends and restores CRLF the same way.

A binary body (``application/pkcs7-mime`` carries a DER CMS object on the
bus, as SIP does, RFC 3261 §23) is written base64 with
``Content-Transfer-Encoding: base64`` (RFC 3923 §6, RFC 5751 §3.1.2) and
decoded again on the way in; a ``multipart/signed`` body is 7-bit text
(RFC 1847 §2.1) and travels as it is.

An XMPP client's ``message`` event and an ordinary user need a
``<body/>``: :func:`fallback_text` is the text of the signed Message/CPIM's
``text/plain`` part when there is one, else ``[signed message]`` /
``[encrypted message]``.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re

from twisted.words.xish import domish

from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.message import find_cpim_in_multipart
from cpimgw.cpim.operations import Content

#: RFC 3923 §9 namespace of ``<e2e/>``.
NS_E2E = "urn:ietf:params:xml:ns:xmpp-e2e"
#: The media types that are end-to-end secured objects (RFC 3923 §3.1, §3.2; RFC 5751 §3.2).
SIGNED_TYPES = frozenset({"multipart/signed"})
ENCRYPTED_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
SECURED_TYPES = SIGNED_TYPES | ENCRYPTED_TYPES
#: What the largest entity may weigh (the stanza limit normally comes first).
MAX_ENTITY_SIZE = 1 << 20
MAX_HEADERS = 32

_LINE_END = re.compile(rb"\r\n|\r|\n")
_XML_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TSPECIALS = re.compile(r'[()<>@,;:\\"/\[\]?=\s]')
_HEADER_NAME = re.compile(r"[!-9;-~]+\Z")


class E2EError(ParseError):
    """An ``<e2e/>`` payload that is not a usable MIME entity, or content that cannot be one."""

    syntax = "xmpp-e2e"


def is_secured(media_type: str) -> bool:
    """Whether ``media_type`` (bare ``type/subtype``) is a signed or encrypted S/MIME object."""
    return media_type.lower() in SECURED_TYPES


def canonical_line_ends(data: bytes) -> bytes:
    """Every line end of ``data`` (CRLF, LF or a lone CR) written CRLF (RFC 5751 §3.1.1)."""
    return _LINE_END.sub(b"\r\n", data)


def split_content_type(value: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``(media_type, parameters)`` of a Content-Type value; parameter values keep their quotes.

    Kept quoted so that :attr:`Content.content_type` writes them back as
    valid MIME (a ``protocol="application/pkcs7-signature"`` needs them).
    """
    media, _, rest = value.partition(";")
    params: list[tuple[str, str]] = []
    index, length = 0, len(rest)
    while index < length:
        while index < length and rest[index] in " \t;":
            index += 1
        equals = rest.find("=", index)
        if equals < 0:
            break
        name = rest[index:equals].strip()
        index = equals + 1
        while index < length and rest[index] in " \t":
            index += 1
        if index < length and rest[index] == '"':
            end = index + 1
            while end < length and rest[end] != '"':
                end += 2 if rest[end] == "\\" else 1
            value_text = rest[index : end + 1]
            index = end + 1
        else:
            end = rest.find(";", index)
            end = length if end < 0 else end
            value_text = rest[index:end].strip()
            index = end
        if name:
            params.append((name, value_text))
    return media.strip().lower(), tuple(params)


def _param_value(value: str) -> str:
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return value
    if value and not _TSPECIALS.search(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_content_type(content: Content) -> str:
    """The entity's ``Content-Type`` value: ``type/subtype; name=value...`` (values quoted where MIME needs it)."""
    return content.media_type + "".join(f"; {name}={_param_value(value)}" for name, value in content.parameters)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _headers(block: bytes) -> list[tuple[str, str]]:
    """The header fields of a MIME header block (CRLF lines, RFC 5322 §2.2.3 folding unfolded)."""
    fields: list[list[str]] = []
    for number, raw in enumerate(block.split(b"\r\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise E2EError("a header line is not UTF-8", line=number) from None
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon or not _HEADER_NAME.match(name):
            raise E2EError(f"not a MIME header line: {line[:60]!r}", line=number)
        fields.append([name, value.strip()])
        if len(fields) > MAX_HEADERS:
            raise E2EError(f"more than {MAX_HEADERS} header lines", line=number)
    return [(name, value) for name, value in fields]


def content_from_e2e(text: str, *, max_size: int = MAX_ENTITY_SIZE) -> Content:
    """The bus Content of the MIME entity that is the text of an ``<e2e/>`` (RFC 3923 §3).

    Line ends are made canonical (CRLF) first (see the module docstring);
    the body is then taken byte for byte, decoded only when its
    ``Content-Transfer-Encoding`` is base64 or quoted-printable.

    :raise E2EError: no header block, no Content-Type, a type that is not a
        signed or encrypted object, a bad transfer encoding, or too large.
    """
    data = text.lstrip(" \t\r\n").encode("utf-8")
    if len(data) > max_size:
        raise E2EError(f"the <e2e/> entity is larger than {max_size} octets")
    data = canonical_line_ends(data)
    stripped = data.rstrip(b" \t\r\n")
    if b"\r\n" in data[len(stripped) :]:
        data = stripped + b"\r\n"  # the newline and indentation before </e2e> are not part of the entity
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        raise E2EError("the <e2e/> text has no MIME header block (headers, an empty line, the body)")
    headers = _headers(head)
    content_type = next((value for name, value in headers if name.lower() == "content-type"), None)
    if content_type is None:
        raise E2EError("the <e2e/> entity has no Content-Type")
    media, params = split_content_type(content_type)
    if not is_secured(media):
        raise E2EError(f"{media} is not a signed or encrypted object (RFC 3923 §3: multipart/signed, "
                       "application/pkcs7-mime)")
    if media in SIGNED_TYPES and not any(name.lower() == "boundary" and _unquote(value) for name, value in params):
        raise E2EError("multipart/signed without a boundary parameter")
    encoding = next((value for name, value in headers if name.lower() == "content-transfer-encoding"), "7bit")
    encoding = encoding.strip().lower()
    if encoding == "base64":
        try:
            body = base64.b64decode(re.sub(rb"[\r\n\t ]", b"", body), validate=True)
        except (binascii.Error, ValueError):
            raise E2EError("the body is not base64 although its Content-Transfer-Encoding says so") from None
    elif encoding == "quoted-printable":
        body = quopri.decodestring(body)
    elif encoding not in ("7bit", "8bit", "binary"):
        raise E2EError(f"unknown Content-Transfer-Encoding {encoding!r}")
    return Content(media, body, params)


def entity_text(content_type: str, body: bytes, transfer_encoding: str | None = None) -> str:
    """The canonical MIME entity (CRLF lines) of ``body`` under ``content_type``, as text for ``<e2e/>``.

    A body that is not UTF-8 text without control characters is written
    base64 (``Content-Transfer-Encoding: base64``, 76-character lines); a
    multipart body cannot be (RFC 2045 §6.4) and is refused.

    :param transfer_encoding: the encoding ``body`` is already in (a
        Message/CPIM wrapper's ``Content-Transfer-Encoding``), written as it is.
    :raise E2EError: a multipart body that is not 7/8-bit text.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    head = f"Content-Type: {content_type}\r\n"
    if transfer_encoding:
        head += f"Content-Transfer-Encoding: {transfer_encoding}\r\n"
        text = body.decode("utf-8", errors="strict") if _is_text(body) else None
        if text is None:
            raise E2EError(f"a {transfer_encoding} body with octets XML cannot carry")
        return head + "\r\n" + text
    if _is_text(body):
        return head + "\r\n" + body.decode("utf-8")
    if media.startswith("multipart/"):
        raise E2EError(f"a {media} body that is not text cannot be carried in <e2e/> (RFC 2045 §6.4)")
    encoded = base64.encodebytes(body).replace(b"\n", b"\r\n").decode("ascii")
    return head + "Content-Transfer-Encoding: base64\r\n\r\n" + encoded


def _is_text(body: bytes) -> bool:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _XML_FORBIDDEN.search(text) is None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def e2e_element(text: str) -> domish.Element:
    """``<e2e xmlns='urn:ietf:params:xml:ns:xmpp-e2e'>`` with ``text`` as character data, each CR as ``&#13;``."""
    element = domish.Element((NS_E2E, "e2e"))
    element.addRawXml(_escape(text))
    return element


def e2e_text(element: domish.Element) -> str:
    """The character data of a received ``<e2e/>`` element."""
    return "".join(str(part) for part in element.children if isinstance(part, str))


def find_e2e(stanza: domish.Element) -> domish.Element | None:
    """The stanza's ``<e2e xmlns='urn:ietf:params:xml:ns:xmpp-e2e'/>`` child, if any."""
    for child in stanza.elements(NS_E2E, "e2e"):
        return child
    return None


def fallback_text(content_type: str, body: bytes) -> str:
    """What an ordinary client shows for a secured object: the signed text, else a label.

    For ``multipart/signed``: the ``text/plain`` (UTF-8 or US-ASCII) body of
    the signed Message/CPIM object (RFC 3923 §3.1), or of a signed
    ``text/plain`` part; otherwise ``[signed message]``.  Encrypted
    objects are ``[encrypted message]`` (or ``[signed message]`` for an
    ``smime-type=signed-data`` object, RFC 5751 §3.2.2).
    """
    media, params = split_content_type(content_type)
    values = {name.lower(): _unquote(value).lower() for name, value in params}
    if media in ENCRYPTED_TYPES:
        return "[signed message]" if values.get("smime-type") == "signed-data" else "[encrypted message]"
    if media not in SIGNED_TYPES:
        return f"[{media} message]"
    try:
        inner = find_cpim_in_multipart(body, content_type)
    except ParseError:
        inner = None
    if inner is not None:
        kind, inner_params = split_content_type(inner.content_type or "text/plain")
        charset = {n.lower(): _unquote(v).lower() for n, v in inner_params}.get("charset", "us-ascii")
        if kind == "text/plain" and charset in ("utf-8", "utf8", "us-ascii"):
            try:
                return inner.body.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return "[signed message]"
    text = _first_text_part(body, values.get("boundary", ""))
    return text if text is not None else "[signed message]"


def _first_text_part(body: bytes, boundary: str) -> str | None:
    """The first part of a multipart body when it is UTF-8/US-ASCII ``text/plain`` (RFC 2046 §5.1.1)."""
    if not boundary:
        return None
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2 : start] != b"\r\n"):
        return None
    line_end = body.find(b"\r\n", start)
    end = body.find(b"\r\n" + delimiter, line_end)
    if line_end < 0 or end < 0:
        return None
    part = body[line_end + 2 : end]
    head, separator, text = part.partition(b"\r\n\r\n")
    if part.startswith(b"\r\n"):
        head, text = b"", part[2:]
    elif not separator:
        return None
    try:
        headers = _headers(head) if head else []
    except E2EError:
        return None
    kind, params = split_content_type(next((v for n, v in headers if n.lower() == "content-type"), "text/plain"))
    charset = {n.lower(): _unquote(v).lower() for n, v in params}.get("charset", "us-ascii")
    encoding = next((v for n, v in headers if n.lower() == "content-transfer-encoding"), "7bit").strip().lower()
    if kind != "text/plain" or charset not in ("utf-8", "utf8", "us-ascii") or encoding not in ("7bit", "8bit"):
        return None
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        return None


__all__ = [
    "E2EError", "ENCRYPTED_TYPES", "NS_E2E", "SECURED_TYPES", "SIGNED_TYPES", "canonical_line_ends",
    "content_from_e2e", "e2e_element", "e2e_text", "entity_text", "fallback_text", "find_e2e",
    "format_content_type", "is_secured", "split_content_type",
]
