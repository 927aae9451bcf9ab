"""A PRIM user agent on Twisted: the client API behind ``cpimgw prim``.

Speaks the client-to-server commands of draft-mazzoldi-prim-impp-01/-02
(digest §2.6) with the server-00 version token: LOGIN with SASL (CRAM-MD5 by
default, PLAIN over TLS), optional STARTTLS first, LISTEN/SILENCE, SEND,
SUBSCRIBE/UNSUBSCRIBE/FETCH, PUBLISH/REMOVE (lease model), SETACL/GETACL,
SETCLASSTABLE/GETCLASSTABLE, START/STOPWATCHERNOTIFY, LOGOUT.  What the
server sends (SEND, NOTIFY, CANCELSUBSCRIPTION, WATCHERNOTIFY) is recorded in
:attr:`PrimClient.received`, handed to :attr:`PrimClient.on_request`, and
answered (200 for SEND and NOTIFY; nothing for the others).

Example::

    client = PrimClient(reactor, "alice@prim.localhost", "secret")
    yield client.connect("127.0.0.1", 5781)
    yield client.listen()
    yield client.send("im:bob@example.org", b"hello")
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from cpimgw.adapters.prim import sasl, wire
from cpimgw.adapters.prim.presence_doc import simple_pidf
from cpimgw.adapters.prim.protocol import PrimProtocol
from cpimgw.cpim.operations import MEDIA_PIDF, new_id

log = Logger()


class PrimClientError(Exception):
    """The server refused a command; ``response`` is its answer."""

    def __init__(self, response: wire.Response, what: str) -> None:
        self.response = response
        super().__init__(f"{what}: {response.code} {response.reason}")


def _address(value: str, scheme: str) -> str:
    return value if ":" in value.split("@", 1)[0] else f"{scheme}:{value}"


class PrimClient:
    """One PRIM user agent connection.

    :param address: ``user@domain`` (with or without ``im:``/``pres:``).
    :param password: the shared secret.
    :param mechanism: ``CRAM-MD5`` (default), ``PLAIN`` (needs TLS) or ``EXTERNAL``.
    :param tls_options: client TLS options; when given, STARTTLS runs before LOGIN.
    :param answer_send: the status this UA answers incoming SENDs with (200; 408 for polite blocking).
    """

    def __init__(self, reactor: Any, address: str, password: Optional[str], *, mechanism: str = "CRAM-MD5",
                 tls_options: Any = None, answer_send: int = 200, version: str = wire.DEFAULT_VERSION,
                 request_timeout: float = 30.0) -> None:
        self.reactor = reactor
        bare = address.split(":", 1)[1] if ":" in address.split("@", 1)[0] else address
        self.user, _, self.domain = bare.rpartition("@")
        self.password = password
        self.mechanism = mechanism.upper()
        self.tls_options = tls_options
        self.answer_send = answer_send
        self.protocol = PrimProtocol(self, reactor, version=version, request_timeout=request_timeout)
        self.user_agent_id: Optional[str] = None
        self.received: list[wire.Request] = []
        self.on_request: Optional[Callable[[wire.Request], None]] = None
        self._waiters: list[tuple[Callable[[wire.Request], bool], defer.Deferred]] = []
        self.closed: defer.Deferred = defer.Deferred()

    @property
    def im(self) -> str:
        return f"im:{self.user}@{self.domain}"

    @property
    def pres(self) -> str:
        return f"pres:{self.user}@{self.domain}"

    # -- protocol handler

    def connection_made(self, protocol: PrimProtocol) -> None:
        pass

    def connection_lost(self, protocol: PrimProtocol, reason: Failure) -> None:
        if not self.closed.called:
            self.closed.callback(None)

    def request_received(self, protocol: PrimProtocol, request: wire.Request) -> Optional[wire.Response]:
        self.received.append(request)
        if self.on_request is not None:
            try:
                self.on_request(request)
            except Exception:  # noqa: BLE001 - a display error must not break the session
                log.failure("on_request failed")
        for entry in list(self._waiters):
            predicate, waiter = entry
            if predicate(request):
                self._waiters.remove(entry)
                waiter.callback(request)
        if request.method == "SEND":
            echo = [(n, v) for n, v in request.headers if n in ("From", "To", "Message-ID", "Conversation-ID")]
            return wire.response_to(request, self.answer_send, echo)
        if request.method == "NOTIFY":
            return wire.response_to(request, 200, [("From", request.header("From") or ""),
                                                   ("To", request.header("To") or "")])
        return None

    def wait_for(self, method: str, predicate: Callable[[wire.Request], bool] = lambda r: True) -> defer.Deferred:
        """``Deferred[Request]``: the first received ``method`` request matching ``predicate`` (past ones count)."""
        def match(request: wire.Request) -> bool:
            return request.method == method and predicate(request)

        for request in self.received:
            if match(request):
                return defer.succeed(request)
        waiter: defer.Deferred = defer.Deferred()
        self._waiters.append((match, waiter))
        return waiter

    # -- commands

    def _check(self, response: wire.Response, what: str, ok: Iterable[int] = (200,)) -> wire.Response:
        if response.code not in ok:
            raise PrimClientError(response, what)
        return response

    def request(self, method: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                ok: Iterable[int] = (200,)) -> defer.Deferred:
        """Send any command; ``Deferred[Response]``, failing with :class:`PrimClientError` if not in ``ok``."""
        return self.protocol.send_request(method, headers, body).addCallback(self._check, method, tuple(ok))

    @defer.inlineCallbacks
    def connect(self, host: str, port: int, *, login: bool = True):  # type: ignore[no-untyped-def]
        """Connect, STARTTLS if TLS options were given, and LOGIN.  ``Deferred[self]``."""
        endpoint = HostnameEndpoint(self.reactor, host, port, timeout=30)
        yield connectProtocol(endpoint, self.protocol)
        if self.tls_options is not None:
            yield self.request("STARTTLS")
            yield self.protocol.start_tls(self.tls_options)
        if login:
            yield self.login()
        return self

    @defer.inlineCallbacks
    def login(self):  # type: ignore[no-untyped-def]
        """LOGIN (init, then continue with the mechanism's data); ``Deferred[User-Agent-ID]``."""
        who = [("From", self.pres)]
        first = yield self.request("LOGIN", who + [("Auth-State", "init"), ("SASL-Mech", self.mechanism)], ok=(100, 200))
        mechanism = (sasl.parse_mechanisms(first.header("SASL-Mech")) or [self.mechanism])[0]
        body = sasl.client_response(mechanism, f"{self.user}@{self.domain}", self.password, first.body)
        headers = who + [("Auth-State", "continue"), ("SASL-Mech", mechanism)]
        if body:
            headers.append(("Content-Type", "text/plain"))
        second = yield self.request("LOGIN", headers, body)
        self.user_agent_id = second.header("User-Agent-ID")
        return self.user_agent_id

    def listen(self) -> defer.Deferred:
        return self.request("LISTEN", [("From", self.im)])

    def silence(self) -> defer.Deferred:
        return self.request("SILENCE", [("From", self.im)])

    def send(self, to: str, body: bytes, content_type: str = "text/plain; charset=UTF-8", *,
             conversation_id: Optional[str] = None, message_id: Optional[str] = None,
             ok: Iterable[int] = (200, 101)) -> defer.Deferred:
        """SEND ``body`` to ``to``; ``Deferred[Response]`` (200 or 101 accepted)."""
        headers = [
            ("From", self.im), ("To", _address(to, "im")),
            ("Message-ID", message_id or new_id()), ("Conversation-ID", conversation_id or new_id()),
            ("Content-Type", content_type),
        ]
        return self.request("SEND", headers, body, ok=ok)

    def subscribe(self, target: str, duration: int = 3600, subscription_id: Optional[str] = None) -> defer.Deferred:
        headers = [("From", self.pres), ("To", _address(target, "pres")), ("Duration", str(duration)),
                   ("Subscription-ID", subscription_id or new_id())]
        return self.request("SUBSCRIBE", headers, ok=(200, 201))

    def unsubscribe(self, target: str) -> defer.Deferred:
        return self.request("UNSUBSCRIBE", [("From", self.pres), ("To", _address(target, "pres"))])

    def fetch(self, target: str) -> defer.Deferred:
        return self.request("FETCH", [("From", self.pres), ("To", _address(target, "pres"))])

    def publish(self, body: bytes, *, tuple_id: str = "default", content_type: str = MEDIA_PIDF,
                pi_type: str = "permanent", duration: Optional[int] = None, classes: Iterable[str] = ()) -> defer.Deferred:
        headers = [("From", self.pres), ("Tuple-ID", tuple_id), ("PI-Type", pi_type)]
        if duration is not None:
            headers.append(("Duration", str(duration)))
        classes = tuple(classes)
        if classes:
            headers.append(("Class", " ".join(classes)))
        if body:
            headers.append(("Content-Type", content_type))
        return self.request("PUBLISH", headers, body)

    def publish_status(self, basic: str = "open", note: Optional[str] = None, **kw: Any) -> defer.Deferred:
        """PUBLISH a one-tuple PIDF document (``open``/``closed``, optional note)."""
        document = simple_pidf(self.pres, basic, tuple_id=kw.pop("tuple_id", "default"), contact=self.im, note=note)
        return self.publish(document, **kw)

    def renew(self, tuple_id: str, duration: int) -> defer.Deferred:
        return self.request("PUBLISH", [("From", self.pres), ("Tuple-ID", tuple_id), ("PI-Type", "renew"),
                                        ("Duration", str(duration))])

    def revert(self, tuple_id: str) -> defer.Deferred:
        return self.request("PUBLISH", [("From", self.pres), ("Tuple-ID", tuple_id), ("PI-Type", "revert")])

    def remove(self, tuple_id: str) -> defer.Deferred:
        return self.request("REMOVE", [("From", self.pres), ("Tuple-ID", tuple_id)])

    def set_acl(self, document: bytes) -> defer.Deferred:
        return self.request("SETACL", [("From", self.pres), ("Content-Type", "text/xml")], document)

    def get_acl(self) -> defer.Deferred:
        return self.request("GETACL", [("From", self.pres)])

    def set_class_table(self, document: bytes) -> defer.Deferred:
        return self.request("SETCLASSTABLE", [("From", self.pres), ("Content-Type", "text/xml")], document)

    def get_class_table(self) -> defer.Deferred:
        return self.request("GETCLASSTABLE", [("From", self.pres)])

    def start_watcher_notify(self) -> defer.Deferred:
        return self.request("STARTWATCHERNOTIFY", [("From", self.pres)])

    def stop_watcher_notify(self) -> defer.Deferred:
        return self.request("STOPWATCHERNOTIFY", [("From", self.pres)])

    def logout(self) -> defer.Deferred:
        """LOGOUT (no response) and wait for the server to close."""
        if self.protocol.closed:
            return defer.succeed(None)
        self.protocol.send_request("LOGOUT", expect_response=False)
        timer = self.reactor.callLater(5, self.protocol.close)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return self.closed.addBoth(done)
