"""Benchmark: PRIM SEND through the gateway (messages/s, p50/p99 latency), loopback, one core.

One process, one reactor (so everything shares one core): a cpimgw bus with
the PRIM adapter listening on 127.0.0.1 (ephemeral port), a sender UA and a
receiver UA (listening), both :class:`PrimClient`.  Each SEND goes UA ->
adapter -> bus (duplicate guard, routing, policy) -> adapter -> receiver UA,
and its 200 back the same way; the latency is measured from the sender's
write to the sender's receipt of the final 200.  ``--window`` SENDs are kept
in flight (pipelining by request identifier).  The run is bounded by
``--seconds`` (after ``--warmup``).

    .venv/bin/python benchmarks/bench_prim.py --seconds 5 --window 32

Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, reactor  # noqa: E402

from cpimgw.adapters.prim.adapter import PrimAdapter, PrimSettings  # noqa: E402
from cpimgw.adapters.prim.client import PrimClient  # noqa: E402
from cpimgw.testing import make_bus  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


@defer.inlineCallbacks
def main(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    bus = make_bus(reactor=reactor, duplicate_ttl=60.0)
    yield bus.started
    settings = PrimSettings.from_mapping({
        "local_domains": ["prim.bench"], "users": {"alice": "a", "bob": "b"},
        "srv_lookup": False, "max_command_size": 65536,
        "max_request_rate": 0,  # one client sends thousands/s: no per-address limit
    })
    adapter = PrimAdapter(settings, bus, listen_ports={"client": 0})
    bus.register(adapter)
    yield adapter.startService()
    port = adapter.port_of("client")
    sender = PrimClient(reactor, "alice@prim.bench", "a", request_timeout=60)
    receiver = PrimClient(reactor, "bob@prim.bench", "b", request_timeout=60)
    yield sender.connect("127.0.0.1", port)
    yield receiver.connect("127.0.0.1", port)
    yield receiver.listen()
    body = b"x" * args.size
    latencies: list[float] = []
    state = {"sent": 0, "done": 0, "failed": 0, "measuring": False, "stop": False}
    finished: defer.Deferred = defer.Deferred()

    def one() -> None:
        if state["stop"]:
            if state["sent"] == state["done"] + state["failed"] and not finished.called:
                finished.callback(None)
            return
        start = time.perf_counter()
        state["sent"] += 1
        measuring = state["measuring"]

        def ok(response: object) -> None:
            state["done"] += 1
            if measuring and state["measuring"]:
                latencies.append(time.perf_counter() - start)
            one()

        def bad(reason: object) -> None:
            state["failed"] += 1
            one()

        sender.send("im:bob@prim.bench", body).addCallbacks(ok, bad)

    for _ in range(args.window):
        one()
    warm: defer.Deferred = defer.Deferred()
    reactor.callLater(args.warmup, warm.callback, None)
    yield warm
    state["measuring"] = True
    cpu_start, wall_start, done_start = time.process_time(), time.perf_counter(), state["done"]
    run: defer.Deferred = defer.Deferred()
    reactor.callLater(args.seconds, run.callback, None)
    yield run
    state["measuring"] = False
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    completed = state["done"] - done_start
    state["stop"] = True
    yield finished
    print(f"PRIM SEND through the gateway (loopback, one process/core, window {args.window}, body {args.size} B)")
    print(f"  completed      {completed} in {wall:.2f} s ({state['failed']} failed)")
    print(f"  throughput     {completed / wall:,.0f} messages/s")
    print(f"  CPU per msg    {cpu / max(completed, 1) * 1e6:,.0f} us (sender, gateway and receiver together)")
    print(f"  latency p50    {percentile(latencies, 0.50) * 1000:.2f} ms")
    print(f"  latency p99    {percentile(latencies, 0.99) * 1000:.2f} ms")
    print(f"  bus counters   delivered={bus.counters['delivered']} duplicates={bus.counters['duplicates']}")
    yield sender.logout()
    yield receiver.logout()
    yield adapter.stopService()
    yield bus.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured duration (bounded)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--window", type=int, default=32, help="SENDs in flight")
    parser.add_argument("--size", type=int, default=100, help="body octets")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 60.0)
    outcome: list[object] = []

    def done(result: object) -> None:
        outcome.append(result)
        reactor.stop()

    reactor.callWhenRunning(lambda: main(args).addBoth(done))
    reactor.run()
    if outcome and hasattr(outcome[0], "printTraceback"):
        outcome[0].printTraceback()  # type: ignore[attr-defined]
        sys.exit(1)


if __name__ == "__main__":
    cli()
