"""End to end: the ``cpimgw prim`` command, run as a subprocess, against a PRIM adapter on loopback.

The adapter listens for user agents on 127.0.0.1 (ephemeral port) on a bus
driven by the real reactor, with a RecordingAdapter for ``alpha.example``.
The installed ``cpimgw`` console script (``.venv/bin/cpimgw``; else
``python -m cpimgw.cli``) is spawned with ``reactor.spawnProcess``; its
output is read as it comes, and every wait is bounded (the process is
killed if it outlives ``WAIT``).
"""

from __future__ import annotations

import os
import sys

from twisted.internet import defer, error, protocol, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim.adapter import PrimAdapter, PrimSettings
from cpimgw.adapters.prim.presence_doc import basic_status, simple_pidf
from cpimgw.cpim.operations import Content, Message, Notify, Publish, Status, Subscribe
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus

WAIT = 20.0


def command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "cpimgw")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "cpimgw.cli"]


class Run(protocol.ProcessProtocol):
    """One ``cpimgw`` process: its output so far and a Deferred of its exit status."""

    def __init__(self) -> None:
        self.out = ""
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data.decode("utf-8", "replace")

    def errReceived(self, data: bytes) -> None:
        self.out += data.decode("utf-8", "replace")

    def processEnded(self, reason) -> None:  # type: ignore[no-untyped-def]
        code = reason.value.exitCode if isinstance(reason.value, (error.ProcessDone, error.ProcessTerminated)) else None
        self.ended.callback(code)


@defer.inlineCallbacks
def until(predicate, seconds: float = WAIT):  # type: ignore[no-untyped-def]
    for _ in range(int(seconds * 20)):
        if predicate():
            return
        yield deferLater(reactor, 0.05)
    raise AssertionError(f"not reached within {seconds} s")


class CommandTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        self.bus = make_bus(reactor=reactor)
        yield self.bus.started
        self.alpha = RecordingAdapter("alpha", ["alpha.example"])
        attach(self.bus, self.alpha)
        settings = PrimSettings.from_mapping({"local_domains": ["prim.example"], "users": {"alice": "wonder"},
                                              "s2s_require_tls": False})
        self.adapter = PrimAdapter(settings, self.bus, listen_ports={"client": 0})
        self.bus.register(self.adapter)
        yield self.adapter.startService()
        self.addCleanup(self.bus.stop)
        self.addCleanup(self.adapter.stopService)

    def spawn(self, *argv: str) -> Run:
        run = Run()
        args = command() + ["prim", "--server", f"127.0.0.1:{self.adapter.port_of('client')}",
                            "--user", "alice@prim.example", *argv]
        env = dict(os.environ, CPIMGW_PRIM_PASSWORD="wonder", PYTHONPATH=os.getcwd() + os.pathsep + os.path.abspath(
            os.path.join(os.path.dirname(__file__), "..", "..", "..")))
        transport = reactor.spawnProcess(run, args[0], args, env=env)

        def kill() -> None:
            if not run.ended.called:
                transport.signalProcess("KILL")

        timer = reactor.callLater(WAIT, kill)
        run.ended.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        self.addCleanup(lambda: run.ended)  # never leave the process behind
        return run

    def close_sessions(self) -> None:
        """The server ends the user agent's connection (the way a listening command ends here)."""
        for session in list(self.adapter.sessions):
            if session.protocol is not None:
                session.protocol.close()

    @defer.inlineCallbacks
    def test_send(self):  # type: ignore[no-untyped-def]
        run = self.spawn("send", "im:romeo@alpha.example", "hello from a shell")
        status = yield run.ended
        self.assertEqual(status, 0, run.out)
        self.assertIn("logged in as im:alice@prim.example (user agent ua", run.out)
        self.assertIn("SEND answered 200 OK", run.out)
        (message,) = self.alpha.of_type(Message)
        self.assertEqual((message.source, message.destination), (im_uri("alice", "prim.example"),
                                                                 im_uri("romeo", "alpha.example")))
        self.assertTrue(message.content.body.endswith(b"\r\n\r\nhello from a shell"))
        self.assertIn(b"Content-Type: text/plain; charset=UTF-8", message.content.body)

    @defer.inlineCallbacks
    def test_send_refused(self):  # type: ignore[no-untyped-def]
        from cpimgw.cpim.operations import Condition, failure

        self.alpha.reply = lambda op: failure(op, Condition.UNAVAILABLE, "romeo is offline")
        run = self.spawn("send", "im:romeo@alpha.example", "anyone?")
        status = yield run.ended
        self.assertEqual(status, 2, run.out)
        self.assertIn("SEND answered 408", run.out)

    @defer.inlineCallbacks
    def test_listen(self):  # type: ignore[no-untyped-def]
        run = self.spawn("listen", "--wait", str(WAIT))
        yield until(lambda: any(s.listening for s in self.adapter.ua_sessions(("alice", "prim.example"))))
        response = yield self.alpha.inject(Message(im_uri("romeo", "alpha.example"), im_uri("alice", "prim.example"),
                                                   Content("text/plain", "grüß dich".encode("utf-8"))))
        self.assertIs(response.status, Status.SUCCESS)  # the command's user agent answered 200
        yield until(lambda: "message from" in run.out)
        self.close_sessions()
        status = yield run.ended
        self.assertEqual(status, 0, run.out)
        self.assertIn("message from im:romeo@alpha.example: grüß dich", run.out)

    @defer.inlineCallbacks
    def test_subscribe(self):  # type: ignore[no-untyped-def]
        pidf = simple_pidf("pres:romeo@alpha.example", "open")
        yield self.alpha.inject(Publish(pres_uri("romeo", "alpha.example"), Content("application/pidf+xml", pidf)))
        run = self.spawn("subscribe", "pres:romeo@alpha.example", "--duration", "600", "--wait", str(WAIT))
        yield until(lambda: "presence of" in run.out)
        self.close_sessions()
        status = yield run.ended
        self.assertEqual(status, 0, run.out)
        self.assertIn("SUBSCRIBE answered 200 OK (Duration 600)", run.out)
        self.assertIn("presence of pres:romeo@alpha.example: open", run.out)
        (subscribe,) = self.alpha.of_type(Subscribe)
        self.assertEqual((subscribe.watcher, subscribe.target, subscribe.duration),
                         (pres_uri("alice", "prim.example"), pres_uri("romeo", "alpha.example"), 600))

    @defer.inlineCallbacks
    def test_publish(self):  # type: ignore[no-untyped-def]
        response = yield self.alpha.inject(Subscribe(pres_uri("romeo", "alpha.example"),
                                                     pres_uri("alice", "prim.example"), 600))
        self.assertIs(response.status, Status.SUCCESS)
        run = self.spawn("publish", "open", "--note", "at my desk")
        status = yield run.ended
        self.assertEqual(status, 0, run.out)
        self.assertIn("PUBLISH answered 200 OK", run.out)
        (notify,) = yield self.alpha.wait_for(
            lambda op: isinstance(op, Notify) and op.presence is not None and b"open" in op.presence.body
        ).addTimeout(WAIT, reactor)
        self.assertEqual((notify.watcher, notify.target), (pres_uri("romeo", "alpha.example"),
                                                           pres_uri("alice", "prim.example")))
        self.assertEqual(basic_status(notify.presence.body), "open")
        self.assertIn(b"at my desk", notify.presence.body)
