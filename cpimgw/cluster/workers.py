"""``[gateway] workers = N``: N gateway processes under one ``twistd``, sharing the listening ports.

The process ``twistd cpimgw`` starts is worker 0; it spawns workers 1..N-1
as child processes (the same ``twistd cpimgw --config FILE``, told their
index by the ``CPIMGW_WORKER`` environment variable), relays their log
lines into its own log, restarts one that dies (with a backoff), and stops
them with SIGTERM when it stops.  A child asks the kernel to SIGTERM it
should worker 0 die (``PR_SET_PDEATHSIG`` on Linux).

Every worker listens on the configured ports itself: its adapters get a
reactor whose ``listenTCP``/``listenUDP`` open the socket with
``SO_REUSEPORT`` before binding (Linux >= 3.9, the BSDs), so the kernel
spreads TCP connections and UDP datagrams (hashed by address, so the
retransmissions of one SIP transaction reach the same worker, RFC 3261
§17) over the workers.  The workers are cluster nodes
(:mod:`cpimgw.cluster.node`): they share the Redis store, route to each
other what a connection held by another worker must deliver, and run the
XEP-0114 component connection -- which a server accepts once -- on one
worker at a time.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import protocol
from twisted.logger import Logger
from zope.interface import directlyProvides, providedBy

log = Logger()

WORKER_ENVIRONMENT = "CPIMGW_WORKER"


def worker_index() -> int | None:
    """This process's worker index, ``None`` when it was not started as a worker child."""
    value = os.environ.get(WORKER_ENVIRONMENT)
    if value is None or not value.isdigit():
        return None
    return int(value)


def worker_node_id(config: Any) -> str:
    """The cluster node id of this process: ``[cluster] node`` (or host/name), ``#wI`` for worker I."""
    base = config.cluster.node_id(config.gateway.name)
    if config.gateway.workers > 1:
        return f"{base}#w{worker_index() or 0}"
    return base


def reuse_port_available() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _bound_socket(kind: int, port: int, interface: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((interface or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        sock.setblocking(False)
    except Exception:
        sock.close()
        raise
    return sock


class ReusePortReactor:
    """The reactor, except that ``listenTCP``/``listenUDP`` share the port with the other workers.

    Everything else is the real reactor's (attribute access is delegated),
    and it provides the same interfaces.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        directlyProvides(self, *providedBy(reactor))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:  # noqa: N802
        sock = _bound_socket(socket.SOCK_STREAM, port, interface)
        try:
            sock.listen(backlog)
            family = sock.family
            return self._reactor.adoptStreamPort(sock.fileno(), family, factory)
        finally:
            sock.close()  # adoptStreamPort duplicated the descriptor

    def listenUDP(self, port: int, protocol_: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:  # noqa: N802,N803
        sock = _bound_socket(socket.SOCK_DGRAM, port, interface)
        try:
            return self._reactor.adoptDatagramPort(sock.fileno(), sock.family, protocol_, maxPacketSize)
        finally:
            sock.close()


#: ``twistd`` itself, on this interpreter (``python -m twisted`` is the ``twist`` runner).
_TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; sys.exit(run())"


class _Worker(protocol.ProcessProtocol):
    def __init__(self, supervisor: "WorkerSupervisor", index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.buffer = b""

    def _lines(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                log.info("worker {index}: {line}", index=self.index, line=line.decode("utf-8", "replace"))

    outReceived = _lines  # noqa: N815 (Twisted name)
    errReceived = _lines  # noqa: N815 (Twisted name)

    def processEnded(self, reason: Any) -> None:  # noqa: N802 (Twisted name)
        self.supervisor.ended(self.index, reason)


class WorkerSupervisor(Service):
    """Spawns and keeps workers 1..N-1 (this process is worker 0)."""

    def __init__(self, config_path: str | None, workers: int, reactor: Any) -> None:
        self.config_path = config_path
        self.workers = workers
        self.reactor = reactor
        self.processes: dict[int, Any] = {}
        self.restarts: dict[int, int] = {}
        self._timers: dict[int, Any] = {}

    def startService(self) -> None:  # noqa: N802 (Twisted name)
        super().startService()
        for index in range(1, self.workers):
            self.spawn(index)

    def spawn(self, index: int) -> None:
        self._timers.pop(index, None)
        if not self.running:
            return
        argv = [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", "--logfile=-", "cpimgw"]
        if self.config_path:
            argv += ["--config", self.config_path]
        env = dict(os.environ)
        env[WORKER_ENVIRONMENT] = str(index)
        self.processes[index] = self.reactor.spawnProcess(_Worker(self, index), sys.executable, argv, env=env,
                                                          path=os.getcwd())
        log.info("worker {index} started (pid {pid})", index=index, pid=self.processes[index].pid)

    def ended(self, index: int, reason: Any) -> None:
        self.processes.pop(index, None)
        if not self.running:
            return
        count = self.restarts[index] = self.restarts.get(index, 0) + 1
        delay = min(30.0, 0.5 * 2 ** min(count, 6))
        log.warn("worker {index} ended ({reason}); restarting in {delay:g} s", index=index,
                 reason=reason.getErrorMessage(), delay=delay)
        self._timers[index] = self.reactor.callLater(delay, self.spawn, index)

    def stopService(self) -> Any:  # noqa: N802 (Twisted name)
        super().stopService()
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        for process in list(self.processes.values()):
            try:
                process.signalProcess("TERM")
            except Exception:
                pass


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when its parent (worker 0) dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def make_worker_service(config: Any, make_service: Any) -> Any:
    """The service of one worker (and, in worker 0, the supervisor of the others).

    :param make_service: :func:`cpimgw.service.make_service`.
    """
    from twisted.internet import reactor

    if not reuse_port_available():
        from cpimgw.cpim.errors import ConfigError

        raise ConfigError("this system has no SO_REUSEPORT: run one process per port instead",
                          path=config.path, key="gateway.workers")
    index = worker_index()
    gateway = make_service(config, ReusePortReactor(reactor), apply_log_level=True, clean_sigterm=True,
                           freeze_gc=True)
    if index is not None and index > 0:
        die_with_parent()
        return gateway
    top = MultiService()
    gateway.setServiceParent(top)
    WorkerSupervisor(config.path, config.gateway.workers, reactor).setServiceParent(top)
    return top


__all__ = ["ReusePortReactor", "WorkerSupervisor", "make_worker_service", "worker_node_id", "worker_index"]
