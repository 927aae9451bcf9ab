"""IRC lines: parsing and writing, message tags, formatting codes, CTCP, length limits.

- RFC 2812 §2.3 (RFC 1459 §2.3): a message is ``[":" prefix SPACE] command
  params CRLF``, at most 512 octets with the CRLF, at most 15 parameters,
  the last one may be ``trailing`` (introduced by ``" :"``).
- IRCv3 ``message-tags``: an optional ``@key=value;key2 `` before the
  prefix, values escaped (``\\:`` ``;``, ``\\s`` space, ``\\\\``, ``\\r``,
  ``\\n``), at most 8191 octets of tags (4094 from a client).
- RFC 2812 §2.2: nicknames and the case mapping announced by ISUPPORT
  ``CASEMAPPING`` (``rfc1459``: ``[]\\~`` are the upper case of ``{}|^``;
  ``strict-rfc1459`` without ``~^``; ``ascii``).
- Formatting codes (de-facto, documented by the IRC client community as
  "IRC formatting"): bold ``\\x02``, colour ``\\x03[fg[,bg]]``, hex colour
  ``\\x04``, reset ``\\x0f``, monospace ``\\x11``, reverse ``\\x16``,
  italic ``\\x1d``, strike-through ``\\x1e``, underline ``\\x1f``.
- CTCP (the client-to-client protocol, ``\\x01TAG data\\x01`` inside a
  PRIVMSG or NOTICE); ``ACTION`` is the ``/me`` of IRC clients.

Text on IRC has no declared charset: a line is decoded as UTF-8 and, when
it is not UTF-8, with a configured fallback (Latin-1 by default), never
dropped.
"""

from __future__ import annotations

import re
from typing import Iterable

import attrs

from cpimgw.cpim.errors import ParseError

#: RFC 2812 §2.3: 512 octets including the CRLF.
MAX_LINE = 512
#: IRCv3 message-tags: the tag part (with "@" and the space) from a server.
MAX_TAGS = 8191
#: RFC 2812 §2.3: 14 middle parameters plus the trailing one.
MAX_PARAMS = 15

FORMATTING = re.compile(
    "\x03(?:\\d{1,2}(?:,\\d{1,2})?)?"  # mIRC colour, optional fg[,bg]
    "|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"  # hex colour
    "|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
CTCP_DELIMITER = "\x01"


class IRCParseError(ParseError):
    """An IRC line that is not RFC 2812 / IRCv3 message-tags syntax."""

    syntax = "irc"


def _error(reason: str, offset: int | None = None) -> IRCParseError:
    return IRCParseError(reason, syntax="irc", offset=offset)


@attrs.frozen
class IRCLine:
    """One IRC message.

    :ivar tags: ``(key, value)`` pairs of IRCv3 message tags, unescaped; a
        tag without a value has the value ``None``.
    :ivar prefix: the source (``nick!user@host`` or a server name), or ``None``.
    :ivar command: the command in upper case, or a three-digit numeric.
    :ivar params: the parameters, the trailing one last.
    """

    command: str
    params: tuple[str, ...] = ()
    prefix: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()

    @property
    def nick(self) -> str | None:
        """The nickname of a ``nick!user@host`` prefix (``None`` for a server prefix or none)."""
        if not self.prefix:
            return None
        nick, bang, _ = self.prefix.partition("!")
        if not bang and "." in nick:
            return None  # a server name (RFC 2812 §2.3.1: servername is a hostname)
        return nick

    def tag(self, key: str) -> str | None:
        """The value of the first tag ``key`` (``""`` for a tag without value), else ``None``."""
        for name, value in self.tags:
            if name == key:
                return value if value is not None else ""
        return None

    def to_text(self) -> str:
        """The line without its CRLF."""
        parts = []
        if self.tags:
            parts.append("@" + ";".join(k if v is None else f"{k}={escape_tag_value(v)}" for k, v in self.tags))
        if self.prefix:
            parts.append(":" + self.prefix)
        parts.append(self.command)
        params = list(self.params)
        for index, param in enumerate(params):
            last = index == len(params) - 1
            if last and (param == "" or " " in param or param.startswith(":")):
                parts.append(":" + param)
            else:
                parts.append(param)
        return " ".join(parts)

    def to_bytes(self) -> bytes:
        """The line as sent, CRLF included."""
        return self.to_text().encode("utf-8") + b"\r\n"


_TAG_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TAG_UNESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}


def unescape_tag_value(value: str) -> str:
    """IRCv3 message-tags value unescaping (an unknown escape is the character itself, a lone ``\\`` dropped)."""
    out = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\":
            index += 1
            if index < len(value):
                out.append(_TAG_ESCAPES.get(value[index], value[index]))
        else:
            out.append(char)
        index += 1
    return "".join(out)


def escape_tag_value(value: str) -> str:
    """IRCv3 message-tags value escaping."""
    return "".join(_TAG_UNESCAPES.get(char, char) for char in value)


def decode(data: bytes, fallback: str = "latin-1") -> str:
    """Text of an IRC line: UTF-8, else ``fallback`` (IRC declares no charset)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(fallback, errors="replace")


def parse_line(data: bytes | str, *, fallback: str = "latin-1") -> IRCLine:
    """Parse one IRC line (with or without its CRLF).

    :raise IRCParseError: an empty line, no command, a NUL/CR/LF inside,
        tags or line over their limits, or more than 15 parameters.
    """
    if isinstance(data, bytes):
        raw = data
        if raw.endswith(b"\r\n"):
            raw = raw[:-2]
        elif raw.endswith(b"\n"):
            raw = raw[:-1]
        text = decode(raw, fallback)
    else:
        text = data.rstrip("\r\n") if data.endswith("\n") else data
        raw = text.encode("utf-8")
    for bad in ("\x00", "\r", "\n"):
        if bad in text:
            raise _error(f"{bad!r} inside a line (RFC 2812 §2.3.1)", text.index(bad))
    tags: list[tuple[str, str | None]] = []
    rest = text
    offset = 0
    if rest.startswith("@"):
        tag_text, space, rest = rest[1:].partition(" ")
        if not space:
            raise _error("message tags without a command", 0)
        if len(tag_text.encode("utf-8")) + 2 > MAX_TAGS:
            raise _error(f"message tags longer than {MAX_TAGS} octets (IRCv3 message-tags)", 0)
        for item in tag_text.split(";"):
            if not item:
                continue
            key, equals, value = item.partition("=")
            if not re.fullmatch(r"\+?(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9-]+", key):
                raise _error(f"invalid tag key {key!r} (IRCv3 message-tags)", 1)
            tags.append((key, unescape_tag_value(value) if equals else None))
        offset = len(tag_text) + 2
        rest = rest.lstrip(" ")
    body_length = len(rest.encode("utf-8")) + 2
    if body_length > MAX_LINE:
        raise _error(f"line longer than {MAX_LINE} octets with CRLF (RFC 2812 §2.3): {body_length}", offset)
    prefix = None
    if rest.startswith(":"):
        prefix, space, rest = rest[1:].partition(" ")
        if not prefix or not space:
            raise _error("a prefix without a command (RFC 2812 §2.3.1)", offset)
        rest = rest.lstrip(" ")
    trailing = None
    if " :" in rest:
        rest, trailing = rest.split(" :", 1)
    elif rest.startswith(":"):
        raise _error("no command (RFC 2812 §2.3.1)", offset)
    words = rest.split()
    if not words:
        raise _error("no command (RFC 2812 §2.3.1)", offset)
    command = words[0].upper()
    if not (command.isalpha() or (len(command) == 3 and command.isdigit())):
        raise _error(f"command {words[0]!r} is neither letters nor a three-digit numeric (RFC 2812 §2.3.1)", offset)
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    if len(params) > MAX_PARAMS:
        raise _error(f"{len(params)} parameters, at most {MAX_PARAMS} (RFC 2812 §2.3)", offset)
    del raw
    return IRCLine(command, tuple(params), prefix, tuple(tags))


def split_lines(data: bytes) -> list[bytes]:
    """The lines of ``data`` (CRLF or LF ends), empty ones left out."""
    return [line for line in re.split(rb"\r?\n", data) if line.strip()]


# -- nicknames -----------------------------------------------------------------------------------------------

_NICK = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*\Z")


def valid_nick(nick: str, max_length: int = 30) -> bool:
    """RFC 2812 §2.3.1 ``nickname = ( letter / special ) *( letter / digit / special / "-" )``."""
    return bool(_NICK.match(nick)) and len(nick) <= max_length


def irc_lower(text: str, casemapping: str = "rfc1459") -> str:
    """``text`` in lower case under ``casemapping`` (RFC 2812 §2.2; ISUPPORT CASEMAPPING)."""
    text = text.translate(_ASCII_LOWER)
    if casemapping == "ascii":
        return text
    if casemapping == "strict-rfc1459":
        return text.translate(_STRICT_LOWER)
    return text.translate(_RFC1459_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_STRICT_LOWER = str.maketrans("[]\\", "{}|")
_RFC1459_LOWER = str.maketrans("[]\\~", "{}|^")


# -- formatting and CTCP -------------------------------------------------------------------------------------


def strip_formatting(text: str) -> str:
    """``text`` without IRC formatting codes (bold, colours, italic, underline, reverse, reset...)."""
    return FORMATTING.sub("", text)


def ctcp_parse(text: str) -> tuple[str, str] | None:
    """``(TAG, data)`` of a CTCP message (``\\x01TAG data\\x01``), else ``None``."""
    if not text.startswith(CTCP_DELIMITER):
        return None
    inner = text[1:-1] if text.endswith(CTCP_DELIMITER) and len(text) > 1 else text[1:]
    tag, _, data = inner.partition(" ")
    if not tag:
        return None
    return tag.upper(), data


def ctcp(tag: str, data: str = "") -> str:
    """A CTCP message text."""
    return f"{CTCP_DELIMITER}{tag} {data}{CTCP_DELIMITER}" if data else f"{CTCP_DELIMITER}{tag}{CTCP_DELIMITER}"


def split_text(text: str, budget: int) -> list[str]:
    """Split ``text`` into pieces of at most ``budget`` UTF-8 octets each, one IRC message each.

    Line ends end a piece (an IRC line cannot hold CR or LF, RFC 2812
    §2.3.1); a longer line is cut at the last space within the budget, else
    at a character boundary (a UTF-8 sequence is never cut).  Empty lines
    are left out; an empty text gives one empty piece.
    """
    if budget < 8:
        raise ValueError(f"a budget of {budget} octets cannot hold a message")
    pieces: list[str] = []
    for line in re.split(r"\r\n|\r|\n", text):
        while len(line.encode("utf-8")) > budget:
            cut = _cut(line, budget)
            pieces.append(line[:cut].rstrip(" ") or line[:cut])
            line = line[cut:].lstrip(" ")
        if line:
            pieces.append(line)
    return pieces or [""]


def _cut(line: str, budget: int) -> int:
    """The index where ``line`` is cut so that ``line[:index]`` fits in ``budget`` octets."""
    size = 0
    fit = 0
    for index, char in enumerate(line):
        size += len(char.encode("utf-8"))
        if size > budget:
            break
        fit = index + 1
    space = line.rfind(" ", 0, fit + 1)
    return space if space > fit // 2 else fit


def message_budget(own_prefix_length: int, command: str, target: str) -> int:
    """Octets left for the text of ``COMMAND target :text`` as the server relays it to the recipient.

    The server prefixes our line with ``:nick!user@host `` (``own_prefix_length``
    octets with the colon and the space) before it passes it on, and the whole
    must fit in 512 octets with the CRLF (RFC 2812 §2.3).
    """
    return MAX_LINE - 2 - own_prefix_length - len(f"{command} {target} :".encode("utf-8"))


def join_lines(lines: Iterable[IRCLine]) -> bytes:
    """Several lines as one octet string (each with its CRLF)."""
    return b"".join(line.to_bytes() for line in lines)
