"""Tests of cpimgw.logs: one JSON object per line, stable event names and fields, no secret ever written."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.logger import FileLogObserver, Logger, LogPublisher, formatEventAsClassicLogText
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim import sasl
from cpimgw.config import from_mapping
from cpimgw.logs import (
    REDACTED, event_as_json, is_secret_name, json_file_observer, redact, restore, use_json_format, use_redaction,
)
from tests.adapters.prim.test_adapter import PrimFixture


def lines_of(out: io.StringIO) -> list[dict[str, Any]]:
    """Every line of ``out`` parsed as one JSON object (fails on a line that is not)."""
    text = out.getvalue()
    assert text.endswith("\n"), repr(text[-80:])
    return [json.loads(line) for line in text.splitlines()]


class JSONFormatTests(TestCase):
    def setUp(self) -> None:
        self.out = io.StringIO()
        self.publisher = LogPublisher(json_file_observer(self.out))
        self.log = Logger(namespace="cpimgw.test", observer=self.publisher)

    def test_one_object_per_line(self) -> None:
        self.log.info("adapter {adapter} serving {domains}", adapter="sip", domains=("a.example", "b.example"),
                      event="adapter.serving")
        self.log.warn("multi\nline {what}", what="text\nwith newlines", peer="127.0.0.1:5060")
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("broken {thing}", thing=b"bytes \xff")
        first, second, third = lines_of(self.out)
        self.assertEqual(first["event"], "adapter.serving")
        self.assertEqual(first["level"], "info")
        self.assertEqual(first["namespace"], "cpimgw.test")
        self.assertEqual(first["message"], "adapter sip serving ('a.example', 'b.example')")
        self.assertEqual(first["adapter"], "sip")
        self.assertEqual(first["domains"], ["a.example", "b.example"])
        self.assertRegex(first["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        # Without an explicit event name, the namespace names it.
        self.assertEqual(second["event"], "cpimgw.test")
        self.assertEqual(second["level"], "warn")
        self.assertEqual(second["what"], "text\nwith newlines")
        self.assertEqual(second["peer"], "127.0.0.1:5060")
        self.assertEqual(third["level"], "critical")
        self.assertIn("ZeroDivisionError", third["failure"])
        self.assertEqual(third["thing"], "bytes \ufffd")

    def test_secret_fields_redacted(self) -> None:
        self.log.info("component {domain} connecting", domain="gw.example", secret="s3cret",
                      password="hunter2", settings={"users": {"carol": "x"}, "peer_secret": "p4ss"})
        [line] = lines_of(self.out)
        self.assertEqual(line["secret"], REDACTED)
        self.assertEqual(line["password"], REDACTED)
        self.assertEqual(line["settings"]["peer_secret"], REDACTED)
        text = self.out.getvalue()
        for secret in ("s3cret", "hunter2", "p4ss"):
            self.assertNotIn(secret, text)

    def test_secret_names(self) -> None:
        for name in ("secret", "peer_secret", "Password", "tls_private_key", "passphrase", "auth_token"):
            self.assertTrue(is_secret_name(name), name)
        for name in ("peer", "account", "condition", "protocol", "domain"):
            self.assertFalse(is_secret_name(name), name)
        event = {"log_format": "{secret}", "secret": "x"}
        self.assertEqual(redact(event)["secret"], REDACTED)
        self.assertEqual(event["secret"], "x")  # a copy: other observers are unaffected

    def test_address_objects(self) -> None:
        from twisted.internet.address import IPv4Address, IPv6Address

        line = json.loads(event_as_json({"log_format": "x", "log_namespace": "n", "log_time": 0.0,
                                         "peer": IPv4Address("TCP", "192.0.2.1", 5222),
                                         "peer6": IPv6Address("TCP", "::1", 5060)}))
        self.assertEqual((line["peer"], line["peer6"]), ("192.0.2.1:5222", "[::1]:5060"))
        self.assertEqual(line["time"], "1970-01-01T00:00:00.000000Z")

    def test_text_observers_switched_and_restored(self) -> None:
        out = io.StringIO()
        text_observer = FileLogObserver(out, lambda event: formatEventAsClassicLogText(event))
        publisher = LogPublisher(text_observer)
        replaced = use_json_format(publisher)
        self.assertEqual(len(replaced), 1)
        Logger(namespace="cpimgw.x", observer=publisher).info("hello {who}", who="operator")
        self.assertEqual(json.loads(out.getvalue())["message"], "hello operator")
        restore(publisher, replaced)
        Logger(namespace="cpimgw.x", observer=publisher).info("plain again")
        self.assertTrue(out.getvalue().splitlines()[-1].endswith("plain again"))

    def test_text_format_redacted_too(self) -> None:
        out = io.StringIO()
        text_observer = FileLogObserver(out, lambda event: formatEventAsClassicLogText(event))
        publisher = LogPublisher(text_observer)
        replaced = use_json_format(publisher) + use_redaction(publisher)
        Logger(namespace="cpimgw.x", observer=publisher).info("joined with {secret}", secret="s3cret")
        self.assertEqual(json.loads(out.getvalue())["message"], "joined with <redacted>")
        restore(publisher, replaced)
        self.assertEqual(publisher._observers, [text_observer])
        redacted_only = use_redaction(publisher)
        Logger(namespace="cpimgw.x", observer=publisher).info("text with {password}", password="hunter2")
        self.assertTrue(out.getvalue().splitlines()[-1].endswith("text with <redacted>"))
        restore(publisher, redacted_only)
        self.assertEqual(publisher._observers, [text_observer])

    def test_log_format_option(self) -> None:
        from cpimgw.cpim.errors import ConfigError

        self.assertEqual(from_mapping({}, factories={}).gateway.log_format, "text")
        self.assertEqual(from_mapping({"gateway": {"log_format": "json"}}, factories={}).gateway.log_format, "json")
        error = self.assertRaises(ConfigError, from_mapping, {"gateway": {"log_format": "xml"}}, factories={})
        self.assertEqual(error.key, "gateway.log_format")


class PrimLoginLogTests(PrimFixture, TestCase):
    """A failed PRIM LOGIN is logged with the account and the peer's address, never the secret."""

    def test_failed_login_logs_account_and_address(self) -> None:
        from twisted.logger import globalLogPublisher

        from tests.test_metrics import Delta

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        delta = Delta()
        bad = self.connect("client")
        bad.send("LOGIN", [("From", "pres:alice@prim.example"), ("Auth-State", "init"), ("SASL-Mech", "CRAM-MD5")])
        (challenge,) = bad.read()
        response = sasl.cram_md5_response("alice@prim.example", "guessed-wrong-pw", challenge.body)
        bad.send("LOGIN", [("From", "pres:alice@prim.example"), ("Auth-State", "continue"), ("SASL-Mech", "CRAM-MD5"),
                           ("Content-Type", "text/plain")], response)
        self.assertEqual([r.code for r in bad.read()], [406])
        [event] = [e for e in events if e.get("event") == "prim.login.failed"]
        self.assertEqual(event["account"], "pres:alice@prim.example")
        self.assertEqual(event["peer"], "192.168.1.1:54321")  # StringTransport's peer address
        self.assertEqual((event["protocol"], event["condition"], event["role"]), ("prim", "not-authorized", "client"))
        line = json.loads(event_as_json(event))
        self.assertIn("pres:alice@prim.example", line["message"])
        self.assertIn("192.168.1.1", line["message"])
        self.assertEqual(delta.of("cpimgw_auth_failures_total", adapter="prim", peer_kind="client"), 1)
        # Neither the user's pass phrase nor what was tried is in any event.
        for e in events:
            text = event_as_json(e) + repr(e)
            self.assertNotIn("wonder", text)
            self.assertNotIn(response.decode("latin-1"), text)
