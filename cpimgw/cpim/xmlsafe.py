"""Hardened XML parsing for presence documents and other untrusted XML bodies.

Every XML body that reaches the gateway from a peer (PIDF/RPID, RFC 3863 and
RFC 4480; any other ``+xml`` body) goes through :func:`parse_xml`, which:

- refuses any document type declaration outright, before libxml2 sees a byte
  of it (a prolog scan), and again after the parse (``docinfo``), so that no
  internal subset is read, no entity is ever expanded (billion laughs,
  quadratic blow-up) and no external entity or DTD is ever fetched (XXE);
- refuses processing instructions other than the XML declaration
  (RFC 6120 §11.1 makes the same rule for XMPP);
- enforces explicit limits on the size in octets, the depth of nesting and
  the number of elements, counting while it parses so that a depth or
  element bomb stops early (:class:`~cpimgw.cpim.errors.LimitExceededError`);
- accepts the encodings every peer must or may send (UTF-8, US-ASCII,
  ISO-8859-1 and UTF-16 with a byte order mark, RFC 3863 §7) and refuses the
  rest, so that an exotic encoding (UTF-7, EBCDIC...) cannot hide a DOCTYPE
  from the prolog scan;
- reports malformed XML as :class:`~cpimgw.cpim.errors.PresenceDocumentError`
  (or the error class the caller names) with line and octet offset.

See perf-reliability.md Part B1 for the attacks this answers.  The module
imports nothing of Twisted.
"""

from __future__ import annotations

import codecs
import re
from typing import Type

from lxml import etree

from cpimgw.cpim.errors import LimitExceededError, ParseError, PresenceDocumentError

DEFAULT_MAX_SIZE = 256 * 1024
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_ELEMENTS = 10000

#: Octets handed to libxml2 at a time; limits are checked between chunks.
_CHUNK = 16 * 1024

_ALLOWED_ENCODINGS = frozenset({"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "utf-16"})
_DECLARATION = re.compile(rb"^<\?xml(?=[ \t\r\n?])([^>]*?)\?>")
_ENCODING = re.compile(rb"""encoding[ \t\r\n]*=[ \t\r\n]*(?:"([^"]*)"|'([^']*)')""")


def _line_offset(text: bytes | str, index: int) -> tuple[int, int]:
    """1-based line and 0-based offset of ``index`` in ``text``."""
    newline = b"\n" if isinstance(text, bytes) else "\n"
    return text.count(newline, 0, index) + 1, index  # type: ignore[arg-type]


def _prolog_text(data: bytes, error: Type[ParseError]) -> tuple[str, bool]:
    """The document decoded for the prolog scan, and whether it was UTF-16.

    Only encodings in which ``<!DOCTYPE`` and ``<?`` cannot be disguised are
    accepted.
    """
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        try:
            return data.decode("utf-16"), True
        except UnicodeDecodeError as exc:
            raise error(f"not valid UTF-16: {exc.reason}", line=1, offset=exc.start) from None
    if data.startswith(codecs.BOM_UTF32_LE) or data.startswith(codecs.BOM_UTF32_BE):
        raise error("UTF-32 is not accepted (send UTF-8)", line=1, offset=0)
    if data[:2] in (b"\x00<", b"<\x00") or data[:4] in (b"\x00\x00\x00<", b"<\x00\x00\x00", b"\x4c\x6f\xa7\x94"):
        raise error("a document without a byte order mark must be in an ASCII-compatible encoding", line=1, offset=0)
    body = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    declaration = _DECLARATION.match(body)
    if declaration:
        match = _ENCODING.search(declaration.group(1))
        if match:
            name = (match.group(1) or match.group(2) or b"").decode("ascii", "replace").strip().lower()
            if name not in _ALLOWED_ENCODINGS or name == "utf-16":
                raise error(f"encoding {name!r} is not accepted (send UTF-8)", line=1, offset=match.start())
    # Latin-1 maps every octet to one character: offsets stay octet offsets.
    return data.decode("latin-1"), False


def _scan_prolog(text: str, error: Type[ParseError]) -> None:
    """Refuse a DOCTYPE or a processing instruction before the root element."""
    index = 1 if text.startswith("\ufeff") else 0
    if text.startswith("\xef\xbb\xbf"):
        index = 3
    declaration = re.match(r"<\?xml(?=[ \t\r\n?])[^>]*?\?>", text[index:])
    if declaration:
        index += declaration.end()
    length = len(text)
    while index < length:
        char = text[index]
        if char in " \t\r\n":
            index += 1
            continue
        if text.startswith("<!--", index):
            end = text.find("-->", index + 4)
            if end == -1:
                raise error("unterminated comment in the prolog", line=_line_offset(text, index)[0], offset=index)
            index = end + 3
            continue
        if text.startswith("<!", index):
            line, offset = _line_offset(text, index)
            raise error("document type declarations (<!DOCTYPE ...>) are not accepted", line=line, offset=offset)
        if text.startswith("<?", index):
            line, offset = _line_offset(text, index)
            raise error("processing instructions are not accepted", line=line, offset=offset)
        return  # the root element (or garbage, which the parser reports)


_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=False,
    remove_pis=False,
    strip_cdata=True,
)


def _parser() -> etree.XMLPullParser:
    return etree.XMLPullParser(events=("start", "end", "pi"), **_OPTIONS)  # type: ignore[arg-type]


def _syntax_error(exc: etree.XMLSyntaxError, data: bytes, error: Type[ParseError], max_depth: int) -> ParseError:
    if not exc.lineno:
        # lxml's feed interface loses some libxml2 messages (an undefined
        # entity gives "no element found"); the one-shot parser, with the same
        # hardened options, names the fault and its place.  The input is
        # already bounded by max_size and free of any DOCTYPE.
        try:
            etree.fromstring(data, etree.XMLParser(**_OPTIONS))  # type: ignore[arg-type]
        except etree.XMLSyntaxError as detailed:
            exc = detailed
    line = exc.lineno if exc.lineno and exc.lineno > 0 else None
    offset = None
    if line is not None:
        start = 0
        for _ in range(line - 1):
            found = data.find(b"\n", start)
            if found == -1:
                break
            start = found + 1
        column = exc.position[1] if exc.position and exc.position[1] else 1
        offset = min(start + max(column - 1, 0), len(data))
    message = (exc.msg or str(exc)).split(", line ")[0]
    if "Excessive depth" in message:
        # libxml2's own guard (256 levels) can fire inside one chunk, before
        # the events that would have tripped max_depth were read.
        return LimitExceededError("max_depth", max_depth, line=line, offset=offset, syntax=error.syntax)
    return error(f"not well-formed XML: {message}", line=line, offset=offset)


def parse_xml(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    error: Type[ParseError] = PresenceDocumentError,
) -> etree._Element:
    """Parse untrusted XML octets into an lxml element, or raise.

    :param data: the XML document, octets as received.
    :param max_size: the largest document accepted, in octets.
    :param max_depth: the deepest nesting of elements accepted (the root is
        at depth 1).
    :param max_elements: the most elements accepted in the whole document.
    :param error: the :class:`ParseError` subclass raised for bad XML.
    :raises LimitExceededError: a limit was exceeded (``limit`` names which).
    :raises ParseError: (``error``) the XML is malformed, has a DOCTYPE, a
        processing instruction, an undefined entity or a refused encoding.
    :returns: the root element; ``getroottree()`` gives the document.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise error("an XML document must be given as octets")
    data = bytes(data)
    if len(data) > max_size:
        raise LimitExceededError("max_size", max_size, offset=max_size, syntax=error.syntax)
    if not data.strip():
        raise error("the document is empty", line=1, offset=0)
    text, _ = _prolog_text(data, error)
    _scan_prolog(text, error)

    parser = _parser()
    depth = 0
    elements = 0
    try:
        for start in range(0, len(data), _CHUNK):
            parser.feed(data[start : start + _CHUNK])
            for event, node in parser.read_events():
                if event == "start":
                    depth += 1
                    elements += 1
                    if depth > max_depth:
                        raise LimitExceededError("max_depth", max_depth, line=node.sourceline, syntax=error.syntax)
                    if elements > max_elements:
                        raise LimitExceededError(
                            "max_elements", max_elements, line=node.sourceline, syntax=error.syntax
                        )
                elif event == "end":
                    depth -= 1
                else:  # "pi"
                    raise error("processing instructions are not accepted", line=node.sourceline)
        root = parser.close()
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, data, error, max_depth) from None
    for event, node in parser.read_events():  # events produced by close()
        if event == "pi":
            raise error("processing instructions are not accepted", line=node.sourceline)
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise error("document type declarations (<!DOCTYPE ...>) are not accepted", line=1)
    for sibling in list(root.itersiblings(preceding=True)) + list(root.itersiblings()):
        if isinstance(sibling, etree._ProcessingInstruction):
            raise error("processing instructions are not accepted", line=sibling.sourceline)
    for node in root.iter(etree.Entity, etree.ProcessingInstruction):
        raise error("entity references and processing instructions are not accepted", line=node.sourceline)
    return root
