"""The SIP/SIMPLE adapter: an ``IAdapter`` service on our own SIP stack.

What it does with each SIP request it receives (RFC 3261 §8.2 UAS rules, the
stack's prechecks first):

- MESSAGE (RFC 3428): mapped to a CPIM ``Message`` (RFC 7572), dispatched on
  the bus; the bus's answer becomes 200 (success), 202 (indeterminant) or
  the RFC 7247 §7 status (failure).  ``sips:`` targets are refused (RFC 7247
  §8: the far side cannot promise TLS on every hop).  Bodies other than
  text/*, message/cpim and multipart/signed (S/MIME, RFC 3862 §5.2) get 415
  with Accept.
- SUBSCRIBE ``Event: presence`` (RFC 6665, RFC 3856): we are the notifier for
  users behind other adapters; initial/refresh/unsubscribe map to
  ``Subscribe`` with the dialog's SubscriptID; the bus's ``Notify`` ops come
  back through :meth:`deliver` and leave as in-dialog NOTIFYs.  Other event
  packages get 489 with Allow-Events; an Expires below ``min_expires`` 423.
- NOTIFY: for subscriptions the gateway holds towards SIP users (we are the
  subscriber): mapped to ``Notify`` and dispatched; 481 when unknown.
- PUBLISH (RFC 3903): we are the ESC for the SIP users of our ``domains``;
  state in :class:`~.subscription.PublicationStore`, each change a ``Publish``.
  The body is PIDF or a signed PIDF (``multipart/signed`` whose first part is
  the publisher's PIDF, RFC 3863 §4), relayed octet for octet; others 415.
- OPTIONS: 200 with Allow/Accept/Allow-Events.  INVITE: 488 (no sessions;
  Warning says page mode only).  BYE: 481.  REGISTER: 405 with Allow.
  Anything else: 501 with Allow.

And what it does with what the bus hands it (:meth:`deliver`): a ``Message``
becomes a MESSAGE (1300-octet page-mode guard: over it, TCP is used if it
runs, else ``failure policy-violation``); a 415 whose Accept leaves out
message/cpim is retried once, as a new transaction, with the native form
(the inner text/plain or text/html, as ``message_mode = "native"`` sends it;
RFC 3261 §8.1.3.5/§21.4.16, RFC 3428 §7), and the target is remembered
(bounded LRU with a TTL, :class:`NativePreferences`) so later messages go
native at once; a signed body, or an inner type the Accept leaves out, is
not retried: ``failure unsupported-media`` naming the accepted types; a ``Subscribe`` becomes a SUBSCRIBE
towards the SIP user (refreshed before expiry, cancelled with Expires: 0, a
duration-0 fetch with a one-shot SUBSCRIBE); a ``Notify`` becomes a NOTIFY in
the SIP watcher's dialog (a signed document as it is when the SUBSCRIBE's
Accept listed ``multipart/signed``, else the PIDF it signs, RFC 3856 §6.7),
at most one per ``notify_min_interval`` (5 s, RFC
3856 §6.12) per subscription: changes in between are coalesced on the
reactor clock and the latest state is sent when the interval is over (the
NOTIFY that answers a SUBSCRIBE and a terminating one go at once).  Digest:
requests whose From domain is in ``auth_domains`` are challenged; our
requests answer 401/407 with the configured credentials (the retry takes the
next CSeq of its dialog, RFC 3261 §22.2/§12.2.1.1).  Requests go to the
RFC 3263 targets in order: a timeout, a transport failure or a 503 moves on
to the next target (§4.3).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Mapping

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from cpimgw.cpim.errors import ConfigError, ParseError
from cpimgw.cpim.operations import (
    MEDIA_CPIM,
    Condition,
    Message,
    Notify,
    Publish,
    Response as CPIMResponse,
    Status,
    Subscribe,
    SubscriptionState,
    TerminationReason,
    failure,
    indeterminant,
    success,
)
from cpimgw.cpim.signed import is_signed
from cpimgw.interfaces import IAdapter, IMessaging, IPresence
from cpimgw.adapters.sip import mapping
from cpimgw.adapters.sip.digest import Challenger, Credentials, Responder
from cpimgw.adapters.sip.resolver import SipResolver, parse_route, target_from_uri
from cpimgw.adapters.sip.stack import SipStack, safe_phrase
from cpimgw.adapters.sip.subscription import (
    Dialog,
    OutgoingSubscription,
    PublicationStore,
    PublishRejected,
    WatcherSubscription,
    accepts_signed,
    dialog_as_uas,
    new_tag,
)
from cpimgw.adapters.sip.transaction import ServerTransaction
from cpimgw.adapters.sip.transport import Source, Target
from cpimgw.adapters.sip.wire import Request, Response, SipParseError, make_response, parse_name_addr, random_hex

log = Logger()

ALLOW = "MESSAGE, SUBSCRIBE, NOTIFY, PUBLISH, OPTIONS, CANCEL, ACK, BYE, INVITE"
ACCEPT_MESSAGE = "text/plain, text/html, message/cpim, multipart/signed"
# multipart/signed: an S/MIME-signed Message/CPIM object (RFC 3428 §11.3, RFC 3862 §5.2), carried opaque.
TEXT_TYPES = ("text/plain", "text/html", "message/cpim", "multipart/signed")


def defaults() -> dict[str, Any]:
    """The embedded default settings (loopback, UDP and TCP on 5060)."""
    return {
        "domains": ["sip.localhost"],
        "interface": "127.0.0.1",
        "local_host": "",
        "port": 5060,
        "transports": ["udp", "tcp"],
        "tls_port": 5061,
        "tls_certificate": "",
        "tls_key": "",
        "tls_ca": "",
        "outbound_proxy": "",
        "routes": {},
        "use_dns": True,
        "message_mode": "cpim",
        "page_mode_limit": 1300,
        "max_message_size": 65536,
        "max_headers": 256,
        "t1": 0.5,
        "subscribe_expires": 3600,
        "min_expires": 60,
        "publish_max_expires": 3600,
        "auth_realm": "",
        "auth_domains": [],
        "auth_users": {},
        "auth_algorithms": ["SHA-256", "MD5"],
        "credentials": {},
        "user_agent": "cpimgw",
        "idle_timeout": 180,
        "max_connections": 1024,
        "max_connections_per_host": 64,
        "notify_min_interval": 5.0,
        "udp_receive_buffer": 1048576,
        "max_request_rate": 200,
        "request_burst": 400,
    }


@attrs.frozen
class SipSettings:
    """Validated settings of the SIP adapter (see :func:`defaults` and conf/cpimgw.toml)."""

    domains: tuple[str, ...]
    interface: str
    local_host: str
    port: int
    transports: tuple[str, ...]
    tls_port: int
    tls_certificate: str
    tls_key: str
    tls_ca: str
    outbound_proxy: Target | None
    routes: Mapping[str, Target]
    use_dns: bool
    message_mode: str
    page_mode_limit: int
    max_message_size: int
    max_headers: int
    t1: float
    subscribe_expires: int
    min_expires: int
    publish_max_expires: int
    auth_realm: str
    auth_domains: tuple[str, ...]
    auth_users: Mapping[str, str]
    auth_algorithms: tuple[str, ...]
    credentials: Mapping[str, Credentials]
    user_agent: str
    idle_timeout: float = 180.0
    max_connections: int = 1024
    max_connections_per_host: int = 64
    notify_min_interval: float = 5.0
    udp_receive_buffer: int = 1048576
    max_request_rate: float = 200.0
    request_burst: float = 400.0

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> "SipSettings":
        merged = {**defaults(), **dict(settings)}
        unknown = set(merged) - set(defaults()) - {"name", "enabled"}
        if unknown:
            raise ConfigError(f"unknown SIP settings: {', '.join(sorted(unknown))}", key="adapters.sip")

        def integer(key: str, low: int, high: int) -> int:
            value = merged[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"must be an integer from {low} to {high}", key=f"adapters.sip.{key}")
            return value

        def strings(key: str) -> tuple[str, ...]:
            value = merged[key]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ConfigError("must be a list of strings", key=f"adapters.sip.{key}")
            return tuple(value)

        transports = tuple(t.upper() for t in strings("transports"))
        bad = [t for t in transports if t not in ("UDP", "TCP", "TLS")]
        if bad or not transports:
            raise ConfigError("must list some of udp, tcp, tls", key="adapters.sip.transports")
        if "TLS" in transports and not (merged["tls_certificate"] and merged["tls_key"]):
            raise ConfigError("tls needs tls_certificate and tls_key", key="adapters.sip.transports")
        if merged["message_mode"] not in mapping.MESSAGE_MODES:
            raise ConfigError("must be 'cpim' or 'native'", key="adapters.sip.message_mode")
        proxy = parse_route(merged["outbound_proxy"]) if merged["outbound_proxy"] else None
        routes = merged["routes"]
        if not isinstance(routes, Mapping):
            raise ConfigError("must be a table of domain = \"sip:host:port\"", key="adapters.sip.routes")
        credentials = {}
        for realm, value in dict(merged["credentials"]).items():
            user, colon, password = str(value).partition(":")
            if not colon:
                raise ConfigError("each value must be 'user:password'", key=f"adapters.sip.credentials.{realm}")
            credentials[realm] = Credentials(user, password)
        t1 = merged["t1"]
        if not isinstance(t1, (int, float)) or not 0.01 <= t1 <= 10:
            raise ConfigError("must be a number of seconds from 0.01 to 10", key="adapters.sip.t1")
        def seconds(key: str, high: float) -> float:
            value = merged[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
                raise ConfigError(f"must be a number of seconds from 0 to {high:g}", key=f"adapters.sip.{key}")
            return float(value)

        def rate(key: str) -> float:
            value = merged[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1_000_000:
                raise ConfigError("must be a number from 0 to 1000000", key=f"adapters.sip.{key}")
            return float(value)

        if merged["auth_domains"] and not (merged["auth_realm"] and merged["auth_users"]):
            raise ConfigError("auth_domains needs auth_realm and auth_users", key="adapters.sip.auth_domains")
        return cls(
            domains=tuple(d.lower() for d in strings("domains")),
            interface=str(merged["interface"]),
            local_host=str(merged["local_host"] or merged["interface"]),
            port=integer("port", 0, 65535),
            transports=transports,
            tls_port=integer("tls_port", 0, 65535),
            tls_certificate=str(merged["tls_certificate"]),
            tls_key=str(merged["tls_key"]),
            tls_ca=str(merged["tls_ca"]),
            outbound_proxy=proxy,
            routes={k.lower(): parse_route(v, f"routes.{k}") for k, v in routes.items()},
            use_dns=bool(merged["use_dns"]),
            message_mode=merged["message_mode"],
            page_mode_limit=integer("page_mode_limit", 0, 2**31 - 1),
            max_message_size=integer("max_message_size", 1024, 16 * 2**20),
            max_headers=integer("max_headers", 16, 10000),
            t1=float(t1),
            subscribe_expires=integer("subscribe_expires", 1, 2**31 - 1),
            min_expires=integer("min_expires", 0, 2**31 - 1),
            publish_max_expires=integer("publish_max_expires", 1, 2**31 - 1),
            auth_realm=str(merged["auth_realm"]),
            auth_domains=tuple(d.lower() for d in strings("auth_domains")),
            auth_users=dict(merged["auth_users"]),
            auth_algorithms=strings("auth_algorithms"),
            credentials=credentials,
            user_agent=str(merged["user_agent"]),
            idle_timeout=seconds("idle_timeout", 86400),
            max_connections=integer("max_connections", 1, 1_000_000),
            max_connections_per_host=integer("max_connections_per_host", 0, 1_000_000),
            notify_min_interval=seconds("notify_min_interval", 3600),
            udp_receive_buffer=integer("udp_receive_buffer", 0, 2**30),
            max_request_rate=rate("max_request_rate"),
            request_burst=rate("request_burst"),
        )


class NativePreferences:
    """Targets that answered 415 to message/cpim and took the native form (bounded LRU with a TTL).

    :param clock: the reactor's ``seconds``.
    :param max_entries: at most this many targets are remembered (the least recently used go first).
    :param ttl: seconds a target is remembered after its last fallback.
    """

    def __init__(self, clock: Callable[[], float], *, max_entries: int = 1024, ttl: float = 3600.0) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("max_entries must be at least 1 and ttl positive")
        self.clock = clock
        self.max_entries = max_entries
        self.ttl = ttl
        self._until: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def wants_native(self, target: str) -> bool:
        until = self._until.get(target)
        if until is None:
            return False
        if until <= self.clock():
            del self._until[target]
            return False
        self._until.move_to_end(target)
        return True

    def remember(self, target: str) -> None:
        self._until[target] = self.clock() + self.ttl
        self._until.move_to_end(target)
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)

    def forget(self, target: str) -> None:
        self._until.pop(target, None)


@implementer(IAdapter, IMessaging, IPresence)
class SipAdapter(Service):
    """The SIP network on the bus."""

    def __init__(self, bus: Any, settings: SipSettings, *, name: str = "sip", reactor: Any = None,
                 dns_resolver: Any = None) -> None:
        self.bus = bus
        self.settings = settings
        self.name = name
        self.domains = settings.domains
        self.reactor = reactor if reactor is not None else bus.reactor
        tls_options = None
        if settings.tls_ca:
            tls_options = self._tls_client_options
        self.stack = SipStack(
            self.reactor, self, local_host=settings.local_host, max_size=settings.max_message_size,
            max_headers=settings.max_headers, t1=settings.t1, user_agent=settings.user_agent,
            tls_client_options=tls_options, idle_timeout=settings.idle_timeout,
            max_connections=settings.max_connections,
            max_connections_per_host=settings.max_connections_per_host,
            max_request_rate=settings.max_request_rate, request_burst=settings.request_burst,
        )
        self.resolver = SipResolver(
            outbound_proxy=settings.outbound_proxy, routes=settings.routes,
            transports=tuple(t for t in settings.transports), dns_resolver=dns_resolver,
            use_dns=settings.use_dns,
        )
        self.responder = Responder(settings.credentials)
        self.challenger = (
            Challenger(settings.auth_realm, settings.auth_users, self.reactor.seconds,
                       algorithms=settings.auth_algorithms)
            if settings.auth_domains else None
        )
        self.publications = PublicationStore(
            self.reactor.seconds, min_expires=settings.min_expires,
            max_expires=settings.publish_max_expires, default_expires=settings.publish_max_expires,
        )
        self.watchers: dict[str, WatcherSubscription] = {}  # SubscriptID -> state
        self.watcher_dialogs: dict[tuple[str, str], str] = {}  # (Call-ID, our tag) -> SubscriptID
        self.outgoing: dict[str, OutgoingSubscription] = {}  # SubscriptID -> state
        self.outgoing_dialogs: dict[tuple[str, str], str] = {}  # (Call-ID, our tag) -> SubscriptID
        self.native_targets = NativePreferences(self.reactor.seconds)  # 415 fallback memory

    # ------------------------------------------------------------ service

    def _tls_client_options(self, name: str) -> Any:
        from twisted.internet import ssl

        with open(self.settings.tls_ca, "rb") as handle:
            authority = ssl.Certificate.loadPEM(handle.read())
        return ssl.optionsForClientTLS(name, trustRoot=authority)

    def check_tls(self) -> str | None:
        """Read the TLS files again; what changed (``None``: nothing); raises when they do not load."""
        holder = getattr(self, "_server_tls", None)
        if holder is None:
            return None
        from twisted.internet import ssl

        from cpimgw.tls_reload import certificate_bytes

        s = self.settings
        with open(s.tls_certificate, "rb") as cert, open(s.tls_key, "rb") as key:
            pem = cert.read() + b"\n" + key.read()
        options = ssl.PrivateCertificate.loadPEM(pem).options()
        options.getContext()  # a key that does not match the certificate fails here
        self._fresh_tls = options
        if certificate_bytes(options) == certificate_bytes(holder.options):
            return None
        return f"certificate {s.tls_certificate} reloaded"

    def reload_tls(self) -> None:
        """Present the certificate :meth:`check_tls` loaded from the next TLS handshake on."""
        fresh, self._fresh_tls = getattr(self, "_fresh_tls", None), None
        if fresh is not None and getattr(self, "_server_tls", None) is not None:
            self._server_tls.replace(fresh)

    def connection_counts(self) -> dict[str, int]:
        """Open SIP streams by transport (``tcp``, ``tls``); UDP has no connections."""
        counts: dict[str, int] = {}
        for connection in self.stack.open_streams:
            kind = str(getattr(connection, "transport_name", "stream")).lower()
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def startService(self) -> None:  # noqa: N802 (Twisted)
        super().startService()
        s = self.settings
        if "UDP" in s.transports:
            self.stack.listen_udp(s.port, s.interface, s.udp_receive_buffer)
        if "TCP" in s.transports:
            self.stack.listen_tcp(s.port if "UDP" not in s.transports or s.port else self.stack.local_ports.get("UDP", 0), s.interface)
        if "TLS" in s.transports:
            from twisted.internet import ssl

            with open(s.tls_certificate, "rb") as cert, open(s.tls_key, "rb") as key:
                pem = cert.read() + b"\n" + key.read()
            options = ssl.PrivateCertificate.loadPEM(pem).options()
            from cpimgw.tls_reload import ReloadableServerTLS

            self._server_tls = ReloadableServerTLS(options)  # SIGHUP renews it (reload_tls)
            self.stack.listen_tls(s.tls_port, s.interface, self._server_tls)
        log.info("SIP adapter {name} listening on {ports} for {domains}", name=self.name,
                 ports=self.stack.local_ports, domains=self.domains)

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted)
        super().stopService()
        for state in self.outgoing.values():
            if state.refresh is not None and state.refresh.active():
                state.refresh.cancel()
        for publication in list(self.publications.by_etag.values()):
            self.publications.remove(publication.etag)
        return self.stack.stop()

    @property
    def listening_addresses(self) -> list[Any]:
        """The ``IAddress`` of every listening transport (logged by the service at start)."""
        return [listener.getHost() for listener in self.stack.listening]

    @property
    def ports(self) -> dict[str, int]:
        """The bound port of each transport (after ``startService``)."""
        return dict(self.stack.local_ports)

    # ------------------------------------------------------------ from SIP

    def request_received(self, request: Request, transaction: ServerTransaction, source: Source) -> None:
        tag = new_tag()
        method = request.method
        if method in ("MESSAGE", "SUBSCRIBE", "PUBLISH") and self.challenger is not None:
            if not self._authorised(request, transaction, tag):
                return
        if method == "MESSAGE":
            self._message_received(request, transaction, tag)
        elif method == "SUBSCRIBE":
            self._subscribe_received(request, transaction, source, tag)
        elif method == "NOTIFY":
            self._notify_received(request, transaction)
        elif method == "PUBLISH":
            self._publish_received(request, transaction, tag)
        elif method == "OPTIONS":
            transaction.respond(make_response(request, 200, "OK", to_tag=tag, headers=(
                ("Allow", ALLOW), ("Accept", ACCEPT_MESSAGE + ", application/pidf+xml"),
                ("Allow-Events", "presence"), ("Contact", self.stack.contact_for(None, source.transport)),
            )))
        elif method == "INVITE":
            transaction.respond(make_response(request, 488, "Not Acceptable Here", to_tag=tag, headers=(
                ("Warning", f'399 {self.settings.local_host} "sessions are not supported; use page-mode MESSAGE"'),
                ("Allow", ALLOW),
            )))
        elif method == "BYE":
            transaction.respond(make_response(request, 481, "Call/Transaction Does Not Exist", to_tag=tag))
        elif method == "REGISTER":
            transaction.respond(make_response(request, 405, "Method Not Allowed", to_tag=tag,
                                              headers=(("Allow", ALLOW),)))
        else:
            transaction.respond(make_response(request, 501, "Not Implemented", to_tag=tag,
                                              headers=(("Allow", ALLOW),)))

    def _authorised(self, request: Request, transaction: ServerTransaction, tag: str) -> bool:
        assert self.challenger is not None
        try:
            domain = mapping.sip_to_cpim(request.from_.uri).uri.domain_key
        except ParseError:
            return True
        if domain not in self.settings.auth_domains:
            return True
        stale = False
        for value in request.get_all("authorization") + request.get_all("proxy-authorization"):
            valid, is_stale, _ = self.challenger.check(value, request.method)
            if valid:
                return True
            stale = stale or is_stale
        headers = tuple(("WWW-Authenticate", c) for c in self.challenger.challenges(stale=stale))
        transaction.respond(make_response(request, 401, "Unauthorized", to_tag=tag, headers=headers))
        return False

    def _reject(self, transaction: ServerTransaction, status: int, phrase: str, tag: str,
                headers: tuple[tuple[str, str], ...] = ()) -> None:
        transaction.respond(make_response(transaction.request, status, safe_phrase(phrase), to_tag=tag, headers=headers))

    def _answer(self, transaction: ServerTransaction, response: CPIMResponse, tag: str,
                headers: tuple[tuple[str, str], ...] = ()) -> None:
        code, phrase = mapping.status_for_response(response)
        self._reject(transaction, code, phrase, tag, headers)

    def _message_received(self, request: Request, transaction: ServerTransaction, tag: str) -> None:
        if request.uri[:5].lower() == "sips:":
            self._reject(transaction, 403, "Forbidden (sips: cannot be relayed off SIP)", tag)
            return
        media = request.media_type or "text/plain"
        if media not in TEXT_TYPES and not media.startswith("text/"):
            self._reject(transaction, 415, "Unsupported Media Type", tag, (("Accept", ACCEPT_MESSAGE),))
            return
        try:
            operation = mapping.message_from_sip(request, origin=self.name, max_size=self.settings.max_message_size)
        except (ParseError, ValueError) as error:
            reason = error.reason if isinstance(error, ParseError) else str(error)
            self._reject(transaction, 400, f"Bad Request ({reason})", tag)
            return
        self.bus.dispatch(operation).addCallback(lambda response: self._answer(transaction, response, tag))

    # ---- presence: SIP watchers (we notify)

    def _subscribe_received(self, request: Request, transaction: ServerTransaction, source: Source, tag: str) -> None:
        event = (request.get("event") or "").split(";")[0].strip().lower()
        if event != "presence":
            self._reject(transaction, 489, "Bad Event", tag, (("Allow-Events", "presence"),))
            return
        accept = [a.split(";")[0].strip().lower() for a in request.get_all("accept")]
        if accept and not {"application/pidf+xml", "application/*", "*/*"} & set(accept):
            self._reject(transaction, 406, "Not Acceptable", tag, (("Accept", "application/pidf+xml"),))
            return
        expires = request.expires
        if expires is not None and 0 < expires < self.settings.min_expires:
            self._reject(transaction, 423, "Interval Too Brief", tag, (("Min-Expires", str(self.settings.min_expires)),))
            return
        to_tag = request.to.tag
        if to_tag is not None:
            subscript_id = self.watcher_dialogs.get((request.call_id, to_tag))
            state = self.watchers.get(subscript_id) if subscript_id else None
            if state is None:
                self._reject(transaction, 481, "Subscription Does Not Exist", tag)
                return
            if not state.dialog.accept_remote_cseq(request.cseq[0]):
                self._reject(transaction, 500, "Server Internal Error (CSeq out of order)", to_tag)
                return
            tag = to_tag
        else:
            subscript_id = mapping.subscript_id_for(request.call_id, request.from_.tag)
            state = None
        try:
            operation = mapping.subscribe_from_sip(
                request, subscript_id=subscript_id, default_expires=self.settings.subscribe_expires, origin=self.name
            )
        except (ParseError, ValueError) as error:
            self._reject(transaction, 400, f"Bad Request ({getattr(error, 'reason', error)})", tag)
            return
        if state is None:
            dialog = dialog_as_uas(request, tag)
            state = WatcherSubscription(dialog, subscript_id, operation.watcher, operation.target,
                                        self.reactor.seconds() + operation.duration, source, accept=tuple(accept))
            self.watchers[subscript_id] = state
            self.watcher_dialogs[(request.call_id, tag)] = subscript_id
        else:
            contacts = request.get_all("contact")
            if contacts:
                state.dialog.remote_target = parse_name_addr(contacts[0]).uri
            if accept:
                state.accept = tuple(accept)

        def answered(response: CPIMResponse) -> None:
            if response.status is Status.FAILURE:
                self._forget_watcher(subscript_id)
                self._answer(transaction, response, tag)
                return
            granted = response.duration if response.duration is not None else operation.duration
            state.expires_at = self.reactor.seconds() + granted
            state.immediate = True  # the NOTIFY that follows goes at once (RFC 6665 §4.2.2)
            self._reject(transaction, 200, "OK", tag, (
                ("Expires", str(granted)), ("Contact", self.stack.contact_for(None, source.transport)),
            ))

        self.bus.dispatch(operation).addCallback(answered)

    def _forget_watcher(self, subscript_id: str) -> None:
        state = self.watchers.pop(subscript_id, None)
        if state is not None:
            self.watcher_dialogs.pop((state.dialog.call_id, state.dialog.local_tag), None)
            if state.pending_call is not None and state.pending_call.active():
                state.pending_call.cancel()
            state.pending = state.pending_call = None

    def _send_notify(self, notify: Notify) -> Deferred[CPIMResponse]:
        """A Notify for a SIP watcher, within the RFC 3856 §6.12 rate limit.

        Within ``notify_min_interval`` of the last NOTIFY, the Notify waits
        (answered ``indeterminant`` at once); a later one replaces it (the
        latest state wins) and one NOTIFY leaves when the interval is over.
        """
        state = self.watchers.get(notify.subscript_id)
        if state is None:
            return succeed(failure(notify, Condition.NO_SUBSCRIPTION, "no SIP dialog for this subscription"))
        now = self.reactor.seconds()
        interval = self.settings.notify_min_interval
        urgent = state.immediate or notify.state is SubscriptionState.TERMINATED or not interval
        if not urgent and state.last_notify is not None and now < state.last_notify + interval:
            if state.pending is not None:
                self.stack.count("notifies_coalesced")
            state.pending = notify
            if state.pending_call is None or not state.pending_call.active():
                state.pending_call = self.reactor.callLater(state.last_notify + interval - now,
                                                            self._send_pending_notify, notify.subscript_id)
            return succeed(indeterminant(notify, f"rate limited (RFC 3856 §6.12): sent within {interval:g} s"))
        if state.pending_call is not None and state.pending_call.active():
            state.pending_call.cancel()
        state.pending = state.pending_call = None
        state.immediate = False
        state.last_notify = now
        return self._notify_now(state, notify)

    def _send_pending_notify(self, subscript_id: str) -> None:
        state = self.watchers.get(subscript_id)
        if state is None or state.pending is None:
            return
        notify, state.pending, state.pending_call = state.pending, None, None
        state.last_notify = self.reactor.seconds()

        def logged(response: CPIMResponse) -> None:
            if response.status is Status.FAILURE:
                log.info("SIP: a rate-limited NOTIFY for {subscription} failed: {reason}",
                         subscription=subscript_id, reason=response.reason)

        self._notify_now(state, notify).addCallback(logged)

    def _notify_now(self, state: WatcherSubscription, notify: Notify) -> Deferred[CPIMResponse]:
        remaining = max(0, int(state.expires_at - self.reactor.seconds()))
        expires = notify.expires if notify.expires is not None else remaining
        headers: list[tuple[str, str]] = [
            ("Event", "presence"),
            ("Subscription-State", mapping.format_subscription_state(notify.state, expires=expires, reason=notify.reason)),
            ("Contact", self.stack.contact_for(None, "UDP" if state.source is None else state.source.transport)),
        ]
        body, ctype = mapping.notify_body(notify, signed=accepts_signed(state.accept))
        if ctype:
            headers.append(("Content-Type", ctype))
        request = state.dialog.request("NOTIFY", tuple(headers), body)
        terminated = notify.state is SubscriptionState.TERMINATED
        if terminated:
            self._forget_watcher(notify.subscript_id)
        d = self._send_in_dialog(request, state.dialog, state.source)

        def done(response: Response) -> CPIMResponse:
            if response.status == 481 or (response.status >= 300 and not terminated and response.status in (408, 503)):
                self._forget_watcher(notify.subscript_id)
            return mapping.response_from_sip(notify, response)

        return d.addCallback(done)

    def _send_in_dialog(self, request: Request, dialog: Dialog, source: Source | None) -> Deferred[Response]:
        next_hop = dialog.route_set[0] if dialog.route_set else request.uri
        try:
            uri = parse_name_addr(next_hop).uri if next_hop.startswith("<") else next_hop
            target = target_from_uri(uri, source.transport if source is not None else "UDP")
        except SipParseError:
            target = None
        if target is None and source is not None:
            target = Target(source.transport, source.host, source.port)
        if target is None:
            return self._resolve_and_send(request, dialog=dialog)
        return self._send_with_auth(request, target, dialog)

    # ---- presence: subscriptions towards SIP users (we are notified)

    def _notify_received(self, request: Request, transaction: ServerTransaction) -> None:
        tag = request.to.tag or ""
        subscript_id = self.outgoing_dialogs.get((request.call_id, tag))
        state = self.outgoing.get(subscript_id) if subscript_id else None
        event = (request.get("event") or "").split(";")[0].strip().lower()
        if state is None:
            self._reject(transaction, 481, "Subscription Does Not Exist", tag or new_tag())
            return
        if event != "presence":
            self._reject(transaction, 489, "Bad Event", tag, (("Allow-Events", "presence"),))
            return
        if request.get("subscription-state") is None:
            self._reject(transaction, 400, "Bad Request (no Subscription-State)", tag)
            return
        dialog = state.dialog
        if dialog.remote_tag is None:
            dialog.remote_tag = request.from_.tag
        contacts = request.get_all("contact")
        if contacts:
            dialog.remote_target = parse_name_addr(contacts[0]).uri
        dialog.route_set = dialog.route_set or tuple(reversed(request.get_all("record-route")))
        if not dialog.accept_remote_cseq(request.cseq[0]):
            self._reject(transaction, 500, "Server Internal Error (CSeq out of order)", tag)
            return
        try:
            operation = mapping.notify_from_sip(request, watcher=state.watcher, target=state.target,
                                                subscript_id=state.subscript_id, origin=self.name)
        except (ParseError, ValueError) as error:
            self._reject(transaction, 400, f"Bad Request ({getattr(error, 'reason', error)})", tag)
            return
        self._reject(transaction, 200, "OK", tag)
        if operation.state is SubscriptionState.TERMINATED:
            self._end_outgoing(state.subscript_id)
            if operation.reason in (TerminationReason.DEACTIVATED, TerminationReason.PROBATION,
                                    TerminationReason.GIVEUP) and not state.fetch:
                self._start_subscription(state.watcher, state.target, state.duration, state.subscript_id)
                return
        elif operation.expires is not None and not state.fetch:
            self._arm_refresh(state, operation.expires)
        self.bus.dispatch(operation)

    def _end_outgoing(self, subscript_id: str) -> OutgoingSubscription | None:
        state = self.outgoing.pop(subscript_id, None)
        if state is not None:
            self.outgoing_dialogs.pop((state.dialog.call_id, state.dialog.local_tag), None)
            if state.refresh is not None and state.refresh.active():
                state.refresh.cancel()
        return state

    def _arm_refresh(self, state: OutgoingSubscription, expires: int) -> None:
        if state.refresh is not None and state.refresh.active():
            state.refresh.cancel()
        state.expires_at = self.reactor.seconds() + expires
        delay = max(1.0, min(expires * 0.8, expires - 32)) if expires > 40 else max(1.0, expires / 2)
        state.refresh = self.reactor.callLater(delay, self._refresh, state.subscript_id)

    def _refresh(self, subscript_id: str) -> None:
        state = self.outgoing.get(subscript_id)
        if state is None:
            return
        request = self._subscribe_request(state, state.duration)
        self._send_in_dialog(request, state.dialog, None).addCallback(self._refreshed, subscript_id)

    def _refreshed(self, response: Response, subscript_id: str) -> None:
        state = self.outgoing.get(subscript_id)
        if state is None:
            return
        if 200 <= response.status < 300:
            self._arm_refresh(state, response.expires or state.duration)
            return
        self._end_outgoing(subscript_id)
        reason = TerminationReason.REJECTED if response.status in (403, 489, 603) else TerminationReason.TIMEOUT
        self.bus.dispatch(Notify(state.watcher, state.target, None, subscript_id=subscript_id,
                                 state=SubscriptionState.TERMINATED, reason=reason, origin=self.name))

    def _subscribe_request(self, state: OutgoingSubscription, expires: int) -> Request:
        headers = (
            ("Event", "presence"),
            ("Accept", "application/pidf+xml, multipart/signed"),  # RFC 3863 §4 signed documents too
            ("Expires", str(expires)),
            ("Contact", self.stack.contact_for(None)),
        )
        return state.dialog.request("SUBSCRIBE", headers)

    def _start_subscription(self, watcher: Any, target: Any, duration: int, subscript_id: str,
                            *, fetch: bool = False, operation: Subscribe | None = None) -> Deferred[CPIMResponse]:
        call_id = f"{random_hex(10)}@{self.settings.local_host}"
        watcher_sip = mapping.cpim_to_sip(watcher)
        target_sip = mapping.cpim_to_sip(target)
        dialog = Dialog(call_id=call_id, local_tag=new_tag(), local_uri=watcher_sip, remote_uri=target_sip)
        state = OutgoingSubscription(dialog, subscript_id, watcher, target, duration, fetch=fetch)
        self.outgoing[subscript_id] = state
        self.outgoing_dialogs[(call_id, dialog.local_tag)] = subscript_id
        request = self._subscribe_request(state, 0 if fetch else duration)
        op = operation or Subscribe(watcher, target, duration, subscript_id=subscript_id)

        def answered(response: Response) -> CPIMResponse:
            if 200 <= response.status < 300:
                current = self.outgoing.get(subscript_id)
                if current is state:
                    state.established = True
                    if state.dialog.remote_tag is None:
                        state.dialog.remote_tag = response.to.tag
                    contacts = response.get_all("contact")
                    if contacts and state.dialog.remote_target is None:
                        state.dialog.remote_target = parse_name_addr(contacts[0]).uri
                    state.dialog.route_set = tuple(reversed(response.get_all("record-route")))
                    if not fetch:
                        self._arm_refresh(state, response.expires or duration)
            elif self.outgoing.get(subscript_id) is state:
                self._end_outgoing(subscript_id)
            result = mapping.response_from_sip(op, response)
            if result.status is Status.INDETERMINANT:  # RFC 6665: 202 is treated like 200
                result = success(op, result.reason, duration=response.expires, native_code=response.status)
            return result

        return self._resolve_and_send(request, dialog=dialog).addCallback(answered)

    # ---- PUBLISH (we are the ESC)

    def _publish_received(self, request: Request, transaction: ServerTransaction, tag: str) -> None:
        try:
            presentity = mapping.destination_of(request, "pres")
        except ParseError as error:
            self._reject(transaction, 400, f"Bad Request ({error.reason})", tag)
            return
        if presentity.uri.domain_key not in self.domains:
            self._reject(transaction, 404, "Not Found (not a presentity of this gateway)", tag)
            return
        try:
            existing, expires, content = self.publications.check(request, presentity.uri)
        except PublishRejected as rejection:
            self._reject(transaction, rejection.status, rejection.reason, tag, rejection.headers)
            return
        publication = self.publications.commit(str(presentity.uri), existing, expires, content)
        if expires > 0:
            publication.timer = self.reactor.callLater(expires, self._publication_expired, publication.etag)
        if content is None and expires > 0:
            self._reject(transaction, 200, "OK", tag, (("SIP-ETag", publication.etag), ("Expires", str(expires))))
            return
        operation = mapping.publish_from_sip(request, instance="sip-" + publication.lineage, expires=expires,
                                             presence=publication.content, origin=self.name)

        def answered(response: CPIMResponse) -> None:
            if response.status is Status.FAILURE:
                self.publications.remove(publication.etag)
                self._answer(transaction, response, tag)
                return
            self._reject(transaction, 200, "OK", tag, (("SIP-ETag", publication.etag), ("Expires", str(expires))))

        self.bus.dispatch(operation).addCallback(answered)

    def _publication_expired(self, etag: str) -> None:
        publication = self.publications.remove(etag)
        if publication is None:
            return
        from cpimgw.cpim.uri import parse_uri

        self.bus.dispatch(Publish(parse_uri(publication.presentity), publication.content, origin=self.name,
                                  instance="sip-" + publication.lineage, expires=0))

    # ------------------------------------------------------------ to SIP

    def deliver(self, operation: Any) -> Deferred[CPIMResponse]:
        if isinstance(operation, Message):
            return self._deliver_message(operation)
        if isinstance(operation, Subscribe):
            return self._deliver_subscribe(operation)
        if isinstance(operation, Notify):
            return self._send_notify(operation)
        return succeed(failure(operation, Condition.UNSUPPORTED, f"the SIP adapter does not take {type(operation).__name__}"))

    def _deliver_message(self, message: Message) -> Deferred[CPIMResponse]:
        call_id = f"{random_hex(10)}@{self.settings.local_host}"
        from_tag = new_tag()
        target = mapping.cpim_to_sip(message.destination)
        mode = self.settings.message_mode
        if mode == "cpim" and _carries_cpim(message) and self.native_targets.wants_native(target):
            native = self._native_request(message, call_id, from_tag)
            if native is not None and not is_signed(native.media_type or ""):
                self.stack.count("message_native_direct")
                return self._send_message(message, native, target, call_id, from_tag, retried=False)
        try:
            request = mapping.message_to_sip(message, call_id=call_id, from_tag=from_tag, mode=mode)
        except ParseError as error:
            return succeed(failure(message, Condition.BAD_REQUEST, error.describe()))
        return self._send_message(message, request, target, call_id, from_tag, retried=False)

    def _native_request(self, message: Message, call_id: str, from_tag: str) -> Request | None:
        """The MESSAGE in the native form (``message_mode = "native"``), or ``None`` when the CPIM object does not parse."""
        try:
            return mapping.message_to_sip(message, call_id=call_id, from_tag=from_tag, mode="native")
        except ParseError:
            return None

    def _send_message(self, message: Message, request: Request, target: str, call_id: str, from_tag: str,
                      *, retried: bool) -> Deferred[CPIMResponse]:
        return self._resolve_and_send(request, page_mode=True).addCallback(
            self._message_answered, message, request, target, call_id, from_tag, retried
        )

    def _message_answered(self, response: Response, message: Message, sent: Request, target: str, call_id: str,
                          from_tag: str, retried: bool) -> Deferred[CPIMResponse] | CPIMResponse:
        """The far side's final answer to a MESSAGE; a 415 may be retried once in the other form
        (RFC 3261 §8.1.3.5: a new request with a type the Accept lists)."""
        if response.status != 415:
            return mapping.response_from_sip(message, response)
        ranges = mapping.accepted_media(response)
        carried_cpim = _carries_cpim(message)
        sent_cpim = (sent.media_type or "") == MEDIA_CPIM
        detail = ""
        retry: Request | None = None
        if retried:
            detail = "the retry in the other form was refused too"
        elif not carried_cpim:
            detail = f"the content is {sent.media_type}, which has no other form"
        elif sent_cpim:
            if mapping.media_accepted(MEDIA_CPIM, ranges):
                detail = "it lists message/cpim, so the refusal is of the content itself"
            else:
                native = self._native_request(message, call_id, from_tag)
                native_type = (native.media_type or "") if native is not None else ""
                if native is None:
                    detail = "the Message/CPIM object has no native form (it does not parse)"
                elif not mapping.native_acceptable(native_type, ranges):
                    detail = (f"the content is signed ({native_type}); its signature covers the Message/CPIM object"
                              if is_signed(native_type)
                              else f"its native form is {native_type}")
                else:
                    retry = native
                    self.native_targets.remember(target)
                    self.stack.count("message_native_fallback")
                    log.info("SIP: {target} refused message/cpim (415, Accept: {accept}); retrying with {media}",
                             target=target, accept=", ".join(ranges) or "-", media=native_type)
        else:  # the native form, sent because the target was remembered: the target changed its mind
            self.native_targets.forget(target)
            if mapping.media_accepted(MEDIA_CPIM, ranges):
                try:
                    retry = mapping.message_to_sip(message, call_id=call_id, from_tag=from_tag, mode="cpim")
                except ParseError:
                    retry = None
                log.info("SIP: {target} refused the native form (415); retrying with message/cpim", target=target)
            if retry is None:
                detail = "neither form is accepted"
        if retry is None:
            return failure(message, Condition.UNSUPPORTED_MEDIA,
                           mapping.unsupported_media_reason(response, ranges, detail), native_code=415)
        number = response.cseq[0] if response.has("CSeq") else sent.cseq[0]
        retry = retry.with_header("CSeq", f"{min(number + 1, mapping.MAX_CSEQ)} MESSAGE")
        return self._send_message(message, retry, target, call_id, from_tag, retried=True)

    def _deliver_subscribe(self, subscribe: Subscribe) -> Deferred[CPIMResponse]:
        existing = self.outgoing.get(subscribe.subscript_id)
        if subscribe.duration == 0:
            if existing is None:  # a fetch: one-shot SUBSCRIBE, Expires: 0
                return self._start_subscription(subscribe.watcher, subscribe.target, 0, subscribe.subscript_id,
                                                fetch=True, operation=subscribe)
            request = self._subscribe_request(existing, 0)
            existing.fetch = True
            if existing.refresh is not None and existing.refresh.active():
                existing.refresh.cancel()
            return self._send_in_dialog(request, existing.dialog, None).addCallback(
                lambda response: success(subscribe, "unsubscribed", duration=0, native_code=response.status)
            )
        if existing is not None:
            existing.duration = subscribe.duration
            request = self._subscribe_request(existing, subscribe.duration)

            def refreshed(response: Response) -> CPIMResponse:
                if 200 <= response.status < 300:
                    self._arm_refresh(existing, response.expires or subscribe.duration)
                    return success(subscribe, duration=response.expires, native_code=response.status)
                self._end_outgoing(subscribe.subscript_id)
                return mapping.response_from_sip(subscribe, response)

            return self._send_in_dialog(request, existing.dialog, None).addCallback(refreshed)
        return self._start_subscription(subscribe.watcher, subscribe.target, subscribe.duration,
                                        subscribe.subscript_id, operation=subscribe)

    def _resolve_and_send(self, request: Request, *, page_mode: bool = False,
                          dialog: Dialog | None = None) -> Deferred[Response]:
        d = self.resolver.resolve(request.uri)

        def resolved(targets: list[Target]) -> Deferred[Response] | Response:
            if not targets:
                return make_response(request, 404, "Not Found (no route to the SIP domain)")
            if page_mode:
                size = _size(request) + 200  # Via, Max-Forwards, User-Agent
                if size > self.settings.page_mode_limit:
                    if not any(t.reliable for t in targets) and "TCP" not in self.settings.transports:
                        return make_response(request, 413, "Request Entity Too Large (page-mode limit)")
                    targets = [t if t.reliable else attrs.evolve(t, transport="TCP") for t in targets]
            return self._send_to_targets(request, targets, dialog)

        def failed(reason: Any) -> Response:
            log.info("SIP: cannot resolve {uri}: {reason}", uri=request.uri, reason=reason.getErrorMessage())
            return make_response(request, 404, "Not Found (resolution failed)")

        return d.addCallbacks(resolved, failed)

    def _send_to_targets(self, request: Request, targets: list[Target], dialog: Dialog | None) -> Deferred[Response]:
        """Try ``targets`` in order (RFC 3263 §4.3): on a timeout (408), a transport
        failure or a 503 the next one gets a fresh transaction (and, in a
        dialog, the next CSeq)."""
        remaining = list(targets)

        def attempt(current: Request) -> Deferred[Response]:
            target = remaining.pop(0)
            return self._send_with_auth(current, target, dialog).addCallback(answered, current, target)

        def answered(response: Response, sent: Request, target: Target) -> Deferred[Response] | Response:
            if response.status not in (408, 503) or not remaining:
                return response
            self.stack.count("failovers")
            log.info("SIP: {target} answered {status} for {method}; trying the next target",
                     target=target, status=response.status, method=sent.method)
            number, method = sent.cseq
            following = dialog.next_cseq() if dialog is not None else number + 1
            return attempt(sent.with_header("CSeq", f"{following} {method}"))

        return attempt(request)

    def _send_with_auth(self, request: Request, target: Target, dialog: Dialog | None = None,
                        *, retries: int = 2) -> Deferred[Response]:
        """Send; answer a 401/407 (RFC 3261 §22.2) with credentials for its realm.

        The retry is a new request of the same dialog: it takes the dialog's
        next CSeq (outside a dialog, the CSeq plus one), so later in-dialog
        requests keep increasing (§12.2.1.1).  A proxy's 407 after a UAS's
        401 (or the reverse) is answered too, at most ``retries`` times.
        """
        def answered(response: Response) -> Deferred[Response] | Response:
            if response.status not in (401, 407) or retries <= 0:
                return response
            header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
            reply_name = "Authorization" if response.status == 401 else "Proxy-Authorization"
            if request.has(reply_name) and not any("stale=true" in c.lower().replace(" ", "")
                                                   for c in response.get_all(header)):
                return response  # our credentials were refused
            for challenge in response.get_all(header):
                value = self.responder.authorization(challenge, request.method, request.uri, request.body)
                if value is not None:
                    number, method = request.cseq
                    following = dialog.next_cseq() if dialog is not None else number + 1
                    retry = request.with_header("CSeq", f"{following} {method}").without_header(reply_name)
                    retry = retry.add_header(reply_name, value)
                    self.stack.count("digest_retries")
                    return self._send_with_auth(retry, target, dialog, retries=retries - 1)
            return response

        return self.stack.send_request(request, target).addCallback(answered)


def _carries_cpim(message: Message) -> bool:
    """Whether the Message's content is a Message/CPIM object (which has a native form)."""
    return message.content.media_type.split(";", 1)[0].strip().lower() == MEDIA_CPIM


def _size(request: Request) -> int:
    """``len(request.to_bytes())`` without serialising it (the page-mode check on the data path)."""
    def octets(text: str) -> int:
        return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))

    size = octets(f"{request.method} {request.uri} {request.version}\r\n") + 2 + len(request.body)
    size += len(f"Content-Length: {len(request.body)}\r\n")
    for name, value in request.headers:
        if name.lower() not in ("content-length", "l"):
            size += octets(name) + octets(value) + 4
    return size


def build(settings: Mapping[str, Any], bus: Any) -> SipAdapter:
    """Build the adapter from its config table merged over :func:`defaults`."""
    name = str(settings.get("name", "sip"))
    return SipAdapter(bus, SipSettings.from_mapping(settings), name=name)
