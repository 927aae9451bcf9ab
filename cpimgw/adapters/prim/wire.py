"""PRIM command framing: parse and serialise requests and responses.

Follows draft-ietf-prim-server-00 §4-§6 and draft-mazzoldi-prim-impp-01/-02
§8-§9 (digest protocols.md §2.4, §2.5, §2.7, §2.13)::

    generic-command = start-line *command-header CRLF [ command-body ]
    request-line    = method SP version SP request-identifier SP content-length CRLF
    response-line   = version SP request-identifier SP content-length SP
                      status-code SP response-phrase CRLF

The body length is a field of the START LINE (not a Content-Length header);
exactly that many octets follow the blank line, and they are opaque
(binary-safe).  Blank lines where a start line is expected are skipped.  The
request identifier ``-`` asks for no response.

Version tokens accepted: ``PRIM/1.x`` (server-00), ``PRIM-PR/1.x`` and
``PRIM-IM/1.x`` (-02), ``PP/1.x`` and ``IMP/1.x`` (-01).  A known token with an
unsupported major number, or an unknown token, is answered 503.

Errors are :class:`PrimError` (a :class:`~cpimgw.cpim.errors.ParseError`)
carrying the status code to answer with and whether framing was lost (the
connection must then be closed, draft-ietf-prim-server-00 §4.1).

Nothing here imports Twisted.
"""

from __future__ import annotations

import re
from typing import Iterable, Union

import attrs

from cpimgw.cpim.errors import LimitExceededError, ParseError

CRLF = b"\r\n"

#: Version families and the major number we speak in each.
VERSION_FAMILIES = {"PRIM": 1, "PRIM-PR": 1, "PRIM-IM": 1, "PP": 1, "IMP": 1}
DEFAULT_VERSION = "PRIM/1.0"

#: Methods of -01/-02 (client-server) and server-00 (server-server), digest §2.6.
BASE_METHODS = frozenset(
    {
        "LOGIN", "LOGOUT", "STARTTLS", "PING", "VERIFYSERVER",
        "SUBSCRIBE", "UNSUBSCRIBE", "FETCH", "NOTIFY", "CANCELSUBSCRIPTION", "SEND",
    }
)
CONTROL_METHODS = frozenset(
    {
        "PUBLISH", "REMOVE", "SETCLASSTABLE", "GETCLASSTABLE", "STARTWATCHERNOTIFY",
        "STOPWATCHERNOTIFY", "WATCHERNOTIFY", "LISTEN", "SILENCE", "SETACL", "GETACL",
    }
)
KNOWN_METHODS = BASE_METHODS | CONTROL_METHODS

#: Headers that may appear once only (digest §2.5); a duplicate is a 400.
SINGLE_VALUE_HEADERS = frozenset(
    {
        "From", "To", "Domain", "Auth-State", "SASL-Mech", "Redirect", "Server-Address",
        "AStrength", "Date", "Content-Type", "User-Agent-ID", "Max-Content-Length",
        "Class", "Tuple-ID", "Duration", "PI-Type", "Watcher-Type", "Subscription-ID",
        "Message-ID", "Conversation-ID", "Reply-To", "X-Max-Forwards",
        "X-From-Instance", "X-To-Instance", "X-Subscription-State",
    }
)
#: Headers whose value must be 1*DIGIT.
NUMERIC_HEADERS = frozenset({"Duration", "Max-Content-Length", "X-Max-Forwards"})

#: Status phrases of the code tables (server-00 §8, digest §2.7).
REASON_PHRASES = {
    100: "Authentication Continued",
    101: "Unknown Delivery Status",
    200: "OK",
    201: "Duration Adjusted",
    300: "Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Forbidden",
    403: "Resource Not Found",
    404: "Subscription Not Found",
    406: "Authentication Failed",
    407: "Timeout",
    408: "Inbox Is Closed",
    409: "Already Authenticated",
    410: "Astrength Too Weak",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Version Not Supported",
    504: "Gateway Timeout",
    505: "Too Many Subscriptions",
}

#: Default limits (perf-reliability.md B4: 64 KiB units, bounded headers).
MAX_LINE = 8192
MAX_HEADERS = 64
MAX_BODY = 65536
MAX_REQUEST_ID = 40
MAX_LENGTH_DIGITS = 10

_TOKEN = re.compile(rb"^[A-Za-z0-9]+$")
_METHOD = re.compile(rb"^[A-Z][A-Z0-9_-]*$")
_VERSION = re.compile(rb"^([A-Za-z][A-Za-z-]*)/([0-9]{1,9})\.([0-9]{1,9})$")
_HEADER_NAME = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DIGITS = re.compile(r"^[0-9]+$")


class PrimError(ParseError):
    """A PRIM command that cannot be accepted.

    :ivar code: the status to answer with (400, 501, 503).
    :ivar fatal: framing is lost; answer if possible and close the connection.
    :ivar request_id: the identifier of the offending request, when known.
    :ivar method: the method of the offending request, when known.
    """

    syntax = "prim"

    def __init__(
        self,
        reason: str,
        *,
        code: int = 400,
        fatal: bool = False,
        request_id: str | None = None,
        method: str | None = None,
        line: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.code = code
        self.fatal = fatal
        self.request_id = request_id
        self.method = method
        super().__init__(reason, line=line, offset=offset)


class PrimLimitError(LimitExceededError):
    """A PRIM command over a configured limit; framing is given up (fatal)."""

    syntax = "prim"
    code = 400
    fatal = True
    request_id: str | None = None
    method: str | None = None


@attrs.frozen
class Version:
    """A protocol version token such as ``PRIM/1.0`` or ``PP/1.0``."""

    family: str
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.family}/{self.major}.{self.minor}"

    @property
    def supported(self) -> bool:
        return VERSION_FAMILIES.get(self.family) == self.major

    @property
    def service(self) -> str | None:
        """``'presence'``, ``'im'`` for the service-specific tokens of -01/-02, else ``None``."""
        return {"PP": "presence", "PRIM-PR": "presence", "IMP": "im", "PRIM-IM": "im"}.get(self.family)


def parse_version(text: str) -> Version:
    """Parse a version token; raise :class:`PrimError` (code 503 or 400)."""
    match = _VERSION.match(text.encode("ascii", "replace"))
    if not match:
        raise PrimError(f"{text[:40]!r} is not a version token", code=400)
    return Version(match.group(1).decode("ascii"), int(match.group(2)), int(match.group(3)))


Headers = tuple[tuple[str, str], ...]


class _HeaderAccess:
    headers: Headers

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (names are case-sensitive), or ``default``."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")


@attrs.frozen
class Request(_HeaderAccess):
    """A PRIM request command.

    :ivar request_id: the sender-chosen identifier, or ``'-'`` for no response.
    :ivar headers: the headers in order, as (name, value) pairs.
    :ivar body: the body octets, exactly as received.
    """

    method: str
    request_id: str
    headers: Headers = ()
    body: bytes = b""
    version: str = DEFAULT_VERSION

    @property
    def wants_response(self) -> bool:
        return self.request_id != "-"

    def to_bytes(self) -> bytes:
        return serialise(self)


@attrs.frozen
class Response(_HeaderAccess):
    """A PRIM response command."""

    request_id: str
    code: int
    phrase: str = ""
    headers: Headers = ()
    body: bytes = b""
    version: str = DEFAULT_VERSION

    @property
    def reason(self) -> str:
        return self.phrase or REASON_PHRASES.get(self.code, "")

    def to_bytes(self) -> bytes:
        return serialise(self)


Command = Union[Request, Response]


def _check_header_text(name: str, value: str) -> None:
    if not _HEADER_NAME.match(name.encode("utf-8", "replace")):
        raise ValueError(f"bad header name {name!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} holds a line break")


def serialise(command: Command) -> bytes:
    """The octets of one command; the start line carries the body length."""
    body = command.body
    if isinstance(command, Request):
        if command.request_id == "" or (command.request_id != "-" and not _TOKEN.match(command.request_id.encode())):
            raise ValueError(f"bad request identifier {command.request_id!r}")
        start = f"{command.method} {command.version} {command.request_id} {len(body)}"
    else:
        if command.request_id == "-" or not _TOKEN.match(command.request_id.encode()):
            raise ValueError(f"a response cannot carry request identifier {command.request_id!r}")
        start = f"{command.version} {command.request_id} {len(body)} {command.code} {command.reason}"
    parts = [start.encode("utf-8"), CRLF]
    for name, value in command.headers:
        _check_header_text(name, value)
        parts.append(f"{name}: {value}".encode("utf-8"))
        parts.append(CRLF)
    parts.append(CRLF)
    parts.append(body)
    return b"".join(parts)


def request(method: str, request_id: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"", version: str = DEFAULT_VERSION) -> Request:
    return Request(method, request_id, tuple(headers), body, version)


def response_to(req: Request, code: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"", phrase: str = "") -> Response:
    """A response echoing ``req``'s identifier and version."""
    return Response(req.request_id, code, phrase or REASON_PHRASES.get(code, ""), tuple(headers), body, req.version)


def default_content_type(method: str, version: Version) -> str | None:
    """The -01 defaults when a body has no Content-Type (server-00 has none: 400)."""
    if version.family == "PRIM":
        return None
    if method == "LOGIN":
        return "application/octet-stream"
    if version.service == "im" or method == "SEND":
        return "text/plain; charset=UTF-8"
    return "application/presence"


class Parser:
    """Incremental parser of a PRIM byte stream.

    ``feed(data)`` returns the complete commands found so far, in order, as
    :class:`Request` / :class:`Response` values or :class:`PrimError`
    instances for commands that were framed but must be refused (the caller
    answers them with ``error.code`` and keeps reading).  When framing is
    lost it raises :class:`PrimError` (``fatal=True``) or
    :class:`PrimLimitError` and the parser must not be fed again.
    """

    def __init__(
        self,
        *,
        max_line: int = MAX_LINE,
        max_headers: int = MAX_HEADERS,
        max_body: int = MAX_BODY,
        methods: frozenset[str] = KNOWN_METHODS,
    ) -> None:
        self.max_line = max_line
        self.max_headers = max_headers
        self.max_body = max_body
        self.methods = methods
        self._buffer = bytearray()
        self._consumed = 0  # octets of the stream consumed before the buffer
        self._broken = False

    def feed(self, data: bytes) -> list[Union[Request, Response, PrimError]]:
        if self._broken:
            raise PrimError("the stream is no longer framed", fatal=True)
        self._buffer += data
        out: list[Union[Request, Response, PrimError]] = []
        try:
            while True:
                item = self._next()
                if item is None:
                    break
                out.append(item)
        except (PrimError, PrimLimitError):
            self._broken = True
            raise
        return out

    def _next(self) -> Union[Request, Response, PrimError, None]:
        buf = self._buffer
        # Empty lines where a start line is expected are ignored (keep-alives).
        while buf.startswith(CRLF) or buf.startswith(b"\n"):
            cut = 2 if buf.startswith(CRLF) else 1
            del buf[:cut]
            self._consumed += cut
        end = buf.find(b"\r\n\r\n")
        if end == -1:
            last = buf.rfind(b"\r\n")
            if len(buf) - (last + 2 if last != -1 else 0) > self.max_line:
                raise self._limit("max_line", self.max_line)
            if len(buf) > self.max_line * (self.max_headers + 1):
                raise self._limit("max_headers", self.max_headers)
            return None
        head = bytes(buf[:end])
        lines = head.split(CRLF)
        if len(lines) - 1 > self.max_headers:
            raise self._limit("max_headers", self.max_headers)
        for line in lines:
            if len(line) > self.max_line:
                raise self._limit("max_line", self.max_line)
        start = self._start_line(lines[0])
        length = start["length"]
        if length > self.max_body:
            error = self._limit("max_body", self.max_body)
            error.request_id = start.get("request_id")
            error.method = start.get("method")
            raise error
        total = end + 4 + length
        if len(buf) < total:
            return None
        body = bytes(buf[end + 4 : total])
        base = self._consumed
        del buf[:total]
        self._consumed += total
        try:
            headers = self._headers(lines[1:], base + len(lines[0]) + 2)
            return self._build(start, headers, body)
        except PrimError as error:
            error.request_id = start.get("request_id")
            error.method = start.get("method")
            return error

    def _limit(self, name: str, value: int) -> PrimLimitError:
        return PrimLimitError(name, value, offset=self._consumed)

    def _start_line(self, line: bytes) -> dict:
        offset = self._consumed
        fields = line.split(b" ")
        if not fields or not fields[0]:
            raise PrimError("empty or space-led start line", fatal=True, offset=offset, line=1)
        first = fields[0]
        if b"/" in first:
            # response-line = version SP request-identifier SP content-length SP status-code SP phrase
            if len(fields) < 4:
                raise PrimError("a response line needs version, identifier, length and status", fatal=True, offset=offset, line=1)
            request_id = self._request_id(fields[1], offset, response=True)
            length = self._length(fields[2], offset)
            if not re.match(rb"^[1-5][0-9][0-9]$", fields[3]):
                raise PrimError(f"bad status code {fields[3][:20]!r}", fatal=True, offset=offset, line=1)
            phrase = b" ".join(fields[4:]).decode("utf-8", "replace")
            return {
                "kind": "response", "version": first.decode("ascii", "replace"), "request_id": request_id,
                "length": length, "code": int(fields[3]), "phrase": phrase,
            }
        if len(fields) != 4:
            raise PrimError(f"a request line has 4 fields, this one has {len(fields)}", fatal=True, offset=offset, line=1)
        if not _METHOD.match(first) or len(first) > 32:
            raise PrimError(f"bad method token {first[:32]!r}", fatal=True, offset=offset, line=1)
        request_id = self._request_id(fields[2], offset, response=False)
        try:
            length = self._length(fields[3], offset)
        except (PrimError, PrimLimitError) as error:
            error.request_id = request_id  # answerable: 400 under this identifier, then close
            error.method = first.decode("ascii")
            raise
        return {
            "kind": "request", "method": first.decode("ascii"), "version": fields[1].decode("ascii", "replace"),
            "request_id": request_id, "length": length,
        }

    def _request_id(self, raw: bytes, offset: int, *, response: bool) -> str:
        if raw == b"-":
            if response:
                raise PrimError("a response must not carry request identifier '-'", fatal=True, offset=offset, line=1)
            return "-"
        if not _TOKEN.match(raw) or len(raw) > MAX_REQUEST_ID:
            raise PrimError(f"bad request identifier {raw[:40]!r}", fatal=True, offset=offset, line=1)
        return raw.decode("ascii")

    def _length(self, raw: bytes, offset: int) -> int:
        if not raw.isdigit() or not raw.isascii():
            raise PrimError(f"bad content length {raw[:20]!r}", fatal=True, offset=offset, line=1)
        if len(raw.lstrip(b"0")) > MAX_LENGTH_DIGITS:
            raise PrimLimitError("max_body", self.max_body, offset=offset)
        return int(raw)

    def _headers(self, lines: list[bytes], offset: int) -> Headers:
        headers: list[tuple[str, str]] = []
        seen: set[str] = set()
        for number, raw in enumerate(lines, start=2):
            name, colon, value = raw.partition(b":")
            if not colon or not _HEADER_NAME.match(name):
                raise PrimError(f"header line {raw[:40]!r} is not 'Name: value'", line=number, offset=offset)
            if value.startswith(b" "):
                value = value[1:]
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                raise PrimError(f"header {name.decode()} is not UTF-8", line=number, offset=offset) from None
            key = name.decode("ascii")
            if key in SINGLE_VALUE_HEADERS:
                if key in seen:
                    raise PrimError(f"header {key} appears more than once", line=number, offset=offset)
                seen.add(key)
            if key in NUMERIC_HEADERS and (not _DIGITS.match(text) or len(text) > MAX_LENGTH_DIGITS):
                raise PrimError(f"header {key} is not a number of at most {MAX_LENGTH_DIGITS} digits", line=number, offset=offset)
            if key.lower() == "content-transfer-encoding":
                raise PrimError("Content-Transfer-Encoding must not appear in PRIM commands", line=number, offset=offset)
            headers.append((key, text))
            offset += len(raw) + 2
        return tuple(headers)

    def _build(self, start: dict, headers: Headers, body: bytes) -> Union[Request, Response, PrimError]:
        if start["kind"] == "response":
            return Response(start["request_id"], start["code"], start["phrase"], headers, body, start["version"])
        method = start["method"]
        version = parse_version(start["version"])
        if not version.supported:
            raise PrimError(f"version {version} is not supported", code=503)
        if method not in self.methods:
            raise PrimError(f"method {method} is not implemented", code=501)
        if body and not any(name == "Content-Type" for name, _ in headers):
            default = default_content_type(method, version)
            if default is None:
                raise PrimError("a command with a body must carry Content-Type")
            headers = headers + (("Content-Type", default),)
        return Request(method, start["request_id"], headers, body, start["version"])


def parse_command(data: bytes, **limits: int) -> Command:
    """Parse exactly one complete command (for files and tests).

    :raise PrimError: if ``data`` is not one well-framed, acceptable command.
    """
    parser = Parser(**limits)  # type: ignore[arg-type]
    items = parser.feed(data)
    if not items:
        raise PrimError("incomplete command: the body is shorter than the start line says", fatal=True, offset=len(data))
    first = items[0]
    if isinstance(first, PrimError):
        raise first
    rest = bytes(parser._buffer)
    if len(items) > 1 or rest.strip(b"\r\n"):
        raise PrimError("octets after the end of the command: the body is longer than the start line says", offset=len(data) - len(rest))
    return first
