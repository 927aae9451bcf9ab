"""The CPIM bus: routing, loop and duplicate guard, policy, dispatch (RFC 3860 §4, RFC 3859).

Every adapter hands the bus abstract operations (:mod:`cpimgw.cpim.operations`)
and gets a ``Deferred[Response]`` back that never errbacks.

``Message`` (RFC 3860 §4, digest §3.2), in this order:

1. validity: source and destination must be ``im:`` inboxes (a ``pres:``
   URI is refused) -> ``failure bad-request``;
2. MaxForwards: received 0 -> ``failure loop-detected``; otherwise the
   operation is handed on with MaxForwards decremented;
3. duplicates: the key (source principal, message_id) -- or (source
   principal, TransID) when the source network gave no id -- is recorded
   with ``store.remember`` so it holds across restarts (lessons.md #2-#4); a
   duplicate is answered ``success`` "duplicate suppressed" and not
   delivered again.  A duplicate that arrives while the first copy is
   still in flight waits for the first copy's outcome.  When the first
   copy is not delivered (failure), its key is forgotten so that a retry
   goes through;
4. routing (:meth:`Bus.adapter_for`): an unknown domain -> ``failure
   remote-server-not-found`` naming the domain;
5. policy (``IPolicy.may_message``) -> ``failure forbidden`` with the
   policy's reason;
6. capability: the destination adapter must provide ``IMessaging`` ->
   otherwise ``failure feature-not-implemented`` naming it;
7. ``adapter.deliver(message)``: its Response is the answer; an exception
   or errback becomes ``failure internal-server-error`` (logged).

``Subscribe``, ``Notify`` and ``Publish`` go to :attr:`Bus.presence`, the
RFC 3859 presence service (:mod:`cpimgw.presence`).

Synchronous fast path (issue 2).  Each step that may wait -- the duplicate
key (``store.remember``, and ``store.forget`` after a failure), the route
(:meth:`Bus.adapter_for_now`), the policy and the delivery
(:meth:`Bus.deliver_now`) -- is called plainly, and its answer used at once
when it is a plain value or a Deferred that already fired with a value; the
bus then answers with one already-fired Deferred, with no generator and no
Deferred chain per step.  The first answer that is still pending (or a
failure) switches the rest of that message to Deferred callbacks through the
very same step functions, so the order of the steps, the counters, the log
lines, the wait of an in-flight duplicate, forget-on-failure and "never
errbacks" are the same on both paths.  A store or policy may spare even the
fired Deferred: a method whose function carries the attribute
:data:`SYNCHRONOUS_ATTRIBUTE` (``synchronous_variant = "remember_now"``)
declares itself ``succeed(self.remember_now(...))``, and the bus calls the
named plain method instead.  :class:`~cpimgw.store.memory.MemoryStore`
(``remember``/``forget``) and :class:`~cpimgw.policy.DefaultPolicy`
(``may_message``/``may_subscribe``) are marked; the ``IStore`` and
``IPolicy`` contracts are unchanged, and an unmarked method (a third party's,
or a subclass's override) is called the documented way.

Routing order (:meth:`Bus.adapter_for`): the static table, then the
registered adapters' ``domains``, then RFC 3861 SRV resolution of the
registered adapters' protocol labels (``adapter_labels``), cached for
``resolve_cache_ttl`` seconds.

Lifecycle: :meth:`Bus.start` opens the store, reloads the running
subscriptions (re-arming their expiry timers) and purges old duplicate keys
at once and then every ``purge_interval`` seconds on the reactor's clock;
:meth:`Bus.stop` cancels the timers and closes the store.
"""

from __future__ import annotations

import operator
from collections import Counter, OrderedDict
from inspect import iscoroutine
from typing import Any, Callable, Mapping

import attrs
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import (
    Condition,
    Message,
    Notify,
    Publish,
    Response,
    Status,
    Subscribe,
    failure,
)
from cpimgw.cpim.uri import CPIMURI, IM
from cpimgw.interfaces import IAdapter, IBus, IMessaging
from cpimgw.routing import StaticRoutes, normalise_domain

log = Logger()

#: The counters every bus has from the start (more appear as they are used).
COUNTER_NAMES = (
    "dispatched",
    "delivered",
    "failed",
    "duplicates",
    "loops",
    "no_route",
    "refused",
    "unsupported",
    "invalid",
    "internal",
    "presence_suppressed",
    "notified",
    "subscriptions_expired",
)


def message_key(message: Message) -> str:
    """The duplicate-suppression key of a message (RFC 3860 TransID, or the source's own id)."""
    user, domain = message.source.principal()
    if message.message_id:
        return f"msg-id\x00{user}@{domain}\x00{message.message_id}"
    return f"trans-id\x00{user}@{domain}\x00{message.trans_id}"


def _invalid_inbox(uri: object, role: str) -> str | None:
    if not isinstance(uri, CPIMURI):
        return f"the {role} is not an im: URI ({type(uri).__name__})"
    if uri.scheme != IM:
        return f"the {role} {uri} is not an instant inbox (im: URI)"
    if not uri.user:
        return f"the {role} {uri} names no user"
    return None


def _respond_as(original: Response, operation: Message, reason: str) -> Response:
    """``original``'s outcome as the answer to a duplicate ``operation``."""
    if original.status is Status.FAILURE:
        return attrs.evolve(original, trans_id=operation.trans_id)
    return Response(operation.trans_id, original.status, reason, None, None, original.native_code)


#: The fast-path mark (module docstring, "Synchronous fast path"): a method
#: whose function carries this attribute is ``succeed(self.<value>(...))``.
SYNCHRONOUS_ATTRIBUTE = "synchronous_variant"


def _synchronous(method: Any) -> Any:
    """``method``'s plain variant when its function names one (:data:`SYNCHRONOUS_ATTRIBUTE`), else ``method``.

    The mark is read from the function, so a subclass that overrides the
    Deferred method without marking it is called the documented way.
    """
    name = getattr(method, SYNCHRONOUS_ATTRIBUTE, None)
    owner = getattr(method, "__self__", None)
    if name is None or owner is None:
        return method
    return getattr(owner, name)


#: Classes seen on the fast path that are not Deferreds (``Deferred`` is an
#: ``Awaitable``, so ``isinstance`` on a plain value runs the ABC machinery,
#: about 0.2 µs; a set lookup is a tenth of that).  It grows by the classes of
#: the answers the bus meets (bool, str, None, Response, the adapters'...).
_PLAIN_TYPES: set[type] = {bool, str, type(None), Response}


def _deferred(value: Any) -> bool:
    """``isinstance(value, Deferred)``, cheaply for the plain answers of the fast path."""
    cls = value.__class__
    if cls is Deferred:
        return True
    if cls in _PLAIN_TYPES:
        return False
    if isinstance(value, Deferred):
        return True
    _PLAIN_TYPES.add(cls)
    return False


def _now(result: Any) -> Any:
    """``result`` itself, or the value of a Deferred that already fired with one; else the Deferred.

    A Deferred that is pending, paused, running its callbacks, or fired with a
    ``Failure`` is returned as it is: the caller chains on it (which consumes
    a failure), so errors take exactly the Deferred path.
    """
    if (
        _deferred(result)
        and result.called
        and not result.paused
        and not getattr(result, "_runningCallbacks", True)
        and not isinstance(result.result, Failure)
    ):
        return result.result
    return result


def _field_getter(cls: type) -> tuple[Callable[[Any], tuple[Any, ...]], int] | None:
    """An ``attrgetter`` of ``cls``'s fields in ``__init__`` order and the index of ``max_forwards``."""
    fields = attrs.fields(cls)
    if any(not field.init or field.alias != field.name for field in fields):
        return None
    names = [field.name for field in fields]
    return operator.attrgetter(*names), names.index("max_forwards")


_MESSAGE_FIELDS = _field_getter(Message)


def _one_hop_less(message: Message) -> Message:
    """``message`` with MaxForwards lowered by one (RFC 3860 §4.1).

    The same value as ``attrs.evolve(message, max_forwards=...)`` (validators
    included), built positionally: a third of evolve's cost, which is measured
    on the message hot path.
    """
    if _MESSAGE_FIELDS is None or message.__class__ is not Message:
        return attrs.evolve(message, max_forwards=message.max_forwards - 1)
    getter, index = _MESSAGE_FIELDS
    values = list(getter(message))
    values[index] -= 1
    return Message(*values)


@implementer(IBus)
class Bus:
    """The central router (see the module docstring for the rules).

    :param reactor: clock and network of everything on the bus.
    :param store: the ``IStore``.
    :param policy: the ``IPolicy``.
    :param routes: the static routing table, domain -> adapter name.
    :param resolver: an ``IResolver`` (e.g. :class:`cpimgw.routing.SRVResolver`)
        consulted last; ``None`` for none.
    :param duplicate_ttl: how long (seconds) a message key is remembered.
    :param default_duration: the subscription lifetime adapters ask for when
        their protocol names none (``bus.presence.default_duration``).
    :param max_duration: the gateway's cap on subscription durations.
    :param adapter_labels: adapter name -> its RFC 3861 protocol labels.
    :param purge_interval: seconds between purges of old duplicate keys.
    :param resolve_cache_ttl: seconds a resolver answer (or its absence) is kept.
    :param resolve_cache_size: how many resolver answers are kept (the least
        recently used is evicted first).
    :param max_forwards: the most hops an operation may still take when it
        enters the bus (``[bus] max_forwards``): an incoming ``Message``,
        ``Subscribe`` or ``Notify`` carrying more is clamped down to it (counter
        ``max_forwards_clamped``), so that a forged huge value cannot defeat
        the loop guard (RFC 3860 §4.1).
    :raise cpimgw.cpim.errors.ConfigError: ``max_forwards`` is not an integer
        from 1 to 255.
    """

    def __init__(
        self,
        reactor: Any,
        store: Any,
        policy: Any,
        *,
        routes: Mapping[str, str] = {},
        resolver: Any = None,
        duplicate_ttl: float = 86400.0,
        default_duration: int = 3600,
        max_duration: int = 86400,
        adapter_labels: Mapping[str, tuple[str, ...]] = {},
        purge_interval: float = 3600.0,
        resolve_cache_ttl: float = 300.0,
        resolve_cache_size: int = 10000,
        max_forwards: int = 120,
    ) -> None:
        from cpimgw.presence import PresenceService

        if isinstance(max_forwards, bool) or not isinstance(max_forwards, int) or not 1 <= max_forwards <= 255:
            raise ConfigError(f"must be an integer from 1 to 255, got {max_forwards!r}", key="bus.max_forwards")
        self.max_forwards = max_forwards

        self.reactor = reactor
        self.store = store
        if getattr(store, "clock", False) is None:
            # The store's adapter values expire on the bus's clock (a test's
            # task.Clock included) unless the store was given its own.
            store.clock = reactor
        self.policy = policy
        self.routes = StaticRoutes(routes)
        self.resolver = resolver
        self.duplicate_ttl = float(duplicate_ttl)
        self.adapter_labels = {name: tuple(labels) for name, labels in dict(adapter_labels).items()}
        self.purge_interval = float(purge_interval)
        self.resolve_cache_ttl = float(resolve_cache_ttl)
        self.resolve_cache_size = int(resolve_cache_size)
        self.counters: Counter[str] = Counter({name: 0 for name in COUNTER_NAMES})
        self.presence = PresenceService(self, default_duration=default_duration, max_duration=max_duration)
        self._adapters: dict[str, Any] = {}
        self._domains: dict[str, Any] = {}
        self._resolved: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._in_flight: dict[str, list[Deferred[Response]]] = {}
        self._purge: LoopingCall | None = None
        self.running = False

    # -- adapters ----------------------------------------------------------

    @property
    def adapters(self) -> dict[str, Any]:
        """The registered adapters by name (a copy)."""
        return dict(self._adapters)

    def register(self, adapter: Any) -> None:
        """Attach an ``IAdapter``.

        :raise TypeError: if it does not provide ``IAdapter``.
        :raise ValueError: if its name, or one of its domains, is already taken.
        """
        if not IAdapter.providedBy(adapter):
            raise TypeError(f"{adapter!r} does not provide IAdapter")
        name = adapter.name
        if name in self._adapters:
            raise ValueError(f"an adapter named {name!r} is already registered")
        domains = [normalise_domain(domain) for domain in adapter.domains]
        for domain in domains:
            holder = self._domains.get(domain)
            if holder is not None:
                raise ValueError(f"domain {domain!r} of adapter {name!r} is already served by {holder.name!r}")
        self._adapters[name] = adapter
        for domain in domains:
            self._domains[domain] = adapter
        self._resolved.clear()
        log.info("adapter {adapter} registered for {domains}", adapter=name, domains=domains)

    def unregister(self, adapter: Any) -> None:
        """Detach an adapter; its domains then have no route (unless another path finds one)."""
        name = adapter.name
        if self._adapters.get(name) is not adapter:
            return
        del self._adapters[name]
        for domain in [domain for domain, holder in self._domains.items() if holder is adapter]:
            del self._domains[domain]
        self._resolved.clear()
        log.info("adapter {adapter} unregistered", adapter=name)

    def adapter_named(self, name: str) -> Any:
        """The registered adapter called ``name``, or ``None``."""
        return self._adapters.get(name)

    def _labels(self) -> list[tuple[str, str]]:
        pairs = []
        for name in self._adapters:
            for label in self.adapter_labels.get(name, ()):
                pairs.append((label, name))
        return pairs

    def adapter_for(self, domain: str) -> Deferred[Any]:
        """``Deferred[IAdapter | None]``: the adapter that reaches ``domain``."""
        found = self.adapter_for_now(domain)
        return found if _deferred(found) else succeed(found)

    def adapter_for_now(self, domain: str) -> Any:
        """:meth:`adapter_for`, but the adapter (or ``None``) itself when known without resolving.

        A ``Deferred`` only when the RFC 3861 resolver has to be asked.
        """
        domain = normalise_domain(domain)
        name = self.routes.lookup(domain)
        if name is not None:
            adapter = self._adapters.get(name)
            if adapter is None:
                log.warn("route of {domain} names adapter {adapter}, which is not registered",
                         domain=domain, adapter=name)
            return adapter
        adapter = self._domains.get(domain)
        if adapter is not None or self.resolver is None:
            return adapter
        pairs = self._labels()
        if not pairs:
            return None
        now = self.reactor.seconds()
        cached = self._resolved.get(domain)
        if cached is not None and cached[0] > now:
            self._resolved.move_to_end(domain)  # least recently used is evicted first
            return self._adapters.get(cached[1]) if cached[1] else None
        labels = []
        for label, _name in pairs:
            if label not in labels:
                labels.append(label)

        def found(label: str | None) -> Any:
            name = next((n for lab, n in pairs if lab == label), None) if label else None
            self._resolved.pop(domain, None)
            while self._resolved and len(self._resolved) >= self.resolve_cache_size:
                self._resolved.popitem(last=False)
            self._resolved[domain] = (self.reactor.seconds() + self.resolve_cache_ttl, name)
            return self._adapters.get(name) if name else None

        def failed(reason: Failure) -> None:
            log.failure("resolving {domain} failed", reason, domain=domain)
            return None

        return maybeDeferred(self.resolver.resolve, domain, labels).addCallbacks(found, failed)

    # -- dispatch ----------------------------------------------------------

    def dispatch(self, operation: Any) -> Deferred[Response]:
        """Route one operation; ``Deferred[Response]`` that never errbacks."""
        self.counters["dispatched"] += 1
        if getattr(operation, "max_forwards", 0) > self.max_forwards and isinstance(
                operation, (Message, Subscribe, Notify)):
            self.counters["max_forwards_clamped"] += 1
            log.debug("{op} {trans_id}: MaxForwards {got} clamped to {limit}", op=type(operation).__name__,
                      trans_id=operation.trans_id, got=operation.max_forwards, limit=self.max_forwards)
            operation = attrs.evolve(operation, max_forwards=self.max_forwards)
        if isinstance(operation, Message):
            handler: Callable[[Any], Any] = self._message
        elif isinstance(operation, Subscribe):
            handler = self.presence.subscribe
        elif isinstance(operation, Notify):
            handler = self.presence.notify
        elif isinstance(operation, Publish):
            handler = self.presence.publish
        else:
            self.counters["invalid"] += 1
            self.counters["failed"] += 1
            trans_id = getattr(operation, "trans_id", None) or "-"
            return succeed(Response(trans_id, Status.FAILURE, f"not a CPIM operation: {type(operation).__name__}",
                                    Condition.BAD_REQUEST))
        try:
            result = handler(operation)
        except Exception:
            return succeed(self._internal(Failure(), operation))
        if _deferred(result):
            return result.addErrback(self._internal, operation)
        if isinstance(result, Failure):
            return succeed(self._internal(result, operation))
        if iscoroutine(result):
            return Deferred.fromCoroutine(result).addErrback(self._internal, operation)
        return succeed(result)

    def _internal(self, reason: Failure, operation: Any) -> Response:
        self.counters["internal"] += 1
        self.counters["failed"] += 1
        log.failure("internal error handling {op}", reason, op=type(operation).__name__,
                    trans_id=getattr(operation, "trans_id", None))
        return failure(operation, Condition.INTERNAL, f"internal error: {reason.getErrorMessage()}")

    def _refuse(self, operation: Any, counter: str, condition: Condition, reason: str) -> Response:
        self.counters[counter] += 1
        self.counters["failed"] += 1
        log.info("{op} {trans_id} refused: {reason}", op=type(operation).__name__,
                 trans_id=operation.trans_id, reason=reason, condition=condition.value, event="bus.refused")
        return failure(operation, condition, reason)

    def _message(self, message: Message) -> Response | Deferred[Response] | Failure:
        """The RFC 3860 steps of the module docstring: the ``Response`` when every step answered at once.

        Otherwise a ``Deferred[Response]`` that errbacks when the bus itself
        failed; a ``Failure`` (the same, known at once) is returned, not raised.
        """
        problem = _invalid_inbox(message.source, "source") or _invalid_inbox(message.destination, "destination")
        if problem:
            return self._refuse(message, "invalid", Condition.BAD_REQUEST, problem)
        if message.max_forwards <= 0:
            return self._refuse(message, "loops", Condition.LOOP,
                                f"MaxForwards reached 0 (message from {message.source})")
        key = message_key(message)
        waiting = self._in_flight.get(key)
        if waiting is not None:
            self.counters["duplicates"] += 1
            first: Deferred[Response] = Deferred()
            waiting.append(first)
            return first.addCallback(_respond_as, message, "duplicate suppressed")
        self._in_flight[key] = []
        try:
            decided = _now(self._decide(message, key))
        except Exception:
            return self._crashed(Failure(), message, key, None)
        if _deferred(decided):
            return decided.addCallbacks(self._decided, self._crashed, (message, key), None, (message, key, None))
        return self._decided(decided, message, key)

    def _decide(self, message: Message, key: str) -> Response | Deferred[Response]:
        """Step 3 (the duplicate key) and then steps 4-7 for a fresh message; may raise."""
        store = self.store
        remember = _synchronous(store.remember)
        fresh = _now(remember(key, self.reactor.seconds(), self.duplicate_ttl))
        if _deferred(fresh):
            return fresh.addCallback(self._remembered, message, key)
        return self._remembered(fresh, message, key)

    def _remembered(self, fresh: bool, message: Message, key: str) -> Response | Deferred[Response]:
        if not fresh:
            self.counters["duplicates"] += 1
            log.info("duplicate message {key!r} suppressed", key=key.replace("\x00", " "))
            return Response(message.trans_id, Status.SUCCESS, "duplicate suppressed")
        return self._route_message(message)

    def _decided(self, response: Response, message: Message, key: str) -> Response | Deferred[Response] | Failure:
        """The first copy's answer is known: forget its key if it failed, then answer the waiting copies."""
        if response.status is Status.FAILURE:
            forget = getattr(self.store, "forget", None)
            if forget is not None:
                try:
                    forgotten = _now(_synchronous(forget)(key))
                except Exception:
                    return self._crashed(Failure(), message, key, response)
                if _deferred(forgotten):
                    return forgotten.addCallbacks(self._release, self._crashed, (key, response), None,
                                                  (message, key, response))
        return self._release(None, key, response)

    def _release(self, _: object, key: str, response: Response) -> Response:
        for follower in self._in_flight.pop(key, ()):
            follower.callback(response)
        return response

    def _crashed(self, reason: Failure, message: Message, key: str,
                 response: Response | None) -> Failure | Deferred[Response]:
        """The bus failed on the first copy: forget its key (errors ignored), answer the waiting copies, fail."""
        forget = getattr(self.store, "forget", None)
        if forget is not None:
            forgotten = _now(maybeDeferred(forget, key).addErrback(lambda _: None))
            if _deferred(forgotten):
                return forgotten.addCallback(lambda _: self._crash_release(reason, message, key, response))
        return self._crash_release(reason, message, key, response)

    def _crash_release(self, reason: Failure, message: Message, key: str, response: Response | None) -> Failure:
        if response is None:
            response = Response(message.trans_id, Status.FAILURE, "internal error", Condition.INTERNAL)
        self._release(None, key, response)
        return reason

    def _route_message(self, message: Message) -> Response | Deferred[Response]:
        """Steps 4-7; may raise (or errback)."""
        domain = message.destination.domain_key
        adapter = _now(self.adapter_for_now(domain))
        if _deferred(adapter):
            return adapter.addCallback(self._routed, message, domain)
        return self._routed(adapter, message, domain)

    def _routed(self, adapter: Any, message: Message, domain: str) -> Response | Deferred[Response]:
        if adapter is None:
            return self._refuse(message, "no_route", Condition.NO_ROUTE, f"no route to domain {domain}")
        refusal = _now(_synchronous(self.policy.may_message)(message))
        if _deferred(refusal):
            return refusal.addCallback(self._allowed, message, adapter)
        return self._allowed(refusal, message, adapter)

    def _allowed(self, refusal: str | None, message: Message, adapter: Any) -> Response | Deferred[Response]:
        if refusal is not None:
            return self._refuse(message, "refused", Condition.FORBIDDEN, refusal)
        if not IMessaging.providedBy(adapter):
            return self._refuse(message, "unsupported", Condition.UNSUPPORTED,
                                f"adapter {adapter.name!r} does not provide IMessaging")
        return self.deliver_now(adapter, _one_hop_less(message))

    def deliver(self, adapter: Any, operation: Any) -> Deferred[Response]:
        """Hand ``operation`` to ``adapter``; ``Deferred[Response]`` that errbacks only when cancelled.

        Counts ``delivered`` (success or indeterminant) or ``failed``; an
        exception, an errback or an answer that is not a ``Response`` becomes
        ``failure internal-server-error``.
        """
        answer = self.deliver_now(adapter, operation)
        return answer if _deferred(answer) else succeed(answer)

    def deliver_now(self, adapter: Any, operation: Any) -> Response | Deferred[Response]:
        """:meth:`deliver`, but the ``Response`` itself when the adapter answered at once.

        The presence fan-out uses it to notify thousands of watchers without
        a Deferred chain per watcher when the adapters answer synchronously.
        """
        try:
            result = adapter.deliver(operation)
        except Exception:
            return self._broken(Failure(), adapter, operation)  # type: ignore[return-value]
        if not _deferred(result):
            return self._settle(result, adapter, operation)
        if result.called and not result.paused and not getattr(result, "_runningCallbacks", True):
            value = result.result
            if isinstance(value, Response):  # fired already with an answer: read it, nothing to consume
                return self._settle(value, adapter, operation)
        box: list[Any] = []
        relay: list[Deferred[Any]] = []

        def grab(value: Any) -> None:
            # Before deliver_now returned: keep the value; afterwards: pass it on
            # (a failure included: it is consumed here, and re-raised there).
            if not relay:
                box.append(value)
            elif not relay[0].called:
                relay[0].callback(value)

        result.addBoth(grab)
        if box:
            return self._settle(box[0], adapter, operation)
        onward: Deferred[Any] = Deferred(lambda _: result.cancel())
        relay.append(onward)
        return onward.addCallback(self._answered, adapter, operation).addErrback(self._broken, adapter, operation)

    def _settle(self, value: Any, adapter: Any, operation: Any) -> Response | Deferred[Response]:
        if isinstance(value, Failure):
            outcome = self._broken(value, adapter, operation)
            return outcome if isinstance(outcome, Response) else Deferred.fromFailure(outcome)  # type: ignore[arg-type]
        try:
            return self._answered(value, adapter, operation)
        except Exception:
            return self._broken(Failure(), adapter, operation)  # type: ignore[return-value]

    def _answered(self, response: Any, adapter: Any, operation: Any) -> Response:
        if not isinstance(response, Response):
            raise TypeError(f"adapter {adapter.name!r} answered {type(response).__name__}, not a Response")
        if response.trans_id != operation.trans_id:
            response = attrs.evolve(response, trans_id=operation.trans_id)
        self.counters["delivered" if response.status is not Status.FAILURE else "failed"] += 1
        return response

    def _broken(self, reason: Failure, adapter: Any, operation: Any) -> Response | Failure:
        if reason.check(CancelledError):
            return reason  # the caller gave up (e.g. stopping): not the adapter's fault
        self.counters["internal"] += 1
        self.counters["failed"] += 1
        log.failure("adapter {adapter} failed to deliver {op}", reason, adapter=adapter.name,
                    op=type(operation).__name__, trans_id=operation.trans_id)
        return failure(operation, Condition.INTERNAL,
                       f"adapter {adapter.name!r} failed: {reason.getErrorMessage()}")

    # -- operators' view ----------------------------------------------------

    def snapshot(self) -> Deferred[dict[str, Any]]:
        """``Deferred[dict]``: the health and metrics view (JSON-serialisable).

        ``running`` (the bus), ``counters`` (sorted by name), ``adapters``:
        name -> ``{"running": bool, "connected": bool | None}`` (``None`` when
        the adapter exposes no ``connected``), ``store``: the store's
        ``counts()`` (``{}`` when it has none, ``{"error": reason}`` when
        they could not be read) and ``presence``: armed timers.
        """
        adapters = {}
        for name, adapter in sorted(self._adapters.items()):
            connected = getattr(adapter, "connected", None)
            if callable(connected):
                try:
                    connected = connected()
                except Exception:
                    connected = None
            adapters[name] = {
                "running": bool(getattr(adapter, "running", False)),
                "connected": None if connected is None else bool(connected),
            }
        view: dict[str, Any] = {
            "running": self.running,
            "counters": dict(sorted(self.counters.items())),
            "adapters": adapters,
            "presence": {"subscription_timers": len(self.presence.armed()),
                         "publication_timers": len(self.presence.published_expiries())},
        }
        counts = getattr(self.store, "counts", None)
        if counts is None or not self.running:
            view["store"] = {}
            return succeed(view)

        def stored(result: dict[str, int]) -> dict[str, Any]:
            view["store"] = dict(result)
            return view

        def failed(reason: Failure) -> dict[str, Any]:
            view["store"] = {"error": reason.getErrorMessage()}
            return view

        return maybeDeferred(counts).addCallbacks(stored, failed)

    # -- lifecycle ---------------------------------------------------------

    @inlineCallbacks
    def start(self):  # type: ignore[no-untyped-def]
        """Open the store, reload subscriptions, purge old duplicate keys and schedule purges."""
        yield self.store.open()
        yield self.presence.start()
        yield self.purge()
        self._purge = LoopingCall(self.purge)
        self._purge.clock = self.reactor
        self._purge.start(self.purge_interval, now=False).addErrback(
            lambda reason: log.failure("duplicate key purge stopped", reason))
        self.running = True
        log.info("bus started with {count} adapters", count=len(self._adapters))

    @inlineCallbacks
    def stop(self):  # type: ignore[no-untyped-def]
        """Cancel the timers, wait for the presence service's background work, close the store."""
        if self._purge is not None and self._purge.running:
            self._purge.stop()
        self._purge = None
        yield self.presence.stop()
        self.running = False
        yield self.store.close()

    def purge(self) -> Deferred[int]:
        """Drop duplicate keys whose time has passed; ``Deferred[int]`` of how many."""

        def done(count: int) -> int:
            if count:
                log.debug("purged {count} duplicate keys", count=count)
            return count

        def failed(reason: Failure) -> int:
            log.failure("purging duplicate keys failed", reason)
            return 0

        return maybeDeferred(self.store.expire, self.reactor.seconds()).addCallbacks(done, failed)


__all__ = ["Bus", "message_key", "COUNTER_NAMES", "SYNCHRONOUS_ATTRIBUTE"]
