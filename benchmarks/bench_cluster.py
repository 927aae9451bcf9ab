"""Benchmark: messages/s through ``twistd cpimgw`` with 1 and 2 workers on Redis, and a failover time.

    .venv/bin/python benchmarks/bench_cluster.py [--count 20000] [--rate 6000] [--senders 4]
                                                 [--workers 1 2] [--no-failover]

Throughput: a redis-server and one ``twistd cpimgw`` with ``[gateway] workers
= N`` and ``[store] kind = "redis"`` (the SIP adapter on one UDP port shared
by the workers with SO_REUSEPORT, and the benchmark ``sink`` adapter of
``benchmarks/plugins`` as the far end).  ``--senders`` sipp processes (each
its own source port, so the kernel spreads them over the workers) send
``--count`` MESSAGEs in all, at ``--rate`` per second in all (each with at most
``--outstanding`` unanswered, so the offered load follows what the gateway
answers instead of piling up retransmissions), to
``sip:bob@sink.bench``: the gateway-bound path SIP -> bus (duplicate key in
Redis) -> adapter.  Printed per N: the messages answered 200 per second of
wall time, sipp's failed calls and retransmissions, and the CPU each process
used during the run (seconds of CPU per second of wall time: ~1.0 means that
process saturated a core) -- the gateway workers, redis-server and the sipp
load generators.  Then the ratio of the 2-worker figure to the 1-worker one.

Failover: two ``twistd cpimgw`` nodes A and B (heartbeat 0.25 s, node
timeout 2 s, claim idle 1 s).  A PRIM user agent carol is logged in at A; a
second agent sends messages to her through B every 20 ms.  A is killed with
SIGKILL; carol logs in again at B at once (a client that fails over).
Printed: the time from the SIGKILL to B holding the sweep lease (the
subscriptions' expiry timers served by B), and to the first message that
was in flight at the kill being delivered to carol through B (B claims its
own forwarded entries from the stream it wrote to A... or, as here, finds A
dead and delivers at carol's new connection), with how many messages
answered 200 were lost (must be 0).

The machine's load average is printed first: on a shared machine every
figure is under that contention.  Loopback only; every process is started
and stopped by PID; every wait is bounded.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from tests.interop.prosody import free_port, port_open  # noqa: E402
from tests.interop.sipp import UAC_MESSAGE  # noqa: E402
from tests.interop.sipp import free_port as free_udp_port  # noqa: E402

TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; sys.exit(run())"
PLUGINS = os.path.join(ROOT, "benchmarks", "plugins")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except OSError:
        return 0.0


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Redis:
    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 10, "redis-server")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Node:
    def __init__(self, workdir: str, name: str, config: str) -> None:
        os.makedirs(workdir, exist_ok=True)
        self.log = os.path.join(workdir, "twistd.log")
        path = os.path.join(workdir, "gateway.toml")
        with open(path, "w") as handle:
            handle.write(config)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([ROOT, PLUGINS, env.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", f"--logfile={self.log}", "cpimgw", "--config", path],
            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def text(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def wait(self, *lines: str, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise SystemExit(f"the gateway exited ({self.process.returncode}):\n{self.text()[-3000:]}")
            text = self.text()
            return all(line in text for line in lines)

        wait_for(ready, timeout, f"{lines} in {self.log}")

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def base_config(redis_port: int, name: str, *, sip_port: int, workers: int = 1, extra: str = "") -> str:
    return f"""
[gateway]
name = "{name}"
workers = {workers}
log_level = "info"

[store]
kind = "redis"
url = "redis://127.0.0.1:{redis_port}/0"
prefix = "bench:"

[routing]
srv_fallback = false

[adapters.xmpp]
enabled = false

[adapters.prim]
enabled = false

[adapters.sip]
domains = ["sip.bench"]
interface = "127.0.0.1"
port = {sip_port}
transports = ["udp"]
use_dns = false
max_request_rate = 0

[adapters.sink]
domains = ["sink.bench"]
{extra}"""


_USED_PORTS: set[int] = set()


def sender_port() -> int:
    """A free UDP port no other sipp of this run was given (the OS may hand one out twice)."""
    while True:
        port = free_udp_port()
        if port not in _USED_PORTS:
            _USED_PORTS.add(port)
            return port


def sipp_run(port: int, count: int, rate: int, workdir: str,
             outstanding: int = 32) -> subprocess.Popen:  # type: ignore[type-arg]
    os.makedirs(workdir, exist_ok=True)
    scenario = os.path.join(workdir, "scenario.xml")
    with open(scenario, "w") as handle:
        handle.write(UAC_MESSAGE.format(domain="sink.bench"))
    argv = ["sipp", "-sf", scenario, f"127.0.0.1:{port}", "-s", "bob", "-i", "127.0.0.1",
            "-p", str(sender_port()), "-mp", str(sender_port()), "-m", str(count), "-r", str(rate),
            "-l", str(outstanding),
            "-t", "u1", "-nostdin", "-timeout", f"{count // max(1, rate) + 60}s",
            "-trace_stat", "-stf", os.path.join(workdir, "stat.csv"), "-fd", "1"]
    return subprocess.Popen(argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sipp_stats(workdir: str) -> dict[str, int]:
    for path in glob.glob(os.path.join(workdir, "stat.csv")):
        with open(path) as handle:
            rows = list(csv.reader(handle, delimiter=";"))
        if len(rows) >= 2:
            header, last = rows[0], rows[-1]
            wanted = ("SuccessfulCall(C)", "FailedCall(C)", "Retransmissions(C)")
            return {name: int(last[header.index(name)]) for name in wanted if name in header}
    return {}


def throughput(args: argparse.Namespace, workers: int, root: str) -> float:
    workdir = os.path.join(root, f"workers-{workers}")
    os.makedirs(workdir)
    redis = Redis(workdir)
    sip_port = free_udp_port()
    node = Node(workdir, "W", base_config(redis.port, "bench", sip_port=sip_port, workers=workers))
    try:
        node.wait("started: adapters", timeout=60)
        wait_for(lambda: node.text().count(" joined") >= workers, 60, "every worker to join")
        # warm-up: a short run from each sender
        warm = [sipp_run(sip_port, 200, 400, os.path.join(workdir, f"warm-{i}")) for i in range(args.senders)]
        for process in warm:
            process.wait(timeout=120)
        pids = node.pids()
        before = {pid: cpu_seconds(pid) for pid in pids}
        redis_before = cpu_seconds(redis.process.pid)
        started = time.monotonic()
        per = args.count // args.senders
        senders = [sipp_run(sip_port, per, max(1, args.rate // args.senders), os.path.join(workdir, f"run-{i}"),
                            args.outstanding) for i in range(args.senders)]
        sipp_cpu = {process.pid: 0.0 for process in senders}
        while any(process.poll() is None for process in senders):
            for process in senders:
                if process.poll() is None:
                    sipp_cpu[process.pid] = cpu_seconds(process.pid)
            if time.monotonic() - started > args.count / max(1, args.rate) + 120:
                for process in senders:
                    process.kill()
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        stats = [sipp_stats(os.path.join(workdir, f"run-{i}")) for i in range(args.senders)]
        # sipp exits 0 only when every call of its run succeeded; its last periodic statistics line
        # may predate the end, so an exit 0 counts the whole run.
        ok = sum(per if process.returncode == 0 else s.get("SuccessfulCall(C)", 0)
                 for process, s in zip(senders, stats))
        failed = sum(s.get("FailedCall(C)", 0) for s in stats)
        retrans = sum(s.get("Retransmissions(C)", 0) for s in stats)
        print(f"-- {workers} worker(s): {args.senders} sipp senders, {args.count} MESSAGEs at {args.rate}/s requested,"
              f" at most {args.outstanding} unanswered per sender")
        codes = sorted({process.returncode for process in senders})
        print(f"   sipp exit codes: {codes}")
        print(f"   answered 200: {ok}, failed: {failed}, retransmissions: {retrans}, wall {elapsed:.2f} s"
              f"  -> {ok / elapsed:.0f} messages/s")
        for pid in pids:
            used = cpu_seconds(pid) - before.get(pid, 0.0)
            role = "worker 0 (twistd)" if pid == node.process.pid else f"worker (pid {pid})"
            print(f"   CPU {role}: {used / elapsed:.2f} s/s")
        print(f"   CPU redis-server: {(cpu_seconds(redis.process.pid) - redis_before) / elapsed:.2f} s/s")
        print(f"   CPU sipp senders (sum): {sum(sipp_cpu.values()) / elapsed:.2f} s/s")
        return ok / elapsed
    finally:
        node.stop()
        redis.stop()


def failover(root: str) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import inlineCallbacks
    from twisted.internet.task import deferLater

    from cpimgw.adapters.prim.client import PrimClient

    workdir = os.path.join(root, "failover")
    os.makedirs(workdir)
    redis = Redis(workdir)
    timings = ("\n[cluster]\nnode = \"{node}\"\nheartbeat = 0.25\nnode_timeout = 2.0\nclaim_idle = 1.0\n"
               "sweep_interval = 0.25\n")
    ports = {name: (free_port(), free_port()) for name in "AB"}

    def config(name: str) -> str:
        c2s, s2s = ports[name]
        text = base_config(redis.port, f"node-{name}", sip_port=free_udp_port(),
                           extra=timings.format(node=name))
        return text.replace("[adapters.prim]\nenabled = false\n", f"""[adapters.prim]
local_domains = ["prim.bench"]
listen_host = "127.0.0.1"
s2s_port = {s2s}
c2s_port = {c2s}
srv_lookup = false
max_request_rate = 0
users = {{ carol = "carolpw", dave = "davepw" }}
""")

    a = Node(os.path.join(workdir, "A"), "A", config("A"))
    a.wait("cluster node A joined", "took the lease sweep")
    b = Node(os.path.join(workdir, "B"), "B", config("B"))
    b.wait("cluster node B joined")
    result: dict[str, object] = {}

    @inlineCallbacks
    def run():  # type: ignore[no-untyped-def]
        try:
            carol = PrimClient(reactor, "carol@prim.bench", "carolpw")
            yield carol.connect("127.0.0.1", ports["A"][0])
            yield carol.listen()
            dave = PrimClient(reactor, "dave@prim.bench", "davepw")
            yield dave.connect("127.0.0.1", ports["B"][0])
            answered: set[str] = set()
            state = {"n": 0, "sending": True}

            @inlineCallbacks
            def send_loop():  # type: ignore[no-untyped-def]
                while state["sending"]:
                    state["n"] += 1
                    message_id = f"f-{state['n']}"
                    try:
                        response = yield dave.send("im:carol@prim.bench", b"x", message_id=message_id,
                                                   ok=(200, 101, 408, 500, 503, 504))
                        if response.code == 200:
                            answered.add(message_id)
                    except Exception:
                        pass
                    yield deferLater(reactor, 0.02, lambda: None)

            loops = [send_loop() for _ in range(4)]
            yield deferLater(reactor, 1.0, lambda: None)
            os.kill(a.process.pid, signal.SIGKILL)
            killed = time.monotonic()
            killed_at_n = state["n"]
            carol2 = PrimClient(reactor, "carol@prim.bench", "carolpw")
            yield carol2.connect("127.0.0.1", ports["B"][0])
            yield carol2.listen()
            while "cluster node B took the lease sweep" not in b.text():
                if time.monotonic() - killed > 30:
                    raise RuntimeError("B never took the sweep lease")
                yield deferLater(reactor, 0.02, lambda: None)
            result["sweep"] = time.monotonic() - killed
            while not any(int(r.header("Message-ID").split("-")[1]) <= killed_at_n + 4
                          and int(r.header("Message-ID").split("-")[1]) > killed_at_n - 8
                          for r in carol2.received if r.method == "SEND"):
                if time.monotonic() - killed > 30:
                    break
                yield deferLater(reactor, 0.02, lambda: None)
            result["first_pending"] = time.monotonic() - killed
            yield deferLater(reactor, 3.0, lambda: None)
            state["sending"] = False
            for loop in loops:
                yield loop
            yield deferLater(reactor, 1.0, lambda: None)
            got = {r.header("Message-ID") for client in (carol, carol2) for r in client.received
                   if r.method == "SEND"}
            result["answered"] = len(answered)
            result["lost"] = len(answered - got)
            ids = [r.header("Message-ID") for client in (carol, carol2) for r in client.received if r.method == "SEND"]
            result["duplicates"] = len(ids) - len(set(ids))
        except Exception as error:  # noqa: BLE001 - printed below
            result["error"] = repr(error)
        finally:
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
    a.stop()
    b.stop()
    redis.stop()
    print("-- failover (SIGKILL of node A, carol's agent moves to B at once)")
    if "error" in result:
        print(f"   error: {result['error']}")
        return
    print(f"   SIGKILL -> B holds the sweep lease (expiry timers served by B): {result['sweep']:.2f} s")
    print(f"   SIGKILL -> first message in flight at the kill delivered through B: {result['first_pending']:.2f} s")
    print(f"   messages answered 200: {result['answered']}, lost: {result['lost']}, "
          f"duplicates at the receiver: {result['duplicates']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--senders", type=int, default=64)
    parser.add_argument("--outstanding", type=int, default=8,
                        help="unanswered MESSAGEs per sender at most (sipp -l): offered load follows capacity")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-failover", action="store_true")
    args = parser.parse_args()
    with open("/proc/loadavg") as handle:
        print(f"load average before: {handle.read().split()[:3]} on {os.cpu_count()} CPUs (a shared machine)")
    root = tempfile.mkdtemp(prefix="bench_cluster.")
    try:
        figures = {workers: throughput(args, workers, root) for workers in args.workers}
        if 1 in figures and 2 in figures and figures[1]:
            print(f"== ratio 2 workers / 1 worker: {figures[2] / figures[1]:.2f}x "
                  f"({figures[1]:.0f} -> {figures[2]:.0f} messages/s)")
        if not args.no_failover:
            failover(root)
    finally:
        if os.environ.get("KEEP"):
            print(root)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
