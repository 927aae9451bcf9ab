"""Tests of the ``cpimgw`` command (cpimgw.cli.main run in-process)."""

from __future__ import annotations

import io
import json
import os

from twisted.trial.unittest import TestCase

from cpimgw.cli import main
from tests.test_plugins import install_test_plugin

CPIM = (
    b"From: Alice <im:alice@example.com>\r\n"
    b"To: <im:bob@example.org>\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hi Bob\r\n"
)
PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:someone@example.com">\n'
    b'  <tuple id="sg89ae">\n'
    b"    <status><basic>open</basic></status>\n"
    b"    <contact priority=\"0.8\">tel:+09012345678</contact>\n"
    b"  </tuple>\n"
    b"</presence>\n"
)


class BinaryOut(io.StringIO):
    """A text stdout with a binary ``buffer``, like the process's."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = io.BytesIO()


class CLITests(TestCase):
    def run_cli(self, *argv: str, stdin: bytes = b"") -> tuple[int, str, str, bytes]:
        out, err = BinaryOut(), io.StringIO()
        code = main(list(argv), stdin=io.BytesIO(stdin), stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue(), out.buffer.getvalue()

    def write(self, data: bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def assert_one_line_error(self, err: str) -> None:
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.startswith("cpimgw: "), err)
        self.assertNotIn("Traceback", err)

    def test_check_config_ok(self) -> None:
        path = self.write(b"[presence]\nmax_duration = 7200\n")
        self.assertEqual(self.run_cli("check-config", path), (0, f"ok: {path}\n", "", b""))
        self.assertEqual(self.run_cli("check-config")[:3], (0, "ok: <built-in defaults>\n", ""))

    def test_check_config_bad(self) -> None:
        path = self.write(b'[presence]\nmax_duration = "abc"\n')
        code, out, err, _ = self.run_cli("check-config", path)
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err, f'{path}: presence.max_duration: must be a positive integer, got "abc"\n')

    def test_parse_cpim(self) -> None:
        code, out, err, _ = self.run_cli("parse", "cpim", self.write(CPIM))
        self.assertEqual((code, err), (0, ""))
        data = json.loads(out)
        self.assertEqual(data["from"], {"display_name": "Alice", "uri": "im:alice@example.com"})
        self.assertEqual(data["to"][0]["uri"], "im:bob@example.org")
        self.assertEqual(data["body"]["data"], "Hi Bob\r\n")

    def test_parse_stdin(self) -> None:
        code, out, err, _ = self.run_cli("parse", "cpim", "-", stdin=CPIM)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out)["to"][0]["uri"], "im:bob@example.org")

    def test_parse_cpim_invalid(self) -> None:
        path = self.write(b"From: Alice <im:alice@example.com>\r\nFrom: Eve <im:eve@example.com>\r\nTo: <im:b@example.org>\r\n\r\n\r\n")
        code, out, err, _ = self.run_cli("parse", "cpim", path)
        self.assertEqual((code, out), (2, ""))
        self.assert_one_line_error(err)
        self.assertTrue(err.startswith(f"cpimgw: {path}: message/cpim at line 2"), err)

    def test_parse_pidf(self) -> None:
        code, out, err, _ = self.run_cli("parse", "pidf", self.write(PIDF))
        self.assertEqual((code, err), (0, ""))
        data = json.loads(out)
        self.assertIn("pres:someone@example.com", json.dumps(data))
        self.assertIn("sg89ae", json.dumps(data))

    def test_parse_pidf_invalid(self) -> None:
        path = self.write(b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:a@example.com'>")
        code, out, err, _ = self.run_cli("parse", "pidf", path)
        self.assertEqual((code, out), (2, ""))
        self.assert_one_line_error(err)
        self.assertTrue(err.startswith(f"cpimgw: {path}: pidf"), err)

    def test_unreadable(self) -> None:
        missing = self.mktemp()
        self.assertEqual(self.run_cli("parse", "cpim", missing)[2], f"cpimgw: {missing}: cannot read: No such file or directory\n")
        os.mkdir(missing)
        self.assertEqual(self.run_cli("parse", "cpim", missing)[2], f"cpimgw: {missing}: is a directory\n")

    def test_unknown_format(self) -> None:
        code, out, err, _ = self.run_cli("parse", "no-such-format", self.write(CPIM))
        self.assertEqual(code, 2)
        self.assert_one_line_error(err)
        self.assertTrue(err.startswith("cpimgw: unknown format 'no-such-format' (known formats: "), err)
        self.assertIn("cpim", err)
        self.assertIn("pidf", err)

    def test_translate_cpim(self) -> None:
        code, out, err, data = self.run_cli("translate", "--from", "cpim", "--to", "cpim", self.write(CPIM))
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(data, CPIM)

    def test_translate_pidf(self) -> None:
        code, out, err, data = self.run_cli("translate", "--from", "pidf", "--to", "pidf", self.write(PIDF))
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(data, PIDF)

    def test_translate_not_carried(self) -> None:
        path = self.write(PIDF)
        code, out, err, data = self.run_cli("translate", "--from", "pidf", "--to", "cpim", path)
        self.assertEqual((code, data), (2, b""))
        self.assertEqual(err, f"cpimgw: {path}: translate: the cpim format carries only a message operation, not publish\n")

    def test_translate_invalid(self) -> None:
        path = self.write(b"nonsense")
        code, out, err, data = self.run_cli("translate", "--from", "cpim", "--to", "cpim", path)
        self.assertEqual((code, data), (2, b""))
        self.assert_one_line_error(err)

    def test_adapters(self) -> None:
        install_test_plugin(self)
        code, out, err, _ = self.run_cli("adapters")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("echo  test adapter echo (SRV: _echo)\n", out)
        self.assertIn("ohce  test adapter ohce (SRV: _ohce)\n", out)

    def test_plugin_subcommand(self) -> None:
        """An ICommand plugin (the PRIM adapter's ``prim``) becomes a subcommand; its usage errors are ours."""
        code, out, err, _ = self.run_cli("prim", "--help")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("usage: cpimgw prim", out)
        code, out, err, _ = self.run_cli("prim", "--user", "alice@prim.example")
        self.assertEqual(code, 2)
        self.assertIn("the following arguments are required: ACTION", err)
        self.assertNotIn("Traceback", err)

    def test_formats_and_version(self) -> None:
        code, out, err, _ = self.run_cli("formats")
        self.assertEqual(code, 0)
        self.assertIn("cpim  Message/CPIM (RFC 3862)\n", out)
        code, out, err, _ = self.run_cli("version")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("cpimgw 0.1.0 (Twisted "), out)

    def test_usage_errors(self) -> None:
        code, out, err, _ = self.run_cli()
        self.assertEqual(code, 2)
        self.assertIn("the following arguments are required: COMMAND", err)
        code, out, err, _ = self.run_cli("translate", "--from", "cpim", "x")
        self.assertEqual(code, 2)
        self.assertIn("--to", err)
        code, out, err, _ = self.run_cli("--help")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("check-config", out)
