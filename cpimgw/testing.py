"""Test harness for adapter authors (lessons.md, architecture lesson 9).

Used by the core's tests, the built-in adapters' tests and third-party
plugins alike:

- :class:`RecordingAdapter` -- a real ``twisted.application.service.Service``
  providing ``IAdapter`` (and, by default, ``IMessaging`` and
  ``IPresence``) that records what the bus delivers and answers with a
  ``reply`` function; :meth:`RecordingAdapter.inject` puts an operation on
  the bus as if it came from this adapter, :meth:`RecordingAdapter.wait_for`
  waits for deliveries (for interop tests driving real peers).
- :func:`make_bus` -- a started :class:`cpimgw.bus.Bus` on a
  :class:`~cpimgw.store.memory.MemoryStore` and a
  :class:`~cpimgw.policy.DefaultPolicy`, driven by a
  ``twisted.internet.testing.MemoryReactorClock`` unless you pass a reactor.
  Time only moves when the test calls ``bus.reactor.advance(seconds)``.
  Note: the notify that follows a subscribe's response is sent on the next
  reactor turn when the store answers at once (as MemoryStore does), so
  call ``bus.reactor.advance(0)`` (or :func:`settle`) after dispatching a
  Subscribe to see it.
- :class:`BusFixture` -- a mixin for trial ``TestCase``: ``setUp`` builds
  ``self.bus`` with ``self.alpha`` (domain ``alpha.example``) and
  ``self.beta`` (``beta.example``) registered; ``tearDown`` stops the bus.

Example::

    class MyAdapterTests(BusFixture, unittest.TestCase):
        def test_message_reaches_beta(self):
            response = self.successResultOf(self.alpha.inject(Message(
                im_uri("a", "alpha.example"), im_uri("b", "beta.example"),
                Content("text/plain", b"hi"))))
            self.assertIs(response.status, Status.SUCCESS)
            self.assertEqual(len(self.beta.delivered), 1)
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.testing import MemoryReactorClock
from zope.interface import Interface, alsoProvides, implementer

from cpimgw.bus import Bus
from cpimgw.cpim.operations import Response, success
from cpimgw.interfaces import IAdapter, IMessaging, IPresence
from cpimgw.policy import DefaultPolicy
from cpimgw.store.memory import MemoryStore

Reply = Callable[[Any], "Response | Deferred[Response]"]


def default_reply(operation: Any) -> Response:
    """Answer every operation with ``success``."""
    return success(operation)


@implementer(IAdapter)
class RecordingAdapter(Service):
    """An adapter that records what the bus hands it.

    :param name: the adapter's name on the bus.
    :param domains: the domains it serves (routing).
    :param capabilities: the capability interfaces the instance provides
        (``IMessaging`` and ``IPresence`` by default; pass ``()`` for none).
    :param reply: ``reply(operation) -> Response | Deferred[Response]``; may
        raise to simulate a broken adapter.  ``success`` by default.
    :param bus: the bus :meth:`inject` dispatches on (set by
        :func:`make_bus`/:class:`BusFixture`, or assign ``adapter.bus``).
    """

    def __init__(
        self,
        name: str,
        domains: Iterable[str],
        *,
        capabilities: Iterable[type[Interface]] = (IMessaging, IPresence),
        reply: Reply | None = None,
        bus: Any = None,
    ) -> None:
        self.name = name
        self.domains = tuple(domain.lower() for domain in domains)
        self.reply: Reply = reply or default_reply
        self.bus = bus
        self.delivered: list[Any] = []
        self._waiters: list[tuple[Callable[[Any], bool], int, Deferred[list[Any]]]] = []
        for capability in capabilities:
            alsoProvides(self, capability)

    def __repr__(self) -> str:
        return f"<RecordingAdapter {self.name} {list(self.domains)}>"

    def deliver(self, operation: Any) -> Deferred[Response]:
        self.delivered.append(operation)
        self._check_waiters()
        return maybeDeferred(self.reply, operation)

    def of_type(self, kind: type) -> list[Any]:
        """The delivered operations of one type (``Message``, ``Notify``...)."""
        return [operation for operation in self.delivered if isinstance(operation, kind)]

    def clear(self) -> None:
        """Forget what was delivered so far."""
        del self.delivered[:]

    def wait_for(self, predicate: Callable[[Any], bool] = lambda op: True, count: int = 1) -> Deferred[list[Any]]:
        """``Deferred[list]`` that fires with the first ``count`` delivered operations matching ``predicate``.

        Operations delivered before the call count too.  Give the Deferred
        a timeout (``addTimeout(seconds, reactor)``) in interop tests.
        """
        waiter: Deferred[list[Any]] = Deferred()
        self._waiters.append((predicate, count, waiter))
        self._check_waiters()
        return waiter

    def _check_waiters(self) -> None:
        for entry in list(self._waiters):
            predicate, count, waiter = entry
            if waiter.called:
                self._waiters.remove(entry)
                continue
            matching = [operation for operation in self.delivered if predicate(operation)]
            if len(matching) >= count:
                self._waiters.remove(entry)
                waiter.callback(matching[:count])

    def inject(self, operation: Any) -> Deferred[Response]:
        """Dispatch ``operation`` on the bus as if it came from this adapter (``origin`` set to its name)."""
        if self.bus is None:
            raise RuntimeError(f"{self!r} is attached to no bus (set .bus or use make_bus/BusFixture)")
        return self.bus.dispatch(attrs.evolve(operation, origin=self.name))


def make_bus(*, reactor: Any = None, store: Any = None, policy: Any = None, **bus_kwargs: Any) -> Bus:
    """A started :class:`~cpimgw.bus.Bus` for tests.

    :param reactor: a ``MemoryReactorClock`` (clock and fake network) when
        not given; advance it with ``bus.reactor.advance(seconds)``.
    :param store: a fresh :class:`MemoryStore` when not given.  With a store
        whose calls do not answer at once (SQLite), the returned bus may still
        be starting: use ``yield bus.started`` in an inlineCallbacks test.
    :param policy: ``DefaultPolicy()`` when not given.
    :param bus_kwargs: passed to :class:`Bus` (``routes``, ``resolver``...).
    """
    bus = Bus(
        reactor if reactor is not None else MemoryReactorClock(),
        store if store is not None else MemoryStore(),
        policy if policy is not None else DefaultPolicy(),
        **bus_kwargs,
    )
    bus.started = bus.start()  # type: ignore[attr-defined]
    return bus


def attach(bus: Bus, *adapters: RecordingAdapter) -> None:
    """Register recording adapters on ``bus`` and point their ``inject`` at it."""
    for adapter in adapters:
        adapter.bus = bus
        bus.register(adapter)


def settle(bus: Bus, turns: int = 3) -> None:
    """Run the reactor turns that follow-ups scheduled with ``callLater(0)`` need (Clock reactors only)."""
    for _ in range(turns):
        bus.reactor.advance(0)


class BusFixture:
    """Mixin for a trial ``TestCase``: a started bus with two recording adapters.

    ``self.reactor`` (a ``MemoryReactorClock``), ``self.store`` (a
    ``MemoryStore``), ``self.bus``, ``self.alpha`` (name ``'alpha'``,
    domain ``alpha.example``) and ``self.beta`` (``'beta'``,
    ``beta.example``).  Override :meth:`make_fixture_bus` to change how the
    bus is built.
    """

    bus: Bus
    alpha: RecordingAdapter
    beta: RecordingAdapter

    def make_fixture_bus(self) -> Bus:
        return make_bus()

    def setUp(self) -> Any:
        result = super().setUp()  # type: ignore[misc]
        self.bus = self.make_fixture_bus()
        self.reactor = self.bus.reactor
        self.store = self.bus.store
        self.alpha = RecordingAdapter("alpha", ["alpha.example"])
        self.beta = RecordingAdapter("beta", ["beta.example"])
        attach(self.bus, self.alpha, self.beta)
        for adapter in (self.alpha, self.beta):
            adapter.startService()
        return result

    def tearDown(self) -> Any:
        for adapter in (self.alpha, self.beta):
            if adapter.running:
                adapter.stopService()
        stopping = self.bus.stop()
        if not stopping.called and hasattr(self.reactor, "advance"):
            self.reactor.advance(2.0)  # the presence service's grace for work under way
        result = super().tearDown()  # type: ignore[misc]
        return stopping if result is None else result


__all__ = ["RecordingAdapter", "make_bus", "attach", "settle", "BusFixture", "default_reply"]

