"""Benchmark: sipp drives SIP MESSAGEs through the gateway's SIP adapter to a test adapter (loopback).

    .venv/bin/python benchmarks/bench_sip.py [--rate 2000] [--count 10000] [--transport udp|tcp]

The gateway (SIP adapter -> bus -> RecordingAdapter) runs in this process,
pinned to CPU 0 when the machine has more than one; sipp runs pinned to CPU
1 (``--no-pin`` to leave both to the scheduler).  Prints the achieved
messages/s, whether every MESSAGE was answered 200 and delivered (no loss,
retransmissions), the p50/p99/max response time sipp measured per MESSAGE
(``-trace_rtt``), and the full garbage collections seen during the run with
the longest pause.  The test adapter counts and forgets what it receives,
so the harness adds no garbage-collector load of its own.  Bounded: sipp's
own ``-timeout`` plus a reactor deadline; loopback only.  For where the CPU
goes, see ``benchmarks/profile_sip.py``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import glob
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import inlineCallbacks  # noqa: E402
from twisted.logger import globalLogBeginner, textFileLogObserver  # noqa: E402

from cpimgw.cpim.operations import Message, success  # noqa: E402
from cpimgw.testing import RecordingAdapter, attach, make_bus  # noqa: E402
from cpimgw.adapters.sip.adapter import SipAdapter, SipSettings  # noqa: E402
from tests.interop.sipp import UAC_MESSAGE, SippProcess, free_port  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


@inlineCallbacks
def run(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    workdir = tempfile.mkdtemp(prefix="bench_sip.")
    try:
        bus = make_bus(reactor=reactor)
        counted = [0]

        def count_and_forget(operation):  # type: ignore[no-untyped-def]
            # keep no operation alive: a growing list would be the harness's own GC load
            counted[0] += isinstance(operation, Message)
            sink.delivered.clear()
            return success(operation)

        sink = RecordingAdapter("cpim-test", ["xmpp.test"], reply=count_and_forget)
        attach(bus, sink)
        pauses: list[float] = []
        gc_started = [0.0]

        def gc_watch(phase, info):  # type: ignore[no-untyped-def]
            if info["generation"] != 2:
                return
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                pauses.append(time.perf_counter() - gc_started[0])

        gc.callbacks.append(gc_watch)
        adapter = SipAdapter(bus, SipSettings.from_mapping({
            "domains": ["sip.test"], "port": 0, "transports": ["udp", "tcp"], "use_dns": False,
            "max_request_rate": 0,  # one source sends thousands/s: no per-source limit
        }), reactor=reactor)
        bus.register(adapter)
        adapter.startService()
        port = adapter.ports[args.transport.upper()]
        sipp_args = [f"127.0.0.1:{port}", "-s", "bob", "-i", "127.0.0.1", "-p", str(free_port()),
                     "-m", str(args.count), "-r", str(args.rate), "-l", str(max(100, args.rate)),
                     "-t", "u1" if args.transport == "udp" else "t1", "-timeout", f"{args.count // args.rate + 30}s",
                     "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-stf", os.path.join(workdir, "stat.csv")]
        scenario = UAC_MESSAGE.format(domain="xmpp.test")
        pin = bool(os.cpu_count() and os.cpu_count() > 1 and not args.no_pin)
        if pin:
            os.sched_setaffinity(0, {0})
        started = time.monotonic()
        sipp = SippProcess(scenario, sipp_args, workdir, timeout=args.count / args.rate + 60)
        if pin:  # sipp inherited CPU 0 from us: give it CPU 1
            os.sched_setaffinity(sipp.process.pid, {1})
        code, output = yield sipp.ended
        elapsed = time.monotonic() - started
        gc.callbacks.remove(gc_watch)
        delivered = counted[0]
        rtts: list[float] = []
        warm: list[float] = []
        for path in glob.glob(os.path.join(workdir, "*_rtt.csv")):
            with open(path) as handle:
                for row in csv.reader(handle, delimiter=";"):
                    try:
                        rtts.append(float(row[1]))
                        if float(row[0]) > 1000.0:
                            warm.append(float(row[1]))
                    except (IndexError, ValueError):
                        continue
        retrans = "?"
        stat_files = glob.glob(os.path.join(workdir, "stat.csv"))
        if stat_files:
            with open(stat_files[0]) as handle:
                rows = list(csv.reader(handle, delimiter=";"))
            if len(rows) >= 2:
                header, last = rows[0], rows[-1]
                if "Retransmissions(C)" in header:
                    retrans = last[header.index("Retransmissions(C)")]
                if "FailedCall(C)" in header:
                    failed = last[header.index("FailedCall(C)")]
                    print(f"failed calls:        {failed}")
        print(f"transport:           {args.transport}")
        print(f"messages requested:  {args.count} at {args.rate}/s")
        print(f"sipp exit code:      {code}")
        print(f"delivered to bus:    {delivered}  (loss: {args.count - delivered})")
        print(f"sipp retransmissions:{retrans}")
        print(f"wall time:           {elapsed:.2f} s  -> {delivered / elapsed:.0f} messages/s end to end")
        if rtts:  # sipp measures whole milliseconds: 0 means under 1 ms
            print(f"latency (sipp rtt, 1 ms resolution): p50 {percentile(rtts, 0.5):.0f} ms  "
                  f"p99 {percentile(rtts, 0.99):.0f} ms  max {max(rtts):.0f} ms  ({len(rtts)} samples)")
        if warm:
            print(f"  after the first second: p50 {percentile(warm, 0.5):.0f} ms  p99 {percentile(warm, 0.99):.0f} ms  "
                  f"max {max(warm):.0f} ms  ({len(warm)} samples)")
        print(f"stack counters:      {adapter.stack.counters}")
        if pauses:
            print(f"full GC collections: {len(pauses)}, longest {max(pauses) * 1000:.0f} ms, "
                  f"total {sum(pauses) * 1000:.0f} ms")
        if code != 0:
            print(output[-1500:])
        yield adapter.stopService()
        yield bus.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True) if not os.environ.get("KEEP") else print(workdir)
        reactor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the gateway to CPU 0 and sipp to CPU 1")
    args = parser.parse_args()
    if args.verbose:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    reactor.callWhenRunning(run, args)
    reactor.run()


if __name__ == "__main__":
    main()
