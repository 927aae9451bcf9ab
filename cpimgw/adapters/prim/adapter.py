"""The PRIM adapter: PRIM user agents and PRIM peer servers on the CPIM bus.

- It listens (on loopback in the embedded default) for peer servers
  (draft-ietf-prim-server-00, the federation profile) and for user agents
  (draft-mazzoldi-prim-impp-01/-02 client-server commands); see
  :mod:`cpimgw.adapters.prim.server` for the sessions.
- ``domains`` are the PRIM domains whose users it serves locally (its own
  users logged in as UAs) plus the configured peer PRIM domains, reached
  server-to-server over an outbound connection (STARTTLS with certificate
  verification, then LOGIN with SASL EXTERNAL or CRAM-MD5), found in the
  ``peers`` table or by SRV (``_prim-im._tcp`` / ``_prim-pr._tcp``, the
  legacy ``_im._tcp`` / ``_presence._tcp``, then the A record at
  ``default_port``).  A ``300 Redirect`` is followed once.
- Inbound SEND / SUBSCRIBE / UNSUBSCRIBE / FETCH / NOTIFY become CPIM
  operations (:mod:`~cpimgw.adapters.prim.mapping`) dispatched on the bus;
  the bus's Response becomes the PRIM status.
- ``deliver``: a message for a local inbox is SENT to every UA listening on it
  and the most positive answer wins (-01 §12.2; no listener: 408); a message
  for a peer domain is SENT to its server.  PRIM-to-PRIM SENDs are relayed
  unmodified (same headers, same body octets, -01 §16).  Subscribes for local
  presentities are authorised with the presentity's ACL (and reported to UAs
  that asked for watcher notifications); notifies for local watchers are
  NOTIFYs to their UAs, filtered per watcher by the presentity's class table
  (polite blocking).
- UA presence: PUBLISH/REMOVE with the lease model (leased, permanent, renew,
  revert) is kept per tuple; the part visible to everybody is published on the
  bus (one ``Publish`` per change), the class-restricted tuples only reach the
  PRIM watchers of the matching classes.
"""

from __future__ import annotations

import collections
import socket
from typing import Any, Iterable, Mapping, Optional

import attrs
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, HostnameEndpoint, connectProtocol
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from cpimgw.adapters.prim import acl, mapping, sasl, wire
from cpimgw.adapters.prim import state as pstate
from cpimgw.adapters.prim.presence_doc import PIDF_NS, legacy_content
from cpimgw.adapters.prim.protocol import PrimConnectionLost, PrimProtocol, PrimTimeout
from cpimgw.adapters.prim.server import STRENGTHS, Session, login_to_peer
from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import (
    MEDIA_PIDF,
    Condition,
    Content,
    Message,
    Notify,
    Publish,
    Response,
    Subscribe,
    SubscriptionState,
    failure,
    success,
)
from cpimgw.cpim.signed import inner_pidf, is_signed
from cpimgw.cpim.uri import CPIMURI, pres_uri
from cpimgw.interfaces import IAdapter, IMessaging, IPresence
from cpimgw.limits import RequestRateGuard

log = Logger()

#: seconds a verified (domain, peer address) pair is trusted without asking again.
VERIFY_CACHE = 300.0

DEFAULTS: dict[str, Any] = {
    "local_domains": ["prim.localhost"],
    "listen_host": "127.0.0.1",
    "s2s_port": 5780,
    "c2s_port": 5781,
    "default_port": 5780,
    "tls_certificate": "",
    "tls_key": "",
    "tls_ca": "",
    "s2s_require_tls": True,
    "sasl_mechanisms": ["EXTERNAL", "CRAM-MD5", "PLAIN"],
    "min_astrength": "none",
    "login_timeout": 30,
    "request_timeout": 30,
    "max_command_size": 65536,
    "max_headers": 64,
    "max_line": 8192,
    "max_pending": 256,
    "max_connections_per_ip": 64,
    "idle_timeout": 1800,
    "max_request_rate": 200,
    "request_burst": 400,
    "srv_lookup": True,
    "server_addresses": [],
    "outbound_address": "",
    "verify_peers": True,
    "verify_by_address": True,
    "astrength_by_origin": {},
    "users": {},
    "peers": {},
}


@attrs.frozen
class PeerSettings:
    """One peer PRIM domain reached server-to-server."""

    domain: str
    host: str = ""
    port: int = 0
    secret: Optional[str] = None
    tls: bool = True


def _require(condition: bool, key: str, reason: str) -> None:
    if not condition:
        raise ConfigError(reason, key=f"adapters.prim.{key}")


@attrs.frozen
class PrimSettings:
    """The validated ``[adapters.prim]`` table (see :data:`DEFAULTS` and conf/cpimgw.toml)."""

    local_domains: tuple[str, ...]
    listen_host: str
    s2s_port: int
    c2s_port: int
    default_port: int
    tls_certificate: str
    tls_key: str
    tls_ca: str
    s2s_require_tls: bool
    sasl_mechanisms: tuple[str, ...]
    min_astrength: str
    login_timeout: float
    request_timeout: float
    max_command_size: int
    max_headers: int
    max_line: int
    max_pending: int
    max_connections_per_ip: int
    idle_timeout: float
    srv_lookup: bool
    server_addresses: tuple[str, ...]
    outbound_address: str
    verify_peers: bool
    verify_by_address: bool
    astrength_by_origin: Mapping[str, str]
    users: Mapping[str, str]
    peers: Mapping[str, PeerSettings]
    max_request_rate: float = 200.0
    request_burst: float = 400.0

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> "PrimSettings":
        merged = dict(DEFAULTS)
        unknown = set(settings) - set(DEFAULTS) - {"name", "enabled"}
        _require(not unknown, sorted(unknown)[0] if unknown else "", "unknown option")
        merged.update(settings)
        domains = merged["local_domains"]
        _require(isinstance(domains, (list, tuple)) and all(isinstance(d, str) and d for d in domains),
                 "local_domains", "must be a list of domain names")
        for key in ("s2s_port", "c2s_port", "default_port"):
            value = merged[key]
            _require(isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535, key,
                     "must be a port number from 0 to 65535 (0: do not listen)")
        for key in ("login_timeout", "request_timeout", "idle_timeout"):
            _require(isinstance(merged[key], (int, float)) and not isinstance(merged[key], bool) and merged[key] >= 0,
                     key, "must be seconds >= 0 (0: no limit)")
        for key in ("max_command_size", "max_headers", "max_line", "max_pending"):
            _require(isinstance(merged[key], int) and not isinstance(merged[key], bool) and merged[key] > 0, key,
                     "must be a positive integer")
        _require(isinstance(merged["max_connections_per_ip"], int) and not isinstance(merged["max_connections_per_ip"], bool)
                 and merged["max_connections_per_ip"] >= 0, "max_connections_per_ip", "must be an integer >= 0 (0: no limit)")
        for key in ("max_request_rate", "request_burst"):
            _require(isinstance(merged[key], (int, float)) and not isinstance(merged[key], bool)
                     and 0 <= merged[key] <= 1_000_000, key, "must be a number from 0 to 1000000 (0: no limit)")
        origins = merged["astrength_by_origin"]
        _require(isinstance(origins, Mapping) and all(v in STRENGTHS for v in origins.values()), "astrength_by_origin",
                 f"must be a table of adapter name = one of {', '.join(STRENGTHS)}")
        _require(isinstance(merged["server_addresses"], (list, tuple))
                 and all(isinstance(a, str) for a in merged["server_addresses"]), "server_addresses",
                 "must be a list of IP addresses")
        mechanisms = tuple(str(m).upper() for m in merged["sasl_mechanisms"])
        _require(all(m in sasl.MECHANISMS for m in mechanisms), "sasl_mechanisms",
                 f"mechanisms must be among {', '.join(sasl.MECHANISMS)}")
        _require(merged["min_astrength"] in STRENGTHS, "min_astrength", f"must be one of {', '.join(STRENGTHS)}")
        _require(bool(merged["tls_certificate"]) == bool(merged["tls_key"]), "tls_key",
                 "tls_certificate and tls_key go together")
        users = merged["users"]
        _require(isinstance(users, Mapping) and all(isinstance(v, str) for v in users.values()), "users",
                 "must be a table of user = password")
        peers: dict[str, PeerSettings] = {}
        _require(isinstance(merged["peers"], Mapping), "peers", "must be a table of domain = {host, port, secret, tls}")
        for domain, entry in merged["peers"].items():
            _require(isinstance(entry, Mapping), f"peers.{domain}", "must be a table")
            extra = set(entry) - {"host", "port", "secret", "tls"}
            _require(not extra, f"peers.{domain}", f"unknown keys {sorted(extra)}")
            port = entry.get("port", 0)
            _require(isinstance(port, int) and 0 <= port <= 65535, f"peers.{domain}.port", "must be a port number")
            peers[domain.lower().rstrip(".")] = PeerSettings(
                domain.lower().rstrip("."), str(entry.get("host", "")), port,
                entry.get("secret"), bool(entry.get("tls", True)))
        return cls(
            local_domains=tuple(d.lower().rstrip(".") for d in domains),
            listen_host=str(merged["listen_host"]),
            s2s_port=merged["s2s_port"],
            c2s_port=merged["c2s_port"],
            default_port=merged["default_port"],
            tls_certificate=str(merged["tls_certificate"]),
            tls_key=str(merged["tls_key"]),
            tls_ca=str(merged["tls_ca"]),
            s2s_require_tls=bool(merged["s2s_require_tls"]),
            sasl_mechanisms=mechanisms,
            min_astrength=merged["min_astrength"],
            login_timeout=float(merged["login_timeout"]),
            request_timeout=float(merged["request_timeout"]),
            max_command_size=merged["max_command_size"],
            max_headers=merged["max_headers"],
            max_line=merged["max_line"],
            max_pending=merged["max_pending"],
            max_connections_per_ip=merged["max_connections_per_ip"],
            idle_timeout=float(merged["idle_timeout"]),
            max_request_rate=float(merged["max_request_rate"]),
            request_burst=float(merged["request_burst"]),
            srv_lookup=bool(merged["srv_lookup"]),
            server_addresses=tuple(merged["server_addresses"]),
            outbound_address=str(merged["outbound_address"]),
            verify_peers=bool(merged["verify_peers"]),
            verify_by_address=bool(merged["verify_by_address"]),
            astrength_by_origin=dict(origins),
            users=dict(users),
            peers=peers,
        )


@attrs.define
class TupleState:
    """One published tuple of a local presentity: permanent and leased values (-01 §11.2)."""

    permanent: Optional[tuple[Content, tuple[str, ...]]] = None
    leased: Optional[tuple[Content, tuple[str, ...]]] = None
    lease_timer: Any = None
    lease_until: Optional[float] = None  # reactor seconds

    @property
    def current(self) -> Optional[tuple[Content, tuple[str, ...]]]:
        return self.leased or self.permanent


def compose_tuples(entity: str, documents: list[bytes]) -> bytes:
    """One PIDF document holding the tuples (and notes) of several one-presentity documents."""
    if len(documents) == 1:
        return documents[0]
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.Element(f"{{{PIDF_NS}}}presence", nsmap={None: PIDF_NS})
    root.set("entity", entity)
    tail = []
    for document in documents:
        try:
            source = etree.fromstring(document, parser)
        except etree.XMLSyntaxError:
            continue
        for child in source:
            if child.tag == f"{{{PIDF_NS}}}tuple":
                root.append(child)
            elif isinstance(child.tag, str):
                tail.append(child)
    for child in tail:
        root.append(child)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _most_positive(codes: Iterable[int]) -> int:
    """-01 §12.2 / server-00 §7.2.1: the most positive of the listeners' answers."""
    order = {200: 0, 101: 1, 408: 3}
    codes = list(codes)
    if not codes:
        return 408
    return min(codes, key=lambda code: order.get(code, 2))


class _SessionFactory(Factory):
    def __init__(self, adapter: "PrimAdapter", role: str) -> None:
        self.adapter = adapter
        self.role = role

    def buildProtocol(self, addr: Any) -> Optional[PrimProtocol]:
        host = getattr(addr, "host", None)
        cap = self.adapter.settings.max_connections_per_ip
        if cap and host is not None and self.adapter.connections_from(host) >= cap:
            self.adapter.counters["connections_refused"] += 1
            log.warn("PRIM {role} connection from {host} refused: {cap} connections from that address already",
                     role=self.role, host=host, cap=cap)
            return None  # Twisted closes the connection at once
        return self.adapter.make_protocol(Session(self.adapter, self.role, peer_host=host))


@implementer(IAdapter, IMessaging, IPresence)
class PrimAdapter(Service):
    """The PRIM adapter (see the module docstring).

    :param settings: the validated settings.
    :param bus: the ``IBus``.
    :param name: the adapter's name on the bus.
    :param resolver: a ``twisted.names`` resolver for SRV discovery (the system's by default).
    """

    def __init__(self, settings: PrimSettings, bus: Any, *, name: str = "prim", resolver: Any = None,
                 listen_ports: Optional[Mapping[str, int]] = None) -> None:
        self.settings = settings
        self.bus = bus
        self.name = name
        self.reactor = bus.reactor
        self.resolver = resolver
        self.domains = tuple(dict.fromkeys(settings.local_domains + tuple(settings.peers)))
        self.host_name = settings.local_domains[0] if settings.local_domains else socket.gethostname()
        self.counters: collections.Counter[str] = collections.Counter()
        #: requests per second per peer IP, shared by every connection (500 over it; 0 = off).
        self.rate_guard = RequestRateGuard(settings.max_request_rate, settings.request_burst, self.reactor)
        self.sessions: set[Session] = set()
        self._ua_sessions: dict[tuple[str, str], list[Session]] = {}
        self._tuples: dict[tuple[str, str], dict[str, TupleState]] = {}
        self._acls: dict[tuple[str, str], acl.AccessList] = {}
        self._class_tables: dict[tuple[str, str], acl.ClassTable] = {}
        self._subscription_ids: dict[tuple[str, str], str] = {}
        self._originals: dict[str, tuple[wire.Headers, bytes]] = {}
        self._strengths: dict[str, str] = {}
        self._peer_ready: dict[tuple[str, str, int], PrimProtocol] = {}
        self._peer_pending: dict[tuple[str, str, int], list[defer.Deferred]] = {}
        self._redirects: dict[str, tuple[str, int]] = {}
        self._listening: list[Any] = []
        self._tls_cache: dict[str, Any] = {}
        self._verified: dict[tuple[str, str], float] = {}
        #: Subscription-ID -> Deferred of the first notify, for -01/-02 SUBSCRIBE/FETCH answers.
        self._absorb: dict[str, defer.Deferred] = {}
        self._writes: set[defer.Deferred] = set()  # state writes not yet stored  # (domain, peer address) -> verified until
        #: role -> port to listen on.  From the settings, 0 turns a listener off;
        #: given explicitly (tests), 0 asks for an ephemeral port.
        if listen_ports is None:
            configured = {"server": settings.s2s_port, "client": settings.c2s_port}
            listen_ports = {role: port for role, port in configured.items() if port}
        self.listen_ports = dict(listen_ports)

    # ------------------------------------------------------------------ service

    def startService(self) -> defer.Deferred:  # type: ignore[override]
        super().startService()
        return self.restore().addCallback(lambda _: self.listen())

    # ------------------------------------------------------------------ persistence (state.py)

    def _store_values(self) -> Any:
        store = getattr(self.bus, "store", None)
        return store if store is not None and hasattr(store, "put_value") else None

    def _persist(self, scope: str, key: str, value: Optional[bytes], expires_at: Optional[float] = None) -> None:
        """Write (``value``) or delete (``None``) one state value; failures are logged, never raised."""
        store = self._store_values()
        if store is None:
            return
        d = store.remove_value(scope, key) if value is None else store.put_value(scope, key, value, expires_at)
        self.counters["state_writes"] += 1
        d.addErrback(lambda failure: log.failure("PRIM state {scope} {key} not saved", failure, scope=scope,
                                                 key=key.replace("\n", " ")))
        if not d.called:
            self._writes.add(d)
            d.addBoth(lambda result: (self._writes.discard(d), result)[1])

    def flush(self) -> defer.Deferred:
        """``Deferred`` that fires when every state write and presence publication issued so far is done."""
        return defer.gatherResults(list(self._writes), consumeErrors=True).addCallback(lambda _: None)

    def _save_tuple(self, principal: tuple[str, str], tuple_id: str) -> None:
        current = self._tuples.get(principal, {}).get(tuple_id)
        key = pstate.tuple_key(principal, tuple_id)
        if current is None or current.current is None:
            self._persist(pstate.SCOPE_TUPLE, key, None)
            return
        stored = pstate.StoredTuple(current.permanent, current.leased,
                                   current.lease_until if current.leased is not None else None)
        self._persist(pstate.SCOPE_TUPLE, key, pstate.encode_tuple(stored), pstate.tuple_expiry(stored))

    def _save_subscription_id(self, pair: tuple[str, str], subscript_id: Optional[str],
                              duration: Optional[int] = None) -> None:
        if subscript_id is None:
            self._subscription_ids.pop(pair, None)
            self._persist(pstate.SCOPE_UNSUBSCRIBE, pstate.pair_key(pair), None)
            return
        self._subscription_ids[pair] = subscript_id
        expires = self.reactor.seconds() + duration if duration else None
        self._persist(pstate.SCOPE_UNSUBSCRIBE, pstate.pair_key(pair), subscript_id.encode("utf-8"), expires)

    @defer.inlineCallbacks
    def restore(self):  # type: ignore[no-untyped-def]
        """Reload ACLs, class tables, tuples (re-arming leases) and Subscription-IDs from the store.

        A value that does not parse is logged and skipped; a lease that ended while the
        gateway was down reverts at once (and the presentity's presence is published again).
        """
        store = self._store_values()
        if store is None:
            return
        now = self.reactor.seconds()
        loaded = {}
        for scope in (pstate.SCOPE_ACL, pstate.SCOPE_CLASS_TABLE, pstate.SCOPE_TUPLE, pstate.SCOPE_UNSUBSCRIBE):
            loaded[scope] = yield store.get_values(scope, now)
        for key, value in loaded[pstate.SCOPE_ACL].items():
            try:
                self._acls[pstate.principal_of(key)] = acl.parse_acl(value)
            except Exception as error:  # noqa: BLE001 - a damaged row must not stop the adapter
                log.warn("PRIM stored ACL of {key} skipped: {error}", key=key, error=error)
        for key, value in loaded[pstate.SCOPE_CLASS_TABLE].items():
            try:
                self._class_tables[pstate.principal_of(key)] = acl.parse_class_table(value)
            except Exception as error:  # noqa: BLE001
                log.warn("PRIM stored class table of {key} skipped: {error}", key=key, error=error)
        republish = set()
        for key, value in loaded[pstate.SCOPE_TUPLE].items():
            try:
                principal, tuple_id = pstate.split_tuple_key(key)
                stored = pstate.decode_tuple(value)
            except Exception as error:  # noqa: BLE001
                log.warn("PRIM stored tuple {key} skipped: {error}", key=key.replace("\n", " "), error=error)
                continue
            current = TupleState(stored.permanent, stored.leased, None, stored.lease_until)
            self._tuples.setdefault(principal, {})[tuple_id] = current
            if current.leased is not None:
                remaining = (stored.lease_until or now) - now
                if remaining > 0:
                    self._arm_lease(principal, tuple_id, current, remaining, save=False)
                    current.lease_until = stored.lease_until  # the same end as before the restart
                else:
                    self._drop_lease(principal, tuple_id, current)
                    republish.add(principal)
        for key, value in loaded[pstate.SCOPE_UNSUBSCRIBE].items():
            try:
                self._subscription_ids[pstate.split_pair_key(key)] = value.decode("utf-8")
            except Exception as error:  # noqa: BLE001
                log.warn("PRIM stored subscription {key} skipped: {error}", key=key.replace("\n", " "), error=error)
        for principal in sorted(republish):
            self._publish_public(principal, None)
        log.info("PRIM state restored: {acls} ACLs, {tables} class tables, {tuples} tuples, {subs} subscriptions",
                 acls=len(self._acls), tables=len(self._class_tables),
                 tuples=sum(len(t) for t in self._tuples.values()), subs=len(self._subscription_ids))

    @defer.inlineCallbacks
    def listen(self):  # type: ignore[no-untyped-def]
        """Start the listeners; ``Deferred`` that fires when they listen."""
        for role, port in self.listen_ports.items():
            endpoint = TCP4ServerEndpoint(self.reactor, port, interface=self.settings.listen_host)
            listening = yield endpoint.listen(_SessionFactory(self, role))
            listening.role = role  # type: ignore[attr-defined]
            self._listening.append(listening)
            log.info("PRIM {role} listener on {host}:{port}", role=role, host=self.settings.listen_host,
                     port=listening.getHost().port)

    def listening_addresses(self) -> list[str]:
        """``role host:port`` of each listener (logged by the service at start)."""
        return [f"{listening.role} {listening.getHost().host}:{listening.getHost().port}" for listening in self._listening]

    def port_of(self, role: str) -> int:
        """The TCP port a listener (``'server'`` or ``'client'``) got (useful with port 0)."""
        for listening in self._listening:
            if listening.role == role:
                return listening.getHost().port
        raise KeyError(role)

    def stopService(self) -> defer.Deferred:  # type: ignore[override]
        super().stopService()
        stops = [defer.maybeDeferred(listening.stopListening) for listening in self._listening]
        self._listening = []
        for session in list(self.sessions):
            if session.protocol is not None and session.protocol.transport is not None:
                stops.append(session.lost)
                session.protocol.close()
                transport = session.protocol.transport
                abort = getattr(transport, "abortConnection", None)
                if abort is not None:
                    timer = self.reactor.callLater(2, abort)
                    session.lost.addBoth(lambda result, t=timer: (t.cancel() if t.active() else None, result)[1])
        for tuples in self._tuples.values():
            for state in tuples.values():
                if state.lease_timer is not None and state.lease_timer.active():
                    state.lease_timer.cancel()
        stops.append(self.flush())  # the state must be stored before the store closes
        return defer.gatherResults(stops, consumeErrors=True)

    def make_protocol(self, session: Session) -> PrimProtocol:
        protocol = PrimProtocol(
            session, self.reactor, request_timeout=self.settings.request_timeout,
            max_line=self.settings.max_line, max_headers=self.settings.max_headers,
            max_body=self.settings.max_command_size, max_pending=self.settings.max_pending,
            idle_timeout=self.settings.idle_timeout, rate_guard=self.rate_guard, stats=self.counters,
        )
        self.sessions.add(session)
        return protocol

    # ------------------------------------------------------------------ session support

    def serves(self, domain: str) -> bool:
        """Whether a peer server may send us requests for ``domain``: our own PRIM users, or a
        domain another adapter on the bus reaches (we are its PRIM gateway).  Never one of our
        PRIM peers' domains: no relaying between PRIM servers."""
        key = domain.lower().rstrip(".")
        if self.is_local_domain(key):
            return True
        if key in self.settings.peers:
            return False
        adapters = getattr(self.bus, "adapters", {})
        return any(key in getattr(adapter, "domains", ()) for name, adapter in adapters.items() if adapter is not self)

    def verifies_peers(self) -> bool:
        """Whether peers' certificates are verified (a CA is configured), so their names can be trusted."""
        return bool(self.settings.tls_ca) and self._load_tls() is not None

    def is_local_domain(self, domain: str) -> bool:
        return domain.lower().rstrip(".") in self.settings.local_domains

    def user_secret(self, user: str) -> Optional[str]:
        users = self.settings.users
        if user in users:
            return users[user]
        local, _, domain = user.rpartition("@")
        if domain.lower() in self.settings.local_domains:
            return users.get(local)
        return None

    def peer_secret(self, domain: str) -> Optional[str]:
        peer = self.settings.peers.get(domain.lower())
        return peer.secret if peer else None

    def own_addresses(self) -> set[str]:
        """The addresses VERIFYSERVER confirms as ours: ``server_addresses``, the listening and the
        outbound addresses, and the local address of every outbound peer connection now open."""
        addresses = set(self.settings.server_addresses)
        addresses.add(self.settings.listen_host)
        if self.settings.outbound_address:
            addresses.add(self.settings.outbound_address)
        for session in self.sessions:
            if session.role == "outbound" and session.protocol is not None and session.protocol.transport is not None:
                try:
                    addresses.add(session.protocol.transport.getHost().host)
                except Exception:  # noqa: BLE001 - no address to add
                    pass
        addresses.discard("0.0.0.0")
        addresses.discard("::")
        return addresses

    def connections_from(self, host: str) -> int:
        """How many inbound connections (server and user agent) come from ``host`` now."""
        return sum(1 for session in self.sessions if session.role != "outbound" and session.peer_host == host)

    def connection_counts(self) -> dict[str, int]:
        """Open connections by peer kind (``client``: user agents, ``server``/``outbound``: peer servers)."""
        counts = {"client": 0, "server": 0, "outbound": 0}
        for session in self.sessions:
            counts[session.role] = counts.get(session.role, 0) + 1
        return counts

    def check_tls(self) -> Optional[str]:
        """Load the TLS files again; what changed (``None``: nothing); raises when they do not load."""
        if not self.settings.tls_certificate:
            return None
        old = self._tls_cache.get("material")
        saved, self._tls_cache = self._tls_cache, {}
        try:
            material = self._load_tls()
            self.server_tls_options()
            self._fresh_tls = self._tls_cache
        finally:
            self._tls_cache = saved
        if old is not None and material is not None and old[1] == material[1]:
            return None
        return f"certificate {self.settings.tls_certificate} reloaded"

    def reload_tls(self) -> None:
        """Use the material :meth:`check_tls` loaded for new handshakes (established sessions keep theirs)."""
        fresh = getattr(self, "_fresh_tls", None)
        if fresh is not None:
            self._tls_cache = fresh
            self._fresh_tls = None

    # ------------------------------------------------------------------ peer verification (server-00 §9.1, §7.3.5)

    @defer.inlineCallbacks
    def verify_peer_domain(self, domain: str, host: Optional[str], *, tls: bool = False):  # type: ignore[no-untyped-def]
        """Whether the server at ``host`` serves ``domain``; ``Deferred[str | None]`` never failing:
        the strength of the proof (``weak``, ``medium`` over TLS) or ``None`` (not verified).

        The domain's servers are found as for sending to it (:meth:`next_hops`); ``host`` among their
        addresses proves it (``verify_by_address``); otherwise each of the first three is asked
        ``VERIFYSERVER`` on a fresh connection (200: proven, 403: refused, no answer: next one).
        Results are cached for ``VERIFY_CACHE`` seconds.
        """
        strength = "medium" if tls else "weak"
        if not host:
            return None
        key = (domain, host)
        cached = self._verified.get(key)
        if cached is not None and cached > self.reactor.seconds():
            self.counters["verify_cached"] += 1
            return strength
        try:
            hops = yield self.next_hops(domain, "im")
        except Exception as error:  # noqa: BLE001 - resolution failure: not verified
            log.info("PRIM verification of {domain}: no servers found ({error})", domain=domain, error=error)
            hops = []
        hops = [hop for hop in hops if hop not in self._own_hops()][:3]
        if not hops:
            self.counters["verify_failed"] += 1
            return None
        if self.settings.verify_by_address:
            for hop_host, _port in hops:
                addresses = yield self._addresses_of(hop_host)
                if host in addresses:
                    self.counters["verify_by_address"] += 1
                    self._verified[key] = self.reactor.seconds() + VERIFY_CACHE
                    log.info("PRIM peer {host} is a server of {domain} (DNS)", host=host, domain=domain)
                    return strength
        for hop_host, port in hops:
            try:
                code = yield self.send_verifyserver(hop_host, port, host)
            except Exception as error:  # noqa: BLE001 - unreachable: ask the next server
                log.info("PRIM VERIFYSERVER to {hop}:{port} failed: {error}", hop=hop_host, port=port, error=error)
                continue
            if code == 200:
                self.counters["verify_by_verifyserver"] += 1
                self._verified[key] = self.reactor.seconds() + VERIFY_CACHE
                log.info("PRIM peer {host} is a server of {domain} (VERIFYSERVER to {hop}:{port})",
                         host=host, domain=domain, hop=hop_host, port=port)
                return strength
            if code == 403:
                break  # the domain's own server says no
        self.counters["verify_failed"] += 1
        return None

    def _own_hops(self) -> set[tuple[str, int]]:
        hops = set()
        for listening in self._listening:
            address = listening.getHost()
            hops.add((address.host, address.port))
        return hops

    @defer.inlineCallbacks
    def _addresses_of(self, host: str):  # type: ignore[no-untyped-def]
        """``Deferred[set[str]]``: ``host`` if it is an IP address, else its resolved addresses."""
        if wire_address(host):
            return {host}
        try:
            address = yield self.reactor.resolve(host)
        except Exception:  # noqa: BLE001 - no address
            return set()
        return {address}

    @defer.inlineCallbacks
    def send_verifyserver(self, host: str, port: int, address: str):  # type: ignore[no-untyped-def]
        """Ask the server at ``host``:``port`` (fresh connection, no LOGIN) whether ``address`` is one of
        its domain's servers.  ``Deferred[int]``: the status code (a 200 whose ``Server-Address`` names
        another address counts as 403)."""
        protocol = PrimProtocol(None, self.reactor, request_timeout=self.settings.request_timeout or 30)
        bind = (self.settings.outbound_address, 0) if self.settings.outbound_address else None
        endpoint = HostnameEndpoint(self.reactor, host, port, timeout=self.settings.request_timeout or 30,
                                    bindAddress=bind)
        yield connectProtocol(endpoint, protocol)
        try:
            answer = yield protocol.send_request("VERIFYSERVER", [("Server-Address", address)])
        finally:
            protocol.close()
        echoed = answer.header("Server-Address")
        if answer.code == 200 and echoed is not None and echoed != address:
            return 403
        return answer.code

    def _load_tls(self) -> Optional[tuple[Any, Any, list[Any]]]:
        if "material" in self._tls_cache:
            return self._tls_cache["material"]
        material = None
        if self.settings.tls_certificate:
            from twisted.internet import ssl

            with open(self.settings.tls_certificate, "rb") as handle:
                cert_pem = handle.read()
            with open(self.settings.tls_key, "rb") as handle:
                key_pem = handle.read()
            private = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
            cas = []
            if self.settings.tls_ca:
                with open(self.settings.tls_ca, "rb") as handle:
                    cas = [ssl.Certificate.loadPEM(handle.read())]
            material = (private, cert_pem, cas)
        self._tls_cache["material"] = material
        return material

    def server_tls_options(self) -> Any:
        """TLS server options (asking for, not requiring, a client certificate), or ``None``."""
        if "server" in self._tls_cache:
            return self._tls_cache["server"]
        material = self._load_tls()
        options = None
        if material is not None:
            from twisted.internet import ssl

            private, _pem, cas = material
            options = ssl.CertificateOptions(
                privateKey=private.privateKey.original, certificate=private.original,
                verify=bool(cas), caCerts=[ca.original for ca in cas] or None,
                requireCertificate=False, raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            )
        self._tls_cache["server"] = options
        return options

    def client_tls_options(self, domain: str) -> Any:
        """TLS client options verifying the peer's certificate for ``domain`` (service-identity)."""
        from twisted.internet import ssl

        material = self._load_tls()
        kwargs: dict[str, Any] = {}
        if material is not None:
            private, _pem, cas = material
            kwargs["clientCertificate"] = private
            if cas:
                kwargs["trustRoot"] = cas[0] if len(cas) == 1 else ssl.trustRootFromCertificates(cas)
        return ssl.optionsForClientTLS(domain, **kwargs)

    def session_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        if session.principal is not None:
            sessions = self._ua_sessions.get(session.principal, [])
            if session in sessions:
                sessions.remove(session)
            if not sessions and self._ua_sessions.pop(session.principal, None) is not None:
                self._cluster_holds(session.principal, False)

    def ua_logged_in(self, session: Session) -> None:
        assert session.principal is not None
        if session.principal not in self._ua_sessions:
            self._cluster_holds(session.principal, True)
        self._ua_sessions.setdefault(session.principal, []).append(session)
        if session.protocol is not None:
            session.protocol.version = session.service_version or wire.DEFAULT_VERSION

    def ua_sessions(self, principal: tuple[str, str]) -> list[Session]:
        return list(self._ua_sessions.get(principal, []))

    # ------------------------------------------------------------------ cluster (several gateway nodes)

    @staticmethod
    def _ua_key(principal: tuple[str, str]) -> str:
        return f"prim.ua:{principal[0]}@{principal[1]}"

    def _cluster_holds(self, principal: tuple[str, str], held: bool) -> None:
        """Tell the cluster (when the bus is a cluster node's) that this node holds, or no longer
        holds, the sessions of a local user's agents."""
        cluster = getattr(self.bus, "cluster", None)
        if cluster is None:
            return
        if held:
            cluster.hold(self._ua_key(principal))
            self._reload_access(principal)
        else:
            cluster.release(self._ua_key(principal))

    def _reload_access(self, principal: tuple[str, str]) -> None:
        """Read the principal's ACL and class table from the shared store: the user agent may have
        set them through another node since this one started (its deliveries are decided here now)."""
        store = self._store_values()
        if store is None:
            return
        key = pstate.principal_key(principal)

        def loaded(values: list) -> None:
            for table, parse, value in ((self._acls, acl.parse_acl, values[0]),
                                        (self._class_tables, acl.parse_class_table, values[1])):
                if value is None:
                    table.pop(principal, None)
                    continue
                try:
                    table[principal] = parse(value)
                except Exception as error:  # noqa: BLE001 - a damaged row: the node's own view stays
                    log.warn("PRIM stored access rules of {key} skipped: {error}", key=key, error=error)

        d = defer.gatherResults([store.get_value(pstate.SCOPE_ACL, key),
                                 store.get_value(pstate.SCOPE_CLASS_TABLE, key)], consumeErrors=True)
        d.addCallbacks(loaded, lambda reason: log.warn("PRIM: access rules of {key} unreadable: {error}", key=key,
                                                       error=reason.getErrorMessage()))
        self._writes.add(d)
        d.addBoth(lambda result: (self._writes.discard(d), result)[1])

    def cluster_key(self, operation: Any) -> Optional[str]:
        """The connection that delivers ``operation``: a local user's agents (``prim.ua:user@domain``),
        ``None`` for a peer domain (any node opens its own server-to-server connection)."""
        if isinstance(operation, Message):
            uri = operation.destination
        elif isinstance(operation, Notify):
            uri = operation.watcher
        elif isinstance(operation, Subscribe):
            uri = operation.target
        else:
            return None
        domain = uri.domain_key
        if not self.is_local_domain(domain):
            return None
        return self._ua_key((uri.user, domain))

    # ------------------------------------------------------------------ inbound requests

    def handle_request(self, session: Session, request: wire.Request, strength: str) -> Any:
        handler = getattr(self, "_on_" + request.method.lower(), None)
        if handler is None:
            return wire.response_to(request, 501)
        return handler(session, request, strength)

    def _dispatch(self, op: Any, strength: str) -> defer.Deferred:
        self._strengths[op.trans_id] = strength
        d = self.bus.dispatch(op)

        def done(response: Response) -> Response:
            self._strengths.pop(op.trans_id, None)
            self._originals.pop(op.trans_id, None)
            return response

        return d.addBoth(done)

    def _on_send(self, session: Session, request: wire.Request, strength: str) -> defer.Deferred:
        message = mapping.send_to_message(request, origin=self.name, now=self.reactor.seconds())
        if session.role == "client":
            message = attrs.evolve(message, source_instance=session.ua_id)
        self._originals[message.trans_id] = (request.headers, request.body)
        echo = [(name, value) for name, value in request.headers
                if name in ("From", "To", "Message-ID", "Conversation-ID")]

        def answer(response: Response) -> wire.Response:
            code = mapping.prim_code(response, "SEND")
            self.counters[f"send_{code}"] += 1
            return wire.response_to(request, code, echo)

        return self._dispatch(message, strength).addCallback(answer)

    def _pair(self, watcher: CPIMURI, target: CPIMURI) -> tuple[str, str]:
        return (str(watcher.as_pres()).lower(), str(target.as_pres()).lower())

    @staticmethod
    def legacy_session(session: Session) -> bool:
        """Whether a user agent speaks the -01/-02 presence protocol (``PP/1.0``, ``PRIM-PR/1.0``),
        whose SUBSCRIBE and FETCH answer ``200`` with the current presence in the body."""
        return session.role == "client" and (session.service_version or "").split("/")[0] in ("PP", "PRIM-PR")

    def _on_subscribe(self, session: Session, request: wire.Request, strength: str) -> defer.Deferred:
        op = mapping.subscribe_from_request(request, origin=self.name)
        if session.role == "client":
            op = attrs.evolve(op, watcher_instance=session.ua_id)
        pair = self._pair(op.watcher, op.target)
        absorbed: Optional[defer.Deferred] = None
        if self.legacy_session(session):
            # -01 §11.1.1 / §11.1.3: the presence comes in the 200 itself; the first notify the
            # bus sends after the response (RFC 3859) is taken into the answer instead of a NOTIFY.
            absorbed = self._absorb[op.subscript_id] = defer.Deferred()

        def legacy_answer(response: Response) -> Any:
            assert absorbed is not None
            if not response.ok:
                self._absorb.pop(op.subscript_id, None)
                return answer(response)
            absorbed.addTimeout(self.settings.request_timeout or 30, self.reactor)

            def with_presence(presence: Any) -> wire.Response:
                self._absorb.pop(op.subscript_id, None)
                reply = answer(response)
                if isinstance(presence, Content) and presence.body:
                    # -01 §15: the legacy user agent gets the application/presence form
                    content_type, body = legacy_content(presence.content_type, presence.body)
                    return wire.response_to(request, reply.code, list(reply.headers) + [
                        ("MIME-Version", "1.0"), ("Content-Type", content_type)], body)
                return reply

            return absorbed.addBoth(with_presence)

        def answer(response: Response) -> wire.Response:
            code = mapping.subscribe_code(op, response)
            if response.ok and op.duration > 0:
                self._save_subscription_id(pair, op.subscript_id, response.duration or op.duration)
            elif response.ok and self._subscription_ids.get(pair) == op.subscript_id:
                self._save_subscription_id(pair, None)
            headers = mapping.subscribe_response_headers(op, response) if response.ok else [
                ("From", str(op.watcher)), ("To", str(op.target))]
            if request.method == "FETCH":
                headers = [h for h in headers if h[0] in ("From", "To")]
            return wire.response_to(request, code, headers)

        return self._dispatch(op, strength).addCallback(legacy_answer if absorbed is not None else answer)

    def _on_fetch(self, session: Session, request: wire.Request, strength: str) -> defer.Deferred:
        return self._on_subscribe(session, request, strength)

    def _on_unsubscribe(self, session: Session, request: wire.Request, strength: str) -> Any:
        watcher = mapping.prim_address(request.header("From"), "pres", "From")
        target = mapping.prim_address(request.header("To"), "pres", "To")
        known = self._subscription_ids.get(self._pair(watcher, target))
        echo = [("From", request.header("From") or ""), ("To", request.header("To") or "")]
        if known is None:
            return wire.response_to(request, 404, echo)
        op = mapping.subscribe_from_request(request, origin=self.name, known_id=known)

        def answer(response: Response) -> wire.Response:
            self._save_subscription_id(self._pair(watcher, target), None)
            return wire.response_to(request, 200 if response.ok else mapping.prim_code(response, "UNSUBSCRIBE"), echo)

        return self._dispatch(op, strength).addCallback(answer)

    def _on_notify(self, session: Session, request: wire.Request, strength: str) -> defer.Deferred:
        op = mapping.notify_from_request(request, origin=self.name)
        echo = [("From", request.header("From") or ""), ("To", request.header("To") or "")]

        def answer(response: Response) -> wire.Response:
            if response.ok:
                return wire.response_to(request, 200, echo)
            if response.condition is Condition.BAD_REQUEST:
                return wire.response_to(request, 400, echo)
            return wire.response_to(request, 403, echo)  # server-00 §7.1.3: no such watcher

        return self._dispatch(op, strength).addCallback(answer)

    def _on_cancelsubscription(self, session: Session, request: wire.Request, strength: str) -> None:
        target = mapping.prim_address(request.header("From"), "pres", "From")
        watcher = mapping.prim_address(request.header("To"), "pres", "To")
        known = self._subscription_ids.get(self._pair(watcher, target))
        if known is not None:
            self._save_subscription_id(self._pair(watcher, target), None)
            op = Notify(watcher, target, None, known, state=SubscriptionState.TERMINATED, expires=0,
                        origin=self.name)
            self._dispatch(op, strength)
        return None  # no response (-01 §11.1.4)

    # -- client-to-server control commands

    def _principal_uri(self, session: Session) -> CPIMURI:
        assert session.principal is not None
        return pres_uri(*session.principal)

    def _on_listen(self, session: Session, request: wire.Request, strength: str) -> wire.Response:
        session.listening = True
        return wire.response_to(request, 200)

    def _on_silence(self, session: Session, request: wire.Request, strength: str) -> wire.Response:
        if not session.listening:
            return wire.response_to(request, 408, phrase="Inbox Is Closed (this user agent was not listening)")
        session.listening = False
        return wire.response_to(request, 200)

    def _on_setacl(self, session: Session, request: wire.Request, strength: str) -> wire.Response:
        try:
            parsed = acl.parse_acl(request.body)
        except acl.ParseError as error:
            return wire.response_to(request, 400, phrase=f"Bad Request ({error.reason})")
        assert session.principal is not None
        self._acls[session.principal] = parsed
        self._persist(pstate.SCOPE_ACL, pstate.principal_key(session.principal), request.body)
        return wire.response_to(request, 200)

    def _on_getacl(self, session: Session, request: wire.Request, strength: str) -> wire.Response:
        assert session.principal is not None
        current = self._acls.get(session.principal, acl.AccessList({acl.EVERYBODY: acl.PRESENTITY_OPERATIONS | acl.INBOX_OPERATIONS}))
        return wire.response_to(request, 200, [("Content-Type", "text/xml")], current.to_xml())

    def _on_setclasstable(self, session: Session, request: wire.Request, strength: str) -> Any:
        try:
            table = acl.parse_class_table(request.body)
        except acl.ParseError as error:
            return wire.response_to(request, 400, phrase=f"Bad Request ({error.reason})")
        assert session.principal is not None
        self._class_tables[session.principal] = table
        self._persist(pstate.SCOPE_CLASS_TABLE, pstate.principal_key(session.principal), request.body)
        self._publish_public(session.principal, session)
        return wire.response_to(request, 200)

    def _on_getclasstable(self, session: Session, request: wire.Request, strength: str) -> wire.Response:
        assert session.principal is not None
        table = self._class_tables.get(session.principal, acl.ClassTable())
        return wire.response_to(request, 200, [("Content-Type", "text/xml")], table.to_xml())

    def _on_startwatchernotify(self, session: Session, request: wire.Request, strength: str) -> defer.Deferred:
        session.watcher_notify = True
        from lxml import etree

        def answer(records: list) -> wire.Response:
            root = etree.Element("SUBSCRIBERS")
            for record in records:
                etree.SubElement(root, "subscriber").text = str(record.watcher)
            return wire.response_to(request, 200, [("Content-Type", "text/xml")],
                                    etree.tostring(root, xml_declaration=True, encoding="UTF-8"))

        return defer.maybeDeferred(self.bus.presence.subscriptions_of, self._principal_uri(session)).addCallback(answer)

    def _on_stopwatchernotify(self, session: Session, request: wire.Request, strength: str) -> wire.Response:
        session.watcher_notify = False
        return wire.response_to(request, 200)

    def _acl_allows(self, principal: tuple[str, str], requester: CPIMURI, operation: str) -> bool:
        table = self._acls.get(principal)
        if table is None:
            return True  # no ACL set: the gateway's policy decides alone
        return table.allows(requester.address, operation)

    def _on_publish(self, session: Session, request: wire.Request, strength: str) -> wire.Response:
        assert session.principal is not None
        tuple_id = request.header("Tuple-ID")
        if not tuple_id:
            return wire.response_to(request, 400, phrase="Bad Request (Tuple-ID is missing)")
        pi_type = (request.header("PI-Type") or "permanent").lower()
        if pi_type not in ("leased", "permanent", "renew", "revert"):
            return wire.response_to(request, 400, phrase="Bad Request (PI-Type)")
        classes = acl.parse_classes(request.header("Class"))
        tuples = self._tuples.setdefault(session.principal, {})
        state = tuples.get(tuple_id)
        notify = True
        if pi_type in ("renew", "revert"):
            if state is None or state.leased is None:
                return wire.response_to(request, 403, phrase="Resource Not Found (no lease on this tuple)")
            if pi_type == "renew":
                duration = int(request.header("Duration") or "0")
                self._arm_lease(session.principal, tuple_id, state, duration)
                notify = False  # -01 §11.2: renewals do not notify
            else:
                self._drop_lease(session.principal, tuple_id, state)
        else:
            content = mapping.presence_content(request.header("Content-Type") or "", request.body,
                                               entity=self._principal_uri(session)) if request.body else None
            if content is None:
                return wire.response_to(request, 400, phrase="Bad Request (PUBLISH needs a presence body)")
            if state is None:
                state = tuples[tuple_id] = TupleState()
            if pi_type == "leased":
                duration = int(request.header("Duration") or "0")
                if duration <= 0:
                    return wire.response_to(request, 400, phrase="Bad Request (a leased value needs a Duration)")
                state.leased = (content, classes)
                self._arm_lease(session.principal, tuple_id, state, duration)
            else:
                state.permanent = (content, classes)
                notify = state.leased is None  # a permanent value under a lease is not shown yet
        self._save_tuple(session.principal, tuple_id)
        if notify:
            self._publish_public(session.principal, session)
        return wire.response_to(request, 200, [("Tuple-ID", tuple_id)])

    def _on_remove(self, session: Session, request: wire.Request, strength: str) -> wire.Response:
        assert session.principal is not None
        tuple_id = request.header("Tuple-ID") or ""
        tuples = self._tuples.get(session.principal, {})
        state = tuples.pop(tuple_id, None)
        if state is None:
            return wire.response_to(request, 403, phrase="Resource Not Found (no such tuple)")
        if state.lease_timer is not None and state.lease_timer.active():
            state.lease_timer.cancel()
        self._save_tuple(session.principal, tuple_id)
        self._publish_public(session.principal, session)
        return wire.response_to(request, 200)

    def _arm_lease(self, principal: tuple[str, str], tuple_id: str, state: TupleState, duration: float,
                   *, save: bool = True) -> None:
        if state.lease_timer is not None and state.lease_timer.active():
            state.lease_timer.cancel()
        duration = max(duration, 0)
        state.lease_until = self.reactor.seconds() + duration
        state.lease_timer = self.reactor.callLater(duration, self._lease_expired, principal, tuple_id)
        if save:
            self._save_tuple(principal, tuple_id)

    def _drop_lease(self, principal: tuple[str, str], tuple_id: str, state: TupleState) -> None:
        if state.lease_timer is not None and state.lease_timer.active():
            state.lease_timer.cancel()
        state.leased = None
        state.lease_timer = None
        state.lease_until = None
        if state.permanent is None:
            self._tuples.get(principal, {}).pop(tuple_id, None)
        self._save_tuple(principal, tuple_id)

    def _lease_expired(self, principal: tuple[str, str], tuple_id: str) -> None:
        state = self._tuples.get(principal, {}).get(tuple_id)
        if state is None:
            return
        if getattr(self.bus, "cluster", None) is not None and self._store_values() is not None:
            # Several gateway nodes: another node may have renewed or replaced this tuple since this
            # node last saw it; decide on the shared store's state.
            state.lease_timer = None
            d = self._cluster_lease_expired(principal, tuple_id)
            self._writes.add(d)
            d.addBoth(lambda result: (self._writes.discard(d), result)[1])
            return
        state.lease_timer = None
        self._drop_lease(principal, tuple_id, state)
        log.info("PRIM lease of tuple {tuple} of {who} expired", tuple=tuple_id, who="@".join(principal))
        self._publish_public(principal, None)

    @defer.inlineCallbacks
    def _cluster_lease_expired(self, principal: tuple[str, str], tuple_id: str):  # type: ignore[no-untyped-def]
        """A lease of ``principal``'s tuple ran out on this node's timer: reload the principal's
        tuples from the shared store (re-arming the leases as stored), and publish the principal's
        presence if that tuple is no longer leased there (every node doing so publishes the same
        document: the presence service passes on only a change)."""
        now = self.reactor.seconds()
        try:
            values = yield self._store_values().get_values(pstate.SCOPE_TUPLE, now)
        except Exception as error:  # noqa: BLE001 - the store is down: this node's own view decides
            log.warn("PRIM: shared tuples unreadable ({error}); expiring {tuple} locally", error=error,
                     tuple=tuple_id)
            state = self._tuples.get(principal, {}).get(tuple_id)
            if state is not None:
                self._drop_lease(principal, tuple_id, state)
                self._publish_public(principal, None)
            return None
        for state in self._tuples.get(principal, {}).values():
            if state.lease_timer is not None and state.lease_timer.active():
                state.lease_timer.cancel()
        reloaded: dict[str, TupleState] = {}
        for key, value in values.items():
            try:
                owner, each = pstate.split_tuple_key(key)
                if owner != principal:
                    continue
                stored = pstate.decode_tuple(value)
            except Exception:  # noqa: BLE001 - a damaged row: skipped, as restore() does
                continue
            state = TupleState(stored.permanent, stored.leased, None, stored.lease_until)
            reloaded[each] = state
            if state.leased is not None and stored.lease_until is not None and stored.lease_until > now:
                self._arm_lease(principal, each, state, stored.lease_until - now, save=False)
                state.lease_until = stored.lease_until
        if reloaded:
            self._tuples[principal] = reloaded
        else:
            self._tuples.pop(principal, None)
        current = reloaded.get(tuple_id)
        if current is not None and current.leased is not None and (current.lease_until or 0) > now:
            return None  # renewed elsewhere: nothing changed
        if current is not None and current.leased is not None:
            self._drop_lease(principal, tuple_id, current)
        log.info("PRIM lease of tuple {tuple} of {who} expired", tuple=tuple_id, who="@".join(principal))
        self._publish_public(principal, None)
        return None

    def _document_for(self, principal: tuple[str, str], watcher: Optional[str]) -> Optional[Content]:
        """The presentity's document as ``watcher`` may see it (``None``: the public part).

        One visible tuple whose document is signed (``multipart/signed``) is
        passed on octet for octet (RFC 3859 §3.1: a signature covers one
        instance's document); a signature cannot cover a composition, so
        several tuples compose the signed ones' PIDF without the signature.
        """
        table = self._class_tables.get(principal, acl.ClassTable())
        public_class = table.class_of("nobody@invalid")
        documents = []
        for state in self._tuples.get(principal, {}).values():
            current = state.current
            if current is None:
                continue
            content, classes = current
            if watcher is None:
                visible = not classes or public_class in classes
            else:
                visible = table.visible(watcher, classes)
            if visible:
                documents.append(content)
        if not documents:
            return None
        if len(documents) == 1 and is_signed(documents[0].media_type):
            return documents[0]
        bodies = [inner_pidf(d.body, d.parameters) if is_signed(d.media_type) else d.body for d in documents]
        return Content(MEDIA_PIDF, compose_tuples(str(pres_uri(*principal)), bodies))

    def _publish_public(self, principal: tuple[str, str], session: Optional[Session]) -> None:
        document = self._document_for(principal, None)
        presentity = pres_uri(*principal)
        if document is None:
            op = Publish(presentity, Content(MEDIA_PIDF, b""), origin=self.name, instance=self.name, expires=0)
        else:
            op = Publish(presentity, document, origin=self.name, instance=self.name)
        d = self.bus.dispatch(op)
        if not d.called:  # stopService (flush) waits for it before the store closes
            self._writes.add(d)
            d.addBoth(lambda result: (self._writes.discard(d), result)[1])

    # ------------------------------------------------------------------ deliver (bus -> PRIM)

    def deliver(self, operation: Any) -> defer.Deferred:
        if isinstance(operation, Message):
            return self._deliver_message(operation)
        if isinstance(operation, Subscribe):
            return self._deliver_subscribe(operation)
        if isinstance(operation, Notify):
            return self._deliver_notify(operation)
        return defer.succeed(failure(operation, Condition.UNSUPPORTED,
                                     f"the PRIM adapter does not take {type(operation).__name__}"))

    def _astrength(self, op: Any) -> Optional[str]:
        """The AStrength to relay ``op`` with (server-00 §6.1.8), ``None`` for ``none`` (the header's absence).

        For a PRIM request: the weaker of its link's and its own ``AStrength``.  For an operation
        from another network: ``astrength_by_origin[op.origin]`` (how strongly that network
        authenticated its user, which only the operator knows), else ``none``."""
        strength = self._strengths.get(op.trans_id)
        if strength is None and getattr(op, "origin", "") != self.name:
            strength = self.settings.astrength_by_origin.get(getattr(op, "origin", ""))
        return strength if strength and strength != "none" else None

    def _send_headers(self, message: Message) -> tuple[list[tuple[str, str]], bytes]:
        original = self._originals.get(message.trans_id)
        if original is not None:
            headers = [(n, v) for n, v in original[0] if n not in (mapping.MAX_FORWARDS_HEADER, "AStrength")]
            strength = self._astrength(message)
            if strength:
                headers.append(("AStrength", strength))
            headers.append((mapping.MAX_FORWARDS_HEADER, str(message.max_forwards)))
            return headers, original[1]
        return mapping.message_to_send(message, now=self.reactor.seconds(), astrength=self._astrength(message))

    @defer.inlineCallbacks
    def _deliver_message(self, message: Message):  # type: ignore[no-untyped-def]
        domain = message.destination.domain_key
        headers, body = self._send_headers(message)
        if self.is_local_domain(domain):
            principal = (message.destination.user, domain)
            if not self._acl_allows(principal, message.source, "send"):
                return failure(message, Condition.FORBIDDEN, "the inbox's ACL refuses this sender", 402)
            listeners = [s for s in self.ua_sessions(principal) if s.listening and s.protocol is not None]
            if not listeners:
                return failure(message, Condition.UNAVAILABLE, f"inbox {message.destination} is closed", 408)
            results = yield defer.DeferredList(
                [s.protocol.send_request("SEND", headers, body) for s in listeners], consumeErrors=True)
            codes = [result.code for ok, result in results if ok]
            code = _most_positive(codes)
            status, condition = mapping.cpim_status(code)
            return Response(message.trans_id, status, f"PRIM {code}", condition, None, code)
        response = yield self._peer_request(domain, "im", "SEND", headers, body, message)
        return response

    @defer.inlineCallbacks
    def _deliver_subscribe(self, op: Subscribe):  # type: ignore[no-untyped-def]
        domain = op.target.domain_key
        if self.is_local_domain(domain):
            principal = (op.target.user, domain)
            operation = "subscribe" if op.duration > 0 else "fetch"
            if not self._acl_allows(principal, op.watcher, operation):
                return failure(op, Condition.FORBIDDEN, f"the presentity's ACL refuses {operation}", 402)
            for session in self.ua_sessions(principal):
                if session.watcher_notify and session.protocol is not None:
                    session.protocol.send_request(
                        "WATCHERNOTIFY",
                        [("From", str(op.watcher.as_pres())), ("To", str(op.target.as_pres())),
                         ("Watcher-Type", "subscribe" if op.duration > 0 else "fetch")],
                        expect_response=False)
            return success(op, duration=op.duration)
        method, headers = mapping.subscribe_to_request(op, now=self.reactor.seconds(), astrength=self._astrength(op))
        pair = self._pair(op.watcher, op.target)
        response = yield self._peer_request(domain, "presence", method, headers, b"", op)
        if response.ok and op.duration > 0:
            self._save_subscription_id(pair, op.subscript_id, response.duration or op.duration)
        elif op.duration == 0 and self._subscription_ids.get(pair) == op.subscript_id:
            self._save_subscription_id(pair, None)
        return response

    @defer.inlineCallbacks
    def _deliver_notify(self, op: Notify):  # type: ignore[no-untyped-def]
        domain = op.watcher.domain_key
        terminated = op.state is SubscriptionState.TERMINATED
        if op.presence is None and not terminated:
            absorbed = self._absorb.pop(op.subscript_id, None)
            if absorbed is not None and not absorbed.called:
                absorbed.callback(None)
            return success(op, "nothing to show yet (PRIM has no pending state)")
        target_principal = (op.target.user, op.target.domain_key)
        if op.presence is not None and target_principal in self._tuples:
            document = self._document_for(target_principal, op.watcher.address)
            if document is not None:
                op = attrs.evolve(op, presence=document)
        absorbed = self._absorb.pop(op.subscript_id, None)
        if absorbed is not None and not absorbed.called:
            absorbed.callback(op.presence)  # goes into a -01 SUBSCRIBE/FETCH 200 instead
            return success(op)
        headers, body = mapping.notify_to_request(op, now=self.reactor.seconds(), astrength=self._astrength(op))
        if self.is_local_domain(domain):
            sessions = [s for s in self.ua_sessions((op.watcher.user, domain)) if s.protocol is not None]
            if not sessions:
                return failure(op, Condition.UNAVAILABLE, f"no user agent of {op.watcher} is logged in", 403)
            sends = []
            for session in sessions:
                legacy = (session.service_version or "").split("/")[0] in ("PP", "PRIM-PR")
                if body and legacy:
                    # -01 §15: PIDF becomes the application/presence form (a signed one goes as is)
                    content_type, legacy_body = legacy_content(op.presence.content_type, body)
                    legacy_headers = [h for h in headers if h[0] not in ("Duration", "Content-Type")]
                    sends.append(session.protocol.send_request("NOTIFY", legacy_headers + [
                        ("MIME-Version", "1.0"), ("Content-Type", content_type)], legacy_body))
                elif body:
                    sends.append(session.protocol.send_request("NOTIFY", headers, body))
                if terminated and legacy:
                    session.protocol.send_request("CANCELSUBSCRIPTION", [("From", str(op.target.as_pres())),
                                                                          ("To", str(op.watcher.as_pres()))],
                                                  expect_response=False)
                elif terminated and not body:
                    sends.append(session.protocol.send_request("NOTIFY", headers))
            results = yield defer.DeferredList(sends, consumeErrors=True)
            codes = [result.code for ok, result in results if ok]
            if not sends or any(code == 200 for code in codes):
                return success(op)
            code = codes[0] if codes else 504
            status, condition = mapping.cpim_status(code)
            return Response(op.trans_id, status, f"PRIM {code}", condition, None, code)
        response = yield self._peer_request(domain, "presence", "NOTIFY", headers, body, op)
        return response

    # ------------------------------------------------------------------ peers (outbound S-S)

    @defer.inlineCallbacks
    def _peer_request(self, domain: str, service: str, method: str, headers: list, body: bytes, op: Any):  # type: ignore[no-untyped-def]
        """Send ``method`` to the server of ``domain``; the hub Response (never raises)."""
        for attempt in range(3):
            try:
                protocol = yield self.peer_connection(domain, service)
                response = yield protocol.send_request(method, headers, body)
            except PrimConnectionLost as error:
                if attempt == 0:
                    continue  # a cached connection went away: unprocessed, safe to retry once
                return failure(op, Condition.NO_ROUTE, f"PRIM peer {domain}: {error}")
            except PrimTimeout as error:
                return failure(op, Condition.TIMEOUT, f"PRIM peer {domain}: {error}", 504)
            except (sasl.SASLError, PeerError) as error:
                return failure(op, Condition.NO_ROUTE, f"PRIM peer {domain}: {error}", 502)
            except Exception as error:  # noqa: BLE001 - TLS or TCP failure
                log.info("PRIM peer {domain} unreachable: {error}", domain=domain, error=error)
                return failure(op, Condition.NO_ROUTE, f"PRIM peer {domain} unreachable: {error}", 502)
            if response.code == 300 and attempt < 2:
                target = (response.header("Redirect") or "").split()
                if len(target) == 2 and target[1].isdigit():
                    self._redirects[domain] = (target[0], int(target[1]))
                    log.info("PRIM peer {domain} redirects to {target}", domain=domain, target=target)
                    continue
            return mapping.cpim_response(op.trans_id, response)
        return failure(op, Condition.NO_ROUTE, f"PRIM peer {domain}: too many redirects", 300)

    @defer.inlineCallbacks
    def next_hops(self, domain: str, service: str):  # type: ignore[no-untyped-def]
        """The (host, port) candidates for ``domain`` (peers table, redirect, SRV, A)."""
        if domain in self._redirects:
            return [self._redirects[domain]]
        peer = self.settings.peers.get(domain)
        if peer is not None and peer.host:
            return [(peer.host, peer.port or self.settings.default_port)]
        if not self.settings.srv_lookup:
            return [(domain, (peer.port if peer else 0) or self.settings.default_port)]
        hops = yield discover(self._resolver(), domain, service, self.settings.default_port)
        return hops

    def _resolver(self) -> Any:
        if self.resolver is None:
            from twisted.names import client

            self.resolver = client.createResolver()
        return self.resolver

    def peer_connection(self, domain: str, service: str = "im") -> defer.Deferred:
        """``Deferred[PrimProtocol]``: a logged-in connection to the server of ``domain``.

        Connections are shared per (domain, host, port): presence and IM of one
        domain at the same address use one connection (server-00 §5.2)."""
        return self._connect_peer(domain, service)

    @defer.inlineCallbacks
    def _connect_peer(self, domain: str, service: str):  # type: ignore[no-untyped-def]
        hops = yield self.next_hops(domain, service)
        if not hops:
            raise PeerError(f"no server found for {domain}")
        last: Optional[BaseException] = None
        for host, port in hops[:3]:
            key = (domain, host, port)
            ready = self._peer_ready.get(key)
            if ready is not None and not ready.closed:
                return ready
            waiters = self._peer_pending.get(key)
            try:
                if waiters is not None:
                    waiter: defer.Deferred = defer.Deferred()
                    waiters.append(waiter)
                    protocol = yield waiter
                    return protocol
                self._peer_pending[key] = []
                try:
                    protocol = yield self._open_peer(domain, host, port)
                except BaseException as error:
                    for waiter in self._peer_pending.pop(key, []):
                        waiter.errback(error)
                    raise
                self._peer_ready[key] = protocol
                for waiter in self._peer_pending.pop(key, []):
                    waiter.callback(protocol)
                return protocol
            except Exception as error:  # noqa: BLE001 - try the next hop
                last = error
        assert last is not None
        raise last

    @defer.inlineCallbacks
    def _open_peer(self, domain: str, host: str, port: int):  # type: ignore[no-untyped-def]
        peer = self.settings.peers.get(domain, PeerSettings(domain))
        session = Session(self, "outbound", peer_domain=domain)
        protocol = self.make_protocol(session)
        bind = (self.settings.outbound_address, 0) if self.settings.outbound_address else None
        endpoint = HostnameEndpoint(self.reactor, host, port, timeout=self.settings.request_timeout or 30,
                                    bindAddress=bind)
        yield connectProtocol(endpoint, protocol)
        try:
            material = self._load_tls()
            use_tls = peer.tls and (material is not None or bool(self.settings.tls_ca))
            if use_tls:
                answer = yield protocol.send_request("STARTTLS")
                if answer.code != 200:
                    raise PeerError(f"{domain} refused STARTTLS: {answer.code} {answer.reason}")
                handshake = protocol.start_tls(self.client_tls_options(domain))
                handshake.addTimeout(self.settings.request_timeout or 30, self.reactor)
                yield handshake
                session.link_strength = "strong"
            mechanisms = []
            if use_tls and material is not None and "EXTERNAL" in self.settings.sasl_mechanisms:
                mechanisms.append("EXTERNAL")
            if peer.secret is not None:
                mechanisms += [m for m in ("CRAM-MD5", "PLAIN") if m in self.settings.sasl_mechanisms
                               and (m != "PLAIN" or use_tls)]
            if mechanisms:
                local = self.settings.local_domains[0]
                mechanism = yield login_to_peer(protocol, domain=local, mechanisms=mechanisms, secret=peer.secret)
                if not use_tls:
                    session.link_strength = "weak"
                elif mechanism != "EXTERNAL":
                    session.link_strength = "medium"
            log.info("PRIM connection to {domain} at {host}:{port} ready", domain=domain, host=host, port=port)
        except BaseException:
            protocol.close()
            raise
        return protocol


def wire_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address literal."""
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class PeerError(Exception):
    """A peer server that cannot be used (refused STARTTLS or LOGIN, no address)."""


SRV_NAMES = {
    "im": ("_prim-im._tcp", "_im._tcp"),
    "presence": ("_prim-pr._tcp", "_presence._tcp"),
}


@defer.inlineCallbacks
def discover(resolver: Any, domain: str, service: str, default_port: int):  # type: ignore[no-untyped-def]
    """server-00 §5.2 / -01 §7.2: SRV ``_prim-im._tcp`` / ``_prim-pr._tcp`` (then the legacy
    ``_im._tcp`` / ``_presence._tcp``) of ``domain``, ordered by RFC 2782; else the A record at
    ``default_port``.  ``Deferred[list[(host, port)]]``."""
    from cpimgw.routing import order_srv, _srv_targets  # type: ignore[attr-defined]

    for prefix in SRV_NAMES.get(service, SRV_NAMES["im"]):
        name = f"{prefix}.{domain}"
        try:
            answers, _auth, _add = yield resolver.lookupService(name)
        except Exception:  # noqa: BLE001 - NXDOMAIN, timeout: next name
            continue
        targets = _srv_targets(answers, name)
        if targets:
            return [(t.target.rstrip("."), t.port) for t in order_srv(targets)]
    try:
        yield resolver.getHostByName(domain)
    except Exception:  # noqa: BLE001
        return []
    return [(domain, default_port)]
