"""Builds the running gateway from a loaded :class:`cpimgw.config.Config`.

:func:`make_service` returns one Twisted ``MultiService``
(:class:`GatewayService`) holding the store, the policy, the routes, the
RFC 3861 resolver, the :class:`cpimgw.bus.Bus` and every enabled adapter
(built by its ``IAdapterFactory`` plugin, design.md §3) as child services.

Starting is asynchronous and ordered: open the operators' status endpoint
when ``[gateway] status_port`` is set (``/status`` JSON, ``/health``,
``/metrics`` for Prometheus; on ``status_address``, 127.0.0.1 by default),
start the bus -- which opens the store
first, then reloads the subscriptions and re-arms the presence timers
(RFC 3859 §4.4.3) -- then start the adapters one after the other.  A step that fails is logged with what failed and why, what
had started is stopped again, and ``on_start_failure`` is called -- by
default that stops the reactor and makes the process exit with status 1, so
``twistd`` never hangs on a half-started gateway.  Stopping is the reverse:
adapters (last started first), then the bus, which closes the store.

Garbage collector (issue 2, measured with ``benchmarks/bench_bus.py`` and a
heap of long-lived state): once everything has started, a gateway built with
``freeze_gc`` (the default of :func:`make_service` on the global reactor,
i.e. under ``twistd``) collects once and then ``gc.freeze()``-s what startup
allocated -- modules, configuration, adapters, reloaded subscriptions -- so
that the collector's full passes no longer walk it, and raises the
generation-0 threshold from CPython's 700 to :data:`GC_GEN0_THRESHOLD`
(fewer young collections for the per-message Deferreds and operations).
Stopping unfreezes and restores the thresholds.  See :func:`tune_gc`.

Under twistd the gateway also re-reads its configuration file on SIGHUP
(:meth:`GatewayService.reload`: routing and policy tables, TLS certificates;
no connection is dropped, a broken file is refused with one log line), and
writes its log as one JSON object per line with ``[gateway] log_format =
"json"`` (:mod:`cpimgw.logs`).
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any, Callable, Iterable, Mapping

import attrs

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)
from twisted.python.failure import Failure

from cpimgw.config import Config, find_adapter_factories
from cpimgw.cpim.errors import ConfigError

log = Logger(namespace="cpimgw.service")

#: The process exit status when the gateway fails to start.
START_FAILURE_EXIT_CODE = 1

#: The only address the operators' status endpoint (``[gateway] status_port``) binds.
STATUS_INTERFACE = "127.0.0.1"

#: The generation-0 collection threshold a started gateway sets (CPython's default is 700).
GC_GEN0_THRESHOLD = 2000


def tune_gc(gen0_threshold: int = GC_GEN0_THRESHOLD) -> tuple[int, tuple[int, int, int]]:
    """Collect, freeze every object alive now, and raise the generation-0 threshold.

    Meant to be called once startup's allocations are done: the frozen
    objects move to the permanent generation, which collections never walk
    (they are still freed by reference counting).  The threshold is only
    ever raised, never lowered, and the older generations' are kept.

    :param gen0_threshold: the generation-0 threshold to set (at least 1).
    :return: how many objects are frozen, and the thresholds before (for
        :func:`untune_gc`).
    :raise ValueError: ``gen0_threshold`` is below 1.
    """
    if gen0_threshold < 1:
        raise ValueError(f"gen0_threshold must be at least 1, got {gen0_threshold!r}")
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    if gen0_threshold > before[0]:
        gc.set_threshold(gen0_threshold, before[1], before[2])
    return gc.get_freeze_count(), before


def untune_gc(thresholds: tuple[int, int, int]) -> None:
    """Undo :func:`tune_gc`: unfreeze (the objects become collectable again) and restore ``thresholds``."""
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def make_store(config: Config) -> Any:
    """The ``IStore`` of ``[store]``: SQLite under ``gateway.data_dir``, in memory, or on Redis."""
    if config.store.kind == "redis":
        from cpimgw.store.redis import RedisStore

        return RedisStore(config.store.url, prefix=config.store.prefix)
    if config.store.kind == "memory":
        from cpimgw.store.memory import MemoryStore

        return MemoryStore()
    from cpimgw.store.sqlite import SQLiteStore

    return SQLiteStore(config.store_path)


def make_policy(config: Config) -> Any:
    """The ``IPolicy`` of ``[policy]`` (and ``presence.max_duration``)."""
    from cpimgw.policy import DefaultPolicy

    p = config.policy
    return DefaultPolicy(
        presence=p.presence,
        message=p.message,
        allow_domains=p.allow_domains,
        deny_domains=p.deny_domains,
        max_duration=config.presence.max_duration,
    )


def make_resolver(config: Config) -> Any:
    """The RFC 3861 SRV resolver (twisted.names) when ``routing.srv_fallback``, else ``None``."""
    if not config.routing.srv_fallback:
        return None
    from cpimgw.routing import SRVResolver

    return SRVResolver()


def adapter_addresses(adapter: Any) -> list[str]:
    """The listening addresses an adapter exposes, as text, for the log.

    An adapter may expose ``listening_addresses``: an iterable of
    ``IAddress`` providers or strings, or a method returning one.
    """
    for attribute in ("listening_addresses",):
        value = getattr(adapter, attribute, None)
        if value is None:
            continue
        if callable(value):
            try:
                value = value()
            except Exception:
                return []
        try:
            items = list(value)
        except TypeError:
            items = [value]
        return [_address_text(item) for item in items]
    return []


def _address_text(address: Any) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        kind = getattr(address, "type", "")
        host = f"[{host}]" if ":" in str(host) else host
        return f"{kind.lower()}:{host}:{port}" if kind else f"{host}:{port}"
    return str(address)


def _stop_reactor_with_failure(reactor: Any) -> Callable[[Failure], None]:
    """The default reaction to a failed start: stop the reactor, exit with status 1."""

    def on_failure(failure: Failure) -> None:
        def exit_now() -> None:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(START_FAILURE_EXIT_CODE)

        reactor.addSystemEventTrigger("after", "shutdown", exit_now)
        if reactor.running:
            reactor.stop()

    return on_failure


class GatewayService(MultiService):
    """The gateway: store, bus and adapters, started and stopped in order.

    :ivar store: the ``IStore``.
    :ivar bus: the ``IBus``.
    :ivar adapters: the ``IAdapter`` providers, in start order (also children).
    :ivar started: a ``Deferred`` fired with ``None`` once everything has
        started, or with the failure of the step that did not (after what
        had started was stopped again and ``on_start_failure`` was called).
    :ivar freeze_gc: call :func:`tune_gc` once started (and undo it when
        stopped); see the module docstring.
    """

    def __init__(
        self,
        config: Config,
        store: Any,
        bus: Any,
        adapters: Iterable[Any],
        *,
        on_start_failure: Callable[[Failure], None] | None = None,
        apply_log_level: bool = False,
        reactor: Any = None,
        clean_sigterm: bool = False,
        freeze_gc: bool = False,
    ) -> None:
        super().__init__()
        self.freeze_gc = freeze_gc
        self._gc_thresholds: tuple[int, int, int] | None = None
        self.reactor = reactor
        self.clean_sigterm = clean_sigterm
        self.config = config
        self.store = store
        self.bus = bus
        self.adapters = list(adapters)
        self.on_start_failure = on_start_failure
        self.apply_log_level = apply_log_level
        self.started: Deferred[None] = Deferred()
        self.start_failure: Failure | None = None
        self._starting: Deferred[None] | None = None
        self._bus_started = False
        self._adapters_started: list[Any] = []
        self._wrapped_observers: list[tuple[Any, Any]] = []
        self.status_listener: Any = None
        self._json_observers: list[tuple[Any, Any]] = []
        #: The bus instrumentation (:class:`cpimgw.metrics.BusInstruments`) when metrics are on.
        self.instruments: Any = None
        self._factories: Mapping[str, Any] | None = None
        self._metrics_registry: Any = None
        self._collector: Any = None
        for adapter in self.adapters:
            adapter.setServiceParent(self)

    # IService -------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 (Twisted name)
        # Not MultiService.startService: the children start asynchronously, in order.
        self.running = 1
        if self.apply_log_level:
            from cpimgw.logs import use_json_format, use_redaction

            if getattr(self.config.gateway, "log_format", "text") == "json":
                self._json_observers = use_json_format(globalLogPublisher)
            # Innermost: whatever a plugin passes in a secret-named field is never written.
            self._json_observers += use_redaction(globalLogPublisher)
            self._install_log_level(self.config.gateway.log_level)
        if self.clean_sigterm:
            self._install_sigterm()
            self._install_sighup()
        log.info(
            "cpimgw {gateway} starting: store {store_kind} {store_where}, {count} adapter(s)",
            gateway=self.config.gateway.name,
            store_kind=self.config.store.kind,
            store_where=_store_where(self.config),
            count=len(self.adapters),
            config=self.config.path or "<built-in defaults>",
            event="gateway.starting",
        )
        self._starting = d = self._start()
        d.addCallbacks(self._started, self._start_failed)

    def _start(self) -> Deferred[None]:
        d: Deferred[Any] = succeed(None)

        def open_status(_: object) -> Deferred[None] | None:
            port = getattr(self.config.gateway, "status_port", 0)
            if not port or self.reactor is None:
                return None
            if getattr(self.config.gateway, "workers", 1) > 1:
                from cpimgw.cluster.workers import worker_index

                port += worker_index() or 0  # worker I answers on status_port + I
            interface = getattr(self.config.gateway, "status_address", STATUS_INTERFACE) or STATUS_INTERFACE
            step = maybeDeferred(self.reactor.listenTCP, port, status_site(self), interface=interface)

            def listening(listener: Any) -> None:
                self.status_listener = listener
                shown = f"[{interface}]" if ":" in interface else interface
                log.info("status endpoint on http://{where}:{port}/status, /health and /metrics", where=shown,
                         host=interface, port=port, event="gateway.status_endpoint")

            step.addCallback(listening)
            return _labelled(step, f"opening the status endpoint on {interface}:{port}")

        d.addCallback(open_status)

        def start_bus(_: object) -> Deferred[None]:
            # Bus.start() opens the store (and reloads the subscriptions) before
            # anything else; Bus.stop() closes it: the bus owns the store.
            if self.config.store.kind == "sqlite":
                os.makedirs(self.config.gateway.data_dir, exist_ok=True)
            step = maybeDeferred(self.bus.start)
            step.addCallback(lambda _: setattr(self, "_bus_started", True))
            return _labelled(step, "opening the store and starting the bus")

        def start_adapter(_: object, adapter: Any) -> Deferred[None]:
            if not self.running:
                return succeed(None)
            step = maybeDeferred(adapter.startService)
            step.addCallback(lambda _: self._adapters_started.append(adapter))
            step.addCallback(lambda _: self._log_serving(adapter))
            return _labelled(step, f"starting adapter {adapter.name!r}")

        d.addCallback(start_bus)
        for adapter in self.adapters:
            d.addCallback(start_adapter, adapter)
        return d

    def _log_serving(self, adapter: Any) -> None:
        domains = tuple(getattr(adapter, "domains", ()) or ())
        addresses = adapter_addresses(adapter)
        log.info(
            "adapter {adapter} serving domains {domain_list} on {address_list}",
            adapter=adapter.name,
            domains=domains,
            addresses=addresses,
            domain_list=", ".join(domains) or "(none)",
            address_list=", ".join(addresses) or "(no listener)",
            event="adapter.serving",
        )

    def _started(self, _: object) -> None:
        self._starting = None
        if not self.running:
            log.info("cpimgw {gateway} stopped while starting", gateway=self.config.gateway.name)
            self.started.callback(None)
            return
        log.info(
            "cpimgw {gateway} started: adapters {adapter_list}",
            gateway=self.config.gateway.name,
            adapters=[a.name for a in self.adapters],
            adapter_list=", ".join(a.name for a in self.adapters) or "(none)",
            event="gateway.started",
        )
        if self.freeze_gc and self._gc_thresholds is None:
            frozen, self._gc_thresholds = tune_gc()
            log.info("garbage collector: {frozen} startup objects frozen, thresholds {thresholds}",
                     frozen=frozen, thresholds=gc.get_threshold())
        self.started.callback(None)

    def _start_failed(self, failure: Failure) -> Deferred[None]:
        self._starting = None
        self.start_failure = failure
        step = getattr(failure.value, "cpimgw_step", "starting")
        log.failure(
            "cpimgw failed while {step}: {reason}; stopping",
            failure,
            level=LogLevel.critical,
            step=step,
            reason=_one_line(failure.value),
            event="gateway.start_failed",
        )
        d = self._stop_started()

        def report(_: object) -> None:
            self._remove_log_level()
            self.running = 0
            if self.on_start_failure is not None:
                self.on_start_failure(failure)
            self.started.errback(failure)

        d.addBoth(report)
        return d

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted name)
        if not self.running:
            return succeed(None)
        self.running = 0
        waiting = self._starting if self._starting is not None else succeed(None)
        pending: Deferred[None] = Deferred()
        # Let a start in progress settle (its next steps see running == 0).
        waiting.addBoth(lambda _: None)
        waiting.addCallback(lambda _: self._stop_started())
        waiting.addBoth(lambda result: pending.callback(None) if not isinstance(result, Failure) else pending.errback(result))
        pending.addCallback(lambda _: log.info("cpimgw {gateway} stopped", gateway=self.config.gateway.name,
                                               event="gateway.stopped"))
        pending.addBoth(self._remove_log_level)
        pending.addBoth(self._untune_gc)
        return pending

    def _untune_gc(self, result: Any = None) -> Any:
        if self._gc_thresholds is not None:
            untune_gc(self._gc_thresholds)
            self._gc_thresholds = None
        return result

    def _stop_started(self) -> Deferred[None]:
        """Stop the adapters that started (reverse order), then the bus (which closes the store)."""
        d: Deferred[Any] = succeed(None)
        started, self._adapters_started = self._adapters_started, []

        def stop_adapters(_: object) -> Deferred[Any]:
            steps = [_labelled(maybeDeferred(a.stopService), f"stopping adapter {a.name!r}") for a in reversed(started)]
            return DeferredList(steps, consumeErrors=True).addCallback(_log_errors)

        def stop_bus(_: object) -> Deferred[Any] | None:
            if not self._bus_started:
                return None
            self._bus_started = False
            return _labelled(maybeDeferred(self.bus.stop), "stopping the bus and closing the store").addErrback(
                _log_error
            )

        def close_status(_: object) -> Deferred[Any] | None:
            listener, self.status_listener = self.status_listener, None
            if listener is None:
                return None
            return maybeDeferred(listener.stopListening).addErrback(_log_error)

        def leave_cluster(_: object) -> Deferred[Any] | None:
            # A cluster node hands its stream and leases over while its adapters still run.
            cluster = getattr(self.bus, "cluster", None)
            if cluster is None or not self._bus_started:
                return None
            return _labelled(maybeDeferred(cluster.leave), "leaving the cluster").addErrback(_log_error)

        d.addCallback(leave_cluster)
        d.addCallback(stop_adapters)
        d.addCallback(stop_bus)
        d.addCallback(close_status)
        return d

    # signals ----------------------------------------------------------------

    def _install_sigterm(self) -> None:
        """SIGTERM stops the reactor like Ctrl-C, and the process then exits with status 0.

        Twisted's own handler makes twistd kill itself with the signal again
        after a clean shutdown (exit "by signal 15"); a gateway that stopped
        cleanly on request exits 0 instead.
        """
        import signal
        import threading

        if self.reactor is None or threading.current_thread() is not threading.main_thread():
            return
        reactor = self.reactor

        def on_sigterm(signum: int, frame: object) -> None:
            log.info("cpimgw received SIGTERM, stopping")
            reactor.callFromThread(reactor.stop)

        # twistd calls startService before the reactor runs and installs its
        # own handlers then: ours goes in once the reactor is running.
        reactor.callWhenRunning(signal.signal, signal.SIGTERM, on_sigterm)

    # log level --------------------------------------------------------------

    def _install_log_level(self, level_name: str) -> None:
        """Filter cpimgw's own events below ``gateway.log_level`` in every current log observer."""
        level = LogLevel.levelWithName(level_name)
        predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
        predicate.setLogLevelForNamespace("cpimgw", level)
        observers = list(getattr(globalLogPublisher, "_observers", ()))
        for observer in observers:
            wrapped = FilteringLogObserver(observer, [predicate])
            globalLogPublisher.removeObserver(observer)
            globalLogPublisher.addObserver(wrapped)
            self._wrapped_observers.append((observer, wrapped))

    def _remove_log_level(self, result: Any = None) -> Any:
        for observer, wrapped in self._wrapped_observers:
            globalLogPublisher.removeObserver(wrapped)
            globalLogPublisher.addObserver(observer)
        self._wrapped_observers = []
        if self._json_observers:
            from cpimgw.logs import restore

            restore(globalLogPublisher, self._json_observers)
            self._json_observers = []
        return result

    # metrics ----------------------------------------------------------------

    def metrics_registry(self) -> Any:
        """The ``prometheus_client`` registry of this gateway's own gauges (:class:`cpimgw.metrics.GatewayCollector`)."""
        if self._metrics_registry is None:
            from prometheus_client import CollectorRegistry

            from cpimgw.metrics import GatewayCollector

            self._collector = GatewayCollector(self)
            self._metrics_registry = CollectorRegistry(auto_describe=False)
            self._metrics_registry.register(self._collector)
        return self._metrics_registry

    def render_metrics(self, accept: str = "") -> Deferred[tuple[bytes, str]]:
        """``Deferred[(body, content type)]``: the process-wide metrics and this gateway's.

        The format is negotiated from the scraper's ``Accept`` header the
        way ``prometheus_client`` does (OpenMetrics when asked, else the
        Prometheus text format 0.0.4).
        """
        from prometheus_client.exposition import choose_encoder

        from cpimgw.metrics import REGISTRY, Combined

        registry = self.metrics_registry()

        def counted(view: dict[str, Any]) -> tuple[bytes, str]:
            store = view.get("store") or {}
            self._collector.store_counts = {k: v for k, v in store.items() if isinstance(v, int)}
            encoder, content_type = choose_encoder(accept)
            return encoder(Combined(REGISTRY, registry)), content_type

        return maybeDeferred(self.bus.snapshot).addCallback(counted)

    # reload (SIGHUP) --------------------------------------------------------

    def _install_sighup(self) -> None:
        """SIGHUP re-reads the configuration file (:meth:`reload`), connections stay up."""
        import signal
        import threading

        if self.reactor is None or threading.current_thread() is not threading.main_thread():
            return
        if not hasattr(signal, "SIGHUP"):
            return
        reactor = self.reactor

        def on_sighup(signum: int, frame: object) -> None:
            reactor.callFromThread(self.reload)

        reactor.callWhenRunning(signal.signal, signal.SIGHUP, on_sighup)

    def reload(self, path: str | None = None) -> list[str]:
        """Re-read the configuration file and apply what is safe to change while running.

        Applied at once, without dropping a connection: the routing table
        (``[routing]``), the policy tables (``[policy]``, and
        ``presence.max_duration`` which the policy enforces), and the TLS
        certificates of every adapter that can reload them (``reload_tls``;
        new handshakes use the new certificate, established sessions keep
        theirs).  Anything else that changed is logged as needing a restart
        and left as it runs.  A file that does not load is refused with one
        log line and nothing is changed.

        :param path: the file to read (default: the one the gateway started from).
        :return: one line per change applied (empty when nothing changed or the file was refused).
        """
        from cpimgw.config import find_adapter_factories, load_config
        from cpimgw.metrics import RELOADS

        path = path or self.config.path
        if path is None:
            log.warn("reload asked, but the gateway runs on the built-in defaults: nothing to re-read",
                     event="config.reload_refused")
            RELOADS.labels("refused").inc()
            return []
        try:
            new = load_config(path, factories=self._factories or find_adapter_factories())
            tls_changes = self._check_tls(new)
        except ConfigError as error:
            log.error("configuration reload refused, the running configuration is kept: {error}", error=str(error),
                      path=path, event="config.reload_refused")
            RELOADS.labels("refused").inc()
            return []
        old = self.config
        changes = []
        if dict(new.routing.domains) != dict(old.routing.domains) or new.routing.srv_fallback != old.routing.srv_fallback:
            changes.extend(_diff_table("routing.domains", old.routing.domains, new.routing.domains))
            if new.routing.srv_fallback != old.routing.srv_fallback:
                changes.append(f"routing.srv_fallback: {old.routing.srv_fallback} -> {new.routing.srv_fallback}")
            self._apply_routes(new)
        if new.policy != old.policy or new.presence.max_duration != old.presence.max_duration:
            for field in ("presence", "message", "allow_domains", "deny_domains"):
                before, after = getattr(old.policy, field), getattr(new.policy, field)
                if before != after:
                    changes.append(f"policy.{field}: {_shown(before)} -> {_shown(after)}")
            if new.presence.max_duration != old.presence.max_duration:
                changes.append(f"presence.max_duration: {old.presence.max_duration} -> {new.presence.max_duration}")
            self.bus.policy = make_policy(new)
            if hasattr(self.bus.presence, "max_duration"):
                self.bus.presence.max_duration = new.presence.max_duration
        for adapter, line in tls_changes:
            adapter.reload_tls()
            changes.append(line)
        restart = _needs_restart(old, new)
        kept = attrs.evolve(old, routing=new.routing, policy=new.policy,
                            presence=attrs.evolve(old.presence, max_duration=new.presence.max_duration))
        self.config = attrs.evolve(kept, path=old.path) if kept.path != old.path else kept
        for line in changes:
            log.info("configuration reloaded: {change}", change=line, path=path, event="config.changed")
        for key in restart:
            log.warn("configuration reload: {key} changed, which needs a restart; not applied", key=key,
                     path=path, event="config.needs_restart")
        log.info("configuration {path} reloaded: {count} change(s) applied", path=path, count=len(changes),
                 changes=changes, event="config.reloaded")
        RELOADS.labels("applied").inc()
        return changes

    def _check_tls(self, new: Config) -> list[tuple[Any, str]]:
        """Load every adapter's certificates again (raises ``ConfigError`` when one does not load)."""
        found = []
        for adapter in self.adapters:
            check = getattr(adapter, "check_tls", None)
            if check is None or not getattr(adapter, "reload_tls", None):
                continue
            try:
                line = check()
            except Exception as error:  # noqa: BLE001 - any unreadable certificate refuses the reload
                raise ConfigError(f"TLS material of adapter {adapter.name} does not load: {_one_line(error)}",
                                  path=new.path) from None
            if line:
                found.append((adapter, f"adapters.{adapter.name} TLS: {line}"))
        return found

    def _apply_routes(self, new: Config) -> None:
        from cpimgw.routing import StaticRoutes

        self.bus.routes = StaticRoutes(dict(new.routing.domains))
        self.bus.resolver = make_resolver(new)
        resolved = getattr(self.bus, "_resolved", None)
        if resolved is not None:
            resolved.clear()
        if self.instruments is not None:
            self.instruments.forget_routes()


def _store_where(config: Config) -> str:
    if config.store.kind == "sqlite":
        return config.store_path
    if config.store.kind == "redis":
        from cpimgw.store.redis import parse_redis_url

        options = parse_redis_url(config.store.url)
        return f"{options['host']}:{options['port']} prefix {config.store.prefix!r}"
    return "(memory)"


def health(service: "GatewayService") -> list[str]:
    """What is down (empty when healthy): the gateway, the bus, the store (a shared store that is
    unreachable), an adapter not running or not connected."""
    problems = []
    if not service.running:
        problems.append("gateway not running")
    if not getattr(service.bus, "running", False):
        problems.append("bus not running")
    store_connected = getattr(getattr(service, "store", None), "connected", None)
    if callable(store_connected) and getattr(service.bus, "running", False):
        try:
            up = bool(store_connected())
        except Exception:
            up = False
        if not up:
            problems.append("store down")
    for adapter in service.adapters:
        if not getattr(adapter, "running", False):
            problems.append(f"adapter {adapter.name} not running")
            continue
        connected = getattr(adapter, "connected", None)
        if callable(connected):
            try:
                connected = connected()
            except Exception:
                connected = False
        if connected is not None and not connected:
            problems.append(f"adapter {adapter.name} not connected")
    return problems


def status_site(service: "GatewayService") -> Any:
    """The ``twisted.web`` site of the operators' endpoint: ``/status`` (JSON), ``/health`` and ``/metrics``.

    ``/metrics`` is the Prometheus text exposition format (:mod:`cpimgw.metrics`).
    """
    import json

    from twisted.web import resource, server

    class Health(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:  # noqa: N802 (Twisted name)
            problems = health(service)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            if problems:
                request.setResponseCode(503)
                return ("\n".join(problems) + "\n").encode("utf-8")
            return b"ok\n"

    class Status(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> Any:  # noqa: N802 (Twisted name)
            def write(view: dict[str, Any]) -> None:
                view = {"gateway": service.config.gateway.name, "healthy": not health(service),
                        "problems": health(service), **view}
                request.setHeader(b"content-type", b"application/json")
                request.setHeader(b"cache-control", b"no-store")
                request.write(json.dumps(view, indent=1, sort_keys=True).encode("utf-8") + b"\n")
                request.finish()

            def failed(reason: Failure) -> None:
                log.failure("status view failed", reason)
                request.setResponseCode(500)
                request.write(b"status unavailable\n")
                request.finish()

            maybeDeferred(service.bus.snapshot).addCallbacks(write, failed)
            return server.NOT_DONE_YET

    class Metrics(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> Any:  # noqa: N802 (Twisted name)
            accept = (request.getHeader(b"accept") or b"").decode("latin-1")

            def write(rendered: tuple[bytes, str]) -> None:
                text, content_type = rendered
                request.setHeader(b"content-type", content_type.encode("latin-1"))
                request.setHeader(b"cache-control", b"no-store")
                request.write(text)
                request.finish()

            def failed(reason: Failure) -> None:
                log.failure("metrics view failed", reason)
                request.setResponseCode(500)
                request.write(b"metrics unavailable\n")
                request.finish()

            service.render_metrics(accept).addCallbacks(write, failed)
            return server.NOT_DONE_YET

    root = resource.Resource()
    root.putChild(b"status", Status())
    root.putChild(b"health", Health())
    root.putChild(b"metrics", Metrics())
    site = server.Site(root)
    site.displayTracebacks = False
    site.noisy = False
    # No access-log line per request: Prometheus scrapes every few seconds.
    site.log = lambda request: None  # type: ignore[method-assign]
    return site


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _diff_table(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    lines = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            lines.append(f"{name}.{key}: removed (was {old[key]})")
        elif key not in old:
            lines.append(f"{name}.{key}: added -> {new[key]}")
        elif old[key] != new[key]:
            lines.append(f"{name}.{key}: {old[key]} -> {new[key]}")
    return lines


def _needs_restart(old: Config, new: Config) -> list[str]:
    """The tables (or adapters) that changed in ways only a restart applies."""
    keys = []
    for table in ("gateway", "store", "bus", "tls"):
        if getattr(old, table) != getattr(new, table):
            keys.append(f"[{table}]")
    if old.presence.default_duration != new.presence.default_duration:
        keys.append("presence.default_duration")
    for settings in new.adapters:
        before = old.adapter(settings.name)
        if before is None or before.enabled != settings.enabled or dict(before.settings) != dict(settings.settings):
            keys.append(f"[adapters.{settings.name}]")
    return keys


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def _labelled(d: Deferred[Any], step: str) -> Deferred[Any]:
    """Tag a failure of ``d`` with the step it happened in (for the log line)."""

    def tag(failure: Failure) -> Failure:
        if not hasattr(failure.value, "cpimgw_step"):
            try:
                failure.value.cpimgw_step = step  # type: ignore[union-attr]
            except AttributeError:
                pass
        return failure

    return d.addErrback(tag)


def _log_error(failure: Failure) -> None:
    log.failure(
        "cpimgw: error while {step}: {reason}",
        failure,
        step=getattr(failure.value, "cpimgw_step", "stopping"),
        reason=_one_line(failure.value),
    )


def _log_errors(results: list[tuple[bool, Any]]) -> None:
    for ok, value in results:
        if not ok:
            _log_error(value)


def make_service(
    config: Config,
    reactor: Any = None,
    *,
    factories: Mapping[str, Any] | None = None,
    store: Any = None,
    on_start_failure: Callable[[Failure], None] | None = None,
    apply_log_level: bool = False,
    clean_sigterm: bool = False,
    freeze_gc: bool | None = None,
    metrics: bool | None = None,
) -> GatewayService:
    """Build the gateway described by ``config`` (nothing is started yet).

    :param reactor: the reactor of the bus and adapters (default: the global one).
    :param factories: adapter factories by name (default: the installed
        ``IAdapterFactory`` plugins); every enabled ``[adapters.NAME]`` must
        have one.
    :param store: an ``IStore`` to use instead of the one ``[store]`` describes.
    :param on_start_failure: called with the ``Failure`` when starting fails;
        default: stop the reactor and exit the process with status 1.
    :param apply_log_level: filter cpimgw's log events below
        ``gateway.log_level`` while running (the twistd plugin turns it on).
    :param clean_sigterm: on SIGTERM stop the reactor and exit with status 0
        rather than by the signal (the twistd plugin turns it on).
    :param freeze_gc: freeze startup's objects and raise the generation-0
        threshold once started (:func:`tune_gc`); by default only on the
        global reactor (``reactor`` not given: the real process, as under
        ``twistd``), never in a test's own reactor.
    :param metrics: count and time what crosses the bus and the store
        (:mod:`cpimgw.metrics`, the ``/metrics`` page); by default only when
        the status endpoint is on (``[gateway] status_port``): nobody could
        read the figures otherwise, and the hot path stays as fast as it was.
    :raise ConfigError: an adapter's ``build`` refused its settings.
    """
    if freeze_gc is None:
        freeze_gc = reactor is None
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    if factories is None:
        factories = find_adapter_factories()
    from cpimgw.bus import Bus

    if store is None:
        store = make_store(config)
    policy = make_policy(config)
    labels = {name: tuple(getattr(f, "srv_labels", ())) for name, f in factories.items()}
    bus_class: Any = Bus
    bus_options: dict[str, Any] = {}
    if config.store.kind == "redis" and hasattr(store, "new_factory"):
        # A node of a cluster: routing to the node that holds a connection, one sweeper.
        from cpimgw.cluster.bus import ClusterBus
        from cpimgw.cluster.workers import worker_node_id

        bus_class = ClusterBus
        bus_options = {"node_id": worker_node_id(config), "cluster": config.cluster}
    bus = bus_class(
        reactor,
        store,
        policy,
        **bus_options,
        routes=dict(config.routing.domains),
        resolver=make_resolver(config),
        duplicate_ttl=config.bus.duplicate_ttl,
        max_forwards=config.bus.max_forwards,
        default_duration=config.presence.default_duration,
        max_duration=config.presence.max_duration,
        adapter_labels=labels,
    )
    adapters = []
    for settings in config.adapters:
        if not settings.enabled:
            log.info("adapter {adapter} disabled by configuration", adapter=settings.name)
            continue
        factory = factories.get(settings.name)
        if factory is None:
            raise ConfigError("no installed adapter plugin provides it", path=config.path, key=f"adapters.{settings.name}")
        try:
            adapter = factory.build(dict(settings.settings), bus)
        except ConfigError as error:
            if error.path is None:
                key = error.key or ""
                if key and not key.startswith("adapters."):
                    key = f"adapters.{settings.name}.{key}"
                raise ConfigError(error.reason, path=config.path, key=key or f"adapters.{settings.name}") from None
            raise
        bus.register(adapter)
        adapters.append(adapter)
    if on_start_failure is None:
        on_start_failure = _stop_reactor_with_failure(reactor)
    instruments = None
    if metrics is None:
        metrics = bool(getattr(config.gateway, "status_port", 0))
    if metrics:
        from cpimgw.metrics import BusInstruments, instrument_store

        instrument_store(store)
        instruments = BusInstruments(bus)
    service = GatewayService(
        config,
        store,
        bus,
        adapters,
        on_start_failure=on_start_failure,
        apply_log_level=apply_log_level,
        reactor=reactor,
        clean_sigterm=clean_sigterm,
        freeze_gc=freeze_gc,
    )
    service.instruments = instruments
    service._factories = dict(factories)
    return service
