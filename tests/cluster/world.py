"""Fixtures of the cluster tests: one redis-server, two or three ``twistd cpimgw`` nodes on it, real peers.

Every node runs ``conf/three-networks.toml`` (XMPP component of Prosody,
SIP, PRIM server for ``prim.localhost``) with free ports of its own, the
store replaced by ``[store] kind = "redis"`` on the test's redis-server and
a ``[cluster]`` table with short timings (a node is dead after 2 s without
a heartbeat).  The XEP-0114 component connection is held by one node at a
time.  Nodes are stopped with SIGTERM in the cleanups, or killed with
SIGKILL by a test.
"""

from __future__ import annotations

import os
import signal

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim.client import PrimClient
from tests.e2e.peers import PRIM_USERS, Gateway, Prosody, free_port, free_udp_port, gateway_config, wait_until
from tests.e2e.world import WAIT, XMPP_USERS, record_all_messages
from tests.interop.prosody import SlixClient
from tests.interop.redis import RedisServer

CLUSTER_TIMINGS = """
[cluster]
node = "{node}"
heartbeat = 0.25
node_timeout = 2.0
claim_idle = 1.0
forward_timeout = 60.0
sweep_interval = 0.5
"""


class ClusterTestCase(TestCase):
    """A redis-server and Prosody; :meth:`start_node` starts ``twistd cpimgw`` nodes on them."""

    timeout = 180

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.redis = RedisServer()
        self.addCleanup(self.redis.cleanup)
        yield self.redis.start()
        self.prosody = Prosody()
        for user, password in XMPP_USERS.items():
            self.prosody.register(user, password)
        yield self.prosody.start()
        self.addCleanup(self.prosody.stop)
        self.nodes: dict[str, tuple[Gateway, dict[str, int]]] = {}

    def node_config(self, name: str, ports: dict[str, int], extra: str = "") -> str:
        text = gateway_config(
            xmpp_component_port=self.prosody.component_port, kamailio_port=free_udp_port(), name=f"node-{name}",
            extra=[('[store]\nkind = "sqlite"\npath = "three-networks.sqlite"\n',
                    f'[store]\nkind = "redis"\nurl = "{self.redis.url}"\nprefix = "e2e:"\n'),
                   # one PRIM user agent sends thousands of messages a second, 10,000 at once: no per-address limit
                   ('users = { carol = "carolpw", dave = "davepw" }',
                    'users = { carol = "carolpw", dave = "davepw" }\nmax_request_rate = 0\nmax_pending = 10000')],
            **ports)
        return text + CLUSTER_TIMINGS.format(node=name) + extra

    @inlineCallbacks
    def start_node(self, name: str, *, holds_component: bool = False, status: bool = False,
                   extra: str = "", workers: int = 1):  # type: ignore[no-untyped-def]
        ports = {"sip_port": free_udp_port(), "prim_s2s_port": free_port(), "prim_c2s_port": free_port()}
        if status:
            ports["status_port"] = free_port()
        config = self.node_config(name, {k: v for k, v in ports.items() if k != "status_port"}, extra)
        if status:
            config = config.replace("[gateway]\n", f"[gateway]\nstatus_port = {ports['status_port']}\n", 1)
        if workers > 1:
            config = config.replace("[gateway]\n", f"[gateway]\nworkers = {workers}\n", 1)
        gateway = Gateway(os.path.join(self.dir, name), config)
        self.addCleanup(self._stop, gateway)
        ready = [rf"cluster node {name} joined"] if workers == 1 else [
            rf"cluster node {name}#w{index} joined" for index in range(workers)]
        if holds_component:
            ready.append(r"XMPP component \S+ authenticated")
        yield gateway.start(ready=ready)
        self.nodes[name] = (gateway, ports)
        return gateway

    @inlineCallbacks
    def _stop(self, gateway: Gateway):  # type: ignore[no-untyped-def]
        yield gateway.stop()

    def kill(self, name: str) -> None:
        """SIGKILL one node (no leave, no cleanup: a crash)."""
        gateway, _ = self.nodes[name]
        os.kill(gateway.process.pid, signal.SIGKILL)

    def ports(self, name: str) -> dict[str, int]:
        return self.nodes[name][1]

    def log(self, name: str) -> str:
        return self.nodes[name][0].log()

    @inlineCallbacks
    def prim_user(self, name: str, node: str, *, listen: bool = True):  # type: ignore[no-untyped-def]
        client = PrimClient(reactor, f"{name}@prim.localhost", PRIM_USERS[name])
        yield client.connect("127.0.0.1", self.ports(node)["prim_c2s_port"]).addTimeout(WAIT, reactor)
        self.addCleanup(client.logout)
        if listen:
            yield client.listen().addTimeout(WAIT, reactor)
        return client

    @inlineCallbacks
    def xmpp_user(self, name: str, resource: str = "desk"):  # type: ignore[no-untyped-def]
        client = SlixClient(f"{name}@xmpp.localhost/{resource}", XMPP_USERS[name], self.prosody.c2s_port)
        self.addCleanup(client.stop)
        record_all_messages(client)
        yield wait_until(client.session_started.is_set, WAIT, what=f"{name}'s XMPP session")
        return client


__all__ = ["ClusterTestCase", "WAIT"]
