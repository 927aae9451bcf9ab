"""Rate limits shared by the adapters: a token bucket and a bounded per-key table of them.

The gateway's engineering standard (design.md §4, perf-reliability.md) wants
every limit explicit, configurable and tested.  :class:`TokenBucket` is the
classic leaky-bucket-as-meter: ``rate`` tokens per second accrue up to
``burst``; XMPP spends one token per octet read (read throttling), SIP and
PRIM spend one per new request.  :class:`KeyedRateLimiter` keeps one bucket per
key (a peer IP address) in a table of at most ``max_keys`` entries, the least
recently used evicted first, so a spoofed-source flood costs bounded memory.
:class:`RequestRateGuard` is what the SIP stack and the PRIM adapter hold: a
per-source request limiter, a count of refusals and a second limiter that lets
one log line per source through every ``log_interval`` seconds.

Pure code: time comes from the ``clock`` passed in (an ``IReactorTime``, so
tests use ``twisted.internet.task.Clock``); nothing here schedules a call.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

from twisted.internet.interfaces import IReactorTime

__all__ = ["TokenBucket", "KeyedRateLimiter", "RequestRateGuard"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; time from ``clock``."""

    def __init__(self, rate: float, burst: float, clock: IReactorTime) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.stamp = clock.seconds()

    def _refill(self) -> None:
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float) -> float:
        """Spend ``amount`` tokens; return how many seconds to wait before reading more (0 if none).

        The tokens are spent even when that drives the bucket below zero (a
        reader has already received the octets; the debt is the wait).
        """
        self._refill()
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def try_take(self, amount: float = 1.0) -> bool:
        """Spend ``amount`` tokens if that many are saved (``True``); else spend nothing (``False``)."""
        self._refill()
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False

    def wait_for(self, amount: float = 1.0) -> float:
        """Seconds until ``amount`` tokens will be saved (0 if they are now)."""
        self._refill()
        return 0.0 if self.tokens >= amount else (amount - self.tokens) / self.rate


class KeyedRateLimiter:
    """One :class:`TokenBucket` per key (e.g. a source IP), at most ``max_keys`` of them.

    :param rate: requests per second allowed per key; ``0`` turns limiting off
        (:meth:`allow` is always ``True`` and no bucket is kept).
    :param burst: requests a key may send at once after being quiet (at least 1).
    :param clock: an ``IReactorTime``.
    :param max_keys: bound on the table; beyond it the least recently used key
        is forgotten (it starts again with a full bucket -- the price of bounded memory).
    """

    def __init__(self, rate: float, burst: float, clock: IReactorTime, max_keys: int = 10000) -> None:
        if rate < 0 or (rate > 0 and burst < 1) or max_keys < 1:
            raise ValueError("rate must be >= 0, burst >= 1 when rate > 0, max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()
        self.evicted = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._buckets

    def _bucket(self, key: Hashable) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.clock)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
                self.evicted += 1
        else:
            self._buckets.move_to_end(key)
        return bucket

    def allow(self, key: Hashable, amount: float = 1.0) -> bool:
        """Whether ``key`` may make one more request now (spends a token if so)."""
        if self.rate <= 0:
            return True
        return self._bucket(key).try_take(amount)

    def retry_after(self, key: Hashable, amount: float = 1.0) -> float:
        """Seconds until ``key`` may make a request again (0 if it may now)."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait_for(amount)


class RequestRateGuard:
    """Per-source request-rate limit with a refusal counter and rate-limited logging.

    :param rate: requests per second per source (0 = off).
    :param burst: requests at once after a quiet spell; 0 = twice ``rate``.
    :param clock: an ``IReactorTime``.
    :param max_keys: most sources tracked at once (least recently used forgotten).
    :param log_interval: a refused source is reported (:meth:`check` ``should_log``)
        at most once in this many seconds.
    """

    def __init__(self, rate: float, burst: float, clock: IReactorTime, *, max_keys: int = 10000,
                 log_interval: float = 10.0) -> None:
        if log_interval <= 0:
            raise ValueError("log_interval must be positive")
        self.limiter = KeyedRateLimiter(rate, max(burst or 2 * rate, 1.0), clock, max_keys)
        self._logs = KeyedRateLimiter(1.0 / log_interval, 1.0, clock, max_keys)
        self.log_interval = log_interval
        #: requests refused since start.
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.limiter.enabled

    @property
    def rate(self) -> float:
        return self.limiter.rate

    def check(self, key: Hashable) -> tuple[bool, float, bool]:
        """Account one request from ``key``: ``(allowed, retry_after, should_log)``.

        ``retry_after`` is the seconds until ``key`` may send again (0 when
        allowed); ``should_log`` is ``True`` for the first refusal of ``key``
        in each ``log_interval``.
        """
        if self.limiter.allow(key):
            return True, 0.0, False
        self.refused += 1
        return False, self.limiter.retry_after(key), self._logs.allow(key)
