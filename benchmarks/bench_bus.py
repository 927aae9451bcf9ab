"""Bus throughput: RFC 3860 messages through the bus, and RFC 3859 presence fan-out.

Prints operations/s on one core for:

- ``message``: a ``Message`` dispatched by one ``RecordingAdapter`` to another
  through :class:`cpimgw.bus.Bus` (validity, MaxForwards, duplicate key in the
  store, routing, policy, capability, delivery).  On SQLite every message's
  duplicate key is a store write: ``--window`` messages are kept in flight
  (what many connections sending at once look like), so that the store can
  group the writes of one reactor turn into one transaction;
- ``fanout``: one ``Publish`` notified to N watchers (notifies/s), timed
  until the publish's response fires (every watcher notified and its
  last-digest recorded); the best of 3 changes (the machine is shared).

With ``--metrics`` the bus and store are instrumented as ``twistd cpimgw``
runs them (:mod:`cpimgw.metrics`: counters, latency histograms, store
timings), to measure what the Prometheus metrics cost.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_bus.py [messages] [watchers] [--store memory|sqlite] [--metrics]``.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks

from cpimgw.bus import Bus
from cpimgw.cpim.operations import MEDIA_PIDF, Content, Message, Publish, Subscribe
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.policy import DefaultPolicy
from cpimgw.store.memory import MemoryStore
from cpimgw.testing import RecordingAdapter, attach


def make_store(kind: str, reactor: Any, directory: str, name: str) -> Any:
    if kind == "memory":
        return MemoryStore()
    from cpimgw.store.sqlite import SQLiteStore

    return SQLiteStore(os.path.join(directory, name + ".sqlite"), reactor=reactor)


#: Set by ``--metrics``: instrument every bus the benchmarks build.
METRICS = {"on": False}


@inlineCallbacks
def started_bus(reactor: Any, store: Any):  # type: ignore[no-untyped-def]
    if METRICS["on"]:
        from cpimgw.metrics import instrument_store

        instrument_store(store)
    bus = Bus(reactor, store, DefaultPolicy())
    if METRICS["on"]:
        from cpimgw.metrics import BusInstruments

        BusInstruments(bus)
    yield bus.start()
    alpha, beta = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
    attach(bus, alpha, beta)
    return bus, alpha, beta


@inlineCallbacks
def bench_messages(reactor: Any, store: Any, count: int, window: int):  # type: ignore[no-untyped-def]
    bus, alpha, beta = yield started_bus(reactor, store)
    source, destination = im_uri("alice", "alpha.example"), im_uri("bob", "beta.example")
    content = Content("message/cpim", b"From: <im:alice@alpha.example>\r\n\r\nContent-Type: text/plain\r\n\r\nhi")
    messages = [Message(source, destination, content, message_id=f"m{i}", origin="alpha") for i in range(count)]
    answered: list[Any] = []
    finished: Deferred[None] = Deferred()
    state = {"next": 0, "open": 0, "sending": False}

    def answer(response: Any) -> None:
        answered.append(response)
        state["open"] -= 1
        if len(beta.delivered) > 10000:
            beta.clear()
        if not state["sending"]:  # an answer that came later (the store answered in another turn)
            send()

    def send() -> None:
        state["sending"] = True
        while state["open"] < window and state["next"] < count:
            message = messages[state["next"]]
            state["next"] += 1
            state["open"] += 1
            bus.dispatch(message).addCallback(answer)
        state["sending"] = False
        if state["open"] == 0 and not finished.called:
            finished.callback(None)

    start = time.perf_counter()
    send()
    yield finished
    elapsed = time.perf_counter() - start
    assert len(answered) == count and all(response.ok for response in answered), answered[:3]
    yield bus.stop()
    return count / elapsed


@inlineCallbacks
def bench_fanout(reactor: Any, store: Any, watchers: int, rounds: int = 3):  # type: ignore[no-untyped-def]
    bus, alpha, beta = yield started_bus(reactor, store)
    target = pres_uri("bob", "beta.example")
    batch = 500
    for first in range(0, watchers, batch):
        yield gatherResults([
            alpha.inject(Subscribe(pres_uri(f"w{i}", "alpha.example"), target, 3600))
            for i in range(first, min(first + batch, watchers))
        ])
    # The first notifies go out in the next reactor turns.
    while len(alpha.delivered) < watchers:
        pause: Deferred[None] = Deferred()
        reactor.callLater(0.01, pause.callback, None)
        yield pause
    best = float("inf")
    for round in range(rounds):
        alpha.clear()
        document = Content(MEDIA_PIDF, b"<presence xmlns='urn:ietf:params:xml:ns:pidf' "
                                       b"entity='pres:bob@beta.example'><!-- %d --></presence>" % round)
        start = time.perf_counter()
        response = yield beta.inject(Publish(target, document, instance="desk"))
        best = min(best, time.perf_counter() - start)
        assert response.ok, response
        assert len(alpha.delivered) == watchers, len(alpha.delivered)
    # The digests are recorded: the same document again notifies nobody.
    alpha.clear()
    yield beta.inject(Publish(target, document, instance="desk"))
    assert alpha.delivered == [], len(alpha.delivered)
    yield bus.stop()
    return watchers / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", nargs="?", type=int, default=50000)
    parser.add_argument("watchers", nargs="?", type=int, default=10000)
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--window", type=int, default=100, help="messages in flight at once (default 100)")
    parser.add_argument("--metrics", action="store_true", help="instrument the bus and store (cpimgw.metrics)")
    args = parser.parse_args()
    METRICS["on"] = args.metrics
    from twisted.internet import task

    @inlineCallbacks
    def run(reactor: Any):  # type: ignore[no-untyped-def]
        with tempfile.TemporaryDirectory() as directory:
            rate = yield bench_messages(reactor, make_store(args.store, reactor, directory, "messages"),
                                        args.messages, args.window)
            metrics = ", metrics on" if args.metrics else ""
            print(f"bus message routing: {rate:,.0f} messages/s ({args.messages} messages, "
                  f"window {args.window}, {args.store} store{metrics})", flush=True)
            rate = yield bench_fanout(reactor, make_store(args.store, reactor, directory, "fanout"), args.watchers)
            print(f"presence fan-out: {rate:,.0f} notifies/s = {1e6 / rate:.1f} us/watcher "
                  f"({args.watchers} watchers, one publish, {args.store} store{metrics})", flush=True)

    task.react(run)


if __name__ == "__main__":
    main()
