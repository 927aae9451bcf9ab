"""The server-to-server attachment of the XMPP adapter (RFC 6120 §4-5, §13.7; XEP-0220, XEP-0185).

:class:`S2SConnection` makes the gateway an XMPP server for its own domain.
It is what :class:`~cpimgw.adapters.xmpp.adapter.XMPPAdapter` talks to in
``mode = "s2s"`` (the component mode has
:class:`~cpimgw.adapters.xmpp.component.ComponentConnection` instead): the
same ``send(stanza)``, ``connected``, ``namespace`` and ``addHandler``, so
the adapter's mapping logic is shared and only the stream attachment differs.

Incoming streams (``jabber:server``, we are the Receiving and the
Authoritative Server):

- the stream header must be ``jabber:server`` (``<invalid-namespace/>``) to
  our domain (``<host-unknown/>``); the features offer STARTTLS, marked
  ``<required/>`` when ``require_tls``, and after TLS the dialback feature
  (``urn:xmpp:features:dialback``); ``<starttls/>`` is answered with
  ``<proceed/>`` and our certificate for our domain;
- ``<db:result/>`` (XEP-0220 §2.1): we verify the key with the sender's
  Authoritative Server over a new outgoing stream (STARTTLS, certificate
  verified) with ``<db:verify/>`` and answer ``valid`` (the domain is then
  authenticated on this stream; several domains may be) or ``invalid``
  followed by the stream error ``<not-authorized/>``;
- ``<db:verify/>`` (XEP-0220 §2.3): we recompute the XEP-0185 key
  (HMAC-SHA256 over "Receiving Originating StreamID" with the SHA-256 of our
  dialback secret) and answer ``valid``/``invalid``;
- a stanza before any domain is authenticated ends the stream with
  ``<not-authorized/>``; one whose ``from`` domain was not authenticated on
  this stream with ``<invalid-from/>``; one not addressed to our domain with
  ``<host-unknown/>``; dialback before TLS while TLS is required with
  ``<policy-violation/>``.  Each refusal is logged and counted
  (``counters["refused-<condition>"]`` and the shared ``StreamStats``).
  A stream that authenticates nothing within ``timeout`` seconds is closed.

Any stream, either way, that carries nothing for ``idle_timeout`` seconds is
closed with ``</stream:stream>`` (RFC 6120 §4.4); an outgoing one is opened
again on the next stanza.  One periodic sweep checks them all (no timer per
stanza or per stream).

Outgoing streams (we are the Originating Server): one per remote domain,
opened on the first stanza for it and kept while it lives.  The address is
the static ``peers`` table (``domain -> (host, port)``) or else RFC 6120
§3.2 SRV ``_xmpp-server._tcp`` through ``twisted.names`` with the A/AAAA
fallback on port 5269.  STARTTLS is negotiated (mandatory with
``require_tls``) and the peer's certificate verified against its domain, we
present ours, then dialback authenticates us.  Stanzas wait in a bounded
queue meanwhile; when the stream cannot be set up they are bounced back to
the adapter as ``remote-server-not-found`` errors (never dropped silently).

Every stream is a :class:`~cpimgw.adapters.xmpp.hardening.HardenedXmlStream`
(restricted XML, stanza size cap, rate limit, ``TCP_NODELAY``).
"""

from __future__ import annotations

import collections
import hmac
import secrets
from hashlib import sha256
from typing import Any, Callable, Mapping

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error as jabber_error
from twisted.words.protocols.jabber import jid as jabber_jid
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish, utility
from twisted.words.xish import xmlstream as xish_xmlstream
from tx_xmpp.server import XMPPServerConnector

from cpimgw import metrics
from cpimgw.adapters.xmpp import mapping
from cpimgw.adapters.xmpp.component import NotConnected
from cpimgw.adapters.xmpp.hardening import HardenedXmlStream, StreamLimits, StreamStats, harden_factory

log = Logger()

NS_SERVER = "jabber:server"
NS_DIALBACK = "jabber:server:dialback"
NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback"
NS_TLS = xmlstream.NS_XMPP_TLS
NS_STREAMS = xmlstream.NS_STREAMS
DEFAULT_PORT = 5269
STANZAS = ("message", "presence", "iq")


class DialbackFailed(Exception):
    """The receiving server answered our ``<db:result/>`` with something else than ``valid``."""


def dialback_key(secret: str, receiving: str, originating: str, stream_id: str) -> str:
    """The XEP-0185 dialback key.

    ``HMAC-SHA256(key=hex(SHA-256(secret)), "Receiving Originating StreamID")``
    as lowercase hex (XEP-0185 §3), the same as wokkel/tx_xmpp's ``generateKey``.
    """
    hashed = sha256(secret.encode("utf-8")).hexdigest().encode("ascii")
    text = " ".join((receiving, originating, stream_id)).encode("utf-8")
    return hmac.new(hashed, text, sha256).hexdigest()


def _domain_of(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return jabber_jid.internJID(value).host
    except jabber_jid.InvalidFormat:
        return None


def dialback_element(name: str, sender: str, recipient: str, *, kind: str | None = None,
                     stream_id: str | None = None, key: str | None = None) -> domish.Element:
    """A ``<db:result/>`` or ``<db:verify/>`` element (XEP-0220 §2)."""
    element = domish.Element((NS_DIALBACK, name))
    element["from"] = sender
    element["to"] = recipient
    if kind is not None:
        element["type"] = kind
    if stream_id is not None:
        element["id"] = stream_id
    if key is not None:
        element.addContent(key)
    return element


def failure_kind(reason: Failure) -> str:
    """``tls``, ``dialback``, ``timeout`` or ``connect``: why an outgoing stream failed (for counters)."""
    if reason.check(DialbackFailed):
        return "dialback"
    if reason.check(defer.TimeoutError, defer.CancelledError):
        return "timeout"
    modules = " ".join(f"{c.__module__}.{c.__name__}" for c in reason.type.__mro__)
    text = reason.getErrorMessage().lower()
    if "SSL" in modules or "service_identity" in modules or "TLS" in modules or "certificate" in text:
        return "tls"
    return "connect"


# -- outgoing streams ------------------------------------------------------


class OriginatingDialback:
    """The last initializer of an outgoing stream: authenticate us with ``<db:result/>`` (XEP-0220 §2.1)."""

    def __init__(self, xs: Any, this_host: str, other_host: str, secret: str) -> None:
        self.xmlstream = xs
        self.this_host = this_host
        self.other_host = other_host
        self.secret = secret
        self.deferred: defer.Deferred[None] | None = None

    def initialize(self) -> defer.Deferred[None]:
        self.deferred = defer.Deferred()
        self.xmlstream.addObserver(f"/result[@xmlns='{NS_DIALBACK}']", self.on_result)
        key = dialback_key(self.secret, self.other_host, self.this_host, self.xmlstream.sid or "")
        self.xmlstream.send(dialback_element("result", self.this_host, self.other_host, key=key))
        return self.deferred

    def on_result(self, result: domish.Element) -> None:
        if result.getAttribute("from") != self.other_host or result.getAttribute("to") != self.this_host:
            return  # the answer for another domain pair on this stream
        self.xmlstream.removeObserver(f"/result[@xmlns='{NS_DIALBACK}']", self.on_result)
        deferred, self.deferred = self.deferred, None
        if deferred is None:
            return
        if result.getAttribute("type") == "valid":
            self.xmlstream.otherEntity = jabber_jid.internJID(self.other_host)
            deferred.callback(None)
        else:
            deferred.errback(DialbackFailed(f"{self.other_host} answered dialback {result.getAttribute('type')!r}"))


class VerifyDialback:
    """The last initializer of a verification stream: ask the Authoritative Server (XEP-0220 §2.3)."""

    def __init__(self, xs: Any, this_host: str, other_host: str, stream_id: str, key: str) -> None:
        self.xmlstream = xs
        self.this_host = this_host
        self.other_host = other_host
        self.stream_id = stream_id
        self.key = key
        self.deferred: defer.Deferred[None] | None = None

    def initialize(self) -> defer.Deferred[None]:
        self.deferred = defer.Deferred()
        self.xmlstream.addObserver(f"/verify[@xmlns='{NS_DIALBACK}']", self.on_verify)
        self.xmlstream.send(dialback_element("verify", self.this_host, self.other_host,
                                             stream_id=self.stream_id, key=self.key))
        return self.deferred

    def on_verify(self, verify: domish.Element) -> None:
        if verify.getAttribute("id") != self.stream_id:
            return
        self.xmlstream.removeObserver(f"/verify[@xmlns='{NS_DIALBACK}']", self.on_verify)
        deferred, self.deferred = self.deferred, None
        if deferred is None:
            return
        if (verify.getAttribute("type") == "valid" and verify.getAttribute("from") == self.other_host
                and verify.getAttribute("to") == self.this_host):
            deferred.callback(None)
        else:
            deferred.errback(DialbackFailed(f"{self.other_host} says the key is {verify.getAttribute('type')!r}"))


class OutgoingAuthenticator(xmlstream.ConnectAuthenticator):
    """An initiating ``jabber:server`` stream: STARTTLS (verified), then dialback or verify.

    :param last: ``"result"`` to authenticate us (:class:`OriginatingDialback`)
        or ``"verify"`` to check a key for an incoming stream (:class:`VerifyDialback`).
    """

    namespace = NS_SERVER

    def __init__(self, this_host: str, other_host: str, *, secret: str = "", tls: Any = None,
                 require_tls: bool = True, last: str = "result", stream_id: str = "", key: str = "") -> None:
        xmlstream.ConnectAuthenticator.__init__(self, other_host)
        self.this_host = this_host
        self.other_host = other_host
        self.secret = secret
        self.tls = tls
        self.require_tls = require_tls
        self.last = last
        self.stream_id = stream_id
        self.key = key

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.xmlstream.thisEntity = jabber_jid.internJID(self.this_host)
        self.xmlstream.prefixes = {NS_STREAMS: "stream", NS_DIALBACK: "db"}
        xmlstream.ConnectAuthenticator.connectionMade(self)

    def associateWithStream(self, xs: Any) -> None:  # noqa: N802 - Twisted's name
        xmlstream.ConnectAuthenticator.associateWithStream(self, xs)
        initializers: list[Any] = []
        if self.tls is not None:
            initializers.append(xmlstream.TLSInitiatingInitializer(
                xs, required=self.require_tls, configurationForTLS=self.tls.client_options(self.other_host)))
        if self.last == "verify":
            initializers.append(VerifyDialback(xs, self.this_host, self.other_host, self.stream_id, self.key))
        else:
            initializers.append(OriginatingDialback(xs, self.this_host, self.other_host, self.secret))
        xs.initializers = initializers


class OutgoingFactory(xish_xmlstream.XmlStreamFactoryMixin, protocol.ClientFactory):
    """One outgoing stream; ``deferred`` fires with the authenticated stream or fails once."""

    protocol = HardenedXmlStream

    def __init__(self, authenticator: OutgoingAuthenticator) -> None:
        xish_xmlstream.XmlStreamFactoryMixin.__init__(self, authenticator)
        self.authenticator = authenticator
        self.deferred: defer.Deferred[Any] = defer.Deferred()
        self.stream: Any = None
        self.addBootstrap(xish_xmlstream.STREAM_CONNECTED_EVENT, self._connected)
        self.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, self._authenticated)
        self.addBootstrap(xmlstream.INIT_FAILED_EVENT, self._init_failed)
        self.addBootstrap(xish_xmlstream.STREAM_END_EVENT, self._ended)

    def _connected(self, xs: Any) -> None:
        self.stream = xs

    def _fire(self, result: Any) -> None:
        deferred, self.deferred = self.deferred, None
        if deferred is not None and not deferred.called:  # a timeout may have fired it already
            if isinstance(result, Failure):
                deferred.errback(result)
            else:
                deferred.callback(result)

    def _authenticated(self, xs: Any) -> None:
        self._fire(xs)

    def _init_failed(self, reason: Failure) -> None:
        self._fire(reason)
        if self.stream is not None and self.stream.transport is not None:
            self.stream.transport.loseConnection()

    def _ended(self, reason: Any) -> None:
        if not isinstance(reason, Failure):
            reason = Failure(ConnectionError("the stream ended before it was authenticated"))
        self._fire(reason)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        self._fire(reason)


# -- incoming streams ------------------------------------------------------


class IncomingAuthenticator(xmlstream.ListenAuthenticator):
    """A receiving ``jabber:server`` stream: STARTTLS, dialback, then the peer's stanzas."""

    namespace = NS_SERVER

    def __init__(self, owner: "S2SConnection") -> None:
        xmlstream.ListenAuthenticator.__init__(self)
        self.owner = owner
        self.secured = False
        self.authenticated: set[str] = set()
        self.verifying: set[str] = set()
        self._timeout: Any = None

    def associateWithStream(self, xs: Any) -> None:  # noqa: N802 - Twisted's name
        xmlstream.ListenAuthenticator.associateWithStream(self, xs)
        xs.addObserver("/*", self.on_element)
        xs.addObserver(xish_xmlstream.STREAM_END_EVENT, self._ended)
        self.owner.incoming.add(xs)
        if self.owner.timeout > 0:
            self._timeout = self.owner.reactor.callLater(self.owner.timeout, self._expire)

    def _ended(self, reason: Any) -> None:
        peer = self.xmlstream.transport.getPeer() if self.xmlstream.transport is not None else None
        log.info("XMPP s2s: incoming stream from {peer} ({domains}) closed: {why}", peer=peer,
                 domains=", ".join(sorted(self.authenticated)) or "unauthenticated",
                 why=reason.getErrorMessage() if isinstance(reason, Failure) else "end of stream")
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        self.owner.incoming.discard(self.xmlstream)

    def _expire(self) -> None:
        self._timeout = None
        if not self.authenticated and self.xmlstream.transport is not None:
            self.refuse("connection-timeout", f"nothing authenticated within {self.owner.timeout} s")

    def refuse(self, condition: str, reason: str) -> None:
        """End the stream with the stream error ``condition``: logged, counted."""
        self.owner.count(f"refused-{condition}")
        reject = getattr(self.xmlstream, "reject", None)
        if reject is not None:
            reject(condition, reason)
        else:  # a plain XmlStream (never in service; kept for robustness)
            self.xmlstream.sendStreamError(jabber_error.StreamError(condition, reason))

    def streamStarted(self, root: domish.Element) -> None:  # noqa: N802 - Twisted's name
        xmlstream.ListenAuthenticator.streamStarted(self, root)
        domain = self.owner.domain
        target = _domain_of(root.getAttribute("to")) or domain
        self.xmlstream.namespace = NS_SERVER
        self.xmlstream.prefixes = {NS_STREAMS: "stream", NS_DIALBACK: "db"}
        self.xmlstream.thisEntity = jabber_jid.internJID(domain)
        if root.uri != NS_STREAMS or root.defaultUri != NS_SERVER:
            self.refuse("invalid-namespace", f"not a jabber:server stream ({root.defaultUri!r})")
            return
        if target != domain:
            self.refuse("host-unknown", f"this server serves {domain}, not {target}")
            return
        if len(self.owner.incoming) > self.owner.max_incoming:
            self.refuse("resource-constraint", f"more than {self.owner.max_incoming} incoming streams")
            return
        self.xmlstream.sendHeader()
        if self.xmlstream.version >= (1, 0):
            features = domish.Element((NS_STREAMS, "features"))
            if not self.secured and self.owner.tls is not None:
                starttls = features.addElement((NS_TLS, "starttls"))
                if self.owner.require_tls:
                    starttls.addElement("required")
            if self.secured or not self.owner.require_tls:
                features.addElement((NS_DIALBACK_FEATURE, "dialback")).addElement("errors")
            self.xmlstream.send(features)

    def on_element(self, element: domish.Element) -> None:
        if element.uri == NS_STREAMS:
            return  # stream errors and features: the XmlStream's own business
        if element.uri == NS_TLS and element.name == "starttls":
            self._starttls()
        elif element.uri == NS_DIALBACK and element.name in ("result", "verify"):
            if self.owner.require_tls and not self.secured:
                self.refuse("policy-violation", "TLS is required before dialback")
            elif element.name == "result":
                self._on_result(element)
            else:
                self._on_verify(element)
        elif element.name in STANZAS and element.uri == NS_SERVER:
            self._on_stanza(element)
        else:
            self.refuse("unsupported-stanza-type", f"<{element.name} xmlns='{element.uri}'/> is not understood")

    def _starttls(self) -> None:
        if self.secured or self.owner.tls is None:
            self.refuse("policy-violation" if self.secured else "unsupported-feature", "STARTTLS is not offered")
            return
        self.xmlstream.send(domish.Element((NS_TLS, "proceed")))
        self.xmlstream.transport.startTLS(self.owner.server_options)
        self.secured = True
        self.xmlstream.reset()

    def _on_result(self, result: domish.Element) -> None:
        originating = _domain_of(result.getAttribute("from"))
        receiving = _domain_of(result.getAttribute("to"))
        if result.getAttribute("type"):
            return  # an answer: we never send db:result on an incoming stream
        if not originating or not receiving:
            self.refuse("improper-addressing", "db:result needs from and to")
            return
        if receiving != self.owner.domain:
            self.refuse("host-unknown", f"this server serves {self.owner.domain}, not {receiving}")
            return
        if originating in self.authenticated or originating in self.verifying:
            return
        if len(self.authenticated) + len(self.verifying) >= self.owner.max_domains:
            self.refuse("policy-violation", f"more than {self.owner.max_domains} domains on one stream")
            return
        key = str(result).strip()
        self.verifying.add(originating)
        stream_id = self.xmlstream.sid or ""
        verified = self.owner.verify_key(originating, stream_id, key)
        verified.addCallbacks(self._verified, self._not_verified, callbackArgs=(originating,),
                              errbackArgs=(originating,))

    def _verified(self, _: Any, originating: str) -> None:
        self.verifying.discard(originating)
        if self.xmlstream.transport is None or getattr(self.xmlstream, "_rejected", False):
            return
        self.authenticated.add(originating)
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self.owner.count("dialback-in-valid")
        log.info("XMPP s2s: {peer} authenticated by dialback on an incoming stream", peer=originating)
        self.xmlstream.send(dialback_element("result", self.owner.domain, originating, kind="valid"))

    def _not_verified(self, reason: Failure, originating: str) -> None:
        self.verifying.discard(originating)
        self.owner.count("dialback-in-failed")
        log.warn("XMPP s2s: dialback of {peer} failed: {why}", peer=originating, why=reason.getErrorMessage())
        if self.xmlstream.transport is None or getattr(self.xmlstream, "_rejected", False):
            return
        self.xmlstream.send(dialback_element("result", self.owner.domain, originating, kind="invalid"))
        self.refuse("not-authorized", f"dialback for {originating} failed: {reason.getErrorMessage()}")

    def _on_verify(self, verify: domish.Element) -> None:
        receiving = _domain_of(verify.getAttribute("from"))
        originating = _domain_of(verify.getAttribute("to"))
        if verify.getAttribute("type"):
            return
        if not receiving or not originating or verify.getAttribute("id") is None:
            self.refuse("improper-addressing", "db:verify needs from, to and id")
            return
        if originating != self.owner.domain:
            self.refuse("host-unknown", f"this server serves {self.owner.domain}, not {originating}")
            return
        expected = dialback_key(self.owner.secret, receiving, originating, verify["id"])
        valid = hmac.compare_digest(expected.encode("ascii"), str(verify).strip().encode("utf-8", "replace"))
        self.owner.count("dialback-verify-valid" if valid else "dialback-verify-invalid")
        self.xmlstream.send(dialback_element("verify", originating, receiving, kind="valid" if valid else "invalid",
                                             stream_id=verify["id"]))

    def _on_stanza(self, stanza: domish.Element) -> None:
        if not self.authenticated:
            self.refuse("not-authorized", f"<{stanza.name}/> before dialback authenticated the peer")
            return
        sender = _domain_of(stanza.getAttribute("from"))
        if sender is None or sender not in self.authenticated:
            self.refuse("invalid-from", f"from {stanza.getAttribute('from')!r} was not authenticated on this stream")
            return
        recipient = _domain_of(stanza.getAttribute("to"))
        if recipient != self.owner.domain:
            self.refuse("host-unknown", f"to {stanza.getAttribute('to')!r} is not served here")
            return
        self.owner.count("stanza-in")
        self.owner.router.dispatch(stanza)


class IncomingFactory(xmlstream.XmlStreamServerFactory):
    """Builds the hardened receiving streams of one :class:`S2SConnection`."""

    def __init__(self, owner: "S2SConnection") -> None:
        xmlstream.XmlStreamServerFactory.__init__(self, lambda: IncomingAuthenticator(owner))


# -- the service -----------------------------------------------------------


class _Outgoing:
    """The state of the outgoing stream to one remote domain."""

    def __init__(self) -> None:
        self.stream: Any = None
        self.queue: collections.deque[domish.Element] = collections.deque()
        self.connecting = False


class S2SConnection(service.Service):
    """The gateway as the XMPP server of ``domain`` (see the module docstring).

    :param reactor: provides ``IReactorTCP``, ``IReactorTime`` (and
        ``IReactorSSL``-capable transports for STARTTLS).
    :param domain: our XMPP domain (the gateway domain).
    :param interface: address the s2s listener binds (``127.0.0.1``).
    :param port: its port (0: any free port; see :attr:`port`).
    :param tls: a :class:`~cpimgw.adapters.xmpp.tls.TLSMaterial`, or a
        callable returning one, called when the service starts (so a
        self-signed certificate is generated at start, not at build); ``None``
        for no TLS at all (only with ``require_tls=False``).
    :param require_tls: refuse streams that do not negotiate TLS, both ways.
    :param peers: static ``domain -> (host, port)`` addresses.
    :param secret: the dialback secret (random when empty).
    :param timeout: seconds for an outgoing stream or a dialback verification
        to complete, and for an incoming stream to authenticate something.
    :param idle_timeout: seconds without traffic after which a stream is
        closed (0: never); checked every ``idle_timeout / 4`` seconds (at least 1).
    :param max_queue: stanzas kept per domain while its stream is set up.
    :param max_incoming: incoming streams at once (more: ``<resource-constraint/>``).
    :param max_domains: domains one incoming stream may authenticate or have
        under verification (more: ``<policy-violation/>``); bounds the
        verification streams a peer can make us open.
    :param connector: ``connector(domain, factory)`` replaces the peers/SRV
        connection (tests).
    """

    namespace = NS_SERVER

    def __init__(
        self,
        reactor: Any,
        domain: str,
        *,
        interface: str = "127.0.0.1",
        port: int = 25269,
        tls: Any = None,
        require_tls: bool = True,
        peers: Mapping[str, tuple[str, int]] | None = None,
        secret: str = "",
        timeout: float = 30.0,
        idle_timeout: float = 600.0,
        max_queue: int = 1000,
        max_incoming: int = 1000,
        max_domains: int = 16,
        limits: StreamLimits = StreamLimits(),
        stats: StreamStats | None = None,
        connector: Callable[[str, Any], Any] | None = None,
    ) -> None:
        self.reactor = reactor
        self.domain = domain.lower()
        self.interface = interface
        self.requested_port = port
        self._tls_source = tls
        self.tls: Any = tls if tls is not None and not callable(tls) else None
        self.require_tls = require_tls
        self.peers = {d.lower(): a for d, a in (peers or {}).items()}
        self.secret = secret or secrets.token_hex(16)
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self._idle_call: Any = None
        self.max_queue = max_queue
        self.max_incoming = max_incoming
        self.max_domains = max_domains
        self.limits = limits
        self.stats = stats if stats is not None else StreamStats()
        self.counters: collections.Counter[str] = collections.Counter()
        self.connector = connector
        self.router = utility.EventDispatcher()
        self.handlers: list[Any] = []
        self.outgoing: dict[str, _Outgoing] = {}
        self.incoming: set[Any] = set()
        self.listening: Any = None
        self.factory = harden_factory(IncomingFactory(self), limits, self.stats, clock=reactor)

    # -- the attachment interface the adapter uses ---------------------------

    def count(self, what: str) -> None:
        self.counters[what] += 1

    @property
    def connected(self) -> bool:
        """Whether stanzas can be sent (the service runs; streams are opened on demand)."""
        return bool(self.running)

    @property
    def port(self) -> int | None:
        """The port actually listened on (after start)."""
        if self.listening is None:
            return None
        return self.listening.getHost().port

    @property
    def listening_addresses(self) -> list[Any]:
        return [self.listening.getHost()] if self.listening is not None else []

    @property
    def server_options(self) -> Any:
        return self.tls.server_options() if self.tls is not None else None

    def addHandler(self, handler: Any) -> None:  # noqa: N802 - XMPPHandlerCollection's name
        """Attach an ``XMPPHandler``: it observes the stanzas of every authenticated incoming stream."""
        self.handlers.append(handler)
        handler.makeConnection(self.router)
        handler.connectionInitialized()

    def removeHandler(self, handler: Any) -> None:  # noqa: N802 - XMPPHandlerCollection's name
        handler.connectionLost(None)
        self.handlers.remove(handler)

    def send(self, stanza: domish.Element) -> None:
        """Send ``stanza`` to the server of its ``to`` domain (opening the stream if needed).

        Raises :class:`NotConnected` when the service is not running.
        """
        if not self.running:
            raise NotConnected("the XMPP s2s service is not running")
        if not stanza.getAttribute("from"):
            stanza["from"] = self.domain
        domain = _domain_of(stanza.getAttribute("to"))
        if domain is None or domain == self.domain:
            self.count("dropped-unroutable")
            log.warn("XMPP s2s: no route for a stanza to {to!r}", to=stanza.getAttribute("to"))
            return
        entry = self.outgoing.setdefault(domain, _Outgoing())
        if entry.stream is not None:
            entry.stream.send(stanza)
            self.count("stanza-out")
            return
        if len(entry.queue) >= self.max_queue:
            self.count("bounced-queue-full")
            self._bounce(stanza, "remote-server-timeout", f"more than {self.max_queue} stanzas wait for {domain}")
            return
        entry.queue.append(stanza)
        if not entry.connecting:
            self._open(domain, entry)

    # -- outgoing ---------------------------------------------------------

    def _connect(self, domain: str, factory: Any) -> None:
        if self.connector is not None:
            self.connector(domain, factory)
        elif domain in self.peers:
            host, port = self.peers[domain]
            self.reactor.connectTCP(host, port, factory, timeout=max(1, int(self.timeout)))
        else:
            # tx_xmpp's (wokkel's) SRVConnector for _xmpp-server._tcp, falling back to port 5269.
            XMPPServerConnector(self.reactor, domain.encode("idna"), factory).connect()

    def _stream(self, domain: str, *, last: str = "result", stream_id: str = "", key: str = "") -> defer.Deferred:
        authenticator = OutgoingAuthenticator(self.domain, domain, secret=self.secret, tls=self.tls,
                                              require_tls=self.require_tls, last=last, stream_id=stream_id, key=key)
        factory = harden_factory(OutgoingFactory(authenticator), self.limits, self.stats, clock=self.reactor)
        deferred = factory.deferred

        def timed_out(reason: Failure) -> Failure:
            if reason.check(defer.TimeoutError, defer.CancelledError) and factory.stream is not None \
                    and factory.stream.transport is not None:
                factory.stream.transport.abortConnection()
            return reason

        deferred.addTimeout(self.timeout, self.reactor)
        deferred.addErrback(timed_out)
        self._connect(domain, factory)
        return deferred

    def _open(self, domain: str, entry: _Outgoing) -> None:
        entry.connecting = True
        log.info("XMPP s2s: opening a stream to {peer}", peer=domain)
        opened = self._stream(domain)
        opened.addCallbacks(self._opened, self._open_failed, callbackArgs=(domain, entry),
                            errbackArgs=(domain, entry))

    def _opened(self, xs: Any, domain: str, entry: _Outgoing) -> None:
        entry.connecting = False
        if not self.running:
            xs.transport.loseConnection()
            return
        self.count("stream-out")
        log.info("XMPP s2s: outgoing stream to {peer} authenticated (TLS {tls})", peer=domain,
                 tls="on" if xs.transport is not None and getattr(xs.transport, "TLS", False) else "off")
        entry.stream = xs
        xs.addObserver(xish_xmlstream.STREAM_END_EVENT, lambda reason: self._closed(domain, entry, xs))
        xs.addObserver("/*", self._on_outgoing_element)
        while entry.queue:
            xs.send(entry.queue.popleft())
            self.count("stanza-out")

    def _on_outgoing_element(self, element: domish.Element) -> None:
        if element.uri == NS_SERVER and element.name in STANZAS:
            self.count("ignored-on-outgoing")
            log.info("XMPP s2s: a <{name}/> arrived on an outgoing stream; ignored", name=element.name)

    def _closed(self, domain: str, entry: _Outgoing, xs: Any) -> None:
        if entry.stream is xs:
            entry.stream = None
            log.info("XMPP s2s: outgoing stream to {peer} closed", peer=domain)

    def _open_failed(self, reason: Failure, domain: str, entry: _Outgoing) -> None:
        entry.connecting = False
        why = reason.getErrorMessage() or reason.type.__name__
        kind = failure_kind(reason)
        self.count(f"stream-out-failed-{kind}")
        if kind == "tls":
            metrics.tls_failure("xmpp")
        log.warn("XMPP s2s: no stream to {peer} ({kind}: {why}); {n} stanza(s) bounced", peer=domain, kind=kind,
                 why=why, n=len(entry.queue))
        queued, entry.queue = list(entry.queue), collections.deque()
        for stanza in queued:
            self._bounce(stanza, "remote-server-not-found", f"no stream to {domain}: {why}")

    def _bounce(self, stanza: domish.Element, condition: str, text: str) -> None:
        """Hand the adapter the error a server would return for an undeliverable stanza (RFC 6120 §8.3)."""
        if stanza.getAttribute("type") in ("error", "result"):
            return
        self.count("bounced")
        self.router.dispatch(mapping.error_reply(stanza, condition, "cancel", text))

    def verify_key(self, domain: str, stream_id: str, key: str) -> defer.Deferred[None]:
        """Ask ``domain``'s Authoritative Server whether ``key`` is valid for ``stream_id``."""
        checked = self._stream(domain, last="verify", stream_id=stream_id, key=key)

        def close(xs: Any) -> None:
            if xs.transport is not None:
                xs.sendFooter()
                xs.transport.loseConnection()

        checked.addCallback(close)
        return checked

    # -- service ----------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        if self._tls_source is not None and callable(self._tls_source):
            self.tls = self._tls_source()
        if self.require_tls and self.tls is None:
            raise ValueError("require_tls needs TLS material (a certificate and key)")
        self.listening = self.reactor.listenTCP(self.requested_port, self.factory, interface=self.interface)
        service.Service.startService(self)
        if self.idle_timeout > 0:
            self._idle_call = self.reactor.callLater(self.idle_interval, self._sweep_idle)
        log.info("XMPP s2s: {domain} listening on {interface}:{port} (TLS {tls})", domain=self.domain,
                 interface=self.interface, port=self.port,
                 tls="required" if self.require_tls else "offered" if self.tls is not None else "off")

    @property
    def idle_interval(self) -> float:
        """Seconds between two idle sweeps."""
        return max(1.0, self.idle_timeout / 4)

    def _sweep_idle(self) -> None:
        """Close every stream idle for ``idle_timeout`` seconds (RFC 6120 §4.4), then sweep again later."""
        self._idle_call = None
        if not self.running:
            return
        limit = self.reactor.seconds() - self.idle_timeout
        idle = [(domain, entry.stream) for domain, entry in self.outgoing.items()
                if entry.stream is not None and getattr(entry.stream, "last_activity", limit + 1) <= limit]
        for domain, xs in idle:
            self._close_idle(xs, f"outgoing to {domain}")
            self.outgoing[domain].stream = None
        for xs in [xs for xs in self.incoming if getattr(xs, "last_activity", limit + 1) <= limit]:
            self._close_idle(xs, "incoming")
            self.incoming.discard(xs)
        self._idle_call = self.reactor.callLater(self.idle_interval, self._sweep_idle)

    def _close_idle(self, xs: Any, which: str) -> None:
        self.count("closed-idle")
        peer = xs.transport.getPeer() if xs.transport is not None else None
        log.info("XMPP s2s: closing the idle {which} stream ({peer}): nothing for {t} s", which=which, peer=peer,
                 t=self.idle_timeout)
        if xs.transport is not None:
            xs.sendFooter()
            xs.transport.loseConnection()

    def stopService(self) -> Any:  # noqa: N802 - Twisted's name
        service.Service.stopService(self)
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        for entry in self.outgoing.values():
            if entry.stream is not None and entry.stream.transport is not None:
                entry.stream.sendFooter()
                entry.stream.transport.loseConnection()
            entry.queue.clear()
        self.outgoing.clear()
        for xs in list(self.incoming):
            if xs.transport is not None:
                xs.transport.loseConnection()
        self.incoming.clear()
        listening, self.listening = self.listening, None
        if listening is not None and IListeningPort.providedBy(listening):
            return listening.stopListening()
        return None
