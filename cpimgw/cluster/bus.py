"""The bus of a cluster node: the CPIM bus (RFC 3859/3860 semantics unchanged) plus routing to
the node that holds a connection.

:class:`ClusterBus` is a :class:`cpimgw.bus.Bus` whose last step -- handing an
operation to an adapter -- first asks the adapter which connection would
deliver it.  An adapter that knows (it has a ``cluster_key(operation)``
method, returning a resource key such as ``prim.ua:alice@example.com`` or
``None``) gets the operation locally when this node holds that connection or
when no live node does; otherwise the operation goes to the holder through
its Redis Stream (:meth:`cpimgw.cluster.node.Node.forward`) and the holder's
answer is this delivery's answer.  Adapters without ``cluster_key`` (a SIP
adapter over UDP, an s2s stream any node can open) are delivered to locally,
as on a single node.

Expiry timers do not run per node: the presence service's own timers are
off (``presence.local_timers``) and the node holding the ``sweep`` lease
ends what is due (:meth:`cpimgw.cluster.node.Node._sweep`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from cpimgw.bus import Bus
from cpimgw.cluster.node import Node
from cpimgw.config import ClusterSettings
from cpimgw.cpim.operations import Condition, Response, Status, failure

log = Logger()

#: How many times an operation may be passed on between nodes (the holder
#: changed while it travelled) before the last node delivers it itself.
MAX_HOPS = 2


def _most_positive(responses: list[Response]) -> Response:
    """Success over indeterminant over failure (the first of its kind)."""
    for status in (Status.SUCCESS, Status.INDETERMINANT):
        for response in responses:
            if response.status is status:
                return response
    return responses[0]


class ClusterBus(Bus):
    """A :class:`~cpimgw.bus.Bus` on a shared Redis store, member of a cluster.

    :param node_id: this node's unique id (``[cluster] node``).
    :param cluster: the ``[cluster]`` timings.
    Every other argument is :class:`~cpimgw.bus.Bus`'s.
    """

    def __init__(self, reactor: Any, store: Any, policy: Any, *, node_id: str,
                 cluster: ClusterSettings = ClusterSettings(), **kwargs: Any) -> None:
        super().__init__(reactor, store, policy, **kwargs)
        self.presence.local_timers = False
        self.cluster = Node(self, node_id, cluster)
        if hasattr(store, "owner"):
            store.owner = node_id  # duplicate keys in flight here are marked with this node

    def _decided(self, response: Response, message: Any, key: str) -> Any:
        # A message handed on keeps its duplicate key, without the in-flight mark (RedisStore.remember):
        # should this node die now, a retransmission reaching another node is still suppressed.
        if response.status is not Status.FAILURE:
            settle = getattr(self.store, "settle", None)
            if settle is not None:
                settle(key).addErrback(lambda reason: log.debug("settling {key} failed: {error}", key=key,
                                                                error=reason.getErrorMessage()))
        return Bus._decided(self, response, message, key)

    def deliver_now(self, adapter: Any, operation: Any) -> Any:
        key_of = getattr(adapter, "cluster_key", None)
        if key_of is None:
            return Bus.deliver_now(self, adapter, operation)
        try:
            key = key_of(operation)
        except Exception:
            key = None
        if key is None or not self.cluster.running:
            return Bus.deliver_now(self, adapter, operation)
        return self._route(key, adapter, operation, 0)

    def deliver_held(self, adapter: Any, operation: Any, hops: int = 0, *, claimed: bool = False,
                     targets: tuple[str, ...] = ()) -> Deferred[Response]:
        """Deliver an operation another node passed on (a stream entry).

        From this node's own stream: through this node's adapter (the sender
        chose this node among the holders, and reached the others itself).
        Claimed from a dead node's stream: through the live nodes holding the
        connection now that the sender did not reach already (``targets``:
        the holders it sent to), or through this node's adapter when no node
        holds it any more (its native answer); at most :data:`MAX_HOPS` passes.
        """
        key_of = getattr(adapter, "cluster_key", None)
        key = None
        if claimed and key_of is not None and hops < MAX_HOPS:
            try:
                key = key_of(operation)
            except Exception:
                key = None
        if key is None:
            return self.deliver_here(adapter, operation)
        return self._route(key, adapter, operation, hops, reached=targets)

    def deliver_here(self, adapter: Any, operation: Any) -> Deferred[Response]:
        """Through this node's own adapter, whatever the registry says."""
        answer = Bus.deliver_now(self, adapter, operation)
        return answer if isinstance(answer, Deferred) else succeed(answer)

    def _route(self, key: str, adapter: Any, operation: Any, hops: int,
               reached: tuple[str, ...] = ()) -> Deferred[Response]:
        """Deliver through every live node holding ``key`` (here when none does); the most positive
        answer wins, as a native network answers for a user with several devices.  Nodes in
        ``reached`` had it already (a claimed entry's first delivery): they are not sent it again."""
        me = self.cluster.id

        def found(holders: list[str]) -> Any:
            if holders and reached:
                holders = [node for node in holders if node not in reached]
                if not holders:
                    return succeed(failure(operation, Condition.UNAVAILABLE,
                                           "the connection it was sent to is gone; the others have it"))
            others = [node for node in holders if node != me]
            if not others:
                return self.deliver_here(adapter, operation)
            answers = [self.cluster.forward(node, adapter.name, operation, hops, targets=holders)
                       for node in others]
            if me in holders:
                answers.insert(0, self.deliver_here(adapter, operation))
            if len(answers) == 1:
                return answers[0].addCallback(self._answered, adapter, operation)
            return gatherResults(answers).addCallback(_most_positive).addCallback(
                self._answered, adapter, operation)

        def unknown(reason: Failure) -> Any:
            # The registry cannot be read (store down): this node's own adapter answers.
            log.debug("cluster: holder of {key} unknown ({error}); delivering here", key=key,
                      error=reason.getErrorMessage())
            return self.deliver_here(adapter, operation)

        return self.cluster.holders_of(key).addCallbacks(found, unknown)

    # -- lifecycle -------------------------------------------------------------

    @inlineCallbacks
    def start(self):  # type: ignore[no-untyped-def]
        yield Bus.start(self)
        yield self.cluster.start()

    @inlineCallbacks
    def stop(self):  # type: ignore[no-untyped-def]
        yield self.cluster.leave()
        yield Bus.stop(self)

    def snapshot(self) -> Deferred[dict[str, Any]]:
        def add(view: dict[str, Any]) -> dict[str, Any]:
            view["cluster"] = self.cluster.snapshot()
            return view

        return Bus.snapshot(self).addCallback(add)


__all__ = ["ClusterBus", "MAX_HOPS"]
