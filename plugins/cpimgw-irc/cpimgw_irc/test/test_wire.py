"""Tests of :mod:`cpimgw_irc.wire`: RFC 2812 §2.3 lines, IRCv3 message tags, formatting, CTCP, splitting."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from cpimgw_irc import wire


class ParseTests(TestCase):

    def test_full_line(self) -> None:
        line = wire.parse_line(b"@time=2026-01-01T00:00:00.000Z;+x=a\\sb\\:c;flag :dan!~d@h PRIVMSG bot :hi there\r\n")
        self.assertEqual(line.tags, (("time", "2026-01-01T00:00:00.000Z"), ("+x", "a b;c"), ("flag", None)))
        self.assertEqual((line.prefix, line.nick, line.command, line.params), ("dan!~d@h", "dan", "PRIVMSG",
                                                                               ("bot", "hi there")))
        self.assertEqual(line.tag("flag"), "")
        self.assertIsNone(line.tag("absent"))

    def test_round_trip(self) -> None:
        text = "@+x=a\\sb\\:c\\\\d :dan!~d@h PRIVMSG bot :hi there"
        self.assertEqual(wire.parse_line(text).to_text(), text)
        self.assertEqual(wire.IRCLine("AWAY", ()).to_bytes(), b"AWAY\r\n")
        self.assertEqual(wire.IRCLine("PRIVMSG", ("dan", ":)")).to_text(), "PRIVMSG dan ::)")

    def test_server_prefix_has_no_nick(self) -> None:
        self.assertIsNone(wire.parse_line(":irc.example 001 bot :Welcome").nick)

    def test_numeric_and_middle_params(self) -> None:
        line = wire.parse_line(":irc.example 401 bot dan :No such nick/channel")
        self.assertEqual((line.command, line.params), ("401", ("bot", "dan", "No such nick/channel")))

    def test_not_utf8_uses_the_fallback(self) -> None:
        line = wire.parse_line(b":dan!u@h PRIVMSG bot :caf\xe9")
        self.assertEqual(line.params[-1], "caf\u00e9")
        self.assertEqual(wire.parse_line(b":dan!u@h PRIVMSG bot :\xe9", fallback="cp1252").params[-1], "\u00e9")

    def test_errors(self) -> None:
        for bad, why in [(b"", "no command"), (b"@a=b", "without a command"), (b":prefix", "prefix without"),
                         (b"PRIVMSG bot :a\x00b", "'\\x00'"), (b"PRIV-MSG x", "neither letters"),
                         (b"PRIVMSG " + b"x " * 16, "parameters"), (b"PRIVMSG bot :" + b"a" * 600, "512"),
                         (b"@b!d=1 PING", "tag key"), (b"@bad key=1 PING", "neither letters")]:
            with self.assertRaises(wire.IRCParseError) as caught:
                wire.parse_line(bad)
            self.assertIn(why, caught.exception.reason, bad)
            self.assertEqual(caught.exception.syntax, "irc")

    def test_tag_escaping(self) -> None:
        for value in ["a b", "a;b", "back\\slash", "cr\rlf\n", ""]:
            self.assertEqual(wire.unescape_tag_value(wire.escape_tag_value(value)), value)
        self.assertEqual(wire.unescape_tag_value("a\\"), "a")  # a lone trailing backslash is dropped
        self.assertEqual(wire.unescape_tag_value("\\b"), "b")  # an unknown escape is the character


class TextTests(TestCase):

    def test_strip_formatting(self) -> None:
        self.assertEqual(wire.strip_formatting("\x02bold\x02 \x0304,12red\x03 \x1ditalic\x0f \x04ff0000hex"),
                         "bold red italic hex")
        self.assertEqual(wire.strip_formatting("plain 12"), "plain 12")

    def test_ctcp(self) -> None:
        self.assertEqual(wire.ctcp_parse("\x01ACTION waves\x01"), ("ACTION", "waves"))
        self.assertEqual(wire.ctcp_parse("\x01version\x01"), ("VERSION", ""))
        self.assertIsNone(wire.ctcp_parse("plain"))
        self.assertEqual(wire.ctcp("ACTION", "waves"), "\x01ACTION waves\x01")

    def test_split_on_words_and_lines(self) -> None:
        self.assertEqual(wire.split_text("one two three", 9), ["one two", "three"])
        self.assertEqual(wire.split_text("a\nb\r\n\nc", 100), ["a", "b", "c"])
        self.assertEqual(wire.split_text("", 100), [""])

    def test_split_never_cuts_a_utf8_sequence(self) -> None:
        text = "\u00e9" * 20  # 40 octets
        pieces = wire.split_text(text, 9)
        self.assertTrue(all(len(p.encode()) <= 9 for p in pieces), pieces)
        self.assertEqual("".join(pieces), text)

    def test_budget(self) -> None:
        self.assertEqual(wire.message_budget(20, "PRIVMSG", "dan"), 512 - 2 - 20 - len("PRIVMSG dan :"))
        with self.assertRaises(ValueError):
            wire.split_text("x", 3)

    def test_nicks_and_casemapping(self) -> None:
        self.assertTrue(wire.valid_nick("Dan[away]"))
        self.assertFalse(wire.valid_nick("1dan"))
        self.assertFalse(wire.valid_nick("dan@x"))
        self.assertEqual(wire.irc_lower("Dan[]\\~"), "dan{}|^")
        self.assertEqual(wire.irc_lower("Dan[]\\~", "strict-rfc1459"), "dan{}|~")
        self.assertEqual(wire.irc_lower("Dan[]", "ascii"), "dan[]")
