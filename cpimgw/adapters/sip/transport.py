"""SIP transports: UDP datagrams, TCP and TLS streams (RFC 3261 §18).

- :class:`UDPTransport` — one datagram per message (RFC 3261 §18.3 says a
  datagram carries one message; trailing octets after Content-Length are
  ignored, RFC 4475 dblreq).
- :class:`StreamConnection` — TCP or TLS; messages are framed by
  Content-Length (:class:`~cpimgw.adapters.sip.wire.StreamFramer`); a framing
  error (RFC 4475 clerr/ncl/mcl01 on a stream) answers 400 when it can and
  closes the connection because the boundaries are lost.  ``TCP_NODELAY`` is
  set on every stream.  A stream that carries no complete message (nor a
  RFC 5626 CRLF keep-alive) in either direction for the stack's
  ``idle_timeout`` is closed (a slow-loris sender trickling one byte at a time
  never resets it), and the stack caps how many streams are open at once, in
  all and per peer host (``max_connections``, ``max_connections_per_host``;
  over the cap an inbound connection is closed at once and an outbound one
  fails, which the transaction answers 503).
- :class:`Target` / :class:`Source` — where a message goes to or came from.

The transports hand raw octets to their ``stack`` (see
:mod:`cpimgw.adapters.sip.stack`), which parses and routes them.  TLS client
connections verify the peer certificate against the SIP domain with
``service_identity`` (through :func:`twisted.internet.ssl.optionsForClientTLS`),
as RFC 3261 §26.3.1 / RFC 5922 ask for ``sips:``.
"""

from __future__ import annotations

from typing import Any, Protocol as TypingProtocol

import attrs
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from cpimgw.cpim.errors import ParseError
from cpimgw.adapters.sip.wire import DEFAULT_MAX_SIZE, StreamFramer

log = Logger()

RELIABLE = frozenset({"TCP", "TLS", "SCTP", "WS", "WSS"})
DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061}


@attrs.frozen
class Target:
    """Where to send a request: transport (``UDP``/``TCP``/``TLS``), host, port, TLS name."""

    transport: str
    host: str
    port: int
    server_name: str | None = None

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.transport, self.host.lower(), self.port)


@attrs.frozen
class Source:
    """Where a message came from; ``connection`` is the stream it came on (``None`` for UDP)."""

    transport: str
    host: str
    port: int
    connection: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.transport, self.host.lower(), self.port)


class StackLike(TypingProtocol):
    def datagram_received(self, data: bytes, source: Source) -> None: ...
    def stream_message(self, data: bytes, source: Source) -> None: ...
    def stream_error(self, error: ParseError, source: Source) -> None: ...
    def connection_made(self, connection: "StreamConnection") -> None: ...
    def connection_lost(self, connection: "StreamConnection") -> None: ...
    def may_connect(self, host: str) -> bool: ...


class UDPTransport(DatagramProtocol):
    """The UDP socket of the stack (also used to send UDP requests and responses)."""

    #: Peers whose :class:`Source` is kept for reuse (one object per peer, not per datagram).
    max_sources = 4096

    def __init__(self, stack: StackLike) -> None:
        self.stack = stack
        self._sources: dict[tuple[str, int], Source] = {}

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # noqa: N802 (Twisted)
        source = self._sources.get(addr)
        if source is None:
            if len(self._sources) >= self.max_sources:
                self._sources.clear()
            source = self._sources[addr] = Source("UDP", addr[0], addr[1])
        self.stack.datagram_received(data, source)

    def send(self, data: bytes, host: str, port: int) -> None:
        if self.transport is None:
            raise ConnectionError("the UDP transport is not listening")
        self.transport.write(data, (host, port))

    @property
    def local_port(self) -> int:
        return self.transport.getHost().port  # type: ignore[no-any-return,union-attr]


class StreamConnection(Protocol, TimeoutMixin):
    """One TCP or TLS connection, inbound or outbound.

    :param idle_timeout: seconds without a complete message or keep-alive
        (either way) before the connection is closed; ``None`` for never.
    :param clock: the reactor whose ``callLater`` runs the idle timer.
    """

    def __init__(self, stack: StackLike, transport_name: str, max_size: int = DEFAULT_MAX_SIZE, *,
                 idle_timeout: float | None = None, clock: Any = None) -> None:
        self.stack = stack
        self.transport_name = transport_name
        self.framer = StreamFramer(max_size)
        self.source: Source | None = None
        self.connected = False
        self.idle_timeout = idle_timeout
        if clock is not None:
            self.callLater = clock.callLater

    def connectionMade(self) -> None:  # noqa: N802 (Twisted)
        self.connected = True
        try:
            self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        except (AttributeError, OSError):
            pass
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.source = Source(self.transport_name, getattr(peer, "host", "?"), getattr(peer, "port", 0), self)
        self.setTimeout(self.idle_timeout)
        self.stack.connection_made(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted)
        assert self.source is not None
        keepalives = self.framer.keepalives
        try:
            for message in self.framer.feed(data):
                self.resetTimeout()
                self.stack.stream_message(message, self.source)
        except ParseError as error:
            self.stack.stream_error(error, self.source)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if self.framer.keepalives != keepalives:
            self.resetTimeout()

    def send(self, data: bytes) -> None:
        if not self.connected:
            raise ConnectionError("the connection is closed")
        self.resetTimeout()
        self.transport.write(data)  # type: ignore[union-attr]

    def timeoutConnection(self) -> None:  # noqa: N802 (Twisted TimeoutMixin)
        count = getattr(self.stack, "count", None)
        if count is not None:
            count("idle_closed")
        log.info("SIP {transport} connection with {peer} idle for {seconds} s: closing",
                 transport=self.transport_name, peer=self.source.key if self.source else None,
                 seconds=self.idle_timeout)
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]  # noqa: N802
        self.setTimeout(None)
        self.connected = False
        self.stack.connection_lost(self)


class StreamFactory(Factory):
    """Builds :class:`StreamConnection` for a listening or connecting stream transport."""

    def __init__(self, stack: StackLike, transport_name: str, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.stack = stack
        self.transport_name = transport_name
        self.max_size = max_size

    def buildProtocol(self, addr: Any) -> StreamConnection | None:  # noqa: N802 (Twisted)
        may_connect = getattr(self.stack, "may_connect", None)
        if may_connect is not None and not may_connect(getattr(addr, "host", "?")):
            return None  # Twisted closes the connection (or fails the connect)
        return StreamConnection(self.stack, self.transport_name, self.max_size,
                                idle_timeout=getattr(self.stack, "idle_timeout", None),
                                clock=getattr(self.stack, "reactor", None))
