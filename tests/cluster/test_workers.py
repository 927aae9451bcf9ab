"""``[gateway] workers = 2``: two processes under one ``twistd cpimgw`` on one redis-server, sharing the
listening ports (SO_REUSEPORT), with real peers (Prosody for the XEP-0114 component, PRIM user agents).

The worker processes are nodes of one cluster: user agents connected to
either worker reach each other; the component connection is held by one
worker; a worker killed with SIGKILL is restarted by worker 0 and what it
held is served again.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from twisted.internet import threads, utils
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.trial.unittest import TestCase

from cpimgw.config import load_config
from cpimgw.cpim.errors import ConfigError
from tests.cluster.test_twistd_cluster import _status
from tests.cluster.world import WAIT, ClusterTestCase
from tests.e2e.peers import wait_until


class WorkersTests(ClusterTestCase):
    def status(self):  # type: ignore[no-untyped-def]
        config = os.path.join(self.dir, "W", "gateway.toml")
        return utils.getProcessOutputAndValue(
            sys.executable, ["-m", "cpimgw.cli", "cluster", "status", "--config", config, "--json"],
            env=dict(os.environ), path=self.dir).addCallback(lambda result: json.loads(result[0])["nodes"])

    @inlineCallbacks
    def test_two_workers_share_the_ports_and_serve_each_other(self):  # type: ignore[no-untyped-def]
        yield self.start_node("W", holds_component=True, status=True, workers=2)
        # Each worker answers its own status endpoint: status_port + its index.
        for index in (0, 1):
            view = yield threads.deferToThread(_status, self.ports("W")["status_port"] + index)
            self.assertEqual(view["cluster"]["node"], f"W#w{index}")
        nodes = yield self.status()
        self.assertEqual({name: node["state"] for name, node in nodes.items()}, {"W#w0": "up", "W#w1": "up"})
        self.assertEqual(len({node["pid"] for node in nodes.values()}), 2)
        holders = [name for name, node in nodes.items() if "xmpp.component:gw.localhost" in node["holds"]]
        self.assertEqual(len(holders), 1)
        # Sixteen user agents on the one PRIM port: the kernel spreads them over both workers.
        carol = yield self.prim_user("carol", "W")
        senders = []
        for _ in range(16):
            senders.append((yield self.prim_user("dave", "W", listen=False)))
        nodes = yield self.status()
        held = {name: [key for key in node["holds"] if key.startswith("prim.ua:")] for name, node in nodes.items()}
        # carol's agent is on one worker; dave's eight are spread (the kernel hashes their addresses)
        self.assertEqual(sum(keys.count("prim.ua:carol@prim.localhost") for keys in held.values()), 1)
        self.assertEqual(sorted(held), ["W#w0", "W#w1"])
        answers = yield DeferredList([sender.send("im:carol@prim.localhost", f"m{i}".encode(), message_id=f"w-{i}")
                                      for i, sender in enumerate(senders)], consumeErrors=True)
        self.assertEqual([ok and response.code for ok, response in answers], [200] * 16)
        yield wait_until(lambda: len([r for r in carol.received if r.method == "SEND"]) == 16, WAIT,
                         what="sixteen messages at carol")
        # SIGKILL worker 1: worker 0 restarts it, and the cluster lists it up again.
        victim = nodes["W#w1"]["pid"]
        os.kill(victim, signal.SIGKILL)
        gateway = self.nodes["W"][0]
        yield wait_until(lambda: "worker 1 ended" in gateway.log(), WAIT, what="worker 0 to see worker 1 end")
        yield wait_until(lambda: gateway.log().count("cluster node W#w1 joined") >= 2, 30.0,
                         what="worker 1 restarted")
        nodes = yield self.status()
        self.assertEqual(nodes["W#w1"]["state"], "up")
        self.assertNotEqual(nodes["W#w1"]["pid"], victim)
        holders = [name for name, node in nodes.items() if "xmpp.component:gw.localhost" in node["holds"]]
        self.assertEqual(len(holders), 1)


class WorkersConfigTests(TestCase):  # no peers needed
    def test_workers_refused_without_a_shared_store(self) -> None:
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write("[gateway]\nworkers = 2\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(error).count("\n"), 0)
        self.assertIn('gateway.workers: 2 workers need the shared store ([store] kind = "redis"), not "sqlite"',
                      str(error))

    def test_the_two_node_example_of_the_readme(self) -> None:
        root = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "cluster")
        a = load_config(os.path.join(root, "node-a.toml"))
        b = load_config(os.path.join(root, "node-b.toml"))
        self.assertEqual((a.store.kind, a.store.url, a.store.prefix), (b.store.kind, b.store.url, b.store.prefix))
        self.assertEqual(a.store.kind, "redis")
        self.assertEqual((a.cluster.node, b.cluster.node), ("node-a", "node-b"))
        ports = lambda config: {config.adapter("sip").settings["port"], config.adapter("prim").settings["c2s_port"],
                                config.adapter("prim").settings["s2s_port"], config.gateway.status_port}
        self.assertEqual(ports(a) & ports(b), set())
