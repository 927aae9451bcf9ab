"""Unit tests of cpimgw.limits: the token bucket, the bounded per-key limiter and the request guard."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from cpimgw.limits import KeyedRateLimiter, RequestRateGuard, TokenBucket


class TokenBucketTests(TestCase):
    def test_take_returns_the_wait_of_the_debt(self) -> None:
        clock = Clock()
        bucket = TokenBucket(100, 200, clock)
        self.assertEqual(bucket.take(150), 0.0)
        self.assertEqual(bucket.take(100), 0.5)  # 50 tokens short at 100/s
        clock.advance(1.0)
        self.assertEqual(bucket.tokens, -50)
        self.assertEqual(bucket.take(0), 0.0)
        self.assertEqual(bucket.tokens, 50)

    def test_refill_is_capped_at_burst(self) -> None:
        clock = Clock()
        bucket = TokenBucket(10, 20, clock)
        bucket.take(20)
        clock.advance(100)
        self.assertTrue(bucket.try_take(20))
        self.assertFalse(bucket.try_take(1))

    def test_try_take_spends_nothing_when_short(self) -> None:
        clock = Clock()
        bucket = TokenBucket(2, 3, clock)
        self.assertEqual([bucket.try_take() for _ in range(5)], [True, True, True, False, False])
        self.assertEqual(bucket.tokens, 0)
        self.assertEqual(bucket.wait_for(), 0.5)
        clock.advance(0.5)
        self.assertEqual(bucket.wait_for(), 0.0)
        self.assertTrue(bucket.try_take())

    def test_hardening_reexports_the_core_bucket(self) -> None:
        from cpimgw.adapters.xmpp import hardening

        self.assertIs(hardening.TokenBucket, TokenBucket)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.floats(0, 5), st.integers(1, 5)), max_size=50))
    def test_never_more_than_burst_plus_rate_times_time(self, steps: list[tuple[float, int]]) -> None:
        clock = Clock()
        bucket = TokenBucket(10, 20, clock)
        granted = 0
        for delay, count in steps:
            clock.advance(delay)
            granted += sum(bucket.try_take() for _ in range(count))
        self.assertLessEqual(granted, 20 + 10 * clock.seconds() + 1e-9)


class KeyedRateLimiterTests(TestCase):
    def test_keys_have_separate_buckets(self) -> None:
        clock = Clock()
        limiter = KeyedRateLimiter(1, 2, clock)
        self.assertEqual([limiter.allow("a") for _ in range(3)], [True, True, False])
        self.assertTrue(limiter.allow("b"))
        self.assertEqual(limiter.retry_after("a"), 1.0)
        self.assertEqual(limiter.retry_after("unknown"), 0.0)
        clock.advance(1)
        self.assertTrue(limiter.allow("a"))
        self.assertFalse(limiter.allow("a"))

    def test_zero_rate_is_off_and_keeps_nothing(self) -> None:
        limiter = KeyedRateLimiter(0, 0, Clock())
        self.assertFalse(limiter.enabled)
        self.assertTrue(all(limiter.allow("a") for _ in range(10000)))
        self.assertEqual(len(limiter), 0)
        self.assertEqual(limiter.retry_after("a"), 0.0)

    def test_table_is_bounded_least_recently_used_first(self) -> None:
        limiter = KeyedRateLimiter(1, 1, Clock(), max_keys=3)
        for key in ("a", "b", "c"):
            limiter.allow(key)
        limiter.allow("a")  # a is now the most recently used
        limiter.allow("d")  # evicts b
        self.assertEqual(len(limiter), 3)
        self.assertNotIn("b", limiter)
        self.assertIn("a", limiter)
        self.assertEqual(limiter.evicted, 1)
        self.assertTrue(limiter.allow("b"))  # forgotten: a full bucket again

    def test_bad_parameters_rejected(self) -> None:
        self.assertRaises(ValueError, KeyedRateLimiter, -1, 1, Clock())
        self.assertRaises(ValueError, KeyedRateLimiter, 1, 0.5, Clock())
        self.assertRaises(ValueError, KeyedRateLimiter, 1, 1, Clock(), max_keys=0)


class RequestRateGuardTests(TestCase):
    def test_counts_refusals_and_logs_once_per_interval(self) -> None:
        clock = Clock()
        guard = RequestRateGuard(2, 2, clock, log_interval=10)
        results = [guard.check("10.0.0.1") for _ in range(5)]
        self.assertEqual(results[:2], [(True, 0.0, False)] * 2)
        self.assertEqual(results[2], (False, 0.5, True))
        self.assertEqual(results[3:], [(False, 0.5, False)] * 2)
        self.assertEqual(guard.refused, 3)
        clock.advance(5)
        guard.check("10.0.0.1"), guard.check("10.0.0.1")
        self.assertEqual(guard.check("10.0.0.1")[2], False)  # refused again, but within 10 s of the log line
        clock.advance(5)
        for _ in range(10):
            allowed, _, should_log = guard.check("10.0.0.1")
            if not allowed:
                break
        self.assertTrue(should_log)

    def test_burst_zero_means_twice_the_rate(self) -> None:
        guard = RequestRateGuard(5, 0, Clock())
        self.assertEqual(sum(guard.check("h")[0] for _ in range(20)), 10)

    def test_off(self) -> None:
        guard = RequestRateGuard(0, 0, Clock())
        self.assertFalse(guard.enabled)
        self.assertTrue(all(guard.check("h")[0] for _ in range(1000)))
        self.assertEqual(guard.refused, 0)
