"""The ``cpimgw status`` subcommand: a running gateway's health, adapters, traffic and failures.

Provides ``cpimgw.interfaces.ICommand`` (a ``twisted.plugin.IPlugin``); the
work is in :mod:`cpimgw.status`, imported only when the command runs.  No
``__init__.py`` in this directory: it extends Twisted's ``twisted.plugins``.

::

    cpimgw status [--url URL | --config FILE] [--interval SECONDS] [--json]

Exit status 0 healthy, 1 unhealthy or unreachable, 2 a usage error.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from cpimgw.interfaces import ICommand


def _run(args, out, err):
    from cpimgw import status
    from cpimgw.cpim.errors import ConfigError

    url = args.url
    if url is None and args.config:
        try:
            url = status.url_from_config(args.config)
        except ConfigError as error:
            err.write(f"cpimgw: status: {error}\n")
            return status.EXIT_ERROR
    if args.interval < 0:
        err.write("cpimgw: status: --interval must not be negative\n")
        return status.EXIT_ERROR
    return status.run(url or status.DEFAULT_URL, out, err, interval=args.interval, as_json=args.json)


@implementer(ICommand, IPlugin)
class StatusCommand:
    """``cpimgw status``: the operators' view of a running gateway."""

    name = "status"

    def register(self, subparsers, **parser_kwargs):
        import sys

        out, err = parser_kwargs.get("streams", (sys.stdout, sys.stderr))
        parser = subparsers.add_parser(
            "status", help="summarise a running gateway from its status endpoint; exit 1 when unhealthy",
            **parser_kwargs)
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--url", default=None, metavar="URL",
                           help="the status endpoint (default: http://127.0.0.1:9465, or what --config opens)")
        where.add_argument("--config", default=None, metavar="FILE",
                           help="read status_address and status_port from this configuration file")
        parser.add_argument("--interval", type=float, default=0.0, metavar="SECONDS",
                            help="read the metrics twice, SECONDS apart, and show the rates (default: 0, no rates)")
        parser.add_argument("--json", action="store_true", help="print the /status JSON instead of the summary")
        parser.set_defaults(run=lambda args: _run(args, out, err))
        return parser


status_command = StatusCommand()
