"""Message/CPIM codec (RFC 3862), byte-exact.

A Message/CPIM object is relayed by the gateway exactly as received (RFC 3862
§6 and §9: no header edits, no reordering, no re-encoding), so the parser
keeps every octet: :meth:`CPIMMessage.to_bytes` returns the parsed input, and
the decoded view sits beside the raw lines.

Layout (RFC 3862 §2, digest §4.1)::

    [MIME headers naming Message/CPIM, CRLF]   optional: when the carrying
                                               protocol did not say message/cpim
    CPIM message headers, CRLF                 strict syntax, §2.2 / §3
    encapsulated MIME headers, CRLF            MIME (RFC 2045) syntax
    body                                       framed by the length of the input

Rules followed:

- §2.2 / §3.1: one header per line, no folding, CRLF line ends, exactly one
  SP after the colon (after the parameters if any), no whitespace at the
  start or end of a line, UTF-8 only, header names case-sensitive, raw
  control characters never appear.
- §2.3 / §2.3.1: escapes ``\\uXXXX`` (any case) ``\\\\ \\" \\' \\b \\t \\n \\r``;
  an unknown escape decodes as the character after the backslash, a lone
  backslash that ends a header is ignored.  The builder escapes only what
  §2.3.1 requires.
- §3.2 language parameter, §3.3 / §3.4 namespaces (``NS: prefix <URI>``,
  ``NS: <URI>`` changing the default for later lines), §3.5 ``Require``.
- §4 core headers (From, To, cc, DateTime, Subject, NS, Require) in
  ``urn:ietf:params:cpim-headers:``; repetition profile of MSRP (RFC 4975),
  which the gateway adopts: only NS, To and cc repeat, Subject repeats with
  different languages, From and To are required.
- DateTime is RFC 3339 (lower-case ``t``/``z`` accepted on input).
- §5.2: a multipart/signed body is relayed opaque; :func:`find_cpim_in_multipart`
  reads the signed Message/CPIM part without altering a byte.

Decisions where the text leaves room (gw):

- A quoted display name may be followed by one SP before ``<`` or none (the
  ABNF has none, the examples and peers write one); the builder writes one.
  ``NS: Prefix <URI>`` likewise takes one SP or none.
- An empty header value (``Subject: ``) is accepted: the SP is the mandated
  separator.  A value that begins or ends with SP cannot be written (no
  escape is allowed for it), so :func:`build_message` refuses it.
- URIs in ``<...>`` are RFC 2396 absolute URIs: US-ASCII, no SP, no ``<>"\\``.
- ``Require`` is checked after the whole object parsed; names resolve through
  the NS declarations in force at the ``Require`` line, and a prefixed name
  whose prefix is not declared is an abstract feature token.
- A structured value (From, To, cc) is parsed from the raw value, so
  :attr:`CPIMHeader.value` of those is only a convenience view.

Every rejection is a :class:`~cpimgw.cpim.errors.MessageFormatError` (or
:class:`~cpimgw.cpim.errors.NotUnderstoodError`,
:class:`~cpimgw.cpim.errors.LimitExceededError`) with a line and an octet
offset into the input.
"""

from __future__ import annotations

import base64
import codecs
import datetime
import functools
import re
from typing import Iterable, Sequence, Union

import attrs

from cpimgw.cpim.errors import (
    LimitExceededError,
    MessageFormatError,
    NotUnderstoodError,
    ParseError,
    URIError,
)
from cpimgw.cpim.uri import CPIMURI, SCHEMES, parse_uri

__all__ = [
    "CORE_NAMESPACE",
    "CORE_HEADERS",
    "DEFAULT_CONTENT_TYPE",
    "CPIMAddress",
    "CPIMDateTime",
    "CPIMHeader",
    "CPIMMessage",
    "NSDeclaration",
    "build_message",
    "decode_escapes",
    "encode_escapes",
    "find_cpim_in_multipart",
    "format_date_time",
    "parse_date_time",
    "parse_message",
    "qualified_name",
]

CORE_NAMESPACE = "urn:ietf:params:cpim-headers:"
CORE_HEADERS = frozenset({"From", "To", "cc", "DateTime", "Subject", "NS", "Require"})
DEFAULT_CONTENT_TYPE = "text/plain; charset=us-ascii"
MAX_SIZE = 1 << 20
MAX_HEADERS = 1000
_REPEATABLE = frozenset({"NS", "To", "cc"})

# --- character classes of RFC 3862 §3.6 (digest §4.3) --------------------------

_NAMECHAR = r"!#-'*+\-0-9A-Z^-z|~"
_TOKENCHAR = _NAMECHAR + r".\u0080-\U0010ffff"
_NAME = rf"[{_NAMECHAR}]+"
_NAME_RE = re.compile(rf"{_NAME}\Z")
_TOKEN_RE = re.compile(rf"[{_TOKENCHAR}]+\Z")
_HEADER_NAME_RE = re.compile(rf"({_NAME})(?:\.({_NAME}))?:")
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_PARAM_RE = re.compile(rf";({_NAME})=(?:{_QUOTED}|([{_TOKENCHAR}]+))", re.S)
_PARAMS_RE = re.compile(rf'(?:;{_NAME}=(?:"(?:[^"\\]|\\.)*"|[{_TOKENCHAR}]+))*', re.S)
# One pass over a well-formed header line: name, parameters, one SP, value
# with no space at either end; anything else goes to _diagnose.
_LINE_RE = re.compile(
    rf"({_NAME})(?:\.({_NAME}))?:({_PARAMS_RE.pattern}) ((?! ).*(?<! )|)\Z", re.S
)
_NAME_OR_DOT_RE = re.compile(rf"[{_NAMECHAR}.]*")
_LANG_RE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*\Z")
_ABS_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[!#-;=?-\[\]-~]+\Z")
_ADDRESS_RE = re.compile(
    rf'(?:{_QUOTED} ?|((?:(?:[{_TOKENCHAR}]|\\[^ ])+ )+))?<([^<>]*)>\Z', re.S
)
_NS_RE = re.compile(rf"(?:({_NAME}) ?)?<([^<>]*)>\Z")
_HEADER_NAME_VALUE = rf"{_NAME}(?:\.{_NAME})?"
_REQUIRE_RE = re.compile(rf"{_HEADER_NAME_VALUE}(?:,{_HEADER_NAME_VALUE})*\Z")
_DISPLAY_TOKENS_RE = re.compile(rf"[{_TOKENCHAR}]+(?: [{_TOKENCHAR}]+)*\Z")
_DATE_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)
_CTL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
_MIME_CTL_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_MIME_NAME_RE = re.compile(r"([!-9;-~]+):")
_MIME_FIELD_NAME_RE = re.compile(r"[!-9;-~]+\Z")
_BARE_EOL = re.compile(rb"(?<!\r)\n|\r(?!\n)")

_ESCAPE_RE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.|\Z)", re.S)
_SHORT_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "r": "\r"}
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_MUST_ESCAPE = re.compile(r"[\x00-\x1f\x7f\\]")
_MUST_ESCAPE_QUOTED = re.compile(r'[\x00-\x1f\x7f\\"]')
_ESCAPE_OUT = {"\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\r": "\\r", '"': '\\"'}


# --- escapes (§2.3) ---------------------------------------------------------------


def _unescape(match: re.Match[str]) -> str:
    text = match.group(1)
    if not text:
        return ""  # a lone backslash that ends the header is ignored
    if len(text) == 5:
        return chr(int(text[1:], 16))
    return _SHORT_ESCAPES.get(text, text)


def decode_escapes(text: str) -> str:
    """Decode the §2.3 escapes of a header value (or of a quoted string's inside).

    ``\\uXXXX`` pairs that form a UTF-16 surrogate pair become one character;
    a lone surrogate is kept as it is.
    """
    if "\\" not in text:
        return text
    decoded = _ESCAPE_RE.sub(_unescape, text)
    if _SURROGATE_RE.search(decoded):
        decoded = decoded.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return decoded


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    short = _ESCAPE_OUT.get(char)
    return short if short is not None else f"\\u{ord(char):04X}"


def encode_escapes(text: str, *, quoted: bool = False) -> str:
    """Escape ``text`` as §2.3.1 requires of generators and nothing more.

    Short forms for backslash, BS, TAB, LF and CR; ``\\uXXXX`` for every other
    control; ``\\"`` as well when ``quoted`` (inside a double-quoted string).
    """
    pattern = _MUST_ESCAPE_QUOTED if quoted else _MUST_ESCAPE
    return pattern.sub(_escape_char, text)


def qualified_name(namespace: str, name: str) -> str:
    """The namespace-qualified name of a header, ``{namespace}name`` (Clark notation).

    This is the form :func:`parse_message` accepts in ``understood``.
    """
    return f"{{{namespace}}}{name}"


# --- values -------------------------------------------------------------------------


@attrs.frozen
class CPIMAddress:
    """A From / To / cc value (§4.1-4.3): optional display name and a URI.

    :ivar display_name: the Formal-name decoded, or ``None`` when absent.
    :ivar uri: the URI between ``<`` and ``>``, as written.
    :ivar cpim_uri: the parsed URI when it is ``im:`` or ``pres:``, else ``None``.
    """

    display_name: str | None
    uri: str
    cpim_uri: CPIMURI | None = None

    def __str__(self) -> str:
        """The canonical header value (what :func:`build_message` writes)."""
        return _format_address(self.display_name, self.uri)

    def to_dict(self) -> dict[str, object]:
        return {"display_name": self.display_name, "uri": self.uri}


@attrs.frozen
class CPIMDateTime:
    """A DateTime value (§4.4): the text as written and the instant it names."""

    text: str
    value: datetime.datetime


@attrs.frozen
class NSDeclaration:
    """An ``NS`` header (§3.3 / §4.6): ``prefix`` is ``None`` for the default namespace."""

    prefix: str | None
    uri: str


@attrs.frozen
class CPIMHeader:
    """One Message/CPIM header line, raw and decoded.

    :ivar raw: the octets of the line, without its CRLF.
    :ivar name: the header name as written (``MyFeatures.VitalMessageOption``).
    :ivar prefix: the namespace prefix, or ``None``.
    :ivar namespace: the namespace URI the name resolves to.
    :ivar local_name: the name without its prefix.
    :ivar params: every parameter (``lang`` included) in order, quoted strings decoded.
    :ivar raw_value: the value as written (escapes intact).
    :ivar value: the value with the §2.3 escapes decoded.
    :ivar line: 1-based line number in the parsed input.
    :ivar offset: octet offset of the line in the parsed input.
    :ivar parsed: the structured value of a core header: :class:`CPIMAddress`
        (From, To, cc), :class:`CPIMDateTime`, :class:`NSDeclaration`, the
        ``Require`` names (a tuple of str), else ``None``.
    """

    raw: bytes
    name: str
    prefix: str | None
    namespace: str
    local_name: str
    params: tuple[tuple[str, str], ...]
    raw_value: str
    value: str
    line: int
    offset: int
    parsed: CPIMAddress | CPIMDateTime | NSDeclaration | tuple[str, ...] | None = None

    @property
    def lang(self) -> str | None:
        """The ``lang`` parameter (§3.2), or ``None`` (``i-default``)."""
        for key, value in self.params:
            if key == "lang":
                return value
        return None

    @property
    def qualified_name(self) -> str:
        return qualified_name(self.namespace, self.local_name)

    @property
    def is_core(self) -> bool:
        return self.namespace == CORE_NAMESPACE and self.local_name in CORE_HEADERS


@attrs.frozen
class CPIMMessage:
    """A parsed Message/CPIM object; :meth:`to_bytes` gives back the input octets.

    :ivar mime_headers: the outer MIME headers (name, unfolded value), empty
        when the input began with the CPIM headers.
    :ivar headers: the CPIM message headers, in order.
    :ivar content_headers: the encapsulated MIME headers (name, unfolded value).
    :ivar body: the encapsulated body octets, never decoded.
    :ivar raw: every octet that was parsed.
    :ivar body_offset: where ``body`` starts in ``raw``.
    """

    mime_headers: tuple[tuple[str, str], ...]
    headers: tuple[CPIMHeader, ...]
    content_headers: tuple[tuple[str, str], ...]
    body: bytes
    raw: bytes
    body_offset: int

    def to_bytes(self) -> bytes:
        """The exact octets this message was parsed from."""
        return self.raw

    def _core(self, name: str) -> Iterable[CPIMHeader]:
        return (h for h in self.headers if h.local_name == name and h.namespace == CORE_NAMESPACE)

    @property
    def sender(self) -> CPIMAddress:
        """The From address (always present in a parsed message)."""
        return next(iter(self._core("From"))).parsed  # type: ignore[return-value]

    @property
    def recipients(self) -> tuple[CPIMAddress, ...]:
        """The To addresses, in order."""
        return tuple(h.parsed for h in self._core("To"))  # type: ignore[misc]

    @property
    def cc(self) -> tuple[CPIMAddress, ...]:
        """The cc addresses, in order."""
        return tuple(h.parsed for h in self._core("cc"))  # type: ignore[misc]

    @property
    def date_time(self) -> CPIMDateTime | None:
        for header in self._core("DateTime"):
            return header.parsed  # type: ignore[return-value]
        return None

    @property
    def subjects(self) -> tuple[tuple[str | None, str], ...]:
        """(language or ``None``, decoded text) of every Subject, in order."""
        return tuple((h.lang, h.value) for h in self._core("Subject"))

    @property
    def namespaces(self) -> tuple[NSDeclaration, ...]:
        """The NS declarations, in order."""
        return tuple(h.parsed for h in self._core("NS"))  # type: ignore[misc]

    @property
    def require(self) -> tuple[str, ...]:
        """The names listed by ``Require``, as written."""
        for header in self._core("Require"):
            return header.parsed  # type: ignore[return-value]
        return ()

    @property
    def extension_headers(self) -> tuple[tuple[str, str, str, tuple[tuple[str, str], ...]], ...]:
        """(namespace URI, local name, decoded value, params) of every non-core header."""
        return tuple(
            (h.namespace, h.local_name, h.value, h.params) for h in self.headers if not h.is_core
        )

    def header(self, namespace: str, name: str) -> CPIMHeader | None:
        """The first header with this namespace URI and local name, or ``None``."""
        for header in self.headers:
            if header.local_name == name and header.namespace == namespace:
                return header
        return None

    def headers_named(self, namespace: str, name: str) -> tuple[CPIMHeader, ...]:
        """Every header with this namespace URI and local name, in order."""
        return tuple(h for h in self.headers if h.local_name == name and h.namespace == namespace)

    def content_header(self, name: str) -> str | None:
        """An encapsulated MIME header's value (name compared without case)."""
        key = name.lower()
        for header_name, value in self.content_headers:
            if header_name.lower() == key:
                return value
        return None

    @property
    def content_type(self) -> str:
        """The encapsulated Content-Type, ``text/plain; charset=us-ascii`` by default."""
        value = self.content_header("content-type")
        return DEFAULT_CONTENT_TYPE if value is None else value

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly abstract form of the message (decoded values)."""
        date_time = self.date_time
        return {
            "mime_headers": [list(pair) for pair in self.mime_headers],
            "from": self.sender.to_dict(),
            "to": [address.to_dict() for address in self.recipients],
            "cc": [address.to_dict() for address in self.cc],
            "date_time": None
            if date_time is None
            else {"text": date_time.text, "iso": date_time.value.isoformat()},
            "subjects": [{"lang": lang, "text": text} for lang, text in self.subjects],
            "namespaces": [{"prefix": ns.prefix, "uri": ns.uri} for ns in self.namespaces],
            "require": list(self.require),
            "extension_headers": [
                {"namespace": ns, "name": name, "value": value, "params": [list(p) for p in params]}
                for ns, name, value, params in self.extension_headers
            ],
            "content_type": self.content_type,
            "content_headers": [list(pair) for pair in self.content_headers],
            "body": _body_dict(self.body, self.content_type),
        }


def _body_dict(body: bytes, content_type: str) -> dict[str, str]:
    media_type, params = _mime_parameters(content_type)
    charset = params.get("charset")
    if charset is None and media_type.startswith("text/"):
        charset = "us-ascii"
    if charset is not None:
        try:
            codecs.lookup(charset)
            return {"encoding": "text", "charset": charset, "data": body.decode(charset)}
        except (LookupError, UnicodeDecodeError, ValueError):
            pass
    return {"encoding": "base64", "data": base64.b64encode(body).decode("ascii")}


# --- small parsing helpers ------------------------------------------------------------


def _mime_parameters(value: str) -> tuple[str, dict[str, str]]:
    """Lower-case ``type/subtype`` and the parameters (names lower-cased) of a MIME value."""
    media_type, _, rest = value.partition(";")
    params: dict[str, str] = {}
    index = 0
    length = len(rest)
    while index < length:
        while index < length and rest[index] in " \t;":
            index += 1
        equals = rest.find("=", index)
        if equals < 0:
            break
        name = rest[index:equals].strip().lower()
        index = equals + 1
        while index < length and rest[index] in " \t":
            index += 1
        if index < length and rest[index] == '"':
            index += 1
            chars = []
            while index < length and rest[index] != '"':
                if rest[index] == "\\" and index + 1 < length:
                    index += 1
                chars.append(rest[index])
                index += 1
            index += 1
            params.setdefault(name, "".join(chars))
        else:
            end = rest.find(";", index)
            end = length if end < 0 else end
            params.setdefault(name, rest[index:end].strip())
            index = end
    return media_type.strip().lower(), params


def _char_offset(text: str, index: int) -> int:
    """Octet length of ``text[:index]`` in UTF-8."""
    return len(text[:index].encode("utf-8", "surrogatepass"))


class _Lines:
    """Splits header blocks off the input and keeps line numbers and offsets."""

    def __init__(self, data: bytes, max_headers: int, line: int = 1) -> None:
        self.data = data
        self.line = line
        self.count = 0
        self.max_headers = max_headers

    def block(self, start: int, what: str) -> tuple[list[tuple[int, int, bytes]], int]:
        """The lines of the header block at ``start`` and where the next part starts."""
        data = self.data
        if data.startswith(b"\r\n", start):
            self.line += 1
            return [], start + 2
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            bare = _BARE_EOL.search(data, start)
            if bare is not None:
                raise MessageFormatError(
                    "bare LF or CR: lines end with CRLF",
                    line=self.line + data.count(b"\r\n", start, bare.start()),
                    offset=bare.start(),
                )
            raise MessageFormatError(
                f"the {what} are not ended by an empty line (CRLF CRLF)",
                line=self.line + data.count(b"\r\n", start),
                offset=len(data),
            )
        self.count += data.count(b"\r\n", start, end) + 1
        if self.count > self.max_headers:
            raise LimitExceededError("max_headers", self.max_headers, line=self.line, offset=start)
        lines = []
        offset = start
        for raw in data[start:end].split(b"\r\n"):
            lines.append((self.line, offset, raw))
            offset += len(raw) + 2
            self.line += 1
        self.line += 1  # the empty line
        return lines, end + 4


def _control_error(raw: bytes, match: re.Match[bytes], line: int, offset: int) -> MessageFormatError:
    char = raw[match.start()]
    if char == 0x0A:
        reason = "bare LF: lines end with CRLF"
    elif char == 0x0D:
        reason = "bare CR: lines end with CRLF"
    elif char == 0x09:
        reason = "TAB in a header: whitespace is exactly one SP and controls are escaped (§2.2)"
    else:
        reason = f"raw control character 0x{char:02X} in a header (escape it, §2.3)"
    return MessageFormatError(reason, line=line, offset=offset + match.start())


def _decode_line(raw: bytes, line: int, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MessageFormatError(
            f"not UTF-8 ({error.reason})", line=line, offset=offset + error.start
        ) from None


def _parse_mime_block(lines: list[tuple[int, int, bytes]], what: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, list[str]]] = []
    for line, offset, raw in lines:
        bad = _MIME_CTL_BYTES.search(raw)
        if bad is not None:
            raise _control_error(raw, bad, line, offset)
        text = _decode_line(raw, line, offset)
        if text[:1] in (" ", "\t"):
            if not headers:
                raise MessageFormatError(
                    f"the {what} begin with a continuation line", line=line, offset=offset
                )
            headers[-1][1].append(text)  # RFC 5322 §2.2.3 unfolding: drop the CRLF only
            continue
        match = _MIME_NAME_RE.match(text)
        if match is None:
            raise MessageFormatError(
                f"not a MIME header ('Name: value') in the {what}", line=line, offset=offset
            )
        headers.append((match.group(1), [text[match.end() :]]))
    return tuple((name, "".join(parts).strip(" \t")) for name, parts in headers)


def _starts_with_mime(data: bytes, start: int) -> bool:
    """Whether the first block is a MIME header block naming Message/CPIM."""
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        return False
    for raw in data[start:end].split(b"\r\n"):
        if raw[:13].lower() == b"content-type:":
            value = raw[13:].decode("latin-1")
            if value.split(";", 1)[0].strip(" \t").lower() == "message/cpim":
                return True
    return False


def _check_uri(uri: str, line: int, offset: int, *, namespace: bool = False) -> None:
    if not _ABS_URI_RE.match(uri):
        what = "namespace" if namespace else "address"
        raise MessageFormatError(
            f"the {what} URI {uri[:60]!r} is not an absolute URI (RFC 2396)", line=line, offset=offset
        )
    if namespace and "#" in uri:
        raise MessageFormatError(
            f"the namespace URI {uri[:60]!r} has a fragment (§3.3)", line=line, offset=offset
        )


# Addresses repeat (the same senders and recipients); CPIMURI is immutable.
_parse_cpim_uri = functools.lru_cache(maxsize=4096)(parse_uri)


def _parse_address(value: str, line: int, offset: int) -> CPIMAddress:
    match = _ADDRESS_RE.match(value) if value.endswith(">") else None
    if match is None:
        raise MessageFormatError(
            "an address is [Formal-name] '<' URI '>' (§4.1): a display name is tokens each "
            "followed by one SP, or one quoted string",
            line=line,
            offset=offset,
        )
    quoted, tokens, uri = match.groups()
    if quoted is not None:
        display: str | None = decode_escapes(quoted)
    elif tokens is not None:
        display = decode_escapes(tokens[:-1])
    else:
        display = None
    uri_offset = offset + _char_offset(value, match.start(3))
    _check_uri(uri, line, uri_offset)
    cpim_uri = None
    if uri.partition(":")[0].lower() in SCHEMES:
        try:
            cpim_uri = _parse_cpim_uri(uri)
        except URIError as error:
            raise MessageFormatError(
                f"bad {uri.partition(':')[0]}: URI: {error.reason}",
                line=line,
                offset=uri_offset + (error.offset or 0),
            ) from None
    return CPIMAddress(display, uri, cpim_uri)


def parse_date_time(text: str) -> datetime.datetime:
    """Parse an RFC 3339 date-time (``Z`` or offset, fractions, ``t``/``z`` tolerated).

    A leap second (``:60``) is read as the first instant of the next minute.
    :raise ValueError: if ``text`` is not an RFC 3339 date-time.
    """
    match = _DATE_TIME_RE.match(text)
    if match is None:
        raise ValueError("not an RFC 3339 date-time (YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm))")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if zulu:
        tz = datetime.timezone.utc
    else:
        hours, minutes = int(off_h), int(off_m)
        if hours > 23 or minutes > 59:
            raise ValueError("the UTC offset is out of range")
        delta = datetime.timedelta(hours=hours, minutes=minutes)
        tz = datetime.timezone(-delta if sign == "-" else delta)
    leap = int(second) == 60
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    value = datetime.datetime(
        int(year), int(month), int(day), int(hour), int(minute), 59 if leap else int(second), micro, tz
    )
    if leap:
        try:
            value += datetime.timedelta(seconds=1)
        except OverflowError:
            raise ValueError("a leap second past the last representable instant") from None
    return value


def format_date_time(value: datetime.datetime) -> str:
    """RFC 3339 text of an aware datetime: ``Z`` for UTC, fractions only when non-zero."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("DateTime needs an aware datetime (with a UTC offset)")
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    seconds = int(offset.total_seconds())
    if seconds % 60:
        raise ValueError("RFC 3339 offsets are whole minutes")
    if seconds == 0:
        return text + "Z"
    sign = "-" if seconds < 0 else "+"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


# --- the parser -------------------------------------------------------------------------


def _parse_params(text: str, base: int, line: int, offset: int) -> list[tuple[str, str]]:
    """The ``;name=value`` parameters at ``text[base:]``; stops at the first non-';'."""
    position = base
    params: list[tuple[str, str]] = []
    while position < len(text) and text[position] == ";":
        param = _PARAM_RE.match(text, position)
        if param is None:
            raise MessageFormatError(
                "a parameter is ';' Name '=' (Token / Number / String)",
                line=line,
                offset=offset + _char_offset(text, position),
            )
        key, quoted, token = param.groups()
        param_value = decode_escapes(quoted) if quoted is not None else token
        if key == "lang" and not _LANG_RE.match(param_value):
            raise MessageFormatError(
                f"lang={param_value!r} is not an RFC 3066 language tag",
                line=line,
                offset=offset + _char_offset(text, position),
            )
        if any(key == seen for seen, _ in params):
            raise MessageFormatError(
                f"parameter {key!r} is given twice", line=line, offset=offset + _char_offset(text, position)
            )
        params.append((key, param_value))
        position = param.end()
    return params


def _diagnose(text: str, line: int, offset: int) -> MessageFormatError:
    """The precise error of a header line that the one-pass pattern refused."""
    match = _HEADER_NAME_RE.match(text)
    if match is None:
        stop = len(_NAME_OR_DOT_RE.match(text).group())  # type: ignore[union-attr]
        return MessageFormatError(
            "a header is Name ':' or Prefix '.' Name ':' (names are NAMECHARs, §3.6)",
            line=line,
            offset=offset + _char_offset(text, stop),
        )
    position = _PARAMS_RE.match(text, match.end()).end()  # type: ignore[union-attr]
    if position < len(text) and text[position] == ";":
        return MessageFormatError(
            "a parameter is ';' Name '=' (Token / Number / String)",
            line=line,
            offset=offset + _char_offset(text, position),
        )
    if position >= len(text) or text[position] != " ":
        return MessageFormatError(
            "exactly one SP must follow the colon (and the parameters) (§2.2)",
            line=line,
            offset=offset + _char_offset(text, position),
        )
    if text[position + 1 : position + 2] == " ":
        return MessageFormatError(
            "more than one SP after the colon (§2.2)",
            line=line,
            offset=offset + _char_offset(text, position + 1),
        )
    return MessageFormatError(
        "whitespace at the end of a line (§2.2)",
        line=line,
        offset=offset + _char_offset(text, len(text) - 1),
    )


def _parse_header(
    raw: bytes,
    line: int,
    offset: int,
    bindings: dict[str, str],
    default_ns: str,
) -> CPIMHeader:
    bad = _CTL_BYTES.search(raw)
    if bad is not None:
        raise _control_error(raw, bad, line, offset)
    if raw[:1] == b" ":
        raise MessageFormatError(
            "a line begins with whitespace (folding and leading whitespace are not allowed, §2.2)",
            line=line,
            offset=offset,
        )
    text = _decode_line(raw, line, offset)
    match = _LINE_RE.match(text)
    if match is None:
        raise _diagnose(text, line, offset)
    first, second, param_text, raw_value = match.groups()
    if second is None:
        prefix, local = None, first
        namespace = default_ns
    else:
        prefix, local = first, second
        bound = bindings.get(prefix)
        if bound is None:
            raise MessageFormatError(
                f"prefix {prefix!r} is used before an NS header declares it (§3.3)",
                line=line,
                offset=offset,
            )
        namespace = bound
    params = _parse_params(text, match.start(3), line, offset) if param_text else []
    parsed = None
    if namespace == CORE_NAMESPACE and local in CORE_HEADERS:
        value_offset = offset + len(raw) - len(raw_value.encode("utf-8"))
        parsed = _structure(local, params, raw_value, line, offset, value_offset)
    return CPIMHeader(
        raw=raw,
        name=text[: match.end(2) if second is not None else match.end(1)],
        prefix=prefix,
        namespace=namespace,
        local_name=local,
        params=tuple(params),
        raw_value=raw_value,
        value=decode_escapes(raw_value),
        line=line,
        offset=offset,
        parsed=parsed,
    )


def _structure(
    name: str, params: list[tuple[str, str]], value: str, line: int, offset: int, text_offset: int
) -> CPIMAddress | CPIMDateTime | NSDeclaration | tuple[str, ...] | None:
    """Parse the value of a core header; check its parameters."""
    if params and (name != "Subject" or any(k != "lang" for k, _ in params)):
        allowed = "only lang" if name == "Subject" else "no"
        raise MessageFormatError(f"{name} takes {allowed} parameters (§4)", line=line, offset=offset)
    parsed: CPIMAddress | CPIMDateTime | NSDeclaration | tuple[str, ...] | None
    if name in ("From", "To", "cc"):
        parsed = _parse_address(value, line, text_offset)
    elif name == "DateTime":
        try:
            parsed = CPIMDateTime(value, parse_date_time(value))
        except ValueError as error:
            raise MessageFormatError(f"DateTime: {error}", line=line, offset=text_offset) from None
    elif name == "NS":
        match = _NS_RE.match(value)
        if match is None:
            raise MessageFormatError(
                "NS is [Prefix SP] '<' URI '>' (§3.3)", line=line, offset=text_offset
            )
        _check_uri(match.group(2), line, text_offset, namespace=True)
        parsed = NSDeclaration(match.group(1), match.group(2))
    elif name == "Require":
        if not _REQUIRE_RE.match(value):
            raise MessageFormatError(
                "Require is Header-name *(',' Header-name) with no spaces (§3.5)",
                line=line,
                offset=text_offset,
            )
        parsed = tuple(value.split(","))
    else:
        parsed = None  # Subject: plain text
    return parsed


def _resolve(name: str, bindings: dict[str, str], default_ns: str) -> tuple[str, str] | None:
    """(namespace, local) of a Header-name, or ``None`` for an unbound prefix (a feature token)."""
    prefix, dot, local = name.partition(".")
    if not dot:
        return (default_ns, name)
    namespace = bindings.get(prefix)
    return None if namespace is None else (namespace, local)


def _parse_cpim(
    data: bytes,
    understood: frozenset[str] | None,
    max_headers: int,
) -> CPIMMessage:
    lines = _Lines(data, max_headers)
    mime_headers: tuple[tuple[str, str], ...] = ()
    start = 0
    if _starts_with_mime(data, 0):
        block, start = lines.block(0, "MIME headers")
        mime_headers = _parse_mime_block(block, "MIME headers")
    cpim_block, start = lines.block(start, "CPIM message headers")
    if not cpim_block:
        raise MessageFormatError("no CPIM message headers (From and To are required)", line=lines.line - 1, offset=start - 2)
    default_ns = CORE_NAMESPACE
    bindings: dict[str, str] = {}
    headers: list[CPIMHeader] = []
    counts: dict[str, int] = {}
    subject_langs: set[str] = set()
    requires: list[tuple[CPIMHeader, dict[str, str], str]] = []
    for line, offset, raw in cpim_block:
        header = _parse_header(raw, line, offset, bindings, default_ns)
        if header.namespace == CORE_NAMESPACE and header.local_name in CORE_HEADERS:
            name = header.local_name
            seen = counts.get(name, 0)
            if seen and name not in _REPEATABLE and name != "Subject":
                raise MessageFormatError(
                    f"{name} may appear only once (profile of RFC 4975, digest §4.6)",
                    line=line,
                    offset=offset,
                )
            counts[name] = seen + 1
            if name == "Subject":
                lang = (header.lang or "i-default").lower()
                if lang in subject_langs:
                    raise MessageFormatError(
                        "Subject repeats with the same language (§4.5)", line=line, offset=offset
                    )
                subject_langs.add(lang)
            elif name == "NS":
                declaration: NSDeclaration = header.parsed  # type: ignore[assignment]
                if declaration.prefix is None:
                    default_ns = declaration.uri
                else:
                    bindings[declaration.prefix] = declaration.uri
            elif name == "Require":
                requires.append((header, dict(bindings), default_ns))
        headers.append(header)
    for required in ("From", "To"):
        if not counts.get(required):
            raise MessageFormatError(
                f"no {required} header (required by the profile, digest §4.6)",
                line=cpim_block[0][0],
                offset=cpim_block[0][1],
            )
    content_block, body_offset = lines.block(start, "encapsulated MIME headers")
    content_headers = _parse_mime_block(content_block, "encapsulated MIME headers")
    if requires:  # only a well-formed message can be "not understood"
        _check_require(requires, understood or frozenset())
    return CPIMMessage(
        mime_headers=mime_headers,
        headers=tuple(headers),
        content_headers=content_headers,
        body=data[body_offset:],
        raw=data,
        body_offset=body_offset,
    )


def _check_require(
    requires: list[tuple[CPIMHeader, dict[str, str], str]], understood: frozenset[str]
) -> None:
    known = {(CORE_NAMESPACE, name) for name in CORE_HEADERS}
    literal = set()
    for entry in understood:
        if entry.startswith("{") and "}" in entry:
            namespace, _, name = entry[1:].partition("}")
            known.add((namespace, name))
        else:
            literal.add(entry)
    for header, bindings, default_ns in requires:
        keys = set(known)
        for entry in literal:
            key = _resolve(entry, bindings, default_ns)
            if key is not None:
                keys.add(key)
        missing = tuple(
            name
            for name in header.parsed  # type: ignore[union-attr]
            if name not in literal and _resolve(name, bindings, default_ns) not in keys
        )
        if missing:
            raise NotUnderstoodError(missing, line=header.line, offset=header.offset)


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise MessageFormatError(f"a Message/CPIM object is bytes, not {type(data).__name__}")


def parse_message(
    data: bytes,
    *,
    max_size: int = MAX_SIZE,
    understood: frozenset[str] | None = None,
    max_headers: int = MAX_HEADERS,
) -> CPIMMessage:
    """Parse a Message/CPIM object, keeping every octet.

    :param data: the object: either beginning with the CPIM headers (the
        carrying protocol said message/cpim) or with a MIME header block whose
        Content-Type is Message/CPIM.
    :param max_size: the largest object accepted, in octets.
    :param understood: what ``Require`` may name besides the core headers:
        ``{namespace}Name`` (see :func:`qualified_name`), or ``Prefix.Name``
        / feature tokens resolved through the message's own NS declarations.
    :param max_headers: the most header lines (all three blocks together).
    :raise MessageFormatError: with the line and octet offset of the fault.
    :raise NotUnderstoodError: ``Require`` names something not understood.
    :raise LimitExceededError: ``max_size`` or ``max_headers`` exceeded.
    """
    data = _as_bytes(data)
    if len(data) > max_size:
        raise LimitExceededError("max_size", max_size, offset=max_size)
    return _parse_cpim(data, understood, max_headers)


def _shift(error: ParseError, line: int, offset: int) -> ParseError:
    if error.line is not None:
        error.line += line - 1
    if error.offset is not None:
        error.offset += offset
    error.args = (error.describe(),)
    return error


def find_cpim_in_multipart(
    data: bytes,
    content_type: str,
    *,
    max_size: int = MAX_SIZE,
    understood: frozenset[str] | None = None,
) -> CPIMMessage | None:
    """The first Message/CPIM part of a multipart body (RFC 3862 §5.2), or ``None``.

    The part is parsed from the exact octets between its delimiters (RFC 2046
    §5.1.1: the CRLF before a delimiter belongs to the delimiter), so its
    :meth:`CPIMMessage.to_bytes` is what was signed.  Nested multiparts are
    searched too.  Errors carry offsets into ``data``.

    :param content_type: the multipart's Content-Type (gives the boundary).
    """
    data = _as_bytes(data)
    if len(data) > max_size:
        raise LimitExceededError("max_size", max_size, offset=max_size)
    return _find_in_multipart(data, 0, len(data), content_type, understood, depth=0)


def _find_in_multipart(
    data: bytes,
    start: int,
    end: int,
    content_type: str,
    understood: frozenset[str] | None,
    depth: int,
) -> CPIMMessage | None:
    media_type, params = _mime_parameters(content_type)
    if not media_type.startswith("multipart/"):
        raise MessageFormatError(f"{media_type!r} is not a multipart type", offset=start)
    boundary = params.get("boundary")
    if not boundary or depth > 8:
        raise MessageFormatError("multipart without a usable boundary parameter", offset=start)
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    position = start
    part_start = -1
    while True:
        found = data.find(delimiter, position, end)
        if found < 0:
            raise MessageFormatError("multipart without its closing delimiter", offset=end)
        after = found + len(delimiter)
        position = after
        if found != start and data[found - 2 : found] != b"\r\n":
            continue  # not at the start of a line
        close = data.startswith(b"--", after)
        if not close:
            eol = data.find(b"\r\n", after, end)
            if eol < 0 or data[after:eol].strip(b" \t"):
                continue  # a line that only begins with the boundary text
        if part_start >= 0:
            part_end = max(part_start, found - 2)
            found_message = _look_into_part(data, part_start, part_end, understood, depth)
            if found_message is not None:
                return found_message
        if close:
            return None
        part_start = eol + 2
        position = part_start - 2


def _look_into_part(
    data: bytes, start: int, end: int, understood: frozenset[str] | None, depth: int
) -> CPIMMessage | None:
    part = data[start:end]
    line = data.count(b"\r\n", 0, start) + 1
    header_end = part.find(b"\r\n\r\n")
    if part.startswith(b"\r\n") or header_end < 0:
        return None  # no headers: text/plain (RFC 2045 §5.2)
    try:
        headers = _parse_mime_block(_Lines(part, MAX_HEADERS, line).block(0, "part headers")[0], "part headers")
    except ParseError as error:
        raise _shift(error, 1, start) from None
    content_type = next((v for n, v in headers if n.lower() == "content-type"), "text/plain")
    media_type, _ = _mime_parameters(content_type)
    if media_type == "message/cpim":
        try:
            return _parse_cpim(part, understood, MAX_HEADERS)
        except ParseError as error:
            raise _shift(error, line, start) from None
    if media_type.startswith("multipart/"):
        return _find_in_multipart(data, start + header_end + 4, end, content_type, understood, depth + 1)
    return None


# --- the builder ---------------------------------------------------------------------------

AddressLike = Union[CPIMAddress, CPIMURI, str]


def _format_display_name(name: str) -> str:
    if _DISPLAY_TOKENS_RE.match(name):
        return name + " "
    return '"' + encode_escapes(name, quoted=True) + '" '


def _format_address(display_name: str | None, uri: str) -> str:
    prefix = "" if display_name is None else _format_display_name(display_name)
    return f"{prefix}<{uri}>"


def _address_parts(address: AddressLike, name: str | None) -> tuple[str | None, str]:
    if isinstance(address, CPIMAddress):
        display, uri = (address.display_name if name is None else name), address.uri
    elif isinstance(address, CPIMURI):
        display, uri = name, str(address)
    elif isinstance(address, str):
        display, uri = name, address
    else:
        raise MessageFormatError(f"an address is a CPIMAddress, CPIMURI or str, not {type(address).__name__}")
    if not _ABS_URI_RE.match(uri):
        raise MessageFormatError(f"{uri[:60]!r} is not an absolute URI (RFC 2396)")
    return display, uri


def _format_value(text: str, what: str) -> str:
    """Escape ``text`` for a header value (§2.3.1).

    §2.2 allows no whitespace at the start or end of a line, so a value that
    begins or ends with spaces has those spaces written as ``\\u0020``, an
    escape every parser decodes: the text survives instead of being refused.
    """
    escaped = encode_escapes(text)
    core = escaped.strip(" ")
    if core == escaped:
        return escaped
    if not core:
        return "\\u0020" * len(escaped)
    leading = len(escaped) - len(escaped.lstrip(" "))
    trailing = len(escaped) - len(escaped.rstrip(" "))
    return "\\u0020" * leading + core + "\\u0020" * trailing


def _format_params(params: Iterable[tuple[str, str]]) -> str:
    text = ""
    for key, value in params:
        if not _NAME_RE.match(key):
            raise MessageFormatError(f"parameter name {key!r} is not a Name (§3.6)")
        if key == "lang":
            if not _LANG_RE.match(value):
                raise MessageFormatError(f"lang={value!r} is not an RFC 3066 language tag")
            text += f";lang={value}"
        elif _TOKEN_RE.match(value):
            text += f";{key}={value}"
        else:
            text += f';{key}="{encode_escapes(value, quoted=True)}"'
    return text


def _check_mime_value(name: str, value: str) -> None:
    if not _MIME_FIELD_NAME_RE.match(name):
        raise MessageFormatError(f"{name!r} is not a MIME header name")
    if re.search(r"[\x00-\x1f\x7f]", value) or not value.strip():
        raise MessageFormatError(f"the {name} value is empty or holds control characters")


def build_message(
    sender: AddressLike,
    recipients: Sequence[AddressLike],
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    sender_name: str | None = None,
    cc: Sequence[AddressLike] = (),
    date_time: datetime.datetime | str | None = None,
    subjects: Sequence[tuple[str | None, str]] = (),
    extensions: Sequence[tuple[str, str, str, str, Sequence[tuple[str, str]]]] = (),
    require: Sequence[str] = (),
    content_headers: Sequence[tuple[str, str]] = (),
) -> CPIMMessage:
    """Build a canonical Message/CPIM object that the gateway originates.

    Headers are written From, To..., cc..., DateTime, Subject..., NS...,
    Require, extensions; one SP after each colon, CRLF, escapes only where
    §2.3.1 requires them, display names as tokens when they can be, else
    quoted.  The returned message is exactly what :func:`parse_message` gives
    for its octets (same values, lines, offsets): it is built directly from
    what was written (every value is checked as it is written), and only an
    unusual message -- an extension in the core namespace, more lines than
    the parser's default ``max_headers``, a URI the CPIM URI parser refuses
    -- is parsed back, so that its error is the parser's own.

    :param sender: the From URI (``CPIMURI``, URI text or ``CPIMAddress``).
    :param recipients: the To addresses (at least one).
    :param body: the encapsulated body octets.
    :param content_type: the encapsulated Content-Type (always written).
    :param sender_name: the From display name (``None``: none).
    :param date_time: an aware datetime, or RFC 3339 text written as given.
    :param subjects: (language or ``None``, text) pairs.
    :param extensions: (namespace URI, preferred prefix, name, value, params);
        an NS line is written for each namespace before its first use (the
        prefix gets a digit appended if another namespace already took it).
    :param require: names for ``Require``: as written (``Prefix.Name`` or a
        feature token), or ``{namespace}Name`` translated to the prefix chosen.
    :param content_headers: further encapsulated MIME headers (name, value).
    :raise MessageFormatError: for a value that cannot be written.
    """
    # Each entry: (line text, name as written, prefix, namespace, local name,
    # params, raw value, structured value or _ADDRESS for an address).
    entries: list[tuple[str, str, str | None, str, str, tuple[tuple[str, str], ...], str, object]] = []
    core = CORE_NAMESPACE

    def address_entry(name: str, display: str | None, uri: str) -> None:
        value = _format_address(display, uri)
        entries.append((f"{name}: {value}", name, None, core, name, (), value, (_ADDRESS, display, uri)))

    address_entry("From", *_address_parts(sender, sender_name))
    if not recipients:
        raise MessageFormatError("a message needs at least one To address")
    for recipient in recipients:
        address_entry("To", *_address_parts(recipient, None))
    for copy in cc:
        address_entry("cc", *_address_parts(copy, None))
    if date_time is not None:
        try:
            if isinstance(date_time, str):
                instant = parse_date_time(text := date_time)
            else:
                text = format_date_time(date_time)
                instant = parse_date_time(text)
        except ValueError as error:
            raise MessageFormatError(f"DateTime: {error}") from None
        entries.append(("DateTime: " + text, "DateTime", None, core, "DateTime", (), text,
                        CPIMDateTime(text, instant)))
    subject_langs: set[str] = set()
    duplicate_subject = False
    for lang, subject in subjects:
        params = (("lang", lang),) if lang else ()
        value = _format_value(subject, "a Subject")
        entries.append(("Subject" + ":" + _format_params(params) + " " + value, "Subject", None, core, "Subject",
                        params, value, None))
        key = (lang or "i-default").lower()
        duplicate_subject = duplicate_subject or key in subject_langs
        subject_langs.add(key)
    prefixes: dict[str, str | None] = {CORE_NAMESPACE: None}
    taken: set[str] = set()
    ns_entries: list[tuple[str, str, str | None, str, str, tuple[tuple[str, str], ...], str, object]] = []

    def prefix_for(namespace: str, preferred: str) -> str | None:
        if namespace in prefixes:
            return prefixes[namespace]
        if not _ABS_URI_RE.match(namespace) or "#" in namespace:
            raise MessageFormatError(f"namespace {namespace!r} is not an absolute URI without fragment")
        if not _NAME_RE.match(preferred):
            raise MessageFormatError(f"prefix {preferred!r} is not a Name (§3.6)")
        prefix, number = preferred, 2
        while prefix in taken:
            prefix, number = f"{preferred}{number}", number + 1
        taken.add(prefix)
        prefixes[namespace] = prefix
        value = f"{prefix} <{namespace}>"
        ns_entries.append(("NS: " + value, "NS", None, core, "NS", (), value, NSDeclaration(prefix, namespace)))
        return prefix

    extension_entries = []
    unusual = duplicate_subject
    for namespace, preferred, name, value, params in extensions:
        if not _NAME_RE.match(name):
            raise MessageFormatError(f"header name {name!r} is not a Name (§3.6)")
        prefix = prefix_for(namespace, preferred)
        written = name if prefix is None else f"{prefix}.{name}"
        raw_value = _format_value(value, written)
        param_text = _format_params(params)
        keys = [key for key, _ in params]
        unusual = unusual or namespace == CORE_NAMESPACE or len(set(keys)) != len(keys)
        extension_entries.append((written + ":" + param_text + " " + raw_value, written, prefix, namespace, name,
                                  tuple((key, str(param)) for key, param in params), raw_value, None))
    required = []
    for entry in require:
        if entry.startswith("{") and "}" in entry:
            namespace, _, name = entry[1:].partition("}")
            prefix = prefix_for(namespace, "ns")
            entry = name if prefix is None else f"{prefix}.{name}"
        if not _REQUIRE_RE.match(entry):
            raise MessageFormatError(f"{entry!r} is not a Header-name for Require (§3.5)")
        required.append(entry)
    entries.extend(ns_entries)
    if required:
        value = ",".join(required)
        entries.append(("Require: " + value, "Require", None, core, "Require", (), value, tuple(required)))
    entries.extend(extension_entries)
    _check_mime_value("Content-Type", content_type)
    mime = ["Content-Type: " + content_type]
    mime_pairs = [("Content-Type", content_type.strip(" \t"))]
    for name, value in content_headers:
        if name.lower() == "content-type":
            raise MessageFormatError("give the Content-Type as content_type, not in content_headers")
        _check_mime_value(name, value)
        mime.append(f"{name}: {value}")
        mime_pairs.append((name, value.strip(" \t")))
    head = "\r\n".join(entry[0] for entry in entries).encode("utf-8")
    mime_octets = "\r\n".join(mime).encode("utf-8")
    data = head + b"\r\n\r\n" + mime_octets + b"\r\n\r\n" + bytes(body)
    if unusual or len(entries) + len(mime) > MAX_HEADERS:
        return _parse_built(data, required)
    headers = []
    offset = 0
    for number, (text, name, prefix, namespace, local, params, raw_value, parsed) in enumerate(entries, 1):
        raw = text.encode("utf-8")
        if type(parsed) is tuple and parsed and parsed[0] is _ADDRESS:
            _, display, uri = parsed
            cpim_uri = None
            if uri.partition(":")[0].lower() in SCHEMES:
                try:
                    cpim_uri = _parse_cpim_uri(uri)
                except URIError:
                    return _parse_built(data, required)  # the parser's own error, with its offset
            parsed = CPIMAddress(display, uri, cpim_uri)
        headers.append(CPIMHeader(raw, name, prefix, namespace, local, params, raw_value,
                                  decode_escapes(raw_value), number, offset, parsed))  # type: ignore[arg-type]
        offset += len(raw) + 2
    body_offset = len(head) + 4 + len(mime_octets) + 4
    return CPIMMessage((), tuple(headers), tuple(mime_pairs), data[body_offset:], data, body_offset)


#: Marks an address entry in :func:`build_message` (its CPIMAddress is made last).
_ADDRESS = object()


def _parse_built(data: bytes, required: list[str]) -> CPIMMessage:
    """The slow path of :func:`build_message`: parse what was written."""
    return parse_message(data, max_size=max(len(data), MAX_SIZE), understood=frozenset(required))
