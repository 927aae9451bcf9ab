"""``cpimgw status``: a readable summary of a running gateway, read from its operators' endpoint.

::

    cpimgw status [--url URL | --config FILE] [--interval SECONDS] [--json]

It reads ``/status`` (JSON) and ``/metrics`` (the Prometheus text exposition
format) of the endpoint that ``[gateway] status_port`` opens, and prints the
gateway's health, each adapter with its state and connections, the
operations in and out with their failures by condition, the rates over
``--interval`` seconds (two reads of ``/metrics``), and the subscriptions.

Exit status: 0 healthy; 1 unhealthy (``/health`` would answer 503) or the
endpoint unreachable; 2 a usage error.  So it serves in scripts and in
health checks (``ExecStartPost=``, a container's ``HEALTHCHECK``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import defaultdict
from typing import Any, Callable, TextIO

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
EXIT_ERROR = 2

#: The endpoint asked when neither --url nor --config says otherwise (conf/systemd's example port).
DEFAULT_URL = "http://127.0.0.1:9465"


class Unreachable(Exception):
    """The endpoint did not answer."""


def fetch(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``: (status code, body); :class:`Unreachable` when nothing answered."""
    request = urllib.request.Request(url, headers={"Accept": "application/json, text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - operator-given URL
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise Unreachable(f"{url}: {reason}") from None


Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse_metrics(text: str) -> Samples:
    """The samples of a Prometheus text exposition, by sample name (``_total`` included)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), float(sample.value)))
    return samples


def total(samples: Samples, name: str, **match: str) -> float:
    """The sum of ``name``'s samples whose labels include ``match``."""
    return sum(value for labels, value in samples.get(name, ()) if all(labels.get(k) == v for k, v in match.items()))


def by_label(samples: Samples, name: str, label: str, **match: str) -> dict[str, float]:
    """``name``'s samples summed by the value of ``label``."""
    result: dict[str, float] = defaultdict(float)
    for labels, value in samples.get(name, ()):
        if all(labels.get(k) == v for k, v in match.items()):
            result[labels.get(label, "")] += value
    return dict(result)


def quantile(samples: Samples, name: str, q: float, **match: str) -> float | None:
    """The ``q`` quantile of histogram ``name`` (its ``_bucket`` samples summed over other labels), or ``None``."""
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in samples.get(f"{name}_bucket", ()):
        if all(labels.get(k) == v for k, v in match.items()):
            buckets[float(labels["le"])] += value
    if not buckets:
        return None
    bounds = sorted(buckets)
    count = buckets[bounds[-1]]
    if count <= 0:
        return None
    rank = q * count
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return previous_bound
            width = buckets[bound] - previous_count
            fraction = (rank - previous_count) / width if width else 1.0
            return previous_bound + (bound - previous_bound) * fraction
        previous_bound, previous_count = bound, buckets[bound]
    return previous_bound


def summarise(status: dict[str, Any], metrics: Samples, before: Samples | None, interval: float) -> list[str]:
    """The lines ``cpimgw status`` prints."""
    lines = []
    healthy = bool(status.get("healthy"))
    lines.append(f"gateway {status.get('gateway', '?')}: {'healthy' if healthy else 'UNHEALTHY'}")
    for problem in status.get("problems", []):
        lines.append(f"  problem: {problem}")
    connections: dict[str, dict[str, int]] = defaultdict(dict)
    for labels, value in metrics.get("cpimgw_connections", ()):
        connections[labels.get("adapter", "")][labels.get("peer_kind", "")] = int(value)
    lines.append("adapters:")
    for name, state in sorted((status.get("adapters") or {}).items()):
        words = ["running" if state.get("running") else "STOPPED"]
        if state.get("connected") is not None:
            words.append("connected" if state.get("connected") else "NOT CONNECTED")
        kinds = connections.get(name) or {}
        if kinds:
            words.append("connections " + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())))
        received = total(metrics, "cpimgw_operations_total", adapter=name, direction="in")
        sent = total(metrics, "cpimgw_operations_total", adapter=name, direction="out")
        words.append(f"in {received:.0f}, out {sent:.0f}")
        if before is not None and interval > 0:
            rate_in = (received - total(before, "cpimgw_operations_total", adapter=name, direction="in")) / interval
            rate_out = (sent - total(before, "cpimgw_operations_total", adapter=name, direction="out")) / interval
            words.append(f"{rate_in:.2f}/s in, {rate_out:.2f}/s out")
        lines.append(f"  {name}: " + "; ".join(words))
    outcomes = by_label(metrics, "cpimgw_operations_total", "outcome", direction="out")
    failures = {k: v for k, v in outcomes.items() if k not in ("success", "indeterminate") and v}
    delivered = outcomes.get("success", 0) + outcomes.get("indeterminate", 0)
    lines.append(f"deliveries: {delivered:.0f} answered, {sum(failures.values()):.0f} failed")
    for condition, count in sorted(failures.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"  {condition}: {count:.0f}")
    p50 = quantile(metrics, "cpimgw_operation_duration_seconds", 0.5, direction="out")
    p99 = quantile(metrics, "cpimgw_operation_duration_seconds", 0.99, direction="out")
    if p50 is not None and p99 is not None:
        lines.append(f"delivery latency: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (since start)")
    subscriptions = total(metrics, "cpimgw_subscriptions")
    documents = total(metrics, "cpimgw_presence_documents")
    lines.append(f"presence: {subscriptions:.0f} subscriptions, {documents:.0f} presence documents")
    guards = [
        ("duplicates dropped", total(metrics, "cpimgw_duplicates_dropped_total")),
        ("loops stopped", total(metrics, "cpimgw_loops_stopped_total")),
        ("parse errors", total(metrics, "cpimgw_parse_errors_total")),
        ("TLS handshake failures", total(metrics, "cpimgw_tls_handshake_failures_total")),
        ("authentication failures", total(metrics, "cpimgw_auth_failures_total")),
    ]
    lines.append("guards: " + ", ".join(f"{what} {count:.0f}" for what, count in guards))
    return lines


def run(url: str, out: TextIO, err: TextIO, *, interval: float = 0.0, as_json: bool = False,
        sleep: Callable[[float], None] = time.sleep, timeout: float = 5.0) -> int:
    """Read the endpoint at ``url`` and print the summary; the exit status (module docstring)."""
    base = url.rstrip("/")
    for suffix in ("/status", "/metrics", "/health"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    try:
        code, body = fetch(base + "/status", timeout)
        if code != 200:
            err.write(f"cpimgw: status: {base}/status answered {code}\n")
            return EXIT_UNHEALTHY
        status = json.loads(body.decode("utf-8"))
        before = None
        if interval > 0:
            before = parse_metrics(fetch(base + "/metrics", timeout)[1].decode("utf-8"))
            sleep(interval)
        code, body = fetch(base + "/metrics", timeout)
        metrics = parse_metrics(body.decode("utf-8")) if code == 200 else {}
    except Unreachable as error:
        err.write(f"cpimgw: status: unreachable: {error}\n")
        return EXIT_UNHEALTHY
    except (ValueError, UnicodeDecodeError) as error:
        err.write(f"cpimgw: status: {base} answered something that is not a cpimgw status: {error}\n")
        return EXIT_UNHEALTHY
    if as_json:
        out.write(json.dumps(status, indent=1, sort_keys=True) + "\n")
    else:
        for line in summarise(status, metrics, before, interval):
            out.write(line + "\n")
    return EXIT_HEALTHY if status.get("healthy") else EXIT_UNHEALTHY


def url_from_config(path: str) -> str:
    """The endpoint URL that the configuration file at ``path`` opens (raises ``ConfigError``)."""
    from cpimgw.config import load_config
    from cpimgw.cpim.errors import ConfigError

    config = load_config(path)
    if not config.gateway.status_port:
        raise ConfigError("the status endpoint is off (status_port = 0)", path=path, key="gateway.status_port")
    host = config.gateway.status_address
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{config.gateway.status_port}"


__all__ = ["DEFAULT_URL", "fetch", "parse_metrics", "quantile", "run", "summarise", "url_from_config"]
