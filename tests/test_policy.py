"""Tests of cpimgw.policy.DefaultPolicy: each mode, deny_domains precedence, reasons naming the rule."""

from __future__ import annotations

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import Content, Message, Subscribe
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.interfaces import IPolicy
from cpimgw.policy import DefaultPolicy, domain_matches


def message(source_domain: str, destination_domain: str = "beta.example") -> Message:
    return Message(im_uri("a", source_domain), im_uri("b", destination_domain), Content("text/plain", b"x"))


def subscribe(watcher_domain: str, target_domain: str = "beta.example") -> Subscribe:
    return Subscribe(pres_uri("w", watcher_domain), pres_uri("t", target_domain), 60)


class DefaultPolicyTests(unittest.TestCase):
    def may_message(self, policy: DefaultPolicy, op: Message) -> str | None:
        return self.successResultOf(policy.may_message(op))

    def may_subscribe(self, policy: DefaultPolicy, op: Subscribe) -> str | None:
        return self.successResultOf(policy.may_subscribe(op))

    def test_interface_and_defaults(self) -> None:
        policy = DefaultPolicy()
        self.assertTrue(verifyObject(IPolicy, policy))
        self.assertIsNone(self.may_message(policy, message("alpha.example")))
        self.assertIsNone(self.may_subscribe(policy, subscribe("alpha.example")))
        self.assertEqual(policy.max_duration(subscribe("alpha.example")), 86400)
        self.assertEqual(DefaultPolicy(max_duration=3600).max_duration(subscribe("x.example")), 3600)

    def test_message_deny(self) -> None:
        policy = DefaultPolicy(message="deny", allow_domains=["alpha.example"])
        self.assertIsNone(self.may_message(policy, message("alpha.example")))
        self.assertEqual(self.may_message(policy, message("gamma.example")),
                         "policy message=deny: gamma.example is not in allow_domains")

    def test_presence_same_domain(self) -> None:
        policy = DefaultPolicy(presence="same-domain", allow_domains=[".trusted.example"])
        self.assertIsNone(self.may_subscribe(policy, subscribe("Beta.Example")))
        self.assertIsNone(self.may_subscribe(policy, subscribe("eu.trusted.example")))
        self.assertEqual(
            self.may_subscribe(policy, subscribe("alpha.example")),
            "policy presence=same-domain: watcher domain alpha.example is not beta.example and not in allow_domains",
        )
        # Messages are not affected by the presence rule.
        self.assertIsNone(self.may_message(policy, message("alpha.example")))

    def test_presence_deny(self) -> None:
        policy = DefaultPolicy(presence="deny", allow_domains=["ops.example"])
        self.assertEqual(self.may_subscribe(policy, subscribe("beta.example")),
                         "policy presence=deny: beta.example is not in allow_domains")
        self.assertIsNone(self.may_subscribe(policy, subscribe("ops.example")))

    def test_deny_domains_win(self) -> None:
        policy = DefaultPolicy(presence="same-domain", allow_domains=["spam.example"],
                               deny_domains=["spam.example", ".evil.example"])
        self.assertEqual(self.may_message(policy, message("spam.example")),
                         "policy deny_domains: messages from spam.example are refused (rule 'spam.example')")
        self.assertEqual(self.may_subscribe(policy, subscribe("x.evil.example", "x.evil.example")),
                         "policy deny_domains: watchers from x.evil.example are refused (rule '.evil.example')")
        # The destination's domain is not what deny_domains looks at.
        self.assertIsNone(self.may_message(policy, message("ok.example", "spam.example")))

    def test_domain_matches(self) -> None:
        self.assertEqual(domain_matches("A.Example.", ["a.example"]), "a.example")
        self.assertEqual(domain_matches("x.a.example", [".a.example"]), ".a.example")
        self.assertIsNone(domain_matches("a.example", [".a.example"]))
        self.assertIsNone(domain_matches("ba.example", ["a.example"]))

    def test_bad_configuration(self) -> None:
        self.assertRaises(ConfigError, DefaultPolicy, presence="maybe")
        self.assertRaises(ConfigError, DefaultPolicy, message="sometimes")
        self.assertRaises(ConfigError, DefaultPolicy, allow_domains="alpha.example")
        self.assertRaises(ConfigError, DefaultPolicy, deny_domains=[""])
        self.assertRaises(ConfigError, DefaultPolicy, max_duration=-1)
        error = self.assertRaises(ConfigError, DefaultPolicy, presence="maybe")
        self.assertIn("policy.presence", str(error))

    def test_synchronous_variants(self) -> None:
        """may_message_now / may_subscribe_now answer what the Deferred methods do, and are marked for the bus."""
        from cpimgw.bus import SYNCHRONOUS_ATTRIBUTE

        policy = DefaultPolicy(presence="same-domain", deny_domains=["spam.example"])
        for op in (message("spam.example"), message("ok.example")):
            self.assertEqual(policy.may_message_now(op), self.may_message(policy, op))
        for watch in (subscribe("x.example"), subscribe("beta.example"), subscribe("spam.example")):
            self.assertEqual(policy.may_subscribe_now(watch), self.may_subscribe(policy, watch))
        self.assertEqual(policy.may_message_now(message("spam.example")),
                         "policy deny_domains: messages from spam.example are refused (rule 'spam.example')")
        self.assertEqual(getattr(policy.may_message, SYNCHRONOUS_ATTRIBUTE), "may_message_now")
        self.assertEqual(getattr(policy.may_subscribe, SYNCHRONOUS_ATTRIBUTE), "may_subscribe_now")
