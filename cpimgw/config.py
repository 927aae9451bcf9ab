"""The gateway's configuration: TOML (``conf/cpimgw.toml``) read into typed, frozen settings.

Every table of the file has one settings class here; :func:`load_config`
reads a file (or none, for the built-in defaults) and validates every key.
Whatever is wrong -- an unknown key, a wrong type, a bad value, an adapter no
plugin provides, a TOML syntax error -- raises
:class:`cpimgw.cpim.errors.ConfigError` whose ``str()`` is ONE line naming
the file, the dotted key and what is wrong, e.g.::

    conf/x.toml: presence.max_duration: must be a positive integer, got "abc"

Adapters are found as ``IAdapterFactory`` plugins (``twisted.plugin``); the
``[adapters.NAME]`` table of each is merged over ``factory.defaults()`` and
handed to ``factory.build()`` by :mod:`cpimgw.service`.  The defaults follow
RFC 3859 §4.4.3 (subscription durations in seconds) and RFC 3860 §4.1
(MaxForwards "over one hundred").
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import types
from typing import Any, Iterable, Mapping

import attrs

from cpimgw.cpim.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
LOG_FORMATS = ("text", "json")
STORE_KINDS = ("sqlite", "memory", "redis")
PRESENCE_POLICIES = ("allow", "same-domain", "deny")
MESSAGE_POLICIES = ("allow", "deny")

_FROZEN_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


@attrs.frozen
class GatewaySettings:
    """``[gateway]``: who this gateway is and where it keeps its files."""

    name: str = "cpimgw"
    data_dir: str = "."
    log_level: str = "info"
    status_port: int = 0
    #: The address the operators' endpoint binds (loopback unless the operator says otherwise).
    status_address: str = "127.0.0.1"
    #: ``text`` (twistd's lines) or ``json`` (one JSON object per line).
    log_format: str = "text"
    #: Processes under one twistd sharing the listening ports (SO_REUSEPORT);
    #: more than one needs the shared store (``[store] kind = "redis"``).
    workers: int = 1


@attrs.frozen
class StoreSettings:
    """``[store]``: what must survive a restart (subscriptions, presence, duplicate keys)."""

    kind: str = "sqlite"
    path: str = "cpimgw.sqlite"
    #: ``kind = "redis"``: the server every node shares, and the prefix of its keys.
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "cpimgw:"


@attrs.frozen
class ClusterSettings:
    """``[cluster]`` (with ``[store] kind = "redis"``): this node's id and the timings, in seconds,
    of its heartbeat, of the registry, of stream failover and of the expiry sweep."""

    node: str = ""
    heartbeat: float = 1.0
    node_timeout: float = 5.0
    claim_idle: float = 3.0
    forward_timeout: float = 15.0
    sweep_interval: float = 1.0
    batch: int = 200

    def node_id(self, gateway_name: str) -> str:
        """The node id: ``node`` when set, else ``<host>/<gateway name>``."""
        import socket

        return self.node or f"{socket.gethostname()}/{gateway_name}"


@attrs.frozen
class RoutingSettings:
    """``[routing]``: domain -> adapter name, then RFC 3861 SRV lookup when ``srv_fallback``."""

    domains: Mapping[str, str] = _FROZEN_EMPTY
    srv_fallback: bool = True


@attrs.frozen
class BusSettings:
    """``[bus]``: duplicate suppression and loop guard (RFC 3860 §4.1 MaxForwards)."""

    duplicate_ttl: float = 86400.0
    max_forwards: int = 120


@attrs.frozen
class PresenceSettings:
    """``[presence]``: subscription durations in seconds (RFC 3859 §4.4.3)."""

    default_duration: int = 3600
    max_duration: int = 86400


@attrs.frozen
class PolicySettings:
    """``[policy]``: who may message whom and who may see whom."""

    presence: str = "allow"
    message: str = "allow"
    allow_domains: tuple[str, ...] = ()
    deny_domains: tuple[str, ...] = ()


@attrs.frozen
class TLSSettings:
    """``[tls]``: the gateway's certificate for every adapter that speaks TLS.

    Empty paths mean "none": no certificate of our own, and the platform's
    trust roots for verifying peers.
    """

    certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    verify: bool = True


@attrs.frozen
class AdapterSettings:
    """``[adapters.NAME]``: one adapter, its settings merged over its factory's defaults.

    ``settings`` is what ``factory.build(settings, bus)`` receives (without
    ``enabled``).
    """

    name: str
    enabled: bool
    settings: Mapping[str, Any] = _FROZEN_EMPTY


@attrs.frozen
class Config:
    """The whole configuration.  ``path`` is where it was read from (``None`` = built-in)."""

    gateway: GatewaySettings = GatewaySettings()
    store: StoreSettings = StoreSettings()
    routing: RoutingSettings = RoutingSettings()
    bus: BusSettings = BusSettings()
    presence: PresenceSettings = PresenceSettings()
    policy: PolicySettings = PolicySettings()
    tls: TLSSettings = TLSSettings()
    adapters: tuple[AdapterSettings, ...] = ()
    path: str | None = attrs.field(default=None, eq=False)
    cluster: ClusterSettings = ClusterSettings()

    def adapter(self, name: str) -> AdapterSettings | None:
        """The settings of the adapter called ``name``, or ``None``."""
        for adapter in self.adapters:
            if adapter.name == name:
                return adapter
        return None

    @property
    def store_path(self) -> str:
        """The SQLite file: ``store.path`` relative to ``gateway.data_dir``."""
        return os.path.join(self.gateway.data_dir, self.store.path)


# ---------------------------------------------------------------------------
# adapter factories


def find_adapter_factories() -> dict[str, Any]:
    """Every ``IAdapterFactory`` plugin installed, by name (the first of a name wins)."""
    from twisted.plugin import getPlugins

    from cpimgw.interfaces import IAdapterFactory

    found: dict[str, Any] = {}
    for factory in getPlugins(IAdapterFactory):
        found.setdefault(factory.name, factory)
    return dict(sorted(found.items()))


def _factories(factories: Mapping[str, Any] | Iterable[Any] | None) -> dict[str, Any]:
    if factories is None:
        return find_adapter_factories()
    if isinstance(factories, Mapping):
        return dict(factories)
    return {factory.name: factory for factory in factories}


# ---------------------------------------------------------------------------
# validation helpers: each returns the value or raises one ConfigError


def show(value: object) -> str:
    """A value as an operator wrote it in TOML (strings in double quotes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "a table"
    return str(value)


class _Reader:
    """Reads one table of the file, remembering the file name for errors."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(reason, path=self.path, key=key)

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {show(value)}")
        return value

    def no_unknown(self, table: Mapping[str, Any], prefix: str, known: Iterable[str]) -> None:
        known = list(known)
        for key in table:
            if key not in known:
                raise self.error(
                    f"{prefix}.{key}" if prefix else key,
                    f"unknown key (known: {', '.join(known)})",
                )

    def string(self, table: Mapping[str, Any], prefix: str, key: str, default: str, *, empty: bool = True) -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.error(f"{prefix}.{key}", f"must be a string, got {show(value)}")
        if not empty and not value:
            raise self.error(f"{prefix}.{key}", "must not be empty")
        return value

    def choice(self, table: Mapping[str, Any], prefix: str, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or value not in choices:
            raise self.error(
                f"{prefix}.{key}",
                "must be one of " + ", ".join(f'"{c}"' for c in choices) + f", got {show(value)}",
            )
        return value

    def boolean(self, table: Mapping[str, Any], prefix: str, key: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{prefix}.{key}", f"must be true or false, got {show(value)}")
        return value

    def positive_int(self, table: Mapping[str, Any], prefix: str, key: str, default: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.error(f"{prefix}.{key}", f"must be a positive integer, got {show(value)}")
        return value

    def port(self, table: Mapping[str, Any], prefix: str, key: str, default: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise self.error(f"{prefix}.{key}", f"must be a port number from 0 to 65535, got {show(value)}")
        return value

    def ip_address(self, table: Mapping[str, Any], prefix: str, key: str, default: str) -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.error(f"{prefix}.{key}", f"must be an IPv4 or IPv6 address, got {show(value)}")
        import ipaddress

        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise self.error(f"{prefix}.{key}", f"must be an IPv4 or IPv6 address, got {show(value)}") from None

    def positive_number(self, table: Mapping[str, Any], prefix: str, key: str, default: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
            raise self.error(f"{prefix}.{key}", f"must be a positive number of seconds, got {show(value)}")
        return float(value)

    def domains(self, table: Mapping[str, Any], prefix: str, key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list):
            raise self.error(f"{prefix}.{key}", f"must be a list of domain names, got {show(value)}")
        result = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not _DOMAIN.match(item):
                raise self.error(f"{prefix}.{key}[{index}]", f"must be a domain name, got {show(item)}")
            result.append(item.lower().rstrip("."))
        return tuple(result)


_DOMAIN = re.compile(r"^(?=.{1,253}\.?$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def _default(cls: type, name: str) -> Any:
    return getattr(attrs.fields(cls), name).default


def _same_type(default: object, value: object) -> bool:
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, Mapping):
        return isinstance(value, Mapping)
    return isinstance(value, type(default))


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _type_word(default: object) -> str:
    for kind, word in _TYPE_WORDS.items():
        if type(default) is kind:
            return word
    if isinstance(default, (list, tuple)):
        return "a list"
    if isinstance(default, Mapping):
        return "a table"
    return type(default).__name__


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


# ---------------------------------------------------------------------------
# the tables


def _read(data: Mapping[str, Any], path: str | None, factories: Mapping[str, Any]) -> Config:
    r = _Reader(path)
    r.no_unknown(data, "", ("gateway", "store", "routing", "bus", "presence", "policy", "tls", "adapters",
                            "cluster"))

    t = r.table(data, "gateway")
    r.no_unknown(t, "gateway", ("name", "data_dir", "log_level", "status_port", "status_address", "log_format",
                                "workers"))
    gateway = GatewaySettings(
        name=r.string(t, "gateway", "name", _default(GatewaySettings, "name"), empty=False),
        data_dir=r.string(t, "gateway", "data_dir", _default(GatewaySettings, "data_dir"), empty=False),
        log_level=r.choice(t, "gateway", "log_level", _default(GatewaySettings, "log_level"), LOG_LEVELS),
        status_port=r.port(t, "gateway", "status_port", _default(GatewaySettings, "status_port")),
        status_address=r.ip_address(t, "gateway", "status_address", _default(GatewaySettings, "status_address")),
        log_format=r.choice(t, "gateway", "log_format", _default(GatewaySettings, "log_format"), LOG_FORMATS),
        workers=r.positive_int(t, "gateway", "workers", _default(GatewaySettings, "workers")),
    )

    t = r.table(data, "store")
    r.no_unknown(t, "store", ("kind", "path", "url", "prefix"))
    store = StoreSettings(
        kind=r.choice(t, "store", "kind", _default(StoreSettings, "kind"), STORE_KINDS),
        path=r.string(t, "store", "path", _default(StoreSettings, "path"), empty=False),
        url=r.string(t, "store", "url", _default(StoreSettings, "url"), empty=False),
        prefix=r.string(t, "store", "prefix", _default(StoreSettings, "prefix")),
    )
    if store.kind == "redis":
        from cpimgw.store.redis import parse_redis_url

        try:
            parse_redis_url(store.url)
        except ConfigError as error:
            raise r.error("store.url", error.reason) from None
    if gateway.workers > 1 and store.kind != "redis":
        raise r.error("gateway.workers", f"{gateway.workers} workers need the shared store "
                      f'([store] kind = "redis"), not {show(store.kind)}')

    t = r.table(data, "cluster")
    r.no_unknown(t, "cluster", ("node", "heartbeat", "node_timeout", "claim_idle", "forward_timeout",
                                "sweep_interval", "batch"))
    cluster = ClusterSettings(
        node=r.string(t, "cluster", "node", ""),
        heartbeat=r.positive_number(t, "cluster", "heartbeat", _default(ClusterSettings, "heartbeat")),
        node_timeout=r.positive_number(t, "cluster", "node_timeout", _default(ClusterSettings, "node_timeout")),
        claim_idle=r.positive_number(t, "cluster", "claim_idle", _default(ClusterSettings, "claim_idle")),
        forward_timeout=r.positive_number(t, "cluster", "forward_timeout",
                                          _default(ClusterSettings, "forward_timeout")),
        sweep_interval=r.positive_number(t, "cluster", "sweep_interval",
                                         _default(ClusterSettings, "sweep_interval")),
        batch=r.positive_int(t, "cluster", "batch", _default(ClusterSettings, "batch")),
    )
    if cluster.node_timeout <= cluster.heartbeat:
        raise r.error("cluster.node_timeout", f"must be longer than cluster.heartbeat ({cluster.heartbeat:g})")

    t = r.table(data, "bus")
    r.no_unknown(t, "bus", ("duplicate_ttl", "max_forwards"))
    bus = BusSettings(
        duplicate_ttl=r.positive_number(t, "bus", "duplicate_ttl", _default(BusSettings, "duplicate_ttl")),
        max_forwards=r.positive_int(t, "bus", "max_forwards", _default(BusSettings, "max_forwards")),
    )
    if bus.max_forwards > 255:
        raise r.error("bus.max_forwards", f"must be at most 255, got {bus.max_forwards}")

    t = r.table(data, "presence")
    r.no_unknown(t, "presence", ("default_duration", "max_duration"))
    presence = PresenceSettings(
        default_duration=r.positive_int(t, "presence", "default_duration", _default(PresenceSettings, "default_duration")),
        max_duration=r.positive_int(t, "presence", "max_duration", _default(PresenceSettings, "max_duration")),
    )
    if presence.default_duration > presence.max_duration:
        raise r.error(
            "presence.default_duration",
            f"must not exceed presence.max_duration ({presence.max_duration}), got {presence.default_duration}",
        )

    t = r.table(data, "policy")
    r.no_unknown(t, "policy", ("presence", "message", "allow_domains", "deny_domains"))
    policy = PolicySettings(
        presence=r.choice(t, "policy", "presence", _default(PolicySettings, "presence"), PRESENCE_POLICIES),
        message=r.choice(t, "policy", "message", _default(PolicySettings, "message"), MESSAGE_POLICIES),
        allow_domains=r.domains(t, "policy", "allow_domains"),
        deny_domains=r.domains(t, "policy", "deny_domains"),
    )

    t = r.table(data, "tls")
    r.no_unknown(t, "tls", ("certificate", "private_key", "ca_certificates", "verify"))
    tls = TLSSettings(
        certificate=r.string(t, "tls", "certificate", ""),
        private_key=r.string(t, "tls", "private_key", ""),
        ca_certificates=r.string(t, "tls", "ca_certificates", ""),
        verify=r.boolean(t, "tls", "verify", True),
    )
    if bool(tls.certificate) != bool(tls.private_key):
        missing = "tls.private_key" if tls.certificate else "tls.certificate"
        raise r.error(missing, "must be set when the other of certificate/private_key is set")

    adapters = _read_adapters(r, r.table(data, "adapters"), factories)

    t = r.table(data, "routing")
    r.no_unknown(t, "routing", ("domains", "srv_fallback"))
    names = [a.name for a in adapters]
    table = t.get("domains", {})
    if not isinstance(table, dict):
        raise r.error("routing.domains", f"must be a table, got {show(table)}")
    domains: dict[str, str] = {}
    for domain, adapter in table.items():
        key = f"routing.domains.{json.dumps(domain)}"
        if not _DOMAIN.match(domain):
            raise r.error(key, "is not a domain name")
        if not isinstance(adapter, str):
            raise r.error(key, f"must be an adapter name, got {show(adapter)}")
        if adapter not in names:
            known = ", ".join(names) if names else "none installed"
            raise r.error(key, f"unknown adapter {show(adapter)} (known: {known})")
        domains[domain.lower().rstrip(".")] = adapter
    routing = RoutingSettings(
        domains=types.MappingProxyType(domains),
        srv_fallback=r.boolean(t, "routing", "srv_fallback", True),
    )

    return Config(gateway, store, routing, bus, presence, policy, tls, adapters, path, cluster)


def _read_adapters(r: _Reader, tables: Mapping[str, Any], factories: Mapping[str, Any]) -> tuple[AdapterSettings, ...]:
    for name, table in tables.items():
        if name not in factories:
            known = ", ".join(factories) if factories else "none installed"
            raise r.error(f"adapters.{name}", f"unknown adapter (installed: {known})")
        if not isinstance(table, dict):
            raise r.error(f"adapters.{name}", f"must be a table, got {show(table)}")
    result = []
    for name, factory in factories.items():
        defaults = dict(factory.defaults())
        enabled_default = defaults.pop("enabled", True)
        table = dict(tables.get(name, {}))
        enabled = r.boolean(table, f"adapters.{name}", "enabled", enabled_default)
        table.pop("enabled", None)
        for key, value in table.items():
            dotted = f"adapters.{name}.{key}"
            if key not in defaults:
                known = ", ".join(["enabled", *defaults])
                raise r.error(dotted, f"unknown key (known: {known})")
            if not _same_type(defaults[key], value):
                raise r.error(dotted, f"must be {_type_word(defaults[key])}, got {show(value)}")
        merged = {**defaults, **table}
        result.append(AdapterSettings(name, enabled, _freeze(merged)))
    return tuple(result)


_TOML_WHERE = re.compile(r"^(?P<what>.*?)\s*\(at line (?P<line>\d+), column (?P<column>\d+)\)$")
_TOML_AT_END = re.compile(r"^(?P<what>.*?)\s*\(at end of document\)$")


def parse_toml(text: str, path: str | None) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes one ``ConfigError`` naming the line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = _TOML_WHERE.match(message)
        at_end = _TOML_AT_END.match(message)
        if match:
            reason = f"line {match['line']}, column {match['column']}: TOML syntax error: {match['what']}"
        elif at_end:
            lines = text.split("\n")
            reason = f"line {len(lines)}, column {len(lines[-1]) + 1}: TOML syntax error: {at_end['what']} at the end"
        else:
            reason = f"TOML syntax error: {message}"
        raise ConfigError(reason, path=path) from None


def from_mapping(
    data: Mapping[str, Any], path: str | None = None, *, factories: Mapping[str, Any] | Iterable[Any] | None = None
) -> Config:
    """Validate an already parsed TOML document into a :class:`Config`."""
    return _read(data, path, _factories(factories))


def load_config(path: str | os.PathLike[str] | None = None, *, factories: Mapping[str, Any] | Iterable[Any] | None = None) -> Config:
    """Read and validate the configuration file at ``path`` (``None``: the built-in defaults).

    :param factories: the adapter factories to know (by name or as an
        iterable); ``None`` finds the installed ``IAdapterFactory`` plugins.
    :raise ConfigError: one line naming the file, the dotted key and what is wrong.
    """
    if path is None:
        return from_mapping({}, None, factories=factories)
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except IsADirectoryError:
        raise ConfigError("cannot read: is a directory", path=path) from None
    except OSError as error:
        raise ConfigError(f"cannot read: {error.strerror or error}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"not UTF-8 at offset {error.start}", path=path) from None
    return from_mapping(parse_toml(text, path), path, factories=factories)


def defaults(*, factories: Mapping[str, Any] | Iterable[Any] | None = None) -> Config:
    """The built-in configuration (what ``twistd -n cpimgw`` runs without ``--config``)."""
    return load_config(None, factories=factories)
