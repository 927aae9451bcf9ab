"""Two cluster nodes (ClusterBus) in this process on one real redis-server.

Each node has a test adapter whose users are "connected" to one node only
(``cluster_key`` names the user; :meth:`Node.hold` registers it), as PRIM
user agents are: what a node cannot deliver itself goes to the holder's
stream and the holder's answer comes back.  The real reactor runs; waits
are bounded polls on it.
"""

from __future__ import annotations

import attrs
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial import unittest

from cpimgw.cluster import codec
from cpimgw.cluster.bus import ClusterBus
from cpimgw.config import ClusterSettings
from cpimgw.cpim.operations import (Condition, Content, Message, Notify, Publish, Response, Status, Subscribe,
                                     failure, success)
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.policy import DefaultPolicy
from cpimgw.store.records import ACTIVE, SubscriptionRecord
from cpimgw.store.redis import RedisStore
from cpimgw.testing import RecordingAdapter
from tests.interop.prosody import wait_until
from tests.interop.redis import RedisServer

FAST = ClusterSettings(heartbeat=0.1, node_timeout=0.6, claim_idle=0.3, forward_timeout=5.0, sweep_interval=0.1)


class UsersAdapter(RecordingAdapter):
    """Delivers to the users "logged in" here; others get recipient-unavailable (like PRIM's 408)."""

    def __init__(self) -> None:
        super().__init__("users", ["users.example"], reply=self.answer)
        self.here: set[str] = set()

    def answer(self, operation: object) -> Response:
        user = self.user_of(operation)
        if user in self.here:
            return success(operation, "delivered")  # type: ignore[arg-type]
        return failure(operation, Condition.UNAVAILABLE, f"{user} is not logged in here")  # type: ignore[arg-type]

    @staticmethod
    def user_of(operation: object) -> str:
        if isinstance(operation, Message):
            return operation.destination.user
        if isinstance(operation, Notify):
            return operation.watcher.user
        if isinstance(operation, Subscribe):
            return operation.target.user
        return ""

    def cluster_key(self, operation: object) -> str:
        return "users:" + self.user_of(operation)

    def login(self, user: str) -> None:
        self.here.add(user)
        self.bus.cluster.hold("users:" + user)


def message(to: str = "bob", message_id: str | None = None, text: bytes = b"hi") -> Message:
    return Message(im_uri("alice", "sender.example"), im_uri(to, "users.example"), Content("text/plain", text),
                   message_id=message_id, origin="sender")


class CodecTests(unittest.TestCase):
    def test_round_trip_every_field(self) -> None:
        for value in (
            attrs.evolve(message(message_id="m1", text=bytes(range(256))), conversation_id="c",
                         source_instance="desk", max_forwards=7),
            Subscribe(pres_uri("a", "x.example"), pres_uri("b", "y.example"), 60, origin="o",
                      watcher_instance="w"),
            Notify(pres_uri("a", "x.example"), pres_uri("b", "y.example"),
                   Content("application/pidf+xml", b"<presence/>", (("charset", "utf-8"),)), "sid"),
            Response("t1", Status.FAILURE, "why", Condition.TIMEOUT, 30, 408),
        ):
            self.assertEqual(codec.decode(codec.encode(value)), value)

    def test_bad_entries(self) -> None:
        for data in (b"", b"{}", b'{"type": "Exec", "fields": {}}', b'{"type": "Response", "fields": {"x": 1}}'):
            self.assertRaises(codec.CodecError, codec.decode, data)


class TwoNodeTests(unittest.TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self):
        self.redis = RedisServer()
        self.addCleanup(self.redis.cleanup)
        yield self.redis.start()
        self.a, self.users_a, self.sender_a = yield self.node("A")
        self.b, self.users_b, self.sender_b = yield self.node("B")

    @inlineCallbacks
    def node(self, name: str):  # type: ignore[no-untyped-def]
        store = RedisStore(self.redis.url, prefix="c:")
        bus = ClusterBus(reactor, store, DefaultPolicy(), node_id=name, cluster=FAST, duplicate_ttl=600)
        users = UsersAdapter()
        sender = RecordingAdapter("sender", ["sender.example"])
        for adapter in (users, sender):
            adapter.bus = bus
            bus.register(adapter)
        yield bus.start()
        self.addCleanup(lambda: bus.stop() if bus.running else None)
        return bus, users, sender

    @inlineCallbacks
    def test_operation_for_a_user_held_elsewhere_goes_to_that_node(self):
        self.users_b.login("bob")
        yield wait_until(lambda: "users:bob" in self.b.cluster.holding, what="hold")
        response = yield self.sender_a.inject(message("bob", "m-1"))
        self.assertEqual((response.status, response.reason), (Status.SUCCESS, "delivered"))
        self.assertEqual(len(self.users_b.of_type(Message)), 1)
        self.assertEqual(self.users_a.of_type(Message), [])
        self.assertEqual(self.a.cluster.counters.get("forwarded"), 1)
        self.assertEqual(self.b.cluster.counters.get("served"), 1)
        # Nobody holds carol: node A's own adapter answers (the native "not logged in").
        response = yield self.sender_a.inject(message("carol", "m-2"))
        self.assertIs(response.condition, Condition.UNAVAILABLE)
        self.assertEqual(len(self.users_a.of_type(Message)), 1)

    @inlineCallbacks
    def test_user_at_both_nodes_gets_it_at_both_once(self):
        """Agents of one user at two nodes: each node's agents get the operation once; success wins."""
        self.users_a.login("bob")
        self.users_b.login("bob")
        response = yield self.sender_a.inject(message("bob", "both"))
        self.assertIs(response.status, Status.SUCCESS)
        self.assertEqual((len(self.users_a.of_type(Message)), len(self.users_b.of_type(Message))), (1, 1))
        response = yield self.sender_b.inject(message("bob", "both-2"))
        self.assertEqual((len(self.users_a.of_type(Message)), len(self.users_b.of_type(Message))), (2, 2))

    @inlineCallbacks
    def test_same_message_id_at_both_nodes_is_delivered_once(self):
        self.users_b.login("bob")
        answers = yield gatherResults([self.sender_a.inject(message("bob", "same")),
                                       self.sender_b.inject(message("bob", "same"))])
        self.assertEqual([r.status for r in answers], [Status.SUCCESS, Status.SUCCESS])
        self.assertEqual(len(self.users_b.of_type(Message)), 1)
        self.assertEqual(self.a.counters["duplicates"] + self.b.counters["duplicates"], 1)

    @inlineCallbacks
    def test_dead_nodes_stream_is_taken_over(self):
        """B dies (no leave) with an entry in its stream: A claims it and answers it itself."""
        self.users_b.login("bob")
        yield wait_until(lambda: "users:bob" in self.b.cluster.holding, what="hold")
        # B stops reading (a process frozen, then killed): its loops and reader go, no leave.
        yield self.freeze(self.b)
        answer = self.sender_a.inject(message("bob", "while-dying"))
        answered: list[Response] = []
        answer.addCallback(lambda response: (answered.append(response), response)[1])
        yield wait_until(lambda: self.a.cluster.counters.get("forwarded") == 1, what="forward")
        self.assertEqual(answered, [])
        # B's heartbeat runs out; A takes over its stream and its own adapter answers the native failure.
        response = yield answer
        self.assertIs(response.condition, Condition.UNAVAILABLE)
        self.assertEqual(len(self.users_a.of_type(Message)), 1)
        self.assertEqual(self.a.cluster.counters.get("claimed"), 1)
        # Bob logs in at A: what is addressed to him is delivered there from now on.
        self.users_a.login("bob")
        response = yield self.sender_b.inject(message("bob", "after"))
        self.assertIs(response.status, Status.SUCCESS)

    def freeze(self, bus: ClusterBus):  # type: ignore[no-untyped-def]
        """A node stops reading and beating (a frozen process about to be killed): no leave."""
        node = bus.cluster
        node.running = False
        for loop in node._loops:
            loop.stop()
        node._loops = []
        reader, node._reader = node._reader, None
        return reader.disconnect()

    @inlineCallbacks
    def test_claimed_entry_is_not_delivered_twice_where_it_went(self):
        """Bob at A and B; B dies with A's copy in its stream: A takes it over without a second copy."""
        self.users_a.login("bob")
        self.users_b.login("bob")
        yield wait_until(lambda: "users:bob" in self.b.cluster.holding, what="hold")
        yield self.freeze(self.b)
        response = yield self.sender_a.inject(message("bob", "twice?"))
        self.assertIs(response.status, Status.SUCCESS)  # A's own agent took it; B's copy was claimed
        self.assertEqual(len(self.users_a.of_type(Message)), 1)
        self.assertEqual(self.a.cluster.counters.get("claimed"), 1)

    @inlineCallbacks
    def test_message_read_by_a_node_that_died_is_not_delivered_twice(self):
        """B read A's message, handed it to bob's agent and died before answering: it may have
        arrived, so A answers failure (timeout) instead of delivering it a second time."""
        from twisted.internet.defer import Deferred

        self.users_b.login("bob")
        yield wait_until(lambda: "users:bob" in self.b.cluster.holding, what="hold")
        self.users_b.reply = lambda operation: Deferred()  # bob's agent at B never answers
        answer = self.sender_a.inject(message("bob", "maybe"))
        yield wait_until(lambda: self.users_b.of_type(Message), what="B to read and deliver")
        yield self.freeze(self.b)
        self.users_a.login("bob")  # bob's agent logs in again, at A
        response = yield answer
        self.assertIs(response.condition, Condition.TIMEOUT)
        self.assertIn("may have arrived", response.reason)
        self.assertEqual(self.users_a.of_type(Message), [])
        self.assertEqual(self.a.cluster.counters.get("uncertain"), 1)

    @inlineCallbacks
    def test_clean_leave_hands_the_stream_over_at_once(self):
        self.users_b.login("bob")
        yield wait_until(lambda: "users:bob" in self.b.cluster.holding, what="hold")
        yield self.b.cluster.leave()
        nodes = yield self.a.cluster.nodes()
        self.assertEqual((nodes["B"]["state"], nodes["B"]["alive"]), ("left", False))
        response = yield self.sender_a.inject(message("bob", "after-leave"))
        self.assertIs(response.condition, Condition.UNAVAILABLE)  # nobody holds bob any more
        self.assertEqual(len(self.users_a.of_type(Message)), 1)

    @inlineCallbacks
    def test_one_node_sweeps_expired_subscriptions(self):
        now = reactor.seconds()
        record = SubscriptionRecord("sub-1", "pres:bob@users.example", "pres:zed@sender.example", "users", None,
                                    now + 0.3, ACTIVE, now, None, "sender")
        yield self.a.store.put_subscription(record)
        yield wait_until(lambda: self.a.counters["subscriptions_expired"] + self.b.counters["subscriptions_expired"]
                         >= 1, what="expiry")
        self.assertIsNone((yield self.b.store.get_subscription("sub-1")))
        self.assertEqual(self.a.counters["subscriptions_expired"] + self.b.counters["subscriptions_expired"], 1)
        holders = [bus for bus in (self.a, self.b) if "sweep" in bus.cluster.leases]
        self.assertEqual(len(holders), 1)
        # The final notify went to the watcher's adapter once, through the node that swept.
        yield wait_until(lambda: self.users_a.of_type(Notify) + self.users_b.of_type(Notify), what="final notify")
        yield self.a.store.get_subscription("sub-1")  # a round trip to Redis: a second sweep would show by now
        finals = self.users_a.of_type(Notify) + self.users_b.of_type(Notify)
        self.assertEqual(len(finals), 1)
        # A publication that runs out is withdrawn once, by the sweeper, not by a timer of its own node.
        yield self.sender_a.inject(Publish(pres_uri("zed", "sender.example"),
                                           Content("application/pidf+xml", b"<presence/>"), expires=1))
        self.assertEqual(self.a.presence.published_expiries(), {})
        yield wait_until(lambda: self.a.counters["presence_expired"] + self.b.counters["presence_expired"] >= 1,
                         what="publication expiry")
        self.assertEqual((yield self.b.store.get_presence("pres:zed@sender.example")), {})
        self.assertEqual(self.a.counters["presence_expired"] + self.b.counters["presence_expired"], 1)
        # The sweeper leaves: the other node takes the lease over.
        sweeper, other = (self.a, self.b) if holders[0] is self.a else (self.b, self.a)
        yield sweeper.cluster.leave()
        yield wait_until(lambda: "sweep" in other.cluster.leases, what="lease takeover")
