"""Bus throughput: RFC 3860 messages through the bus, and RFC 3859 presence fan-out.

Prints operations/s on one core for:

- ``message``: a ``Message`` dispatched by one ``RecordingAdapter`` to another
  through :class:`cpimgw.bus.Bus` on a ``MemoryStore`` (validity, MaxForwards,
  duplicate key, routing, policy, capability, delivery);
- ``fanout``: one ``Publish`` notified to N watchers (notifies/s).

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_bus.py [messages] [watchers]``.
Not part of the test run.
"""

from __future__ import annotations

import sys
import time

from cpimgw.cpim.operations import MEDIA_PIDF, Content, Message, Publish, Subscribe
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus


def bench_messages(count: int) -> float:
    bus = make_bus()
    alpha, beta = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
    attach(bus, alpha, beta)
    source, destination = im_uri("alice", "alpha.example"), im_uri("bob", "beta.example")
    content = Content("message/cpim", b"From: <im:alice@alpha.example>\r\n\r\nContent-Type: text/plain\r\n\r\nhi")
    messages = [Message(source, destination, content, message_id=f"m{i}", origin="alpha") for i in range(count)]
    answered = []
    start = time.perf_counter()
    for message in messages:
        bus.dispatch(message).addCallback(answered.append)
        if len(beta.delivered) > 10000:
            beta.clear()
    elapsed = time.perf_counter() - start
    assert len(answered) == count and all(response.ok for response in answered)
    return count / elapsed


def bench_fanout(watchers: int) -> float:
    # The real reactor (not running): its callLater keeps a heap, where the
    # test Clock re-sorts every timer on each call (quadratic for 10k timers).
    from twisted.internet import reactor

    bus = make_bus(reactor=reactor)
    alpha, beta = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
    attach(bus, alpha, beta)
    target = pres_uri("bob", "beta.example")
    for i in range(watchers):
        alpha.inject(Subscribe(pres_uri(f"w{i}", "alpha.example"), target, 3600))
    reactor.runUntilCurrent()  # the first notifies (callLater(0)); the 3600 s timers never fire here
    alpha.clear()
    document = Content(MEDIA_PIDF, b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:bob@beta.example'/>")
    start = time.perf_counter()
    beta.inject(Publish(target, document, instance="desk"))
    elapsed = time.perf_counter() - start
    assert len(alpha.delivered) == watchers, len(alpha.delivered)
    return watchers / elapsed


def main(argv: list[str]) -> None:
    count = int(argv[1]) if len(argv) > 1 else 50000
    watchers = int(argv[2]) if len(argv) > 2 else 10000
    print(f"bus message routing: {bench_messages(count):,.0f} messages/s ({count} messages, MemoryStore)")
    print(f"presence fan-out: {bench_fanout(watchers):,.0f} notifies/s ({watchers} watchers, one publish)")


if __name__ == "__main__":
    main(sys.argv)
