"""Several gateway nodes on one Redis: shared store, registry, routing streams, leases, workers.

:mod:`cpimgw.cluster.bus` (the bus of a node), :mod:`cpimgw.cluster.node`
(registry, streams, leases), :mod:`cpimgw.cluster.codec` (operations between
nodes), :mod:`cpimgw.cluster.workers` (N processes under one twistd) and
:mod:`cpimgw.cluster.status` (``cpimgw cluster status``).
"""
