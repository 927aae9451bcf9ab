"""twistd plugin registration of ``cpimgw cluster`` (``cpimgw.interfaces.ICommand``, ``twisted.plugin.IPlugin``).

The command's module is imported only when the subcommand is registered, so
plugin scanning stays cheap.  This directory has no ``__init__.py`` on
purpose: it extends Twisted's ``twisted.plugins``.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from cpimgw.interfaces import ICommand


@implementer(ICommand, IPlugin)
class ClusterCommandPlugin:
    """``cpimgw cluster status``: the nodes of a Redis cluster of gateways."""

    name = "cluster"

    def register(self, subparsers, **parser_kwargs):
        from cpimgw.cluster.status import register

        return register(subparsers, **parser_kwargs)


cluster_command = ClusterCommandPlugin()
