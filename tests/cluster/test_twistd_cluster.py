"""Two and three ``twistd cpimgw`` nodes on one redis-server, with real peers (Prosody, sipp, PRIM UAs).

- a SIP user (sipp) sends through node A to a PRIM user logged in at node B;
- an XMPP user's subscription made through node A (which holds the XEP-0114
  component) keeps being notified after node A is killed with SIGKILL: node
  B takes the component over and notifies from the shared subscription;
- the same Message-ID arriving at two nodes is delivered once;
- 10,000 messages sent at once through node A to a PRIM user at node B,
  node A (or B) killed with SIGKILL on the way: every message answered 200
  was received, none twice;
- Redis killed and restarted under load: /health says the store is down
  meanwhile, messages are answered with a failure (not accepted), and the
  node reconnects by itself.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
import urllib.error
import urllib.request
import uuid

from twisted.internet import reactor, threads, utils
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import deferLater

from cpimgw.adapters.prim.client import PrimClientError
from tests.cluster.world import WAIT, ClusterTestCase
from tests.e2e import sip_users
from tests.e2e.peers import run_sipp, wait_until, xmpp_jid_of
from tests.interop import require_program
from tests.interop.sipp import free_port as free_udp_port


def fresh(word: str) -> str:
    return f"{word}-{uuid.uuid4().hex[:8]}"


class TwoNodeTests(ClusterTestCase):
    def cluster_status(self, node: str, *args: str):  # type: ignore[no-untyped-def]
        """``cpimgw cluster status --config <node's file> ARGS``: Deferred[(code, out, err)]."""
        config = os.path.join(self.dir, node, "gateway.toml")
        return utils.getProcessOutputAndValue(sys.executable, ["-m", "cpimgw.cli", "cluster", "status",
                                                               "--config", config, *args],
                                              env=dict(os.environ), path=self.dir).addCallback(
            lambda result: (result[2], result[0].decode(), result[1].decode()))

    @inlineCallbacks
    def test_sip_user_through_a_reaches_prim_user_on_b(self):  # type: ignore[no-untyped-def]
        require_program("sipp")
        yield self.start_node("A", holds_component=True, status=True)
        yield self.start_node("B")
        carol = yield self.prim_user("carol", "B")
        workdir = self.dir + "/sipp-message"
        process = run_sipp(sip_users.message_uac("bob@sip.localhost", "carol@prim.localhost", "Hello Carol, via A"),
                           ["-i", "127.0.0.1", "-nostdin", f"127.0.0.1:{self.ports('A')['sip_port']}",
                            "-p", str(free_udp_port()), "-m", "1", "-t", "u1", "-timeout", "20s", "-timeout_error"],
                           workdir, timeout=30.0)
        self.addCleanup(process.stop)
        code, output = yield process.ended
        self.assertEqual(code, 0, f"{output[-2000:]}\n{self.log('A')[-3000:]}")
        send = yield carol.wait_for("SEND").addTimeout(WAIT, reactor)
        self.assertEqual(send.header("From"), "im:bob@sip.localhost")
        self.assertIn(b"Hello Carol, via A", send.body)
        # It went A -> B through B's stream (node A's own PRIM adapter has no session of carol).
        view = yield threads.deferToThread(_status, self.ports("A")["status_port"])
        self.assertEqual(view["cluster"]["counters"].get("forwarded"), 1)
        self.assertEqual(view["cluster"]["node"], "A")
        # The operators' view: both nodes up, B holds carol's user agent, A the component and the sweep.
        code, out, err = yield self.cluster_status("A", "--json")
        self.assertEqual(code, 0, err)
        nodes = json.loads(out)["nodes"]
        self.assertEqual({name: node["state"] for name, node in nodes.items()}, {"A": "up", "B": "up"})
        self.assertEqual(nodes["B"]["holds"], ["prim.ua:carol@prim.localhost"])
        self.assertEqual(nodes["A"]["holds"], ["xmpp.component:gw.localhost"])
        self.assertEqual(nodes["B"]["stream"]["pending"], 0)
        code, out, err = yield self.cluster_status("A")
        self.assertRegex(out, r"(?m)^  B  up  age [\d.]+ s  last beat [\d.]+ s ago")

    @inlineCallbacks
    def test_same_message_id_at_two_nodes_delivered_once(self):  # type: ignore[no-untyped-def]
        yield self.start_node("A", holds_component=True)
        yield self.start_node("B")
        carol = yield self.prim_user("carol", "B")
        dave_a = yield self.prim_user("dave", "A", listen=False)
        dave_b = yield self.prim_user("dave", "B", listen=False)
        answers = yield DeferredList([
            dave_a.send("im:carol@prim.localhost", b"once", message_id="same-id-1"),
            dave_b.send("im:carol@prim.localhost", b"once", message_id="same-id-1"),
        ], consumeErrors=True)
        self.assertEqual([ok and response.code for ok, response in answers], [200, 200])
        yield carol.wait_for("SEND").addTimeout(WAIT, reactor)
        yield deferLater(reactor, 1.0, lambda: None)  # a second copy would arrive within this (bounded)
        sends = [r for r in carol.received if r.method == "SEND"]
        self.assertEqual(len(sends), 1)

    @inlineCallbacks
    def test_xmpp_subscription_through_a_survives_a_sigkill(self):  # type: ignore[no-untyped-def]
        yield self.start_node("A", holds_component=True)
        yield self.start_node("B")
        carol = yield self.prim_user("carol", "B")
        alice = yield self.xmpp_user("alice")
        jid = xmpp_jid_of("carol", "prim.localhost")

        def saw(note: str) -> bool:
            return any(p["from"].split("/")[0] == jid and p["status"] == note for p in alice.presences)

        before = fresh("carol-before")
        answer = yield carol.publish_status("open", note=before).addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        alice.call(alice.client.send_presence, pto=jid, ptype="subscribe")
        yield wait_until(lambda: alice.roster_subscription(jid) in ("to", "both"), WAIT, what="subscribed")
        yield wait_until(lambda: saw(before), WAIT, what="carol's presence through node A")
        self.kill("A")
        killed_at = reactor.seconds()
        yield wait_until(lambda: "cluster node B runs xmpp.component:gw.localhost" in self.log("B"), 20.0,
                         what="node B to take the component over")
        yield wait_until(lambda: "XMPP component gw.localhost authenticated" in self.log("B"), 20.0,
                         what="node B's component stream")
        # B refreshes alice's subscription from now on (it was made, and refreshed, by A).
        yield wait_until(lambda: re.search(r"XMPP component taken over: [1-9]\d* subscriptions of XMPP users adopted",
                                           self.log("B")) is not None, WAIT, what="node B to adopt the subscription")
        after = fresh("carol-after")
        answer = yield carol.publish_status("open", note=after).addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        yield wait_until(lambda: saw(after), WAIT, what="carol's presence through node B after A died")
        # The subscriptions' expiry is B's to sweep now (A held the sweep lease, started first).
        yield wait_until(lambda: "cluster node B took the lease sweep" in self.log("B"), WAIT,
                         what="node B to take the sweep lease over")
        self.assertGreater(reactor.seconds(), killed_at)

    @inlineCallbacks
    def flood_and_kill(self, victim: str):  # type: ignore[no-untyped-def]
        """dave at A sends 10,000 messages to carol at B, all at once (10,000 in flight); ``victim``
        is SIGKILLed once 1,000 were answered 200.  Every message answered 200 must be at carol, once."""
        yield self.start_node("A", holds_component=True)
        yield self.start_node("B")
        carol = yield self.prim_user("carol", "B")
        dave = yield self.prim_user("dave", "A", listen=False)
        total, window = 10000, 10000
        answered: set[str] = set()
        refused: collections.Counter[str] = collections.Counter()
        queue = iter(range(total))
        state = {"killed": False}

        @inlineCallbacks
        def sender():  # type: ignore[no-untyped-def]
            for index in queue:
                message_id = f"load-{index}"
                try:
                    response = yield dave.send("im:carol@prim.localhost", b"n", message_id=message_id)
                except PrimClientError as error:
                    refused[str(error.response.code)] += 1
                    continue
                except Exception as error:  # the connection to node A died with it
                    refused[type(error).__name__] += 1
                    return
                if response.code == 200:
                    answered.add(message_id)
                if len(answered) >= 1000 and not state["killed"]:
                    state["killed"] = True
                    self.kill(victim)

        yield DeferredList([sender() for _ in range(window)], consumeErrors=True)
        self.assertTrue(state["killed"], f"node {victim} was not killed: {len(answered)} answered, {refused}")
        # What was answered 200 was delivered before the answer; give the last ones the bounded time to show.
        yield wait_until(lambda: answered <= self.received(carol), WAIT,
                         what=f"every answered message at carol ({len(answered - self.received(carol))} missing)")
        ids = [r.header("Message-ID") for r in carol.received if r.method == "SEND"]
        duplicates = [i for i, n in collections.Counter(ids).items() if n > 1]
        self.assertEqual(duplicates, [])
        self.assertEqual(answered - set(ids), set())
        self.assertGreaterEqual(len(answered), 1000)
        return answered, refused

    @inlineCallbacks
    def test_sigkill_of_the_ingress_node_during_10000_messages(self):  # type: ignore[no-untyped-def]
        yield self.flood_and_kill("A")

    @inlineCallbacks
    def test_sigkill_of_the_receivers_node_during_10000_messages(self):  # type: ignore[no-untyped-def]
        """B (carol's node) dies: A takes B's stream over and answers what B left unanswered with PRIM 408."""
        answered, refused = yield self.flood_and_kill("B")
        self.assertLess(len(answered), 10000)
        self.assertGreater(sum(refused.values()), 0)

    @inlineCallbacks
    def test_prim_lease_renewed_at_one_node_is_not_expired_by_another(self):  # type: ignore[no-untyped-def]
        """carol's leased tuple is known to B (B started after her PUBLISH); she renews it at A: B's
        own timer for the old lease finds the renewal in the shared store and changes nothing."""
        yield self.start_node("A", holds_component=True)
        carol = yield self.prim_user("carol", "A")
        note = fresh("carol-leased")
        answer = yield carol.publish_status("open", note=note, pi_type="leased", duration=3).addTimeout(
            WAIT, reactor)
        self.assertEqual(answer.code, 200)
        yield self.start_node("B")
        self.assertRegex(self.log("B"), r"PRIM state restored: \d+ ACLs, \d+ class tables, 1 tuples")
        answer = yield carol.renew("default", 60).addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        dave = yield self.prim_user("dave", "B")
        answer = yield dave.subscribe("pres:carol@prim.localhost", 600).addTimeout(WAIT, reactor)
        self.assertIn(answer.code, (200, 201))
        # Past the first lease's end (3 s after the PUBLISH), waiting on the real nodes' timers:
        deadline = reactor.seconds() + 4.0
        yield wait_until(lambda: reactor.seconds() > deadline, 10.0, what="the old lease's end")
        self.assertNotIn("PRIM lease of tuple default of carol@prim.localhost expired", self.log("B"))
        self.assertNotIn("PRIM lease of tuple default of carol@prim.localhost expired", self.log("A"))
        fetched = yield dave.fetch("pres:carol@prim.localhost").addTimeout(WAIT, reactor)
        notes = [r.body for r in dave.received if r.method == "NOTIFY"] + [fetched.body]
        self.assertTrue(any(note.encode() in body for body in notes), notes)
        self.assertFalse(any(b"closed" in body for body in notes), notes)

    @inlineCallbacks
    def test_prim_acl_set_through_a_holds_at_b(self):  # type: ignore[no-untyped-def]
        """carol sets her inbox ACL through A (refusing dave); B, started before, has not read it:
        when carol's agent moves to B, B reads it and refuses dave's message (PRIM 402)."""
        yield self.start_node("A", holds_component=True)
        yield self.start_node("B")
        carol = yield self.prim_user("carol", "A")
        answer = yield carol.set_acl(b"<ACL><entry><target><address>@xmpp.localhost</address></target>"
                                     b"<allow><send/></allow></entry></ACL>").addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        yield carol.logout()
        carol_at_b = yield self.prim_user("carol", "B")
        dave = yield self.prim_user("dave", "A", listen=False)
        error = yield self.assertFailure(dave.send("im:carol@prim.localhost", b"refused?"), PrimClientError)
        self.assertEqual(error.response.code, 402)
        self.assertEqual([r for r in carol_at_b.received if r.method == "SEND"], [])

    @staticmethod
    def received(client) -> set[str]:  # type: ignore[no-untyped-def]
        return {r.header("Message-ID") for r in client.received if r.method == "SEND"}


def _status(port: int) -> dict:
    import json

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        return json.loads(answer.read())


def _health(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class RedisRestartTests(ClusterTestCase):
    @inlineCallbacks
    def test_redis_restarted_under_load(self):  # type: ignore[no-untyped-def]
        yield self.start_node("A", holds_component=True, status=True)
        carol = yield self.prim_user("carol", "A")
        dave = yield self.prim_user("dave", "A", listen=False)
        status_port = self.ports("A")["status_port"]
        code, text = yield threads.deferToThread(_health, status_port)
        self.assertEqual((code, text), (200, "ok\n"))
        outcomes: collections.Counter[int] = collections.Counter()
        answered: set[str] = set()
        counter = iter(range(1000000))
        state = {"running": True}

        @inlineCallbacks
        def load():  # type: ignore[no-untyped-def]
            while state["running"]:
                message_id = f"r-{next(counter)}"
                try:
                    response = yield dave.send("im:carol@prim.localhost", b"r", message_id=message_id)
                    outcomes[response.code] += 1
                    answered.add(message_id)
                except PrimClientError as error:
                    outcomes[error.response.code] += 1
                yield deferLater(reactor, 0.005, lambda: None)

        loads = DeferredList([load() for _ in range(10)], consumeErrors=True)
        yield wait_until(lambda: outcomes[200] >= 200, WAIT, what="load through the node")
        self.redis.kill()
        yield wait_until(lambda: sum(n for c, n in outcomes.items() if c != 200) >= 20, WAIT,
                         what="failures answered while Redis is down")
        code, text = yield threads.deferToThread(_health, status_port)
        self.assertEqual(code, 503)
        self.assertIn("store down", text)
        ok_before = outcomes[200]
        self.redis.spawn()
        yield wait_until(lambda: outcomes[200] >= ok_before + 200, 30.0, what="the node to reconnect by itself")
        code, text = yield threads.deferToThread(_health, status_port)
        self.assertEqual((code, text), (200, "ok\n"))
        state["running"] = False
        yield loads
        yield wait_until(lambda: answered <= {r.header("Message-ID") for r in carol.received if r.method == "SEND"},
                         WAIT, what="every answered message at carol")
