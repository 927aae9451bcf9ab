"""Tests of the xmpp INativeCodec (cpimgw parse xmpp / cpimgw translate) and its plugin."""

from __future__ import annotations

from twisted.plugin import IPlugin
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from cpimgw.adapters.xmpp.codec import XMPPCodec, XMPPParseError
from cpimgw.adapters.xmpp.mapping import read_cpim, read_pidf
from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.operations import Message, Publish, Subscribe
from cpimgw.interfaces import IAdapterFactory, INativeCodec

MESSAGE = (b"<message from='juliet@example.com/balcony' to='romeo\\40sip.example@gw.localhost' id='m1'>"
           b"<subject>Hi!</subject><body>Wherefore art thou?</body></message>")


class CodecTests(unittest.TestCase):
    def setUp(self):
        self.codec = XMPPCodec()

    def test_parse(self):
        parsed = self.codec.parse(MESSAGE)
        self.assertEqual(parsed["name"], "message")
        self.assertEqual(parsed["namespace"], "jabber:client")
        self.assertEqual(parsed["attributes"]["from"], "juliet@example.com/balcony")
        self.assertEqual([c["name"] for c in parsed["children"]], ["subject", "body"])
        self.assertEqual(parsed["children"][1]["text"], "Wherefore art thou?")

    def test_parse_refuses_bad_input(self):
        for data in (b"<message", b"<!DOCTYPE x><message/>", b"<message/><message/>", b"<foo/>",
                     b"<message>" + b"x" * 70000 + b"</message>"):
            self.assertRaises(ParseError, self.codec.parse, data)

    def test_translate_to_cpim_and_back(self):
        operation = self.codec.to_operation(MESSAGE)
        self.assertIsInstance(operation, Message)
        self.assertEqual(str(operation.destination), "im:romeo@sip.example")
        self.assertEqual(read_cpim(operation.content).subjects, ((None, "Hi!"),))
        back = self.codec.from_operation(operation)
        self.assertIn(b"<body>Wherefore art thou?</body>", back)
        self.assertIn(b"to='romeo\\40sip.example@gw.localhost'", back)

    def test_presence_and_subscribe(self):
        publish = self.codec.to_operation(b"<presence from='juliet@example.com/b'><show>away</show></presence>")
        self.assertIsInstance(publish, Publish)
        self.assertEqual(read_pidf(publish.presence).tuples[0].status.xmpp_show, "away")
        self.assertIn(b"<show>away</show>", self.codec.from_operation(publish))
        subscribe = self.codec.to_operation(
            b"<presence from='juliet@example.com' to='romeo\\40sip.example@gw.localhost' type='subscribe'/>")
        self.assertIsInstance(subscribe, Subscribe)
        self.assertEqual((str(subscribe.watcher), str(subscribe.target)),
                         ("pres:juliet@example.com", "pres:romeo@sip.example"))
        self.assertRaises(XMPPParseError, self.codec.to_operation, b"<iq type='get' id='1'/>")

    def test_plugins(self):
        import importlib

        plugin = importlib.import_module("twisted.plugins.cpimgw_xmpp")
        verifyObject(IAdapterFactory, plugin.xmpp)
        verifyObject(INativeCodec, plugin.xmpp_codec)
        self.assertTrue(IPlugin.providedBy(plugin.xmpp))
        self.assertEqual(plugin.xmpp_codec.parse(MESSAGE)["name"], "message")
