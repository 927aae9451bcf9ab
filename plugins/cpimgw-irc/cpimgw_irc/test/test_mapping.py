"""Tests of :mod:`cpimgw_irc.mapping`: the IRC <-> CPIM tables (RFC 2812 §3.3, RFC 3860/3862/3863)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from cpimgw.cpim.message import build_message, parse_message
from cpimgw.cpim.operations import MEDIA_CPIM, Condition, Content, Message
from cpimgw.cpim.pidf import parse_pidf
from cpimgw.cpim.uri import im_uri, parse_uri, pres_uri
from cpimgw_irc import mapping, wire

NET = mapping.Network("irc.test", "gw")
ALICE = im_uri("alice", "xmpp.test")
DAN = im_uri("dan", "irc.test")


def line(text: str) -> wire.IRCLine:
    return wire.parse_line(text)


def cpim_of(message: Message):  # type: ignore[no-untyped-def]
    return parse_message(message.content.body)


def message(body: str, *, source=ALICE, destination=DAN, extensions=(), content_type="text/plain; charset=utf-8",
            date_time=None):  # type: ignore[no-untyped-def]
    cpim = build_message(source, [destination], body.encode(), content_type, extensions=extensions,
                         date_time=date_time)
    return Message(source, destination, Content(MEDIA_CPIM, cpim.to_bytes()))


class AddressTests(TestCase):

    def test_nick_is_the_local_part_in_lower_case(self) -> None:
        # rfc1459 case mapping: [ ] \ are upper case of { } |, which RFC 2822 atext allows unescaped.
        self.assertEqual(str(NET.uri("Dan[x]")), "im:dan{x}@irc.test")
        self.assertEqual(NET.nick_of(parse_uri("im:dan%7Bx%7D@irc.test")), "dan{x}")
        ascii_net = mapping.Network("irc.test", "gw", "ascii")
        self.assertEqual(str(ascii_net.uri("Dan[x]")), "im:dan%5Bx%5D@irc.test")

    def test_not_a_nick(self) -> None:
        with self.assertRaises(mapping.IRCMappingError) as caught:
            NET.nick_of(parse_uri("im:1dan@irc.test"))
        self.assertIs(caught.exception.condition, Condition.NOT_FOUND)
        with self.assertRaises(mapping.IRCMappingError) as caught:
            NET.nick_of(ALICE)
        self.assertIs(caught.exception.condition, Condition.NO_ROUTE)

    def test_addressed_text(self) -> None:
        self.assertEqual(mapping.split_addressed("alice@xmpp.test: hi"), (ALICE, "hi"))
        self.assertEqual(mapping.split_addressed("im:alice@xmpp.test, hi"), (ALICE, "hi"))
        self.assertEqual(mapping.split_addressed("alice@xmpp.test"), (ALICE, ""))
        self.assertEqual(mapping.split_addressed("just talking: hi"), (None, "just talking: hi"))


class IncomingTests(TestCase):

    def test_privmsg_to_the_bot(self) -> None:
        result = mapping.message_from_line(
            line("@time=2026-04-01T10:00:00.000Z;msgid=m1;+typing=done :Dan!~d@h PRIVMSG gw :alice@xmpp.test: hi"),
            NET, origin="irc")
        self.assertEqual((result.source, result.destination, result.message_id, result.origin),
                         (DAN, ALICE, "m1", "irc"))
        cpim = cpim_of(result)
        self.assertEqual(cpim.body, b"hi")
        self.assertEqual(cpim.date_time.text, "2026-04-01T10:00:00.000Z")
        self.assertEqual([(n, v) for _, n, v, _ in cpim.extension_headers], [("Tag", "+typing=done")])

    def test_notice_action_and_formatting(self) -> None:
        result = mapping.message_from_line(line(":dan!~d@h NOTICE gw :\x01ACTION alice@xmpp.test \x02waves\x02\x01"),
                                           NET)
        cpim = cpim_of(result)
        self.assertEqual(cpim.body, b"/me waves")
        self.assertEqual(dict((n, v) for _, n, v, _ in cpim.extension_headers),
                         {"Command": "NOTICE", "Formatted": "\x02waves\x02"})

    def test_default_destination(self) -> None:
        result = mapping.message_from_line(line(":dan!~d@h PRIVMSG gw :no address"), NET, default_destination=ALICE)
        self.assertEqual((result.destination, cpim_of(result).body), (ALICE, b"no address"))

    def test_refusals(self) -> None:
        for text, condition in [(":dan!~d@h PRIVMSG #chan :alice@xmpp.test: hi", Condition.UNSUPPORTED),
                                (":dan!~d@h PRIVMSG gw :\x01VERSION\x01", Condition.UNSUPPORTED),
                                (":dan!~d@h PRIVMSG gw :no address", Condition.NOT_FOUND),
                                (":dan!~d@h PRIVMSG other :alice@xmpp.test: hi", Condition.NO_ROUTE),
                                (":dan!~d@h PRIVMSG gw", Condition.BAD_REQUEST)]:
            with self.assertRaises(mapping.IRCMappingError) as caught:
                mapping.message_from_line(line(text), NET)
            self.assertIs(caught.exception.condition, condition, text)

    def test_gateway_form(self) -> None:
        result = mapping.message_from_line(line("PRIVMSG dan :<alice@xmpp.test> hello"), NET)
        self.assertEqual((result.source, result.destination, cpim_of(result).body), (ALICE, DAN, b"hello"))
        relayed = mapping.message_from_line(line("PRIVMSG bob%sip.test :<alice@xmpp.test> hello"), NET)
        self.assertEqual(relayed.destination, im_uri("bob", "sip.test"))


class OutgoingTests(TestCase):

    def test_one_line_names_the_sender(self) -> None:
        [out] = mapping.lines_for_message(message("Hello Dan"), NET)
        self.assertEqual(out.to_text(), "PRIVMSG dan :<alice@xmpp.test> Hello Dan")

    def test_notice_action_formatted(self) -> None:
        ns = mapping.IRC_NS
        [notice] = mapping.lines_for_message(message("x", extensions=[(ns, "IRC", "Command", "NOTICE", ())]), NET)
        self.assertEqual(notice.command, "NOTICE")
        [action] = mapping.lines_for_message(message("/me waves"), NET)
        self.assertEqual(action.params[-1], "\x01ACTION <alice@xmpp.test> waves\x01")
        [bold] = mapping.lines_for_message(
            message("bold", extensions=[(ns, "IRC", "Formatted", "\x02bold\x02", ())]), NET)
        self.assertEqual(bold.params[-1], "<alice@xmpp.test> \x02bold\x02")
        [edited] = mapping.lines_for_message(
            message("changed", extensions=[(ns, "IRC", "Formatted", "\x02bold\x02", ())]), NET)
        self.assertEqual(edited.params[-1], "<alice@xmpp.test> changed")

    def test_long_and_multiline_text_is_split_within_512_octets(self) -> None:
        text = "line one\n" + " ".join(["w\u00e9rd"] * 300)
        lines = mapping.lines_for_message(message(text), NET)
        self.assertGreater(len(lines), 3)
        prefix = mapping.own_prefix_length(NET)
        for out in lines:
            self.assertLessEqual(prefix + len(out.to_bytes()), wire.MAX_LINE, out)
            self.assertTrue(out.params[-1].startswith("<alice@xmpp.test> "))
        self.assertEqual(lines[0].params[-1], "<alice@xmpp.test> line one")
        rest = " ".join(out.params[-1][len("<alice@xmpp.test> "):] for out in lines[1:])
        self.assertEqual(rest, " ".join(["w\u00e9rd"] * 300))

    def test_html_becomes_text_and_other_media_are_refused(self) -> None:
        [out] = mapping.lines_for_message(message("<p>Hi &amp; <b>bye</b></p>", content_type="text/html"), NET)
        self.assertEqual(out.params[-1], "<alice@xmpp.test> Hi & bye")
        with self.assertRaises(mapping.IRCMappingError) as caught:
            mapping.lines_for_message(message("<x/>", content_type="application/im-iscomposing+xml"), NET)
        self.assertIs(caught.exception.condition, Condition.UNSUPPORTED_MEDIA)

    def test_received_form_carries_time_and_msgid(self) -> None:
        source = message("hi", source=DAN, destination=ALICE, date_time="2026-04-01T12:00:00+02:00")
        source = Message(source.source, source.destination, source.content, message_id="m9")
        [out] = mapping.lines_for_message(source, NET, received_form=True)
        self.assertEqual(out.to_text(), "@msgid=m9;time=2026-04-01T10:00:00.000Z :dan!dan@irc.test PRIVMSG gw "
                                        ":alice@xmpp.test: hi")


class PresenceTests(TestCase):

    def test_away_document(self) -> None:
        document = parse_pidf(mapping.presence_document(pres_uri("dan", "irc.test"), mapping.NickState(True, "lunch")))
        [item] = document.tuples
        self.assertEqual((item.id, item.status.basic, item.notes[0].text), ("ID-irc", "open", "lunch"))
        self.assertEqual(document.persons[0].activities[0].values, ("away",))
        self.assertEqual(mapping.state_from_document(document.to_bytes()), mapping.NickState(True, "lunch"))

    def test_online_and_offline_documents(self) -> None:
        for state in (mapping.NickState(True), mapping.NickState(False, None, "Quit: bye")):
            data = mapping.presence_document(pres_uri("dan", "irc.test"), state)
            self.assertEqual(mapping.state_from_document(data), state)

    def test_lines(self) -> None:
        cases = {
            ":dan!~d@h AWAY :lunch": mapping.NickState(True, "lunch"),
            ":dan!~d@h AWAY": mapping.NickState(True),
            ":dan!~d@h QUIT :bye": mapping.NickState(False, None, "bye"),
            ":dan!~d@h JOIN #c": mapping.NickState(True),
            ":dan!~d@h NICK danny": mapping.NickState(False, None, "now known as danny"),
            ":irc.test 730 gw :dan!~d@h,eve!~e@h": mapping.NickState(True),
            ":irc.test 731 gw :dan": mapping.NickState(False),
        }
        for text, state in cases.items():
            presentity, found = mapping.presence_from_line(line(text), NET)
            self.assertEqual((str(presentity), found), ("pres:dan@irc.test", state), text)
        with self.assertRaises(mapping.IRCMappingError):
            mapping.presence_from_line(line(":irc.test AWAY :x"), NET)

    def test_line_for_presence(self) -> None:
        dan = pres_uri("dan", "irc.test")
        self.assertEqual(mapping.line_for_presence(dan, mapping.NickState(True, "x"), NET).to_text(),
                         ":dan!dan@irc.test AWAY x")
        self.assertEqual(mapping.line_for_presence(dan, mapping.NickState(True), NET).to_text(),
                         ":dan!dan@irc.test AWAY")
        self.assertEqual(mapping.line_for_presence(dan, mapping.NickState(False), NET).to_text(),
                         ":dan!dan@irc.test QUIT offline")

    def test_presence_text(self) -> None:
        alice = pres_uri("alice", "xmpp.test")
        self.assertEqual(mapping.presence_text(alice, mapping.NickState(True, "lunch")),
                         "alice@xmpp.test is away: lunch")
        self.assertEqual(mapping.presence_text(alice, mapping.NickState(False)), "alice@xmpp.test is offline")
