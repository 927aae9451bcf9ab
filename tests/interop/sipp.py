"""Fixture: run sipp (Debian ``sip-tester``) against the gateway on loopback.

``run_sipp(scenario_xml, args, workdir)`` writes the scenario, spawns sipp with
``reactor.spawnProcess`` (never blocking the reactor), and fires with
(exit code, stdout+stderr) when it ends; a bounded timeout kills it by PID.
``free_port(kind)`` picks a free loopback port at run time.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from tests.interop import require_program

UAC_MESSAGE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="MESSAGE through the gateway">
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

      hello from sipp [call_number]
    ]]>
  </send>
  <recv response="200" rtd="true" />
  <ResponseTimeRepartition value="1, 2, 5, 10, 20, 50, 100"/>
</scenario>
"""

UAS_MESSAGE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="MESSAGE receiver">
  <recv request="MESSAGE" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def free_port(kind: int = socket.SOCK_DGRAM, both: bool = True) -> int:
    """A loopback port free for UDP (and TCP when ``both``) right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if both:
            other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
            try:
                with socket.socket(socket.AF_INET, other) as again:
                    again.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port")


class _Collect(ProcessProtocol):
    def __init__(self, done: Deferred) -> None:
        self.done = done
        self.output = b""

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.output = (self.output + data)[-20000:]

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        code = getattr(reason.value, "exitCode", None)
        if not self.done.called:
            self.done.callback((code, self.output.decode("utf-8", "replace")))


class SippProcess:
    """One running sipp; ``ended`` fires (exit code, output); ``stop()`` kills it by PID."""

    def __init__(self, scenario: str, args: list[str], workdir: str, *, timeout: float = 60.0,
                 reactor: Any = default_reactor) -> None:
        path = require_program("sipp")
        scenario_path = os.path.join(workdir, "scenario.xml")
        with open(scenario_path, "w") as handle:
            handle.write(scenario)
        self.ended: Deferred = Deferred()
        self.protocol = _Collect(self.ended)
        # sipp binds a media port (default 6000) even for MESSAGE scenarios: two sipps at
        # once (or any other process on 6000) made it exit 254 before its first request.
        media = [] if "-mp" in args else ["-mp", str(free_port())]
        argv = [path, "-sf", scenario_path, "-nostdin", "-trace_err", "-error_file",
                os.path.join(workdir, "errors.log"), *media, *args]
        self.process = reactor.spawnProcess(self.protocol, path, argv, env={"PATH": "/usr/bin:/bin"}, path=workdir)
        self._killer = reactor.callLater(timeout, self.stop)
        self.ended.addBoth(self._cancel_killer)

    def _cancel_killer(self, result: Any) -> Any:
        if self._killer.active():
            self._killer.cancel()
        return result

    def stop(self) -> Deferred:
        if not self.ended.called:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except (OSError, TypeError):
                pass
        return self.ended
