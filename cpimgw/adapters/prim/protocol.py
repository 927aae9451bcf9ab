"""The PRIM connection: framing on a Twisted stream, pipelining, STARTTLS.

One :class:`PrimProtocol` per TCP connection, for both roles: it sends
requests with fresh request identifiers and matches responses to them (any
order: the identifiers are what pipelining rests on, draft-ietf-prim-server-00
§4.2), and hands the requests it receives to a *handler* whose answer it
writes back under the request's identifier.  A request with identifier ``-``
is never answered (§4.2).  Malformed commands that are still framed get ``400``
(``501`` unknown method, ``503`` unsupported version) and the connection goes
on; when framing is lost the protocol answers ``400`` if it can and closes
(§4.1).  At most ``max_pending`` inbound requests are worked on at once (more get
``500``), and a connection with nothing received for ``idle_timeout`` seconds and
nothing pending is sent a ``LOGOUT`` and closed.  With a shared
:class:`~cpimgw.limits.RequestRateGuard` (the adapter's ``max_request_rate`` per
peer IP), a request over the rate is answered ``500`` with the reason phrase
``Internal Server Error (request rate exceeded, retry in N s)`` -- the PRIM
table (protocols.md §2.7) has no "service unavailable": 503 means version not
supported and 505 too many subscriptions, so the generic temporary server
error 500 is the one code every PRIM peer retries later -- counted
(``rate_limited``) and logged once per peer per interval.  Requests still outstanding when the connection closes fail with
:class:`PrimConnectionLost` ("unprocessed, safe to retry", §4.1).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterable, Optional, Protocol as TypingProtocol

from twisted.internet import defer
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from cpimgw import metrics
from cpimgw.adapters.prim import wire
from cpimgw.limits import RequestRateGuard
from cpimgw.adapters.prim.wire import PrimError, PrimLimitError, Request, Response

log = Logger()

DEFAULT_REQUEST_TIMEOUT = 30.0


class PrimConnectionLost(Exception):
    """The connection closed before the response arrived (request unprocessed)."""


class PrimTimeout(Exception):
    """No response arrived within the request timeout."""


class Handler(TypingProtocol):
    """What a :class:`PrimProtocol` calls for the requests it receives."""

    def connection_made(self, protocol: "PrimProtocol") -> None: ...

    def request_received(self, protocol: "PrimProtocol", request: Request) -> Any:
        """Return a ``Response``, a ``Deferred[Response]`` or ``None`` (no answer)."""

    def connection_lost(self, protocol: "PrimProtocol", reason: Failure) -> None: ...


@implementer(IHandshakeListener)
class PrimProtocol(Protocol):
    """A PRIM connection.

    :param handler: gets ``request_received`` for every request.
    :param clock: the reactor used for request timeouts.
    :param version: the version token this side sends.
    """

    def __init__(
        self,
        handler: Optional[Handler],
        clock: Any,
        *,
        version: str = wire.DEFAULT_VERSION,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_line: int = wire.MAX_LINE,
        max_headers: int = wire.MAX_HEADERS,
        max_body: int = wire.MAX_BODY,
        max_pending: int = 256,
        idle_timeout: float = 0,
        rate_guard: RequestRateGuard | None = None,
        stats: Any = None,
    ) -> None:
        self.handler = handler
        self.clock = clock
        self.version = version
        self.request_timeout = request_timeout
        self.parser = wire.Parser(max_line=max_line, max_headers=max_headers, max_body=max_body)
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[defer.Deferred, Any]] = {}
        self.connected_ = False
        self.closed = False
        self.tls = False
        self.handshake_done: defer.Deferred = defer.Deferred()
        self._after_write_tls: Any = None
        self.counters = {"received": 0, "rejected": 0, "sent": 0}
        #: inbound requests whose answer is still being worked out (a bound against floods).
        self.max_pending = max_pending
        self.inbound_pending = 0
        #: seconds without a received byte after which an idle connection is closed (0: never).
        self.idle_timeout = idle_timeout
        self._idle_timer: Any = None
        #: request-rate limit per peer IP shared by the adapter's connections (``None``: none).
        self.rate_guard = rate_guard
        #: a ``Counter`` shared with the adapter (``rate_limited`` is added there too), or ``None``.
        self.stats = stats

    # -- Twisted

    def connectionMade(self) -> None:
        self.connected_ = True
        transport = self.transport
        if hasattr(transport, "setTcpNoDelay"):
            try:
                transport.setTcpNoDelay(True)
            except OSError:
                pass
        self._arm_idle()
        if self.handler is not None:
            self.handler.connection_made(self)

    def _arm_idle(self) -> None:
        if not self.idle_timeout or self.closed:
            return
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.reset(self.idle_timeout)
        else:
            self._idle_timer = self.clock.callLater(self.idle_timeout, self._idle)

    def _idle(self) -> None:
        self._idle_timer = None
        if self.closed:
            return
        if self._pending or self.inbound_pending:
            self._arm_idle()  # work under way on this connection: not idle
            return
        log.info("PRIM connection idle for {seconds} s, closing", seconds=self.idle_timeout, peer=self._peer())
        self.counters["idle_closed"] = self.counters.get("idle_closed", 0) + 1
        self._write(wire.Request("LOGOUT", "-", (), b"", self.version))
        self.close()

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        self._arm_idle()
        try:
            items = self.parser.feed(data)
        except (PrimError, PrimLimitError) as error:
            self.counters["rejected"] += 1
            metrics.parse_error("prim")
            log.warn("PRIM framing lost, closing: {error}", error=error.describe(), peer=self._peer())
            request_id = getattr(error, "request_id", None)
            if request_id and request_id != "-":
                self._write(wire.Response(request_id, 400, "Bad Request", (), b"", self.version))
            self.close()
            return
        for item in items:
            if self.closed:
                return
            if isinstance(item, PrimError):
                self._refuse(item)
            elif isinstance(item, Response):
                self._response_received(item)
            else:
                self.counters["received"] += 1
                self._request_received(item)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed = True
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None
        pending, self._pending = self._pending, {}
        for request_id, (deferred, timer) in pending.items():
            if timer is not None and timer.active():
                timer.cancel()
            deferred.errback(PrimConnectionLost(f"connection closed before the answer to request {request_id}"))
        if not self.handshake_done.called:
            if self.tls:
                metrics.tls_failure("prim")
            self.handshake_done.errback(PrimConnectionLost("connection closed before the TLS handshake completed"))
            self.handshake_done.addErrback(lambda _: None)
        if self.handler is not None:
            self.handler.connection_lost(self, reason)

    def handshakeCompleted(self) -> None:
        if not self.handshake_done.called:
            self.handshake_done.callback(self)

    # -- sending

    def _write(self, command: wire.Command) -> None:
        if self.closed or self.transport is None:
            return
        if isinstance(command, wire.Response) and command.request_id == "-":
            return  # never answer a request sent with identifier '-'
        self.counters["sent"] += 1
        self.transport.write(wire.serialise(command))

    def _next_id(self) -> str:
        while True:
            request_id = str(next(self._ids))
            if request_id not in self._pending:
                return request_id

    def send_request(
        self,
        method: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        expect_response: bool = True,
        timeout: float | None = None,
    ) -> defer.Deferred:
        """Send a request; ``Deferred[Response]`` (``None`` at once if no response is wanted).

        The Deferred fails with :class:`PrimConnectionLost` or :class:`PrimTimeout`.
        """
        if self.closed:
            return defer.fail(PrimConnectionLost("the connection is closed"))
        request_id = self._next_id() if expect_response else "-"
        command = wire.Request(method, request_id, tuple(headers), body, self.version)
        if not expect_response:
            self._write(command)
            return defer.succeed(None)
        deferred: defer.Deferred = defer.Deferred()
        limit = self.request_timeout if timeout is None else timeout
        timer = self.clock.callLater(limit, self._timed_out, request_id) if limit else None
        self._pending[request_id] = (deferred, timer)
        self._write(command)
        return deferred

    def _timed_out(self, request_id: str) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            entry[0].errback(PrimTimeout(f"no answer to request {request_id}"))

    def respond(self, request: Request, code: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"", phrase: str = "") -> None:
        """Answer ``request`` (nothing is written for identifier ``-``)."""
        if not request.wants_response:
            return
        self._write(wire.Response(request.request_id, code, phrase or wire.REASON_PHRASES.get(code, ""), tuple(headers), body, self.version))

    def start_tls(self, context_factory: Any) -> defer.Deferred:
        """Switch to TLS now; ``Deferred`` that fires when the handshake completes."""
        self.transport.startTLS(context_factory)
        self.tls = True
        return self.handshake_done

    def peer_certificate(self) -> Any:
        """The peer's certificate (pyOpenSSL ``X509``) once TLS is up, else ``None``."""
        if not self.tls:
            return None
        try:
            return self.transport.getPeerCertificate()
        except Exception:  # noqa: BLE001 - not a TLS transport, or no certificate
            return None

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.loseConnection()

    # -- receiving

    def _peer(self) -> str:
        try:
            return str(self.transport.getPeer())
        except Exception:  # noqa: BLE001
            return "?"

    def _refuse(self, error: PrimError) -> None:
        self.counters["rejected"] += 1
        if error.code == 400:
            metrics.parse_error("prim")
        log.info("PRIM command refused with {code}: {error}", code=error.code, error=error.describe(), peer=self._peer())
        if error.request_id and error.request_id != "-":
            self._write(wire.Response(error.request_id, error.code, wire.REASON_PHRASES.get(error.code, ""),
                                      (), b"", self.version))

    def _response_received(self, response: Response) -> None:
        entry = self._pending.pop(response.request_id, None)
        if entry is None:
            log.info("PRIM response to unknown request {id} ignored", id=response.request_id, peer=self._peer())
            return
        deferred, timer = entry
        if timer is not None and timer.active():
            timer.cancel()
        deferred.callback(response)

    def _peer_host(self) -> str:
        try:
            return str(self.transport.getPeer().host).lower()
        except Exception:  # noqa: BLE001 - a transport without an IP peer
            return "?"

    def _over_rate(self, request: Request) -> bool:
        """Account ``request`` against the peer's rate; answer it 500 and return ``True`` when over."""
        if self.rate_guard is None or not self.rate_guard.enabled:
            return False
        host = self._peer_host()
        allowed, wait, should_log = self.rate_guard.check(host)
        if allowed:
            return False
        self.counters["rate_limited"] = self.counters.get("rate_limited", 0) + 1
        if self.stats is not None:
            self.stats["rate_limited"] += 1
        if should_log:
            log.warn("PRIM peer {host} is over max_request_rate ({rate:g}/s); answering 500 (logged once per "
                     "{interval:g} s)", host=host, rate=self.rate_guard.rate, interval=self.rate_guard.log_interval)
        seconds = max(1, math.ceil(wait))
        self.respond(request, 500, phrase=f"Internal Server Error (request rate exceeded, retry in {seconds} s)")
        return True

    def _request_received(self, request: Request) -> None:
        if self._over_rate(request):
            return
        if self.handler is None:
            self.respond(request, 501)
            return
        if self.inbound_pending >= self.max_pending:
            self.counters["rejected"] += 1
            self.respond(request, 500, phrase=f"Internal Server Error (more than {self.max_pending} requests pending)")
            return
        try:
            result = self.handler.request_received(self, request)
        except Exception:  # noqa: BLE001 - a bug must not kill the connection
            log.failure("PRIM handler failed on {method}", method=request.method)
            self.respond(request, 500)
            return
        if result is None:
            return
        if isinstance(result, Response):
            self._write(result)
            return
        d = defer.maybeDeferred(lambda: result) if not isinstance(result, defer.Deferred) else result
        self.inbound_pending += 1

        def answer(response: Optional[Response]) -> None:
            self.inbound_pending -= 1
            if response is not None:
                self._write(response)

        def failed(failure: Failure) -> None:
            self.inbound_pending -= 1
            log.failure("PRIM handler failed on {method}", failure, method=request.method)
            self.respond(request, 500)

        d.addCallbacks(answer, failed)
