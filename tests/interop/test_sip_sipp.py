"""Interop: sipp sends MESSAGEs through the SIP adapter to the CPIM test adapter, and receives them (UDP, TCP)."""

from __future__ import annotations

import os
import socket

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from cpimgw.cpim import message as cpim
from cpimgw.cpim.operations import Content, Message, Status
from cpimgw.cpim.uri import im_uri
from cpimgw.testing import RecordingAdapter, attach, make_bus
from cpimgw.adapters.sip.adapter import SipAdapter, SipSettings
from tests.interop import require_program
from tests.interop.sipp import UAC_MESSAGE, UAS_MESSAGE, SippProcess, free_port

COUNT = 20


class SippMessageTests(TestCase):
    timeout = 90

    def setUp(self) -> None:
        require_program("sipp")
        self.workdir = os.path.abspath(self.mktemp())


        os.makedirs(self.workdir)
        self.sipp_port = free_port()
        self.bus = make_bus(reactor=reactor)
        self.test_adapter = RecordingAdapter("cpim-test", ["xmpp.test"])
        attach(self.bus, self.test_adapter)

    def start_gateway(self, transport: str) -> SipAdapter:
        settings = SipSettings.from_mapping({
            "domains": ["sip.test"], "port": 0, "transports": ["udp", "tcp"], "use_dns": False,
            "routes": {"sip.test": f"sip:127.0.0.1:{self.sipp_port};transport={transport}"},
        })
        adapter = SipAdapter(self.bus, settings, reactor=reactor)
        self.bus.register(adapter)
        adapter.startService()
        self.addCleanup(adapter.stopService)
        return adapter

    @inlineCallbacks
    def check_inbound(self, transport: str):  # type: ignore[no-untyped-def]
        adapter = self.start_gateway(transport)
        port = adapter.ports[transport.upper()]
        sipp = SippProcess(
            UAC_MESSAGE.format(domain="xmpp.test"),
            [f"127.0.0.1:{port}", "-s", "bob", "-i", "127.0.0.1", "-p", str(self.sipp_port),
             "-m", str(COUNT), "-r", "50", "-t", "u1" if transport == "udp" else "t1", "-timeout", "40s"],
            self.workdir,
        )
        self.addCleanup(sipp.stop)
        code, output = yield sipp.ended
        self.assertEqual(code, 0, output[-2000:])
        messages = [op for op in self.test_adapter.delivered if isinstance(op, Message)]
        self.assertEqual(len(messages), COUNT)
        bodies = sorted(cpim.parse_message(m.content.body).body for m in messages)
        self.assertEqual(bodies, sorted(f"hello from sipp {n}\r\n".encode() for n in range(1, COUNT + 1)))
        self.assertEqual({str(m.destination) for m in messages}, {"im:bob@xmpp.test"})
        self.assertEqual({str(m.source) for m in messages}, {"im:sipp@sip.test"})

    def test_sipp_to_gateway_udp(self):  # type: ignore[no-untyped-def]
        return self.check_inbound("udp")

    def test_sipp_to_gateway_tcp(self):  # type: ignore[no-untyped-def]
        return self.check_inbound("tcp")

    @inlineCallbacks
    def check_outbound(self, transport: str):  # type: ignore[no-untyped-def]
        self.start_gateway(transport)
        sipp = SippProcess(
            UAS_MESSAGE,
            ["-i", "127.0.0.1", "-p", str(self.sipp_port), "-m", "5", "-t", "u1" if transport == "udp" else "t1",
             "-timeout", "40s"],
            self.workdir,
        )
        self.addCleanup(sipp.stop)
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        for _ in range(100):  # bounded: until sipp has bound its port (at most 10 s)
            try:
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind(("127.0.0.1", self.sipp_port))
            except OSError:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        results = yield gatherResults([
            self.test_adapter.inject(Message(im_uri("juliet", "xmpp.test"), im_uri(f"bob{n}", "sip.test"),
                                             Content("text/plain", f"to sipp {n}".encode())))
            for n in range(5)
        ])
        self.assertEqual([r.status for r in results], [Status.SUCCESS] * 5, results)
        self.assertEqual({r.native_code for r in results}, {200})
        code, output = yield sipp.ended
        self.assertEqual(code, 0, output[-2000:])

    def test_gateway_to_sipp_udp(self):  # type: ignore[no-untyped-def]
        return self.check_outbound("udp")

    def test_gateway_to_sipp_tcp(self):  # type: ignore[no-untyped-def]
        return self.check_outbound("tcp")

    def tearDown(self):  # type: ignore[no-untyped-def]
        return self.bus.stop()
