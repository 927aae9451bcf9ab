"""The ``cpimgw`` command: check a configuration, parse and translate native units.

::

    cpimgw check-config [FILE]             "ok: FILE" (exit 0) or the one error line (exit 2)
    cpimgw parse FORMAT FILE               JSON of the unit ('-' = stdin)
    cpimgw translate --from A --to B [--config TOML] FILE
                                           A -> CPIM operation -> B, bytes to stdout; with
                                           --config, addresses map as that deployment's do
    cpimgw adapters                        the IAdapterFactory plugins found
    cpimgw formats                         the INativeCodec plugins found
    cpimgw version
    cpimgw NAME ...                        a subcommand shipped by a plugin (ICommand), e.g. prim

Formats are the ``INativeCodec`` plugins found with ``twisted.plugin.getPlugins``
(the core's ``cpim`` for Message/CPIM, RFC 3862, and ``pidf``, RFC 3863, plus
one per adapter plugin): an adapter adds a format just by shipping one.
Every error is ONE line on stderr (``cpimgw: FILE: <why>``) and exit status
2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, BinaryIO, Sequence, TextIO

EXIT_OK = 0
EXIT_ERROR = 2

PROG = "cpimgw"


class _Failed(Exception):
    """A command failed; its text is the one line to print."""


class _Parser(argparse.ArgumentParser):
    """argparse that writes to our streams and exits with status 2 through an exception."""

    def __init__(self, *args: Any, streams: tuple[TextIO, TextIO], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._streams = streams

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            out, err = self._streams
            (err if file is sys.stderr else out).write(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            self._streams[1].write(message)
        raise _Exit(status)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def find_codecs() -> dict[str, Any]:
    """Every ``INativeCodec`` plugin installed, by format name (the first of a name wins)."""
    from twisted.plugin import getPlugins

    from cpimgw.interfaces import INativeCodec

    found: dict[str, Any] = {}
    for codec in getPlugins(INativeCodec):
        found.setdefault(codec.name, codec)
    return dict(sorted(found.items()))


def find_commands() -> dict[str, Any]:
    """Every ``ICommand`` plugin installed (subcommands such as ``prim``), by name."""
    from twisted.plugin import getPlugins

    from cpimgw.interfaces import ICommand

    found: dict[str, Any] = {}
    for command in getPlugins(ICommand):
        found.setdefault(command.name, command)
    return dict(sorted(found.items()))


def _codec(codecs: dict[str, Any], name: str) -> Any:
    try:
        return codecs[name]
    except KeyError:
        known = ", ".join(codecs) or "none installed"
        raise _Failed(f"unknown format {name!r} (known formats: {known})") from None


def _read(path: str, stdin: BinaryIO) -> bytes:
    if path == "-":
        return stdin.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except IsADirectoryError:
        raise _Failed(f"{path}: is a directory") from None
    except OSError as error:
        raise _Failed(f"{path}: cannot read: {error.strerror or error}") from None


def _describe(error: BaseException) -> str:
    describe = getattr(error, "describe", None)
    text = describe() if callable(describe) else (str(error) or type(error).__name__)
    return " ".join(str(text).split())


def _convert(path: str, call: Any, *args: Any) -> Any:
    """Run a codec call; every error it raises becomes one ``_Failed`` line naming the file."""
    from cpimgw.cpim.errors import CPIMGWError

    shown = "<stdin>" if path == "-" else path
    try:
        return call(*args)
    except CPIMGWError as error:
        raise _Failed(f"{shown}: {_describe(error)}") from None
    except (ValueError, TypeError, KeyError, UnicodeError) as error:
        # A codec that let a non-typed error escape: still one line, never a traceback.
        raise _Failed(f"{shown}: {type(error).__name__}: {_describe(error)}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _check_config(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from cpimgw.config import load_config
    from cpimgw.cpim.errors import ConfigError

    try:
        load_config(args.file)
    except ConfigError as error:
        err.write(f"{error}\n")
        return EXIT_ERROR
    out.write(f"ok: {args.file or '<built-in defaults>'}\n")
    return EXIT_OK


def _parse(args: argparse.Namespace, out: TextIO, stdin: BinaryIO) -> int:
    codec = _codec(find_codecs(), args.format)
    data = _read(args.file, stdin)
    result = _convert(args.file, codec.parse, data)
    out.write(json.dumps(result, indent=2, ensure_ascii=False, default=_json_default, sort_keys=False) + "\n")
    return EXIT_OK


def _configured_codecs(path: str | None) -> dict[str, Any]:
    """The codecs, each configured as its adapter in the configuration ``path`` maps (``for_settings``)."""
    codecs = find_codecs()
    if path is None:
        return codecs
    from cpimgw.config import load_config
    from cpimgw.cpim.errors import ConfigError

    try:
        config = load_config(path)
    except ConfigError as error:
        raise _Failed(_describe(error)) from None
    for name, codec in list(codecs.items()):
        adapter = config.adapter(name)
        for_settings = getattr(codec, "for_settings", None)
        if adapter is not None and callable(for_settings):
            codecs[name] = for_settings(dict(adapter.settings))
    return codecs


def _translate(args: argparse.Namespace, out_bytes: BinaryIO, stdin: BinaryIO) -> int:
    codecs = _configured_codecs(args.config)
    source = _codec(codecs, args.source)
    target = _codec(codecs, args.target)
    data = _read(args.file, stdin)
    operation = _convert(args.file, source.to_operation, data)
    result = _convert(args.file, target.from_operation, operation)
    if not isinstance(result, (bytes, bytearray)):
        raise _Failed(f"{args.file}: the {args.target} codec did not give bytes")
    out_bytes.write(bytes(result))
    out_bytes.flush()
    return EXIT_OK


def _adapters(out: TextIO) -> int:
    from cpimgw.config import find_adapter_factories

    factories = find_adapter_factories()
    if not factories:
        out.write("no adapter plugins installed\n")
    width = max((len(name) for name in factories), default=0)
    for name, factory in factories.items():
        labels = ", ".join(getattr(factory, "srv_labels", ()) or ())
        suffix = f" (SRV: {labels})" if labels else ""
        out.write(f"{name.ljust(width)}  {getattr(factory, 'description', '')}{suffix}\n")
    return EXIT_OK


def _version(out: TextIO) -> int:
    import twisted

    import cpimgw

    out.write(f"cpimgw {cpimgw.__version__} (Twisted {twisted.__version__}, Python {sys.version.split()[0]})\n")
    return EXIT_OK


def build_parser(out: TextIO, err: TextIO) -> argparse.ArgumentParser:
    """The argparse parser of the ``cpimgw`` command."""
    streams = (out, err)
    parser = _Parser(
        prog=PROG,
        description="cpimgw: CPIM gateway between XMPP, SIP/SIMPLE and PRIM (RFC 3859/3860/3862/3863). "
        "Run the gateway itself with 'twistd -n cpimgw'.",
        streams=streams,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("check-config", help="validate a configuration file", streams=streams)
    p.add_argument("file", nargs="?", default=None, metavar="FILE", help="TOML file (default: the built-in defaults)")

    p = sub.add_parser("parse", help="parse one native unit and print it as JSON", streams=streams)
    p.add_argument("format", metavar="FORMAT", help="the format (see 'cpimgw formats')")
    p.add_argument("file", metavar="FILE", help="the file, '-' for stdin")

    p = sub.add_parser(
        "translate", help="translate one unit between formats through its CPIM operation", streams=streams
    )
    p.add_argument("--from", dest="source", required=True, metavar="A", help="the input format")
    p.add_argument("--to", dest="target", required=True, metavar="B", help="the output format")
    p.add_argument("--config", default=None, metavar="TOML",
                   help="map addresses as this configuration's adapters do (their domains)")
    p.add_argument("file", metavar="FILE", help="the file, '-' for stdin")

    for command in find_commands().values():
        command.register(sub, streams=streams)
    sub.add_parser("adapters", help="list the adapter plugins found", streams=streams)
    sub.add_parser("formats", help="list the formats (codec plugins) found", streams=streams)
    sub.add_parser("version", help="print the version", streams=streams)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the ``cpimgw`` command; returns the exit status (0 ok, 2 error).

    The streams default to the process's; ``stdout`` must have a ``buffer``
    (binary) for ``translate``, or be binary-capable, else text is decoded.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    raw_in = stdin if stdin is not None else sys.stdin.buffer
    parser = build_parser(out, err)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.command == "check-config":
            return _check_config(args, out, err)
        if args.command == "parse":
            return _parse(args, out, raw_in)
        if args.command == "translate":
            return _translate(args, _binary(out), raw_in)
        if getattr(args, "run", None) is not None:
            return int(args.run(args))
        if args.command == "adapters":
            return _adapters(out)
        if args.command == "formats":
            for name, codec in find_codecs().items():
                out.write(f"{name}  {getattr(codec, 'description', '')}".rstrip() + "\n")
            return EXIT_OK
        return _version(out)
    except _Exit as exit_:
        return exit_.status
    except _Failed as failed:
        err.write(f"{PROG}: {failed}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - the promise is: never a traceback
        err.write(f"{PROG}: internal error: {type(error).__name__}: {_describe(error)}\n")
        return EXIT_ERROR


class _TextBinary:
    """A binary writer over a text stream without ``buffer`` (tests' StringIO)."""

    def __init__(self, text: TextIO) -> None:
        self._text = text

    def write(self, data: bytes) -> int:
        self._text.write(data.decode("utf-8", errors="surrogateescape"))
        return len(data)

    def flush(self) -> None:
        self._text.flush()


def _binary(out: TextIO) -> Any:
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        return buffer
    return _TextBinary(out)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
