"""Domain -> adapter routing: the static table, then RFC 3861 SRV resolution.

- :class:`StaticRoutes` is the operator's ``[routes]`` table (domain ->
  adapter name).  Lookups ignore case and a trailing dot; a key that starts
  with ``"."`` also matches every subdomain (the longest matching key wins).
- :class:`SRVResolver` provides ``IResolver`` with ``twisted.names``: for
  each protocol label in the order given (RFC 3861 §3 "clients supporting
  several protocols try their labels in an application-chosen order"), it
  queries ``_im.<label>.<domain>`` and then ``_pres.<label>.<domain>``; the
  first label with SRV answers wins; NXDOMAIN, an empty answer or a timeout
  moves on to the next label.
- :func:`order_srv` orders SRV targets by RFC 2782 priority and weight
  (RFC 3861 §4 asks to apply those rules and be able to try each target in
  order); :meth:`SRVResolver.next_hops` gives an adapter its ordered list of
  ``(host, port)`` next hops, with the RFC 3861 implicit SRV (the domain
  itself) when a domain has an address but no SRV record.
"""

from __future__ import annotations

import random
from typing import Iterable, Mapping, Sequence

import attrs
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from twisted.names import dns
from zope.interface import implementer

from cpimgw.cpim.errors import ConfigError
from cpimgw.interfaces import IResolver

log = Logger()

#: RFC 3861 §3: the two SRV services of an instant messaging / presence domain.
SERVICES = ("_im", "_pres")


def normalise_domain(domain: str) -> str:
    """A domain in routing form: lower case, no trailing dot."""
    return domain.lower().rstrip(".")


class StaticRoutes:
    """The operator's routing table: domain -> adapter name.

    :param table: ``{"example.com": "xmpp", ".sip.example.net": "sip"}``;
        a key starting with ``"."`` matches the subdomains of the rest
        (not the bare domain), any other key only that domain.
    :raise ConfigError: for an empty key or a value that is not a name.
    """

    def __init__(self, table: Mapping[str, str] | None = None) -> None:
        self._exact: dict[str, str] = {}
        self._suffixes: list[tuple[str, str]] = []
        for key, name in dict(table or {}).items():
            if not isinstance(key, str) or not key.strip("."):
                raise ConfigError(f"{key!r} is not a domain", key="routes")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"the route of {key!r} must name an adapter", key=f"routes.{key}")
            if key.startswith("."):
                self._suffixes.append(("." + normalise_domain(key.lstrip(".")), name))
            else:
                self._exact[normalise_domain(key)] = name
        # Longest suffix first, so the most specific entry wins.
        self._suffixes.sort(key=lambda item: len(item[0]), reverse=True)

    def lookup(self, domain: str) -> str | None:
        """The adapter name the table gives ``domain``, or ``None``."""
        domain = normalise_domain(domain)
        name = self._exact.get(domain)
        if name is not None:
            return name
        for suffix, name in self._suffixes:
            if domain.endswith(suffix):
                return name
        return None

    def __contains__(self, domain: str) -> bool:
        return self.lookup(domain) is not None

    def __len__(self) -> int:
        return len(self._exact) + len(self._suffixes)

    def items(self) -> list[tuple[str, str]]:
        """The table, as given (suffix keys with their leading dot)."""
        return list(self._exact.items()) + list(self._suffixes)


@attrs.frozen
class SRVTarget:
    """One SRV record's data (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: str


def order_srv(records: Iterable[SRVTarget], rng: random.Random | None = None) -> list[SRVTarget]:
    """Order SRV targets as RFC 2782 says a client tries them.

    Lowest priority first; within one priority, repeatedly pick a record at
    random with probability proportional to its weight (records of weight 0
    first in the running sum, so they are picked rarely but can be).  A
    single target of ``"."`` means "service decidedly not available" and
    gives an empty list.

    :param rng: the source of randomness (pass a seeded ``random.Random`` in
        tests); the module's generator by default.
    """
    rng = rng or random.Random()
    records = list(records)
    if len(records) == 1 and records[0].target.rstrip(".") == "":
        return []
    result: list[SRVTarget] = []
    for priority in sorted({record.priority for record in records}):
        group = [record for record in records if record.priority == priority]
        # RFC 2782: "arrange all SRV RRs (that have not been ordered yet) in
        # any order, except that all those with weight 0 are placed at the
        # beginning of the list".
        group.sort(key=lambda record: record.weight != 0)
        while group:
            total = sum(record.weight for record in group)
            chosen = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= chosen:
                    result.append(group.pop(index))
                    break
    return result


def _srv_targets(answers: Sequence[dns.RRHeader], name: str) -> list[SRVTarget]:
    found = []
    for answer in answers:
        if answer.type == dns.SRV and isinstance(answer.payload, dns.Record_SRV):
            payload = answer.payload
            found.append(SRVTarget(payload.priority, payload.weight, payload.port, payload.target.name.decode("ascii")))
    return found


@implementer(IResolver)
class SRVResolver:
    """RFC 3861 resolution with ``twisted.names``.

    :param resolver: an ``IResolver`` of ``twisted.names`` (the system's
        ``client.createResolver()`` by default, built on first use).
    :param timeout: the query timeouts passed to ``lookupService`` (a tuple
        of seconds; one try of 2 s by default).
    """

    def __init__(self, resolver: object = None, timeout: Sequence[int] = (2,)) -> None:
        self._resolver = resolver
        self.timeout = tuple(timeout)

    @property
    def resolver(self) -> object:
        if self._resolver is None:
            from twisted.names import client

            self._resolver = client.createResolver()
        return self._resolver

    @inlineCallbacks
    def _lookup(self, name: str):  # type: ignore[no-untyped-def]
        try:
            answers, _authority, _additional = yield self.resolver.lookupService(name, timeout=self.timeout)
        except Exception as error:  # NXDOMAIN, timeout, refused, server failure: try the next name
            log.debug("SRV {name} not usable: {error}", name=name, error=error)
            return []
        return _srv_targets(answers, name)

    @inlineCallbacks
    def resolve(self, domain: str, labels: Iterable[str]):  # type: ignore[no-untyped-def]
        """``Deferred[str | None]``: the first label with an ``_im`` or ``_pres`` SRV record."""
        domain = normalise_domain(domain)
        for label in labels:
            for service in SERVICES:
                targets = yield self._lookup(f"{service}.{label}.{domain}")
                if targets:
                    log.debug("RFC 3861: {domain} reached with {label} ({service})",
                              domain=domain, label=label, service=service)
                    return label
        return None

    @inlineCallbacks
    def next_hops(  # type: ignore[no-untyped-def]
        self, domain: str, label: str, service: str = "_im", default_port: int | None = None,
        rng: random.Random | None = None,
    ):
        """``Deferred[list[tuple[str, int]]]``: the next hops for ``domain`` over ``label``, in order.

        The SRV targets of ``<service>.<label>.<domain>`` ordered by
        :func:`order_srv`; with no SRV record and ``default_port`` given, the
        RFC 3861 implicit SRV ``[(domain, default_port)]`` if the domain has
        an address record; otherwise ``[]``.
        """
        domain = normalise_domain(domain)
        targets = yield self._lookup(f"{service}.{label}.{domain}")
        if targets:
            return [(target.target.rstrip("."), target.port) for target in order_srv(targets, rng)]
        if default_port is None:
            return []
        try:
            yield self.resolver.getHostByName(domain, timeout=self.timeout)
        except Exception as error:
            log.debug("no address for {domain}: {error}", domain=domain, error=error)
            return []
        return [(domain, default_port)]


__all__ = ["StaticRoutes", "SRVResolver", "SRVTarget", "order_srv", "normalise_domain", "SERVICES"]
