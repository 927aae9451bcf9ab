"""Benchmark of the XMPP adapter in s2s mode on loopback: stream setup, messages/s, p50/p99 latency.

The gateway (``gw.bench``, an XMPPAdapter with ``mode = "s2s"``) and a
second :class:`~cpimgw.adapters.xmpp.s2s.S2SConnection` playing the XMPP
server of the users (``users.bench``) federate over loopback with STARTTLS
(certificates from a throw-away test CA, verified both ways) and XEP-0220
dialback.  The other network is a ``cpimgw.testing.RecordingAdapter`` on a
real bus with a MemoryStore.

- stream setup: time from the first stanza to its arrival, including TCP,
  STARTTLS, dialback and the dialback verification stream back;
- XMPP -> CPIM: ``users.bench`` sends N messages to
  ``bob\\40other.example@gw.bench``; latency from the send to the
  RecordingAdapter's ``deliver``;
- CPIM -> XMPP: the RecordingAdapter injects N messages to
  ``alice@users.bench``; latency from the inject to the arrival at ``users.bench``.

Run: ``.venv/bin/python benchmarks/bench_xmpp_s2s.py [N]`` (N defaults to
5000; bounded by a 60 s watchdog).  Figures vary ±30 % on shared machines.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, ".")

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import inlineCallbacks  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402
from twisted.words.xish import domish  # noqa: E402

from cpimgw.adapters.xmpp.adapter import XMPPAdapter, XMPPSettings  # noqa: E402
from cpimgw.adapters.xmpp.s2s import S2SConnection  # noqa: E402
from cpimgw.adapters.xmpp.tls import load_tls  # noqa: E402
from cpimgw.cpim.operations import Content, Message, success  # noqa: E402
from cpimgw.cpim.uri import parse_uri  # noqa: E402
from cpimgw.testing import RecordingAdapter, attach, make_bus  # noqa: E402
from tests.interop.test_xmpp_s2s_prosody import Certificates  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def message(sender: str, recipient: str, stanza_id: str, body: str) -> domish.Element:
    stanza = domish.Element(("jabber:server", "message"))
    stanza["from"], stanza["to"], stanza["id"], stanza["type"] = sender, recipient, stanza_id, "chat"
    stanza.addElement("body", content=body)
    return stanza


@inlineCallbacks
def main(count: int, directory: str):
    certs = Certificates(directory)
    gw_cert, gw_key = certs.issue("gw.bench", "gw")
    users_cert, users_key = certs.issue("users.bench", "users")
    users = S2SConnection(reactor, "users.bench", port=0, tls=load_tls(users_cert, users_key, certs.ca))
    users.startService()
    arrivals: dict[str, float] = {}
    users.router.addObserver("/message", lambda stanza: arrivals.__setitem__(str(stanza.body), time.perf_counter()))

    bus = make_bus(reactor=reactor)
    yield bus.started
    received: dict[str, float] = {}

    def reply(operation):
        received[operation.message_id or ""] = time.perf_counter()
        return success(operation)

    other = RecordingAdapter("other", ["other.example"], reply=reply)
    attach(bus, other)
    settings = XMPPSettings.from_mapping({
        "mode": "s2s", "domain": "gw.bench", "xmpp_domains": ["users.bench"], "s2s_port": 0,
        "peers": {"users.bench": f"127.0.0.1:{users.port}"}, "tls_certificate": gw_cert, "tls_key": gw_key,
        "tls_ca": certs.ca, "bounce_wait": 0.0,
    })
    adapter = XMPPAdapter("xmpp", bus, settings)
    bus.register(adapter)
    adapter.startService()
    users.peers["gw.bench"] = ("127.0.0.1", adapter.connection.port)

    # Stream setup, users.bench -> gw.bench (TCP, STARTTLS, dialback, verification stream back).
    start = time.perf_counter()
    users.send(message("alice@users.bench/desk", "bob\\40other.example@gw.bench", "setup", "setup"))
    while "setup" not in received and time.perf_counter() - start < 10:
        yield deferLater(reactor, 0.001, lambda: None)
    print(f"s2s stream setup users->gw (TCP+STARTTLS+dialback+verify): "
          f"{1000 * (received.get('setup', float('nan')) - start):.1f} ms")

    # XMPP -> CPIM
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for index in range(count):
        sent[f"x{index}"] = time.perf_counter()
        users.send(message("alice@users.bench/desk", "bob\\40other.example@gw.bench", f"x{index}", f"hello {index}"))
        if index % 200 == 199:
            yield deferLater(reactor, 0, lambda: None)
    while len([k for k in sent if k in received]) < count and time.perf_counter() - start < 30:
        yield deferLater(reactor, 0.01, lambda: None)
    done = [key for key in sent if key in received]
    elapsed = max(received[key] for key in done) - start if done else float("nan")
    latencies = [1000 * (received[key] - sent[key]) for key in done]
    print(f"XMPP->CPIM over s2s+TLS: {len(done)}/{count} messages in {elapsed:.3f} s = {len(done) / elapsed:.0f} "
          f"msg/s; latency p50 {statistics.median(latencies):.2f} ms p99 {percentile(latencies, 0.99):.2f} ms")

    # CPIM -> XMPP; the first message opens the stream gw -> users (stanzas beyond
    # the 1000 a domain may queue meanwhile would bounce), so it goes alone.
    start = time.perf_counter()
    other.inject(Message(parse_uri("im:bob@other.example"), parse_uri("im:alice@users.bench"),
                         Content("text/plain", b"setup", (("charset", "utf-8"),))))
    while "setup" not in arrivals and time.perf_counter() - start < 10:
        yield deferLater(reactor, 0.001, lambda: None)
    print(f"s2s stream setup gw->users (TCP+STARTTLS verified+dialback+verify): "
          f"{1000 * (arrivals.get('setup', float('nan')) - start):.1f} ms")
    arrivals.clear()
    injected: dict[str, float] = {}
    start = time.perf_counter()
    for index in range(count):
        body = f"back {index}"
        injected[body] = time.perf_counter()
        other.inject(Message(parse_uri("im:bob@other.example"), parse_uri("im:alice@users.bench"),
                             Content("text/plain", body.encode(), (("charset", "utf-8"),))))
        if index % 200 == 199:
            yield deferLater(reactor, 0, lambda: None)
    while len(arrivals) < count and time.perf_counter() - start < 30:
        yield deferLater(reactor, 0.01, lambda: None)
    elapsed = max(arrivals.values()) - start if arrivals else float("nan")
    latencies = [1000 * (arrivals[key] - injected[key]) for key in injected if key in arrivals]
    print(f"CPIM->XMPP over s2s+TLS: {len(arrivals)}/{count} messages in {elapsed:.3f} s = "
          f"{len(arrivals) / elapsed:.0f} msg/s; latency p50 {statistics.median(latencies):.2f} ms "
          f"p99 {percentile(latencies, 0.99):.2f} ms")
    print(f"gateway s2s counters: {dict(adapter.connection.counters)}")
    yield adapter.stopService()
    yield users.stopService()
    yield bus.stop()


if __name__ == "__main__":
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    DIRECTORY = tempfile.mkdtemp(prefix="cpimgw-bench-s2s-")

    def run():
        d = main(N, DIRECTORY)
        d.addErrback(lambda f: (print(f.getTraceback()), None))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.callLater(60, reactor.stop)
    try:
        reactor.run()
    finally:
        shutil.rmtree(DIRECTORY, ignore_errors=True)
