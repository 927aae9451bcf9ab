"""Core throughput on one core: Message/CPIM parses/s, PIDF parses/s, bus routing operations/s.

Run: ``.venv/bin/python benchmarks/bench_core.py [--seconds 2]``

Each figure is the best of three timed rounds of at least ``--seconds``
seconds of CPU time (``time.process_time``), single-threaded, so it measures
one core.  The inputs are the RFC 3862 §5.1 message and the RFC 4480 §4
style person/device/tuple document.  The bus figure routes ``Message``
operations from one in-memory adapter to another through a started
:class:`cpimgw.bus.Bus` on a :class:`cpimgw.store.memory.MemoryStore`
(routing, MaxForwards, duplicate key, policy, delivery, response).
Nothing here touches the network.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per timed round (default 2)")
    args = parser.parse_args(argv)

    from cpimgw.cpim.message import parse_message
    from cpimgw.cpim.pidf import parse_pidf

    understood = frozenset({"MyFeatures.VitalMessageOption"})
    figures = [
        ("Message/CPIM parses/s (RFC 3862 §5.1)", rate(lambda: parse_message(RFC3862_5_1, understood=understood), args.seconds)),
        ("PIDF parses/s (RPID person/device/tuple)", rate(lambda: parse_pidf(RPID_DOCUMENT), args.seconds)),
        ("bus routing operations/s (Message, memory store)", bench_bus(args.seconds)),
    ]
    print(f"cpimgw core benchmark, Python {sys.version.split()[0]}, one core (CPU time)")
    for label, value in figures:
        print(f"{label:52s} {value:12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
