"""Tests of cpimgw.testing, the harness adapter authors use."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from cpimgw.bus import Bus
from cpimgw.cpim.operations import (
    Condition,
    Content,
    Message,
    Notify,
    Response,
    Status,
    Subscribe,
    failure,
)
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.interfaces import IAdapter, IMessaging, IPresence
from cpimgw.policy import DefaultPolicy
from cpimgw.store.memory import MemoryStore
from cpimgw.testing import BusFixture, RecordingAdapter, make_bus, settle

HELLO = Message(im_uri("a", "alpha.example"), im_uri("b", "beta.example"), Content("text/plain", b"hello"))


class RecordingAdapterTests(unittest.TestCase):
    def test_interfaces(self) -> None:
        adapter = RecordingAdapter("rec", ["Rec.Example"])
        self.assertTrue(verifyObject(IAdapter, adapter))
        self.assertTrue(IService.providedBy(adapter))
        self.assertTrue(IMessaging.providedBy(adapter))
        self.assertTrue(IPresence.providedBy(adapter))
        self.assertEqual(adapter.domains, ("rec.example",))

    def test_chosen_capabilities(self) -> None:
        only_im = RecordingAdapter("im", ["im.example"], capabilities=(IMessaging,))
        self.assertTrue(IMessaging.providedBy(only_im))
        self.assertFalse(IPresence.providedBy(only_im))
        # Per instance: another adapter keeps its own.
        self.assertTrue(IPresence.providedBy(RecordingAdapter("x", ["x.example"])))

    def test_records_and_replies(self) -> None:
        adapter = RecordingAdapter("rec", ["rec.example"])
        response = self.successResultOf(adapter.deliver(HELLO))
        self.assertEqual(response, Response(HELLO.trans_id, Status.SUCCESS))
        self.assertEqual(adapter.delivered, [HELLO])
        self.assertEqual(adapter.of_type(Message), [HELLO])
        self.assertEqual(adapter.of_type(Notify), [])
        adapter.reply = lambda op: failure(op, Condition.UNAVAILABLE, "away")
        self.assertIs(self.successResultOf(adapter.deliver(HELLO)).condition, Condition.UNAVAILABLE)
        adapter.clear()
        self.assertEqual(adapter.delivered, [])

    def test_deferred_reply(self) -> None:
        later: Deferred = Deferred()
        adapter = RecordingAdapter("rec", ["rec.example"], reply=lambda op: later)
        result = adapter.deliver(HELLO)
        self.assertNoResult(result)
        later.callback(Response(HELLO.trans_id, Status.INDETERMINANT))
        self.assertIs(self.successResultOf(result).status, Status.INDETERMINANT)

    def test_wait_for(self) -> None:
        adapter = RecordingAdapter("rec", ["rec.example"])
        adapter.deliver(HELLO)
        already = adapter.wait_for()
        self.assertEqual(self.successResultOf(already), [HELLO])
        two_notifies = adapter.wait_for(lambda op: isinstance(op, Notify), count=2)
        self.assertNoResult(two_notifies)
        first = Notify(pres_uri("a", "x.example"), pres_uri("b", "y.example"), None, subscript_id="s")
        second = Notify(pres_uri("a", "x.example"), pres_uri("b", "y.example"), None, subscript_id="t")
        adapter.deliver(first)
        self.assertNoResult(two_notifies)
        adapter.deliver(HELLO)
        adapter.deliver(second)
        self.assertEqual(self.successResultOf(two_notifies), [first, second])

    def test_inject_needs_a_bus(self) -> None:
        self.assertRaises(RuntimeError, RecordingAdapter("rec", ["rec.example"]).inject, HELLO)

    def test_service(self) -> None:
        adapter = RecordingAdapter("rec", ["rec.example"])
        adapter.startService()
        self.assertTrue(adapter.running)
        adapter.stopService()
        self.assertFalse(adapter.running)


class MakeBusTests(unittest.TestCase):
    def test_defaults(self) -> None:
        bus = make_bus()
        self.assertIsInstance(bus, Bus)
        self.assertIsInstance(bus.reactor, MemoryReactorClock)
        self.assertIsInstance(bus.store, MemoryStore)
        self.assertIsInstance(bus.policy, DefaultPolicy)
        self.assertTrue(bus.running)
        self.assertTrue(bus.store.opened)
        self.successResultOf(bus.started)
        self.successResultOf(bus.stop())

    def test_given_parts_and_kwargs(self) -> None:
        store, policy = MemoryStore(), DefaultPolicy(message="deny")
        bus = make_bus(store=store, policy=policy, routes={"x.example": "alpha"}, max_duration=60)
        self.assertIs(bus.store, store)
        self.assertIs(bus.policy, policy)
        self.assertEqual(bus.routes.lookup("x.example"), "alpha")
        self.assertEqual(bus.presence.max_duration, 60)
        self.successResultOf(bus.stop())


class FixtureTests(BusFixture, unittest.TestCase):
    def test_fixture(self) -> None:
        self.assertEqual((self.alpha.name, self.alpha.domains), ("alpha", ("alpha.example",)))
        self.assertEqual((self.beta.name, self.beta.domains), ("beta", ("beta.example",)))
        self.assertEqual(set(self.bus.adapters), {"alpha", "beta"})
        self.assertTrue(self.alpha.running)

    def test_inject_sets_origin(self) -> None:
        response = self.successResultOf(self.alpha.inject(HELLO))
        self.assertIs(response.status, Status.SUCCESS)
        [delivered] = self.beta.delivered
        self.assertEqual(delivered.origin, "alpha")
        self.assertEqual(delivered.max_forwards, HELLO.max_forwards - 1)

    def test_subscribe_then_settle(self) -> None:
        subscribe = Subscribe(pres_uri("a", "alpha.example"), pres_uri("b", "beta.example"), 60)
        self.successResultOf(self.alpha.inject(subscribe))
        self.assertEqual(self.alpha.of_type(Notify), [])
        settle(self.bus)
        [notify] = self.alpha.of_type(Notify)
        self.assertEqual(notify.subscript_id, subscribe.subscript_id)
