"""``twistd cpimgw``: the twistd plugin (IServiceMaker + IPlugin) that runs the gateway.

This module is imported whenever Twisted scans its plugins (``twistd
--help``, the dropin cache), so it imports nothing of cpimgw at module
level: the configuration is loaded in :meth:`Options.postOptions` and the
service built in :meth:`CPIMGWServiceMaker.makeService`
(:func:`cpimgw.service.make_service`).  A configuration error is raised as
``usage.UsageError`` carrying the one-line ``ConfigError`` text, which twistd
prints without a traceback before exiting with status 1.

There is deliberately no ``__init__.py`` in ``twisted/`` or
``twisted/plugins/``: this directory extends Twisted's own
``twisted.plugins`` package.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    """Command line of ``twistd cpimgw``."""

    synopsis = "[--config FILE]"
    longdesc = (
        "Run cpimgw, the CPIM gateway between XMPP, SIP/SIMPLE and PRIM instant "
        "messaging and presence (RFC 3859/3860/3862/3863). Without --config it runs "
        "on the built-in defaults: SQLite store 'cpimgw.sqlite' in the current "
        "directory and every installed adapter plugin on loopback. The sample "
        "configuration conf/cpimgw.toml lists every option at its default; check a "
        "file with 'cpimgw check-config FILE' and list the adapter plugins with "
        "'cpimgw adapters'. Stop with SIGTERM or Ctrl-C."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file (default: the built-in defaults)."],
    ]

    def postOptions(self) -> None:  # noqa: N802 (Twisted name)
        from cpimgw.config import load_config
        from cpimgw.cpim.errors import ConfigError

        try:
            self["loaded"] = load_config(self["config"])
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None


@implementer(IServiceMaker, IPlugin)
class CPIMGWServiceMaker:
    """Makes the gateway's MultiService from the parsed :class:`Options`."""

    tapname = "cpimgw"
    description = "CPIM gateway between XMPP, SIP/SIMPLE and PRIM IM and presence."
    options = Options

    def makeService(self, options):  # noqa: N802 (Twisted name)
        from cpimgw.config import load_config
        from cpimgw.cpim.errors import ConfigError
        from cpimgw.service import make_service

        try:
            config = options.get("loaded") or load_config(options.get("config"))
            if config.gateway.workers > 1:
                from cpimgw.cluster.workers import make_worker_service

                return make_worker_service(config, make_service)
            return make_service(config, apply_log_level=True, clean_sigterm=True)
        except ConfigError as error:
            # An adapter's build() refused its settings: one line, no traceback, status 1.
            raise SystemExit(f"twistd cpimgw: {error}") from None


serviceMaker = CPIMGWServiceMaker()
