"""JID <-> im:/pres: address mapping (RFC 3922 §3, RFC 7247 §5, XEP-0106).

Two kinds of JID meet the gateway:

* **XMPP users** (``alice@xmpp.example/balcony``) — users of the XMPP domains
  the adapter reaches (its ``domains``).  Their address maps straight to
  ``im:alice@xmpp.example`` / ``pres:alice@xmpp.example``: the XEP-0106
  escapes of the localpart are undone (RFC 7247 §5.2: ``\\26 \\27 \\2f`` become
  ``& ' /``; every other XEP-0106 escape is undone as well) and the resource is
  kept on the side (``Message.source_instance``, a PIDF tuple id).
* **Users of other networks** — they appear to XMPP users as JIDs under the
  gateway's own domain (the component or s2s domain), the whole foreign
  address XEP-0106-escaped in the localpart::

      im:bob@sip.example   <->   bob\\40sip.example@gw.xmpp.example

  The instance of a foreign user (SIP GRUU, PRIM User-Agent-ID) travels as
  the resource.

The im:/pres: side is a :class:`cpimgw.cpim.uri.CPIMURI` whose ``user`` is
already %-decoded; its ``str()`` %-encodes what a URI cannot hold (RFC 7247
§5.3).  Nodeprep case folding applies to XMPP localparts, so a foreign local
part that differs only in case cannot be told apart once it is a JID.

Stringprep (RFC 3920 §3, nodeprep/nameprep/resourceprep) costs ~0.2 ms per
JID in CPython, more than everything else a message costs together, and the
same few addresses recur in every stanza: :func:`parse_jid`,
:func:`make_jid` and the two :class:`AddressMap` mappings are memoised in
bounded LRU caches (:data:`CACHE_SIZE` entries each).  The cached values are
immutable (``CPIMURI``) or never mutated by the adapter (``JID``, like
Twisted's own ``internJID``).
"""

from __future__ import annotations

import functools

import attrs
from twisted.words.protocols.jabber.jid import JID, InvalidFormat

from cpimgw.cpim.errors import URIError
from cpimgw.cpim.uri import IM, PRES, CPIMURI, parse_uri

#: XEP-0106 §3 table: character -> escape sequence.
ESCAPES: dict[str, str] = {
    " ": "\\20",
    '"': "\\22",
    "&": "\\26",
    "'": "\\27",
    "/": "\\2f",
    ":": "\\3a",
    "<": "\\3c",
    ">": "\\3e",
    "@": "\\40",
    "\\": "\\5c",
}
_UNESCAPES = {value[1:]: key for key, value in ESCAPES.items()}
#: RFC 6122 §2.3: a localpart is at most 1023 octets.
MAX_LOCALPART_OCTETS = 1023
#: Entries of each address cache (JID text -> JID, JID -> URI, URI -> JID).
CACHE_SIZE = 8192


def escape_localpart(text: str) -> str:
    """XEP-0106 escaping of ``text`` for use as a JID localpart.

    A backslash is escaped only where it would otherwise start an escape
    sequence (XEP-0106 §4.2); a leading or trailing space cannot be escaped
    (XEP-0106 §4.3) and raises :class:`URIError`.
    """
    if text.startswith(" ") or text.endswith(" "):
        raise URIError("a JID localpart cannot begin or end with a space (XEP-0106 §4.3)", syntax="xmpp")
    out = []
    for index, char in enumerate(text):
        if char == "\\":
            if text[index + 1 : index + 3].lower() in _UNESCAPES:
                out.append("\\5c")
            else:
                out.append(char)
        elif char in ESCAPES:
            out.append(ESCAPES[char])
        else:
            out.append(char)
    escaped = "".join(out)
    if len(escaped.encode("utf-8")) > MAX_LOCALPART_OCTETS:
        raise URIError(f"the escaped localpart is longer than {MAX_LOCALPART_OCTETS} octets", syntax="xmpp")
    return escaped


def unescape_localpart(text: str) -> str:
    """Undo XEP-0106 escaping: every known ``\\XX`` sequence becomes its character."""
    out = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            code = text[index + 1 : index + 3].lower()
            if code in _UNESCAPES:
                out.append(_UNESCAPES[code])
                index += 3
                continue
        out.append(char)
        index += 1
    return "".join(out)


def _ascii_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError as error:
        raise URIError(f"the domain {domain!r} has no ASCII form: {error}", syntax="xmpp") from None


@functools.lru_cache(maxsize=CACHE_SIZE)
def parse_jid(text: str) -> JID:
    """A JID from text, stringprep'd; :class:`URIError` if it is not a valid JID (memoised; do not mutate)."""
    if not text:
        raise URIError("an empty JID", syntax="xmpp")
    try:
        return JID(text)
    except (InvalidFormat, UnicodeError, ValueError) as error:
        raise URIError(f"not a valid JID {text[:80]!r}: {error}", syntax="xmpp") from None


@functools.lru_cache(maxsize=CACHE_SIZE)
def make_jid(user: str | None, host: str, resource: str | None = None) -> JID:
    """A JID from its parts (``user`` already XEP-0106 escaped), stringprep'd (memoised; do not mutate)."""
    try:
        return JID(tuple=(user or None, host, resource or None))
    except (InvalidFormat, UnicodeError, ValueError) as error:
        raise URIError(f"not a valid JID ({user!r}, {host!r}, {resource!r}): {error}", syntax="xmpp") from None


@functools.lru_cache(maxsize=CACHE_SIZE)
def _jid_to_uri(addresses: "AddressMap", text: str, scheme: str) -> tuple[CPIMURI, str | None]:
    return addresses._jid_to_uri(parse_jid(text), scheme)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _uri_to_jid(addresses: "AddressMap", uri: CPIMURI, resource: str | None) -> JID:
    return addresses._uri_to_jid(uri, resource)


@attrs.frozen(cache_hash=True)
class AddressMap:
    """The address rules of one adapter instance.

    :ivar gateway_domain: the component or s2s domain under which users of
        other networks appear (``gw.xmpp.example``).
    :ivar xmpp_domains: the XMPP domains whose users the adapter reaches
        (lower case).
    """

    gateway_domain: str = attrs.field(converter=str.lower)
    xmpp_domains: tuple[str, ...] = attrs.field(
        default=(), converter=lambda domains: tuple(d.lower().rstrip(".") for d in domains)
    )

    def is_gateway(self, jid: JID) -> bool:
        """Whether ``jid`` is under the gateway's domain (a user of another network)."""
        return jid.host.lower() == self.gateway_domain

    def jid_to_uri(self, jid: JID | str, scheme: str = IM) -> tuple[CPIMURI, str | None]:
        """Map a JID (or its text) to ``(im:/pres: URI, resource or None)`` (memoised).

        Under the gateway domain the unescaped localpart must be a foreign
        address ``user@domain``; elsewhere the JID is an XMPP user's.
        """
        return _jid_to_uri(self, jid if isinstance(jid, str) else jid.full(), scheme)

    def _jid_to_uri(self, jid: JID, scheme: str) -> tuple[CPIMURI, str | None]:
        if scheme not in (IM, PRES):
            raise ValueError(f"scheme must be im or pres, not {scheme!r}")
        resource = jid.resource or None
        if self.is_gateway(jid):
            if not jid.user:
                return CPIMURI(scheme, "", self.gateway_domain), resource
            address = unescape_localpart(jid.user)
            user, at, domain = address.rpartition("@")
            if not at or not user or not domain:
                raise URIError(
                    f"{jid.full()!r}: a JID under {self.gateway_domain} must hold an escaped "
                    "foreign address user\\40domain in its localpart",
                    syntax="xmpp",
                )
            # The domain goes through the URI parser so it is checked like any other.
            uri = parse_uri(f"{scheme}:x@{_ascii_domain(domain)}")
            return attrs.evolve(uri, user=user), resource
        user = unescape_localpart(jid.user) if jid.user else ""
        uri = parse_uri(f"{scheme}:{_ascii_domain(jid.host)}")
        return attrs.evolve(uri, user=user), resource

    def is_xmpp_user(self, uri: CPIMURI) -> bool:
        """Whether ``uri`` names a user of one of the XMPP domains (not a foreign one)."""
        domain = uri.domain_key
        return domain == self.gateway_domain or domain in self.xmpp_domains

    def uri_to_jid(self, uri: CPIMURI, resource: str | None = None) -> JID:
        """Map an im:/pres: URI (and an instance) to the JID XMPP users see.

        XMPP users keep their own JID; anyone else becomes
        ``escape(user@domain)@gateway_domain`` (memoised).
        """
        return _uri_to_jid(self, uri, resource or None)

    def _uri_to_jid(self, uri: CPIMURI, resource: str | None) -> JID:
        if self.is_xmpp_user(uri):
            user = escape_localpart(uri.user) if uri.user else None
            return make_jid(user, uri.domain_key, resource)
        return make_jid(escape_localpart(uri.address), self.gateway_domain, resource)
