"""Profile the SIP data path in one process, without sockets.

    .venv/bin/python benchmarks/profile_sip.py [--count 20000] [--direction in|out] [--profile] [--sort tottime]

Feeds ``--count`` distinct SIP MESSAGE datagrams (the sipp benchmark's
scenario, text/plain) straight into the stack's ``datagram_received``: parse
-> server transaction -> mapping (Message/CPIM built) -> ``bus.dispatch`` ->
``RecordingAdapter`` -> ``Response`` -> 200 OK serialised and "sent" to an
in-memory datagram sink.  Prints µs per message (CPU, ``time.process_time``)
and, with ``--profile``, the top of a cProfile report.  The clock is the real
(epoll) reactor, not started: its timers are a heap, as in production
(``MemoryReactorClock`` sorts its whole call list on every ``callLater``, which
would dominate the profile); ``runUntilCurrent`` is called every 256 messages,
as the running reactor would between reads, so cancelled timers are dropped.

``--direction out`` profiles the other way: ``Message`` operations injected
on the bus (message/cpim content, as from the XMPP adapter) -> SIP adapter
``deliver`` -> MESSAGE in a UDP client transaction -> a 200 OK fed back at
once (made by the sink from the request's lines) -> CPIM ``Response``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cpimgw.adapters.sip.adapter import SipAdapter, SipSettings  # noqa: E402
from cpimgw.adapters.sip.transport import Source, UDPTransport  # noqa: E402
from cpimgw.cpim.operations import success  # noqa: E402
from cpimgw.testing import RecordingAdapter, attach, make_bus  # noqa: E402

TEMPLATE = (
    "MESSAGE sip:bob@xmpp.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-1-0\r\n"
    "From: <sip:sipp@sip.test>;tag=1234SIPpTag00{n}\r\n"
    "To: <sip:bob@xmpp.test>\r\n"
    "Call-ID: {n}-1234@127.0.0.1\r\n"
    "CSeq: 1 MESSAGE\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: {length}\r\n"
    "\r\n"
    "{body}"
)


class _Sink:
    """A datagram transport that keeps only a count of what was written.

    With ``answer`` set, every request written is answered at once with a
    200 OK datagram copying its Via/From/To/Call-ID/CSeq lines.
    """

    def __init__(self) -> None:
        self.sent = 0
        self.last = b""
        self.answer = None

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent += 1
        self.last = data
        if self.answer is not None and not data.startswith(b"SIP/2.0"):
            head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            copied = [line for line in head[1:] if line[:4] in (b"Via:", b"From", b"To: ", b"Call", b"CSeq")]
            response = b"SIP/2.0 200 OK\r\n" + b"\r\n".join(copied) + b";tag=s1\r\nContent-Length: 0\r\n\r\n" \
                if copied[-1].startswith(b"To") else \
                b"SIP/2.0 200 OK\r\n" + b"\r\n".join(copied) + b"\r\nContent-Length: 0\r\n\r\n"
            self.answer(response)


def datagrams(count: int) -> list[bytes]:
    out = []
    for n in range(count):
        body = f"hello from sipp {n}"
        out.append(TEMPLATE.format(n=n, length=len(body), body=body).encode())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("--direction", choices=("in", "out"), default="in")
    args = parser.parse_args()
    if args.direction == "out":
        outbound(args)
        return

    from twisted.internet import reactor

    bus = make_bus(reactor=reactor)
    sink_adapter = RecordingAdapter("cpim-test", ["xmpp.test"])
    attach(bus, sink_adapter)
    adapter = SipAdapter(bus, SipSettings.from_mapping({
        "domains": ["sip.test"], "port": 0, "transports": ["udp"], "use_dns": False,
        "max_request_rate": 0,  # one source sends thousands/s: no per-source limit
    }), reactor=bus.reactor)
    bus.register(adapter)
    udp = UDPTransport(adapter.stack)
    sink = _Sink()
    udp.transport = sink  # type: ignore[assignment]
    adapter.stack.udp = udp
    source = Source("UDP", "127.0.0.1", 5070)
    data = datagrams(args.count)
    # warm up (imports, caches)
    for item in datagrams(200):
        adapter.stack.datagram_received(item.replace(b"z9hG4bK-", b"z9hG4bKw").replace(b"Call-ID: ", b"Call-ID: w"),
                                        source)
    sink_adapter.clear()
    sink_adapter.reply = lambda operation: (sink_adapter.delivered.clear(), success(operation))[1]
    gc.freeze()  # the prepared datagrams and the warm-up are the harness's, not the data path's GC load
    sent_before = sink.sent
    receive = adapter.stack.datagram_received
    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    for number, item in enumerate(data):
        receive(item, source)
        if number % 256 == 255:
            reactor.runUntilCurrent()  # as a running reactor would: drops cancelled timers, runs due ones
    if profiler is not None:
        profiler.disable()
    elapsed = time.process_time() - started
    answered = sink.sent - sent_before
    print(f"messages: {args.count}  answered: {answered}")
    first_line = sink.last.split(b"\r\n", 1)[0].decode()
    print(f"last answer: {first_line}")
    print(f"CPU per message: {elapsed / args.count * 1e6:.1f} µs  ({args.count / elapsed:.0f} messages/s per core)")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.lines)


def outbound(args: argparse.Namespace) -> None:
    from twisted.internet import reactor

    from cpimgw.cpim.message import build_message
    from cpimgw.cpim.operations import Content, Message, Status
    from cpimgw.cpim.uri import im_uri

    bus = make_bus(reactor=reactor)
    xmpp = RecordingAdapter("xmpp", ["xmpp.test"])
    attach(bus, xmpp)
    adapter = SipAdapter(bus, SipSettings.from_mapping({
        "domains": ["sip.test"], "port": 0, "transports": ["udp"], "use_dns": False,
        "max_request_rate": 0,  # one source sends thousands/s: no per-source limit
        "routes": {"sip.test": "sip:127.0.0.1:5070"},
    }), reactor=bus.reactor)
    bus.register(adapter)
    udp = UDPTransport(adapter.stack)
    sink = _Sink()
    udp.transport = sink  # type: ignore[assignment]
    adapter.stack.udp = udp
    source = Source("UDP", "127.0.0.1", 5070)
    sink.answer = lambda data: adapter.stack.datagram_received(data, source)  # type: ignore[assignment]
    sender, recipient = im_uri("juliet", "xmpp.test"), im_uri("romeo", "sip.test")
    operations = [
        Message(sender, recipient, Content("message/cpim", build_message(
            sender, [recipient], f"hello {n}".encode(), "text/plain; charset=utf-8").to_bytes()),
            message_id=f"m{n}")
        for n in range(args.count + 200)
    ]
    counts = {"answered": 0, "success": 0}

    def count(response) -> None:  # type: ignore[no-untyped-def]
        counts["answered"] += 1
        counts["success"] += response.status is Status.SUCCESS

    for operation in operations[:200]:
        xmpp.inject(operation)
    gc.freeze()  # the prepared operations are the harness's, not the data path's GC load
    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    for number, operation in enumerate(operations[200:]):
        xmpp.inject(operation).addCallback(count)
        if number % 256 == 255:
            reactor.runUntilCurrent()  # as a running reactor would: drops cancelled timers, runs due ones
    if profiler is not None:
        profiler.disable()
    elapsed = time.process_time() - started
    print(f"messages: {args.count}  answered: {counts['answered']}  success: {counts['success']}")
    print(f"CPU per message: {elapsed / args.count * 1e6:.1f} µs  ({args.count / elapsed:.0f} messages/s per core)")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.lines)


if __name__ == "__main__":
    main()
