"""Benchmark: sipp -> SIP MESSAGE -> gateway -> XEP-0114 component -> real Prosody -> one XMPP user (loopback).

    .venv/bin/python benchmarks/bench_sip_xmpp.py [--rate 1000] [--count N] [--transport udp|tcp]
        [--bounce-wait 0.25] [--prosody-nodelay] [--no-pin] [--verbose]

Needs the README's venv plus the Debian packages ``prosody`` and ``sip-tester``
(sipp), as the interop tests do; run it from the checkout's top directory.

The second half of issue 4 (the first is ``benchmarks/bench_sip.py``, SIP ->
test adapter).  What runs, all on 127.0.0.1:

- **Prosody** (Debian ``prosody``, started by ``tests/interop/prosody.py`` in a
  temporary directory, stopped by its PID at the end) with one user
  ``alice@test.localhost`` and the component ``gw.test.localhost``.  That
  fixture's config sets ``c2s_require_encryption = false`` and
  ``allow_unencrypted_plain_auth = true``: the receiver logs in with SASL
  PLAIN on a plain TCP stream.  This is acceptable ON LOOPBACK ONLY (c2s
  listens on 127.0.0.1 alone, the password is a throwaway); never copy these
  two settings to a Prosody reachable from a network.
- **The gateway**, in this process: ``SipAdapter`` (UDP/TCP, domain
  ``sip.test``) + bus + ``XMPPAdapter`` in component mode (XEP-0114) attached
  to that Prosody, the adapters' default settings otherwise (``bounce_wait``
  from ``--bounce-wait``, default the XMPP adapter's own, as in ``conf/cpimgw.toml``).
- **The XMPP receiver**: a raw c2s client in a child process (this file run
  with ``--receiver``; slixmpp would be the bottleneck at thousands of
  stanzas/s), logged in as ``alice@test.localhost/bench`` with initial
  presence.  It counts ``<message>`` bodies and stamps each read with
  ``time.time()``.
- **sipp** sends ``--count`` MESSAGEs (default 5 s worth) to
  ``sip:alice@test.localhost`` at ``--rate``/s, open loop.  Each body is
  ``sipp-bench [call_number] <seconds> <microseconds>`` from sipp's
  ``<gettimeofday>`` just before the send, so the latency is sipp's send time
  to the receiver's read time, matched by the call number (one machine, one
  clock).  A MESSAGE may be answered 200 or 202: the XMPP side gives no
  delivery receipt, so the XMPP adapter answers ``indeterminant`` after
  ``bounce_wait`` seconds without an error bounce, which the SIP adapter sends
  as 202 Accepted.  With ``bounce_wait`` >= 0.5 s sipp retransmits each
  MESSAGE over UDP (T1 = 500 ms) before the 202 comes; the gateway's server
  transactions absorb those (see "sipp retransmissions").

Pinning (when the machine has more than one CPU and ``--no-pin`` is not
given): the gateway (this process) on CPU 0; sipp, Prosody and the receiver
on CPU 1 -- three processes sharing one core, so at high rates they, not the
gateway, may be what saturates; the output prints each one's CPU time.

Prints: offered and achieved rate, the SIP answers by status code (and
sipp's failed calls / retransmissions), how many bodies reached the XMPP user
(loss = sent - arrived, duplicates), latency p50/p99/max send -> arrival, split
at the moment the gateway hands the stanza to the component stream (sipp ->
gateway, gateway -> Prosody -> user; the benchmark wraps the adapter's
``send`` to stamp it), the CPU seconds of the gateway, Prosody, sipp and the
receiver, and how busy each core was over the run (other people's processes
included: on a shared machine, read the figures with that line).  Prosody
keeps Nagle's algorithm on its sockets by default; ``--prosody-nodelay`` adds
``network_settings = { nagle = false }`` to its config.  Bounded: sipp's ``-timeout``
plus a kill timer, a drain wait of at most 15 s, the receiver's own
deadline; all children are stopped by PID and the temporary directories
removed (``KEEP=1`` keeps them and prints where).
"""

from __future__ import annotations

import argparse
import base64
import csv
import glob
import os
import re
import selectors
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

XMPP_HOST = "test.localhost"
GATEWAY_DOMAIN = "gw.test.localhost"
USER, PASSWORD = "alice", "alicepw"
STAMP = re.compile(r"sipp-bench (\d+) ")
BODY = re.compile(rb"<body[^>]*>sipp-bench (\d+) (\d+)\.\d* (\d+)\.?\d*\s*</body>")

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="MESSAGE to an XMPP user through the gateway">
  <nop><action><gettimeofday assign_to="s,us" /></action></nop>
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:[service]@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@sip.test>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@{domain}>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      sipp-bench [call_number] [$s] [$us]
    ]]>
  </send>
  <recv response="200" optional="true" rtd="true" next="answered" />
  <recv response="202" rtd="true" next="answered" />
  <label id="answered" />
</scenario>
"""


# --------------------------------------------------------------------------
# The receiver: a raw XMPP c2s client (RFC 6120 §4-7, SASL PLAIN RFC 4616),
# run as a child process with ``--receiver``.  Blocking socket, no XML parser:
# it only has to log in, bind, send presence and pull <body> texts out.
# --------------------------------------------------------------------------

def _receiver(port: int, out_path: str, deadline: float) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    header = (f"<?xml version='1.0'?><stream:stream to='{XMPP_HOST}' xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").encode()

    def expect(pattern: bytes) -> bytes:
        """Read until ``pattern`` matches; return the match and drop the buffer up to its end."""
        regex = re.compile(pattern, re.S)
        while True:
            match = regex.search(buf)
            if match:
                found = bytes(match.group(0))
                del buf[:match.end()]
                return found
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit(f"receiver: Prosody closed the stream, got {bytes(buf[-500:])!r}")
            buf.extend(chunk)

    sock.sendall(header)
    features = expect(rb"<stream:features.*?</stream:features>")
    if b">PLAIN<" not in features:
        raise SystemExit(f"receiver: Prosody offers no SASL PLAIN: {features!r}")
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    sock.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
    answer = expect(rb"<success[^>]*>|<failure.*?</failure>")
    if not answer.startswith(b"<success"):
        raise SystemExit(f"receiver: SASL PLAIN refused: {answer!r}")
    del buf[:]
    sock.sendall(header)
    expect(rb"</stream:features>")
    sock.sendall(b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 b"<resource>bench</resource></bind></iq>")
    expect(rb"<iq[^>]*id=['\"]b1['\"].*?</iq>")
    sock.sendall(b"<presence/>")
    sock.settimeout(None)
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    numbers: list[int] = []
    sent: list[float] = []
    arrived: list[float] = []
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "xmpp")
    selector.register(sys.stdin, selectors.EVENT_READ, "control")
    reported = 0
    next_report = time.monotonic()
    end = time.monotonic() + deadline
    running = True
    while running and time.monotonic() < end:
        for key, _ in selector.select(timeout=0.1):
            if key.data == "control":
                line = sys.stdin.readline()
                if not line or line.strip() == "stop":
                    running = False
                continue
            chunk = sock.recv(262144)
            now = time.time()
            if not chunk:
                running = False
                break
            buf.extend(chunk)
            last = 0
            for match in BODY.finditer(buf):
                numbers.append(int(match.group(1)))
                sent.append(int(match.group(2)) + int(match.group(3)) / 1e6)
                arrived.append(now)
                last = match.end()
            if last:
                del buf[:last]
            elif len(buf) > 1 << 20:  # presence and the like, no body: keep only a tail
                del buf[:-65536]
        if len(numbers) != reported and time.monotonic() >= next_report:
            reported = len(numbers)
            next_report = time.monotonic() + 0.2
            sys.stdout.write(f"count {reported}\n")
            sys.stdout.flush()
    with open(out_path, "w") as handle:
        for number, at, got in zip(numbers, sent, arrived):
            handle.write(f"{number} {at:.6f} {got:.6f}\n")
    try:
        sock.sendall(b"</stream:stream>")
    except OSError:
        pass
    sock.close()
    sys.stdout.write(f"done {len(numbers)}\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# The harness (gateway in this process).
# --------------------------------------------------------------------------

def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process from /proc (NaN when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def cpu_busy() -> dict[str, tuple[int, int]]:
    """Per-CPU (busy, total) jiffies from /proc/stat, to see whether a core was saturated (by anyone)."""
    out = {}
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                name, *values = line.split()
                if name.startswith("cpu") and name != "cpu":
                    numbers = [int(v) for v in values]
                    idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0)
                    out[name] = (sum(numbers) - idle, sum(numbers))
    except (OSError, ValueError):
        pass
    return out


def answers_by_code(workdir: str) -> Counter:
    """SIP final answers sipp saw: 200/202 from its counts file, others from its error log."""
    codes: Counter = Counter()
    for path in glob.glob(os.path.join(workdir, "*_counts.csv")):
        with open(path) as handle:
            rows = list(csv.reader(handle, delimiter=";"))
        if len(rows) >= 2:
            for name, value in zip(rows[0], rows[-1]):
                found = re.fullmatch(r"\d+_(\d{3})_Recv", name)
                if found and value.isdigit() and int(value):
                    codes[found.group(1)] += int(value)
    try:
        with open(os.path.join(workdir, "errors.log"), errors="replace") as handle:
            for line in handle:
                found = re.match(r"\s*SIP/2\.0 (\d{3})", line)
                if found:
                    codes[f"{found.group(1)} (unexpected)"] += 1
    except OSError:
        pass
    return codes


def main_harness(args: argparse.Namespace) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, inlineCallbacks
    from twisted.internet.protocol import ProcessProtocol
    from twisted.internet.task import LoopingCall, deferLater
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from cpimgw.adapters.sip.adapter import SipAdapter, SipSettings
    from cpimgw.adapters.xmpp.adapter import XMPPAdapter, XMPPSettings
    from cpimgw.testing import make_bus
    from tests.interop.prosody import ProsodyServer, wait_until
    from tests.interop.sipp import SippProcess, free_port

    if args.verbose:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])

    class Receiver(ProcessProtocol):
        def __init__(self) -> None:
            self.ready: Deferred[None] = Deferred()
            self.ended: Deferred[None] = Deferred()
            self.count = 0
            self.lines = b""
            self.errors = b""

        def outReceived(self, data: bytes) -> None:  # noqa: N802
            self.lines += data
            *complete, self.lines = self.lines.split(b"\n")
            for line in complete:
                if line == b"ready" and not self.ready.called:
                    self.ready.callback(None)
                elif line.startswith((b"count ", b"done ")):
                    self.count = int(line.split()[1])

        def errReceived(self, data: bytes) -> None:  # noqa: N802
            self.errors = (self.errors + data)[-4000:]

        def processEnded(self, reason) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
            if not self.ready.called:
                self.ready.errback(RuntimeError("receiver ended before login: " + self.errors.decode(errors="replace")))
            self.ended.callback(None)

    def kill(pid: int | None) -> None:
        if pid:
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    @inlineCallbacks
    def run():  # type: ignore[no-untyped-def]
        workdir = tempfile.mkdtemp(prefix="bench_sip_xmpp.")
        server = ProsodyServer(host=XMPP_HOST, component_domain=GATEWAY_DOMAIN)
        receiver = Receiver()
        receiver_process = None
        sip = xmpp = bus = None
        pin = bool(os.cpu_count() and os.cpu_count() > 1 and not args.no_pin)
        try:
            if args.prosody_nodelay:  # a global setting: it must come before the VirtualHost section
                with open(server.config) as handle:
                    config = handle.read()
                config = config.replace('\nVirtualHost "', '\nnetwork_settings = { nagle = false }\n\nVirtualHost "', 1)
                with open(server.config, "w") as handle:
                    handle.write(config)
            server.register(USER, PASSWORD)
            yield server.start()
            if pin:
                os.sched_setaffinity(server.process.pid, {1})
            bus = make_bus(reactor=reactor)
            yield bus.started
            xmpp = XMPPAdapter("xmpp", bus, XMPPSettings.from_mapping({
                "mode": "component", "domain": GATEWAY_DOMAIN, "xmpp_domains": [XMPP_HOST], "host": "127.0.0.1",
                "port": server.component_port, "secret": server.secret, "bounce_wait": args.bounce_wait,
            }))
            bus.register(xmpp)
            # Stamp each stanza as the gateway hands it to the component stream: splits the latency
            # into sipp -> gateway out (SIP, bus, mapping) and gateway out -> user (Prosody, c2s).
            handed: dict[int, float] = {}
            send_now = xmpp.send

            def stamped_send(stanza):  # type: ignore[no-untyped-def]
                body = stanza.body
                if body is not None:
                    found = STAMP.match(str(body))
                    if found:
                        handed[int(found.group(1))] = time.time()
                send_now(stanza)

            xmpp.send = stamped_send  # type: ignore[method-assign]
            xmpp.startService()
            yield wait_until(lambda: xmpp.connected, 15.0, what="the component handshake")
            sip = SipAdapter(bus, SipSettings.from_mapping({
                "domains": ["sip.test"], "port": 0, "transports": ["udp", "tcp"], "use_dns": False,
                "max_request_rate": 0,  # one source sends thousands/s: no per-source limit
            }), reactor=reactor)
            bus.register(sip)
            sip.startService()
            port = sip.ports[args.transport.upper()]
            out_path = os.path.join(workdir, "arrivals.txt")
            deadline = args.count / args.rate + 120
            receiver_process = reactor.spawnProcess(
                receiver, sys.executable,
                [sys.executable, os.path.abspath(__file__), "--receiver", str(server.c2s_port), out_path,
                 str(deadline)],
                env={**os.environ}, path=workdir)
            if pin:
                os.sched_setaffinity(receiver_process.pid, {1})
            yield receiver.ready.addTimeout(20, reactor)
            sipp_args = [f"127.0.0.1:{port}", "-s", USER, "-i", "127.0.0.1", "-p", str(free_port()),
                         "-m", str(args.count), "-r", str(args.rate),
                         "-l", str(max(200, int(args.rate * (args.bounce_wait + 2)))),
                         "-t", "u1" if args.transport == "udp" else "t1",
                         "-timeout", f"{args.count // args.rate + 60}s",
                         "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-stf", os.path.join(workdir, "stat.csv"),
                         "-trace_counts"]
            if pin:
                os.sched_setaffinity(0, {0})
            cpu_before = os.times()
            prosody_before = cpu_seconds(server.process.pid)
            receiver_before = cpu_seconds(receiver_process.pid)
            cores_before = cpu_busy()
            started = time.monotonic()
            sipp = SippProcess(SCENARIO.format(domain=XMPP_HOST), sipp_args, workdir,
                               timeout=args.count / args.rate + 90)
            if pin:  # sipp inherited CPU 0 from us: give it CPU 1
                os.sched_setaffinity(sipp.process.pid, {1})
            sipp_cpu = [0.0]

            def sample_sipp() -> None:  # its CPU time, read while it is alive (it is reaped at exit)
                seconds = cpu_seconds(sipp.process.pid)
                if seconds == seconds:
                    sipp_cpu[0] = seconds

            sampler = LoopingCall(sample_sipp)
            sampler.start(0.1)
            code, output = yield sipp.ended
            sipp_done = time.monotonic()
            sampler.stop()
            cores_sipp = cpu_busy()
            # drain: wait for the stragglers, at most 15 s, or 2 s without progress
            last_count, last_change = receiver.count, time.monotonic()
            while receiver.count < args.count and time.monotonic() - sipp_done < 15:
                yield deferLater(reactor, 0.2, lambda: None)
                if receiver.count != last_count:
                    last_count, last_change = receiver.count, time.monotonic()
                elif time.monotonic() - last_change > 2.0:
                    break
            cpu_after = os.times()
            prosody_cpu = cpu_seconds(server.process.pid) - prosody_before
            receiver_cpu = cpu_seconds(receiver_process.pid) - receiver_before
            receiver_process.write(b"stop\n")
            yield receiver.ended.addTimeout(20, reactor)
            receiver_process = None

            # ---- figures
            latencies: list[float] = []
            inside: list[float] = []  # sipp send -> gateway hands the stanza to the stream
            outside: list[float] = []  # gateway hands it over -> the XMPP user reads it
            numbers: Counter = Counter()
            first_sent = last_sent = last_arrival = None
            if os.path.exists(out_path):
                with open(out_path) as handle:
                    for line in handle:
                        number, at, got = line.split()
                        numbers[int(number)] += 1
                        at_f, got_f = float(at), float(got)
                        if numbers[int(number)] == 1:
                            latencies.append((got_f - at_f) * 1000.0)
                            out_at = handed.get(int(number))
                            if out_at is not None:
                                inside.append((out_at - at_f) * 1000.0)
                                outside.append((got_f - out_at) * 1000.0)
                        first_sent = at_f if first_sent is None else min(first_sent, at_f)
                        last_sent = at_f if last_sent is None else max(last_sent, at_f)
                        last_arrival = got_f if last_arrival is None else max(last_arrival, got_f)
            arrived = len(numbers)
            duplicates = sum(numbers.values()) - arrived
            retrans = failed = successful = "?"
            header: list[str] = []
            last: list[str] = []
            stat = os.path.join(workdir, "stat.csv")
            if os.path.exists(stat):
                with open(stat) as handle:
                    rows = list(csv.reader(handle, delimiter=";"))
                if len(rows) >= 2:
                    header, last = rows[0], rows[-1]
                    column = {name: last[i] for i, name in enumerate(header) if i < len(last)}
                    retrans = column.get("Retransmissions(C)", "?")
                    failed = column.get("FailedCall(C)", "?")
                    successful = column.get("SuccessfulCall(C)", "?")
            codes = answers_by_code(workdir)
            rtts: list[float] = []
            for path in glob.glob(os.path.join(workdir, "*_rtt.csv")):
                with open(path) as handle:
                    for row in csv.reader(handle, delimiter=";"):
                        try:
                            rtts.append(float(row[1]))
                        except (IndexError, ValueError):
                            continue
            gateway_cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
            wall = (sipp_done - started)
            print(f"path:                sipp -> {args.transport.upper()} -> SipAdapter -> bus -> XMPPAdapter "
                  f"(component) -> Prosody -> c2s user")
            print(f"pinning:             " + ("gateway on CPU 0; sipp, Prosody and the receiver together on CPU 1"
                                              if pin else "none (--no-pin or one CPU)"))
            print(f"offered:             {args.count} MESSAGEs at {args.rate}/s (bounce_wait {args.bounce_wait} s)")
            if first_sent is not None and last_sent is not None and last_sent > first_sent:
                print(f"sipp sent at:        {(arrived - 1) / (last_sent - first_sent):.0f}/s "
                      f"(its own send stamps of the arrived MESSAGEs, over {last_sent - first_sent:.2f} s)")
            if first_sent is not None and last_arrival is not None:
                span = last_arrival - first_sent
                print(f"achieved:            {arrived / span:.0f} messages/s arrived at the XMPP user "
                      f"(first send -> last arrival {span:.2f} s)")
            print(f"sipp:                exit {code}, successful calls {successful}, failed {failed}, "
                  f"retransmissions {retrans}, wall {wall:.2f} s")
            print("SIP answers:         " + (", ".join(f"{k}: {v}" for k, v in sorted(codes.items())) or "none"))
            print(f"arrived at XMPP:     {arrived}  (loss: {args.count - arrived}, duplicates: {duplicates})")
            if latencies:
                print(f"latency send->XMPP:  p50 {percentile(latencies, 0.5):.1f} ms  "
                      f"p99 {percentile(latencies, 0.99):.1f} ms  max {max(latencies):.1f} ms  "
                      f"({len(latencies)} samples)")
            for label, values in (("- sipp -> gateway:  ", inside), ("- gateway -> user:  ", outside)):
                if values:
                    print(f"{label} p50 {percentile(values, 0.5):.1f} ms  p99 {percentile(values, 0.99):.1f} ms")
            if rtts:
                print(f"SIP answer time:     p50 {percentile(rtts, 0.5):.0f} ms  p99 {percentile(rtts, 0.99):.0f} ms "
                      f"(sipp rtd, 1 ms resolution; includes bounce_wait)")
            print(f"CPU during the run:  gateway {gateway_cpu:.2f} s ({100 * gateway_cpu / wall:.0f} % of one core "
                  f"over {wall:.1f} s), Prosody {prosody_cpu:.2f} s, sipp >= {sipp_cpu[0]:.2f} s, "
                  f"receiver {receiver_cpu:.2f} s")
            busy = {name: 100.0 * (cores_sipp[name][0] - cores_before[name][0])
                    / max(1, cores_sipp[name][1] - cores_before[name][1])
                    for name in cores_sipp if name in cores_before}
            print("cores busy (all processes on the machine, while sipp ran): "
                  + ", ".join(f"{name} {value:.0f} %" for name, value in sorted(busy.items())))
            print(f"SIP counters:        {sip.stack.counters}")
            print(f"XMPP counters:       {xmpp.counters}")
            if code != 0:
                print(output[-1500:])
                try:
                    with open(os.path.join(workdir, "errors.log"), errors="replace") as handle:
                        print("sipp errors.log (start):\n" + handle.read(3000))
                except OSError:
                    pass
        finally:
            if receiver_process is not None:
                kill(receiver_process.pid)
            if sip is not None:
                yield sip.stopService()
            if xmpp is not None:
                yield xmpp.stopService()
            if bus is not None:
                yield bus.stop()
            yield server.stop()
            for directory in (workdir, server.dir):
                if os.environ.get("KEEP"):
                    print(f"kept {directory}")
                else:
                    shutil.rmtree(directory, ignore_errors=True)
            reactor.stop()

    def start() -> None:
        run().addErrback(lambda failure: failure.printTraceback(file=sys.stderr))

    reactor.callWhenRunning(start)
    reactor.run()


def _adapter_bounce_wait() -> float:
    """The XMPP adapter's default ``bounce_wait`` (the embedded default and the sample config)."""
    from cpimgw.adapters.xmpp.adapter import DEFAULTS

    return float(DEFAULTS["bounce_wait"])


def main() -> None:
    if sys.argv[1:2] == ["--receiver"]:
        _receiver(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="MESSAGEs per second offered by sipp")
    parser.add_argument("--count", type=int, default=0, help="MESSAGEs in all (default: 5 s worth)")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--bounce-wait", type=float, default=_adapter_bounce_wait(),
                        help="the XMPP adapter's bounce_wait: seconds before a 202 (0: answer at once)")
    parser.add_argument("--prosody-nodelay", action="store_true",
                        help="set Prosody's network_settings nagle = false (TCP_NODELAY on its sockets)")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the gateway to CPU 0 and sipp, Prosody, the receiver to CPU 1")
    args = parser.parse_args()
    if args.count <= 0:
        args.count = args.rate * 5
    main_harness(args)


if __name__ == "__main__":
    main()
