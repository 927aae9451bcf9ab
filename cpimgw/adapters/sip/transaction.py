"""SIP transactions (RFC 3261 §17) on the reactor clock.

- :class:`ClientTransaction` — the non-INVITE client transaction (§17.1.2):
  Timer E retransmits over unreliable transports (T1 doubling up to T2, T2 once
  a provisional response arrived), Timer F (64*T1) times out with a 408,
  Timer K (T4 unreliable, 0 reliable) absorbs response retransmissions.
- :class:`ServerTransaction` — the non-INVITE server transaction (§17.2.2):
  request retransmissions are absorbed in Trying and answered with the last
  response in Proceeding/Completed; Timer J (64*T1 unreliable, 0 reliable).
  With ``invite=True`` it is the INVITE server transaction (§17.2.1) for a
  final non-2xx answer (we answer INVITE 488/501, we never accept one):
  Timer G retransmits the response until the ACK, Timer H gives up, Timer I
  absorbs ACK retransmissions.
- :class:`TransactionTable` — matching by branch (§17.1.3, §17.2.3), with the
  RFC 2543 fallback key (§17.2.3 bullet 2) for requests whose branch lacks the
  ``z9hG4bK`` magic cookie (RFC 4475 §3.2 badbranch, §3.4 inv2543).  A
  non-INVITE server transaction that completed over UDP lingers for Timer J
  (64*T1) only to answer retransmissions, so the table keeps just its last
  response octets and where to send them (:class:`CompletedServer`), and
  expires those in order with one timer: at thousands of requests a second,
  32 s of full transactions (request, views, response, timers) would be
  millions of objects for the garbage collector to walk.  A client
  transaction completed over UDP likewise lingers for Timer K (T4) as a
  :class:`CompletedClient` that absorbs response retransmissions.

Every timer is an ``IReactorTime.callLater`` on the clock passed in, so tests
drive them with ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from cpimgw.adapters.sip.wire import Request, Response, make_response

T1 = 0.5
T2 = 4.0
T4 = 5.0
MAGIC_COOKIE = "z9hG4bK"

log = Logger()

Sender = Callable[[bytes], None]


class _Timers:
    clock: IReactorTime

    def _init_timers(self) -> None:
        self._timers: dict[str, IDelayedCall] = {}

    def _start(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel(name)
        self._timers[name] = self.clock.callLater(delay, self._fire, name, callback)

    def _fire(self, name: str, callback: Callable[[], None]) -> None:
        self._timers.pop(name, None)
        callback()

    def _cancel(self, name: str) -> None:
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _cancel_all(self) -> None:
        for name in list(self._timers):
            self._cancel(name)


class ClientTransaction(_Timers):
    """A non-INVITE client transaction; ``deferred`` fires with the final :class:`Response`.

    A timeout (Timer F) fires a locally made 408, a transport error a 503.
    """

    #: The (transport, host, port) of the stream it was sent on (reliable
    #: transports): the stack fails it when that stream is lost.
    target_key: tuple[str, str, int] | None = None
    #: Set by :class:`TransactionTable`: called instead of starting Timer K.
    on_completed: Callable[["ClientTransaction"], None] | None = None

    def __init__(
        self,
        request: Request,
        send: Sender,
        clock: IReactorTime,
        *,
        reliable: bool,
        on_terminated: Callable[["ClientTransaction"], None] = lambda t: None,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
    ) -> None:
        self.request = request
        self.send = send
        self.clock = clock
        self.reliable = reliable
        self.on_terminated = on_terminated
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.state = "trying"
        self.deferred: Deferred[Response] = Deferred()
        self.retransmissions = 0
        self._interval = t1
        self._data = request.to_bytes()
        self._init_timers()

    def start(self) -> None:
        # Timers first: a transport that fails (or answers) synchronously
        # inside send() ends the transaction, which then cancels them.
        if not self.reliable:
            self._start("E", self._interval, self._timer_e)
        self._start("F", 64 * self.t1, self._timer_f)
        self._transmit()

    def _transmit(self) -> None:
        try:
            self.send(self._data)
        except Exception as error:  # a transport that cannot send ends the transaction
            log.warn("SIP transport error sending {method}: {error}", method=self.request.method, error=error)
            self.transport_error()

    def transport_error(self) -> None:
        """The transport could not carry the request (RFC 3261 §8.1.3.1: treat as 503)."""
        if self.state in ("trying", "proceeding"):
            self._finish(make_response(self.request, 503, "Service Unavailable (transport error)"))
            self._terminate()

    def _timer_e(self) -> None:
        if self.state not in ("trying", "proceeding"):
            return
        self.retransmissions += 1
        self._transmit()
        self._interval = self.t2 if self.state == "proceeding" else min(2 * self._interval, self.t2)
        self._start("E", self._interval, self._timer_e)

    def _timer_f(self) -> None:
        if self.state in ("trying", "proceeding"):
            self._finish(make_response(self.request, 408, "Request Timeout"))
            self._terminate()

    def response_received(self, response: Response) -> None:
        if self.state in ("completed", "terminated"):
            return  # absorbed (Timer K)
        if response.status < 200:
            self.state = "proceeding"
            return
        self._finish(response)
        if self.state != "completed":
            return  # terminated while the final response was handed on (the stack stopped)
        if self.reliable:
            self._terminate()
        elif self.on_completed is not None:
            self._cancel_all()
            self.on_completed(self)
        else:
            self._start("K", self.t4, self._terminate)

    def _finish(self, response: Response) -> None:
        if self.state in ("completed", "terminated"):
            return
        self.state = "completed"
        self._cancel("E")
        self._cancel("F")
        if not self.deferred.called:
            self.deferred.callback(response)

    def _terminate(self) -> None:
        if self.state == "terminated":
            return
        self.state = "terminated"
        self._cancel_all()
        self.on_terminated(self)


class ServerTransaction(_Timers):
    """A non-INVITE (or rejecting INVITE) server transaction.

    The core answers with :meth:`respond`; retransmissions of the request are
    answered from here without reaching the core.
    """

    def __init__(
        self,
        request: Request,
        send: Sender,
        clock: IReactorTime,
        *,
        reliable: bool,
        key: tuple,  # type: ignore[type-arg]
        on_terminated: Callable[["ServerTransaction"], None] = lambda t: None,
        on_completed: Callable[["ServerTransaction"], None] | None = None,
        source: Any = None,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
    ) -> None:
        self.request = request
        self.send = send
        self.clock = clock
        self.reliable = reliable
        self.key = key
        self.invite = request.method == "INVITE"
        self.on_terminated = on_terminated
        #: When set (by :class:`TransactionTable`), a non-INVITE transaction
        #: completed over an unreliable transport is handed to it for Timer J
        #: instead of starting its own timer.
        self.on_completed = on_completed
        #: Where the request came from (lets the table's ``sender`` answer
        #: retransmissions without keeping ``send``).
        self.source = source
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.state = "trying" if not self.invite else "proceeding"
        self.last_response: Response | None = None
        self._last_bytes: bytes | None = None
        self.absorbed = 0
        self._interval = t1
        self._init_timers()

    @property
    def responded(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def respond(self, response: Response) -> None:
        """Send ``response`` (the core calls this once for the final answer)."""
        if self.state in ("completed", "confirmed", "terminated"):
            return
        self.last_response = response
        self._last_bytes = response.to_bytes()
        self._send_last()
        if response.status < 200:
            self.state = "proceeding"
            return
        self.state = "completed"
        if self.invite:
            if response.status < 300:
                self._terminate()  # a 2xx is the core's to retransmit (we never send one)
                return
            if not self.reliable:
                self._start("G", self._interval, self._timer_g)
            self._start("H", 64 * self.t1, self._terminate)
        elif self.reliable:
            self._terminate()
        elif self.on_completed is not None:
            self._cancel_all()
            self.on_completed(self)
        else:
            self._start("J", 64 * self.t1, self._terminate)

    def _send_last(self) -> None:
        if self._last_bytes is None:
            return
        try:
            self.send(self._last_bytes)
        except Exception as error:
            log.warn("SIP transport error sending a response: {error}", error=error)

    def _timer_g(self) -> None:
        if self.state != "completed":
            return
        self._send_last()
        self._interval = min(2 * self._interval, self.t2)
        self._start("G", self._interval, self._timer_g)

    def request_retransmitted(self, request: Request) -> None:
        """A retransmission (or the ACK of an INVITE) matched this transaction."""
        self.absorbed += 1
        if request.method == "ACK":
            if self.invite and self.state == "completed":
                self.state = "confirmed"
                self._cancel("G")
                self._cancel("H")
                self._start("I", 0 if self.reliable else self.t4, self._terminate)
            return
        if self.state in ("proceeding", "completed"):
            self._send_last()

    def _terminate(self) -> None:
        if self.state == "terminated":
            return
        self.state = "terminated"
        self._cancel_all()
        self.on_terminated(self)


def server_key(request: Request) -> tuple:  # type: ignore[type-arg]
    """The server transaction key (RFC 3261 §17.2.3): branch, sent-by, method (ACK -> INVITE).

    Without the magic cookie the RFC 2543 key is used: Request-URI (except for
    ACK), From tag, To tag (for ACK), Call-ID, CSeq number and top Via.
    """
    via = request.top_via
    branch = via.branch or ""
    method = "INVITE" if request.method == "ACK" else request.method
    if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return ("3261", branch, via.sent_by.lower(), method)
    number, _ = request.cseq
    uri = "" if request.method == "ACK" else request.uri
    return ("2543", uri, request.from_.tag, request.call_id, number, method, str(via))


def client_key(message: Request | Response) -> tuple[str, str]:
    """The client transaction key (RFC 3261 §17.1.3): top Via branch and CSeq method."""
    return (message.top_via.branch or "", message.cseq[1])


class CompletedServer:
    """What is left of a completed non-INVITE server transaction during Timer J (RFC 3261 §17.2.2).

    It answers a retransmitted request with the final response again and
    absorbs everything else; the table drops it when Timer J fires.
    """

    __slots__ = ("key", "data", "send", "source", "sender", "absorbed")
    state = "completed"
    invite = False
    reliable = False
    responded = True

    def __init__(self, key: tuple, data: bytes, send: Sender | None,  # type: ignore[type-arg]
                 source: Any = None, sender: Callable[[Any, bytes], None] | None = None) -> None:
        self.key = key
        self.data = data
        self.send = send
        self.source = source
        self.sender = sender
        self.absorbed = 0

    def request_retransmitted(self, request: Request) -> None:
        self.absorbed += 1
        if request.method == "ACK":
            return
        try:
            if self.send is not None:
                self.send(self.data)
            elif self.sender is not None:
                self.sender(self.source, self.data)
        except Exception as error:
            log.warn("SIP transport error sending a response: {error}", error=error)

    def respond(self, response: Response) -> None:
        """Ignored: the transaction has its final response."""

    def _terminate(self) -> None:
        """Nothing to cancel: the table forgets the entry."""


class CompletedClient:
    """What is left of a completed client transaction during Timer K: it absorbs retransmitted responses."""

    __slots__ = ("key", "absorbed")
    state = "completed"
    target_key = None

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.absorbed = 0

    def response_received(self, response: Response) -> None:
        self.absorbed += 1

    def transport_error(self) -> None:
        """Nothing is waiting for an answer any more."""

    def _terminate(self) -> None:
        """Nothing to cancel: the table forgets the entry."""


class TransactionTable:
    """Live transactions, matched by key; entries leave when their transaction terminates.

    :param clock: when given, completed non-INVITE server transactions over
        UDP become :class:`CompletedServer` entries expired by one timer on
        this clock (see the module docstring); without it each transaction
        runs its own Timer J.
    :param sender: ``sender(source, data)`` for those entries (the stack's
        ``send_to``).
    """

    def __init__(self, clock: Any = None, sender: Callable[[Any, bytes], None] | None = None) -> None:
        #: ``sender(source, data)``: answers a retransmission for a lean entry
        #: whose transaction knew its source (one shared callable, no closure each).
        self.sender = sender
        self.clients: dict[tuple[str, str], ClientTransaction | CompletedClient] = {}
        self.servers: dict[tuple, ServerTransaction | CompletedServer] = {}  # type: ignore[type-arg]
        self.clock = clock
        self._lingering: deque[tuple[float, CompletedServer]] = deque()
        self._lingering_clients: deque[tuple[float, CompletedClient]] = deque()
        self._sweeper: IDelayedCall | None = None
        self._sweep_at = 0.0

    def add_client(self, transaction: ClientTransaction, key: tuple[str, str] | None = None) -> None:
        """Track ``transaction``; ``key`` (branch, method) when the caller knows it (else parsed)."""
        key = key if key is not None else client_key(transaction.request)
        self.clients[key] = transaction
        previous = transaction.on_terminated

        def done(t: ClientTransaction) -> None:
            if self.clients.get(key) is t:
                del self.clients[key]
            previous(t)

        transaction.on_terminated = done
        if self.clock is not None and not transaction.reliable:
            transaction.on_completed = lambda t: self._client_completed(t, key)

    def _client_completed(self, transaction: ClientTransaction, key: tuple[str, str]) -> None:
        """Swap a completed UDP client transaction for its lean Timer K entry."""
        if self.clients.get(key) is not transaction:
            transaction._terminate()
            return
        entry = CompletedClient(key)
        self.clients[key] = entry
        self._linger(self._lingering_clients, entry, transaction.t4)

    def match_client(self, response: Response) -> ClientTransaction | CompletedClient | None:
        return self.clients.get(client_key(response))

    def add_server(self, transaction: ServerTransaction) -> None:
        self.servers[transaction.key] = transaction
        previous = transaction.on_terminated

        def done(t: ServerTransaction) -> None:
            if self.servers.get(t.key) is t:
                del self.servers[t.key]
            previous(t)

        transaction.on_terminated = done
        if self.clock is not None and not transaction.invite and not transaction.reliable:
            transaction.on_completed = self._server_completed

    def _server_completed(self, transaction: ServerTransaction) -> None:
        """Swap a completed UDP server transaction for its lean Timer J entry."""
        if self.servers.get(transaction.key) is not transaction or transaction._last_bytes is None:
            transaction._terminate()
            return
        if self.sender is not None and transaction.source is not None:
            entry = CompletedServer(transaction.key, transaction._last_bytes, None, transaction.source, self.sender)
        else:
            entry = CompletedServer(transaction.key, transaction._last_bytes, transaction.send)
        self.servers[transaction.key] = entry
        self._linger(self._lingering, entry, 64 * transaction.t1)

    def _linger(self, queue: deque, entry: Any, delay: float) -> None:  # type: ignore[type-arg]
        now = self.clock.seconds()
        expires = now + delay
        queue.append((expires, entry))
        if self._sweeper is not None and self._sweep_at <= expires + 1.0:
            return  # the sweep due will reach it (at most 1 s late)
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweep_at = expires
        self._sweeper = self.clock.callLater(delay, self._sweep)

    def _sweep(self) -> None:
        """Timers J and K for every entry whose time has come; one timer for all of them.

        The next sweep is at least 1 s later (entries may linger up to 1 s
        beyond their timer, which only means a late retransmission is still
        absorbed).
        """
        self._sweeper = None
        now = self.clock.seconds()
        for queue, table in ((self._lingering, self.servers), (self._lingering_clients, self.clients)):
            while queue and queue[0][0] <= now:
                _, entry = queue.popleft()
                if table.get(entry.key) is entry:
                    del table[entry.key]
        heads = [queue[0][0] for queue in (self._lingering, self._lingering_clients) if queue]
        if heads:
            self._sweep_at = max(min(heads), now + 1.0)
            self._sweeper = self.clock.callLater(self._sweep_at - now, self._sweep)

    def stop(self) -> None:
        """Forget the lingering entries and cancel the sweep (the stack stops)."""
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        for queue, table in ((self._lingering, self.servers), (self._lingering_clients, self.clients)):
            for _, entry in queue:
                if table.get(entry.key) is entry:
                    del table[entry.key]
            queue.clear()

    def match_server(self, request: Request) -> ServerTransaction | CompletedServer | None:
        return self.servers.get(server_key(request))
