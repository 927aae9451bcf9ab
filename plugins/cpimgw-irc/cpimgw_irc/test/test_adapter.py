"""Tests of :mod:`cpimgw_irc.adapter` through ``cpimgw.testing`` and Twisted's own doubles.

The bot's connection is a ``StringTransport``: the server's lines are
written into the protocol (``lineReceived``) and what the bot sends is
read back from the transport.  The bus is :func:`cpimgw.testing.make_bus`
(a ``MemoryReactorClock``) with a recording adapter for ``alpha.example``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.message import build_message, parse_message
from cpimgw.cpim.operations import MEDIA_CPIM, Condition, Content, Message, Notify, Status, Subscribe
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.interfaces import IAdapter, IMessaging, IPresence
from cpimgw.testing import BusFixture, settle
from cpimgw_irc.adapter import IRCAdapter, IRCSettings, _BotFactory

ALICE = im_uri("alice", "alpha.example")
DAN = im_uri("dan", "irc.test")


class BotFixture(BusFixture):
    """A bus with ``self.alpha`` and an IRC adapter for ``irc.test`` whose bot is signed on."""

    settings: dict[str, Any] = {}

    def setUp(self) -> Any:
        result = super().setUp()
        self.adapter = IRCAdapter("irc", self.bus, IRCSettings.from_mapping({"domain": "irc.test", **self.settings}))
        self.bus.register(self.adapter)
        self.transport = StringTransport()
        self.protocol = _BotFactory(self.adapter).buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        return result

    def tearDown(self) -> Any:
        self.protocol.connectionLost(None)
        return super().tearDown()

    def server(self, *lines: str) -> None:
        for line in lines:
            self.protocol.dataReceived(line.encode("utf-8") + b"\r\n")

    def sent(self) -> list[str]:
        lines = self.transport.value().decode("utf-8").split("\r\n")
        self.transport.clear()
        return [line for line in lines if line]

    def sign_on(self, *isupport: str) -> None:
        self.server(":irc.test CAP * LS :multi-prefix server-time message-tags",
                    ":irc.test CAP * ACK :server-time message-tags",
                    ":irc.test 001 cpimgw :Welcome",
                    *[f":irc.test 005 cpimgw {token} :are supported by this server" for token in isupport])
        self.sent()


class RegistrationTests(BotFixture, TestCase):

    def test_interfaces(self) -> None:
        verifyObject(IAdapter, self.adapter)
        self.assertTrue(IMessaging.providedBy(self.adapter) and IPresence.providedBy(self.adapter))
        self.assertEqual(self.adapter.domains, ("irc.test",))

    def test_cap_negotiation_then_registration(self) -> None:
        first = self.sent()
        self.assertEqual(first[0], "CAP LS 302")
        self.assertEqual(first[1:], ["NICK cpimgw", "USER cpimgw 0 * :cpimgw CPIM gateway"])
        self.server(":irc.test CAP * LS * :multi-prefix away-notify", ":irc.test CAP * LS :server-time sasl")
        self.assertEqual(self.sent(), ["CAP REQ :server-time away-notify"])
        self.server(":irc.test CAP * ACK :server-time away-notify")
        self.assertEqual(self.sent(), ["CAP END"])
        self.server(":irc.test 001 cpimgw :Welcome")
        self.assertIs(self.adapter.protocol, self.protocol)
        self.assertEqual(self.protocol.caps, {"server-time", "away-notify"})
        self.assertTrue(self.adapter.ready.called)

    def test_nothing_wanted_ends_cap_at_once(self) -> None:
        self.sent()
        self.server(":irc.test CAP * LS :multi-prefix")
        self.assertEqual(self.sent(), ["CAP END"])

    def test_nick_in_use_gets_an_underscore(self) -> None:
        self.sent()
        self.server(":irc.test CAP * LS :multi-prefix", ":irc.test 433 * cpimgw :Nickname already in use")
        self.assertEqual(self.sent(), ["CAP END", "NICK cpimgw_"])
        self.server(":irc.test 001 cpimgw_ :Welcome")
        self.assertTrue(self.adapter.network.is_bot("CPIMGW_"))

    def test_server_without_cap_registers_anyway(self) -> None:
        self.sent()
        self.server(":irc.test 421 * CAP :Unknown command", ":irc.test 001 cpimgw :Welcome")
        self.assertIs(self.adapter.protocol, self.protocol)

    def test_channels_joined(self) -> None:
        self.adapter.settings = IRCSettings.from_mapping({"domain": "irc.test", "channels": ["#cpimgw"]})
        self.sign_on()
        self.server(":irc.test 001 cpimgw :Welcome")
        self.assertIn("JOIN #cpimgw", self.sent())

    def test_bad_line_is_counted_and_the_bot_keeps_serving(self) -> None:
        self.sign_on()
        self.protocol.dataReceived(b":dan!~d@h PRIVMSG cpimgw :a\x00b\r\n")
        self.assertEqual(self.adapter.counters["bad_lines"], 1)
        self.server("PING :still-there")
        self.assertEqual(self.sent(), ["PONG still-there"])


class SettingsTests(TestCase):

    def test_refusals(self) -> None:
        for values, key in [({"nickname": "1bad"}, "nickname"), ({"port": 0}, "port"),
                            ({"channels": ["nochan"]}, "channels"), ({"fallback_encoding": "nope"}, "fallback_encoding"),
                            ({"tls": False, "password": "pw", "host": "irc.example.net"}, "password")]:
            with self.assertRaises(ConfigError) as caught:
                IRCSettings.from_mapping(values)
            self.assertIn(f"adapters.irc.{key}", str(caught.exception))

    def test_password_on_plain_loopback_is_allowed(self) -> None:
        self.assertEqual(IRCSettings.from_mapping({"tls": False, "password": "pw", "host": "127.0.0.1"}).password, "pw")


def cpim_message(text: str, destination=DAN) -> Message:  # type: ignore[no-untyped-def]
    body = build_message(ALICE, [destination], text.encode(), "text/plain; charset=utf-8").to_bytes()
    return Message(ALICE, destination, Content(MEDIA_CPIM, body))


class MessageTests(BotFixture, TestCase):

    def setUp(self) -> Any:
        result = super().setUp()
        self.sign_on()
        return result

    def test_irc_user_to_alpha(self) -> None:
        self.server("@time=2026-04-01T10:00:00.000Z :Dan!~d@h PRIVMSG cpimgw :alice@alpha.example: hello")
        [message] = self.alpha.of_type(Message)
        self.assertEqual((message.source, message.destination, message.origin), (DAN, ALICE, "irc"))
        cpim = parse_message(message.content.body)
        self.assertEqual((cpim.body, cpim.date_time.text), (b"hello", "2026-04-01T10:00:00.000Z"))
        self.assertEqual(self.sent(), [])

    def test_reply_without_address_goes_to_the_last_correspondent(self) -> None:
        self.adapter.deliver(cpim_message("hi dan"))
        self.server(":dan!~d@h PRIVMSG cpimgw :hi alice")
        [message] = self.alpha.of_type(Message)
        self.assertEqual((message.destination, parse_message(message.content.body).body), (ALICE, b"hi alice"))
        stored = self.successResultOf(self.store.get_value("irc.reply", "dan"))
        self.assertEqual(stored, b"im:alice@alpha.example")

    def test_reply_addresses_survive_a_restart(self) -> None:
        from twisted.internet.endpoints import TCP4ClientEndpoint

        self.adapter.deliver(cpim_message("hi dan"))
        again = IRCAdapter("irc2", self.bus, IRCSettings.from_mapping({"domain": "irc.test"}),
                           endpoint=TCP4ClientEndpoint(self.reactor, "127.0.0.1", 6697))
        again.startService()
        self.addCleanup(again.stopService)
        self.assertEqual(again.last_peer, {"dan": ALICE})
        [(host, port, *_)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 6697))

    def test_nul_is_refused(self) -> None:
        response = self.successResultOf(self.adapter.deliver(cpim_message("a\x00b")))
        self.assertEqual(response.condition, Condition.BAD_REQUEST)
        self.assertEqual(self.sent(), [])

    def test_refusal_is_told_back_in_a_notice(self) -> None:
        self.alpha.reply = lambda op: __import__("cpimgw.cpim.operations", fromlist=["failure"]).failure(
            op, Condition.UNAVAILABLE, "alice is offline")
        self.server(":dan!~d@h PRIVMSG cpimgw :alice@alpha.example: hello")
        settle(self.bus)
        self.assertEqual(self.sent(), ["NOTICE dan :not delivered to alice@alpha.example: alice is offline"])

    def test_unmappable_privmsg_is_answered_notice_is_not(self) -> None:
        self.server(":dan!~d@h PRIVMSG cpimgw :no address")
        self.assertEqual(self.sent(), ["NOTICE dan :not delivered: no destination: write 'user@domain: text' to the "
                                       "gateway"])
        self.server(":dan!~d@h NOTICE cpimgw :no address")
        self.assertEqual(self.sent(), [])  # RFC 2812 §3.3.2: never an automatic reply to a NOTICE
        self.assertEqual(self.alpha.delivered, [])

    def test_deliver_success_after_pong(self) -> None:
        result = self.adapter.deliver(cpim_message("Hello Dan"))
        sent = self.sent()
        self.assertEqual(sent[0], "PRIVMSG dan :<alice@alpha.example> Hello Dan")
        self.assertTrue(sent[1].startswith("PING :cpimgw-"))
        self.assertNoResult(result)
        self.server(":irc.test 301 cpimgw dan :at lunch", f":irc.test PONG irc.test :{sent[1].split(':')[1]}")
        response = self.successResultOf(result)
        self.assertIs(response.status, Status.SUCCESS)
        self.assertIn("dan is away: at lunch", response.reason)

    def test_deliver_to_a_nick_not_online_fails(self) -> None:
        result = self.adapter.deliver(cpim_message("anyone?", im_uri("nobody", "irc.test")))
        token = self.sent()[1].split(":")[1]
        self.server(":irc.test 401 cpimgw nobody :No such nick/channel", f":irc.test PONG irc.test :{token}")
        response = self.successResultOf(result)
        self.assertEqual((response.status, response.condition), (Status.FAILURE, Condition.UNAVAILABLE))
        self.assertIn("401", response.reason)

    def test_long_text_is_split_and_said(self) -> None:
        result = self.adapter.deliver(cpim_message(" ".join(["word"] * 300)))
        sent = self.sent()
        privmsgs = [s for s in sent if s.startswith("PRIVMSG")]
        self.assertGreater(len(privmsgs), 2)
        self.assertEqual(" ".join(p.split("> ", 1)[1] for p in privmsgs), " ".join(["word"] * 300))
        self.server(f":irc.test PONG irc.test :{sent[-1].split(':')[1]}")
        self.assertIn(f"split into {len(privmsgs)} IRC messages", self.successResultOf(result).reason)

    def test_too_long_is_refused(self) -> None:
        response = self.successResultOf(self.adapter.deliver(cpim_message("line\n" * 20)))
        self.assertEqual((response.status, response.condition), (Status.FAILURE, Condition.TOO_LARGE))
        self.assertEqual(self.sent(), [])

    def test_no_answer_is_indeterminant(self) -> None:
        result = self.adapter.deliver(cpim_message("hello"))
        self.reactor.advance(15.0)
        self.assertIs(self.successResultOf(result).status, Status.INDETERMINANT)

    def test_not_connected(self) -> None:
        self.protocol.connectionLost(None)
        response = self.successResultOf(self.adapter.deliver(cpim_message("hello")))
        self.assertEqual(response.condition, Condition.SERVICE_UNAVAILABLE)
        self.protocol.makeConnection(StringTransport())  # for tearDown

    def test_no_subject_place_for_other_media(self) -> None:
        body = b"<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'/>"
        message = Message(ALICE, DAN, Content("application/im-iscomposing+xml", body))
        response = self.successResultOf(self.adapter.deliver(message))
        self.assertEqual(response.condition, Condition.UNSUPPORTED_MEDIA)


class PresenceTests(BotFixture, TestCase):

    def setUp(self) -> Any:
        result = super().setUp()
        self.sign_on("MONITOR=100")
        return result

    def watch(self) -> None:
        response = self.successResultOf(self.alpha.inject(Subscribe(pres_uri("alice", "alpha.example"),
                                                                    pres_uri("dan", "irc.test"), 600)))
        self.assertIs(response.status, Status.SUCCESS)
        settle(self.bus)

    def notes(self) -> list[bytes]:
        return [n.presence.body for n in self.alpha.of_type(Notify) if n.presence is not None]

    def test_subscribe_monitors_and_polls(self) -> None:
        self.watch()
        self.assertEqual(self.sent(), ["MONITOR + dan", "USERHOST dan"])
        self.server(":irc.test 302 cpimgw :dan=+~d@h")
        settle(self.bus)
        self.assertIn(b"<basic>open</basic>", self.notes()[-1])
        self.reactor.advance(30.0)
        self.assertEqual(self.sent(), ["USERHOST dan"])

    def test_away_through_userhost_and_whois(self) -> None:
        self.watch()
        self.sent()
        self.server(":irc.test 302 cpimgw :dan=-~d@h")
        self.assertEqual(self.sent(), ["WHOIS dan"])
        self.server(":irc.test 311 cpimgw dan ~d h * :Dan", ":irc.test 301 cpimgw dan :gone fishing",
                    ":irc.test 318 cpimgw dan :End of WHOIS list")
        settle(self.bus)
        last = self.notes()[-1]
        self.assertIn(b"gone fishing", last)
        self.assertIn(b"<rpid:away/>", last)

    def test_offline_then_monitor_online(self) -> None:
        self.watch()
        self.server(":irc.test 302 cpimgw :")
        settle(self.bus)
        self.assertIn(b"<basic>closed</basic>", self.notes()[-1])
        self.sent()
        self.server(":irc.test 730 cpimgw :dan!~d@h")
        settle(self.bus)
        self.assertIn(b"<basic>open</basic>", self.notes()[-1])
        self.assertEqual(self.sent(), ["USERHOST dan"])

    def test_away_notify_quit_and_nick(self) -> None:
        self.watch()
        self.server(":irc.test 302 cpimgw :dan=+~d@h", ":dan!~d@h AWAY :brb")
        settle(self.bus)
        self.assertIn(b"brb", self.notes()[-1])
        self.server(":dan!~d@h NICK danny")
        settle(self.bus)
        self.assertIn(b"now known as danny", self.notes()[-1])
        self.assertIn(b"<basic>closed</basic>", self.notes()[-1])

    def test_unsubscribe_stops_monitoring(self) -> None:
        response = self.successResultOf(self.adapter.deliver(Subscribe(pres_uri("alice", "alpha.example"),
                                                                      pres_uri("dan", "irc.test"), 600,
                                                                      subscript_id="s1")))
        self.assertEqual(response.duration, 600)
        self.sent()
        self.successResultOf(self.adapter.deliver(Subscribe(pres_uri("alice", "alpha.example"),
                                                            pres_uri("dan", "irc.test"), 0, subscript_id="s1")))
        self.assertEqual(self.sent(), ["MONITOR - dan"])
        self.assertEqual(self.adapter.watched, {})

    def test_irc_user_watches_alpha(self) -> None:
        self.server(":dan!~d@h PRIVMSG cpimgw :!watch alice@alpha.example")
        settle(self.bus)
        [subscribe] = self.alpha.of_type(Subscribe)
        self.assertEqual((str(subscribe.watcher), str(subscribe.target)),
                         ("pres:dan@irc.test", "pres:alice@alpha.example"))
        self.assertIn("NOTICE dan :alice@alpha.example is", " ".join(self.sent()))
        self.server(":dan!~d@h PRIVMSG cpimgw :!unwatch alice@alpha.example")
        settle(self.bus)
        self.assertEqual([s.duration for s in self.alpha.of_type(Subscribe)], [3600, 0])

    def test_notify_without_irc_watcher_nick(self) -> None:
        notify = Notify(pres_uri("1bad", "irc.test"), pres_uri("alice", "alpha.example"), None, subscript_id="x")
        response = self.successResultOf(self.adapter.deliver(notify))
        self.assertEqual(response.condition, Condition.NOT_FOUND)


class StrictTransportTests(BotFixture, TestCase):
    """IRCv3 sts: a plain connection is upgraded to TLS on the port the server names."""

    settings = {"tls": False, "port": 6667}

    def test_plain_connection_is_dropped_for_tls(self) -> None:
        self.sent()
        self.server(":irc.test CAP * LS :multi-prefix sts=port=6697,duration=300")
        self.assertEqual(self.sent(), [])  # no CAP REQ, no registration goes on over plain TCP
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual((self.adapter.sts_port, self.adapter.secure), (6697, True))
        from twisted.internet.endpoints import HostnameEndpoint

        endpoint = self.adapter.endpoint()
        self.assertNotIsInstance(endpoint, HostnameEndpoint)  # wrapClientTLS around it
        self.assertEqual(endpoint._wrappedEndpoint._port, 6697)
        self.assertEqual(self.successResultOf(self.store.get_value("irc.sts", "127.0.0.1")), b"6697")

    def test_no_policy_stays_plain(self) -> None:
        from twisted.internet.endpoints import HostnameEndpoint

        self.assertIsInstance(self.adapter.endpoint(), HostnameEndpoint)

    def test_policy_without_port_is_ignored(self) -> None:
        self.sent()
        self.server(":irc.test CAP * LS :sts=duration=300")
        self.assertEqual(self.sent(), ["CAP END"])
        self.assertIsNone(self.adapter.sts_port)
