"""Tests of the ``prim`` codec and the plugin module (twisted/plugins/cpimgw_prim.py)."""

from __future__ import annotations

from twisted.plugin import getPlugins
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from cpimgw.adapters.prim import codec, wire
from cpimgw.adapters.prim.adapter import DEFAULTS, PrimAdapter
from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.operations import Content, Message, Notify, Publish, Subscribe
from cpimgw.cpim.uri import pres_uri
from cpimgw.interfaces import IAdapter, IAdapterFactory, INativeCodec
from cpimgw.testing import make_bus
from tests.adapters.prim.test_mapping import SEND
from tests.adapters.prim.test_wire import CHALLENGE


class CodecTests(TestCase):
    def test_parse(self) -> None:
        parsed = codec.PrimCodec().parse(SEND)
        self.assertEqual((parsed["kind"], parsed["method"], parsed["request_id"], parsed["length"], parsed["body"]),
                         ("request", "SEND", "12", 5, "hello"))
        self.assertIn(["Message-ID", "20010226095208.abc"], parsed["headers"])
        response = codec.PrimCodec().parse(CHALLENGE)
        self.assertEqual((response["kind"], response["code"], response["phrase"]), ("response", 100, "Authentication Continued"))

    def test_binary_body_as_base64(self) -> None:
        data = wire.Request("SEND", "1", (("Content-Type", "application/octet-stream"),), b"\xff\x00").to_bytes()
        self.assertEqual(codec.PrimCodec().parse(data)["body_base64"], "/wA=")

    def test_send_to_message_and_back(self) -> None:
        message = codec.to_operation(SEND)
        self.assertIsInstance(message, Message)
        back = wire.parse_command(codec.from_operation(message))
        self.assertEqual((back.method, back.header("Message-ID"), back.header("Conversation-ID"), back.body),
                         ("SEND", "20010226095208.abc", "conv-7", message.content.body))

    def test_presence_operations(self) -> None:
        subscribe = Subscribe(pres_uri("a", "a.example"), pres_uri("b", "b.example"), 60, subscript_id="s9")
        self.assertEqual(codec.to_operation(codec.from_operation(subscribe)).subscript_id, "s9")
        notify = Notify(pres_uri("a", "a.example"), pres_uri("b", "b.example"),
                        Content("application/pidf+xml", b"<presence/>"), subscript_id="s9")
        self.assertEqual(codec.to_operation(codec.from_operation(notify)).presence, notify.presence)
        publish = Publish(pres_uri("b", "b.example"), Content("application/pidf+xml", b"<presence/>"), instance="t1")
        back = codec.to_operation(codec.from_operation(publish))
        self.assertEqual((back.presentity, back.presence, back.instance), (publish.presentity, publish.presence, "t1"))

    def test_not_carried(self) -> None:
        self.assertRaises(ParseError, codec.to_operation, b"PING PRIM/1.0 - 0\r\n\r\n")
        self.assertRaises(ParseError, codec.to_operation, CHALLENGE)
        self.assertRaises(ParseError, codec.from_operation, object())
        self.assertRaises(ParseError, codec.to_operation, b"SEND PRIM/1.0 1 99\r\n\r\nshort")


class PluginTests(TestCase):
    def test_found_and_valid(self) -> None:
        factories = {f.name: f for f in getPlugins(IAdapterFactory)}
        codecs = {c.name: c for c in getPlugins(INativeCodec)}
        self.assertIn("prim", factories)
        self.assertIn("prim", codecs)
        factory = factories["prim"]
        verifyObject(IAdapterFactory, factory)
        verifyObject(INativeCodec, codecs["prim"])
        self.assertEqual(factory.defaults(), DEFAULTS)
        self.assertEqual(factory.srv_labels, ("_prim",))
        self.assertEqual(codecs["prim"].parse(SEND)["method"], "SEND")

    def test_build(self) -> None:
        factory = {f.name: f for f in getPlugins(IAdapterFactory)}["prim"]
        bus = make_bus()
        adapter = factory.build(factory.defaults(), bus)
        self.assertIsInstance(adapter, PrimAdapter)
        verifyObject(IAdapter, adapter)
        self.assertEqual(adapter.domains, ("prim.localhost",))
        self.assertEqual(adapter.listen_ports, {"server": 5780, "client": 5781})
        self.assertEqual(adapter.listening_addresses(), [])
