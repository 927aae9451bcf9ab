"""Core throughput on one core: Message/CPIM parses/s, PIDF parses/s, bus routing operations/s.

Run: ``.venv/bin/python benchmarks/bench_core.py [--seconds 2]``

Each figure is the best of three timed rounds of at least ``--seconds``
seconds of CPU time (``time.process_time``), single-threaded, so it measures
one core.  The inputs are the RFC 3862 §5.1 message and the RFC 4480 §4
style person/device/tuple document.  The bus figures route ``Message``
operations from one in-memory adapter to another through a started
:class:`cpimgw.bus.Bus` (routing, MaxForwards, duplicate key, policy,
delivery, response): on a :class:`cpimgw.store.memory.MemoryStore` (every
step answers at once: the bus's synchronous fast path), and on a
:class:`cpimgw.store.sqlite.SQLiteStore` in a temporary directory (every
duplicate key is a write in the reactor's thread pool, whose CPU time counts
too; ``--window`` messages in flight so that one transaction carries a
reactor turn's writes; the real reactor runs for it).  Nothing here touches
the network.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable

RFC3862_5_1 = (
    b"From: MR SANDERS <im:piglet@100akerwood.com>\r\n"
    b"To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n"
    b"DateTime: 2000-12-13T13:40:00-08:00\r\n"
    b"Subject: the weather will be fine today\r\n"
    b"Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n"
    b"NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n"
    b"Require: MyFeatures.VitalMessageOption\r\n"
    b"MyFeatures.VitalMessageOption: Confirmation-requested\r\n"
    b"MyFeatures.WackyMessageOption: Use-silly-font\r\n"
    b"\r\n"
    b"Content-type: text/xml; charset=utf-8\r\n"
    b"Content-ID: <1234567890@foo.com>\r\n"
    b"\r\n"
    b"<body>\r\n"
    b"Here is the text of my message.\r\n"
    b"</body>\r\n"
)

RPID_DOCUMENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
     xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
     xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
     xmlns:c="urn:ietf:params:xml:ns:pidf:cipid"
     entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status><basic>open</basic></status>
    <dm:deviceID>urn:x-mac:0003ba4811e3</dm:deviceID>
    <rpid:relationship><rpid:self/></rpid:relationship>
    <rpid:service-class><rpid:electronic/></rpid:service-class>
    <contact priority="0.8">im:someone@mobilecarrier.net</contact>
    <note xml:lang="en">Don't Disturb Please!</note>
    <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
    <timestamp>2005-10-27T16:49:29Z</timestamp>
  </tuple>
  <dm:person id="p1">
    <rpid:activities rpid:from="2005-05-30T12:00:00+05:00" rpid:until="2005-05-30T17:00:00+05:00">
      <rpid:note>Far away</rpid:note>
      <rpid:away/>
    </rpid:activities>
    <rpid:class>calendar</rpid:class>
    <rpid:mood><rpid:angry/><rpid:other>brooding</rpid:other></rpid:mood>
    <rpid:place-is><rpid:audio><rpid:noisy/></rpid:audio></rpid:place-is>
    <rpid:privacy><rpid:unknown/></rpid:privacy>
    <rpid:sphere><rpid:bowling-league/></rpid:sphere>
    <rpid:time-offset>-240</rpid:time-offset>
    <rpid:user-input idle-threshold="600" last-input="2004-10-21T13:20:00.000-05:00">idle</rpid:user-input>
    <dm:timestamp>2005-05-30T16:09:44+05:00</dm:timestamp>
  </dm:person>
  <dm:device id="pc122">
    <rpid:user-input idle-threshold="600">idle</rpid:user-input>
    <dm:deviceID>urn:device:0003ba4811e3</dm:deviceID>
    <dm:note>PC</dm:note>
  </dm:device>
</presence>
"""


def rate(work: Callable[[], object], seconds: float) -> float:
    """Operations per CPU second of ``work``: best of three rounds."""
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.process_time()
        deadline = start + seconds
        while True:
            for _ in range(100):
                work()
            count += 100
            now = time.process_time()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def bench_bus(seconds: float) -> float:
    """Messages routed per CPU second through a started bus between two in-memory adapters."""
    from cpimgw.cpim.operations import MEDIA_CPIM, Content, Message
    from cpimgw.cpim.uri import im_uri
    from cpimgw.testing import RecordingAdapter, make_bus

    bus = make_bus()
    source = RecordingAdapter("alpha", ("alpha.example",))
    sink = RecordingAdapter("beta", ("beta.example",))
    bus.register(source)
    bus.register(sink)
    content = Content(MEDIA_CPIM, RFC3862_5_1)
    sender, recipient = im_uri("alice", "alpha.example"), im_uri("bob", "beta.example")
    results: list[object] = []

    def route_one() -> None:
        operation = Message(sender, recipient, content, origin="alpha")
        bus.dispatch(operation).addCallback(results.append)
        if len(sink.delivered) > 10000:
            del sink.delivered[:]

    figure = rate(route_one, seconds)
    failures = [r for r in results if not r.ok]  # type: ignore[attr-defined]
    if failures:
        raise SystemExit(f"bus benchmark: {len(failures)} operations failed, first: {failures[0]}")
    return figure


def bench_bus_sqlite(seconds: float, window: int = 100) -> float:
    """Messages routed per CPU second through a started bus on SQLite (runs the global reactor once)."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, inlineCallbacks

    from cpimgw.bus import Bus
    from cpimgw.cpim.operations import MEDIA_CPIM, Content, Message
    from cpimgw.cpim.uri import im_uri
    from cpimgw.policy import DefaultPolicy
    from cpimgw.store.sqlite import SQLiteStore
    from cpimgw.testing import RecordingAdapter, attach

    content = Content(MEDIA_CPIM, RFC3862_5_1)
    sender, recipient = im_uri("alice", "alpha.example"), im_uri("bob", "beta.example")
    outcome: dict[str, Any] = {}

    def one_round(bus: Any, sink: Any) -> Deferred[float]:
        done: Deferred[float] = Deferred()
        state = {"open": 0, "answered": 0, "failed": 0, "sending": False}
        start = time.process_time()
        deadline = start + seconds

        def answer(response: Any) -> None:
            state["open"] -= 1
            state["answered"] += 1
            state["failed"] += not response.ok
            if len(sink.delivered) > 10000:
                sink.clear()
            if not state["sending"]:
                send()

        def send() -> None:
            state["sending"] = True
            while state["open"] < window and time.process_time() < deadline:
                state["open"] += 1
                bus.dispatch(Message(sender, recipient, content, origin="alpha")).addCallback(answer)
            state["sending"] = False
            if state["open"] == 0 and not done.called:
                if state["failed"]:
                    done.errback(SystemExit(f"bus benchmark (sqlite): {state['failed']} operations failed"))
                else:
                    done.callback(state["answered"] / (time.process_time() - start))

        send()
        return done

    @inlineCallbacks
    def run():  # type: ignore[no-untyped-def]
        try:
            with tempfile.TemporaryDirectory() as directory:
                store = SQLiteStore(os.path.join(directory, "bench.sqlite"), reactor=reactor)
                bus = Bus(reactor, store, DefaultPolicy())
                yield bus.start()
                source = RecordingAdapter("alpha", ("alpha.example",))
                sink = RecordingAdapter("beta", ("beta.example",))
                attach(bus, source, sink)
                best = 0.0
                for _ in range(3):
                    best = max(best, (yield one_round(bus, sink)))
                yield bus.stop()
                outcome["rate"] = best
        except BaseException as error:  # reported after the reactor stopped
            outcome["error"] = error
        finally:
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
    if "error" in outcome:
        raise outcome["error"]
    return float(outcome["rate"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per timed round (default 2)")
    parser.add_argument("--window", type=int, default=100,
                        help="messages in flight at once on SQLite (default 100)")
    args = parser.parse_args(argv)

    from cpimgw.cpim.message import parse_message
    from cpimgw.cpim.pidf import parse_pidf

    understood = frozenset({"MyFeatures.VitalMessageOption"})
    figures = [
        ("Message/CPIM parses/s (RFC 3862 §5.1)", rate(lambda: parse_message(RFC3862_5_1, understood=understood), args.seconds)),
        ("PIDF parses/s (RPID person/device/tuple)", rate(lambda: parse_pidf(RPID_DOCUMENT), args.seconds)),
        ("bus routing operations/s (Message, memory store)", bench_bus(args.seconds)),
        ("bus routing operations/s (Message, SQLite store)", bench_bus_sqlite(args.seconds, args.window)),
    ]
    print(f"cpimgw core benchmark, Python {sys.version.split()[0]}, one core (CPU time)")
    for label, value in figures:
        print(f"{label:52s} {value:12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
