"""im: and pres: URIs (RFC 3860 §3, RFC 3859 §3, digest §3.5).

::

    IM-URI   = "im:"   [ to ] [ headers ]
    PRES-URI = "pres:" [ to ] [ headers ]
    to       = mailbox
    headers  = "?" header *( "&" header )

The local part belongs to its domain, so it is compared as it is (after
%-decoding); the domain is compared without regard to case (RFC 3861 §3).
``im:alice@example.com`` and ``pres:alice@example.com`` name the same
principal: :meth:`CPIMURI.principal` is the key for that.

The gateway also meets other schemes at its edges (``sip:``, ``xmpp:``,
``tel:``); :func:`parse_uri` parses only ``im:`` and ``pres:``, the adapters
map their own addresses to and from these.
"""

from __future__ import annotations

import re
import string
from typing import Iterable
from urllib.parse import quote, unquote_to_bytes

import attrs

from cpimgw.cpim.errors import URIError

IM = "im"
PRES = "pres"
SCHEMES = (IM, PRES)

# RFC 2822 atext plus '.', which is what a dot-atom local part may hold;
# everything else in a local part is %-escaped on output.
_LOCAL_SAFE = string.ascii_letters + string.digits + "!#$&'*+-/=^_`{|}~."
_DOMAIN_CHARS = frozenset(string.ascii_letters + string.digits + "-.")
# RFC 2396 uric less the delimiters of the header part.
_HEADER_SAFE = string.ascii_letters + string.digits + "-_.!~*'()/:@$+,;"
MAX_URI_LENGTH = 4096
# RFC 2396 §2.4.3: controls, space and the delimiters never appear unescaped;
# nor does anything outside US-ASCII.
_DELIMS = '<>"'
_BAD_CHAR = re.compile(r'[\x00-\x20\x7f-\U0010ffff<>"]')


def _decode(text: str, what: str, offset: int) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8", errors="strict")
    except UnicodeDecodeError as error:
        raise URIError(f"{what} is not UTF-8 after %-decoding: {error.reason}", offset=offset) from None


def _check_escapes(text: str, what: str, base: int) -> None:
    index = text.find("%")
    while index != -1:
        pair = text[index + 1 : index + 3]
        if len(pair) != 2 or any(c not in string.hexdigits for c in pair):
            raise URIError(f"bad %-escape in {what}", offset=base + index)
        index = text.find("%", index + 3)


def _check_domain(domain: str, offset: int) -> None:
    if not domain:
        raise URIError("the domain is empty", offset=offset)
    if domain.startswith("[") and domain.endswith("]"):
        return  # an address literal; kept as it is
    bad = [c for c in domain if c not in _DOMAIN_CHARS]
    if bad:
        raise URIError(f"the domain holds {bad[0]!r}, which no host name may hold", offset=offset)
    for label in domain.rstrip(".").split("."):
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-"):
            raise URIError(f"the domain label {label!r} is not a valid host name label", offset=offset)


@attrs.frozen(order=False)
class CPIMURI:
    """An ``im:`` or ``pres:`` URI.

    :ivar scheme: ``"im"`` or ``"pres"``.
    :ivar user: the local part, %-decoded (may be empty for a domain-only URI).
    :ivar domain: the domain as written (compare with :meth:`principal`).
    :ivar headers: the ``?hname=hvalue`` pairs, %-decoded, in order.
    """

    scheme: str
    user: str
    domain: str
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        text = f"{self.scheme}:"
        if self.user:
            text += quote(self.user, safe=_LOCAL_SAFE) + "@"
        text += self.domain
        if self.headers:
            text += "?" + "&".join(
                quote(name, safe=_HEADER_SAFE) + "=" + quote(value, safe=_HEADER_SAFE)
                for name, value in self.headers
            )
        return text

    @property
    def address(self) -> str:
        """``user@domain`` (or the domain alone), %-decoded, no scheme."""
        return f"{self.user}@{self.domain}" if self.user else self.domain

    @property
    def domain_key(self) -> str:
        """The domain in the form used for routing and comparison."""
        return self.domain.lower().rstrip(".")

    def principal(self) -> tuple[str, str]:
        """The key that ``im:`` and ``pres:`` URIs of one user share."""
        return (self.user, self.domain_key)

    def same_principal(self, other: "CPIMURI") -> bool:
        return self.principal() == other.principal()

    def as_im(self) -> "CPIMURI":
        return attrs.evolve(self, scheme=IM, headers=())

    def as_pres(self) -> "CPIMURI":
        return attrs.evolve(self, scheme=PRES, headers=())


def parse_uri(text: str, schemes: Iterable[str] = SCHEMES) -> CPIMURI:
    """Parse an ``im:`` or ``pres:`` URI; raise :class:`URIError` if invalid.

    :param schemes: the schemes accepted (both by default).
    """
    if not isinstance(text, str):
        raise URIError("a URI must be text")
    if len(text) > MAX_URI_LENGTH:
        raise URIError(f"longer than {MAX_URI_LENGTH} characters")
    scheme, colon, rest = text.partition(":")
    scheme_key = scheme.lower()
    allowed = tuple(schemes)
    if not colon or scheme_key not in allowed:
        raise URIError(f"expected a {' or '.join(s + ':' for s in allowed)} URI, got {text[:40]!r}", offset=0)
    base = len(scheme) + 1
    bad = _BAD_CHAR.search(rest)
    if bad is not None:
        if bad.group() in _DELIMS:
            raise URIError(
                f"{bad.group()!r} may not appear in a URI (RFC 2396 §2.4.3; escape it with %XX)",
                offset=base + bad.start(),
            )
        raise URIError("space, control or non-ASCII character (escape it with %XX)", offset=base + bad.start())
    if rest.startswith("//"):
        raise URIError("im: and pres: URIs have no authority part ('//')", offset=base)
    to, question, header_text = rest.partition("?")
    if not to:
        raise URIError("the address is empty", offset=base)
    user_text, at, domain = to.rpartition("@")
    if not at:
        user_text, domain = "", to
    elif not user_text:
        raise URIError("empty local part before '@'", offset=base)
    elif "@" in user_text:
        raise URIError("unescaped '@' in the local part (write it as %40)", offset=base + user_text.index("@"))
    _check_escapes(user_text, "the local part", base)
    user = _decode(user_text, "the local part", base)
    _check_domain(domain, base + len(user_text) + len(at))
    headers: list[tuple[str, str]] = []
    if question:
        hbase = base + len(to) + 1
        for piece in header_text.split("&"):
            name, equals, value = piece.partition("=")
            if not equals or not name:
                raise URIError(f"header {piece!r} is not hname=hvalue", offset=hbase)
            _check_escapes(piece, "a header", hbase)
            headers.append((_decode(name, "a header name", hbase), _decode(value, "a header value", hbase)))
            hbase += len(piece) + 1
    return CPIMURI(scheme_key, user, domain, tuple(headers))


def im_uri(user: str, domain: str) -> CPIMURI:
    """The ``im:`` URI of ``user@domain`` (``user`` not escaped yet)."""
    _check_domain(domain, 0)
    return CPIMURI(IM, user, domain)


def pres_uri(user: str, domain: str) -> CPIMURI:
    """The ``pres:`` URI of ``user@domain`` (``user`` not escaped yet)."""
    _check_domain(domain, 0)
    return CPIMURI(PRES, user, domain)
