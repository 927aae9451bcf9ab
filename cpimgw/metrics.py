"""Prometheus metrics of a running gateway (the ``/metrics`` page of the operators' endpoint).

Exposed in the Prometheus text exposition format (version 0.0.4) with the
ecosystem's own client, ``prometheus_client``.  Every label set is bounded:
adapter names, directions, CPIM operation kinds (RFC 3860 ``message``,
RFC 3859 ``subscribe``/``notify``, ``publish``), outcomes (``success``,
``indeterminate`` and one value per CPIM failure condition of
:class:`cpimgw.cpim.operations.Condition`), store method names, peer kinds
and protocol names.  No user address ever becomes a label value.

What is measured, and where:

- ``cpimgw_operations_total{adapter, direction, kind, outcome}`` and
  ``cpimgw_operation_duration_seconds{adapter, direction, kind}`` -- counted
  at the bus seams by :class:`BusInstruments`: ``direction="in"`` when an
  adapter hands the bus an operation it received (:meth:`IBus.dispatch`:
  from receipt until the answer, which includes the far side's answer when
  the operation was relayed), ``direction="out"`` when the bus hands an
  adapter an operation to deliver (until the far side answered);
  ``cpimgw_operations_in_flight{adapter, direction}`` is the work under way;
- ``cpimgw_routed_operations_total{source, destination, kind, outcome}`` --
  each delivery by the pair of adapters it crossed (traffic per protocol
  pair);
- ``cpimgw_store_operation_duration_seconds{operation}`` -- each ``IStore``
  method (:func:`instrument_store`);
- ``cpimgw_duplicates_dropped_total``, ``cpimgw_loops_stopped_total`` and
  ``cpimgw_bus_events_total{event}`` -- the bus's own counters;
- ``cpimgw_subscriptions``, ``cpimgw_presence_documents``,
  ``cpimgw_adapter_up{adapter}``, ``cpimgw_adapter_connected{adapter}``,
  ``cpimgw_connections{adapter, peer_kind}``, ``cpimgw_queued{adapter, queue}`` -- read when scraped
  (:class:`GatewayCollector`);
- ``cpimgw_parse_errors_total{protocol}``,
  ``cpimgw_tls_handshake_failures_total{adapter}`` and
  ``cpimgw_auth_failures_total{adapter, peer_kind}`` -- counted by the
  adapters through :func:`parse_error`, :func:`tls_failure` and
  :func:`auth_failure` (one call at the place they already reject).

The metric objects live in one process-wide :data:`REGISTRY` (with the
client's process, platform and garbage-collector collectors): one process is
one gateway, and counters only ever grow, as Prometheus expects.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger(namespace="cpimgw.metrics")

#: Latency buckets (seconds): from a local answer (sub-millisecond) to the far side's timeouts.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 32.0)

#: Store method latency buckets (seconds).
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

#: The ``IStore`` methods timed by :func:`instrument_store` (and their plain fast-path variants).
STORE_METHODS = (
    "put_subscription", "get_subscription", "remove_subscription", "subscriptions", "set_digests",
    "put_presence", "get_presence", "remove_presence", "presence_expiries",
    "remember", "forget", "expire", "put_value", "get_value", "get_values", "remove_value",
)

#: The label value of an adapter that is not known (an operation from a domain no adapter serves).
UNKNOWN = "unknown"

REGISTRY = CollectorRegistry(auto_describe=True)


def _register_process_collectors(registry: CollectorRegistry) -> None:
    from prometheus_client import gc_collector, platform_collector, process_collector

    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)


_register_process_collectors(REGISTRY)


class Tally:
    """The hot-path figures: plain counters and histogram buckets, exported when scraped.

    Everything on the bus runs in the reactor thread, and so does the
    ``/metrics`` page, so the operations are counted in plain dictionaries
    (no lock, no label validation per operation) and turned into metric
    families only when Prometheus asks (:meth:`collect`).  Measured with
    ``benchmarks/bench_bus.py --metrics``.
    """

    def __init__(self) -> None:
        self.operations: dict[tuple[str, str, str, str], int] = {}
        self.routed: dict[tuple[str, str, str, str], int] = {}
        self.in_flight: dict[tuple[str, str], int] = {}
        self.durations: dict[tuple[str, str, str], list[float]] = {}
        self.store: dict[str, list[float]] = {}
        self.store_errors: dict[str, int] = {}

    @staticmethod
    def observe(histograms: dict[Any, list[float]], key: Any, buckets: tuple[float, ...], seconds: float) -> None:
        """Count ``seconds`` in the histogram ``key``: [per-bucket counts..., +Inf count, sum]."""
        entry = histograms.get(key)
        if entry is None:
            entry = histograms[key] = [0.0] * (len(buckets) + 2)
        entry[bisect_left(buckets, seconds)] += 1
        entry[-1] += seconds

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        operations = CounterMetricFamily(
            "cpimgw_operations", "CPIM operations per adapter and direction, by kind and outcome.",
            labels=["adapter", "direction", "kind", "outcome"])
        for labels, count in sorted(self.operations.items()):
            operations.add_metric(list(labels), count)
        yield operations
        routed = CounterMetricFamily(
            "cpimgw_routed_operations", "Operations delivered, by the pair of adapters they crossed and outcome.",
            labels=["source", "destination", "kind", "outcome"])
        for labels, count in sorted(self.routed.items()):
            routed.add_metric(list(labels), count)
        yield routed
        in_flight = GaugeMetricFamily(
            "cpimgw_operations_in_flight", "Operations received or handed over and not answered yet.",
            labels=["adapter", "direction"])
        for pair, count in sorted(self.in_flight.items()):
            in_flight.add_metric(list(pair), count)
        yield in_flight
        yield self._histograms(
            "cpimgw_operation_duration_seconds",
            "From receipt (in) or hand-over to the adapter (out) until the answer, the far side's included.",
            ["adapter", "direction", "kind"], self.durations, LATENCY_BUCKETS)
        yield self._histograms("cpimgw_store_operation_duration_seconds", "Time of each store operation until "
                               "its answer.", ["operation"], {(k,): v for k, v in self.store.items()}, STORE_BUCKETS)
        errors = CounterMetricFamily("cpimgw_store_errors", "Store operations that failed.", labels=["operation"])
        for name, count in sorted(self.store_errors.items()):
            errors.add_metric([name], count)
        yield errors

    @staticmethod
    def _histograms(name: str, documentation: str, labels: list[str], histograms: dict[Any, list[float]],
                    buckets: tuple[float, ...]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=labels)
        bounds = [floatToGoString(bound) for bound in buckets] + ["+Inf"]
        for key, entry in sorted(histograms.items()):
            cumulative, running = [], 0.0
            for bound, count in zip(bounds, entry[:-1]):
                running += count
                cumulative.append((bound, running))
            family.add_metric(list(key), cumulative, entry[-1])
        return family


#: The figures of this process (one process is one gateway).
TALLY = Tally()
REGISTRY.register(TALLY)

PARSE_ERRORS = Counter(
    "cpimgw_parse_errors", "Native units refused as malformed, by protocol.", ["protocol"], registry=REGISTRY)
TLS_FAILURES = Counter(
    "cpimgw_tls_handshake_failures", "TLS handshakes that failed (either side), by adapter.", ["adapter"],
    registry=REGISTRY)
AUTH_FAILURES = Counter(
    "cpimgw_auth_failures", "Authentication attempts refused, by adapter and peer kind.",
    ["adapter", "peer_kind"], registry=REGISTRY)
RELOADS = Counter(
    "cpimgw_config_reloads", "Configuration reloads (SIGHUP), by result.", ["result"], registry=REGISTRY)


_KINDS: dict[type, str] = {}
_OUTCOMES: dict[tuple[Any, Any], str] = {}


def kind_of(operation: Any) -> str:
    """The bounded label of an operation: ``message``, ``subscribe``, ``notify``, ``publish`` or ``other``."""
    cls = operation.__class__
    kind = _KINDS.get(cls)
    if kind is None:
        name = cls.__name__.lower()
        kind = _KINDS[cls] = name if name in ("message", "subscribe", "notify", "publish") else "other"
    return kind


def outcome_of(response: Any) -> str:
    """``success``, ``indeterminate`` or the failure condition (RFC 7247 §7 words), bounded."""
    key = (getattr(response, "status", None), getattr(response, "condition", None))
    outcome = _OUTCOMES.get(key)
    if outcome is None:
        outcome = _outcome(*key)
        if len(_OUTCOMES) < 1024:
            _OUTCOMES[key] = outcome
    return outcome


def _outcome(status: Any, condition: Any) -> str:
    value = getattr(status, "value", None)
    if value == "success":
        return "success"
    if value == "indeterminant":
        return "indeterminate"
    condition_value = getattr(condition, "value", None)
    if isinstance(condition_value, str):
        return condition_value
    return "failure"


def parse_error(protocol: str) -> None:
    """Count one native unit refused as malformed (``protocol``: ``xmpp``, ``sip``, ``prim``...)."""
    PARSE_ERRORS.labels(protocol).inc()


def tls_failure(adapter: str) -> None:
    """Count one failed TLS handshake of ``adapter``."""
    TLS_FAILURES.labels(adapter).inc()


def auth_failure(adapter: str, peer_kind: str) -> None:
    """Count one refused authentication (``peer_kind``: ``client``, ``server``, ``component``...)."""
    AUTH_FAILURES.labels(adapter, peer_kind).inc()


# -- the bus seams ------------------------------------------------------------------------------------------


class BusInstruments:
    """Times and counts what crosses the bus, by wrapping its two seams on the instance.

    ``bus.dispatch`` (an adapter hands the bus what it received) and
    ``bus.deliver_now`` (the bus -- or the presence service's fan-out --
    hands an adapter what it must deliver) are replaced on the bus object by
    wrappers that call the originals unchanged; the bus's synchronous fast
    path stays synchronous (a fired answer is read at once).

    :param bus: the :class:`cpimgw.bus.Bus` (anything with ``dispatch``,
        ``deliver_now``, ``routes`` and ``adapter_named``).
    :param clock: monotonic seconds (``time.perf_counter`` by default).
    """

    def __init__(self, bus: Any, clock: Callable[[], float] = time.perf_counter) -> None:
        self.bus = bus
        self.clock = clock
        self._sources: dict[str, str] = {}
        self._dispatch = bus.dispatch
        self._deliver_now = bus.deliver_now
        bus.dispatch = self.dispatch
        # Bus.deliver and the bus's own message path call self.deliver_now: the
        # wrapper, found on the instance first.
        bus.deliver_now = self.deliver_now

    def uninstall(self) -> None:
        """Put the bus's own methods back."""
        for name in ("dispatch", "deliver_now"):
            if name in vars(self.bus):
                delattr(self.bus, name)

    def adapter_of(self, uri: Any) -> str:
        """The name of the adapter that serves ``uri``'s domain (without asking DNS), or ``unknown``."""
        domain = getattr(uri, "domain_key", None)
        if not domain:
            return UNKNOWN
        name = self._sources.get(domain)
        if name is not None:
            return name
        name = UNKNOWN
        routes = getattr(self.bus, "routes", None)
        routed = routes.lookup(domain) if routes is not None else None
        if routed is not None:
            name = routed
        else:
            holder = getattr(self.bus, "_domains", {}).get(domain)
            if holder is not None:
                name = holder.name
        if len(self._sources) >= 4096:
            self._sources.clear()
        self._sources[domain] = name
        return name

    def forget_routes(self) -> None:
        """Drop the cached domain -> adapter names (the routes changed)."""
        self._sources.clear()

    def source_of(self, operation: Any) -> str:
        """The adapter an operation came from: its ``origin`` when that names a registered adapter, else by domain.

        Notifies the presence service fans out carry the origin of the
        publication that caused them; the presentity's domain is the fallback.
        """
        origin = getattr(operation, "origin", "")
        if origin and origin in getattr(self.bus, "_adapters", ()):
            return origin
        source = getattr(operation, "source", None)
        if source is None:
            source = getattr(operation, "presentity", None)
        return self.adapter_of(source)

    def dispatch(self, operation: Any) -> Deferred[Any]:
        started = self.clock()
        answer = self._dispatch(operation)
        key = (self.source_of(operation), "in", kind_of(operation))
        if answer.called and not answer.paused and not getattr(answer, "_runningCallbacks", True):
            # Answered at once (the bus's synchronous fast path): never observable in flight.
            self._record(key, answer.result, started)
            return answer
        flight = (key[0], "in")
        in_flight = TALLY.in_flight
        in_flight[flight] = in_flight.get(flight, 0) + 1

        def done(result: Any) -> Any:
            in_flight[flight] -= 1
            self._record(key, result, started)
            return result

        return answer.addBoth(done)

    def _record(self, key: tuple[str, str, str], result: Any, started: float, source: str | None = None) -> None:
        outcome = outcome_of(result) if not isinstance(result, Failure) else "internal-server-error"
        operations = TALLY.operations
        counted = (*key, outcome)
        operations[counted] = operations.get(counted, 0) + 1
        if source is not None:
            routed = TALLY.routed
            pair = (source, key[0], key[2], outcome)
            routed[pair] = routed.get(pair, 0) + 1
        Tally.observe(TALLY.durations, key, LATENCY_BUCKETS, self.clock() - started)

    def deliver_now(self, adapter: Any, operation: Any) -> Any:
        started = self.clock()
        answer = self._deliver_now(adapter, operation)
        key = (getattr(adapter, "name", UNKNOWN), "out", kind_of(operation))
        source = self.source_of(operation)
        if not isinstance(answer, Deferred):
            self._record(key, answer, started, source)
            return answer
        flight = (key[0], "out")
        in_flight = TALLY.in_flight
        in_flight[flight] = in_flight.get(flight, 0) + 1

        def done(result: Any) -> Any:
            in_flight[flight] -= 1
            if not isinstance(result, Failure) or not result.check(CancelledError):
                self._record(key, result, started, source)
            return result

        return answer.addBoth(done)


# -- the store ----------------------------------------------------------------------------------------------


def instrument_store(store: Any, clock: Callable[[], float] = time.perf_counter) -> Any:
    """Time every ``IStore`` method of ``store`` (wrapped on the instance; returns ``store``).

    A method carrying the bus's fast-path mark (``synchronous_variant``)
    keeps it, and its plain variant is timed too, so the bus's synchronous
    path stays synchronous.
    """
    from cpimgw.bus import SYNCHRONOUS_ATTRIBUTE

    active = [False]  # one store call under way: calls it makes to the store itself are not timed again
    names = set(STORE_METHODS)
    for name in STORE_METHODS:
        method = getattr(store, name, None)
        variant = getattr(method, SYNCHRONOUS_ATTRIBUTE, None)
        if isinstance(variant, str):
            names.add(variant)
    for name in sorted(names):
        method = getattr(store, name, None)
        if method is None or not callable(method) or getattr(method, "_cpimgw_timed", False):
            continue
        label = name[: -len("_now")] if name.endswith("_now") else name
        try:
            setattr(store, name, _timed(method, label, clock, active))
        except (AttributeError, TypeError):
            log.debug("store method {name} cannot be timed", name=name)
    return store


def _timed(method: Any, label: str, clock: Callable[[], float], active: list[bool]) -> Any:
    from cpimgw.bus import SYNCHRONOUS_ATTRIBUTE

    histograms, errors, observe = TALLY.store, TALLY.store_errors, Tally.observe

    def failed() -> None:
        errors[label] = errors.get(label, 0) + 1

    def timed(*args: Any, **kwargs: Any) -> Any:
        if active[0]:
            # A store method calling another one (remember -> remember_now): timed once, by the outer call.
            return method(*args, **kwargs)
        started = clock()
        active[0] = True
        try:
            result = method(*args, **kwargs)
        except BaseException:
            failed()
            observe(histograms, label, STORE_BUCKETS, clock() - started)
            raise
        finally:
            active[0] = False
        if isinstance(result, Deferred) and not (result.called and not isinstance(result.result, Failure)):
            def done(value: Any) -> Any:
                observe(histograms, label, STORE_BUCKETS, clock() - started)
                if isinstance(value, Failure):
                    failed()
                return value

            return result.addBoth(done)
        observe(histograms, label, STORE_BUCKETS, clock() - started)
        return result

    variant = getattr(method, SYNCHRONOUS_ATTRIBUTE, None)
    if variant is not None:
        setattr(timed, SYNCHRONOUS_ATTRIBUTE, variant)
    timed.__self__ = getattr(method, "__self__", None)  # type: ignore[attr-defined]
    timed._cpimgw_timed = True  # type: ignore[attr-defined]
    timed.__name__ = getattr(method, "__name__", label)
    timed.__doc__ = getattr(method, "__doc__", None)
    return timed


# -- read when scraped ---------------------------------------------------------------------------------------


class GatewayCollector:
    """The gauges and bus counters of one :class:`cpimgw.service.GatewayService`, read at each scrape.

    The store's counts are asynchronous (SQLite answers in a thread): the
    ``/metrics`` page refreshes :attr:`store_counts` from the bus's
    snapshot before it renders.
    """

    def __init__(self, service: Any) -> None:
        self.service = service
        self.store_counts: dict[str, int] = {}

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        service = self.service
        bus = service.bus
        counters = dict(getattr(bus, "counters", {}))
        duplicates = CounterMetricFamily("cpimgw_duplicates_dropped", "Messages dropped as duplicates (TransID / "
                                         "Message-ID seen before).")
        duplicates.add_metric([], counters.get("duplicates", 0))
        yield duplicates
        loops = CounterMetricFamily("cpimgw_loops_stopped", "Operations stopped by the loop guard (MaxForwards "
                                    "reached 0, RFC 3860 §4.1).")
        loops.add_metric([], counters.get("loops", 0))
        yield loops
        events = CounterMetricFamily("cpimgw_bus_events", "The bus's own counters, by event.", labels=["event"])
        for name, value in sorted(counters.items()):
            events.add_metric([name], value)
        yield events

        subscriptions = GaugeMetricFamily("cpimgw_subscriptions", "Presence subscriptions held (RFC 3859 §4.4).")
        subscriptions.add_metric([], self.store_counts.get("subscriptions", 0))
        yield subscriptions
        presence = GaugeMetricFamily("cpimgw_presence_documents", "Presence documents held (one per presentity "
                                     "and instance).")
        presence.add_metric([], self.store_counts.get("presence", 0))
        yield presence
        timers = GaugeMetricFamily("cpimgw_subscription_timers", "Subscription expiry timers armed.")
        armed = getattr(getattr(bus, "presence", None), "armed", None)
        timers.add_metric([], len(armed()) if callable(armed) else 0)
        yield timers

        up = GaugeMetricFamily("cpimgw_adapter_up", "1 when the adapter's service is running.", labels=["adapter"])
        connected = GaugeMetricFamily("cpimgw_adapter_connected", "1 when the adapter is connected to its network "
                                      "(adapters with one upstream link).", labels=["adapter"])
        connections = GaugeMetricFamily("cpimgw_connections", "Open connections and streams, by adapter and peer "
                                        "kind.", labels=["adapter", "peer_kind"])
        queued = GaugeMetricFamily("cpimgw_queued", "Work waiting inside an adapter (a stream to open, an answer "
                                   "window), by adapter and queue.", labels=["adapter", "queue"])
        for adapter in service.adapters:
            up.add_metric([adapter.name], 1 if getattr(adapter, "running", False) else 0)
            state = getattr(adapter, "connected", None)
            if callable(state):
                try:
                    state = state()
                except Exception:
                    state = False
            if state is not None:
                connected.add_metric([adapter.name], 1 if state else 0)
            counts = getattr(adapter, "connection_counts", None)
            if callable(counts):
                try:
                    by_kind = dict(counts())
                except Exception:
                    by_kind = {}
                for kind, value in sorted(by_kind.items()):
                    connections.add_metric([adapter.name, str(kind)], value)
            waiting = getattr(adapter, "queued_counts", None)
            if callable(waiting):
                try:
                    by_queue = dict(waiting())
                except Exception:
                    by_queue = {}
                for name, value in sorted(by_queue.items()):
                    queued.add_metric([adapter.name, str(name)], value)
        yield up
        yield connected
        yield connections
        yield queued
        healthy = GaugeMetricFamily("cpimgw_healthy", "1 when /health answers ok.")
        from cpimgw.service import health

        healthy.add_metric([], 0 if health(service) else 1)
        yield healthy


class Combined:
    """Several registries seen as one (what the exposition encoders collect from)."""

    def __init__(self, *registries: Any) -> None:
        self.registries = registries

    def collect(self) -> Iterable[Any]:
        for registry in self.registries:
            yield from registry.collect()


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The exposition text of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


__all__ = [
    "AUTH_FAILURES", "BusInstruments", "Combined", "GatewayCollector", "PARSE_ERRORS", "REGISTRY", "RELOADS",
    "TALLY", "TLS_FAILURES", "Tally", "auth_failure", "instrument_store", "kind_of", "outcome_of", "parse_error",
    "render", "tls_failure",
]
