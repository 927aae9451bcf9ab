"""A real Prometheus (the Debian ``prometheus`` server) for the end-to-end tests, on loopback in a temp dir.

:class:`Prometheus` writes its own configuration (one scrape job per target,
scraped every second) and data directory, listens on a free 127.0.0.1 port,
and is stopped by PID.  :meth:`Prometheus.query` asks its HTTP API
(``GET /api/v1/query``) and returns the instant vector as ``{labels: value}``.
When the binary is missing the test is skipped, but FAILS under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.parse
from typing import Any, Iterable

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.web.client import Agent, readBody

from tests.interop import require_program
from tests.interop.prosody import free_port, wait_until
from tests.interop.sipp import _Collect


class Prometheus:
    """One Prometheus server scraping ``targets`` (``host:port``) as job ``job`` every second."""

    def __init__(self, workdir: str, targets: Iterable[str], *, job: str = "cpimgw",
                 reactor: Any = default_reactor) -> None:
        self.path = require_program("prometheus")
        self.reactor = reactor
        self.workdir = workdir
        os.makedirs(os.path.join(workdir, "data"), exist_ok=True)
        self.port = free_port()
        self.config = os.path.join(workdir, "prometheus.yml")
        listed = ", ".join(json.dumps(t) for t in targets)
        with open(self.config, "w") as handle:
            handle.write(
                "global:\n"
                "  scrape_interval: 1s\n"
                "  scrape_timeout: 1s\n"
                "  evaluation_interval: 1s\n"
                "scrape_configs:\n"
                f"  - job_name: {json.dumps(job)}\n"
                "    metrics_path: /metrics\n"
                f"    static_configs:\n      - targets: [{listed}]\n"
            )
        self.ended: Deferred = Deferred()
        self.protocol = _Collect(self.ended)
        argv = [self.path, f"--config.file={self.config}", f"--storage.tsdb.path={os.path.join(workdir, 'data')}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
                "--storage.tsdb.retention.time=1h"]
        self.process = reactor.spawnProcess(self.protocol, self.path, argv, env={"PATH": "/usr/bin:/bin"},
                                            path=workdir)

    def output(self) -> str:
        return self.protocol.output.decode("utf-8", "replace")

    def get(self, path: str) -> Deferred:
        """``GET`` on the server: ``(status code, body bytes)``."""
        d = Agent(self.reactor).request(b"GET", f"http://127.0.0.1:{self.port}{path}".encode())
        d.addCallback(lambda response: readBody(response).addCallback(lambda body: (response.code, body)))
        return d.addTimeout(5, self.reactor)

    @inlineCallbacks
    def started(self, timeout: float = 30.0):  # type: ignore[no-untyped-def]
        """Fire once ``/-/ready`` answers 200 (bounded)."""
        ready = [False]

        def check() -> bool:
            if self.ended.called:
                raise AssertionError(f"prometheus exited while starting:\n{self.output()[-3000:]}")
            if not ready[0] and not getattr(self, "_asking", False):
                self._asking = True

                def answered(result: tuple[int, bytes]) -> None:
                    ready[0] = result[0] == 200

                self.get("/-/ready").addCallbacks(answered, lambda _: None).addBoth(
                    lambda _: setattr(self, "_asking", False))
            return ready[0]

        yield wait_until(check, timeout, 0.1, what="prometheus to be ready")

    @inlineCallbacks
    def query(self, expression: str):  # type: ignore[no-untyped-def]
        """The instant vector of ``expression``: ``{frozenset(labels.items()): float}``."""
        code, body = yield self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expression}))
        answer = json.loads(body)
        if code != 200 or answer.get("status") != "success":
            raise AssertionError(f"prometheus refused {expression!r}: {code} {body[:500]!r}")
        result = answer["data"]["result"]
        return {frozenset(item["metric"].items()): float(item["value"][1]) for item in result}

    @inlineCallbacks
    def stop(self):  # type: ignore[no-untyped-def]
        """SIGTERM by PID, then SIGKILL after a bounded wait."""
        if self.ended.called:
            return
        try:
            os.kill(self.process.pid, signal.SIGTERM)
        except (OSError, TypeError):
            pass
        try:
            yield wait_until(lambda: self.ended.called, 15.0, 0.1, what="prometheus to exit")
        except AssertionError:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except (OSError, TypeError):
                pass
            yield wait_until(lambda: self.ended.called, 5.0, 0.1, what="prometheus to die")
