"""Fixtures for interop tests against a real Prosody (peers.md §2) with slixmpp users.

- :class:`ProsodyServer` writes a loopback-only Prosody 0.12 config into a
  temporary directory (c2s and component ports chosen free at run time, no
  s2s, no TLS), registers users with ``prosodyctl``, starts ``prosody -F`` as a
  child process and stops it by its PID.  Waits are bounded and use the
  reactor (``deferLater`` polling), never ``time.sleep`` in the reactor thread.
- :class:`SlixClient` runs one slixmpp client on its own asyncio loop in a
  daemon thread (slixmpp is asyncio-only, trial's reactor is not) and records
  what it receives in thread-safe lists the test polls.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
from typing import Any, Callable

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

from tests.interop import require_module, require_program

CONFIG = """\
-- Loopback-only Prosody for cpimgw interop tests (written by tests/interop/prosody.py).
run_as_root = true
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{dir}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {component} }}
component_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
c2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "presence"; "message"; "posix"; }}
modules_disabled = {{ "s2s"; "tls" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
certificates = "{dir}/certs"

VirtualHost "{host}"

Component "{component_domain}"
  component_secret = "{secret}"
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@inlineCallbacks
def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` on the reactor until it is true; fail after ``timeout`` seconds."""
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        yield deferLater(global_reactor, step, lambda: None)
        waited += step


class ProsodyServer:
    """One Prosody on loopback in a temporary directory."""

    def __init__(self, host: str = "test.localhost", component_domain: str = "gw.test.localhost",
                 secret: str = "s3cret") -> None:
        self.prosody = require_program("prosody")
        self.prosodyctl = require_program("prosodyctl")
        self.host = host
        self.component_domain = component_domain
        self.secret = secret
        self.dir = tempfile.mkdtemp(prefix="cpimgw-prosody-")
        os.makedirs(os.path.join(self.dir, "data"))
        os.makedirs(os.path.join(self.dir, "certs"))
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        with open(self.config, "w") as handle:
            handle.write(CONFIG.format(dir=self.dir, c2s=self.c2s_port, component=self.component_port,
                                       host=host, component_domain=component_domain, secret=secret))
        self.process: subprocess.Popen[bytes] | None = None

    def register(self, user: str, password: str) -> None:
        subprocess.run([self.prosodyctl, "--config", self.config, "register", user, self.host, password],
                       cwd=self.dir, check=True, timeout=20, capture_output=True)

    @inlineCallbacks
    def start(self):
        out = open(os.path.join(self.dir, "prosody.stdout"), "ab")
        self.process = subprocess.Popen([self.prosody, "-F", "--config", self.config], cwd=self.dir,
                                        stdout=out, stderr=subprocess.STDOUT)
        out.close()
        yield wait_until(lambda: port_open(self.c2s_port) and port_open(self.component_port), 15.0,
                         what="prosody's ports")

    @inlineCallbacks
    def stop(self):
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            yield wait_until(lambda: process.poll() is not None, 10.0, what="prosody to exit")
        except AssertionError:
            os.kill(process.pid, signal.SIGKILL)
            yield wait_until(lambda: process.poll() is not None, 5.0, what="prosody to die")

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "prosody.log")) as handle:
                return handle.read()
        except OSError:
            return ""


#: Finished clients and their loops stay referenced: slixmpp's destructor
#: schedules on its loop, which must not be garbage-collected (closed) first.
_FINISHED: list[Any] = []


class SlixClient:
    """A slixmpp user on its own asyncio loop in a thread; received stanzas land in lists."""

    def __init__(self, jid: str, password: str, port: int) -> None:
        slixmpp = require_module("slixmpp")
        import asyncio

        self.jid = jid
        self.messages: list[dict[str, Any]] = []
        self.presences: list[dict[str, Any]] = []
        self.session_started = threading.Event()
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        ready = threading.Event()
        holder: dict[str, Any] = {}

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            client = slixmpp.ClientXMPP(jid, password, plugin_config={
                "feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": True}})
            client.enable_starttls = False
            client.enable_direct_tls = False
            client.enable_plaintext = True
            client.auto_authorize = True
            client.auto_subscribe = False
            client.register_plugin("xep_0030")
            client.register_plugin("xep_0199")
            client.add_event_handler("session_start", self._on_start)
            client.add_event_handler("message", self._on_message)
            client.add_event_handler("presence", self._on_presence)
            holder["client"] = client
            ready.set()
            client.connect(host="127.0.0.1", port=port)
            self.loop.run_forever()
            pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

        self.thread = threading.Thread(target=run, name=f"slixmpp {jid}", daemon=True)
        self.thread.start()
        ready.wait(10)
        self.client = holder["client"]

    def _on_start(self, event: Any) -> None:
        self.client.send_presence()
        self.client.get_roster()
        self.session_started.set()

    def _on_message(self, msg: Any) -> None:
        record = {
            "from": str(msg["from"]), "to": str(msg["to"]), "type": msg["type"], "id": msg["id"],
            "body": msg["body"], "subject": msg["subject"], "thread": msg["thread"], "xml": str(msg),
        }
        with self._lock:
            self.messages.append(record)

    def _on_presence(self, pres: Any) -> None:
        record = {"from": str(pres["from"]), "to": str(pres["to"]), "type": pres["type"],
                  "show": pres["show"], "status": pres["status"], "xml": str(pres)}
        with self._lock:
            self.presences.append(record)

    def call(self, function: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Run ``function`` on the client's loop."""
        self.loop.call_soon_threadsafe(lambda: function(*args, **kw))

    def send_message(self, to: str, body: str, **kw: Any) -> None:
        def send() -> None:
            message = self.client.make_message(mto=to, mbody=body, mtype=kw.get("mtype", "chat"),
                                               msubject=kw.get("subject"))
            if kw.get("thread"):
                message["thread"] = kw["thread"]
            if kw.get("id"):
                message["id"] = kw["id"]
            message.send()

        self.call(send)

    def send_presence(self, **kw: Any) -> None:
        self.call(self.client.send_presence, **kw)

    def roster_subscription(self, jid: str) -> str:
        try:
            return self.client.client_roster[jid]["subscription"]
        except Exception:
            return "none"

    def stop(self) -> Deferred[None]:
        def close() -> None:
            self.client.disconnect()
            self.loop.call_later(0.5, self.loop.stop)

        self.loop.call_soon_threadsafe(close)
        _FINISHED.append((self.client, self.loop))
        return wait_until(lambda: not self.thread.is_alive(), 5.0, what="slixmpp thread")
