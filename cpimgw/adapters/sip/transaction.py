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
  ``z9hG4bK`` magic cookie (RFC 4475 §3.2 badbranch, §3.4 inv2543).

Every timer is an ``IReactorTime.callLater`` on the clock passed in, so tests
drive them with ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

from typing import Callable

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

    A timeout (Timer F) or a transport error fires a locally made 408.
    """

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
        self._transmit()
        if not self.reliable:
            self._start("E", self._interval, self._timer_e)
        self._start("F", 64 * self.t1, self._timer_f)

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
        if self.reliable:
            self._terminate()
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


class TransactionTable:
    """Live transactions, matched by key; entries leave when their transaction terminates."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str, str], ClientTransaction] = {}
        self.servers: dict[tuple, ServerTransaction] = {}  # type: ignore[type-arg]

    def add_client(self, transaction: ClientTransaction) -> None:
        key = client_key(transaction.request)
        self.clients[key] = transaction
        previous = transaction.on_terminated

        def done(t: ClientTransaction) -> None:
            self.clients.pop(key, None)
            previous(t)

        transaction.on_terminated = done

    def match_client(self, response: Response) -> ClientTransaction | None:
        return self.clients.get(client_key(response))

    def add_server(self, transaction: ServerTransaction) -> None:
        self.servers[transaction.key] = transaction
        previous = transaction.on_terminated

        def done(t: ServerTransaction) -> None:
            if self.servers.get(t.key) is t:
                del self.servers[t.key]
            previous(t)

        transaction.on_terminated = done

    def match_server(self, request: Request) -> ServerTransaction | None:
        return self.servers.get(server_key(request))
