"""Fixture: a headless baresip 1.0 user agent on loopback (peers.md §3 recipe).

``Baresip(workdir, account, contacts)`` writes ``config``/``accounts``/
``contacts``, starts ``baresip -f workdir`` with the ``cons`` module on a free
UDP port (commands such as ``/contacts`` are sent as datagrams from the
reactor and answered the same way), and ``stop()`` kills it by PID.
``sip_trace=True`` runs it with ``-s``: every SIP message it sends or
receives is printed in :attr:`Baresip.log`.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater

from tests.interop import require_program
from tests.interop.sipp import _Collect, free_port

CONFIG = """sip_listen 127.0.0.1:{port}
sip_transports udp
net_interface 127.0.0.1
module_path /usr/lib/baresip/modules
module g711.so
module ausine.so
module aufile.so
module_app account.so
module_app contact.so
module_app menu.so
module_app presence.so
module cons.so
cons_listen 127.0.0.1:{cons_port}
audio_player aufile,/dev/null
audio_source ausine,440
audio_alert aufile,/dev/null
"""


class _Answers(DatagramProtocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        self.chunks.append(data)


class Baresip:
    def __init__(self, workdir: str, account: str, contacts: list[str], *, reactor: Any = default_reactor,
                 sip_trace: bool = False) -> None:
        path = require_program("baresip")
        self.reactor = reactor
        self.port = free_port()
        self.cons_port = free_port()
        with open(os.path.join(workdir, "config"), "w") as handle:
            handle.write(CONFIG.format(port=self.port, cons_port=self.cons_port))
        with open(os.path.join(workdir, "accounts"), "w") as handle:
            handle.write(account + "\n")
        with open(os.path.join(workdir, "contacts"), "w") as handle:
            handle.write("\n".join(contacts) + "\n")
        self.ended: Deferred = Deferred()
        self.protocol = _Collect(self.ended)
        argv = [path, "-f", workdir, *(["-s"] if sip_trace else [])]  # -s: every SIP message on stdout
        self.process = reactor.spawnProcess(self.protocol, path, argv,
                                            env={"PATH": "/usr/bin:/bin", "HOME": workdir}, path=workdir)

    @inlineCallbacks
    def command(self, text: str, wait: float = 0.5):  # type: ignore[no-untyped-def]
        """Send one console command (cons module, newline-terminated) and collect the answer for ``wait`` s."""
        collector = _Answers()
        port = self.reactor.listenUDP(0, collector, interface="127.0.0.1")
        try:
            collector.transport.write(text.encode() + b"\n", ("127.0.0.1", self.cons_port))
            yield deferLater(self.reactor, wait, lambda: None)
        finally:
            yield port.stopListening()
        return b"".join(collector.chunks).decode("utf-8", "replace")

    @property
    def log(self) -> str:
        return self.protocol.output.decode("utf-8", "replace")

    def stop(self) -> Deferred:
        if not self.ended.called:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except (OSError, TypeError):
                pass
        return self.ended
