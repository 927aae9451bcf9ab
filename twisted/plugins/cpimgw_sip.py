"""The SIP/SIMPLE adapter plugin: ``IAdapterFactory`` ``sip`` and ``INativeCodec`` ``sip``.

Found with ``getPlugins(IAdapterFactory)`` / ``getPlugins(INativeCodec)``.
Import-cheap on purpose: :mod:`cpimgw.adapters.sip` is imported inside
``defaults()``, ``build()`` and the codec methods.  No ``__init__.py`` in this
directory: it extends Twisted's ``twisted.plugins``.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from cpimgw.interfaces import IAdapterFactory, INativeCodec


@implementer(IAdapterFactory, IPlugin)
class SipAdapterFactory:
    """Builds the SIP adapter (our RFC 3261 stack: UDP, TCP, TLS)."""

    name = "sip"
    description = "SIP/SIMPLE (RFC 3261/3428/3856/3903/6665) on UDP/TCP/TLS, mapped per RFC 7247/7248/7572"
    srv_labels = ("_sip",)

    def defaults(self):
        from cpimgw.adapters.sip.adapter import defaults

        return defaults()

    def build(self, settings, bus):
        from cpimgw.adapters.sip.adapter import build

        return build(settings, bus)


@implementer(INativeCodec, IPlugin)
class SipNativeCodec:
    """``sip``: one SIP request or response for ``cpimgw parse`` / ``cpimgw translate``."""

    name = "sip"

    def _codec(self):
        from cpimgw.adapters.sip.codec import SipCodec

        return SipCodec()

    def parse(self, data):
        return self._codec().parse(data)

    def to_operation(self, data):
        return self._codec().to_operation(data)

    def from_operation(self, operation):
        return self._codec().from_operation(operation)


sip = SipAdapterFactory()
sip_codec = SipNativeCodec()
