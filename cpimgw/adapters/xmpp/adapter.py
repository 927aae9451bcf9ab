"""The XMPP adapter: XMPP stanzas <-> CPIM operations on the bus (RFC 3922, RFC 7247/7248/7572).

:class:`XMPPAdapter` is a Twisted service providing ``IAdapter``,
``IMessaging`` and ``IPresence``.  It attaches to the XMPP world in one of
two modes that differ only in the stream attachment (:func:`make_connection`):
as the XMPP server of its own domain over server-to-server streams with
STARTTLS and dialback (``mode = "s2s"``, the embedded default, :mod:`.s2s`),
or as an external component of an XMPP server (XEP-0114, ``mode =
"component"``, :mod:`.component`).  Either way it uses the pure
:mod:`.mapping` both ways.  Addressing (:mod:`.addresses`): users of other
networks are JIDs under the gateway domain, the foreign address XEP-0106
escaped in the localpart (``bob\\40sip.example@gw.xmpp.example``); the XMPP
users' own domains are the adapter's ``domains``.

Messages (RFC 3922 §4, RFC 7572; RFC 3923 ``<e2e/>`` signed/encrypted objects
both ways, :mod:`.e2e`): an XMPP ``<message/>`` becomes a ``Message``
dispatched on the bus; a failure ``Response`` is answered with the RFC 7247
§7 stanza error, a success with a local XEP-0184 receipt when one was asked
for.  ``deliver(Message)`` sends the stanza and answers ``indeterminant``
(XMPP gives no delivery result) unless an error bounce arrives within
``bounce_wait`` seconds (in s2s mode a stream that cannot be set up bounces
``remote-server-not-found``); with the component's server away it answers
``failure`` (``service-unavailable``) at once: nothing is queued silently.

Presence (RFC 3922 §5-6, RFC 7248 §3-6):

================================  ============================================
XMPP -> bus                       bus -> XMPP
================================  ============================================
available / unavailable           ``Publish`` (one PIDF tuple per resource;
                                  unchanged presence is not re-published)
unavailable from a bare JID       ``Publish`` closed for each resource
                                  published available; an account-level
                                  tuple only while no resource published
``subscribe`` to a foreign user   ``Subscribe`` (duration ``subscription_
                                  duration``, refreshed before it ends); a
                                  failure answers ``unsubscribed``
``unsubscribe``                   ``Subscribe`` duration 0 (cancel), then
                                  ``unsubscribed`` back to the user
``probe``                         ``Subscribe`` duration 0, new SubscriptID
                                  (fetch)
``subscribed`` / ``unsubscribed`` the pending ``deliver(Subscribe)`` answers
from the XMPP user                success / failure forbidden; a revoke later
                                  is a terminated ``Notify`` (rejected)
``deliver(Subscribe)``            ``subscribe`` (``unsubscribe`` to cancel,
                                  ``probe`` to fetch) from the foreign JID
``deliver(Notify)``               ``subscribed`` on the first active notify
                                  (the presence service sends one at once,
                                  even for a presentity that published nothing),
                                  then one ``<presence/>`` per tuple;
                                  terminated: ``unsubscribed`` (rejected,
                                  noresource) or ``unavailable``
available with RFC 3923 ``<e2e/>`` ``Publish`` of the signed PIDF entity
holding a signed PIDF of its      itself (RFC 3923 §5, RFC 3863 §4), octets
sender                            unchanged; ``deliver(Notify)`` of a signed
                                  PIDF: the presences of the PIDF it signs,
                                  each with ``<e2e/>`` holding the entity
================================  ============================================

Service discovery (XEP-0030), ping (XEP-0199) and software version (XEP-0092)
are answered for the gateway domain and every JID under it; any other IQ
gets ``service-unavailable``.
"""

from __future__ import annotations

import datetime
from typing import Any, Mapping

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmlstream import XMPPHandler
from twisted.words.xish import domish
from zope.interface import implementer

import cpimgw
from cpimgw.adapters.xmpp import e2e, mapping, rules
from cpimgw.adapters.xmpp.addresses import AddressMap, parse_jid
from cpimgw.adapters.xmpp.component import ComponentConnection, NotConnected
from cpimgw.adapters.xmpp.errors import condition_for_stanza_error, sip_status_for_stanza_error, stanza_error_for_condition
from cpimgw.adapters.xmpp.hardening import StreamLimits, StreamStats
from cpimgw.cpim.errors import ConfigError, NotUnderstoodError, ParseError
from cpimgw.cpim.operations import (
    Condition,
    Message,
    Notify,
    Publish,
    Response,
    Status,
    Subscribe,
    SubscriptionState,
    TerminationReason,
    failure,
    indeterminant,
    new_fetch_id,
    new_id,
    success,
)
from cpimgw.cpim.pidf import TimestampSource
from cpimgw.cpim.uri import CPIMURI
from cpimgw.interfaces import IAdapter, IMessaging, IPresence

log = Logger()

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_PING = "urn:xmpp:ping"
NS_VERSION = "jabber:iq:version"
FEATURES = (
    NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION,
    mapping.NS_CHATSTATES, mapping.NS_RECEIPTS, mapping.NS_XHTML_IM, mapping.NS_SID, e2e.NS_E2E,
    rules.NS_SHIM, rules.NS_ADDRESS, rules.NS_NICK, rules.NS_DELAY,
    rules.FEATURE_CARRIAGE,
)
#: How long a domain's disco#info answer about the private carriage holds (seconds).
CARRIAGE_TTL = 3600.0

#: The embedded default settings (also the ``[adapters.xmpp]`` table of conf/cpimgw.toml).
#: The embedded default is the s2s mode listening on 127.0.0.1:25269 (not
#: 5269, so it never clashes with a real XMPP server on the same machine),
#: with a self-signed certificate generated into ``data_dir`` on first start.
DEFAULTS: dict[str, Any] = {
    "mode": "s2s",
    "domain": "gw.localhost",
    "xmpp_domains": ["localhost"],
    "host": "127.0.0.1",
    "port": 5347,
    "secret": "s3cret",
    "initial_delay": 1.0,
    "max_delay": 60.0,
    "s2s_interface": "127.0.0.1",
    "s2s_port": 25269,
    "peers": {},
    "require_tls": True,
    "tls_certificate": "",
    "tls_key": "",
    "tls_ca": "",
    "dialback_secret": "",
    "s2s_timeout": 30.0,
    "s2s_idle_timeout": 600.0,
    "max_queue": 1000,
    "max_incoming": 1000,
    "max_domains": 16,
    "data_dir": ".",
    "max_stanza_size": 65536,
    "max_rate": 0,
    "message_type": "normal",
    "carry_cpim": True,
    "subscription_duration": 86400,
    "subscribe_wait": 30.0,
    # Under SIP's T1 (500 ms): a UDP MESSAGE is answered before sipp/UAs retransmit.
    "bounce_wait": 0.25,
}
MODES = ("component", "s2s")
SENT = "sent; XMPP gives no delivery result"


def parse_peer_address(text: str, key: str = "adapters.xmpp.peers") -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"``; a bare host means port 5269) -> ``(host, port)``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"must be 'host:port', not {text!r}", key=key)
    text = text.strip()
    host, port = text, "5269"
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"unclosed '[' in {text!r}", key=key)
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"must be '[address]:port', not {text!r}", key=key)
            port = rest[1:]
    elif text.count(":") > 1:
        raise ConfigError(f"write an IPv6 address as '[address]:port', not {text!r}", key=key)
    elif ":" in text:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"must be 'host:port' with a port 1-65535, not {text!r}", key=key)
    return host, int(port)


@attrs.frozen
class XMPPSettings:
    """The validated settings of one XMPP adapter (see :data:`DEFAULTS` for each meaning)."""

    mode: str
    domain: str
    xmpp_domains: tuple[str, ...]
    host: str
    port: int
    secret: str
    max_stanza_size: int
    max_rate: int
    initial_delay: float
    max_delay: float
    s2s_interface: str
    s2s_port: int
    peers: tuple[tuple[str, tuple[str, int]], ...]
    require_tls: bool
    tls_certificate: str
    tls_key: str
    tls_ca: str
    dialback_secret: str
    s2s_timeout: float
    s2s_idle_timeout: float
    max_queue: int
    max_incoming: int
    max_domains: int
    data_dir: str
    message_type: str
    carry_cpim: bool
    subscription_duration: int
    subscribe_wait: float
    bounce_wait: float

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> "XMPPSettings":
        """Validate ``settings`` merged over :data:`DEFAULTS`; :class:`ConfigError` names the key."""
        merged = dict(DEFAULTS)
        merged.update(settings)
        unknown = set(merged) - set(DEFAULTS) - {"enabled"}
        if unknown:
            raise ConfigError(f"unknown setting (known: {', '.join(DEFAULTS)})", key=f"adapters.xmpp.{sorted(unknown)[0]}")

        def need(key: str, kind: Any, check: Any = lambda v: True, what: str = "") -> Any:
            value = merged[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)) or not check(value):
                raise ConfigError(f"must be {what or kind.__name__}, not {value!r}", key=f"adapters.xmpp.{key}")
            return value

        peers = merged["peers"]
        if not isinstance(peers, Mapping) or not all(isinstance(d, str) and d for d in peers):
            raise ConfigError("must be a table of domain = 'host:port'", key="adapters.xmpp.peers")
        peer_table = tuple(sorted(
            (domain.lower(), parse_peer_address(address, f"adapters.xmpp.peers.{domain}"))
            for domain, address in peers.items()
        ))
        if bool(merged["tls_certificate"]) != bool(merged["tls_key"]):
            raise ConfigError("set both tls_certificate and tls_key, or neither", key="adapters.xmpp.tls_key")
        domains = merged["xmpp_domains"]
        if isinstance(domains, str) or not all(isinstance(d, str) and d for d in domains):
            raise ConfigError("must be a list of domain names", key="adapters.xmpp.xmpp_domains")
        return cls(
            mode=need("mode", str, lambda v: v in MODES, " or ".join(MODES)),
            domain=need("domain", str, bool, "a domain name").lower(),
            xmpp_domains=tuple(d.lower() for d in domains),
            host=need("host", str, bool, "a host name or address"),
            port=need("port", int, lambda v: 0 < v < 65536, "a port number"),
            secret=need("secret", str, bool, "a non-empty secret"),
            max_stanza_size=need("max_stanza_size", int, lambda v: 10000 <= v <= 262144, "10000 to 262144 octets"),
            max_rate=need("max_rate", int, lambda v: v >= 0, "octets per second (0: unlimited)"),
            initial_delay=need("initial_delay", float, lambda v: v > 0, "seconds > 0"),
            max_delay=need("max_delay", float, lambda v: v > 0, "seconds > 0"),
            s2s_interface=need("s2s_interface", str, bool, "an address to listen on"),
            s2s_port=need("s2s_port", int, lambda v: 0 <= v < 65536, "a port number (0: any free port)"),
            peers=peer_table,
            require_tls=need("require_tls", bool),
            tls_certificate=need("tls_certificate", str),
            tls_key=need("tls_key", str),
            tls_ca=need("tls_ca", str),
            dialback_secret=need("dialback_secret", str),
            s2s_timeout=need("s2s_timeout", float, lambda v: v > 0, "seconds > 0"),
            s2s_idle_timeout=need("s2s_idle_timeout", float, lambda v: v >= 0, "seconds >= 0 (0: never)"),
            max_queue=need("max_queue", int, lambda v: 1 <= v <= 1_000_000, "1 to 1000000 stanzas"),
            max_incoming=need("max_incoming", int, lambda v: 1 <= v <= 1_000_000, "1 to 1000000 streams"),
            max_domains=need("max_domains", int, lambda v: 1 <= v <= 10_000, "1 to 10000 domains"),
            data_dir=need("data_dir", str, bool, "a directory"),
            message_type=need("message_type", str, lambda v: v in ("normal", "chat", "headline"), "normal, chat or headline"),
            carry_cpim=need("carry_cpim", bool),
            subscription_duration=need("subscription_duration", int, lambda v: 60 <= v <= 2**31 - 1, "60 or more seconds"),
            subscribe_wait=need("subscribe_wait", float, lambda v: v > 0, "seconds > 0"),
            bounce_wait=need("bounce_wait", float, lambda v: v >= 0, "seconds >= 0"),
        )


class _Handler(XMPPHandler):
    """Routes the stanzas of the current stream to the adapter."""

    def __init__(self, adapter: "XMPPAdapter") -> None:
        super().__init__()
        self.adapter = adapter

    def connectionInitialized(self) -> None:  # noqa: N802 - Twisted's name
        self.xmlstream.addObserver("/message", self.adapter.on_message)
        self.xmlstream.addObserver("/presence", self.adapter.on_presence)
        self.xmlstream.addObserver("/iq", self.adapter.on_iq)


def tls_source(settings: XMPPSettings) -> Any:
    """A callable giving the s2s TLS material: the configured files, else a self-signed pair in ``data_dir``."""

    def load() -> Any:
        from cpimgw.adapters.xmpp.tls import ensure_self_signed, load_tls

        certificate, key = settings.tls_certificate, settings.tls_key
        if not certificate:
            certificate, key, _ = ensure_self_signed(settings.data_dir, settings.domain)
        return load_tls(certificate, key, settings.tls_ca)

    return load


def make_connection(reactor: Any, settings: XMPPSettings, stats: StreamStats) -> Any:
    """The stream attachment of ``settings.mode``: a component connection or the s2s service."""
    limits = StreamLimits(max_stanza_size=settings.max_stanza_size, max_rate=settings.max_rate)
    if settings.mode == "s2s":
        from cpimgw.adapters.xmpp.s2s import S2SConnection

        return S2SConnection(
            reactor, settings.domain, interface=settings.s2s_interface, port=settings.s2s_port,
            tls=tls_source(settings), require_tls=settings.require_tls, peers=dict(settings.peers),
            secret=settings.dialback_secret, timeout=settings.s2s_timeout, limits=limits, stats=stats,
            idle_timeout=settings.s2s_idle_timeout, max_queue=settings.max_queue,
            max_incoming=settings.max_incoming, max_domains=settings.max_domains,
        )
    return ComponentConnection(
        reactor, settings.host, settings.port, settings.domain, settings.secret,
        limits=limits, stats=stats, initial_delay=settings.initial_delay, max_delay=settings.max_delay,
    )


def _key(uri: CPIMURI) -> tuple[str, str]:
    return uri.principal()


@implementer(IAdapter, IMessaging, IPresence)
class XMPPAdapter(MultiService):
    """The XMPP side of the gateway (see the module docstring for the mapping)."""

    def __init__(self, name: str, bus: Any, settings: XMPPSettings, *, connection: Any = None) -> None:
        super().__init__()
        self.name = name
        self.setName(name)
        self.bus = bus
        self.reactor = bus.reactor
        self.settings = settings
        self.domains = tuple(settings.xmpp_domains)
        self.addresses = AddressMap(settings.domain, settings.xmpp_domains)
        self.stats = StreamStats()
        self.counters: dict[str, int] = {}
        self.timestamps = TimestampSource()
        if connection is None:
            connection = make_connection(self.reactor, settings, self.stats)
        self.connection = connection
        self.namespace = getattr(connection, "namespace", mapping.NS_COMPONENT)
        _Handler(self).setHandlerParent(connection)
        connection.setServiceParent(self)
        # XMPP user -> foreign target: (watcher key, target key) -> SubscriptID, refresh call
        self.outbound: dict[tuple, tuple[str, Subscribe, Any]] = {}
        self.confirmed: set[tuple] = set()
        # foreign watcher -> XMPP user: (watcher key, target key) -> SubscriptID
        self.inbound: dict[tuple, str] = {}
        self.pending: dict[tuple, tuple[Deferred, Any, Subscribe]] = {}
        # stanza id -> (deferred, deadline, Message), in sending order; one sweep timer for all.
        self.bounces: dict[str, tuple[Deferred, float, Message]] = {}
        self._bounce_sweep: Any = None
        self.last_presence: dict[str, str] = {}
        # presentity key -> the last carried PIDF octets published for it
        self.last_document: dict[tuple[str, str], bytes] = {}
        self.sent_resources: dict[tuple, set[str]] = {}
        # XMPP presentity key -> resource -> whether its last published presence is available (a
        # bare-JID unavailable closes the available ones), and the presentities with an account-level
        # (bare JID) tuple.
        self.published_resources: dict[tuple[str, str], dict[str, bool]] = {}
        self.bare_published: set[tuple[str, str]] = set()
        # XEP-0030: domain -> (reads our private carriage, until when the answer holds); disco id -> domain
        self.carriage: dict[str, tuple[bool, float]] = {}
        self.disco_pending: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------

    def carriage_for(self, domain: str) -> bool:
        """Whether ``domain`` reads the private ``<cpim/>``/``<pidf/>`` carriage (another cpimgw).

        Only a domain whose XEP-0030 disco#info lists
        :data:`.rules.FEATURE_CARRIAGE` gets it; the answer is cached per
        domain for ``CARRIAGE_TTL`` seconds.  A domain not asked yet is asked
        now and gets the native form until it answers (the native form loses
        nothing that has a standard place; the carriage is an optimisation).
        Only in s2s mode: two gateways link server to server.
        """
        if not self.settings.carry_cpim or self.settings.mode != "s2s":
            # A component's peer is the XMPP server of ordinary users (XEP-0114): never another cpimgw.
            return False
        domain = domain.lower()
        now = self.reactor.seconds()
        known = self.carriage.get(domain)
        if known is not None and known[1] > now:
            return known[0]
        if domain not in self.disco_pending.values() and self.connected:
            query_id = "cpimgw-disco-" + new_id()[:16]
            iq = domish.Element((self.namespace, "iq"))
            iq["type"], iq["from"], iq["to"], iq["id"] = "get", self.settings.domain, domain, query_id
            iq.addElement((NS_DISCO_INFO, "query"))
            self.disco_pending[query_id] = domain
            self.count("disco-out")
            self._send_quietly(iq)
        return False

    def peer_gateways(self) -> frozenset[str]:
        """The domains known (disco#info, still valid) to be other cpimgw gateways."""
        now = self.reactor.seconds()
        return frozenset(domain for domain, (understood, until) in self.carriage.items() if understood and until > now)

    def _on_disco_answer(self, iq: domish.Element) -> bool:
        """A disco#info result or error for :meth:`carriage_for`; ``False`` if it answers nothing we asked."""
        domain = self.disco_pending.pop(iq.getAttribute("id") or "", None)
        if domain is None:
            return False
        features = set()
        if iq.getAttribute("type") == "result":
            for query in iq.elements(NS_DISCO_INFO, "query"):
                features.update(f.getAttribute("var") for f in query.elements(NS_DISCO_INFO, "feature"))
        understood = rules.FEATURE_CARRIAGE in features
        self.carriage[domain] = (understood, self.reactor.seconds() + CARRIAGE_TTL)
        log.info("XMPP domain {domain} {does} the private carriage", domain=domain,
                 does="reads" if understood else "does not read")
        return True

    def count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    @property
    def connected(self) -> bool:
        if self._component_key is not None and not self._component_here():
            return True  # a cluster node on standby: another node holds the component stream
        return bool(self.connection.connected)

    def queued_counts(self) -> dict[str, int]:
        """Work waiting, for the metrics: stanzas queued for an s2s stream, messages awaiting their bounce window."""
        outgoing = getattr(self.connection, "outgoing", {})
        return {"s2s_queue": sum(len(getattr(entry, "queue", ())) for entry in outgoing.values()),
                "bounce_wait": len(self.bounces)}

    def check_tls(self) -> str | None:
        """Load the s2s TLS material again; what changed (``None``: nothing); raises when it does not load."""
        source = getattr(self.connection, "_tls_source", None)
        if self.settings.mode != "s2s" or not callable(source):
            return None
        fresh = source()
        fresh.server_options().getContext()  # a key that does not match the certificate fails here
        self._fresh_tls = fresh
        current = getattr(self.connection, "tls", None)
        if current is not None and current.certificate.dump() == fresh.certificate.dump():
            return None
        return f"certificate {self.settings.tls_certificate or '(self-signed, in data_dir)'} reloaded"

    def reload_tls(self) -> None:
        """Use the material :meth:`check_tls` loaded for new s2s streams (established streams keep theirs)."""
        fresh, self._fresh_tls = getattr(self, "_fresh_tls", None), None
        if fresh is not None:
            self.connection.tls = fresh

    def connection_counts(self) -> dict[str, int]:
        """Open streams by peer kind, for the metrics: the XEP-0114 component link, or s2s in/out."""
        if self.settings.mode != "s2s":
            return {"component": 1 if self.connected else 0}
        outgoing = getattr(self.connection, "outgoing", {})
        return {"s2s_in": len(getattr(self.connection, "incoming", ())),
                "s2s_out": sum(1 for entry in outgoing.values() if getattr(entry, "stream", None) is not None)}
    # -- cluster (several gateway nodes) -------------------------------------

    _component_key: str | None = None

    def _component_here(self) -> bool:
        singleton = self.bus.cluster.singletons.get(self._component_key)
        return singleton is not None and singleton.running

    def cluster_key(self, operation: Any) -> str | None:
        """The connection that delivers an operation: in component mode the one XEP-0114
        stream of the cluster (``xmpp.component:<domain>``); ``None`` for s2s (any node opens its own)."""
        return self._component_key

    def startService(self) -> Any:  # noqa: N802 - Twisted's name
        cluster = getattr(self.bus, "cluster", None)
        if cluster is None or self.settings.mode != "component":
            return super().startService()
        # XEP-0114: the server accepts one component connection for the domain, so one node of
        # the cluster holds it at a time (a lease), and another takes over when that node dies.
        Service.startService(self)
        self._component_key = f"xmpp.component:{self.settings.domain}"
        return cluster.singleton(self._component_key, self._take_component, self.connection.stopService)

    def _take_component(self) -> Any:
        """This node now holds the component stream: connect, and take over the refresh of the XMPP
        users' subscriptions that another node made (they are in the shared store)."""
        self.connection.startService()

        def adopt(records: list) -> None:
            now = self.reactor.seconds()
            for record in records:
                if record.watcher_origin != self.name or not record.live(now):
                    continue
                try:
                    watcher = CPIMURI("pres", *record.watcher[len("pres:"):].rsplit("@", 1))
                    target = CPIMURI("pres", *record.target[len("pres:"):].rsplit("@", 1))
                except TypeError:
                    continue
                key = (_key(watcher), _key(target))
                if key in self.outbound:
                    continue
                operation = Subscribe(watcher, target, self.settings.subscription_duration,
                                      subscript_id=record.subscript_id, origin=self.name,
                                      watcher_instance=record.watcher_instance)
                delay = max(30.0, (record.expires_at - now) * 0.9)
                self.outbound[key] = (record.subscript_id, operation, self.reactor.callLater(delay, self._refresh, key))
                self.confirmed.add(key)
            log.info("XMPP component taken over: {count} subscriptions of XMPP users adopted", count=len(self.outbound))

        return self.bus.store.subscriptions().addCallbacks(
            adopt, lambda reason: log.warn("XMPP: adopting the subscriptions failed: {error}",
                                           error=reason.getErrorMessage()))

    @property
    def listening_addresses(self) -> list[Any]:
        """The s2s listener's address (none in component mode), for the service log."""
        return list(getattr(self.connection, "listening_addresses", ()) or ())

    def send(self, stanza: domish.Element) -> None:
        """Send a stanza now; raise :class:`NotConnected` when the server is away."""
        self.connection.send(stanza)

    def _send_quietly(self, stanza: domish.Element) -> None:
        try:
            self.send(stanza)
        except NotConnected:
            self.count("dropped-disconnected")
            log.warn("XMPP stanza not sent, the server is away: {xml}", xml=stanza.toXml()[:200])

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.reactor.seconds(), datetime.timezone.utc).replace(microsecond=0)

    def _answer_error(self, stanza: domish.Element, condition: str, error_type: str, text: str = "") -> None:
        if stanza.getAttribute("type") == "error":
            return  # never answer an error with an error (RFC 6120 §8.3.1)
        self._send_quietly(mapping.error_reply(stanza, condition, error_type, text))

    def stopService(self) -> Any:  # noqa: N802 - Twisted's name
        for key, (deferred, call, operation) in list(self.pending.items()):
            if call.active():
                call.cancel()
            deferred.callback(indeterminant(operation, "the XMPP adapter stopped before an answer"))
        self.pending.clear()
        if self._bounce_sweep is not None and self._bounce_sweep.active():
            self._bounce_sweep.cancel()
        self._bounce_sweep = None
        bounces, self.bounces = self.bounces, {}
        for deferred, _, operation in bounces.values():
            deferred.callback(indeterminant(operation, SENT))
        for _, _, call in self.outbound.values():
            if call is not None and call.active():
                call.cancel()
        if self._component_key is not None:
            Service.stopService(self)
            return self.bus.cluster.drop_singleton(self._component_key)
        return super().stopService()

    # -- inbound messages ------------------------------------------------

    def on_message(self, stanza: domish.Element) -> None:
        if stanza.getAttribute("type") == "error":
            self._on_bounce(stanza)
            return
        sender_domain = (parse_jid(stanza["from"]).host if stanza.getAttribute("from") else "").lower()
        if sender_domain and any(True for _ in stanza.elements(mapping.NS_XMPP, "cpim")):
            self.carriage_for(sender_domain)  # a carriage from a domain not asked yet: ask (XEP-0030)
        try:
            operation = mapping.message_to_cpim(stanza, self.addresses, now=self._now(), origin=self.name,
                                                peer_gateways=self.peer_gateways())
        except mapping.StanzaError as error:
            self.count("message-refused")
            log.info("XMPP message refused ({condition}): {reason}", condition=error.condition, reason=error.reason)
            self._answer_error(stanza, error.condition, "modify", error.reason)
            return
        self.count("message-in")
        self.bus.dispatch(operation).addCallback(self._message_answered, stanza, operation)

    def _message_answered(self, response: Response, stanza: domish.Element, operation: Message) -> None:
        if response.status is Status.FAILURE:
            condition, error_type = stanza_error_for_condition(response.condition, response.native_code)
            self._answer_error(stanza, condition, error_type, response.reason)
            return
        if response.status is Status.SUCCESS and stanza.getAttribute("id"):
            if any(c.uri == mapping.NS_RECEIPTS and c.name == "request" for c in stanza.elements()):
                receipt = domish.Element((self.namespace, "message"))
                receipt["from"] = stanza["to"]
                receipt["to"] = stanza["from"]
                receipt.addElement((mapping.NS_RECEIPTS, "received"))["id"] = stanza["id"]
                self._send_quietly(receipt)

    def _on_bounce(self, stanza: domish.Element) -> None:
        condition, text = mapping.stanza_error_condition(stanza)
        self.count("message-bounce")
        entry = self.bounces.pop(stanza.getAttribute("id") or "", None)
        if entry is None:
            log.info("XMPP error {condition} for an unknown message {id}", condition=condition, id=stanza.getAttribute("id"))
            return
        deferred, _, operation = entry
        bare = parse_jid(stanza["from"]).resource is None if stanza.getAttribute("from") else True
        deferred.callback(
            failure(operation, condition_for_stanza_error(condition), text or condition,
                    native_code=sip_status_for_stanza_error(condition, bare=bare))
        )

    # -- deliver ---------------------------------------------------------

    def deliver(self, operation: Any) -> Deferred[Response]:
        """Take one operation from the bus to XMPP (``Message``, ``Subscribe``, ``Notify``)."""
        try:
            if isinstance(operation, Message):
                return self._deliver_message(operation)
            if isinstance(operation, Subscribe):
                return self._deliver_subscribe(operation)
            if isinstance(operation, Notify):
                return succeed(self._deliver_notify(operation))
        except NotConnected as error:
            self.count("refused-disconnected")
            return succeed(failure(operation, Condition.SERVICE_UNAVAILABLE, str(error)))
        except ParseError as error:
            return succeed(failure(operation, Condition.BAD_REQUEST, error.describe()))
        return succeed(failure(operation, Condition.UNSUPPORTED, f"XMPP takes no {type(operation).__name__}"))

    def _deliver_message(self, operation: Message) -> Deferred[Response]:
        if not self.connected:
            if self.settings.mode == "s2s":
                raise NotConnected("the XMPP s2s service is not running")
            raise NotConnected(f"the XMPP server {self.settings.host}:{self.settings.port} is not connected")
        try:
            stanza = mapping.cpim_to_message(
                operation, self.addresses, namespace=self.namespace,
                default_type=None if self.settings.message_type == "normal" else self.settings.message_type,
                carry_cpim=operation.origin != self.name and self.carriage_for(
                    self.addresses.uri_to_jid(operation.destination).host),
            )
        except NotUnderstoodError as error:
            return succeed(failure(operation, Condition.UNSUPPORTED, error.describe(), native_code=420))
        except ParseError as error:
            return succeed(failure(operation, Condition.UNSUPPORTED_MEDIA, error.describe()))
        self.send(stanza)
        self.count("message-out")
        if self.settings.bounce_wait <= 0:
            return succeed(indeterminant(operation, SENT))
        deferred: Deferred[Response] = Deferred()
        stanza_id = stanza["id"]
        earlier = self.bounces.pop(stanza_id, None)
        if earlier is not None:  # the same id sent again: its error can no longer be told apart
            earlier[0].callback(indeterminant(earlier[2], SENT))
        self.bounces[stanza_id] = (deferred, self.reactor.seconds() + self.settings.bounce_wait, operation)
        if self._bounce_sweep is None:
            self._bounce_sweep = self.reactor.callLater(self.settings.bounce_wait, self._sweep_bounces)
        return deferred

    def _sweep_bounces(self) -> None:
        """Answer ``indeterminant`` for every message whose ``bounce_wait`` is over (one timer for all).

        ``bounces`` is in sending order and every entry waits the same
        ``bounce_wait``, so the expired entries are at its front.
        """
        self._bounce_sweep = None
        now = self.reactor.seconds()
        bounces = self.bounces
        expired = []
        for stanza_id, (_, deadline, _) in bounces.items():
            if deadline > now:
                self._bounce_sweep = self.reactor.callLater(deadline - now, self._sweep_bounces)
                break
            expired.append(stanza_id)
        for stanza_id in expired:
            entry = bounces.pop(stanza_id, None)  # an answer to an earlier one may have taken it
            if entry is not None:
                entry[0].callback(indeterminant(entry[2], SENT))

    def _deliver_subscribe(self, operation: Subscribe) -> Deferred[Response]:
        watcher = self.addresses.uri_to_jid(operation.watcher)
        target = self.addresses.uri_to_jid(operation.target)
        key = (_key(operation.watcher), _key(operation.target))
        # rules.PRESENCE_RULES: subscribe (its duration in SHIM Expires), unsubscribe (a cancel), probe (a fetch);
        # from the bare JID: a subscription is between accounts (RFC 6121 §3.1.1).
        if operation.duration == 0:
            cancel = self.inbound.get(key) == operation.subscript_id
            if cancel:
                del self.inbound[key]
            self.send(mapping.subscribe_presence(operation, self.addresses, cancel=cancel, namespace=self.namespace,
                                                 with_instance=False))
            return succeed(success(operation, duration=0))
        self.send(mapping.subscribe_presence(operation, self.addresses, namespace=self.namespace, with_instance=False,
                                             default_duration=self.settings.subscription_duration))
        self.inbound[key] = operation.subscript_id
        previous = self.pending.pop(key, None)
        if previous is not None:
            if previous[1].active():
                previous[1].cancel()
            previous[0].callback(indeterminant(previous[2], "superseded by a new subscribe"))
        deferred: Deferred[Response] = Deferred()

        def waited() -> None:
            entry = self.pending.pop(key, None)
            if entry is not None:
                entry[0].callback(indeterminant(operation, "the XMPP user has not answered yet"))

        self.pending[key] = (deferred, self.reactor.callLater(self.settings.subscribe_wait, waited), operation)
        return deferred

    def _deliver_notify(self, operation: Notify) -> Response:
        watcher = self.addresses.uri_to_jid(operation.watcher)
        target_bare = self.addresses.uri_to_jid(operation.target)
        key = (_key(operation.watcher), _key(operation.target))
        carry = None
        document = secured = None
        if operation.presence is not None:
            # A signed PIDF (RFC 3863 §4): the presences of the document it signs, each with the
            # signed entity unchanged in RFC 3923 <e2e/> (which is then the carriage).
            document, secured = mapping.notify_document(operation.presence, operation.target)
        if secured is not None:
            carry = secured
        elif operation.origin != self.name and operation.presence is not None and self.carriage_for(watcher.host):
            carry = mapping.pidf_element(operation.presence, op="notify", state=operation.state.value,
                                         expires=operation.expires,
                                         reason=operation.reason.value if operation.reason is not None else None)
        # The signed entity in <e2e/> is the whole document: no SHIM residue beside it (RFC 3923 §5).
        residue = secured is None
        if operation.state is SubscriptionState.TERMINATED and operation.presence is not None and key not in self.outbound:
            # The single notify of a fetch (an XMPP probe): the state, once.
            for stanza in mapping.pidf_to_presences(document, operation.target, watcher, self.addresses,
                                                    namespace=self.namespace, carry=carry, residue=residue):
                self.send(stanza)
            return success(operation)
        if operation.state is SubscriptionState.TERMINATED:
            sent = self.sent_resources.pop(key, set())
            if operation.reason in (TerminationReason.REJECTED, TerminationReason.NORESOURCE, TerminationReason.INVARIANT):
                self._forget_outbound(key)
                self.confirmed.discard(key)
                self.send(mapping.simple_presence(target_bare, watcher, "unsubscribed", namespace=self.namespace))
            else:
                for resource in sent or {None}:
                    source = self.addresses.uri_to_jid(operation.target, resource)
                    self.send(mapping.simple_presence(source, watcher, "unavailable", namespace=self.namespace))
            return success(operation)
        if operation.state is SubscriptionState.ACTIVE and key not in self.confirmed and key in self.outbound:
            self.send(mapping.simple_presence(target_bare, watcher, "subscribed", namespace=self.namespace))
            self.confirmed.add(key)
        if document is None:
            return success(operation)
        stanzas = mapping.pidf_to_presences(document, operation.target, watcher, self.addresses,
                                            namespace=self.namespace, carry=carry, residue=residue)
        now_sent = set()
        for stanza in stanzas:
            self.send(stanza)
            resource = parse_jid(stanza["from"]).resource
            if stanza.getAttribute("type") != "unavailable" and resource:
                now_sent.add(resource)
        for resource in self.sent_resources.get(key, set()) - now_sent:
            if not any(parse_jid(s["from"]).resource == resource for s in stanzas):
                source = self.addresses.uri_to_jid(operation.target, resource)
                self.send(mapping.simple_presence(source, watcher, "unavailable", namespace=self.namespace))
        self.sent_resources[key] = now_sent
        self.count("presence-out")
        return success(operation)

    # -- inbound presence ------------------------------------------------

    def on_presence(self, stanza: domish.Element) -> None:
        kind = mapping.presence_type(stanza)
        try:
            if kind in ("available", "unavailable"):
                self._on_availability(stanza, kind)
            elif kind in ("subscribe", "unsubscribe", "probe", "subscribed", "unsubscribed"):
                self._on_subscription(stanza, kind)
            elif kind == "error":
                self._on_presence_error(stanza)
            else:
                raise mapping.StanzaError(f"unknown presence type {kind!r}", "bad-request")
        except mapping.StanzaError as error:
            self.count("presence-refused")
            log.info("XMPP presence refused ({condition}): {reason}", condition=error.condition, reason=error.reason)
            self._answer_error(stanza, error.condition, "modify", error.reason)
        except ParseError as error:
            self.count("presence-refused")
            self._answer_error(stanza, "jid-malformed", "modify", error.describe())

    def _on_availability(self, stanza: domish.Element, kind: str) -> None:
        sender = stanza.getAttribute("from") or ""
        if stanza.firstChildElement() is not None and any(True for _ in stanza.elements(mapping.NS_XMPP, "pidf")):
            if self._on_carried_pidf(stanza, sender):
                return
        signature = kind + "".join(child.toXml() for child in stanza.elements())
        if self.last_presence.get(sender) == signature:
            self.count("presence-unchanged")
            return
        entity, resource, content = mapping.presence_to_pidf(
            stanza, self.addresses, timestamp=self.timestamps(self.reactor.seconds())
        )
        signed = mapping.signed_presence(stanza, entity)
        if signed is not None:
            # RFC 3923 §5: the sender's own signed PIDF is the document, relayed unchanged; the mapped
            # show/status only checked the stanza (a watcher without multipart/signed gets the signed PIDF).
            content = signed
            self.count("presence-signed-in")
        if kind == "unavailable":
            self.last_presence.pop(sender, None)
        else:
            self.last_presence[sender] = signature
        key = _key(entity)
        if resource is None:
            self._on_bare_availability(stanza, kind, entity, content)
            return
        if key in self.bare_published:
            # A resource speaks for itself now: the account-level tuple goes first (withdrawn, no notify).
            self.bare_published.discard(key)
            self.bus.dispatch(Publish(entity, content, origin=self.name, instance=None, expires=0))
        self.published_resources.setdefault(key, {})[resource] = kind == "available"
        self.count("presence-in")
        self.bus.dispatch(Publish(entity, content, origin=self.name, instance=resource))

    def _on_bare_availability(self, stanza: domish.Element, kind: str, entity: CPIMURI, content: Any) -> None:
        """A presence from a bare JID (a server's answer to a probe, RFC 6121 §4.3.2; a server-generated one).

        ``unavailable`` says that no resource of the account is available: it
        closes the tuple of each resource published as available (RFC 3922
        §5.1: one tuple per resource; nothing when all are closed already),
        and only when no resource was ever published does it become one
        account-level closed tuple (instance ``None``, tuple ``ID-``),
        withdrawn again as soon as a resource publishes -- so a bare-JID
        presence never leaves a stale closed tuple in front of the
        resources' tuples of the composed document.
        """
        key = _key(entity)
        states = self.published_resources.get(key) if kind == "unavailable" else None
        self.count("presence-in")
        if states:
            sender = mapping._jid_attr(stanza, "from")
            for resource in sorted(resource for resource, available in states.items() if available):
                states[resource] = False
                self.last_presence.pop(JID(tuple=(sender.user, sender.host, resource)).full(), None)
                _, _, closed = mapping.presence_to_pidf(mapping.from_resource(stanza, resource), self.addresses,
                                                        timestamp=self.timestamps(self.reactor.seconds()))
                self.bus.dispatch(Publish(entity, closed, origin=self.name, instance=resource))
            return
        self.bare_published.add(key)
        self.bus.dispatch(Publish(entity, content, origin=self.name, instance=None))

    def _on_carried_pidf(self, stanza: domish.Element, sender: str) -> bool:
        """Publish the PIDF document a presence carries for its own sender (see :func:`.mapping.carried_pidf`).

        Every presence of one document carries all of it (one per tuple):
        the same document again from the same presentity is not re-published.
        Return ``False`` when there is no trustworthy document (the stanza is
        then mapped as it is).
        """
        entity, resource = self.addresses.jid_to_uri(mapping._jid_attr(stanza, "from").full(), "pres")
        carried = mapping.carried_pidf(stanza, entity)
        if carried is None or carried[0] is None:
            return False
        content, attributes = carried
        key = _key(entity)
        if self.last_document.get(key) == content.body:
            self.count("presence-unchanged")
            return True
        self.last_document[key] = content.body
        expires = attributes.get("expires", "")
        self.count("presence-in")
        self.bus.dispatch(Publish(entity, content, origin=self.name, instance=attributes.get("instance", resource),
                                  expires=int(expires) if attributes.get("op") == "publish" and expires.isdigit()
                                  else None))
        return True

    def _jids(self, stanza: domish.Element) -> tuple[CPIMURI, CPIMURI, JID, JID]:
        sender = mapping._jid_attr(stanza, "from")
        recipient = mapping._jid_attr(stanza, "to")
        return (self.addresses.jid_to_uri(sender, "pres")[0], self.addresses.jid_to_uri(recipient, "pres")[0],
                sender, recipient)

    def _on_subscription(self, stanza: domish.Element, kind: str) -> None:
        sender_uri, recipient_uri, sender, recipient = self._jids(stanza)
        if kind in ("subscribe", "unsubscribe", "probe"):
            # An XMPP user (sender) about a foreign presentity (recipient).
            key = (_key(sender_uri), _key(recipient_uri))
            if kind == "subscribe":
                self._subscribe_out(key, sender_uri, recipient_uri, stanza.getAttribute("id"), stanza)
            elif kind == "unsubscribe":
                entry = self.outbound.get(key)
                subscript_id = entry[0] if entry else new_id()
                self._forget_outbound(key)
                self.confirmed.discard(key)
                self.bus.dispatch(Subscribe(sender_uri, recipient_uri, 0, subscript_id=subscript_id, origin=self.name,
                                            watcher_instance=sender.resource or None))
                self._send_quietly(mapping.simple_presence(recipient.userhostJID(), sender.userhostJID(), "unsubscribed",
                                                           namespace=self.namespace))
            else:
                # RFC 3859 §4.3: a probe is a fetch, with a SubscriptID of its own.
                self.bus.dispatch(Subscribe(sender_uri, recipient_uri, 0, subscript_id=new_fetch_id(),
                                            origin=self.name, watcher_instance=sender.resource or None))
            return
        # subscribed / unsubscribed: an XMPP user (sender) answers a foreign watcher (recipient).
        key = (_key(recipient_uri), _key(sender_uri))
        pending = self.pending.pop(key, None)
        if pending is not None:
            deferred, call, operation = pending
            if call.active():
                call.cancel()
            if kind == "subscribed":
                deferred.callback(success(operation, "approved by the XMPP user", duration=operation.duration))
            else:
                self.inbound.pop(key, None)
                deferred.callback(failure(operation, Condition.FORBIDDEN, "refused by the XMPP user"))
            return
        if kind == "unsubscribed" and key in self.inbound:
            subscript_id = self.inbound.pop(key)
            self.bus.dispatch(Notify(recipient_uri, sender_uri, None, subscript_id=subscript_id,
                                     state=SubscriptionState.TERMINATED, reason=TerminationReason.REJECTED,
                                     origin=self.name))

    def _subscribe_out(self, key: tuple, watcher: CPIMURI, target: CPIMURI, stanza_id: str | None,
                       stanza: domish.Element | None) -> None:
        entry = self.outbound.get(key)
        if entry is None:
            # A subscription the store kept across a restart keeps its SubscriptID.
            records = self.bus.presence.subscriptions_of(target)
            records.addCallback(self._reuse_id, key, watcher, target, stanza_id, stanza)
            records.addErrback(lambda reason: self._subscribe_with(key, watcher, target, stanza_id, stanza, new_id()))
            return
        if entry[2] is not None and entry[2].active():
            entry[2].cancel()
        self._subscribe_with(key, watcher, target, stanza_id, stanza, entry[0])

    def _reuse_id(self, records: list, key: tuple, watcher: CPIMURI, target: CPIMURI, stanza_id: str | None,
                  stanza: Any) -> None:
        mine = str(CPIMURI("pres", watcher.user, watcher.domain_key))
        found = [r.subscript_id for r in records if getattr(r, "watcher", None) == mine]
        self._subscribe_with(key, watcher, target, stanza_id, stanza, found[0] if found else new_id())

    def _subscribe_with(self, key: tuple, watcher: CPIMURI, target: CPIMURI, stanza_id: str | None,
                        stanza: Any, subscript_id: str) -> None:
        trans_id = stanza_id if stanza_id and len(stanza_id) <= 160 else new_id()
        previous = self.outbound.get(key)
        if stanza is not None:
            # The duration the user asks for (SHIM Expires, XEP-0131), else the configured one.
            duration = mapping.subscription_duration(stanza, self.settings.subscription_duration)
            instance = parse_jid(stanza["from"]).resource or None
        elif previous is not None and previous[1] is not None:
            duration, instance = previous[1].duration, previous[1].watcher_instance  # a refresh
        else:
            duration, instance = self.settings.subscription_duration, None
        operation = Subscribe(watcher, target, duration, subscript_id=subscript_id,
                              trans_id=trans_id, origin=self.name, watcher_instance=instance)
        self.outbound[key] = (subscript_id, operation, None)
        self.count("subscribe-in")
        self.bus.dispatch(operation).addCallback(self._subscribe_answered, key, operation, stanza)

    def _subscribe_answered(self, response: Response, key: tuple, operation: Subscribe, stanza: Any) -> None:
        if response.status is Status.FAILURE:
            self._forget_outbound(key)
            watcher = self.addresses.uri_to_jid(operation.watcher)
            target = self.addresses.uri_to_jid(operation.target)
            log.info("subscription of {w} to {t} refused: {r}", w=str(operation.watcher), t=str(operation.target),
                     r=response.reason)
            self._send_quietly(mapping.simple_presence(target, watcher, "unsubscribed", namespace=self.namespace))
            return
        if key not in self.outbound:
            return
        duration = response.duration or operation.duration
        call = self.reactor.callLater(max(30.0, duration * 0.9), self._refresh, key)
        self.outbound[key] = (operation.subscript_id, operation, call)

    def _refresh(self, key: tuple) -> None:
        entry = self.outbound.get(key)
        if entry is None:
            return
        operation = entry[1]
        self._subscribe_out(key, operation.watcher, operation.target, None, None)

    def _forget_outbound(self, key: tuple) -> None:
        entry = self.outbound.pop(key, None)
        if entry is not None and entry[2] is not None and entry[2].active():
            entry[2].cancel()

    def _on_presence_error(self, stanza: domish.Element) -> None:
        condition, text = mapping.stanza_error_condition(stanza)
        self.count("presence-error")
        try:
            sender_uri, recipient_uri, _, _ = self._jids(stanza)
        except ParseError:
            return
        key = (_key(recipient_uri), _key(sender_uri))
        pending = self.pending.pop(key, None)
        if pending is not None:
            deferred, call, operation = pending
            if call.active():
                call.cancel()
            self.inbound.pop(key, None)
            deferred.callback(failure(operation, condition_for_stanza_error(condition), text or condition,
                                      native_code=sip_status_for_stanza_error(condition, bare=True)))

    # -- IQ: disco, ping, version ----------------------------------------

    def on_iq(self, iq: domish.Element) -> None:
        kind = iq.getAttribute("type")
        if kind in ("result", "error"):
            self._on_disco_answer(iq)
            return
        if kind not in ("get", "set"):
            return
        to = iq.getAttribute("to") or self.settings.domain
        child = next(iter(iq.elements()), None)
        reply = domish.Element((self.namespace, "iq"))
        reply["type"] = "result"
        reply["from"] = to
        if iq.getAttribute("from"):
            reply["to"] = iq["from"]
        if iq.getAttribute("id"):
            reply["id"] = iq["id"]
        if kind == "get" and child is not None and child.uri == NS_PING and child.name == "ping":
            pass
        elif kind == "get" and child is not None and child.uri == NS_DISCO_INFO and child.name == "query":
            query = reply.addElement((NS_DISCO_INFO, "query"))
            if child.getAttribute("node"):
                query["node"] = child["node"]
            identity = query.addElement("identity")
            if JID(to).user:
                identity["category"], identity["type"], identity["name"] = "client", "pc", "remote user via cpimgw"
            else:
                identity["category"], identity["type"], identity["name"] = "gateway", "cpim", "cpimgw CPIM gateway"
            for feature in FEATURES:
                query.addElement("feature")["var"] = feature
        elif kind == "get" and child is not None and child.uri == NS_DISCO_ITEMS and child.name == "query":
            query = reply.addElement((NS_DISCO_ITEMS, "query"))
            if child.getAttribute("node"):
                query["node"] = child["node"]
        elif kind == "get" and child is not None and child.uri == NS_VERSION and child.name == "query":
            query = reply.addElement((NS_VERSION, "query"))
            query.addElement("name", content="cpimgw")
            query.addElement("version", content=getattr(cpimgw, "__version__", "0.1.0"))
        else:
            self._answer_error(iq, "service-unavailable", "cancel")
            return
        self._send_quietly(reply)
