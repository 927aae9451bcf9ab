"""The XMPP adapter plugin: ``IAdapterFactory`` ``xmpp`` and ``INativeCodec`` ``xmpp``.

Found with ``getPlugins(IAdapterFactory)`` / ``getPlugins(INativeCodec)``.
Import-cheap on purpose: :mod:`cpimgw.adapters.xmpp` is imported inside
``build()``, ``defaults()`` and the codec methods.  No ``__init__.py`` in this
directory: it extends Twisted's ``twisted.plugins``.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from cpimgw.interfaces import IAdapterFactory, INativeCodec


@implementer(IAdapterFactory, IPlugin)
class XMPPAdapterFactory:
    """Builds the XMPP adapter (an XMPP server-to-server peer, or an XEP-0114 component of an XMPP server)."""

    name = "xmpp"
    description = ("XMPP (RFC 6120/6121) as a server-to-server peer (dialback, STARTTLS) or an XEP-0114 "
                   "external component, mapped per RFC 3922/7247/7248/7572")
    srv_labels = ("_xmpp",)

    def defaults(self):
        from cpimgw.adapters.xmpp.adapter import DEFAULTS

        def copy(value):
            if isinstance(value, (list, tuple)):
                return list(value)
            return dict(value) if isinstance(value, dict) else value

        return {key: copy(value) for key, value in DEFAULTS.items()}

    def build(self, settings, bus):
        from cpimgw.adapters.xmpp.adapter import XMPPAdapter, XMPPSettings

        return XMPPAdapter(self.name, bus, XMPPSettings.from_mapping(settings))


@implementer(INativeCodec, IPlugin)
class XMPPNativeCodec:
    """``xmpp``: one XMPP stanza for ``cpimgw parse`` / ``cpimgw translate``."""

    name = "xmpp"

    def __init__(self, settings=None, private_carriage=False):
        self._settings = dict(settings or {})
        self._private_carriage = private_carriage

    def _codec(self):
        from cpimgw.adapters.xmpp.codec import DEFAULT_GATEWAY, DEFAULT_SUBSCRIPTION_DURATION, XMPPCodec

        settings = self._settings
        return XMPPCodec(settings.get("domain", DEFAULT_GATEWAY), private_carriage=self._private_carriage,
                         subscription_duration=settings.get("subscription_duration", DEFAULT_SUBSCRIPTION_DURATION),
                         xmpp_domains=tuple(settings.get("xmpp_domains", ())))

    def for_settings(self, settings):
        """The codec as the adapter of ``[adapters.xmpp]`` maps (``cpimgw translate --config``)."""
        return XMPPNativeCodec(settings, self._private_carriage)

    def with_private_carriage(self):
        """The codec as it writes towards another cpimgw (the private carriage, negotiated by XEP-0030)."""
        return XMPPNativeCodec(self._settings, True)

    def parse(self, data):
        return self._codec().parse(data)

    def to_operation(self, data):
        return self._codec().to_operation(data)

    def from_operation(self, operation):
        return self._codec().from_operation(operation)


xmpp = XMPPAdapterFactory()
xmpp_codec = XMPPNativeCodec()
