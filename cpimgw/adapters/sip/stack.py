"""The SIP stack: transports + transactions + the rules every request meets first.

RFC 3261 §18 (sending and receiving, responses back over the connection the
request came on, else to the source address as RFC 3581 ``rport`` does),
§17 (transactions via :mod:`.transaction`), §8.2 (UAS checks before the core
sees a request: 400 for bad syntax with a reason phrase that says what is
wrong, 505 bad version, 416 unsupported URI scheme, 420 unknown Require, 482
loop detected, 483 Max-Forwards exhausted on a request we would forward),
§9 (CANCEL: 200 for a transaction we know, else 481).

The core (the adapter) implements :class:`ICore`-like ``request_received(request,
transaction, source)`` and answers with ``transaction.respond(response)``;
it sends requests with :meth:`SipStack.send_request` (``Deferred[Response]``,
a 408 on timeout, a 503 on a transport failure -- a refused connection, a
failed TLS handshake, a stream lost before the answer, a connection cap).

Request rate per source IP (``max_request_rate`` per second, ``request_burst``
at once; 0 = off): a new request over it -- not a retransmission absorbed by
its server transaction, not a response, not an ACK -- is answered ``503
Service Unavailable`` with ``Retry-After`` (RFC 3261 §21.5.4, §20.33) through
its own server transaction (so its retransmissions get the same 503 and are
not counted again), counted as ``rate_limited`` and logged at most once per
source per ``RATE_LOG_INTERVAL`` seconds.  Buckets live in a bounded
:class:`~cpimgw.limits.KeyedRateLimiter`.

Streams: idle timeout and connection caps (``idle_timeout``,
``max_connections``, ``max_connections_per_host``, see
:mod:`.transport`).  UDP: datagrams are read up to ``max_size`` octets
(Twisted's default is 8192) into a ``receive_buffer`` sized socket.  Tags
and branches come from :func:`~.wire.random_hex` (pooled ``os.urandom``).
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Callable, Protocol as TypingProtocol

from twisted.internet import endpoints, ssl
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from cpimgw import metrics
from cpimgw.cpim.errors import ParseError
from cpimgw.limits import RequestRateGuard
from cpimgw.adapters.sip.transaction import (
    MAGIC_COOKIE,
    T1,
    T2,
    T4,
    ClientTransaction,
    ServerTransaction,
    TransactionTable,
    server_key,
)
from cpimgw.adapters.sip.transport import (
    Source,
    StreamConnection,
    StreamFactory,
    Target,
    UDPTransport,
)
from cpimgw.adapters.sip.wire import (
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_SIZE,
    Request,
    Response,
    make_response,
    parse_message,
    random_hex,
)

log = Logger()

REASONS = {
    400: "Bad Request", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 501: "Not Implemented", 505: "Version Not Supported",
    513: "Message Too Large", 416: "Unsupported URI Scheme", 420: "Bad Extension",
}
#: A source over its request rate is logged at most once in this many seconds.
RATE_LOG_INTERVAL = 10.0
#: Most source addresses whose request rate is tracked at once (least recently used forgotten).
RATE_MAX_SOURCES = 10000
SUPPORTED_SCHEMES = ("sip", "sips", "im", "pres")
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()


def safe_phrase(text: str, limit: int = 160) -> str:
    """Text fit for a Reason-Phrase: no control characters, bounded."""
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return cleaned[:limit]


class Core(TypingProtocol):
    def request_received(self, request: Request, transaction: ServerTransaction, source: Source) -> None: ...


class SipStack:
    """Transports, transaction table and connection pool for one adapter."""

    def __init__(
        self,
        reactor: Any,
        core: Core,
        *,
        local_host: str = "127.0.0.1",
        max_size: int = DEFAULT_MAX_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
        user_agent: str = "cpimgw",
        tls_client_options: Callable[[str], Any] | None = None,
        idle_timeout: float | None = 180.0,
        max_connections: int = 1024,
        max_connections_per_host: int = 64,
        max_request_rate: float = 0.0,
        request_burst: float | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.core = core
        self.local_host = local_host
        self.max_size = max_size
        self.max_headers = max_headers
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.user_agent = user_agent
        self.tls_client_options = tls_client_options or (lambda name: ssl.optionsForClientTLS(name))
        self.table = TransactionTable(reactor, self.send_to)
        self.udp: UDPTransport | None = None
        self.local_ports: dict[str, int] = {}
        self.connections: dict[tuple[str, str, int], StreamConnection] = {}
        #: Every open stream (inbound and outbound), for the connection caps.
        self.open_streams: set[StreamConnection] = set()
        self.idle_timeout = idle_timeout or None
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self._pending: dict[tuple[str, str, int], list[tuple[bytes, ClientTransaction | None]]] = {}
        self.branch_prefix = MAGIC_COOKIE + "cg" + secrets.token_hex(3)
        self.counters: dict[str, int] = {}
        self.listening: list[Any] = []
        self.stopped = False
        self.rate_guard = RequestRateGuard(max_request_rate, request_burst or 0.0, self.clock,
                                           max_keys=RATE_MAX_SOURCES, log_interval=RATE_LOG_INTERVAL)

    # ------------------------------------------------------------ listening

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def listen_udp(self, port: int, interface: str, receive_buffer: int = 0) -> Any:
        """Listen on UDP; ``receive_buffer`` octets of socket buffer (0: the system's default).

        A larger buffer absorbs bursts while the reactor is busy instead of
        dropping datagrams (which UDP senders retransmit only after T1).
        """
        self.udp = UDPTransport(self)
        listener = self.reactor.listenUDP(port, self.udp, interface=interface)
        # Twisted reads 8192 octets per datagram by default: a bigger SIP
        # message (up to max_size, and UDP's own 65535) would be cut short.
        listener.maxPacketSize = min(max(self.max_size, 8192), 65535)
        sock = getattr(listener, "socket", None)
        if receive_buffer and sock is not None:
            import socket

            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            except OSError as error:
                log.warn("SIP: cannot set the UDP receive buffer to {size}: {error}", size=receive_buffer,
                         error=error)
        self.local_ports["UDP"] = listener.getHost().port
        self.listening.append(listener)
        return listener

    def listen_tcp(self, port: int, interface: str) -> Any:
        listener = self.reactor.listenTCP(port, StreamFactory(self, "TCP", self.max_size), interface=interface)
        self.local_ports["TCP"] = listener.getHost().port
        self.listening.append(listener)
        return listener

    def listen_tls(self, port: int, interface: str, context_factory: Any) -> Any:
        listener = self.reactor.listenSSL(
            port, StreamFactory(self, "TLS", self.max_size), context_factory, interface=interface
        )
        self.local_ports["TLS"] = listener.getHost().port
        self.listening.append(listener)
        return listener

    def stop(self) -> Deferred[None]:
        from twisted.internet.defer import gatherResults

        self.stopped = True
        waits = [d for d in (listener.stopListening() for listener in self.listening) if d is not None]
        self.listening = []
        for connection in list(self.open_streams | set(self.connections.values())):
            connection.transport.loseConnection()  # type: ignore[union-attr]
        for transaction in list(self.table.clients.values()):
            transaction._terminate()
        self.table.stop()
        for server in list(self.table.servers.values()):
            server._terminate()
        return gatherResults(waits).addCallback(lambda _: None)

    # ------------------------------------------------------------ receiving

    def datagram_received(self, data: bytes, source: Source) -> None:
        if data.strip(b"\r\n") == b"":
            self.count("keepalives")
            return
        self._received(data, source, datagram=True)

    def stream_message(self, data: bytes, source: Source) -> None:
        self._received(data, source, datagram=False)

    def stream_error(self, error: ParseError, source: Source) -> None:
        self.count("framing_errors")
        metrics.parse_error("sip")
        log.warn("SIP framing error from {peer}: {error}; closing", peer=source.key, error=error.describe())

    def may_connect(self, host: str) -> bool:
        """Whether one more stream (with ``host``) stays within the caps; counts a refusal."""
        if len(self.open_streams) >= self.max_connections:
            self.count("connections_refused")
            log.warn("SIP: {count} streams open (max_connections): refusing {host}",
                     count=len(self.open_streams), host=host)
            return False
        if self.max_connections_per_host and host != "?":
            same = sum(1 for c in self.open_streams if c.source is not None and c.source.host == host)
            if same >= self.max_connections_per_host:
                self.count("connections_refused")
                log.warn("SIP: {count} streams open with {host} (max_connections_per_host): refusing",
                         count=same, host=host)
                return False
        return True

    def connection_made(self, connection: StreamConnection) -> None:
        assert connection.source is not None
        self.open_streams.add(connection)
        self.connections.setdefault(connection.source.key, connection)

    def connection_lost(self, connection: StreamConnection) -> None:
        """Forget the stream; a request still unanswered on it fails at once with
        a transport error (RFC 3261 §8.1.3.1: 503), which RFC 3263 failover
        takes to the next target -- a refused TLS handshake lands here too."""
        self.open_streams.discard(connection)
        for key, value in list(self.connections.items()):
            if value is connection:
                del self.connections[key]
        key = connection.source.key if connection.source is not None else None
        if key is None or key in self.connections:
            return
        for transaction in list(self.table.clients.values()):
            if transaction.target_key == key and transaction.state in ("trying", "proceeding"):
                transaction.transport_error()

    def _received(self, data: bytes, source: Source, *, datagram: bool) -> None:
        try:
            message = parse_message(data, datagram=datagram, max_size=self.max_size, max_headers=self.max_headers)
        except ParseError as error:
            self._reject_unparsable(data, source, datagram, error)
            return
        if isinstance(message, Response):
            transaction = self.table.match_client(message)
            if transaction is None:
                self.count("unmatched_responses")
                log.debug("SIP response matches no transaction: {status}", status=message.status)
                return
            transaction.response_received(message)
            return
        self._request_received(message, source)

    def _reject_unparsable(self, data: bytes, source: Source, datagram: bool, error: ParseError) -> None:
        metrics.parse_error("sip")
        status = getattr(error, "status", 400)
        try:
            lenient = parse_message(data, datagram=True, max_size=max(len(data), 1), max_headers=10**6, strict=False)
        except ParseError:
            lenient = None
        if not isinstance(lenient, Request) or lenient.method == "ACK" or not lenient.get_all("via"):
            self.count("dropped_unparsable")
            log.info("SIP: dropped an unparsable message from {peer}: {error}", peer=source.key, error=error.describe())
            return
        self.count("rejected_unparsable")
        phrase = f"{REASONS.get(status, 'Bad Request')} ({safe_phrase(error.reason)})"
        response = make_response(lenient, status, phrase, to_tag=random_hex(4),
                                 headers=(("Warning", f'399 {self.local_host} "{safe_phrase(error.reason)}"'),))
        try:
            self.send_to(source, response.to_bytes())
        except Exception as send_error:  # a bad peer address must not stop the transport
            log.info("SIP: could not send 400 to {peer}: {error}", peer=source.key, error=send_error)

    def _request_received(self, request: Request, source: Source) -> None:
        transaction = self.table.match_server(request)
        if transaction is not None:
            transaction.request_retransmitted(request)
            return
        if request.method == "ACK":
            self.count("stray_acks")
            return
        key = server_key(request)
        transaction = ServerTransaction(
            request,
            lambda data, s=source: self.send_to(s, data),
            self.clock,
            reliable=source.reliable,
            key=key,
            source=source,
            t1=self.t1,
            t2=self.t2,
            t4=self.t4,
        )
        self.table.add_server(transaction)
        allowed, wait, should_log = self.rate_guard.check(source.host.lower())
        if not allowed:
            self._rate_limited(request, transaction, source, wait, should_log)
            return
        rejection = self.precheck(request)
        if rejection is not None:
            transaction.respond(rejection)
            return
        if request.method == "CANCEL":
            invite_key = key[:-1] + ("INVITE",) if key[0] == "3261" else None
            found = invite_key is not None and invite_key in self.table.servers
            transaction.respond(make_response(request, 200 if found else 481, "OK" if found else REASONS[481],
                                              to_tag=random_hex(4)))
            return
        try:
            self.core.request_received(request, transaction, source)
        except Exception:
            log.failure("SIP core failed on {method}", method=request.method)
            if not transaction.responded:
                transaction.respond(make_response(request, 500, "Server Internal Error", to_tag=random_hex(4)))

    def _rate_limited(self, request: Request, transaction: ServerTransaction, source: Source, wait: float,
                      should_log: bool) -> None:
        """Answer a request over its source's rate: 503 with Retry-After (RFC 3261 §21.5.4)."""
        self.count("rate_limited")
        if should_log:
            log.warn("SIP: {peer} is over max_request_rate ({rate:g}/s); answering 503 (logged once per "
                     "{interval:g} s)", peer=source.host, rate=self.rate_guard.rate, interval=RATE_LOG_INTERVAL)
        try:
            transaction.respond(make_response(request, 503, "Service Unavailable (request rate)",
                                              to_tag=random_hex(4),
                                              headers=(("Retry-After", str(max(1, math.ceil(wait)))),)))
        except Exception as error:  # a bad peer address must not stop the transport
            log.info("SIP: could not send 503 to {peer}: {error}", peer=source.key, error=error)

    def precheck(self, request: Request) -> Response | None:
        """RFC 3261 §8.2.1-§8.2.2 and §16.3 checks common to every request; ``None`` to go on."""
        scheme = request.uri.partition(":")[0].lower()
        if scheme not in SUPPORTED_SCHEMES:
            return make_response(request, 416, REASONS[416], to_tag=random_hex(4))
        vias = request.vias
        for via in vias[1:] if len(vias) > 1 else ():
            if (via.branch or "").startswith(self.branch_prefix):
                return make_response(request, 482, REASONS[482], to_tag=random_hex(4))
        if not request.has("require"):
            return None
        unknown = [r for r in request.get_all("require") if r.lower() not in SUPPORTED_EXTENSIONS]
        if unknown and request.method not in ("ACK", "CANCEL"):
            return make_response(request, 420, REASONS[420], to_tag=random_hex(4),
                                 headers=(("Unsupported", ", ".join(unknown)),))
        return None

    # ------------------------------------------------------------ sending

    def send_to(self, source: Source, data: bytes) -> None:
        """Send a response back the way its request came (RFC 3261 §18.2.2)."""
        if source.transport == "UDP":
            if self.udp is None:
                raise ConnectionError("no UDP transport")
            self.udp.send(data, source.host, source.port)
            return
        connection = source.connection if source.connection is not None else self.connections.get(source.key)
        if connection is not None and connection.connected:
            connection.send(data)
            return
        self._send_stream(Target(source.transport, source.host, source.port), data, None)

    def new_branch(self) -> str:
        return self.branch_prefix + random_hex(8)

    def via_for(self, target: Target, branch: str) -> str:
        port = self.local_ports.get(target.transport) or self.local_ports.get("UDP") or 5060
        host = self.local_host if ":" not in self.local_host else f"[{self.local_host}]"
        return f"SIP/2.0/{target.transport} {host}:{port};branch={branch};rport"

    def contact_for(self, user: str | None, transport: str = "UDP") -> str:
        port = self.local_ports.get(transport) or self.local_ports.get("UDP") or 5060
        host = self.local_host if ":" not in self.local_host else f"[{self.local_host}]"
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        scheme = "sips" if transport == "TLS" else "sip"
        return f"<{scheme}:{user + '@' if user else ''}{host}:{port}{suffix}>"

    def send_request(self, request: Request, target: Target) -> Deferred[Response]:
        """Send ``request`` in a new client transaction; fires with the final response.

        A Via with a fresh branch is put on top; Max-Forwards 70 is added when
        absent.
        """
        if self.stopped:  # nothing may outlive stop(): no new transaction, no timer
            return succeed(make_response(request, 503, "Service Unavailable (the SIP stack is stopped)"))
        branch = self.new_branch()
        extra: tuple[tuple[str, str], ...] = ()
        if not request.has("max-forwards"):
            extra += (("Max-Forwards", "70"),)
        if not request.has("user-agent") and self.user_agent:
            extra += (("User-Agent", self.user_agent),)
        request = Request(request.method, request.uri, (("Via", self.via_for(target, branch)),) + request.headers
                          + extra, request.body, request.version)
        holder: list[ClientTransaction] = []

        def send(data: bytes) -> None:
            if target.transport == "UDP":
                if self.udp is None:
                    raise ConnectionError("no UDP transport to send with")
                self.udp.send(data, target.host, target.port)
            else:
                self._send_stream(target, data, holder[0] if holder else None)

        transaction = ClientTransaction(
            request, send, self.clock, reliable=target.reliable, t1=self.t1, t2=self.t2, t4=self.t4
        )
        holder.append(transaction)
        if target.reliable:
            transaction.target_key = target.key
        self.table.add_client(transaction, (branch, request.method))
        transaction.start()
        return transaction.deferred

    def _send_stream(self, target: Target, data: bytes, transaction: ClientTransaction | None) -> None:
        connection = self.connections.get(target.key)
        if connection is not None and connection.connected:
            connection.send(data)
            return
        pending = self._pending.get(target.key)
        if pending is not None:
            pending.append((data, transaction))
            return
        self._pending[target.key] = [(data, transaction)]
        factory = StreamFactory(self, target.transport, self.max_size)
        if target.transport == "TLS":
            endpoint = endpoints.SSL4ClientEndpoint(
                self.reactor, target.host, target.port,
                self.tls_client_options(target.server_name or target.host),
            )
        else:
            endpoint = endpoints.TCP4ClientEndpoint(self.reactor, target.host, target.port, timeout=int(64 * self.t1))
        connecting = endpoint.connect(factory)

        def connected(connection: StreamConnection) -> None:
            self.connections[target.key] = connection
            for queued, _ in self._pending.pop(target.key, []):
                connection.send(queued)

        def failed(reason: Any) -> None:
            log.info("SIP: cannot connect to {target}: {reason}", target=target, reason=reason.getErrorMessage())
            for _, waiting in self._pending.pop(target.key, []):
                if waiting is not None:
                    waiting.transport_error()

        connecting.addCallbacks(connected, failed)

