"""PRIM sessions: server-to-server (draft-ietf-prim-server-00) and client-to-server (-01/-02).

A :class:`Session` is the handler of one :class:`~cpimgw.adapters.prim.protocol.PrimProtocol`.
Its *role* is fixed by how the connection came to be:

``server``  accepted on the server-to-server listener.  The peer proves a
            domain with STARTTLS + a certificate (its subjectAltName DNS names),
            or LOGIN ``Domain:`` with SASL (EXTERNAL, CRAM-MD5, PLAIN only over
            TLS).  Every request is then authorised against the proven
            domains: ``From`` must be in one of them (402 otherwise, 401 when
            nothing is proven yet), ``To`` in a domain we serve (403).
            VERIFYSERVER, PING, LOGOUT and STARTTLS need no LOGIN (§7.3).
``client``  accepted on the user-agent listener: LOGIN ``From:`` with SASL
            makes the connection one PRINCIPAL's (a ``User-Agent-ID`` is
            assigned, -01 §10.1); every request must then be on that
            principal's behalf (402).
``outbound`` a connection we opened to a peer server; it may carry the peer's
            requests for its own domain the other way (§4.2, -01 §13.2).

Peer domains proven during the connection (server-00 §4.1, §9.1, §7.3.5): on a
``server`` connection, the first request on behalf of a domain the peer has
not proven (no certificate, no LOGIN for it) makes us check the peer's
address against that domain's servers (``verify_peers``): the domain is
resolved as for sending to it (peers table, SRV, A); if the peer's address
is among the results (``verify_by_address``) the domain is accepted, else
we ask one of those servers, on a fresh connection without LOGIN,
``VERIFYSERVER`` with ``Server-Address:`` the peer's address: ``200``
accepts the domain for the rest of the connection, ``403`` (or no answer)
refuses the request with ``402``.  Such a domain's strength is ``weak``
(``medium`` over TLS).  See :meth:`PrimAdapter.verify_peer_domain`.

AStrength (server-00 §6.1.8): the link strength is ``strong`` for a
certificate-verified peer, ``medium`` for SASL over TLS, ``weak`` for SASL
without TLS, ``none`` otherwise; a request's strength is the weaker of the
link's and its ``AStrength`` header; below ``min_astrength`` it gets 410.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from cpimgw import metrics
from cpimgw.logs import peer_text
from cpimgw.adapters.prim import sasl, wire
from cpimgw.adapters.prim.wire import PrimError, Request

if TYPE_CHECKING:  # pragma: no cover
    from cpimgw.adapters.prim.adapter import PrimAdapter
    from cpimgw.adapters.prim.protocol import PrimProtocol

log = Logger()

STRENGTHS = ("none", "weak", "medium", "strong")
#: Methods accepted before authentication (server-00 §7.3, §9.1).
PRE_AUTH = frozenset({"LOGIN", "STARTTLS", "PING", "LOGOUT", "VERIFYSERVER"})
#: -02 §8.4: the base commands (S-S and C-S) and the control commands (C-S only).
SERVER_METHODS = frozenset(
    {"LOGIN", "LOGOUT", "STARTTLS", "PING", "VERIFYSERVER", "SUBSCRIBE", "UNSUBSCRIBE", "FETCH",
     "NOTIFY", "CANCELSUBSCRIPTION", "SEND"}
)
CLIENT_METHODS = (SERVER_METHODS - {"VERIFYSERVER", "NOTIFY", "CANCELSUBSCRIPTION"}) | wire.CONTROL_METHODS - {"WATCHERNOTIFY"}

_ua_ids = itertools.count(1)


def weakest(*values: Optional[str]) -> str:
    known = [value.lower() for value in values if value and value.lower() in STRENGTHS]
    if not known:
        return "none"
    return min(known, key=STRENGTHS.index)


def certificate_names(x509: Any) -> tuple[str, ...]:
    """The DNS subjectAltNames of a pyOpenSSL certificate (lower case)."""
    if x509 is None:
        return ()
    from cryptography import x509 as cx509

    cert = x509.to_cryptography()
    try:
        extension = cert.extensions.get_extension_for_class(cx509.SubjectAlternativeName)
    except cx509.ExtensionNotFound:
        return ()
    return tuple(name.lower().rstrip(".") for name in extension.value.get_values_for_type(cx509.DNSName))


class Session:
    """The handler of one PRIM connection (see the module docstring)."""

    def __init__(self, gateway: "PrimAdapter", role: str, *, peer_domain: Optional[str] = None,
                 peer_host: Optional[str] = None) -> None:
        self.gateway = gateway
        self.role = role
        self.protocol: Optional["PrimProtocol"] = None
        self.peer_host = peer_host  # the peer's IP address (per-IP cap, VERIFYSERVER)
        self.domains: set[str] = set()  # proven peer domains (server / outbound)
        #: strength of the proof of each domain proven by DNS / VERIFYSERVER (others: the link's).
        self.domain_strength: dict[str, str] = {}
        self._verifying: dict[str, defer.Deferred] = {}
        self.principal: Optional[tuple[str, str]] = None  # (user, domain) of a UA
        self.ua_id: Optional[str] = None
        self.link_strength = "none"
        self.exchange: Optional[sasl.ServerExchange] = None
        self.login_claim: Optional[str] = None
        self.listening = False
        self.watcher_notify = False
        self.service_version: Optional[str] = None
        self.login_timer: Any = None
        self.lost: defer.Deferred = defer.Deferred()
        if peer_domain is not None:
            self.domains.add(peer_domain)

    # -- protocol callbacks

    def connection_made(self, protocol: "PrimProtocol") -> None:
        self.protocol = protocol
        if self.peer_host is None:
            try:
                self.peer_host = protocol.transport.getPeer().host
            except Exception:  # noqa: BLE001 - a transport without an address
                self.peer_host = None
        timeout = self.gateway.settings.login_timeout
        if self.role != "outbound" and timeout:
            self.login_timer = self.gateway.reactor.callLater(timeout, self._login_timed_out)

    def _login_timed_out(self) -> None:
        if not self.authenticated and self.protocol is not None:
            log.info("PRIM connection closed: no LOGIN within {timeout} s", timeout=self.gateway.settings.login_timeout)
            self.protocol.close()

    def connection_lost(self, protocol: "PrimProtocol", reason: Failure) -> None:
        if self.login_timer is not None and self.login_timer.active():
            self.login_timer.cancel()
        self.gateway.session_closed(self)
        if not self.lost.called:
            self.lost.callback(None)

    @property
    def authenticated(self) -> bool:
        return bool(self.domains) or self.principal is not None

    def _authenticated_now(self) -> None:
        if self.login_timer is not None and self.login_timer.active():
            self.login_timer.cancel()

    # -- dispatch

    def request_received(self, protocol: "PrimProtocol", request: Request) -> Any:
        method = request.method
        allowed = CLIENT_METHODS if self.role == "client" else SERVER_METHODS
        if method not in allowed:
            return wire.response_to(request, 501, phrase=f"{method} is not offered on this connection")
        if method == "PING":
            return None  # no response expected (server-00 §7.3.4)
        if method == "LOGOUT":
            protocol.close()
            return None
        if method == "STARTTLS":
            return self._starttls(request)
        if method == "LOGIN":
            return self._login(request)
        if method == "VERIFYSERVER":
            return self._verify_server(request)
        if self.role == "server" and not self.domains:
            names = self._tls_names()
            if names:
                self.domains.update(names)
                self.link_strength = "strong"
                self._authenticated_now()
        if self.role == "server" and self.gateway.settings.verify_peers:
            claimed = self._unproven_domain(request)
            if claimed is not None:
                return self._verify_then_handle(protocol, request, claimed)
        if not self.authenticated:
            return wire.response_to(request, 401)
        try:
            link = self.link_strength
            if self.role == "server" and self.domain_strength:
                try:
                    link = self.domain_strength.get(self._address_domain(request.header("From"), "From")[1], link)
                except PrimError:
                    pass
            strength = weakest(link, request.header("AStrength") or link)
            if STRENGTHS.index(strength) < STRENGTHS.index(self.gateway.settings.min_astrength):
                return wire.response_to(request, 410)
            if self.role == "client":
                refusal = self._check_principal(request)
            else:
                refusal = self._check_peer(request)
            if refusal is not None:
                return refusal
            return self.gateway.handle_request(self, request, strength)
        except PrimError as error:
            log.info("PRIM {method} refused: {error}", method=method, error=error.describe())
            return wire.response_to(request, error.code, phrase=wire.REASON_PHRASES.get(error.code, "") + f" ({error.reason})")

    # -- authorisation

    def _unproven_domain(self, request: Request) -> Optional[str]:
        """The ``From`` domain of a peer's request when it still has to be verified, else ``None``."""
        try:
            _, domain = self._address_domain(request.header("From"), "From")
        except PrimError:
            return None  # the normal path answers the malformed request
        if domain in self.domains or self.gateway.serves(domain):
            return None  # proven already, or ours (local or another network on our bus): never a peer's
        return domain

    def _verify_then_handle(self, protocol: "PrimProtocol", request: Request, domain: str) -> defer.Deferred:
        """Verify that the peer serves ``domain`` (server-00 §9.1), then handle ``request`` (or 402)."""
        pending = self._verifying.get(domain)
        if pending is None:
            pending = self._verifying[domain] = self.gateway.verify_peer_domain(
                domain, self.peer_host, tls=bool(self.protocol is not None and self.protocol.tls))

            def settled(strength: Optional[str]) -> Optional[str]:
                self._verifying.pop(domain, None)
                if strength is not None:
                    self.domains.add(domain)
                    self.domain_strength[domain] = strength
                    self._authenticated_now()
                return strength

            pending.addCallback(settled)
        waiter: defer.Deferred = defer.Deferred()
        pending.addBoth(lambda result: (waiter.callback(result), result)[1])

        def proceed(strength: Optional[str]) -> Any:
            if strength is None:
                self.gateway.counters["spoofing_refused"] += 1
                log.warn("PRIM peer at {host} could not be verified as a server of {domain}: {method} refused",
                         host=self.peer_host, domain=domain, method=request.method)
                return wire.response_to(request, 402, phrase=f"Forbidden (not verified as a server of {domain})")
            return self.request_received(protocol, request)

        return waiter.addCallback(proceed)

    def _tls_names(self) -> tuple[str, ...]:
        """The domains the peer's certificate proves: only when we verified it against ``tls_ca``."""
        if self.protocol is None or not self.protocol.tls or not self.gateway.verifies_peers():
            return ()
        return certificate_names(self.protocol.peer_certificate())

    def _address_domain(self, value: Optional[str], header: str) -> tuple[str, str]:
        if not value:
            raise PrimError(f"the {header} header is missing")
        text = value.strip()
        if ":" in text.split("@", 1)[0]:
            text = text.split(":", 1)[1]
        user, at, domain = text.rpartition("@")
        if not at or not user or not domain:
            raise PrimError(f"{header}: {value!r} is not user@domain")
        return user, domain.lower().rstrip(".")

    def _check_peer(self, request: Request) -> Optional[wire.Response]:
        """server-00 §9.1: the peer must have proven the domain it speaks for."""
        _, from_domain = self._address_domain(request.header("From"), "From")
        if from_domain not in self.domains or self.gateway.is_local_domain(from_domain):
            self.gateway.counters["spoofing_refused"] += 1
            log.warn("PRIM peer proven for {domains} sent {method} from {domain}: refused",
                     domains=sorted(self.domains), method=request.method, domain=from_domain)
            return wire.response_to(request, 402, phrase=f"Forbidden (not authorised for {from_domain})")
        if request.header("To") is not None:
            _, to_domain = self._address_domain(request.header("To"), "To")
            if not self.gateway.serves(to_domain):
                return wire.response_to(request, 403, phrase=f"Resource Not Found (we do not serve {to_domain})")
        return None

    def _check_principal(self, request: Request) -> Optional[wire.Response]:
        """-01 §4.1: every request on a UA connection must pertain to its principal."""
        value = request.header("From")
        if value is None and request.method in ("GETACL", "GETCLASSTABLE", "STARTWATCHERNOTIFY", "STOPWATCHERNOTIFY",
                                                "LISTEN", "SILENCE"):
            return None
        user, domain = self._address_domain(value, "From")
        if (user, domain) != self.principal:
            return wire.response_to(request, 402, phrase="Forbidden (From is not the logged-in principal)")
        return None

    # -- connection commands

    def _starttls(self, request: Request) -> Any:
        if self.protocol is None or self.protocol.tls:
            return wire.response_to(request, 400, phrase="Bad Request (TLS is already active)")
        options = self.gateway.server_tls_options()
        if options is None:
            return wire.response_to(request, 501, phrase="Not Implemented (no TLS certificate configured)")
        self.protocol.respond(request, 200)
        self.protocol.start_tls(options)
        return None

    def _verify_server(self, request: Request) -> wire.Response:
        address = request.header("Server-Address")
        if not address:
            return wire.response_to(request, 400, phrase="Bad Request (Server-Address is missing)")
        if address.startswith("::") and address.count(".") == 3:
            address = address[2:]  # the draft's ip4-address ABNF ("::" + dotted quad)
        code = 200 if address in self.gateway.own_addresses() else 403
        return wire.response_to(request, code, [("Server-Address", address)])

    def _login(self, request: Request) -> Any:
        if self.authenticated:
            return wire.response_to(request, 409)
        if self.role == "outbound":
            return wire.response_to(request, 501, phrase="Not Implemented (LOGIN on an outbound connection)")
        state = (request.header("Auth-State") or "").lower()
        if self.role == "server":
            claim = (request.header("Domain") or "").lower().rstrip(".")
            echo = [("Domain", claim)]
        else:
            try:
                user, domain = self._address_domain(request.header("From"), "From")
            except PrimError as error:
                return wire.response_to(request, 400, phrase=f"Bad Request ({error.reason})")
            claim = f"{user}@{domain}"
            echo = [("From", request.header("From") or "")]
        if not claim:
            return wire.response_to(request, 400, phrase="Bad Request (LOGIN names no Domain/From)")
        if state == "abort":
            self.exchange = None
            return wire.response_to(request, 200, echo + [("Auth-State", "abort")])
        protocol = self.protocol
        assert protocol is not None
        if self.role == "server" and self.gateway.settings.s2s_require_tls and not protocol.tls:
            return self._login_failed(request, "TLS is required before LOGIN")
        if state == "init":
            if self.exchange is not None:
                return self._login_failed(request, "Auth-State: init in the middle of an exchange")
            if self.role == "client" and not self.gateway.is_local_domain(claim.rpartition("@")[2]):
                return self._login_failed(request, f"{claim} is not a user of a domain served here")
            self.login_claim = claim
            self.exchange = sasl.ServerExchange(
                secret_for=self._secret_lookup(),
                host=self.gateway.host_name,
                tls=protocol.tls,
                external_identities=self._tls_names() if self.role == "server" else (),
                mechanisms=tuple(self.gateway.settings.sasl_mechanisms),
            )
            try:
                mechanism, challenge = self.exchange.start(sasl.parse_mechanisms(request.header("SASL-Mech")))
            except sasl.SASLError as error:
                return self._login_failed(request, error.reason)
            headers = echo + [("Auth-State", "init"), ("SASL-Mech", mechanism)]
            if challenge:
                headers.append(("Content-Type", "text/plain"))
            return wire.response_to(request, 100, headers, challenge)
        if state == "continue":
            if self.exchange is None or claim != self.login_claim:
                return self._login_failed(request, "Auth-State: continue without a matching init")
            mechanisms = sasl.parse_mechanisms(request.header("SASL-Mech"))
            try:
                identity = self.exchange.finish(mechanisms[0] if mechanisms else "", request.body, claim)
            except sasl.SASLError as error:
                return self._login_failed(request, error.reason)
            mechanism = self.exchange.mechanism
            self.exchange = None
            self.link_strength = "strong" if mechanism == "EXTERNAL" else ("medium" if protocol.tls else "weak")
            self._authenticated_now()
            if self.role == "server":
                self.domains.add(identity.lower())
                log.info("PRIM peer authenticated for {domain} with {mech}", domain=identity, mech=mechanism)
                return wire.response_to(request, 200, echo + [("Auth-State", "continue")])
            user, _, domain = identity.rpartition("@")
            self.principal = (user, domain.lower())
            self.ua_id = f"ua{next(_ua_ids)}"
            self.service_version = request.version
            self.gateway.ua_logged_in(self)
            log.info("PRIM user agent {ua} logged in as {who}", ua=self.ua_id, who=identity)
            return wire.response_to(request, 200, echo + [("Auth-State", "continue"), ("User-Agent-ID", self.ua_id)])
        return wire.response_to(request, 400, phrase="Bad Request (Auth-State must be init, continue or abort)")

    def _secret_lookup(self) -> Callable[[str], Optional[str]]:
        if self.role == "server":
            return self.gateway.peer_secret
        return self.gateway.user_secret

    def _login_failed(self, request: Request, reason: str) -> None:
        """406 and close (-01 §13.1: the UA must not send anything else on this connection)."""
        self.gateway.counters["login_failed"] += 1
        account = request.header("From") or request.header("Domain") or self.login_claim or ""
        peer = peer_text(self.protocol.transport) if self.protocol is not None else (self.peer_host or "?")
        log.warn("PRIM LOGIN failed for {account} from {peer}: {reason}", reason=reason, account=account, peer=peer,
                 role=self.role, protocol="prim", condition="not-authorized", event="prim.login.failed")
        metrics.auth_failure("prim", self.role)
        assert self.protocol is not None
        self.protocol.respond(request, 406, phrase=f"Authentication Failed ({reason})")
        self.exchange = None
        self.protocol.close()
        return None


@defer.inlineCallbacks
def login_to_peer(protocol: "PrimProtocol", *, domain: str, mechanisms: list[str], secret: Optional[str]):  # type: ignore[no-untyped-def]
    """Run the client side of a server-00 §9.2 LOGIN on ``protocol``; ``Deferred[str]`` of the mechanism.

    :raise sasl.SASLError: when the peer refuses.
    """
    first = yield protocol.send_request("LOGIN", [("Domain", domain), ("Auth-State", "init"),
                                                  ("SASL-Mech", sasl.format_mechanisms(mechanisms))])
    if first.code == 409:
        return "already"
    if first.code not in (100, 200):
        raise sasl.SASLError(f"peer answered LOGIN init with {first.code} {first.reason}")
    chosen = sasl.parse_mechanisms(first.header("SASL-Mech"))
    if not chosen or chosen[0] not in mechanisms:
        raise sasl.SASLError(f"peer chose no mechanism we offered ({first.header('SASL-Mech')!r})")
    mechanism = chosen[0]
    body = sasl.client_response(mechanism, domain, secret, first.body)
    headers = [("Domain", domain), ("Auth-State", "continue"), ("SASL-Mech", mechanism)]
    if body:
        headers.append(("Content-Type", "text/plain"))
    second = yield protocol.send_request("LOGIN", headers, body)
    if second.code != 200:
        raise sasl.SASLError(f"peer refused LOGIN: {second.code} {second.reason}")
    return mechanism
