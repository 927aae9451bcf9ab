"""A real ``redis-server`` on loopback for the Redis store and cluster tests.

It runs on a free port in a temporary directory, without persistence
(``--save '' --appendonly no``), and is stopped by its PID.  When
``redis-server`` is missing the test is skipped on a developer's machine
and FAILS under ``CI=true`` (:func:`tests.interop.require_program`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile

from twisted.internet.defer import inlineCallbacks

from tests.interop import require_program
from tests.interop.prosody import free_port, port_open, wait_until


class RedisServer:
    """One ``redis-server`` process; :meth:`start`/:meth:`stop` return Deferreds (bounded waits)."""

    def __init__(self, port: int | None = None) -> None:
        self.program = require_program("redis-server")
        self.dir = tempfile.mkdtemp(prefix="cpimgw-redis-")
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def spawn(self) -> None:
        """Start the process (returns at once; :meth:`start` also waits for the port)."""
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.process = subprocess.Popen(
            [self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", self.dir, "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir)
        log.close()

    @inlineCallbacks
    def start(self):  # type: ignore[no-untyped-def]
        self.spawn()
        yield wait_until(lambda: port_open(self.port) or self.process.poll() is not None, timeout=10.0,
                         what=f"redis-server on port {self.port}")
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "redis.log"), "rb") as handle:
                return handle.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the server (a crash) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (then SIGKILL after a bounded wait); the temporary directory is removed."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


__all__ = ["RedisServer"]
