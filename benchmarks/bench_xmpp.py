"""Benchmark of the XMPP adapter on loopback: messages/s and p50/p99 latency, both directions.

A tx_xmpp XEP-0114 router listens on 127.0.0.1 (a stand-in for the XMPP
server); the gateway's XMPPAdapter connects to it as ``gw.bench``, a second
component ``users.bench`` plays the XMPP users.  The other network is a
``cpimgw.testing.RecordingAdapter`` on a real bus with a MemoryStore.

- XMPP -> CPIM: ``users.bench`` sends N messages to ``bob\\40other.example@gw.bench``;
  latency is from the send to the RecordingAdapter's ``deliver``.
- CPIM -> XMPP: the RecordingAdapter injects N messages to
  ``alice@users.bench``; latency is from the inject to the arrival at
  ``users.bench``.
- Paced load, both directions: a fixed offered rate (``--rates``, default
  5000 and 10000 msg/s) for ``--seconds`` (default 3) seconds, open loop (each
  1 ms tick sends what the schedule says is due, so a slow gateway does not
  slow the sender down); reports the messages delivered (and lost), the
  rate achieved and p50/p99 latency below saturation.  The XMPP side sends
  pre-serialised stanzas, so the sender's own cost is small; the XEP-0114
  router (the stand-in XMPP server) runs in the same process and core and
  costs about as much as the gateway's XMPP side.
- Hostile input: CPU time to reject the 643-byte entity bomb and 2 MiB of
  newlines (time.process_time).

Run: ``.venv/bin/python benchmarks/bench_xmpp.py [N] [--rates 5000,10000]
[--seconds 3]`` (N, the burst size, defaults to 5000; bounded by a 120 s
watchdog).  Figures vary ±30 % on shared machines.
"""

from __future__ import annotations

import statistics
import sys
import time

sys.path.insert(0, ".")

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, inlineCallbacks  # noqa: E402
from twisted.internet.task import LoopingCall, deferLater  # noqa: E402
from twisted.words.xish import domish  # noqa: E402
from tx_xmpp import component as tx_component  # noqa: E402
from tx_xmpp.subprotocols import XMPPHandler  # noqa: E402

from cpimgw.adapters.xmpp.adapter import XMPPAdapter, XMPPSettings  # noqa: E402
from cpimgw.cpim.operations import Content, Message, success  # noqa: E402
from cpimgw.cpim.uri import parse_uri  # noqa: E402
from cpimgw.testing import RecordingAdapter, attach, make_bus  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Users(XMPPHandler):
    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[str, float] = {}
        self.ready: Deferred[None] = Deferred()

    def connectionInitialized(self) -> None:  # noqa: N802
        self.xmlstream.addObserver("/message", self.on_message)
        if not self.ready.called:
            self.ready.callback(None)

    def on_message(self, stanza: domish.Element) -> None:
        if stanza.body is not None:
            self.arrivals[str(stanza.body)] = time.perf_counter()


def hostile_figures() -> list[str]:
    from tests.adapters.xmpp.test_hardening import ENTITY_BOMB, HEADER, make_stream

    lines = []
    xs, transport, _ = make_stream()
    start = time.process_time()
    xs.dataReceived(ENTITY_BOMB)
    lines.append(f"entity bomb ({len(ENTITY_BOMB)} B): rejected={b'restricted-xml' in transport.value()} "
                 f"cpu={1000 * (time.process_time() - start):.2f} ms")
    xs, transport, _ = make_stream()
    xs.dataReceived(HEADER + b"<message><body>")
    flood = b"a\n" * (1024 * 1024)
    start = time.process_time()
    for index in range(0, len(flood), 65536):
        xs.dataReceived(flood[index : index + 65536])
    lines.append(f"2 MiB newlines: rejected={b'policy-violation' in transport.value()} "
                 f"cpu={1000 * (time.process_time() - start):.2f} ms")
    return lines


@inlineCallbacks
def paced(rate: int, seconds: float, send, arrivals: dict, label: str):
    """Offer ``rate`` msg/s for ``seconds`` s (open loop); print delivered, achieved rate, p50/p99."""
    total = int(rate * seconds)
    sent: dict[str, float] = {}
    arrivals.clear()
    start = time.perf_counter()
    state = {"next": 0}

    def tick():
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        now = time.perf_counter()
        while state["next"] < due:
            key = f"{label}{rate}-{state['next']}"
            sent[key] = now
            send(key)
            state["next"] += 1
        if state["next"] >= total:
            loop.stop()

    loop = LoopingCall(tick)
    yield loop.start(0.001)
    offered_for = time.perf_counter() - start
    deadline = time.perf_counter() + 5.0
    while len(arrivals) < total and time.perf_counter() < deadline:
        yield deferLater(reactor, 0.01, lambda: None)
    got = [key for key in sent if key in arrivals]
    latencies = [1000 * (arrivals[key] - sent[key]) for key in got]
    span = max(arrivals[key] for key in got) - start if got else float("nan")
    print(f"{label} paced {rate} msg/s for {offered_for:.2f} s: {len(got)}/{total} delivered "
          f"({total - len(got)} not within 5 s), {len(got) / span:.0f} msg/s; latency p50 "
          f"{statistics.median(latencies):.2f} ms p99 {percentile(latencies, 0.99):.2f} ms")


@inlineCallbacks
def main(count: int, rates: list[int], seconds: float):
    router = tx_component.Router()
    server = reactor.listenTCP(0, tx_component.XMPPComponentServerFactory(router, "s3cret"), interface="127.0.0.1")
    port = server.getHost().port
    bus = make_bus(reactor=reactor)
    yield bus.started
    received: dict[str, float] = {}

    def reply(operation):
        received[operation.message_id or ""] = time.perf_counter()
        return success(operation)

    other = RecordingAdapter("other", ["other.example"], reply=reply)
    attach(bus, other)
    settings = XMPPSettings.from_mapping({"mode": "component", "domain": "gw.bench", "xmpp_domains": ["users.bench"],
                                          "port": port, "bounce_wait": 0.0})
    adapter = XMPPAdapter("xmpp", bus, settings)
    bus.register(adapter)
    adapter.startService()
    users_component = tx_component.Component("127.0.0.1", port, "users.bench", "s3cret")
    users = Users()
    users.setHandlerParent(users_component)
    users_component.startService()
    yield users.ready
    while not adapter.connected:
        yield deferLater(reactor, 0.01, lambda: None)

    # XMPP -> CPIM
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for index in range(count):
        stanza = domish.Element((None, "message"))
        stanza["from"] = "alice@users.bench/desk"
        stanza["to"] = "bob\\40other.example@gw.bench"
        stanza["id"] = f"x{index}"
        stanza["type"] = "chat"
        stanza.addElement("body", content=f"hello {index}")
        sent[f"x{index}"] = time.perf_counter()
        users_component.send(stanza)
        if index % 200 == 199:
            yield deferLater(reactor, 0, lambda: None)
    while len(received) < count and time.perf_counter() - start < 30:
        yield deferLater(reactor, 0.01, lambda: None)
    elapsed = max(received.values()) - start if received else float("nan")
    latencies = [1000 * (received[key] - sent[key]) for key in sent if key in received]
    print(f"XMPP->CPIM: {len(received)}/{count} messages in {elapsed:.3f} s = {len(received) / elapsed:.0f} msg/s; "
          f"latency p50 {statistics.median(latencies):.2f} ms p99 {percentile(latencies, 0.99):.2f} ms")

    # CPIM -> XMPP
    injected: dict[str, float] = {}
    start = time.perf_counter()
    for index in range(count):
        body = f"back {index}"
        injected[body] = time.perf_counter()
        other.inject(Message(parse_uri("im:bob@other.example"), parse_uri("im:alice@users.bench"),
                             Content("text/plain", body.encode(), (("charset", "utf-8"),))))
        if index % 200 == 199:
            yield deferLater(reactor, 0, lambda: None)
    while len(users.arrivals) < count and time.perf_counter() - start < 30:
        yield deferLater(reactor, 0.01, lambda: None)
    elapsed = max(users.arrivals.values()) - start if users.arrivals else float("nan")
    latencies = [1000 * (users.arrivals[key] - injected[key]) for key in injected if key in users.arrivals]
    print(f"CPIM->XMPP: {len(users.arrivals)}/{count} messages in {elapsed:.3f} s = "
          f"{len(users.arrivals) / elapsed:.0f} msg/s; latency p50 {statistics.median(latencies):.2f} ms "
          f"p99 {percentile(latencies, 0.99):.2f} ms")
    # Paced XMPP -> CPIM: 1000 messages at about 500/s, for latency under light load.
    received.clear()
    sent.clear()
    for index in range(1000):
        stanza = domish.Element((None, "message"))
        stanza["from"] = "alice@users.bench/desk"
        stanza["to"] = "bob\\40other.example@gw.bench"
        stanza["id"] = f"p{index}"
        stanza.addElement("body", content=f"paced {index}")
        sent[f"p{index}"] = time.perf_counter()
        users_component.send(stanza)
        yield deferLater(reactor, 0.002, lambda: None)
    start = time.perf_counter()
    while len(received) < 1000 and time.perf_counter() - start < 10:
        yield deferLater(reactor, 0.01, lambda: None)
    latencies = [1000 * (received[key] - sent[key]) for key in sent if key in received]
    print(f"XMPP->CPIM paced ~500 msg/s: {len(received)}/1000; latency p50 {statistics.median(latencies):.2f} ms "
          f"p99 {percentile(latencies, 0.99):.2f} ms")
    # Paced, both directions: latency below saturation.
    template = ("<message from='alice@users.bench/desk' to='bob\\40other.example@gw.bench' id='{}' type='chat'>"
                "<body>paced</body></message>")

    def send_xmpp(key):
        users_component.xmlstream.send(template.format(key).encode())

    def send_cpim(key):
        other.inject(Message(parse_uri("im:bob@other.example"), parse_uri("im:alice@users.bench"),
                             Content("text/plain", key.encode(), (("charset", "utf-8"),))))

    for rate in rates:
        yield paced(rate, seconds, send_xmpp, received, "XMPP->CPIM")
        yield paced(rate, seconds, send_cpim, users.arrivals, "CPIM->XMPP")
    for line in hostile_figures():
        print(line)
    users_component.stopService()
    yield adapter.stopService()
    yield server.stopListening()
    yield bus.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=5000, help="burst size (default 5000)")
    parser.add_argument("--rates", default="5000,10000", help="paced offered rates, msg/s (default 5000,10000)")
    parser.add_argument("--seconds", type=float, default=3.0, help="paced duration per rate (default 3)")
    options = parser.parse_args()
    RATES = [int(rate) for rate in options.rates.split(",") if rate]

    def run():
        d = main(options.count, RATES, options.seconds)
        d.addErrback(lambda f: (print(f.getTraceback()), None))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.callLater(120, reactor.stop)
    reactor.run()
