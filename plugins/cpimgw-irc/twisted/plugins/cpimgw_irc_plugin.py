"""twistd plugin registrations of the cpimgw-irc distribution: the ``irc`` adapter and the ``irc`` codec.

``irc_adapter`` provides ``cpimgw.interfaces.IAdapterFactory`` and
``irc_codec`` provides ``cpimgw.interfaces.INativeCodec`` (both
``twisted.plugin.IPlugin``), found by cpimgw with ``getPlugins`` exactly
like the built-in adapters.  The codec carries its ``fidelity_profile`` and
``corpus()``, which ``cpimgw fidelity`` looks for.  Import-cheap on purpose:
:mod:`cpimgw_irc` is imported inside the methods.  This directory has no
``__init__.py``: it extends Twisted's ``twisted.plugins`` package.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from cpimgw.interfaces import IAdapterFactory, INativeCodec


@implementer(IAdapterFactory, IPlugin)
class IRCAdapterFactory:
    """Builds the IRC adapter (one bot client on an IRC network, RFC 2812 + IRCv3)."""

    name = "irc"
    description = ("IRC (RFC 2812/1459, IRCv3 message-tags, server-time, away-notify, MONITOR) as one bot "
                   "client over TLS; plugin cpimgw-irc")
    # RFC 3861 labels are registered for protocols with IM/presence SRV records; IRC has none.
    srv_labels = ()

    def defaults(self):
        from cpimgw_irc.adapter import DEFAULTS

        return {key: list(value) if isinstance(value, list) else value for key, value in DEFAULTS.items()}

    def build(self, settings, bus):
        from cpimgw_irc.adapter import build

        return build(settings, bus, self.name)


@implementer(INativeCodec, IPlugin)
class IRCNativeCodec:
    """``irc``: one IRC line for ``cpimgw parse`` / ``cpimgw translate`` / ``cpimgw fidelity``."""

    name = "irc"
    description = "IRC line (RFC 2812, IRCv3 message-tags); plugin cpimgw-irc"

    def _codec(self):
        from cpimgw_irc.codec import IRCCodec

        return IRCCodec()

    def parse(self, data):
        return self._codec().parse(data)

    def to_operation(self, data):
        return self._codec().to_operation(data)

    def from_operation(self, operation):
        return self._codec().from_operation(operation)

    def corpus(self):
        from cpimgw_irc.codec import corpus

        return corpus()

    @property
    def fidelity_profile(self):
        from cpimgw_irc.codec import PROFILE

        return PROFILE


irc_adapter = IRCAdapterFactory()
irc_codec = IRCNativeCodec()
