"""The plugin as cpimgw finds it: ``getPlugins``, ``cpimgw adapters``/``parse``/``translate``/``fidelity``, config."""

from __future__ import annotations

import io
import json

from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from cpimgw import cli, fidelity
from cpimgw.config import find_adapter_factories, from_mapping
from cpimgw.interfaces import IAdapterFactory, INativeCodec
from cpimgw.testing import make_bus
from cpimgw_irc.adapter import IRCAdapter
from cpimgw_irc.codec import CORPUS, IRCCodec


def run(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), stdin=io.BytesIO(stdin), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


class DiscoveryTests(TestCase):

    def test_found_like_the_built_in_adapters(self) -> None:
        [factory] = [f for f in getPlugins(IAdapterFactory) if f.name == "irc"]
        verifyObject(IAdapterFactory, factory)
        self.assertTrue(IPlugin.providedBy(factory))
        self.assertIs(find_adapter_factories()["irc"].__class__, factory.__class__)
        [codec] = [c for c in getPlugins(INativeCodec) if c.name == "irc"]
        verifyObject(INativeCodec, codec)
        self.assertIsInstance(codec.fidelity_profile, fidelity.Profile)
        self.assertEqual(len(codec.corpus()), len(CORPUS))

    def test_cpimgw_adapters_and_formats_list_irc(self) -> None:
        status, out, _ = run("adapters")
        self.assertEqual(status, 0)
        self.assertRegex(out, r"(?m)^irc\s+IRC \(RFC 2812")
        self.assertRegex(run("formats")[1], r"(?m)^irc\s")

    def test_disabled_by_default_and_built_from_its_table(self) -> None:
        config = from_mapping({})
        self.assertFalse(config.adapter("irc").enabled)
        config = from_mapping({"adapters": {"irc": {"enabled": True, "domain": "irc.test", "poll_interval": 5}}})
        settings = config.adapter("irc")
        self.assertTrue(settings.enabled)
        bus = make_bus()
        adapter = find_adapter_factories()["irc"].build(dict(settings.settings), bus)
        self.assertIsInstance(adapter, IRCAdapter)
        self.assertEqual((adapter.domains, adapter.settings.poll_interval), (("irc.test",), 5.0))

    def test_unknown_key_is_a_config_error(self) -> None:
        from cpimgw.cpim.errors import ConfigError

        with self.assertRaises(ConfigError) as caught:
            from_mapping({"adapters": {"irc": {"nick": "x"}}})
        self.assertIn("adapters.irc.nick", str(caught.exception))


class CommandTests(TestCase):

    def test_parse(self) -> None:
        status, out, err = run("parse", "irc", "-", stdin=dict(CORPUS)["privmsg-server-time"])
        self.assertEqual(status, 0, err)
        parsed = json.loads(out)
        self.assertEqual(parsed["command"], "PRIVMSG")
        self.assertEqual(parsed["meaning"]["from"], "im:dan@irc.example")
        self.assertEqual(parsed["meaning"]["to"], "im:bob@sip.example")
        self.assertEqual(parsed["meaning"]["datetime"], "2026-04-01T10:00:00.000Z")

    def test_parse_error_is_one_line(self) -> None:
        status, _, err = run("parse", "irc", "-", stdin=b"PRIVMSG bot :a\x00b\r\n")
        self.assertEqual(status, 2)
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("irc", err)

    def test_translate_irc_to_xmpp_and_back(self) -> None:
        status, out, err = run("translate", "--from", "irc", "--to", "xmpp", "-", stdin=dict(CORPUS)["action"])
        self.assertEqual(status, 0, err)
        self.assertIn("<body>/me waves</body>", out)
        status, back, err = run("translate", "--from", "xmpp", "--to", "irc", "-", stdin=out.encode())
        self.assertEqual(status, 0, err)
        self.assertIn("\x01ACTION alice@xmpp.example: waves\x01", back)

    def test_translate_presence(self) -> None:
        status, out, err = run("translate", "--from", "irc", "--to", "pidf", "-", stdin=dict(CORPUS)["away"])
        self.assertEqual(status, 0, err)
        self.assertIn("<note>at lunch</note>", out)
        status, back, err = run("translate", "--from", "pidf", "--to", "irc", "-", stdin=out.encode())
        self.assertEqual(status, 0, err)
        self.assertEqual(back, ":dan!dan@irc.example AWAY :at lunch\r\n")


class FidelityTests(TestCase):

    def matrix(self) -> fidelity.Matrix:
        codecs = cli.find_codecs()
        names = [n for n in ("irc", "xmpp", "sip", "prim") if n in codecs]
        corpora = {name: fidelity.load_corpus(name, None, codecs[name]) for name in names}
        return fidelity.run_matrix(codecs, corpora, protocols=names)

    def test_irc_row_and_named_losses(self) -> None:
        matrix = self.matrix()
        for far in ("xmpp", "sip", "prim"):
            cell = matrix.cell("irc", far)
            self.assertEqual((cell.equal, cell.total), (len(CORPUS), len(CORPUS)), [l.key for l in cell.losses])
        losses = {(loss.source, loss.field, loss.reason) for loss in matrix.losses if loss.far == "irc"}
        self.assertIn(("xmpp", "subject", "no place in irc"), losses)
        self.assertIn(("prim", "content.language", "no place in irc"), losses)

    def test_codec_units_round_trip_through_itself(self) -> None:
        codec = IRCCodec()
        for name, data in CORPUS:
            operation = codec.to_operation(data)
            again = codec.to_operation(codec.from_operation(operation))
            self.assertEqual(codec.parse(codec.from_operation(again))["meaning"],
                             codec.parse(codec.from_operation(operation))["meaning"], name)
