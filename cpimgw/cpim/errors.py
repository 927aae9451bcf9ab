"""Typed errors of cpimgw: every rejection names where and why.

A parser never raises anything but a subclass of :class:`ParseError` for bad
input (RFC 3862, RFC 3863, RFC 3261, PRIM and XMPP codecs alike), so that an
adapter can turn it into the native rejection (SIP 400 with a reason, XMPP
``bad-request`` or a stream error, PRIM 400) and keep serving.  Nothing here
imports Twisted.
"""

from __future__ import annotations


class CPIMGWError(Exception):
    """Base class of every error that cpimgw raises on purpose."""


class ParseError(CPIMGWError, ValueError):
    """Input that does not follow its grammar.

    :param reason: what is wrong, in words an operator can act on.
    :param line: 1-based line number of the offending text, when known.
    :param offset: 0-based octet offset of the offending text, when known.
    :param syntax: which grammar was violated (``"message/cpim"``,
        ``"pidf"``, ``"sip"``, ``"prim"``, ``"xmpp"``, ``"uri"``...).
    """

    syntax = "input"

    def __init__(
        self,
        reason: str,
        *,
        line: int | None = None,
        offset: int | None = None,
        syntax: str | None = None,
    ) -> None:
        self.reason = reason
        self.line = line
        self.offset = offset
        if syntax is not None:
            self.syntax = syntax
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line: the grammar, the location and the reason."""
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        location = f" at {', '.join(where)}" if where else ""
        return f"{self.syntax}{location}: {self.reason}"


class URIError(ParseError):
    """An im:, pres: or other address that is not valid."""

    syntax = "uri"


class MessageFormatError(ParseError):
    """A Message/CPIM object (RFC 3862) that is not valid."""

    syntax = "message/cpim"


class NotUnderstoodError(MessageFormatError):
    """A ``Require`` header (RFC 3862 §3.5) names something we do not know.

    :param names: the required names that are not understood.
    """

    def __init__(self, names: tuple[str, ...], **kw: object) -> None:
        self.names = tuple(names)
        super().__init__(
            "Require names what this gateway does not understand: "
            + ", ".join(self.names),
            **kw,  # type: ignore[arg-type]
        )


class PresenceDocumentError(ParseError):
    """A PIDF (RFC 3863) or RPID (RFC 4480) document that is not valid."""

    syntax = "pidf"


class LimitExceededError(ParseError):
    """Input larger, deeper or more numerous than a configured limit.

    :param limit: the name of the limit (``"max_size"``, ``"max_depth"``...).
    :param value: the configured value that was exceeded.
    """

    def __init__(self, limit: str, value: int, **kw: object) -> None:
        self.limit = limit
        self.value = value
        super().__init__(f"{limit} of {value} exceeded", **kw)  # type: ignore[arg-type]


class ConfigError(CPIMGWError):
    """A configuration that cannot be used.

    Its ``str()`` is the one line an operator sees: the file, the key and
    what is wrong.
    """

    def __init__(self, reason: str, *, path: str | None = None, key: str | None = None) -> None:
        self.reason = reason
        self.path = path
        self.key = key
        super().__init__(self.describe())

    def describe(self) -> str:
        parts = [self.path or "<defaults>"]
        if self.key:
            parts.append(self.key)
        return ": ".join(parts + [self.reason])
