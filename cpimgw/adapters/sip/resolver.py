"""Where to send a SIP request: outbound proxy, static routes, or RFC 3263.

Order of decision (RFC 3263 §4 as we apply it, digest §6.5/§8.1):

1. a configured outbound proxy takes everything (RFC 3261 §8.1.2);
2. a static route for the target domain (config ``routes``); over TLS the
   server's certificate must name that SIP domain (RFC 5922 §4);
3. a numeric host: the ``transport`` URI parameter (else UDP, TLS for
   ``sips:``), the port given or 5060/5061;
4. a port given: A/AAAA of the host with that port;
5. NAPTR (``SIP+D2U``, ``SIP+D2T``, ``SIPS+D2T``) ordered by order and
   preference, then SRV of the replacement; without NAPTR, SRV
   ``_sips._tcp`` / ``_sip._tcp`` / ``_sip._udp`` for the transports we run;
   without SRV, A of the host on the default port over UDP (TLS for sips:).

Lookups go through a ``twisted.names`` resolver (``twisted.names.client``
by default), each bounded by the resolver's own timeouts.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.names import dns
from twisted.names.error import DNSNameError, DomainError

from cpimgw.cpim.errors import ConfigError
from cpimgw.adapters.sip.transport import DEFAULT_PORTS, Target
from cpimgw.adapters.sip.wire import SipParseError, SipURI, parse_sip_uri

log = Logger()

_NAPTR_SERVICES = {"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}
_SRV_PREFIX = {"UDP": "_sip._udp.", "TCP": "_sip._tcp.", "TLS": "_sips._tcp."}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def target_from_uri(uri: SipURI | str, default_transport: str = "UDP") -> Target | None:
    """A Target when the URI says everything (numeric host); ``None`` when DNS is needed."""
    parsed = parse_sip_uri(uri) if isinstance(uri, str) else uri
    transport = (parsed.param("transport") or "").upper() or ("TLS" if parsed.secure else default_transport)
    if parsed.secure and transport == "TCP":
        transport = "TLS"
    if not _is_ip(parsed.host):
        return None
    port = parsed.port or DEFAULT_PORTS.get(transport, 5060)
    return Target(transport, parsed.host.strip("[]"), port)


def parse_route(text: str, what: str = "outbound_proxy") -> Target:
    """A config route: ``sip:host[:port][;transport=tcp]`` with a numeric host."""
    try:
        target = target_from_uri(text if text.startswith(("sip:", "sips:")) else "sip:" + text)
    except SipParseError as error:
        raise ConfigError(f"bad SIP URI {text!r}: {error.reason}", key=what) from None
    if target is None:
        raise ConfigError(f"{text!r} must name a numeric address (127.0.0.1, [::1])", key=what)
    return target


class SipResolver:
    """Resolve a Request-URI to the ordered list of :class:`Target` to try."""

    def __init__(
        self,
        *,
        outbound_proxy: Target | None = None,
        routes: Mapping[str, Target] | None = None,
        transports: tuple[str, ...] = ("UDP", "TCP"),
        dns_resolver: Any = None,
        use_dns: bool = True,
    ) -> None:
        self.outbound_proxy = outbound_proxy
        self.routes = {k.lower(): v for k, v in (routes or {}).items()}
        self.transports = tuple(t.upper() for t in transports)
        self._dns = dns_resolver
        self.use_dns = use_dns

    @property
    def dns(self) -> Any:
        if self._dns is None:
            from twisted.names import client

            self._dns = client.createResolver()
        return self._dns

    def resolve(self, uri: str) -> Deferred[list[Target]]:
        """The targets for ``uri``, in the order to try them (no DNS for the first three cases)."""
        try:
            static = self._static(uri)
        except Exception:
            return Deferred.fromCoroutine(self._resolve(uri))  # the same error, as an errback
        if static is not None:
            return succeed(static)
        return Deferred.fromCoroutine(self._resolve(uri))

    def _static(self, uri: str) -> list[Target] | None:
        """Proxy, route or numeric host: the answer without DNS; ``None`` when DNS decides."""
        if self.outbound_proxy is not None:
            return [self.outbound_proxy]
        parsed = parse_sip_uri(uri)
        route = self.routes.get(parsed.domain)
        if route is not None:
            # A static route serves that SIP domain: TLS checks the domain (RFC 5922 §4).
            if route.transport == "TLS" and not route.server_name:
                route = attrs.evolve(route, server_name=parsed.host)
            return [route]
        direct = target_from_uri(parsed, self.transports[0] if self.transports else "UDP")
        if direct is not None:
            return [direct]
        if not self.use_dns:
            return []
        return None

    async def _resolve(self, uri: str) -> list[Target]:
        static = self._static(uri)
        if static is not None:
            return static
        parsed = parse_sip_uri(uri)
        host = parsed.host
        wanted = (parsed.param("transport") or "").upper() or None
        if parsed.port is not None:
            transport = wanted or ("TLS" if parsed.secure else "UDP")
            return await self._addresses(host, parsed.port, transport)
        services: list[tuple[str, str]] = []
        if wanted is None:
            services = await self._naptr(host, parsed.secure)
        if not services:
            order = ["TLS"] if parsed.secure else [t for t in ("TLS", "TCP", "UDP") if t in self.transports]
            if wanted:
                order = [wanted]
            services = [(t, _SRV_PREFIX[t] + host) for t in order if t in _SRV_PREFIX]
        targets: list[Target] = []
        for transport, name in services:
            targets += await self._srv(name, transport, host)
        if targets:
            return targets
        transport = wanted or ("TLS" if parsed.secure else "UDP")
        return await self._addresses(host, DEFAULT_PORTS.get(transport, 5060), transport)

    async def _naptr(self, host: str, secure: bool) -> list[tuple[str, str]]:
        try:
            answers, _, _ = await self.dns.lookupNamingAuthorityPointer(host)
        except (DNSNameError, DomainError, NotImplementedError):
            return []
        except Exception as error:
            log.info("NAPTR lookup of {host} failed: {error}", host=host, error=error)
            return []
        records = sorted(
            (r.payload for r in answers if r.type == dns.NAPTR),
            key=lambda p: (p.order, p.preference),
        )
        services = []
        for payload in records:
            service = getattr(payload.service, "string", payload.service)
            transport = _NAPTR_SERVICES.get(bytes(service).decode("ascii", "replace").upper())
            if transport is None or transport not in self.transports:
                continue
            if secure and transport != "TLS":
                continue
            services.append((transport, payload.replacement.name.decode("ascii")))
        return services

    async def _srv(self, name: str, transport: str, server_name: str) -> list[Target]:
        try:
            answers, _, _ = await self.dns.lookupService(name)
        except (DNSNameError, DomainError):
            return []
        except Exception as error:
            log.info("SRV lookup of {name} failed: {error}", name=name, error=error)
            return []
        records = sorted((r.payload for r in answers if r.type == dns.SRV), key=lambda p: (p.priority, -p.weight))
        targets: list[Target] = []
        for payload in records:
            targets += await self._addresses(payload.target.name.decode("ascii"), payload.port, transport, server_name)
        return targets

    async def _addresses(self, host: str, port: int, transport: str, server_name: str | None = None) -> list[Target]:
        if _is_ip(host):
            return [Target(transport, host, port, server_name)]
        try:
            address = await self.dns.getHostByName(host)
        except Exception as error:
            log.info("A lookup of {host} failed: {error}", host=host, error=error)
            return []
        return [Target(transport, address, port, server_name or host)]


__all__ = ["SipResolver", "target_from_uri", "parse_route"]
