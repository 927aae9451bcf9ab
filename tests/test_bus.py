"""Tests of cpimgw.bus: routing, RFC 3860 §4 message handling, duplicates, errors, counters."""

from __future__ import annotations

import os

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from cpimgw.bus import Bus, message_key
from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import (
    Condition,
    Content,
    Message,
    Publish,
    Response,
    Status,
    Subscribe,
    failure,
    indeterminant,
)
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.interfaces import IBus, IPolicy, IPresenceService, IResolver
from cpimgw.policy import DefaultPolicy
from cpimgw.store.memory import MemoryStore
from cpimgw.store.sqlite import SQLiteStore
from cpimgw.testing import BusFixture, RecordingAdapter, attach, make_bus

TEXT = Content("text/plain", b"Hello")


def message(source: str = "alice@alpha.example", destination: str = "bob@beta.example", **kw: object) -> Message:
    s_user, s_domain = source.split("@")
    d_user, d_domain = destination.split("@")
    return Message(im_uri(s_user, s_domain), im_uri(d_user, d_domain), TEXT, **kw)  # type: ignore[arg-type]


@implementer(IResolver)
class TableResolver:
    """An IResolver answering from a table (domain -> label), recording its questions."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.questions: list[tuple[str, tuple[str, ...]]] = []

    def resolve(self, domain: str, labels: object) -> Deferred:
        labels = tuple(labels)  # type: ignore[arg-type]
        self.questions.append((domain, labels))
        label = self.table.get(domain)
        return succeed(label if label in labels else None)


class MessageTests(BusFixture, unittest.TestCase):
    def dispatch(self, operation: object) -> Response:
        return self.successResultOf(self.alpha.inject(operation))

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IBus, self.bus))
        self.assertTrue(verifyObject(IPresenceService, self.bus.presence))
        self.assertIs(self.bus.presence.bus, self.bus)

    def test_delivered_with_max_forwards_decremented(self) -> None:
        original = message(max_forwards=1, message_id="m-1")
        response = self.dispatch(original)
        self.assertEqual(response, Response(original.trans_id, Status.SUCCESS))
        self.assertEqual(self.beta.delivered, [attrs.evolve(original, max_forwards=0, origin="alpha")])
        self.assertEqual(self.alpha.delivered, [])

    def test_max_forwards_zero_is_a_loop(self) -> None:
        response = self.dispatch(message(max_forwards=0))
        self.assertIs(response.status, Status.FAILURE)
        self.assertIs(response.condition, Condition.LOOP)
        self.assertIn("MaxForwards", response.reason)
        self.assertEqual(self.beta.delivered, [])
        self.assertEqual(self.bus.counters["loops"], 1)

    def test_forged_huge_max_forwards_clamped(self) -> None:
        """A message entering with more hops than [bus] max_forwards leaves with max_forwards - 1."""
        response = self.dispatch(message(max_forwards=10**6, message_id="forged"))
        self.assertIs(response.status, Status.SUCCESS)
        self.assertEqual([op.max_forwards for op in self.beta.delivered], [119])
        self.assertEqual(self.bus.counters["max_forwards_clamped"], 1)
        # Within the limit: untouched (only decremented).
        self.dispatch(message(max_forwards=120, message_id="fine"))
        self.assertEqual([op.max_forwards for op in self.beta.delivered], [119, 119])
        self.assertEqual(self.bus.counters["max_forwards_clamped"], 1)

    def test_unknown_domain(self) -> None:
        response = self.dispatch(message(destination="bob@nowhere.example"))
        self.assertIs(response.condition, Condition.NO_ROUTE)
        self.assertEqual(response.reason, "no route to domain nowhere.example")
        self.assertEqual(self.bus.counters["no_route"], 1)

    def test_domain_case_and_trailing_dot(self) -> None:
        response = self.dispatch(message(destination="bob@BETA.Example."))
        self.assertIs(response.status, Status.SUCCESS)
        self.assertEqual(len(self.beta.delivered), 1)

    def test_missing_capability_named(self) -> None:
        mute = RecordingAdapter("mute", ["mute.example"], capabilities=())
        attach(self.bus, mute)
        response = self.dispatch(message(destination="x@mute.example"))
        self.assertIs(response.condition, Condition.UNSUPPORTED)
        self.assertEqual(response.reason, "adapter 'mute' does not provide IMessaging")
        self.assertEqual(mute.delivered, [])
        self.assertEqual(self.bus.counters["unsupported"], 1)

    def test_pres_uri_is_not_an_inbox(self) -> None:
        bad = attrs.evolve(message(), destination=pres_uri("bob", "beta.example"))
        response = self.dispatch(bad)
        self.assertIs(response.condition, Condition.BAD_REQUEST)
        self.assertIn("pres:bob@beta.example is not an instant inbox", response.reason)
        self.assertEqual(self.bus.counters["invalid"], 1)

    def test_not_an_operation(self) -> None:
        response = self.successResultOf(self.bus.dispatch("hello"))
        self.assertIs(response.condition, Condition.BAD_REQUEST)
        self.assertIn("not a CPIM operation: str", response.reason)

    def test_duplicate_message_id_suppressed(self) -> None:
        first = self.dispatch(message(message_id="m-1"))
        second_op = message(message_id="m-1")
        second = self.dispatch(second_op)
        self.assertIs(first.status, Status.SUCCESS)
        self.assertEqual(second, Response(second_op.trans_id, Status.SUCCESS, "duplicate suppressed"))
        self.assertEqual(len(self.beta.delivered), 1)
        self.assertEqual(self.bus.counters["duplicates"], 1)

    def test_duplicate_trans_id_without_message_id(self) -> None:
        original = message()
        self.dispatch(original)
        again = self.dispatch(original)
        self.assertEqual(again.reason, "duplicate suppressed")
        self.assertEqual(len(self.beta.delivered), 1)

    def test_same_id_other_source_not_a_duplicate(self) -> None:
        self.dispatch(message(message_id="m-1"))
        self.dispatch(message(source="carol@alpha.example", message_id="m-1"))
        self.assertEqual(len(self.beta.delivered), 2)

    def test_im_and_pres_of_one_principal_share_keys(self) -> None:
        self.assertEqual(message_key(message(message_id="x")),
                         message_key(message(source="alice@ALPHA.example.", message_id="x")))

    def test_failed_delivery_can_be_retried(self) -> None:
        self.beta.reply = lambda op: failure(op, Condition.UNAVAILABLE, "offline")
        first = self.dispatch(message(message_id="m-2"))
        self.assertIs(first.condition, Condition.UNAVAILABLE)
        self.beta.reply = lambda op: indeterminant(op, "queued", native_code=202)
        second = self.dispatch(message(message_id="m-2"))
        self.assertIs(second.status, Status.INDETERMINANT)
        self.assertEqual(second.native_code, 202)
        self.assertEqual(len(self.beta.delivered), 2)

    def test_duplicate_while_in_flight_waits_for_the_first(self) -> None:
        pending: Deferred = Deferred()
        self.beta.reply = lambda op: pending
        first = self.alpha.inject(message(message_id="m-3"))
        second_op = message(message_id="m-3")
        second = self.alpha.inject(second_op)
        self.assertNoResult(first)
        self.assertNoResult(second)
        pending.callback(Response(self.beta.delivered[0].trans_id, Status.SUCCESS, "ok"))
        self.assertEqual(self.successResultOf(first).reason, "ok")
        self.assertEqual(self.successResultOf(second),
                         Response(second_op.trans_id, Status.SUCCESS, "duplicate suppressed"))
        self.assertEqual(len(self.beta.delivered), 1)

    def test_policy_refusal(self) -> None:
        self.bus.policy = DefaultPolicy(deny_domains=["alpha.example"])
        response = self.dispatch(message())
        self.assertIs(response.condition, Condition.FORBIDDEN)
        self.assertEqual(response.reason,
                         "policy deny_domains: messages from alpha.example are refused (rule 'alpha.example')")
        self.assertEqual(self.beta.delivered, [])
        self.assertEqual(self.bus.counters["refused"], 1)
        # Refused, so not remembered: allowed again once the policy allows.
        self.bus.policy = DefaultPolicy()
        self.assertIs(self.dispatch(message()).status, Status.SUCCESS)

    def test_adapter_exception_is_internal(self) -> None:
        def explode(op: object) -> Response:
            raise RuntimeError("boom")

        self.beta.reply = explode
        response = self.dispatch(message())
        self.assertIs(response.condition, Condition.INTERNAL)
        self.assertEqual(response.reason, "adapter 'beta' failed: boom")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # The bus keeps serving.
        self.beta.reply = lambda op: Response(op.trans_id, Status.SUCCESS)
        self.assertIs(self.dispatch(message()).status, Status.SUCCESS)

    def test_adapter_errback_is_internal(self) -> None:
        self.beta.reply = lambda op: fail(ValueError("native stack fell over"))
        response = self.dispatch(message())
        self.assertIs(response.condition, Condition.INTERNAL)
        self.assertIn("native stack fell over", response.reason)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.bus.counters["internal"], 1)

    def test_adapter_answer_not_a_response(self) -> None:
        self.beta.reply = lambda op: "fine"
        response = self.dispatch(message())
        self.assertIs(response.condition, Condition.INTERNAL)
        self.assertIn("answered str, not a Response", response.reason)
        self.flushLoggedErrors(TypeError)

    def test_internal_error_inside_the_bus(self) -> None:
        class BrokenStore(MemoryStore):
            def remember(self, key: str, now: float, ttl: float) -> Deferred:
                raise OSError("disk on fire")

        self.bus.store = BrokenStore()
        response = self.dispatch(message())
        self.assertIs(response.condition, Condition.INTERNAL)
        self.assertEqual(response.reason, "internal error: disk on fire")
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_counters(self) -> None:
        self.dispatch(message(message_id="a"))
        self.dispatch(message(message_id="a"))
        self.dispatch(message(destination="x@nowhere.example"))
        self.dispatch(message(max_forwards=0))
        counters = self.bus.counters
        self.assertEqual(
            {name: counters[name] for name in ("dispatched", "delivered", "failed", "duplicates", "loops",
                                               "no_route", "refused")},
            {"dispatched": 4, "delivered": 1, "failed": 2, "duplicates": 1, "loops": 1, "no_route": 1,
             "refused": 0},
        )
        self.assertIsInstance(counters, dict)

    def test_presence_operations_go_to_the_presence_service(self) -> None:
        publish = Publish(pres_uri("bob", "beta.example"), Content("application/pidf+xml", b"<presence/>"))
        response = self.successResultOf(self.beta.inject(publish))
        self.assertEqual(response, Response(publish.trans_id, Status.SUCCESS))
        stored = self.successResultOf(self.bus.store.get_presence("pres:bob@beta.example"))
        self.assertEqual(stored, {"beta": publish.presence})


class RoutingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.resolver = TableResolver({"far.example": "_xmpp", "sipland.example": "_sip"})
        self.bus = make_bus(
            routes={"static.example": "beta", ".sub.example": "alpha", "alpha.example": "beta"},
            resolver=self.resolver,
            adapter_labels={"alpha": ("_xmpp",), "beta": ("_sip", "_xmpp")},
            resolve_cache_ttl=60,
        )
        self.alpha = RecordingAdapter("alpha", ["alpha.example", "shared.example"])
        self.beta = RecordingAdapter("beta", ["beta.example"])
        attach(self.bus, self.alpha, self.beta)

    def tearDown(self) -> Deferred:
        return self.bus.stop()

    def route(self, domain: str) -> object:
        return self.successResultOf(self.bus.adapter_for(domain))

    def test_static_table_wins_over_adapter_domains(self) -> None:
        self.assertIs(self.route("alpha.example"), self.beta)
        self.assertIs(self.route("static.example"), self.beta)
        self.assertIs(self.route("deep.sub.example"), self.alpha)
        self.assertEqual(self.resolver.questions, [])

    def test_adapter_domains_next(self) -> None:
        self.assertIs(self.route("shared.example"), self.alpha)
        self.assertIs(self.route("Beta.Example."), self.beta)

    def test_resolver_last_labels_in_registration_order(self) -> None:
        self.assertIs(self.route("far.example"), self.alpha)
        self.assertIs(self.route("sipland.example"), self.beta)
        self.assertIsNone(self.route("unknown.example"))
        self.assertEqual(self.resolver.questions[0], ("far.example", ("_xmpp", "_sip")))

    def test_resolver_answers_cached(self) -> None:
        self.route("far.example")
        self.route("far.example")
        self.route("unknown.example")
        self.route("unknown.example")
        self.assertEqual(len(self.resolver.questions), 2)
        self.bus.reactor.advance(61)
        self.route("far.example")
        self.assertEqual(len(self.resolver.questions), 3)

    def test_resolver_cache_evicts_least_recently_used(self) -> None:
        resolver = TableResolver({"a.example": "_sip", "b.example": "_sip", "c.example": "_sip"})
        bus = make_bus(resolver=resolver, adapter_labels={"beta": ("_sip",)}, resolve_cache_size=2)
        beta = RecordingAdapter("beta", ["beta.example"])
        attach(bus, beta)
        for domain in ("a.example", "b.example", "a.example", "c.example"):
            self.assertIs(self.successResultOf(bus.adapter_for(domain)), beta)
        # a was used after b: b was evicted for c, a was kept.
        self.assertEqual([q[0] for q in resolver.questions], ["a.example", "b.example", "c.example"])
        self.assertIs(self.successResultOf(bus.adapter_for("a.example")), beta)
        self.assertEqual(len(resolver.questions), 3)
        self.successResultOf(bus.adapter_for("b.example"))
        self.assertEqual([q[0] for q in resolver.questions][-1], "b.example")
        self.assertEqual(len(resolver.questions), 4)
        self.successResultOf(bus.stop())

    def test_static_route_to_missing_adapter_is_no_route(self) -> None:
        self.bus.unregister(self.beta)
        self.assertIsNone(self.route("static.example"))
        self.assertIsNone(self.route("beta.example"))

    def test_resolver_failure_is_no_route(self) -> None:
        self.resolver.resolve = lambda domain, labels: fail(OSError("dns down"))  # type: ignore[method-assign]
        self.assertIsNone(self.route("far.example"))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_register_errors(self) -> None:
        self.assertRaises(ValueError, self.bus.register, RecordingAdapter("alpha", ["other.example"]))
        error = self.assertRaises(ValueError, self.bus.register, RecordingAdapter("gamma", ["beta.example"]))
        self.assertIn("already served by 'beta'", str(error))
        self.assertRaises(TypeError, self.bus.register, object())

    def test_unregister(self) -> None:
        self.bus.unregister(self.alpha)
        self.assertIsNone(self.route("shared.example"))
        self.assertNotIn("alpha", self.bus.adapters)
        self.bus.unregister(self.alpha)  # twice is harmless


class LifecycleTests(unittest.TestCase):
    def test_duplicate_keys_purged_periodically(self) -> None:
        store = MemoryStore()
        bus = make_bus(store=store, duplicate_ttl=100, purge_interval=50)
        alpha, beta = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
        attach(bus, alpha, beta)
        self.successResultOf(alpha.inject(message(message_id="k")))
        self.assertEqual(self.successResultOf(store.counts())["duplicate_keys"], 1)
        bus.reactor.advance(50)
        self.assertEqual(self.successResultOf(store.counts())["duplicate_keys"], 1)
        bus.reactor.advance(50)
        self.assertEqual(self.successResultOf(store.counts())["duplicate_keys"], 0)
        self.successResultOf(bus.stop())
        self.assertEqual(bus.reactor.getDelayedCalls(), [])
        self.assertFalse(store.opened)

    def test_start_purges_at_once(self) -> None:
        store = MemoryStore()
        self.successResultOf(store.remember("old", 0.0, 10.0))
        clock = Clock()
        clock.advance(20)
        bus = make_bus(reactor=clock, store=store)
        self.assertEqual(self.successResultOf(store.counts())["duplicate_keys"], 0)
        self.successResultOf(bus.stop())

    @inlineCallbacks
    def test_duplicates_survive_restart_on_sqlite(self):
        """Duplicate keys outlive the store and the bus: a NEW bus on the same file still suppresses."""
        path = os.path.abspath(self.mktemp()) + ".sqlite"
        clock = Clock()
        bus = Bus(clock, SQLiteStore(path), DefaultPolicy())
        yield bus.start()
        alpha, beta = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
        attach(bus, alpha, beta)
        first = yield alpha.inject(message(message_id="restart-1"))
        self.assertIs(first.status, Status.SUCCESS)
        yield bus.stop()

        clock.advance(3600)
        again = Bus(clock, SQLiteStore(path), DefaultPolicy())
        yield again.start()
        alpha2, beta2 = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
        attach(again, alpha2, beta2)
        second = yield alpha2.inject(message(message_id="restart-1"))
        self.assertEqual(second.reason, "duplicate suppressed")
        self.assertEqual(beta2.delivered, [])
        other = yield alpha2.inject(message(message_id="restart-2"))
        self.assertIs(other.status, Status.SUCCESS)
        self.assertEqual(len(beta2.delivered), 1)
        yield again.stop()

    def test_max_forwards_limit_configurable(self) -> None:
        bus = make_bus(max_forwards=3)
        alpha, beta = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
        attach(bus, alpha, beta)
        self.successResultOf(alpha.inject(message(max_forwards=200, message_id="a")))
        self.successResultOf(alpha.inject(message(max_forwards=2, message_id="b")))
        self.assertEqual([op.max_forwards for op in beta.delivered], [2, 1])
        subscribe = Subscribe(pres_uri("a", "alpha.example"), pres_uri("b", "beta.example"), 60,
                              max_forwards=70)
        self.successResultOf(alpha.inject(subscribe))
        self.assertEqual([op.max_forwards for op in beta.of_type(Subscribe)], [2])
        self.assertEqual(bus.counters["max_forwards_clamped"], 2)
        self.successResultOf(bus.stop())

    def test_max_forwards_limit_validated(self) -> None:
        for bad in (0, 256, -1, 2.5, True, "120"):
            error = self.assertRaises(ConfigError, Bus, Clock(), MemoryStore(), DefaultPolicy(), max_forwards=bad)
            self.assertEqual(error.key, "bus.max_forwards")
        self.assertEqual(Bus(Clock(), MemoryStore(), DefaultPolicy()).max_forwards, 120)

    def test_snapshot(self) -> None:
        bus = make_bus()
        alpha, beta = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
        attach(bus, alpha, beta)
        alpha.startService()
        beta.connected = False  # type: ignore[attr-defined]
        self.successResultOf(alpha.inject(message(message_id="snap")))
        view = self.successResultOf(bus.snapshot())
        self.assertTrue(view["running"])
        self.assertEqual(view["counters"]["delivered"], 1)
        self.assertEqual(view["adapters"], {"alpha": {"running": True, "connected": None},
                                            "beta": {"running": False, "connected": False}})
        self.assertEqual(view["store"], {"subscriptions": 0, "presence": 0, "duplicate_keys": 1, "values": 0})
        self.assertEqual(view["presence"], {"subscription_timers": 0, "publication_timers": 0})
        self.successResultOf(bus.stop())
        self.assertEqual(self.successResultOf(bus.snapshot())["store"], {})

    def test_subscribe_dispatched(self) -> None:
        bus = make_bus()
        alpha, beta = RecordingAdapter("alpha", ["alpha.example"]), RecordingAdapter("beta", ["beta.example"])
        attach(bus, alpha, beta)
        subscribe = Subscribe(pres_uri("a", "alpha.example"), pres_uri("b", "beta.example"), 60)
        response = self.successResultOf(alpha.inject(subscribe))
        self.assertEqual(response.duration, 60)
        self.successResultOf(bus.stop())


class LaterStore(MemoryStore):
    """A MemoryStore whose duplicate-key answers come on the next clock turn (the Deferred path)."""

    def __init__(self, clock: Clock, remember_error: Exception | None = None) -> None:
        super().__init__()
        self.later = clock
        self.remember_error = remember_error

    def _answer(self, value: object) -> Deferred:
        answer: Deferred = Deferred()
        if isinstance(value, Exception):
            self.later.callLater(0, answer.errback, value)
        else:
            self.later.callLater(0, answer.callback, value)
        return answer

    def remember(self, key: str, now: float, ttl: float) -> Deferred:
        if self.remember_error is not None:
            return self._answer(self.remember_error)
        return self._answer(self.remember_now(key, now, ttl))

    def forget(self, key: str) -> Deferred:
        return self._answer(self.forget_now(key))


class LaterPolicy(DefaultPolicy):
    """A DefaultPolicy whose ``may_message`` answers on the next clock turn."""

    def __init__(self, clock: Clock, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.later = clock

    def may_message(self, message: Message) -> Deferred:
        answer: Deferred = Deferred()
        self.later.callLater(0, answer.callback, self.message_refusal(message))
        return answer


class CountingStore(MemoryStore):
    """A MemoryStore counting the synchronous duplicate-key calls (its marked methods are inherited)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def remember_now(self, key: str, now: float, ttl: float) -> bool:
        self.calls.append("remember_now")
        return super().remember_now(key, now, ttl)

    def forget_now(self, key: str) -> bool:
        self.calls.append("forget_now")
        return super().forget_now(key)


class FastPathTests(BusFixture, unittest.TestCase):
    """Issue 2: what answers at once is routed with plain calls and answered by a fired Deferred."""

    def make_fixture_bus(self) -> Bus:
        return make_bus(store=CountingStore())

    def test_answered_at_once_through_the_synchronous_variants(self) -> None:
        sent = message(message_id="fast-1")
        answer = self.alpha.inject(sent)
        self.assertEqual(self.successResultOf(answer), Response(sent.trans_id, Status.SUCCESS))
        self.assertEqual(self.store.calls, ["remember_now"])
        self.assertEqual(self.beta.delivered[0].max_forwards, 119)
        # A failure forgets the key through forget_now, so a retry goes through.
        self.beta.reply = lambda op: failure(op, Condition.UNAVAILABLE, "offline")
        self.assertIs(self.successResultOf(self.alpha.inject(message(message_id="fast-2"))).condition,
                      Condition.UNAVAILABLE)
        self.assertEqual(self.store.calls, ["remember_now", "remember_now", "forget_now"])
        self.assertEqual(self.successResultOf(self.store.counts())["duplicate_keys"], 1)

    def test_synchronous_variants_answer_like_the_deferred_methods(self) -> None:
        store = MemoryStore()
        self.assertIs(store.remember_now("k", 10.0, 5.0), True)
        self.assertIs(store.remember_now("k", 14.0, 5.0), False)
        self.assertIs(self.successResultOf(store.remember("k", 15.0, 5.0)), True)  # expired at 15: new again
        self.assertIs(store.forget_now("k"), True)
        self.assertIs(self.successResultOf(store.forget("k")), False)
        policy = DefaultPolicy(deny_domains=["alpha.example"])
        refused = message()
        self.assertEqual(policy.may_message_now(refused), self.successResultOf(policy.may_message(refused)))
        self.assertEqual(policy.may_message_now(refused),
                         "policy deny_domains: messages from alpha.example are refused (rule 'alpha.example')")
        watch = Subscribe(pres_uri("w", "alpha.example"), pres_uri("t", "beta.example"), 60)
        self.assertEqual(policy.may_subscribe_now(watch), self.successResultOf(policy.may_subscribe(watch)))

    def test_an_override_without_the_mark_is_honoured(self) -> None:
        class Forgetful(MemoryStore):
            def remember(self, key: str, now: float, ttl: float) -> Deferred:
                return succeed(False)  # everything is a duplicate

        self.bus.store = Forgetful()
        sent = message(message_id="fast-3")
        self.assertEqual(self.successResultOf(self.alpha.inject(sent)),
                         Response(sent.trans_id, Status.SUCCESS, "duplicate suppressed"))
        self.assertEqual(self.beta.delivered, [])

    def test_third_party_policy_answering_plain_or_fired_values(self) -> None:
        @implementer(IPolicy)
        class Plain:
            def __init__(self, answer: object) -> None:
                self.answer = answer

            def may_message(self, message: Message) -> object:
                return self.answer

            def may_subscribe(self, subscribe: Subscribe) -> object:
                return None

            def max_duration(self, subscribe: Subscribe) -> int:
                return 60

        self.bus.policy = Plain("closed today")
        self.assertEqual(self.successResultOf(self.alpha.inject(message())).reason, "closed today")
        self.bus.policy = Plain(succeed("closed tomorrow"))
        self.assertEqual(self.successResultOf(self.alpha.inject(message())).reason, "closed tomorrow")
        self.bus.policy = Plain(None)
        self.assertIs(self.successResultOf(self.alpha.inject(message())).status, Status.SUCCESS)
        self.assertEqual(self.bus.counters["refused"], 2)

    def test_waiting_copies_are_answered_before_the_first(self) -> None:
        pending: Deferred = Deferred()
        self.beta.reply = lambda op: pending
        order: list[str] = []
        self.alpha.inject(message(message_id="m-9")).addCallback(lambda r: order.append("first " + r.reason))
        self.alpha.inject(message(message_id="m-9")).addCallback(lambda r: order.append("second " + r.reason))
        pending.callback(Response(self.beta.delivered[0].trans_id, Status.SUCCESS, "ok"))
        self.assertEqual(order, ["second duplicate suppressed", "first ok"])

    def test_a_copy_looping_back_at_once_waits_for_the_first(self) -> None:
        """An adapter that puts the same message back on the bus while delivering it (a loop)."""
        inner: list[Deferred] = []

        def loop_back(op: Message) -> Response:
            inner.append(self.bus.dispatch(op))
            self.assertNoResult(inner[0])  # in flight: it waits for the first copy
            return Response(op.trans_id, Status.SUCCESS, "delivered")

        self.beta.reply = loop_back
        sent = message(message_id="loop-1", max_forwards=5)
        self.assertEqual(self.successResultOf(self.alpha.inject(sent)).reason, "delivered")
        self.assertEqual(self.successResultOf(inner[0]),
                         Response(sent.trans_id, Status.SUCCESS, "duplicate suppressed"))
        self.assertEqual(len(self.beta.delivered), 1)
        self.assertEqual(self.bus.counters["duplicates"], 1)

    def test_one_hop_less_is_evolve(self) -> None:
        from cpimgw.bus import _one_hop_less

        full = Message(im_uri("a", "alpha.example"), im_uri("b", "beta.example"), TEXT, trans_id="t-1",
                       max_forwards=7, message_id="m", origin="alpha", source_instance="desk",
                       destination_instance="phone")
        lowered = _one_hop_less(full)
        self.assertEqual(lowered, attrs.evolve(full, max_forwards=6))
        self.assertEqual(full.max_forwards, 7)
        self.assertEqual(_one_hop_less(lowered).max_forwards, 5)


class DeferredPathTests(unittest.TestCase):
    """The same rules when the store and the policy answer later (e.g. SQLite, a remote policy)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = LaterStore(self.clock)
        self.bus = Bus(self.clock, self.store, LaterPolicy(self.clock))
        self.bus.start()
        self.clock.advance(0)
        self.alpha = RecordingAdapter("alpha", ["alpha.example"])
        self.beta = RecordingAdapter("beta", ["beta.example"])
        attach(self.bus, self.alpha, self.beta)

    def tearDown(self) -> None:
        self.bus.stop()
        self.clock.advance(5)

    def answer(self, sent: Message) -> Response:
        answer = self.alpha.inject(sent)
        self.assertNoResult(answer)
        for _ in range(4):
            self.clock.advance(0)
        return self.successResultOf(answer)

    def test_delivered_once_the_store_and_policy_answer(self) -> None:
        sent = message(message_id="late-1", max_forwards=2)
        self.assertEqual(self.answer(sent), Response(sent.trans_id, Status.SUCCESS))
        self.assertEqual([op.max_forwards for op in self.beta.delivered], [1])
        again = message(message_id="late-1")
        self.assertEqual(self.answer(again), Response(again.trans_id, Status.SUCCESS, "duplicate suppressed"))
        self.assertEqual(self.bus.counters["duplicates"], 1)

    def test_failure_forgets_before_answering_the_waiting_copies(self) -> None:
        pending: Deferred = Deferred()
        self.beta.reply = lambda op: pending
        first = self.alpha.inject(message(message_id="late-2"))
        second = self.alpha.inject(message(message_id="late-2"))
        self.clock.advance(0)
        self.clock.advance(0)
        pending.callback(failure(self.beta.delivered[0], Condition.UNAVAILABLE, "offline"))
        self.assertNoResult(first)  # the key is being forgotten
        self.assertNoResult(second)
        self.clock.advance(0)
        self.assertIs(self.successResultOf(first).condition, Condition.UNAVAILABLE)
        self.assertIs(self.successResultOf(second).condition, Condition.UNAVAILABLE)
        self.assertEqual(self.successResultOf(self.store.counts())["duplicate_keys"], 0)
        self.beta.reply = lambda op: Response(op.trans_id, Status.SUCCESS)
        self.assertIs(self.answer(message(message_id="late-2")).status, Status.SUCCESS)

    def test_store_errback_is_internal_for_every_copy(self) -> None:
        self.store.remember_error = OSError("disk on fire")
        first = self.alpha.inject(message(message_id="late-3"))
        second_op = message(message_id="late-3")
        second = self.alpha.inject(second_op)
        for _ in range(3):
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(first).reason, "internal error: disk on fire")
        self.assertEqual(self.successResultOf(second),
                         Response(second_op.trans_id, Status.FAILURE, "internal error", Condition.INTERNAL))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.bus.counters["internal"], 1)
        self.assertEqual(self.beta.delivered, [])
        self.assertEqual(self.bus._in_flight, {})


REPLIES = {
    "success": lambda op: Response(op.trans_id, Status.SUCCESS),
    "failure": lambda op: failure(op, Condition.UNAVAILABLE, "offline"),
    "indeterminant": lambda op: indeterminant(op, "queued", native_code=202),
    "not-a-response": lambda op: "fine",
}


class PathEquivalenceTests(unittest.TestCase):
    """The fast path and the Deferred path give the same answers, counters and deliveries."""

    def run_steps(self, later: bool, deny: bool, steps: list[tuple[str, str | None, str, str, int]]) -> tuple:
        clock = Clock()
        rules = {"deny_domains": ["evil.example"]} if deny else {}
        store = LaterStore(clock) if later else MemoryStore()
        policy = LaterPolicy(clock, **rules) if later else DefaultPolicy(**rules)  # type: ignore[arg-type]
        bus = Bus(clock, store, policy)
        bus.start()
        clock.advance(0)
        alpha = RecordingAdapter("alpha", ["alpha.example", "evil.example"])
        beta = RecordingAdapter("beta", ["beta.example"])
        mute = RecordingAdapter("mute", ["mute.example"], capabilities=())
        attach(bus, alpha, beta, mute)
        answers = []
        for number, (source, message_id, domain, reply, hops) in enumerate(steps):
            beta.reply = REPLIES[reply]
            user, source_domain = source.split("@")
            answer = bus.dispatch(Message(im_uri(user, source_domain), im_uri("bob", domain), TEXT,
                                          trans_id=f"t-{number}", message_id=message_id, max_forwards=hops,
                                          origin="alpha"))
            if later:
                for _ in range(4):
                    clock.advance(0)
            answers.append(self.successResultOf(answer))
        self.flushLoggedErrors(TypeError)
        bus.stop()
        return answers, dict(bus.counters), beta.delivered, bus._in_flight

    @settings(max_examples=100, deadline=None)
    @given(
        steps=st.lists(st.tuples(
            st.sampled_from(["alice@alpha.example", "carol@alpha.example", "eve@evil.example"]),
            st.sampled_from([None, "m-1", "m-2"]),
            st.sampled_from(["beta.example", "nowhere.example", "mute.example"]),
            st.sampled_from(sorted(REPLIES)),
            st.sampled_from([0, 1, 70, 500]),
        ), max_size=8),
        deny=st.booleans(),
    )
    def test_same_outcomes(self, steps: list[tuple[str, str | None, str, str, int]], deny: bool) -> None:
        at_once = self.run_steps(False, deny, steps)
        later = self.run_steps(True, deny, steps)
        self.assertEqual(at_once, later)
        self.assertEqual(at_once[3], {})
