"""SIP transports: UDP datagrams, TCP and TLS streams (RFC 3261 §18).

- :class:`UDPTransport` — one datagram per message (RFC 3261 §18.3 says a
  datagram carries one message; trailing octets after Content-Length are
  ignored, RFC 4475 dblreq).
- :class:`StreamConnection` — TCP or TLS; messages are framed by
  Content-Length (:class:`~cpimgw.adapters.sip.wire.StreamFramer`); a framing
  error (RFC 4475 clerr/ncl/mcl01 on a stream) answers 400 when it can and
  closes the connection because the boundaries are lost.  ``TCP_NODELAY`` is
  set on every stream.
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


class UDPTransport(DatagramProtocol):
    """The UDP socket of the stack (also used to send UDP requests and responses)."""

    def __init__(self, stack: StackLike) -> None:
        self.stack = stack

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # noqa: N802 (Twisted)
        self.stack.datagram_received(data, Source("UDP", addr[0], addr[1]))

    def send(self, data: bytes, host: str, port: int) -> None:
        if self.transport is None:
            raise ConnectionError("the UDP transport is not listening")
        self.transport.write(data, (host, port))

    @property
    def local_port(self) -> int:
        return self.transport.getHost().port  # type: ignore[no-any-return,union-attr]


class StreamConnection(Protocol):
    """One TCP or TLS connection, inbound or outbound."""

    def __init__(self, stack: StackLike, transport_name: str, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.stack = stack
        self.transport_name = transport_name
        self.framer = StreamFramer(max_size)
        self.source: Source | None = None
        self.connected = False

    def connectionMade(self) -> None:  # noqa: N802 (Twisted)
        self.connected = True
        try:
            self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        except (AttributeError, OSError):
            pass
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.source = Source(self.transport_name, getattr(peer, "host", "?"), getattr(peer, "port", 0), self)
        self.stack.connection_made(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted)
        assert self.source is not None
        try:
            for message in self.framer.feed(data):
                self.stack.stream_message(message, self.source)
        except ParseError as error:
            self.stack.stream_error(error, self.source)
            self.transport.loseConnection()  # type: ignore[union-attr]

    def send(self, data: bytes) -> None:
        if not self.connected:
            raise ConnectionError("the connection is closed")
        self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]  # noqa: N802
        self.connected = False
        self.stack.connection_lost(self)


class StreamFactory(Factory):
    """Builds :class:`StreamConnection` for a listening or connecting stream transport."""

    def __init__(self, stack: StackLike, transport_name: str, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.stack = stack
        self.transport_name = transport_name
        self.max_size = max_size

    def buildProtocol(self, addr: Any) -> StreamConnection:  # noqa: N802 (Twisted)
        return StreamConnection(self.stack, self.transport_name, self.max_size)
