"""The ``cpimgw fidelity`` subcommand: every corpus unit through every other protocol and back.

Provides ``cpimgw.interfaces.ICommand`` (a ``twisted.plugin.IPlugin``); the
engine is :mod:`cpimgw.fidelity`, imported only when the command runs.  It
uses nothing but the ``INativeCodec`` plugins, so a fourth protocol joins the
matrix by shipping a codec and a corpus.  No ``__init__.py`` in this
directory: it extends Twisted's ``twisted.plugins``.

::

    cpimgw fidelity [--protocol P ...] [--corpus DIR] [--verbose] [--strict] [--native-only]

The headline is the native matrix: every path with the private carriage off
and every far unit stripped of it, serialised and re-parsed as a third-party
peer would return it; then the same between two cpimgw gateways (carriage
negotiated), the one-way coverage of each path, the losses and what is not
compared (with the RFC section that says why).

Exit status 0, or 1 with ``--strict`` when any field was lost; 2 on an error
(unknown protocol, unreadable corpus).
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from cpimgw.interfaces import ICommand

EXIT_OK = 0
EXIT_LOSS = 1
EXIT_ERROR = 2


def _run(args, out, err):
    from cpimgw.cli import find_codecs
    from cpimgw.cpim.errors import CPIMGWError
    from cpimgw import fidelity

    codecs = find_codecs()
    wanted = args.protocol or [name for name in codecs if name not in ("cpim", "pidf")]
    unknown = [name for name in wanted if name not in codecs]
    if unknown:
        err.write(f"cpimgw: fidelity: unknown protocol {unknown[0]!r} (known: {', '.join(codecs)})\n")
        return EXIT_ERROR
    try:
        corpora = {name: fidelity.load_corpus(name, args.corpus, codecs[name]) for name in wanted}
    except (CPIMGWError, OSError) as error:
        err.write(f"cpimgw: fidelity: {error}\n")
        return EXIT_ERROR
    names = [name for name in wanted if corpora[name]]
    for name in wanted:
        if not corpora[name]:
            err.write(f"cpimgw: fidelity: no corpus for {name}: left out\n")
    if len(names) < 2:
        err.write("cpimgw: fidelity: needs the corpora of at least two protocols\n")
        return EXIT_ERROR
    matrix = fidelity.run_matrix(codecs, corpora, protocols=names)
    carriage = None if args.native_only else fidelity.run_matrix(codecs, corpora, protocols=names, native=False)
    out.write(fidelity.format_matrix(matrix, verbose=args.verbose, carriage=carriage))
    return EXIT_LOSS if args.strict and matrix.losses else EXIT_OK


@implementer(ICommand, IPlugin)
class FidelityCommand:
    """``cpimgw fidelity``: the measured round-trip matrix."""

    name = "fidelity"

    def register(self, subparsers, **parser_kwargs):
        import sys

        out, err = parser_kwargs.get("streams", (sys.stdout, sys.stderr))
        parser = subparsers.add_parser(
            "fidelity", help="send every corpus unit through every other protocol and back; print what was lost",
            **parser_kwargs)
        parser.add_argument("--protocol", action="append", metavar="P",
                            help="a protocol (codec name) to include; repeat it (default: every protocol codec)")
        parser.add_argument("--corpus", default=None, metavar="DIR",
                            help="read the units from DIR/<protocol>/* instead of the shipped corpora")
        parser.add_argument("--verbose", action="store_true",
                            help="also the values sent and returned, the one-way carriage and what is not compared")
        parser.add_argument("--strict", action="store_true", help="exit 1 if any field was lost (native matrix)")
        parser.add_argument("--native-only", action="store_true",
                            help="leave out the matrix between two cpimgw gateways (private carriage)")
        parser.set_defaults(run=lambda args: _run(args, out, err))
        return parser


fidelity_command = FidelityCommand()
