"""Tests of cpimgw.presence: RFC 3859 traces through the bus (digest §3.3)."""

from __future__ import annotations

import os

import attrs
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from cpimgw.bus import Bus
from cpimgw.cpim import pidf
from cpimgw.cpim.operations import (
    MEDIA_PIDF,
    Condition,
    Content,
    Notify,
    Publish,
    Response,
    Status,
    Subscribe,
    SubscriptionState,
    TerminationReason,
    failure,
    indeterminant,
    success,
)
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.interfaces import IPresenceService
from cpimgw.policy import DefaultPolicy
from cpimgw.presence import compose_documents, empty_pidf
from cpimgw.store.records import ACTIVE, PENDING, document_digest
from cpimgw.store.sqlite import SQLiteStore
from cpimgw.testing import BusFixture, RecordingAdapter, attach, make_bus, settle

ALICE = pres_uri("alice", "alpha.example")
CAROL = pres_uri("carol", "gamma.example")
BOB = pres_uri("bob", "beta.example")


def pidf_doc(entity: str, tuple_id: str, basic: str = "open", spacing: str = "") -> Content:
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='{entity}'>{spacing}"
        f"<tuple id='{tuple_id}'><status><basic>{basic}</basic></status>"
        f"<contact>im:{entity[5:]}</contact></tuple></presence>\n"
    ).encode()
    return Content(MEDIA_PIDF, body)


OPEN = pidf_doc("pres:bob@beta.example", "desk", "open", spacing="  \n ")
CLOSED = pidf_doc("pres:bob@beta.example", "desk", "closed")
PHONE = pidf_doc("pres:bob@beta.example", "phone", "open")


class PresenceFixture(BusFixture):
    def make_fixture_bus(self) -> Bus:
        return make_bus(policy=DefaultPolicy(max_duration=3600))

    def setUp(self) -> None:
        super().setUp()
        self.events: list[str] = []
        self.alpha.reply = self.record_reply("alpha")
        self.beta.reply = self.record_reply("beta")

    def record_reply(self, name: str):  # type: ignore[no-untyped-def]
        def reply(op: object) -> Response:
            self.events.append(f"{name}:{type(op).__name__}")
            return success(op)  # type: ignore[arg-type]

        return reply

    def subscribe(self, duration: int = 86400, watcher=ALICE, source=None, **kw):  # type: ignore[no-untyped-def]
        source = source or self.alpha
        op = Subscribe(watcher, BOB, duration, **kw)
        d = source.inject(op)
        d.addCallback(lambda response: (self.events.append("response"), response)[1])
        response = self.successResultOf(d)
        settle(self.bus)
        return op, response

    def publish(self, document: Content, instance: str | None = None) -> Response:
        response = self.successResultOf(self.beta.inject(Publish(BOB, document, instance=instance)))
        settle(self.bus)
        return response

    def notifies(self, adapter: RecordingAdapter) -> list[Notify]:
        return adapter.of_type(Notify)

    def record(self, subscript_id: str):  # type: ignore[no-untyped-def]
        return self.successResultOf(self.bus.store.get_subscription(subscript_id))


class SubscribeTests(PresenceFixture, unittest.TestCase):
    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IPresenceService, self.bus.presence))

    def test_capped_duration_then_immediate_notify(self) -> None:
        """RFC 3859 example: subscribe for 86400 s, answered 3600, then at once a notify."""
        op, response = self.subscribe(86400)
        self.assertEqual(response, Response(op.trans_id, Status.SUCCESS, duration=3600))
        upstream = self.beta.of_type(Subscribe)
        self.assertEqual(upstream, [attrs.evolve(op, duration=3600, max_forwards=op.max_forwards - 1,
                                                 origin="alpha")])
        self.assertEqual(self.events, ["beta:Subscribe", "response", "alpha:Notify"])
        [notify] = self.notifies(self.alpha)
        self.assertEqual((notify.watcher, notify.target, notify.subscript_id), (ALICE, BOB, op.subscript_id))
        # Nothing known of bob yet, but beta said yes: active, with a document that has no tuple
        # (RFC 3863 §4.1), so every watcher hears at once that the subscription is on.
        self.assertIs(notify.state, SubscriptionState.ACTIVE)
        self.assertEqual(notify.presence, empty_pidf(BOB))
        self.assertEqual(pidf.parse_pidf(notify.presence.body).tuples, ())
        self.assertEqual(notify.expires, 3600)
        self.assertNotEqual(notify.trans_id, op.trans_id)
        record = self.record(op.subscript_id)
        self.assertEqual((record.watcher, record.target, record.state, record.expires_at),
                         ("pres:alice@alpha.example", "pres:bob@beta.example", ACTIVE, 3600.0))
        self.assertEqual((record.watcher_origin, record.target_origin), ("alpha", "beta"))

    def test_immediate_notify_carries_known_state_unchanged(self) -> None:
        self.publish(OPEN)
        self.subscribe(600)
        [notify] = self.notifies(self.alpha)
        self.assertIs(notify.state, SubscriptionState.ACTIVE)
        self.assertEqual(notify.presence, OPEN)
        self.assertEqual(notify.presence.body, OPEN.body)
        self.assertEqual(notify.expires, 600)

    def test_im_uris_are_converted(self) -> None:
        op = Subscribe(im_uri("alice", "ALPHA.example"), im_uri("bob", "beta.example"), 60)
        response = self.successResultOf(self.alpha.inject(op))
        self.assertIs(response.status, Status.SUCCESS)
        [upstream] = self.beta.of_type(Subscribe)
        self.assertEqual((upstream.watcher, upstream.target), (ALICE, BOB))

    def test_invalid_watcher(self) -> None:
        op = Subscribe(pres_uri("", "alpha.example"), BOB, 60)
        response = self.successResultOf(self.alpha.inject(op))
        self.assertIs(response.condition, Condition.BAD_REQUEST)
        self.assertIn("watcher", response.reason)
        self.assertEqual(self.beta.delivered, [])

    def test_loop(self) -> None:
        response = self.successResultOf(self.alpha.inject(Subscribe(ALICE, BOB, 60, max_forwards=0)))
        self.assertIs(response.condition, Condition.LOOP)

    def test_no_route(self) -> None:
        op = Subscribe(ALICE, pres_uri("x", "nowhere.example"), 60)
        response = self.successResultOf(self.alpha.inject(op))
        self.assertIs(response.condition, Condition.NO_ROUTE)
        self.assertEqual(response.reason, "no route to domain nowhere.example")
        self.assertEqual(self.successResultOf(self.bus.store.subscriptions()), [])

    def test_second_subscription_of_the_pair_refused(self) -> None:
        self.subscribe(600)
        second = Subscribe(ALICE, BOB, 600)
        response = self.successResultOf(self.alpha.inject(second))
        self.assertIs(response.condition, Condition.BAD_REQUEST)
        self.assertIn("already has subscription", response.reason)
        self.assertEqual(len(self.beta.of_type(Subscribe)), 1)
        self.assertIsNone(self.record(second.subscript_id))

    def test_subscript_id_of_another_pair_refused(self) -> None:
        op, _ = self.subscribe(600)
        other = Subscribe(CAROL, BOB, 600, subscript_id=op.subscript_id)
        response = self.successResultOf(self.alpha.inject(other))
        self.assertIs(response.condition, Condition.BAD_REQUEST)
        self.assertIn("belongs to another watcher/target pair", response.reason)

    def test_refresh(self) -> None:
        op, _ = self.subscribe(3600)
        self.reactor.advance(3000)
        refresh = Subscribe(ALICE, BOB, 3600, subscript_id=op.subscript_id)
        response = self.successResultOf(self.alpha.inject(refresh))
        settle(self.bus)
        self.assertEqual(response.duration, 3600)
        self.assertEqual(self.record(op.subscript_id).expires_at, 6600.0)
        self.assertEqual(len(self.beta.of_type(Subscribe)), 2)  # refreshed upstream too
        self.assertEqual(len(self.notifies(self.alpha)), 2)  # a notify follows every response
        self.reactor.advance(600)  # past the first expiry: still running
        self.assertIsNotNone(self.record(op.subscript_id))
        self.reactor.advance(3000)
        self.assertIsNone(self.record(op.subscript_id))
        self.assertIs(self.notifies(self.alpha)[-1].state, SubscriptionState.TERMINATED)

    def test_cancel(self) -> None:
        self.publish(OPEN)
        op, _ = self.subscribe(600)
        self.events.clear()
        cancel = Subscribe(ALICE, BOB, 0, subscript_id=op.subscript_id)
        response = self.successResultOf(self.alpha.inject(cancel).addCallback(
            lambda r: (self.events.append("response"), r)[1]))
        settle(self.bus)
        self.assertEqual(response, Response(cancel.trans_id, Status.SUCCESS, duration=0))
        self.assertEqual(self.events, ["beta:Subscribe", "response", "alpha:Notify"])
        upstream = self.beta.of_type(Subscribe)[-1]
        self.assertEqual((upstream.duration, upstream.subscript_id), (0, op.subscript_id))
        final = self.notifies(self.alpha)[-1]
        self.assertIs(final.state, SubscriptionState.TERMINATED)
        self.assertIsNone(final.reason)  # the watcher ended it: no RFC 6665 reason
        self.assertEqual(final.presence, OPEN)
        self.assertIsNone(self.record(op.subscript_id))
        self.assertEqual(self.reactor.getDelayedCalls()[0].getTime(), 3600)  # only the purge is left
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)

    def test_fetch(self) -> None:
        self.publish(OPEN)
        fetch = Subscribe(ALICE, BOB, 0)
        response = self.successResultOf(self.alpha.inject(fetch).addCallback(
            lambda r: (self.events.append("response"), r)[1]))
        settle(self.bus)
        self.assertEqual(response, Response(fetch.trans_id, Status.SUCCESS, duration=0))
        self.assertEqual(self.events, ["beta:Subscribe", "response", "alpha:Notify"])
        [notify] = self.notifies(self.alpha)
        self.assertIs(notify.state, SubscriptionState.TERMINATED)
        self.assertIs(notify.reason, TerminationReason.TIMEOUT)
        self.assertEqual(notify.presence, OPEN)
        self.assertEqual(notify.subscript_id, fetch.subscript_id)
        self.assertIsNone(self.record(fetch.subscript_id))
        # A native answer to the fetch is still relayed within the window...
        late = Notify(ALICE, BOB, CLOSED, subscript_id=fetch.subscript_id, state=SubscriptionState.TERMINATED)
        self.assertIs(self.successResultOf(self.beta.inject(late)).status, Status.SUCCESS)
        self.assertEqual(self.notifies(self.alpha)[-1].presence, CLOSED)
        # ...but not after it.
        self.reactor.advance(60)
        again = self.successResultOf(self.beta.inject(late))
        self.assertIs(again.condition, Condition.NO_SUBSCRIPTION)

    def test_expiry(self) -> None:
        op, _ = self.subscribe(3600)
        self.reactor.advance(3599)
        self.assertEqual(len(self.notifies(self.alpha)), 1)
        self.reactor.advance(1)
        final = self.notifies(self.alpha)[-1]
        self.assertIs(final.state, SubscriptionState.TERMINATED)
        self.assertIs(final.reason, TerminationReason.TIMEOUT)
        self.assertIsNone(final.presence)
        upstream = self.beta.of_type(Subscribe)[-1]
        self.assertEqual((upstream.duration, upstream.subscript_id, upstream.watcher), (0, op.subscript_id, ALICE))
        self.assertIsNone(self.record(op.subscript_id))
        self.assertEqual(self.bus.counters["subscriptions_expired"], 1)

    def test_policy_refusal(self) -> None:
        self.bus.policy = DefaultPolicy(presence="same-domain")
        op = Subscribe(ALICE, BOB, 600)
        response = self.successResultOf(self.alpha.inject(op))
        settle(self.bus)
        self.assertIs(response.condition, Condition.FORBIDDEN)
        self.assertIn("presence=same-domain", response.reason)
        self.assertEqual(self.beta.delivered, [])
        self.assertEqual(self.alpha.delivered, [])
        self.assertEqual(self.bus.counters["refused"], 1)

    def test_target_network_refuses(self) -> None:
        self.beta.reply = lambda op: failure(op, Condition.FORBIDDEN, "bob said no", native_code=403)
        op = Subscribe(ALICE, BOB, 600)
        response = self.successResultOf(self.alpha.inject(op))
        settle(self.bus)
        self.assertEqual(response, Response(op.trans_id, Status.FAILURE, "bob said no", Condition.FORBIDDEN,
                                            None, 403))
        self.assertIsNone(self.record(op.subscript_id))
        self.assertEqual(self.alpha.delivered, [])
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)  # only the purge

    def test_pending_authorisation_hides_known_presence(self) -> None:
        self.publish(OPEN)
        self.beta.reply = lambda op: indeterminant(op, "awaiting approval", native_code=202)
        op, response = self.subscribe(600)
        self.assertIs(response.status, Status.SUCCESS)
        self.assertEqual(self.record(op.subscript_id).state, PENDING)
        [first] = self.notifies(self.alpha)
        self.assertIs(first.state, SubscriptionState.PENDING)
        self.assertIsNone(first.presence)
        # A publish does not reach a pending watcher...
        self.publish(CLOSED)
        self.assertEqual(len(self.notifies(self.alpha)), 1)
        # ...the target network's approval (a notify) does.
        approve = Notify(ALICE, BOB, OPEN, subscript_id=op.subscript_id, origin="beta")
        self.assertIs(self.successResultOf(self.beta.inject(approve)).status, Status.SUCCESS)
        latest = self.notifies(self.alpha)[-1]
        self.assertIs(latest.state, SubscriptionState.ACTIVE)
        self.assertEqual(self.record(op.subscript_id).state, ACTIVE)

    def test_first_notify_of_unpublished_presentity_is_active(self) -> None:
        """RFC 3859 §4.4: response, then at once a notify with the current state -- even when that is nothing."""
        op, response = self.subscribe(600)
        self.assertIs(response.status, Status.SUCCESS)
        self.assertEqual(self.events, ["beta:Subscribe", "response", "alpha:Notify"])
        [first] = self.notifies(self.alpha)
        self.assertEqual((first.state, first.presence, first.expires, first.subscript_id),
                         (SubscriptionState.ACTIVE, empty_pidf(BOB), 600, op.subscript_id))
        self.assertEqual(first.presence.body, b"<?xml version='1.0' encoding='UTF-8'?>\n<presence xmlns="
                                              b"'urn:ietf:params:xml:ns:pidf' entity='pres:bob@beta.example'/>\n")
        # The first publish then reaches the watcher (its digest differs from the empty document's).
        self.publish(OPEN)
        self.assertEqual(self.notifies(self.alpha)[-1].presence, OPEN)
        self.assertEqual(len(self.notifies(self.alpha)), 2)

    def test_approval_without_document_gives_current_state(self) -> None:
        """A pending subscription made active by a notify with no document (a SIP NOTIFY without a body)."""
        self.beta.reply = lambda op: indeterminant(op, "awaiting approval", native_code=202)
        op, _ = self.subscribe(600)
        [first] = self.notifies(self.alpha)
        self.assertEqual((first.state, first.presence), (SubscriptionState.PENDING, None))
        approve = Notify(ALICE, BOB, None, subscript_id=op.subscript_id, origin="beta")
        self.assertIs(self.successResultOf(self.beta.inject(approve)).status, Status.SUCCESS)
        settle(self.bus)
        [_, second] = self.notifies(self.alpha)
        self.assertEqual((second.state, second.presence), (SubscriptionState.ACTIVE, empty_pidf(BOB)))
        self.assertEqual(self.record(op.subscript_id).state, ACTIVE)
        # The same notify again changes nothing: no second notify.
        again = Notify(ALICE, BOB, None, subscript_id=op.subscript_id, origin="beta")
        self.successResultOf(self.beta.inject(again))
        settle(self.bus)
        self.assertEqual(len(self.notifies(self.alpha)), 2)

    def test_approval_without_document_gives_published_state(self) -> None:
        self.publish(OPEN)
        self.beta.reply = lambda op: indeterminant(op, "awaiting approval", native_code=202)
        op, _ = self.subscribe(600)
        approve = Notify(ALICE, BOB, None, subscript_id=op.subscript_id, origin="beta")
        self.successResultOf(self.beta.inject(approve))
        settle(self.bus)
        latest = self.notifies(self.alpha)[-1]
        self.assertEqual((latest.state, latest.presence), (SubscriptionState.ACTIVE, OPEN))

    def test_target_terminates(self) -> None:
        op, _ = self.subscribe(600)
        end = Notify(ALICE, BOB, None, subscript_id=op.subscript_id, state=SubscriptionState.TERMINATED,
                     reason=TerminationReason.REJECTED)
        self.assertIs(self.successResultOf(self.beta.inject(end)).status, Status.SUCCESS)
        final = self.notifies(self.alpha)[-1]
        self.assertEqual((final.state, final.reason), (SubscriptionState.TERMINATED, TerminationReason.REJECTED))
        self.assertIsNone(self.record(op.subscript_id))
        self.reactor.advance(600)
        self.assertEqual(len(self.notifies(self.alpha)), 2)  # no expiry notify after the end

    def test_notify_for_unknown_subscription(self) -> None:
        response = self.successResultOf(self.beta.inject(Notify(ALICE, BOB, OPEN, subscript_id="nope")))
        self.assertIs(response.condition, Condition.NO_SUBSCRIPTION)

    def test_notify_for_another_pair(self) -> None:
        op, _ = self.subscribe(600)
        response = self.successResultOf(self.beta.inject(Notify(CAROL, BOB, OPEN, subscript_id=op.subscript_id)))
        self.assertIs(response.condition, Condition.BAD_REQUEST)

    def test_watcher_gone_ends_subscription(self) -> None:
        op, _ = self.subscribe(600)
        self.alpha.reply = lambda o: failure(o, Condition.NO_SUBSCRIPTION, "481")
        self.publish(OPEN)
        self.assertIsNone(self.record(op.subscript_id))
        upstream = self.beta.of_type(Subscribe)[-1]
        self.assertEqual((upstream.duration, upstream.subscript_id), (0, op.subscript_id))

    def test_target_without_presence_capability_served_from_published_state(self) -> None:
        mute = RecordingAdapter("mute", ["mute.example"], capabilities=())
        attach(self.bus, mute)
        dave = pres_uri("dave", "mute.example")
        self.successResultOf(mute.inject(Publish(dave, OPEN)))
        op = Subscribe(ALICE, dave, 60)
        response = self.successResultOf(self.alpha.inject(op))
        settle(self.bus)
        self.assertEqual(response.duration, 60)
        self.assertEqual(mute.delivered, [])
        [notify] = self.notifies(self.alpha)
        self.assertEqual((notify.state, notify.presence), (SubscriptionState.ACTIVE, OPEN))
        self.assertEqual(self.record(op.subscript_id).target_origin, "mute")


class FanOutTests(PresenceFixture, unittest.TestCase):
    def setUp(self) -> None:
        super().setUp()
        self.gamma = RecordingAdapter("gamma", ["gamma.example"], reply=self.record_reply("gamma"))
        attach(self.bus, self.gamma)

    def test_change_fans_out_to_two_adapters_and_unchanged_is_not_resent(self) -> None:
        a, _ = self.subscribe(600)
        c, _ = self.subscribe(600, watcher=CAROL, source=self.gamma)
        self.assertEqual(len(self.notifies(self.alpha)), 1)
        self.assertEqual(len(self.notifies(self.gamma)), 1)
        self.publish(OPEN, instance="desk")
        for adapter, sub in ((self.alpha, a), (self.gamma, c)):
            latest = self.notifies(adapter)[-1]
            self.assertEqual((latest.presence, latest.state, latest.subscript_id),
                             (OPEN, SubscriptionState.ACTIVE, sub.subscript_id))
        self.assertEqual(self.record(a.subscript_id).last_document_digest, document_digest(OPEN))
        suppressed = self.bus.counters["presence_suppressed"]
        self.publish(OPEN, instance="desk")
        self.assertEqual(len(self.notifies(self.alpha)), 2)
        self.assertEqual(len(self.notifies(self.gamma)), 2)
        self.assertEqual(self.bus.counters["presence_suppressed"], suppressed + 2)
        self.publish(CLOSED, instance="desk")
        self.assertEqual(self.notifies(self.alpha)[-1].presence, CLOSED)
        self.assertEqual(self.notifies(self.gamma)[-1].presence, CLOSED)

    def test_fan_out_writes_all_digests_in_one_store_call(self) -> None:
        subs = [self.subscribe(600, watcher=pres_uri(f"w{i}", "alpha.example"))[0] for i in range(5)]
        calls: list[dict[str, str]] = []
        original = self.store.set_digests

        def counting(digests):  # type: ignore[no-untyped-def]
            calls.append(dict(digests))
            return original(digests)

        self.store.set_digests = counting  # type: ignore[method-assign]
        puts: list[object] = []
        self.patch(self.store, "put_subscription", lambda record: puts.append(record))
        self.publish(OPEN, instance="desk")
        self.assertEqual(calls, [{sub.subscript_id: document_digest(OPEN) for sub in subs}])
        self.assertEqual(puts, [])
        latest = self.notifies(self.alpha)[-5:]
        self.assertEqual(sorted(n.subscript_id for n in latest), sorted(sub.subscript_id for sub in subs))
        self.assertEqual({n.expires for n in latest}, {600})
        self.assertEqual(len({n.trans_id for n in latest}), 5)
        self.assertEqual({n.target for n in latest}, {BOB})

    def test_fan_out_waits_for_adapters_that_answer_later(self) -> None:
        from twisted.internet.defer import Deferred as _Deferred

        a, _ = self.subscribe(600)
        c, _ = self.subscribe(600, watcher=CAROL, source=self.gamma)
        later: list[_Deferred] = []

        def slow(op):  # type: ignore[no-untyped-def]
            later.append(_Deferred())
            return later[-1]

        self.gamma.reply = slow
        published = self.beta.inject(Publish(BOB, OPEN, instance="desk"))
        self.assertNoResult(published)
        self.assertEqual(self.notifies(self.alpha)[-1].presence, OPEN)
        self.assertEqual(self.notifies(self.gamma)[-1].presence, OPEN)
        later[0].callback(failure(self.notifies(self.gamma)[-1], Condition.GONE, "gone"))
        self.assertIs(self.successResultOf(published).status, Status.SUCCESS)
        self.assertIsNotNone(self.record(a.subscript_id))
        self.assertIsNone(self.record(c.subscript_id))  # the watcher's network said it is gone

    def test_fan_out_to_adapter_without_presence_capability_is_counted(self) -> None:
        a, _ = self.subscribe(600)
        from zope.interface import noLongerProvides

        from cpimgw.interfaces import IPresence

        noLongerProvides(self.alpha, IPresence)
        self.publish(OPEN, instance="desk")
        self.assertEqual(self.bus.counters["notify_undeliverable"], 1)
        self.assertNotEqual(self.record(a.subscript_id).last_document_digest, document_digest(OPEN))

    def test_fan_out_to_unregistered_origin_uses_the_route(self) -> None:
        c, _ = self.subscribe(600, watcher=CAROL, source=self.gamma)
        self.bus.unregister(self.gamma)
        other = RecordingAdapter("gamma2", ["gamma.example"])
        attach(self.bus, other)
        self.publish(OPEN, instance="desk")
        [notify] = other.of_type(Notify)
        self.assertEqual((notify.subscript_id, notify.presence), (c.subscript_id, OPEN))
        self.assertEqual(self.record(c.subscript_id).last_document_digest, document_digest(OPEN))

    def test_instances_compose_and_single_instance_is_untouched(self) -> None:
        self.subscribe(600)
        self.publish(OPEN, instance="desk")
        self.assertEqual(self.notifies(self.alpha)[-1].presence.body, OPEN.body)
        self.publish(PHONE, instance="phone")
        composed = self.notifies(self.alpha)[-1].presence
        self.assertEqual(composed.media_type, MEDIA_PIDF)
        document = pidf.parse_pidf(composed.body)
        self.assertEqual([t.id for t in document.tuples], ["desk", "phone"])
        self.assertEqual(str(document.entity), "pres:bob@beta.example")
        # Withdrawing one instance leaves the other's octets as they were.
        self.successResultOf(self.beta.inject(Publish(BOB, PHONE, instance="phone", expires=0)))
        self.assertEqual(self.notifies(self.alpha)[-1].presence.body, OPEN.body)

    def test_compose_documents(self) -> None:
        self.assertIsNone(compose_documents({}))
        self.assertIs(compose_documents({"a": OPEN}, BOB), OPEN)
        text = Content("text/plain", b"away")
        self.assertIs(compose_documents({"a": OPEN, "b": text}, BOB), text)
        broken = Content(MEDIA_PIDF, b"<not-closed")
        self.assertIs(compose_documents({"a": OPEN, "b": broken}, BOB), broken)


class RestartTests(unittest.TestCase):
    """Subscriptions reloaded from SQLite expire at the right time after a restart."""

    @inlineCallbacks
    def start_bus(self, clock: Clock, path: str):  # type: ignore[no-untyped-def]
        bus = Bus(clock, SQLiteStore(path), DefaultPolicy(max_duration=3600))
        yield bus.start()
        alpha, beta = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
        attach(bus, alpha, beta)
        return bus, alpha, beta

    def delivered(self, adapter: RecordingAdapter, kind: type):  # type: ignore[no-untyped-def]
        """Wait (bounded) until ``adapter`` got an operation of ``kind``; SQLite answers from its thread."""
        from twisted.internet import reactor

        return adapter.wait_for(lambda op: isinstance(op, kind)).addTimeout(10, reactor)

    @inlineCallbacks
    def test_subscription_reloaded_and_expires_on_time(self):
        path = os.path.abspath(self.mktemp()) + ".sqlite"
        clock = Clock()
        bus, alpha, beta = yield self.start_bus(clock, path)
        op = Subscribe(ALICE, BOB, 86400)
        response = yield alpha.inject(op)
        self.assertEqual(response.duration, 3600)
        yield self.delivered(alpha, Notify)
        clock.advance(100)
        yield bus.stop()

        clock.advance(900)  # down for 15 minutes: now t=1000
        bus2, alpha2, beta2 = yield self.start_bus(clock, path)
        self.assertEqual(bus2.presence.armed(), {op.subscript_id: 3600.0})
        [record] = yield bus2.presence.subscriptions_of(BOB)
        self.assertEqual((record.watcher, record.watcher_origin, record.expires_at), (str(ALICE), "alpha", 3600.0))
        clock.advance(2599)
        self.assertEqual(alpha2.delivered, [])
        clock.advance(1)
        yield self.delivered(beta2, Subscribe)
        [final] = alpha2.of_type(Notify)
        self.assertEqual((final.state, final.reason, final.subscript_id),
                         (SubscriptionState.TERMINATED, TerminationReason.TIMEOUT, op.subscript_id))
        [cancel] = beta2.of_type(Subscribe)
        self.assertEqual((cancel.duration, cancel.subscript_id), (0, op.subscript_id))
        self.assertEqual((yield bus2.store.subscriptions()), [])
        yield bus2.stop()

    @inlineCallbacks
    def test_publish_expiry_survives_restart(self):
        path = os.path.abspath(self.mktemp()) + ".sqlite"
        clock = Clock()
        bus, alpha, beta = yield self.start_bus(clock, path)
        yield beta.inject(Publish(BOB, OPEN, instance="desk", expires=100))
        yield bus.stop()
        clock.advance(40)
        bus2 = Bus(clock, SQLiteStore(path), DefaultPolicy(max_duration=3600))
        alpha2, beta2 = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
        attach(bus2, alpha2, beta2)
        yield bus2.start()
        self.assertEqual(bus2.presence.published_expiries(), {("pres:bob@beta.example", "desk"): 100.0})
        yield alpha2.inject(Subscribe(ALICE, BOB, 600))
        yield self.delivered(alpha2, Notify)
        alpha2.clear()
        clock.advance(60)
        [notify] = yield self.delivered(alpha2, Notify)
        self.assertEqual(pidf.parse_pidf(notify.presence.body).tuples, ())
        self.assertEqual((yield bus2.store.get_presence(BOB)), {})
        self.assertEqual(bus2.counters["presence_expired"], 1)
        yield bus2.stop()

    @inlineCallbacks
    def test_expired_while_down_terminates_at_start(self):
        path = os.path.abspath(self.mktemp()) + ".sqlite"
        clock = Clock()
        bus, alpha, beta = yield self.start_bus(clock, path)
        op = Subscribe(ALICE, BOB, 600)
        yield alpha.inject(op)
        yield self.delivered(alpha, Notify)
        yield bus.stop()
        clock.advance(5000)
        # The adapters register before start, as the service does, so the final notify has somewhere to go.
        bus2 = Bus(clock, SQLiteStore(path), DefaultPolicy())
        alpha2, beta2 = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
        attach(bus2, alpha2, beta2)
        yield bus2.start()
        [final] = alpha2.of_type(Notify)
        self.assertEqual((final.state, final.reason), (SubscriptionState.TERMINATED, TerminationReason.TIMEOUT))
        self.assertEqual(beta2.of_type(Subscribe)[0].duration, 0)
        self.assertEqual(bus2.presence.armed(), {})
        self.assertEqual(bus2.counters["subscriptions_expired"], 1)
        yield bus2.stop()


class PublishExpiryTests(PresenceFixture, unittest.TestCase):
    def test_instance_withdrawn_when_it_runs_out(self) -> None:
        self.subscribe(3600)
        self.successResultOf(self.beta.inject(Publish(BOB, OPEN, instance="desk", expires=60)))
        self.successResultOf(self.beta.inject(Publish(BOB, PHONE, instance="phone")))
        settle(self.bus)
        self.assertEqual(self.bus.presence.published_expiries(), {("pres:bob@beta.example", "desk"): 60.0})
        before = len(self.notifies(self.alpha))
        self.reactor.advance(59)
        self.assertEqual(len(self.notifies(self.alpha)), before)
        self.reactor.advance(1)
        settle(self.bus)
        self.assertEqual(self.successResultOf(self.store.get_presence(BOB)), {"phone": PHONE})
        latest = self.notifies(self.alpha)[-1]
        self.assertEqual((latest.presence, latest.state), (PHONE, SubscriptionState.ACTIVE))
        self.assertEqual(self.bus.counters["presence_expired"], 1)
        self.assertEqual(self.bus.presence.published_expiries(), {})

    def test_last_instance_running_out_sends_an_empty_document(self) -> None:
        self.subscribe(3600)
        self.successResultOf(self.beta.inject(Publish(BOB, OPEN, instance="desk", expires=30)))
        self.reactor.advance(30)
        settle(self.bus)
        self.assertEqual(self.successResultOf(self.store.get_presence(BOB)), {})
        latest = self.notifies(self.alpha)[-1]
        self.assertEqual(latest.presence.media_type, MEDIA_PIDF)
        document = pidf.parse_pidf(latest.presence.body)
        self.assertEqual(str(document.entity), "pres:bob@beta.example")
        self.assertEqual(list(document.tuples), [])

    def test_refresh_and_withdraw_rearm(self) -> None:
        self.successResultOf(self.beta.inject(Publish(BOB, OPEN, instance="desk", expires=30)))
        self.reactor.advance(20)
        self.successResultOf(self.beta.inject(Publish(BOB, CLOSED, instance="desk", expires=30)))
        self.reactor.advance(20)  # the first expiry time has passed: the refresh holds
        self.assertEqual(self.successResultOf(self.store.get_presence(BOB)), {"desk": CLOSED})
        self.reactor.advance(10)
        self.assertEqual(self.successResultOf(self.store.get_presence(BOB)), {})
        self.successResultOf(self.beta.inject(Publish(BOB, OPEN, instance="desk", expires=30)))
        self.successResultOf(self.beta.inject(Publish(BOB, OPEN, instance="desk")))  # no expiry any more
        self.assertEqual(self.bus.presence.published_expiries(), {})
        self.reactor.advance(100)
        self.assertEqual(self.successResultOf(self.store.get_presence(BOB)), {"desk": OPEN})


class StopTests(PresenceFixture, unittest.TestCase):
    def test_stop_cancels_work_stuck_on_an_adapter(self) -> None:
        from twisted.internet.defer import Deferred as _Deferred

        self.subscribe(600)
        stuck: _Deferred = _Deferred()
        self.alpha.reply = lambda op: stuck
        self.reactor.advance(600)  # expiry: the final notify waits on alpha forever
        self.assertEqual(len(self.notifies(self.alpha)), 2)
        stopping = self.bus.stop()
        self.assertNoResult(stopping)
        self.reactor.advance(2)
        self.assertIsNone(self.successResultOf(stopping))
        self.assertFalse(self.bus.store.opened)
