"""A benchmark-only adapter plugin: ``sink`` answers every message ``success`` at once and keeps nothing.

Put ``benchmarks/plugins`` on ``PYTHONPATH`` of a ``twistd cpimgw`` to have
it (``benchmarks/bench_cluster.py`` does): it is the far end of the
gateway-bound path SIP -> bus -> adapter, so that what is measured is the
gateway, not a peer.  No ``__init__.py`` here: it extends Twisted's
``twisted.plugins``.
"""

from twisted.application.service import Service
from twisted.internet.defer import succeed
from twisted.plugin import IPlugin
from zope.interface import implementer

from cpimgw.interfaces import IAdapter, IAdapterFactory, IMessaging


@implementer(IAdapter, IMessaging)
class SinkAdapter(Service):
    def __init__(self, domains):
        self.name = "sink"
        self.domains = tuple(domains)
        self.count = 0

    def deliver(self, operation):
        from cpimgw.cpim.operations import success

        self.count += 1
        return succeed(success(operation, "sunk"))


@implementer(IAdapterFactory, IPlugin)
class SinkAdapterFactory:
    name = "sink"
    description = "benchmark sink: answers every message success"
    srv_labels = ()

    def defaults(self):
        return {"domains": ["sink.bench"]}

    def build(self, settings, bus):
        return SinkAdapter(settings.get("domains", ["sink.bench"]))


sink = SinkAdapterFactory()
