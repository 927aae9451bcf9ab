"""twistd plugin registrations of the PRIM adapter and the ``prim`` codec.

``prim_adapter`` provides ``cpimgw.interfaces.IAdapterFactory`` and
``prim_codec`` provides ``cpimgw.interfaces.INativeCodec`` and
``prim_command`` provides ``cpimgw.interfaces.ICommand`` (all
``twisted.plugin.IPlugin``).  The adapter modules are imported only when
``build()`` / a codec method runs, so plugin scanning stays cheap.  This
directory has no ``__init__.py`` on purpose: it extends Twisted's
``twisted.plugins``.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from cpimgw.interfaces import IAdapterFactory, ICommand, INativeCodec


@implementer(IAdapterFactory, IPlugin)
class PrimAdapterFactory:
    """Builds the PRIM adapter (server-to-server and user agents)."""

    name = "prim"
    description = "PRIM server-to-server (draft-ietf-prim-server-00) and user agents (draft-mazzoldi-prim-impp-01/-02)"
    # No IANA label exists for PRIM (digest §2.3, §3.6): "_prim" is a local convention.
    srv_labels = ("_prim",)

    def defaults(self):
        from cpimgw.adapters.prim.adapter import DEFAULTS
        import copy

        return copy.deepcopy(DEFAULTS)

    def build(self, settings, bus):
        from cpimgw.adapters.prim.adapter import PrimAdapter, PrimSettings

        return PrimAdapter(PrimSettings.from_mapping(settings), bus, name=self.name)


@implementer(INativeCodec, IPlugin)
class PrimCodecPlugin:
    """``prim``: one PRIM command for ``cpimgw parse`` / ``cpimgw translate``."""

    name = "prim"
    description = "PRIM command (draft-ietf-prim-server-00, draft-mazzoldi-prim-impp-01/-02)"

    def parse(self, data):
        from cpimgw.adapters.prim.codec import PrimCodec

        return PrimCodec().parse(data)

    def to_operation(self, data):
        from cpimgw.adapters.prim.codec import to_operation

        return to_operation(data)

    def from_operation(self, operation):
        from cpimgw.adapters.prim.codec import from_operation

        return from_operation(operation)


@implementer(ICommand, IPlugin)
class PrimCommandPlugin:
    """``cpimgw prim``: a PRIM user agent for people and scripts."""

    name = "prim"

    def register(self, subparsers, **parser_kwargs):
        from cpimgw.adapters.prim.cli import register

        return register(subparsers, **parser_kwargs)


prim_adapter = PrimAdapterFactory()
prim_command = PrimCommandPlugin()
prim_codec = PrimCodecPlugin()
