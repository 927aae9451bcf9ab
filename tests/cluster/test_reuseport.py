"""Tests of cpimgw.cluster.workers' listening: two listeners on one port with SO_REUSEPORT (UDP and TCP),
as two worker processes open them, and the worker node ids."""

from __future__ import annotations

import os
import socket

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial import unittest

from cpimgw.cluster.workers import WORKER_ENVIRONMENT, ReusePortReactor, reuse_port_available, worker_node_id
from cpimgw.config import ClusterSettings, Config, GatewaySettings
from tests.interop.sipp import free_port


class _Echo(protocol.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.arrived: Deferred[bytes] = Deferred()

    def datagramReceived(self, data: bytes, address: object) -> None:  # noqa: N802
        self.got.append(data)
        if not self.arrived.called:
            self.arrived.callback(data)


class ReusePortTests(unittest.TestCase):
    def setUp(self) -> None:
        if not reuse_port_available():
            raise unittest.SkipTest("no SO_REUSEPORT on this system")
        self.shared = ReusePortReactor(reactor)

    @inlineCallbacks
    def test_two_udp_listeners_on_one_port(self):
        port = free_port()
        first, second = _Echo(), _Echo()
        for listener in (self.shared.listenUDP(port, first, interface="127.0.0.1"),
                         self.shared.listenUDP(port, second, interface="127.0.0.1")):
            self.addCleanup(listener.stopListening)
        # Datagrams from many source ports: the kernel spreads them over both sockets.
        senders = []
        for index in range(64):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            senders.append(sender)
            sender.sendto(b"x%d" % index, ("127.0.0.1", port))
        yield first.arrived
        yield second.arrived
        for sender in senders:
            sender.close()
        self.assertTrue(first.got and second.got)

    @inlineCallbacks
    def test_two_tcp_listeners_on_one_port(self):
        port = free_port(socket.SOCK_STREAM)
        factory = protocol.ServerFactory.forProtocol(protocol.Protocol)
        listeners = [self.shared.listenTCP(port, factory, interface="127.0.0.1") for _ in range(2)]
        for listener in listeners:
            self.addCleanup(listener.stopListening)
        self.assertEqual({listener.getHost().port for listener in listeners}, {port})
        client = yield protocol.ClientCreator(reactor, protocol.Protocol).connectTCP("127.0.0.1", port)
        client.transport.loseConnection()

    def test_proxy_provides_what_the_reactor_provides(self) -> None:
        from twisted.internet.interfaces import IReactorTCP, IReactorTime, IReactorUDP

        for interface in (IReactorTCP, IReactorUDP, IReactorTime):
            self.assertTrue(interface.providedBy(self.shared))


class NodeIdTests(unittest.TestCase):
    def test_node_ids(self) -> None:
        config = Config(GatewaySettings(name="gw", workers=1), cluster=ClusterSettings(node="east"))
        self.assertEqual(worker_node_id(config), "east")
        config = Config(GatewaySettings(name="gw", workers=3), cluster=ClusterSettings(node="east"))
        previous = os.environ.pop(WORKER_ENVIRONMENT, None)
        self.addCleanup(lambda: os.environ.__setitem__(WORKER_ENVIRONMENT, previous) if previous is not None
                        else os.environ.pop(WORKER_ENVIRONMENT, None))
        self.assertEqual(worker_node_id(config), "east#w0")
        os.environ[WORKER_ENVIRONMENT] = "2"
        self.assertEqual(worker_node_id(config), "east#w2")
        self.assertEqual(ClusterSettings().node_id("gw"), f"{socket.gethostname()}/gw")
