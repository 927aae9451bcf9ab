"""SIP message syntax: parse and serialise requests and responses.

Follows RFC 3261 §7 (message structure: start line, headers, folding, compact
forms, several values in one header and one value over several headers,
Content-Length framing), §19.1 (SIP URIs), §20 (header fields, which are
single-valued) and §25 (the ABNF: tokens, quoted strings, quoted pairs, LWS,
IPv6 references), tested against the RFC 4475 torture messages.

Parsed values are immutable (attrs); headers are kept in order, with their
names as written and their raw (unfolded) values, so unknown headers and
parameters survive a round trip.  Structured views (:class:`Via`,
:class:`NameAddr`, :class:`SipURI`) are parsed on demand and memoised on the
message (the parser validates Via, From, To, CSeq and Call-ID eagerly, so the
transaction layer and the mapping get them for free); ``sip:`` URIs, which
repeat from message to message, are parsed through a bounded cache.

Bad input raises :class:`SipParseError` (a :class:`~cpimgw.cpim.errors.ParseError`)
with the line, the offset, the reason, and the status a server answers it
with (400, or 505 for a version, 501 for an unknown method whose CSeq does not
match, 513 for a size limit).
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Callable, Iterable, Iterator

import attrs

from cpimgw.cpim.errors import LimitExceededError, ParseError

#: RFC 3261 §18.1.1 would allow more; 64 KiB is our default for any transport.
DEFAULT_MAX_SIZE = 65536
DEFAULT_MAX_HEADERS = 256
MAX_UINT32 = 2**32 - 1

#: RFC 3261 §7.3.3 and the compact forms registered since (RFC 3265, 3515, 3892, 4028, 3841, 4474).
COMPACT_FORMS = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by",
    "x": "session-expires", "a": "accept-contact", "j": "reject-contact",
    "d": "request-disposition", "y": "identity", "n": "identity-info",
}

#: How we spell the headers we write (everything else is written as given).
CANONICAL_NAMES = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "sip-etag": "SIP-ETag", "sip-if-match": "SIP-If-Match", "mime-version": "MIME-Version",
    "rack": "RAck", "rseq": "RSeq",
}

#: Headers whose values are comma-separated lists (RFC 3261 §7.3.1): several
#: header lines and several values in one line are the same thing.
LIST_HEADERS = frozenset({
    "via", "contact", "route", "record-route", "allow", "supported", "require",
    "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
    "allow-events", "content-encoding", "content-language", "warning", "in-reply-to",
    "alert-info", "call-info", "error-info", "path", "service-route",
})

#: Headers that may appear once only (RFC 4475 §3.3.9 multi01).
SINGLE_HEADERS = frozenset({
    "call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type",
    "expires", "min-expires", "date", "subscription-state", "event", "sip-etag",
    "sip-if-match", "retry-after", "mime-version",
})

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(r"\r?\n")
_DIGITS_RE = re.compile(r"[0-9]+\Z")
_SPACE_RE = re.compile(r"\s")  # what str.isspace() calls whitespace (Py_UNICODE_ISSPACE)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_CL_BYTES_RE = re.compile(rb"[0-9]{1,10}\Z")
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
_VERSION_RE = re.compile(r"SIP/([0-9]+)\.([0-9]+)\Z", re.IGNORECASE)
_VIA_RE = re.compile(
    r"\s*([^\s/]+)\s*/\s*([^\s/]+)\s*/\s*([^\s/;]+)\s+([^;\s]+)\s*(?:;(.*))?\Z", re.DOTALL
)
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT\Z"
)
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_HEX = frozenset("0123456789abcdefABCDEF")
_CT_RE = re.compile(r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*(?:;(.*))?\Z", re.DOTALL)


class SipParseError(ParseError):
    """A SIP message that does not follow RFC 3261.

    :ivar status: the status a server answers the request with (400 unless
        the rule names another: 505 bad version, 501 unknown method).
    """

    syntax = "sip"

    def __init__(self, reason: str, *, status: int = 400, **kw: object) -> None:
        self.status = status
        super().__init__(reason, **kw)  # type: ignore[arg-type]


class SipLimitError(LimitExceededError):
    """A SIP message beyond a configured limit (answered 513 Message Too Large)."""

    syntax = "sip"
    status = 513


_random_pool = b""
_random_position = 0


def random_hex(nbytes: int) -> str:
    """``nbytes`` of cryptographic randomness as hex, for tags, branches, Call-IDs (RFC 3261 §19.3).

    Drawn from ``os.urandom`` 4 KiB at a time rather than one system call
    per value (three per request on the data path).
    """
    global _random_pool, _random_position
    start = _random_position
    if start + nbytes > len(_random_pool):
        _random_pool = os.urandom(max(4096, nbytes))
        start = 0
    _random_position = start + nbytes
    return _random_pool[start : start + nbytes].hex()


def canonical_name(name: str) -> str:
    """The lower-case long form of a header name (compact forms expanded)."""
    key = _NAME_CACHE.get(name)
    if key is not None:
        return key
    key = name.lower()
    return COMPACT_FORMS.get(key, key)


#: Header names seen (as written) -> canonical key; only valid tokens, bounded.
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_LIMIT = 2048


def _header_key(name: str) -> str | None:
    """The canonical key of a header name as written, ``None`` if it is not a token."""
    key = _NAME_CACHE.get(name)
    if key is not None:
        return key
    if not _TOKEN_RE.match(name):
        return None
    lower = name.lower()
    key = COMPACT_FORMS.get(lower, lower)
    if len(_NAME_CACHE) < _NAME_CACHE_LIMIT:
        _NAME_CACHE[name] = key
    return key


def is_token(text: str) -> bool:
    """Whether ``text`` is an RFC 3261 ``token``."""
    return bool(_TOKEN_RE.match(text))


@functools.lru_cache(maxsize=512)
def display_name(key: str) -> str:
    """How we spell header ``key`` (lower-case long form) when we write it."""
    if key in CANONICAL_NAMES:
        return CANONICAL_NAMES[key]
    return "-".join(part.capitalize() for part in key.split("-"))


# ---------------------------------------------------------------- quoted strings


def quote_string(text: str) -> str:
    """``text`` as an RFC 3261 quoted-string (backslash before ``"`` and ``\\``; CR/LF dropped)."""
    cleaned = text.replace("\r", " ").replace("\n", " ")
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scan_quoted(text: str, start: int) -> int:
    """Index just past the quoted-string opening at ``text[start]`` (a ``"``)."""
    index = start + 1
    length = len(text)
    while index < length:
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            return index + 1
        index += 1
    raise SipParseError("unterminated quoted string", offset=start)


def unquote_string(text: str) -> str:
    """The content of a quoted-string, quoted pairs resolved."""
    inner = text[1:-1]
    return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner


def split_list(value: str) -> list[str]:
    """Split a header value at top-level commas (not inside quotes or ``<>``)."""
    if "," not in value:
        if '"' in value:
            _check_quotes(value)
        return [value.strip()]
    if '"' not in value and "<" not in value and ">" not in value:
        return [part.strip() for part in value.split(",")]
    parts: list[str] = []
    depth = 0
    start = 0
    index = 0
    length = len(value)
    while index < length:
        char = value[index]
        if char == '"':
            index = _scan_quoted(value, index)
            continue
        if char == "<":
            depth += 1
        elif char == ">":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            parts.append(value[start:index].strip())
            start = index + 1
        index += 1
    parts.append(value[start:].strip())
    return parts


def _check_quotes(text: str) -> None:
    """Raise for an unterminated quoted string (what the full scanners would find)."""
    index = text.find('"')
    while index != -1:
        index = text.find('"', _scan_quoted(text, index))


def _split_params(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    parts: list[str] = []
    start = 0
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            index = _scan_quoted(text, index)
            continue
        if char == ";":
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def parse_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """Parse ``name[=value]`` pairs separated by ``;`` (``text`` without the leading ``;``).

    Values are kept as written (quoted strings keep their quotes).
    """
    params: list[tuple[str, str | None]] = []
    for piece in _split_params(text):
        name, equals, value = piece.partition("=")
        name = name.strip()
        if not is_token(name):
            raise SipParseError(f"bad or empty parameter {piece.strip()!r}")
        if equals:
            value = value.strip()
            if not value:
                raise SipParseError(f"parameter {name!r} has an empty value")
            if value.startswith('"'):
                if _scan_quoted(value, 0) != len(value):
                    raise SipParseError(f"parameter {name!r} has text after its quoted value")
            elif not (is_token(value) or _is_bracketed_v6(value)):
                raise SipParseError(f"parameter {name!r} has a bad value {value!r}")
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


#: RFC 3261 §25.1 ``paramchar`` without ``escaped``: ``param-unreserved`` / ``unreserved``.
_PARAMCHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "[]/:&+$" "-_.!~*'()")


def _is_paramchars(text: str) -> bool:
    """``1*paramchar`` (RFC 3261 §25.1): param-unreserved, unreserved or a valid ``%`` HEXDIG HEXDIG."""
    if not text:
        return False
    if "%" not in text:
        return set(text) <= _PARAMCHARS
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == "%":
            if index + 2 >= length or text[index + 1] not in _HEX or text[index + 2] not in _HEX:
                return False
            index += 3
            continue
        if char not in _PARAMCHARS:
            return False
        index += 1
    return True


def parse_uri_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """Parse SIP URI parameters (``text`` without the leading ``;``), RFC 3261 §19.1.1 / §25.1::

        uri-parameters    =  *( ";" uri-parameter)
        other-param       =  pname [ "=" pvalue ]
        pname / pvalue    =  1*paramchar
        paramchar         =  param-unreserved / unreserved / escaped
        param-unreserved  =  "[" / "]" / "/" / ":" / "&" / "+" / "$"

    This is not the header-parameter grammar (``token`` / ``host`` /
    ``quoted-string``, :func:`parse_params`): a URI parameter may hold a raw
    RFC 5627 GRUU (``gr=urn:uuid:...``) or a ``maddr=[::1]``, never a quoted
    string or whitespace.  Values are kept as written (escapes unresolved).
    """
    params: list[tuple[str, str | None]] = []
    for piece in text.split(";"):
        name, equals, value = piece.partition("=")
        if not _is_paramchars(name):
            raise SipParseError(f"bad or empty URI parameter {piece!r}")
        if equals:
            if not _is_paramchars(value):
                raise SipParseError(f"URI parameter {name!r} has a bad value {value!r}")
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


def format_params(params: Iterable[tuple[str, str | None]]) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def _is_bracketed_v6(text: str) -> bool:
    return len(text) > 2 and text[0] == "[" and text[-1] == "]" and set(text[1:-1]) <= _IPV6_CHARS


def _param(params: tuple[tuple[str, str | None], ...], name: str) -> str | None:
    key = name.lower()
    for pname, value in params:
        if pname.lower() == key:
            return value if value is not None else ""
    return None


# ---------------------------------------------------------------- URIs


def _check_host(host: str) -> None:
    if not host:
        raise SipParseError("the host is empty")
    if host.startswith("["):
        if not _is_bracketed_v6(host) or host.count(":") < 2:
            raise SipParseError(f"bad IPv6 reference {host!r}")
        return
    if not set(host) <= _HOST_CHARS:
        raise SipParseError(f"bad host {host!r}")


def _check_escapes(text: str, what: str) -> None:
    index = text.find("%")
    while index != -1:
        if len(text) < index + 3 or text[index + 1] not in _HEX or text[index + 2] not in _HEX:
            raise SipParseError(f"bad %-escape in {what}")
        index = text.find("%", index + 3)


def split_hostport(text: str) -> tuple[str, int | None]:
    """``host[:port]`` (host may be an IPv6 reference) -> (host, port)."""
    if text.startswith("["):
        close = text.find("]")
        if close == -1:
            raise SipParseError(f"unterminated IPv6 reference in {text!r}")
        host, rest = text[: close + 1], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"text after the IPv6 reference in {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_raw = text.partition(":")
        port_text = port_text_raw if colon else None
    _check_host(host)
    port = None
    if port_text is not None:
        if not _DIGITS_RE.match(port_text) or len(port_text) > 5 or int(port_text) > 65535:
            raise SipParseError(f"bad port {port_text!r}")
        port = int(port_text)
    return host, port


@attrs.frozen
class SipURI:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 §19.1); ``user`` stays %-escaped as written."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: str | None = None

    def __str__(self) -> str:
        text = self.scheme + ":"
        if self.user is not None:
            text += self.user
            if self.password is not None:
                text += ":" + self.password
            text += "@"
        text += self.host
        if self.port is not None:
            text += f":{self.port}"
        text += format_params(self.params)
        if self.headers is not None:
            text += "?" + self.headers
        return text

    def param(self, name: str) -> str | None:
        """The value of URI parameter ``name`` (``""`` for a flag), or ``None``."""
        return _param(self.params, name)

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def domain(self) -> str:
        return self.host.lower()


def parse_sip_uri(text: str) -> SipURI:
    """Parse a ``sip:``/``sips:`` URI; raise :class:`SipParseError`.

    Results are cached (URIs repeat; :class:`SipURI` is immutable).
    """
    return _parse_sip_uri_cached(text)


def _parse_sip_uri(text: str) -> SipURI:
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        raise SipParseError(f"not a sip: or sips: URI: {text[:60]!r}")
    if _SPACE_RE.search(text):
        raise SipParseError(f"whitespace inside the URI {text[:60]!r}")
    user = password = None
    at = rest.find("@")
    if at != -1:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, pcolon, pw = userinfo.partition(":")
        password = pw if pcolon else None
        if not user:
            raise SipParseError("empty user part before '@'")
        _check_escapes(user, "the user part")
    rest, question, headers = rest.partition("?")
    hostport, *param_text = rest.split(";", 1)
    host, port = split_hostport(hostport)
    params = parse_uri_params(param_text[0]) if param_text else ()
    return SipURI(scheme, host, user, password, port, params, headers if question else None)


_parse_sip_uri_cached = functools.lru_cache(maxsize=4096)(_parse_sip_uri)


def uri_scheme(text: str) -> str:
    """The scheme of an absolute URI, lower case; raise if there is none."""
    scheme, colon, _ = text.partition(":")
    if not colon or not scheme or not _SCHEME_RE.match(scheme):
        raise SipParseError(f"not an absolute URI: {text[:60]!r}")
    return scheme.lower()


# ---------------------------------------------------------------- structured headers


@attrs.frozen
class NameAddr:
    """``[display-name] <URI> *(;param)`` or ``addr-spec *(;param)`` (From, To, Contact, Route)."""

    uri: str
    display: str | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    bracketed: bool = True

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def __str__(self) -> str:
        text = ""
        if self.display is not None:
            text = quote_string(self.display) + " "
        text += f"<{self.uri}>" + format_params(self.params)
        return text

    def with_tag(self, tag: str) -> "NameAddr":
        params = tuple(p for p in self.params if p[0].lower() != "tag") + (("tag", tag),)
        return attrs.evolve(self, params=params)

    def sip_uri(self) -> SipURI:
        return parse_sip_uri(self.uri)


def parse_name_addr(value: str) -> NameAddr:
    """Parse a From/To/Contact/Route value (RFC 3261 §25.1 name-addr / addr-spec).

    Values without a tag are cached (a To without tag, a Contact, a Route
    repeat; the value is immutable); tagged ones are unique per dialog.
    """
    if "tag=" in value:
        return _parse_name_addr(value)
    return _parse_name_addr_cached(value)


def _parse_name_addr(value: str) -> NameAddr:
    text = value.strip()
    display: str | None = None
    if text.startswith('"'):
        end = _scan_quoted(text, 0)
        display = unquote_string(text[:end])
        rest = text[end:].lstrip()
        if not rest.startswith("<"):
            raise SipParseError("a quoted display name must be followed by <URI>")
        text = rest
    elif "<" in text:
        lt = text.index("<")
        words = text[:lt].split()
        for word in words:
            if not is_token(word):
                raise SipParseError(f"display name word {word!r} must be a token or be quoted")
        display = " ".join(words) if words else None
        text = text[lt:]
    if text.startswith("<"):
        gt = text.find(">")
        if gt == -1:
            raise SipParseError("'<' without '>'")
        uri = text[1:gt]
        if not uri or _SPACE_RE.search(uri) or "<" in uri:
            raise SipParseError(f"bad URI inside <>: {uri!r}")
        uri_scheme(uri)
        rest = text[gt + 1 :].strip()
        bracketed = True
    else:
        uri, _, rest = text.partition(";")
        uri = uri.strip()
        rest = ";" + rest if _ else ""
        if not uri or _SPACE_RE.search(uri):
            raise SipParseError(f"bad address {uri!r}")
        if "?" in uri or "," in uri:
            raise SipParseError("a URI with '?' or ',' must be enclosed in <>")
        uri_scheme(uri)
        bracketed = False
    params: tuple[tuple[str, str | None], ...] = ()
    if rest:
        if not rest.startswith(";"):
            raise SipParseError(f"unexpected text after the address: {rest[:40]!r}")
        params = parse_params(rest[1:])
    return NameAddr(uri, display, params, bracketed)


_parse_name_addr_cached = functools.lru_cache(maxsize=4096)(_parse_name_addr)


@attrs.frozen
class Via:
    """One Via value (RFC 3261 §20.42)."""

    transport: str
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    protocol: str = "SIP/2.0"

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def sent_by(self) -> str:
        return self.host + (f":{self.port}" if self.port is not None else "")

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    match = _VIA_RE.match(value)
    if not match:
        raise SipParseError(f"bad Via value {value.strip()[:60]!r}")
    name, version, transport, sent_by, params = match.groups()
    if not is_token(name) or not is_token(version) or not is_token(transport):
        raise SipParseError(f"bad Via protocol in {value.strip()[:60]!r}")
    host, port = split_hostport(sent_by)
    return Via(transport.upper(), host, port, parse_params(params) if params is not None else (), f"{name}/{version}")


@attrs.frozen
class ContentType:
    type: str
    subtype: str
    params: tuple[tuple[str, str | None], ...] = ()

    @property
    def media_type(self) -> str:
        return f"{self.type}/{self.subtype}".lower()

    def param(self, name: str) -> str | None:
        return _param(self.params, name)


def parse_content_type(value: str) -> ContentType:
    match = _CT_RE.match(value)
    if not match:
        raise SipParseError(f"bad Content-Type {value.strip()[:60]!r}")
    ctype, subtype, params = match.groups()
    return ContentType(ctype, subtype, parse_params(params) if params else ())


def parse_uint32(text: str, what: str) -> int:
    text = text.strip()
    if not _DIGITS_RE.match(text) or len(text) > 10 or int(text) > MAX_UINT32:
        raise SipParseError(f"{what} {text[:20]!r} is not a number from 0 to {MAX_UINT32}")
    return int(text)


# ---------------------------------------------------------------- messages


Headers = tuple[tuple[str, str], ...]


class _HeaderAccess:
    headers: Headers
    body: bytes

    def _lines(self) -> dict[str, list[str]]:
        """canonical name -> raw values of its lines, built once per message."""
        index = self._index  # type: ignore[attr-defined]
        if index is None:
            index = {}
            for hname, value in self.headers:
                index.setdefault(canonical_name(hname), []).append(value)
            object.__setattr__(self, "_index", index)
        return index  # type: ignore[no-any-return]

    def _view(self, key: Any, make: Callable[[], Any]) -> Any:
        """A structured view computed once per message (the message is immutable)."""
        views = self._views  # type: ignore[attr-defined]
        if views is None:
            views = {}
            object.__setattr__(self, "_views", views)
        elif key in views:
            return views[key]
        value = views[key] = make()
        return value

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of header ``name``, over all lines; list headers split at commas."""
        key = canonical_name(name)
        lines = self._lines().get(key)
        if not lines:
            return ()
        if key in LIST_HEADERS:
            return self._view(("all", key), lambda: tuple(v for line in lines for v in split_list(line) if v))
        return tuple(lines)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name``, or ``default``."""
        index = self._index if self._index is not None else self._lines()  # type: ignore[attr-defined]
        lines = index.get(name)  # the keys are canonical: a hit means ``name`` is one
        if lines is not None:
            key = name
        else:
            key = canonical_name(name)
            lines = index.get(key)
        if not lines:
            return default
        if key in LIST_HEADERS:
            values = self.get_all(key)
            return values[0] if values else default
        return lines[0]

    def has(self, name: str) -> bool:
        return canonical_name(name) in self._lines()

    def with_header(self, name: str, value: str):  # type: ignore[no-untyped-def]
        """A copy with header ``name`` replaced (first line) or appended."""
        key = canonical_name(name)
        out: list[tuple[str, str]] = []
        done = False
        for hname, hvalue in self.headers:
            if canonical_name(hname) == key:
                if not done:
                    out.append((hname, value))
                    done = True
                continue
            out.append((hname, hvalue))
        if not done:
            out.append((display_name(key), value))
        return attrs.evolve(self, headers=tuple(out))  # type: ignore[misc]

    def without_header(self, name: str):  # type: ignore[no-untyped-def]
        key = canonical_name(name)
        return attrs.evolve(  # type: ignore[misc]
            self, headers=tuple(h for h in self.headers if canonical_name(h[0]) != key)
        )

    def add_header(self, name: str, value: str, *, first: bool = False):  # type: ignore[no-untyped-def]
        header = ((display_name(canonical_name(name)) if len(name) > 1 else name, value),)
        return attrs.evolve(  # type: ignore[misc]
            self, headers=header + self.headers if first else self.headers + header
        )

    # convenient structured views

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return self._view("cseq", self._parse_cseq)  # type: ignore[no-any-return]

    def _parse_cseq(self) -> tuple[int, str]:
        number, _, method = (self.get("cseq") or "").strip().partition(" ")
        return parse_uint32(number, "CSeq number"), method.strip()

    @property
    def from_(self) -> NameAddr:
        return self._view("from", lambda: parse_name_addr(self.get("from") or ""))  # type: ignore[no-any-return]

    @property
    def to(self) -> NameAddr:
        return self._view("to", lambda: parse_name_addr(self.get("to") or ""))  # type: ignore[no-any-return]

    @property
    def vias(self) -> tuple[Via, ...]:
        return self._view("vias", lambda: tuple(parse_via(v) for v in self.get_all("via")))  # type: ignore[no-any-return]

    @property
    def top_via(self) -> Via:
        views = self._views  # type: ignore[attr-defined]
        if views is not None and "vias" in views:
            return views["vias"][0]  # type: ignore[no-any-return]
        return self._view("top_via", lambda: parse_via(self.get_all("via")[0]))  # type: ignore[no-any-return]

    @property
    def max_forwards(self) -> int | None:
        value = self.get("max-forwards")
        if value is None:
            return None
        return self._view("max-forwards", lambda: parse_uint32(value, "Max-Forwards"))  # type: ignore[no-any-return]

    @property
    def expires(self) -> int | None:
        value = self.get("expires")
        return None if value is None else parse_uint32(value, "Expires")

    @property
    def content_type(self) -> ContentType | None:
        value = self.get("content-type")
        return None if value is None else self._view("content-type", lambda: parse_content_type(value))

    @property
    def media_type(self) -> str | None:
        ctype = self.content_type
        return None if ctype is None else ctype.media_type

    def _header_bytes(self) -> bytes:
        lines = []
        has_length = False
        cache = _NAME_CACHE
        for name, value in self.headers:
            if (cache.get(name) or canonical_name(name)) == "content-length":
                if has_length:
                    continue
                has_length = True
                value = str(len(self.body))
            lines.append(f"{name}: {value}\r\n")
        if not has_length:
            lines.append(f"Content-Length: {len(self.body)}\r\n")
        return "".join(lines).encode("utf-8", "surrogateescape")


@attrs.frozen
class Request(_HeaderAccess):
    """A SIP request.  ``headers`` are (name as written, unfolded value) pairs in order."""

    method: str
    uri: str
    headers: Headers = ()
    body: bytes = b""
    version: str = "SIP/2.0"
    _index: dict | None = attrs.field(default=None, init=False, eq=False, repr=False)  # type: ignore[type-arg]
    _views: dict | None = attrs.field(default=None, init=False, eq=False, repr=False)  # type: ignore[type-arg]

    def to_bytes(self) -> bytes:
        """Serialise; Content-Length is set to the body length."""
        start = f"{self.method} {self.uri} {self.version}\r\n".encode("utf-8", "surrogateescape")
        return start + self._header_bytes() + b"\r\n" + self.body

    @property
    def is_request(self) -> bool:
        return True


@attrs.frozen
class Response(_HeaderAccess):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers = ()
    body: bytes = b""
    version: str = "SIP/2.0"
    _index: dict | None = attrs.field(default=None, init=False, eq=False, repr=False)  # type: ignore[type-arg]
    _views: dict | None = attrs.field(default=None, init=False, eq=False, repr=False)  # type: ignore[type-arg]

    def to_bytes(self) -> bytes:
        start = f"{self.version} {self.status} {self.reason}\r\n".encode("utf-8", "surrogateescape")
        return start + self._header_bytes() + b"\r\n" + self.body

    @property
    def is_request(self) -> bool:
        return False


Message = Request | Response


# ---------------------------------------------------------------- the parser


def parse_message(
    data: bytes,
    *,
    datagram: bool = True,
    max_size: int = DEFAULT_MAX_SIZE,
    max_headers: int = DEFAULT_MAX_HEADERS,
    strict: bool = True,
) -> Message:
    """Parse one SIP message.

    :param datagram: ``True`` for UDP: octets after Content-Length are
        ignored (RFC 4475 dblreq) and a missing Content-Length means "the
        rest"; ``False`` (stream): the body must be exactly Content-Length.
    :param strict: validate the headers the stack relies on (Via, From, To,
        CSeq, Call-ID, Max-Forwards, Expires, Date, Contact...).
    :raise SipParseError: with the line/offset and the reason.
    :raise SipLimitError: beyond ``max_size`` or ``max_headers``.
    """
    if len(data) > max_size:
        raise SipLimitError("max_size", max_size, offset=max_size)
    offset = 0
    while data.startswith(b"\r\n", offset):
        offset += 2
    end = _HEADER_END.search(data, offset)
    if end is None:
        raise SipParseError("no empty line after the headers", offset=len(data))
    head = data[offset : end.start()].decode("utf-8", "surrogateescape")
    body_start = end.end()
    lines = head.split("\r\n") if head.count("\n") == head.count("\r\n") else _LINE_SPLIT.split(head)
    start_line = lines[0]
    headers, index = _parse_header_lines(lines[1:], max_headers)
    lengths = index.get("content-length", ())
    if len(lengths) > 1:
        raise SipParseError("more than one Content-Length header")
    available = len(data) - body_start
    if lengths:
        text = lengths[0].strip()
        if not _DIGITS_RE.match(text) or len(text) > 10 or not text.isascii():
            raise SipParseError(f"Content-Length {text[:20]!r} is not a non-negative number")
        length = int(text)
        if length > available:
            raise SipParseError(
                f"Content-Length {length} is larger than the {available} octets of body", offset=len(data)
            )
        if not datagram and length < available:
            raise SipParseError("octets after the body on a stream", offset=body_start + length)
        body = data[body_start : body_start + length]
    else:
        body = data[body_start:] if datagram else b""
    message: Message
    if start_line[:4].upper() == "SIP/":
        message = _parse_status_line(start_line, headers, body)
    else:
        message = _parse_request_line(start_line, headers, body)
    object.__setattr__(message, "_index", index)
    if strict:
        validate(message)
    return message


def _parse_header_lines(lines: list[str], max_headers: int) -> tuple[Headers, dict[str, list[str]]]:
    """(name as written, unfolded value) pairs, and canonical name -> values."""
    if len(lines) <= max_headers:
        fast = _parse_unfolded_lines(lines)
        if fast is not None:
            return fast
    return _parse_folded_lines(lines, max_headers)


def _parse_unfolded_lines(lines: list[str]) -> tuple[Headers, dict[str, list[str]]] | None:
    """The common case in one tight loop: no folding, names seen before.

    ``None`` sends the block to the general parser (which also reports errors).
    """
    cache = _NAME_CACHE
    pairs = []
    index: dict[str, list[str]] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        key = cache.get(name)
        if key is None or not colon:
            return None  # a continuation line, a name to check (or to strip), or no colon
        value = value.strip(" \t")
        pairs.append((name, value))
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return tuple(pairs), index


def _parse_folded_lines(lines: list[str], max_headers: int) -> tuple[Headers, dict[str, list[str]]]:
    headers: list[list[str]] = []
    keys: list[str] = []
    folded = False
    for number, line in enumerate(lines, start=2):
        if line[:1] in (" ", "\t"):
            if not headers:
                raise SipParseError("a continuation line before any header", line=number)
            headers[-1][1] += " " + line.strip(" \t")
            folded = True
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        key = _header_key(name) if colon else None
        if key is None:
            raise SipParseError(f"bad header line {line[:40]!r}", line=number)
        headers.append([name, value.strip(" \t")])
        keys.append(key)
        if len(headers) > max_headers:
            raise SipLimitError("max_headers", max_headers, line=number)
    if folded:
        result = tuple((name, value.strip(" \t")) for name, value in headers)
    else:
        result = tuple((name, value) for name, value in headers)
    index: dict[str, list[str]] = {}
    for key, (_, value) in zip(keys, result):
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return result, index


def _check_version(version: str) -> str:
    match = _VERSION_RE.match(version)
    if not match:
        raise SipParseError(f"bad SIP version {version[:20]!r}", line=1)
    if (int(match.group(1)), int(match.group(2))) != (2, 0):
        raise SipParseError(f"SIP version {version} not supported", status=505, line=1)
    return "SIP/2.0"


def _parse_status_line(line: str, headers: Headers, body: bytes = b"") -> Response:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    _check_version(version)
    if len(code) != 3 or not code.isascii() or not code.isdigit() or not 100 <= int(code) <= 699:
        raise SipParseError(f"bad status code {code[:20]!r}", line=1)
    return Response(int(code), reason, headers, body)


def _parse_request_line(line: str, headers: Headers, body: bytes = b"") -> Request:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("the request line is not 'Method SP Request-URI SP SIP-Version'", line=1)
    method, uri, version = parts
    if not is_token(method):
        raise SipParseError(f"bad method {method[:40]!r}", line=1)
    _check_version(version)
    if uri.startswith("<") or _SPACE_RE.search(uri):
        raise SipParseError(f"bad Request-URI {uri[:60]!r}", line=1)
    scheme = uri_scheme(uri)
    if scheme in ("sip", "sips"):
        parsed = parse_sip_uri(uri)
        if parsed.headers is not None:
            raise SipParseError("a Request-URI must not carry ?headers", line=1)
    return Request(method, uri, headers, body, version)


KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
    "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
})


def validate(message: Message) -> None:
    """Check the headers the stack relies on; raise :class:`SipParseError` for the first fault.

    Via, From, To, CSeq and Call-ID are parsed here and kept on the message
    (its memoised views); the other headers checked are only looked at when
    present.
    """
    index = message._lines()
    for key in ("via", "from", "to", "call-id", "cseq"):
        if not index.get(key):
            raise SipParseError(f"missing {display_name(key)} header")
    for key, values in index.items():
        if len(values) > 1 and key in SINGLE_HEADERS:
            raise SipParseError(f"more than one {display_name(key)} header")
    number, method = message.cseq
    if not is_token(method):
        raise SipParseError(f"bad CSeq method {method[:40]!r}")
    if isinstance(message, Request) and method != message.method:
        status = 400 if message.method in KNOWN_METHODS else 501
        raise SipParseError(f"CSeq method {method!r} does not match {message.method!r}", status=status)
    if not index["call-id"][0].strip():
        raise SipParseError("empty Call-ID")
    vias = []
    for line in index["via"]:
        for value in split_list(line):
            if not value:
                raise SipParseError("an empty value in Via")
            vias.append(parse_via(value))
    message._view("vias", lambda: tuple(vias))
    message.from_
    message.to
    for line in index.get("contact", ()):
        if line.strip() == "*":
            continue
        for value in split_list(line):
            if not value:
                raise SipParseError("an empty value in Contact")
            parse_name_addr(value)
    if "max-forwards" in index:
        max_forwards = message.max_forwards
        if max_forwards is not None and max_forwards > 255:
            raise SipParseError(f"Max-Forwards {max_forwards} is above 255")
    for key, what in (("expires", "Expires"), ("min-expires", "Min-Expires")):
        if key in index:
            parse_uint32(index[key][0], what)
    if "retry-after" in index:
        parse_uint32(index["retry-after"][0].split(";")[0].split("(")[0], "Retry-After")
    if "date" in index:
        date = index["date"][0]
        if not _DATE_RE.match(date.strip()):
            raise SipParseError(f"Date {date[:40]!r} is not an RFC 1123 date in GMT")
    if "warning" in index:
        for warning in message.get_all("warning"):
            code = warning.split(" ", 1)[0]
            if len(code) != 3 or not code.isdigit():
                raise SipParseError(f"bad warn-code {code[:20]!r}")
    if "content-type" in index:
        message.content_type


def make_response(
    request: Request,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request`` (RFC 3261 §8.2.6.2): Via, From, To, Call-ID and CSeq copied.

    ``to_tag`` is added to To when it has none (not for 100 Trying).
    """
    copied: list[tuple[str, str]] = []
    cache = _NAME_CACHE
    for name, value in request.headers:
        key = cache.get(name) or canonical_name(name)
        if key == "to" and to_tag is not None:
            to = parse_name_addr(value)
            if to.tag is None:
                value = value + ";tag=" + to_tag
        if key in ("via", "from", "to", "call-id", "cseq"):
            copied.append((display_name(key), value))
    return Response(status, reason, tuple(copied) + tuple(headers), body)


# ---------------------------------------------------------------- stream framing


class StreamFramer:
    """Cut a TCP/TLS byte stream into SIP messages by Content-Length (RFC 3261 §18.3).

    ``feed(data)`` yields complete message octets.  A framing fault (no or a
    bad Content-Length, a message beyond ``max_size``) raises and the
    connection must be closed: its boundaries can no longer be trusted.
    CRLF keep-alives (RFC 5626 §3.5.1) between messages are skipped.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._buffer = b""
        self.keepalives = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buffer += data
        while True:
            buffer = self._buffer.lstrip(b"\r\n")
            if len(buffer) != len(self._buffer):
                self.keepalives += 1
            self._buffer = buffer
            if not buffer:
                return
            end = _HEADER_END.search(buffer)
            if end is None:
                if len(buffer) > self.max_size:
                    raise SipLimitError("max_size", self.max_size)
                return
            head = buffer[: end.start()]
            length = 0
            found = 0
            for line in head.split(b"\n"):
                name, colon, value = line.partition(b":")
                if colon and name.strip().lower() in (b"content-length", b"l"):
                    found += 1
                    text = value.strip()
                    if not _CL_BYTES_RE.match(text):
                        raise SipParseError(f"Content-Length {text[:20]!r} is not a non-negative number")
                    length = int(text)
            if found > 1:
                raise SipParseError("more than one Content-Length header")
            total = end.end() + length
            if total > self.max_size:
                raise SipLimitError("max_size", self.max_size)
            if len(buffer) < total:
                return
            self._buffer = buffer[total:]
            yield buffer[:total]
