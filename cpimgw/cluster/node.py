"""One gateway node of a cluster: registry, routing streams, leases (Redis).

Several gateway processes share one :class:`~cpimgw.store.redis.RedisStore`.
A connection to a peer (a PRIM user agent, an XMPP component stream...)
lives on one node; this module is how the others find it and reach it:

Registry
    ``P nodes`` (hash: node id -> JSON: host, pid, started, state) lists the
    nodes; ``P node:<id>`` is the node's heartbeat, rewritten every
    ``heartbeat`` seconds with a TTL of ``node_timeout``: a node whose key has
    gone is dead.  ``P holders`` (hash: resource key -> node id) says which
    node holds the connection a resource key names (``prim.ua:alice@example.com``,
    ``xmpp.component:gw.example.com``); ``P held:<id>`` is the same, per node.

Routing (:meth:`Node.forward`)
    An operation for a resource held by another live node is added to that
    node's stream ``P stream:<id>`` (``XADD``).  Each node reads its own
    stream in the consumer group ``cpimgw`` (``XREADGROUP``), delivers the
    operation through its own connection, adds the ``Response`` to the
    sender's stream and acknowledges the entry (``XACK``) in one atomic
    script -- only after the far side answered.  The sender answers its
    native peer with that response, or with a failure after
    ``forward_timeout`` seconds without one.

Failover (:meth:`Node.claim`)
    Every node watches the registry; the stream of a dead node (or of one
    that left) is taken over: its never-read entries are read with the
    survivor's own consumer name (at once, for a node that left cleanly or
    died), and its pending entries are claimed with ``XAUTOCLAIM`` once idle
    ``claim_idle`` seconds.  A claimed operation is delivered through the connection
    that now holds its resource (the survivor's, or another node's) and
    that the sender did not reach already or, when no node holds it any
    more, by the survivor's own adapter, which answers the native failure
    (e.g. PRIM 408 for a closed inbox); the answer goes back to the sender.
    A *message* the dead node had read but not answered may have been
    delivered: it is answered failure (timeout, "it may have arrived"), not
    delivered twice (RFC 3860 §4: at most once); presence operations are
    delivered again.  Nothing answered success was lost; nothing was
    delivered twice.

Leases (:meth:`Node.lease`)
    ``SET P lease:<name> <id> NX PX ttl``, renewed by the holder.  The
    expiry sweep of subscriptions and publications (RFC 3859 §4.4: a
    subscription ends when its duration runs out) runs on the node holding
    the ``sweep`` lease; singletons such as an XEP-0114 component connection
    (a server accepts one per domain) run on the node holding theirs, and
    another node takes over when the holder dies.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from cpimgw.cluster import codec
from cpimgw.config import ClusterSettings
from cpimgw.cpim.operations import Condition, Message, Response, failure
from cpimgw.store.redis import Script, StoreUnavailable

log = Logger()

GROUP = "cpimgw"
STREAM_MAXLEN = 200000
#: Batches of a dead node's stream taken over per heartbeat, at most.
CLAIM_ROUNDS = 50


# Several nodes may hold one key (a user with agents logged in at two nodes).
_HOLDER = """
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'holders:' .. ARGV[2])) do
  if redis.call('EXISTS', ARGV[1] .. 'node:' .. n) == 1 then out[#out + 1] = n end
end
return out
"""

_HOLD = """
local p, id = ARGV[1], ARGV[2]
for i = 3, #ARGV do
  redis.call('SADD', p .. 'holders:' .. ARGV[i], id)
  redis.call('SADD', p .. 'held:' .. id, ARGV[i])
end
return #ARGV - 2
"""

_RELEASE = """
local p, id = ARGV[1], ARGV[2]
for i = 3, #ARGV do
  redis.call('SREM', p .. 'holders:' .. ARGV[i], id)
  redis.call('SREM', p .. 'held:' .. id, ARGV[i])
end
return 1
"""

_FORGET_NODE = """
local p, id = ARGV[1], ARGV[2]
for _, key in ipairs(redis.call('SMEMBERS', p .. 'held:' .. id)) do
  redis.call('SREM', p .. 'holders:' .. key, id)
end
redis.call('DEL', p .. 'held:' .. id, p .. 'stream:' .. id)
redis.call('HDEL', p .. 'nodes', id)
return 1
"""

# ARGV: prefix, node id, heartbeat JSON, ttl ms.  1 when the heartbeat key was
# still there, 0 when it was not (first beat, or Redis lost its data).
_BEAT = """
local p, id = ARGV[1], ARGV[2]
local had = redis.call('EXISTS', p .. 'node:' .. id)
redis.call('SET', p .. 'node:' .. id, ARGV[3], 'PX', ARGV[4])
redis.call('HSET', p .. 'nodes', id, ARGV[3])
return had
"""

_LEASE = """
local key, id, ttl = ARGV[1] .. 'lease:' .. ARGV[2], ARGV[3], ARGV[4]
local holder = redis.call('GET', key)
if holder == id then redis.call('PEXPIRE', key, ttl) return 1 end
if not holder then redis.call('SET', key, id, 'PX', ttl) return 1 end
return 0
"""

_UNLEASE = """
local key = ARGV[1] .. 'lease:' .. ARGV[2]
if redis.call('GET', key) == ARGV[3] then redis.call('DEL', key) return 1 end
return 0
"""

# ARGV: prefix, the entry's stream, the entry id, the sender's stream, maxlen,
# then the reply's field/value pairs.
_REPLY_AND_ACK = """
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
if ARGV[4] ~= '' then redis.call('XADD', ARGV[4], 'MAXLEN', '~', ARGV[5], '*', unpack(fields)) end
return redis.call('XACK', ARGV[2], 'cpimgw', ARGV[3])
"""

HOLDER = Script(_HOLDER)
HOLD = Script(_HOLD)
RELEASE = Script(_RELEASE)
FORGET_NODE = Script(_FORGET_NODE)
BEAT = Script(_BEAT)
LEASE = Script(_LEASE)
UNLEASE = Script(_UNLEASE)
REPLY_AND_ACK = Script(_REPLY_AND_ACK)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _fields(flat: list[Any]) -> dict[str, bytes]:
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


class _Singleton:
    """A service that runs on one node at a time (the holder of its lease)."""

    def __init__(self, key: str, start: Callable[[], Any], stop: Callable[[], Any]) -> None:
        self.key = key
        self.start = start
        self.stop = stop
        self.running = False


class Node:
    """This process as a member of the cluster (see the module docstring).

    :param bus: the :class:`~cpimgw.cluster.bus.ClusterBus` (its store must be a ``RedisStore``).
    :param node_id: this node's unique id.
    :param settings: the ``[cluster]`` timings.
    """

    def __init__(self, bus: Any, node_id: str, settings: ClusterSettings = ClusterSettings()) -> None:
        self.bus = bus
        self.reactor = bus.reactor
        self.store = bus.store
        self.id = node_id
        self.settings = settings
        self.holding: set[str] = set()
        self.leases: set[str] = set()
        self.singletons: dict[str, _Singleton] = {}
        self.counters: dict[str, int] = {}
        self.started_at = 0.0
        self.running = False
        self._reader: Any = None
        self._waiting: dict[str, tuple[Deferred[Response], Any, Any]] = {}
        self._busy: set[Deferred[Any]] = set()
        self._loops: list[LoopingCall] = []
        self._consuming: Deferred[None] | None = None
        self._left: dict[str, float] = {}
        self._claiming: set[tuple[str, str]] = set()  # (stream, entry id) taken over and still in work

    # -- names ---------------------------------------------------------------

    def stream_of(self, node_id: str) -> str:
        return self.store.key("stream:", node_id)

    @property
    def stream(self) -> str:
        return self.stream_of(self.id)

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def _run(self, script: Script, *args: Any) -> Deferred[Any]:
        return self.store._run(script, *args)

    # -- lifecycle -------------------------------------------------------------

    @inlineCallbacks
    def start(self):  # type: ignore[no-untyped-def]
        """Join: first heartbeat, own stream and group, reader, watchers."""
        self.started_at = self.reactor.seconds()
        yield self.beat()
        yield self._ensure_group(self.stream)
        self.running = True
        self._reader = self.store.new_factory(1, reply_timeout=0)
        self._consuming = self._consume()
        for interval, work in ((self.settings.heartbeat, self._tick),
                               (self.settings.sweep_interval, self._sweep)):
            loop = LoopingCall(work)
            loop.clock = self.reactor
            loop.start(interval, now=False).addErrback(
                lambda reason: log.failure("cluster timer stopped", reason))
            self._loops.append(loop)
        log.info("cluster node {node} joined (stream {stream})", node=self.id, stream=self.stream)

    @inlineCallbacks
    def leave(self):  # type: ignore[no-untyped-def]
        """Leave cleanly: stop reading, finish what is under way, hand the leases and the rest
        of the stream over (the survivors claim it at once), forget the holdings."""
        if not self.running:
            return None
        self.running = False
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        reader, self._reader = self._reader, None
        if reader is not None:
            yield reader.disconnect().addErrback(lambda _: None)
        if self._consuming is not None:
            yield self._consuming
        if self._busy:
            from twisted.internet.defer import DeferredList

            yield DeferredList(list(self._busy), consumeErrors=True)
        for name, singleton in list(self.singletons.items()):
            if singleton.running:
                singleton.running = False
                yield maybeDeferred(singleton.stop).addErrback(lambda _: None)
        try:
            for name in list(self.leases):
                yield self._run(UNLEASE, name, self.id)
            self.leases.clear()
            if self.holding:
                yield self._run(RELEASE, self.id, *sorted(self.holding))
            state = json.dumps(self._description("left"))
            yield self.store.command("HSET", self.store.key("nodes"), self.id, state)
            yield self.store.command("DEL", self.store.key("node:", self.id))
        except Exception as error:  # the store is down: the others find out by the heartbeat's TTL
            log.warn("cluster node {node} could not announce its leave: {error}", node=self.id, error=error)
        for rid, (waiting, timer, operation) in list(self._waiting.items()):
            if timer.active():
                timer.cancel()
            if not waiting.called:
                waiting.callback(failure(operation, Condition.SERVICE_UNAVAILABLE,
                                         "the gateway node is stopping"))
        self._waiting.clear()
        log.info("cluster node {node} left", node=self.id)
        return None

    def _description(self, state: str = "up") -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "started": self.started_at,
                "beat": self.reactor.seconds(), "state": state, "holds": len(self.holding)}

    @inlineCallbacks
    def beat(self):  # type: ignore[no-untyped-def]
        """One heartbeat; after Redis lost our registration, register the group and holdings again."""
        had = yield self._run(BEAT, self.id, json.dumps(self._description()),
                              int(self.settings.node_timeout * 1000))
        if not int(had) and self.running:
            log.info("cluster node {node}: registration was missing (Redis restarted?); registering again",
                     node=self.id)
            yield self._ensure_group(self.stream)
            if self.holding:
                yield self._run(HOLD, self.id, *sorted(self.holding))

    def _ensure_group(self, stream: str) -> Deferred[Any]:
        def exists(reason: Failure) -> None:
            if "BUSYGROUP" not in str(reason.value):
                return reason  # type: ignore[return-value]
            return None

        return self.store.command("XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM").addErrback(exists)

    # -- holdings ----------------------------------------------------------------

    def hold(self, key: str) -> Deferred[Any]:
        """This node now holds the connection ``key`` names (an adapter calls it when it opens)."""
        self.holding.add(key)
        return self._quietly(self._run(HOLD, self.id, key), "registering", key)

    def release(self, key: str) -> Deferred[Any]:
        """This node no longer holds ``key``'s connection."""
        self.holding.discard(key)
        return self._quietly(self._run(RELEASE, self.id, key), "releasing", key)

    def _quietly(self, d: Deferred[Any], what: str, key: str) -> Deferred[Any]:
        def failed(reason: Failure) -> None:
            log.warn("cluster: {what} {key} failed: {error}", what=what, key=key, error=reason.getErrorMessage())

        return d.addErrback(failed)

    def holders_of(self, key: str) -> Deferred[list[str]]:
        """``Deferred[list[str]]``: the live nodes holding ``key`` (this one included when it does), sorted."""
        return self._run(HOLDER, key).addCallback(lambda nodes: sorted(_text(node) for node in nodes or ()))

    # -- forwarding ----------------------------------------------------------------

    def forward(self, node_id: str, adapter_name: str, operation: Any, hops: int = 0,
                targets: Any = ()) -> Deferred[Response]:
        """Hand ``operation`` to ``node_id``'s adapter ``adapter_name``; ``Deferred[Response]`` (never errbacks).

        :param targets: every node the operation is being delivered through (so that a survivor
            claiming this entry does not deliver it again where it already went).
        """
        rid = uuid.uuid4().hex
        answer: Deferred[Response] = Deferred()

        def timed_out() -> None:
            self._waiting.pop(rid, None)
            self.count("forward_timeouts")
            if not answer.called:
                answer.callback(failure(operation, Condition.TIMEOUT,
                                        f"gateway node {node_id} did not answer within "
                                        f"{self.settings.forward_timeout:g} s"))

        timer = self.reactor.callLater(self.settings.forward_timeout, timed_out)
        self._waiting[rid] = (answer, timer, operation)
        self.count("forwarded")

        def not_sent(reason: Failure) -> None:
            self._waiting.pop(rid, None)
            if timer.active():
                timer.cancel()
            log.warn("cluster: forwarding to {node} failed: {error}", node=node_id, error=reason.getErrorMessage())
            if not answer.called:
                answer.callback(failure(operation, Condition.SERVICE_UNAVAILABLE,
                                        f"gateway node {node_id} is unreachable: {reason.getErrorMessage()}"))

        self.store.command(
            "XADD", self.stream_of(node_id), "MAXLEN", "~", STREAM_MAXLEN, "*",
            "k", "op", "op", codec.encode(operation), "a", adapter_name, "from", self.id, "rid", rid,
            "hops", hops, "targets", ",".join(targets) if targets else node_id,
        ).addErrback(not_sent)
        return answer

    # -- reading streams -----------------------------------------------------------

    @inlineCallbacks
    def _consume(self):  # type: ignore[no-untyped-def]
        """Read this node's stream until :meth:`leave` (own pending entries first, after a restart)."""
        position = "0"
        while self.running:
            reader = self._reader
            if reader is None:
                break
            if not reader.pool:
                yield deferLater(self.reactor, 0.2, lambda: None)
                continue
            try:
                reply = yield reader.handler.execute_command(
                    "XREADGROUP", "GROUP", GROUP, self.id, "COUNT", self.settings.batch, "BLOCK", 1000,
                    "STREAMS", self.stream, position, apply_timeout=False)
            except Exception as error:
                if not self.running:
                    break
                if "NOGROUP" in str(error):
                    yield self._ensure_group(self.stream).addErrback(lambda _: None)
                else:
                    log.debug("cluster: reading {stream} failed: {error}", stream=self.stream, error=error)
                    yield deferLater(self.reactor, 0.2, lambda: None)
                continue
            entries = self._entries(reply)
            if position == "0" and not entries:
                position = ">"
            for entry_id, fields in entries:
                self._handle(self.stream, entry_id, fields)

    @staticmethod
    def _entries(reply: Any) -> list[tuple[str, dict[str, bytes]]]:
        found = []
        for _stream, entries in reply or ():
            for entry_id, flat in entries or ():
                if flat is None:  # deleted meanwhile (XAUTOCLAIM reports those separately)
                    continue
                found.append((_text(entry_id), _fields(flat)))
        return found

    def _handle(self, stream: str, entry_id: str, fields: dict[str, bytes]) -> None:
        """One entry of a stream we consume (ours, or a dead node's that we took over)."""
        work = maybeDeferred(self._process, stream, entry_id, fields)
        if stream != self.stream:
            work.addBoth(lambda result: (self._claiming.discard((stream, entry_id)), result)[1])
        work.addErrback(lambda reason: log.failure("cluster: entry {entry} of {stream} failed", reason,
                                                   entry=entry_id, stream=stream))
        if not work.called:
            self._busy.add(work)
            work.addBoth(lambda result: (self._busy.discard(work), result)[1])

    @inlineCallbacks
    def _process(self, stream: str, entry_id: str, fields: dict[str, bytes]):  # type: ignore[no-untyped-def]
        kind = _text(fields.get("k", b""))
        if kind == "reply":
            self._answered(fields, stream == self.stream)
            yield self.store.command("XACK", stream, GROUP, entry_id)
            return None
        sender = _text(fields.get("from", b""))
        rid = _text(fields.get("rid", b""))
        try:
            operation = codec.decode(fields.get("op", b""))
        except codec.CodecError as error:
            log.warn("cluster: entry {entry} of {stream} dropped: {error}", entry=entry_id, stream=stream,
                     error=error)
            self.count("bad_entries")
            yield self.store.command("XACK", stream, GROUP, entry_id)
            return None
        adapter = self.bus.adapter_named(_text(fields.get("a", b"")))
        if fields.get("uncertain") and isinstance(operation, Message):
            # RFC 3860 §4: a message is delivered at most once.  The dead node read this one and
            # may have handed it on before dying; the sender hears that the outcome is unknown
            # (a failure, never a success) rather than the recipient seeing it twice.  Presence
            # operations are state and are delivered again (at least once).
            self.count("uncertain")
            response = failure(operation, Condition.TIMEOUT,
                               f"gateway node {stream[len(self.stream_of('')):]} died while delivering it; "
                               "it may have arrived")
        elif adapter is None:
            response = failure(operation, Condition.NO_ROUTE, f"no adapter {_text(fields.get('a', b''))!r} "
                               f"on gateway node {self.id}")
        else:
            hops = int(_text(fields.get("hops", b"0")) or 0)
            targets = tuple(filter(None, _text(fields.get("targets", b"")).split(",")))
            response = yield self.bus.deliver_held(adapter, operation, hops=hops + 1,
                                                   claimed=stream != self.stream, targets=targets)
        self.count("served" if stream == self.stream else "served_for_others")
        reply = ["k", "reply", "rid", rid, "r", codec.encode(response), "by", self.id]
        yield self._run(REPLY_AND_ACK, stream, entry_id, self.stream_of(sender) if sender else "", STREAM_MAXLEN,
                        *reply)
        return None

    def _answered(self, fields: dict[str, bytes], mine: bool) -> None:
        rid = _text(fields.get("rid", b""))
        waiting = self._waiting.pop(rid, None)
        if waiting is None:
            if mine:
                self.count("late_replies")
            return
        answer, timer, operation = waiting
        if timer.active():
            timer.cancel()
        try:
            response = codec.decode(fields.get("r", b""))
        except codec.CodecError as error:
            response = failure(operation, Condition.INTERNAL, f"unreadable answer from another node: {error}")
        if not isinstance(response, Response):
            response = failure(operation, Condition.INTERNAL, "the other node answered no Response")
        if not answer.called:
            answer.callback(response)

    # -- the periodic work ------------------------------------------------------------

    @inlineCallbacks
    def _tick(self):  # type: ignore[no-untyped-def]
        try:
            yield self.beat()
            for key in list(self.singletons):
                yield self._keep_singleton(self.singletons[key])
            yield self.claim()
        except StoreUnavailable:
            self.count("store_unavailable")
        except Exception as error:  # Redis went away mid-call (it reconnects), or we are leaving
            if self.running:
                self.count("tick_errors")
                log.warn("cluster node {node}: heartbeat/claim failed: {error}", node=self.id, error=error)

    def lease(self, name: str, ttl: float | None = None) -> Deferred[bool]:
        """Take or renew the lease ``name`` for ``ttl`` seconds (``node_timeout`` by default): whether we hold it."""
        ms = int((ttl if ttl is not None else self.settings.node_timeout) * 1000)

        def held(answer: Any) -> bool:
            ours = bool(int(answer))
            if ours and name not in self.leases:
                log.info("cluster node {node} took the lease {lease}", node=self.id, lease=name)
            if ours:
                self.leases.add(name)
            else:
                self.leases.discard(name)
            return ours

        return self._run(LEASE, name, self.id, ms).addCallback(held)

    @inlineCallbacks
    def _sweep(self):  # type: ignore[no-untyped-def]
        """On the holder of the ``sweep`` lease: end the subscriptions and publications whose time has come."""
        try:
            if not (yield self.lease("sweep")):
                return None
            presence = self.bus.presence
            now = self.reactor.seconds()
            due = yield self.store.due_subscriptions(now, self.settings.batch)
            for subscript_id in due:
                yield presence._run(presence._expire, subscript_id)
            for presentity, instance in (yield self.store.due_presence(now, self.settings.batch)):
                yield presence._run(presence._presence_expired, presentity, instance)
            if due:
                self.count("swept", len(due))
        except StoreUnavailable:
            self.count("store_unavailable")
        except Exception as error:
            if self.running:
                self.count("sweep_errors")
                log.warn("cluster node {node}: sweep failed: {error}", node=self.id, error=error)
        return None

    # -- singletons ---------------------------------------------------------------------

    def singleton(self, key: str, start: Callable[[], Any], stop: Callable[[], Any]) -> Deferred[Any]:
        """Run ``start()`` while this node holds the lease ``key`` (and hold ``key`` as a
        connection), ``stop()`` when it loses it; another node takes over when this one dies."""
        singleton = _Singleton(key, start, stop)
        self.singletons[key] = singleton
        return self._keep_singleton(singleton).addErrback(lambda _: None)

    @inlineCallbacks
    def drop_singleton(self, key: str):  # type: ignore[no-untyped-def]
        singleton = self.singletons.pop(key, None)
        if singleton is None:
            return None
        if singleton.running:
            singleton.running = False
            yield maybeDeferred(singleton.stop)
            yield self.release(key)
        if key in self.leases:
            self.leases.discard(key)
            yield self._run(UNLEASE, key, self.id).addErrback(lambda _: None)
        return None

    @inlineCallbacks
    def _keep_singleton(self, singleton: _Singleton):  # type: ignore[no-untyped-def]
        try:
            ours = yield self.lease(singleton.key)
        except Exception:
            ours = False
        if ours and not singleton.running:
            singleton.running = True
            log.info("cluster node {node} runs {key}", node=self.id, key=singleton.key)
            yield maybeDeferred(singleton.start)
            yield self.hold(singleton.key)
        elif not ours and singleton.running:
            singleton.running = False
            log.warn("cluster node {node} lost the lease of {key}; stopping it", node=self.id, key=singleton.key)
            self.holding.discard(singleton.key)
            yield maybeDeferred(singleton.stop)

    # -- failover -----------------------------------------------------------------------

    @inlineCallbacks
    def nodes(self):  # type: ignore[no-untyped-def]
        """``Deferred[dict[str, dict]]``: every registered node's description, with ``alive``."""
        flat = yield self.store.command("HGETALL", self.store.key("nodes"))
        described = {}
        for node_id, text in _fields(flat or []).items():
            try:
                description = json.loads(_text(text))
            except ValueError:
                description = {}
            alive = yield self.store.command("EXISTS", self.store.key("node:", node_id))
            description["alive"] = bool(int(alive))
            described[node_id] = description
        return described

    @inlineCallbacks
    def claim(self):  # type: ignore[no-untyped-def]
        """Take over the streams of dead nodes (see the module docstring); ``Deferred[int]`` of entries taken."""
        taken = 0
        nodes = yield self.nodes()
        now = self.reactor.seconds()
        for node_id, description in nodes.items():
            if node_id == self.id or description["alive"]:
                self._left.pop(node_id, None)
                continue
            first_seen = self._left.setdefault(node_id, now)
            stream = self.stream_of(node_id)
            yield self._ensure_group(stream).addErrback(lambda _: None)
            entries: list[tuple[str, dict[str, bytes]]] = []
            for _ in range(CLAIM_ROUNDS):  # a dead node's backlog is taken in batches, within one tick
                fresh = yield self.store.command(
                    "XREADGROUP", "GROUP", GROUP, self.id, "COUNT", self.settings.batch, "STREAMS", stream, ">")
                batch = self._entries(fresh)
                # XAUTOCLAIM also returns entries this node claimed earlier and is still working on
                # (their idle time runs again): those are skipped, not worked on twice.
                claimed = yield self.store.command(
                    "XAUTOCLAIM", stream, GROUP, self.id, int(self.settings.claim_idle * 1000), "0-0",
                    "COUNT", self.settings.batch)
                if claimed and len(claimed) > 1:
                    # Read by the dead node but not answered: it may have delivered them already.
                    for entry_id, fields in self._entries([[stream, claimed[1]]]):
                        if (stream, entry_id) in self._claiming:
                            continue
                        fields["uncertain"] = b"1"
                        batch.append((entry_id, fields))
                for entry_id, fields in batch:
                    self._claiming.add((stream, entry_id))
                    self._handle(stream, entry_id, fields)
                entries += batch
                if len(batch) < self.settings.batch:
                    break
            if entries:
                self.count("claimed", len(entries))
                log.info("cluster node {node} took over {count} entries of dead node {dead}", node=self.id,
                         count=len(entries), dead=node_id)
            taken += len(entries)
            if not entries and now - first_seen > max(60.0, 10 * self.settings.node_timeout):
                pending = yield self.store.command("XPENDING", stream, GROUP)
                if not pending or not int(pending[0] or 0):
                    yield self._run(FORGET_NODE, node_id)
                    self._left.pop(node_id, None)
                    log.info("cluster: dead node {dead} forgotten", dead=node_id)
        return taken

    # -- operators' view -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"node": self.id, "holds": len(self.holding), "leases": sorted(self.leases),
                "waiting": len(self._waiting), "counters": dict(sorted(self.counters.items()))}


__all__ = ["Node", "ClusterSettings", "GROUP"]
