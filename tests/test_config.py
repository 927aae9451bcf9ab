"""Tests of cpimgw.config: every key's default, the one-line errors, and the sample file."""

from __future__ import annotations

import os
import re
from typing import Any

import attrs
from twisted.trial.unittest import TestCase

from cpimgw import config
from cpimgw.config import (
    AdapterSettings,
    BusSettings,
    ClusterSettings,
    Config,
    GatewaySettings,
    PolicySettings,
    PresenceSettings,
    RoutingSettings,
    StoreSettings,
    TLSSettings,
    defaults,
    find_adapter_factories,
    load_config,
    parse_toml,
)
from cpimgw.cpim.errors import ConfigError
from tests.test_plugins import install_test_plugin

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf", "cpimgw.toml")
#: The plugin modules this distribution ships: the sample documents their adapters.  An adapter
#: installed from another distribution (plugins/cpimgw-irc) documents its options itself.
OWN_PLUGINS = frozenset(
    "twisted.plugins." + os.path.splitext(name)[0]
    for name in os.listdir(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "twisted", "plugins"))
    if name.endswith(".py")
)


def own_adapter_factories() -> dict[str, Any]:
    """The installed adapter factories that come from this distribution's ``twisted/plugins/``."""
    return {name: factory for name, factory in find_adapter_factories().items()
            if type(factory).__module__ in OWN_PLUGINS}

#: "# key = value" (an option at its default) and "# [table]" (its header).
OPTION_LINE = re.compile(r'^# ?((?:[A-Za-z0-9_-]+|"[^"]*")(?:\.(?:[A-Za-z0-9_-]+|"[^"]*"))* = \S.*)$')
TABLE_LINE = re.compile(r"^# ?(\[[A-Za-z0-9_.\"-]+\])\s*$")
REGION = re.compile(r"^# ---- (end )?adapter: ([A-Za-z0-9_-]+) ----$")


def uncomment_sample(text: str, installed: set[str]) -> str:
    """Uncomment every option and table header; drop regions of adapters not installed."""
    lines = []
    skipping = None
    for line in text.splitlines():
        region = REGION.match(line)
        if region:
            end, name = region.groups()
            if not end and name not in installed:
                skipping = name
            elif end and skipping == name:
                skipping = None
            continue
        if skipping:
            continue
        match = OPTION_LINE.match(line) or TABLE_LINE.match(line)
        lines.append(match.group(1) if match else line)
    return "\n".join(lines) + "\n"


class DefaultsTests(TestCase):
    """The built-in defaults, key by key."""

    def test_every_default(self) -> None:
        c = defaults(factories={})
        self.assertEqual(c.gateway, GatewaySettings("cpimgw", ".", "info"))
        self.assertEqual(c.store, StoreSettings("sqlite", "cpimgw.sqlite"))
        self.assertEqual(dict(c.routing.domains), {})
        self.assertIs(c.routing.srv_fallback, True)
        self.assertEqual(c.bus, BusSettings(86400.0, 120))
        self.assertEqual(c.presence, PresenceSettings(3600, 86400))
        self.assertEqual(c.policy, PolicySettings("allow", "allow", (), ()))
        self.assertEqual(c.tls, TLSSettings("", "", "", True))
        self.assertEqual(c.adapters, ())
        self.assertIsNone(c.path)
        self.assertEqual(c.store_path, os.path.join(".", "cpimgw.sqlite"))
        self.assertEqual(load_config(None, factories={}), c)

    def test_frozen(self) -> None:
        c = defaults(factories={})
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, c.presence, "max_duration", 1)

    def test_adapter_defaults(self) -> None:
        plugin: Any = install_test_plugin(self)
        c = defaults(factories=[plugin.echo, plugin.ohce])
        echo = c.adapter("echo")
        self.assertEqual(
            echo,
            AdapterSettings(
                "echo", True, {"domains": ("echo.test",), "host": "127.0.0.1", "port": 0, "fail": False}
            ),
        )
        self.assertIs(c.adapter("ohce").enabled, False)
        self.assertIsNone(c.adapter("nope"))
        self.assertEqual(find_adapter_factories()["echo"], plugin.echo)
        self.assertEqual([a.name for a in c.adapters], ["echo", "ohce"])


class LoadTests(TestCase):
    """Values read from a file."""

    def echo_factories(self) -> list[Any]:
        plugin: Any = install_test_plugin(self)
        return [plugin.echo, plugin.ohce]

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def load(self, text: str, **kw: object) -> Config:
        kw.setdefault("factories", {})
        return load_config(self.write(text), **kw)  # type: ignore[arg-type]

    def error(self, text: str, **kw: object) -> str:
        path = self.write(text)
        kw.setdefault("factories", {})
        error = self.assertRaises(ConfigError, load_config, path, **kw)
        text = str(error)
        self.assertNotIn("\n", text)
        prefix = path + ": "
        self.assertTrue(text.startswith(prefix), text)
        return text[len(prefix) :]

    def test_every_key(self) -> None:
        c = self.load(
            """
            [gateway]
            name = "gw1"
            data_dir = "/var/lib/cpimgw"
            log_level = "debug"
            [store]
            kind = "memory"
            path = "state.db"
            [routing]
            srv_fallback = false
            [bus]
            duplicate_ttl = 60
            max_forwards = 70
            [presence]
            default_duration = 600
            max_duration = 1200
            [policy]
            presence = "same-domain"
            message = "deny"
            allow_domains = ["Example.ORG."]
            deny_domains = ["spam.example"]
            [tls]
            certificate = "gw.pem"
            private_key = "gw.key"
            ca_certificates = "ca.pem"
            verify = false
            """.replace("\n            ", "\n")
        )
        self.assertEqual(c.gateway, GatewaySettings("gw1", "/var/lib/cpimgw", "debug"))
        self.assertEqual(c.store, StoreSettings("memory", "state.db"))
        self.assertEqual(c.store_path, "/var/lib/cpimgw/state.db")
        self.assertIs(c.routing.srv_fallback, False)
        self.assertEqual(c.bus, BusSettings(60.0, 70))
        self.assertIsInstance(c.bus.duplicate_ttl, float)
        self.assertEqual(c.presence, PresenceSettings(600, 1200))
        self.assertEqual(c.policy, PolicySettings("same-domain", "deny", ("example.org",), ("spam.example",)))
        self.assertEqual(c.tls, TLSSettings("gw.pem", "gw.key", "ca.pem", False))

    def test_routing_domains(self) -> None:
        c = load_config(self.write('[routing.domains]\n"Chat.Example.COM" = "echo"\n'), factories=self.echo_factories())
        self.assertEqual(dict(c.routing.domains), {"chat.example.com": "echo"})

    def test_routing_unknown_adapter(self) -> None:
        reason = self.error('[routing.domains]\n"chat.example.com" = "irc"\n', factories=self.echo_factories())
        self.assertEqual(reason, 'routing.domains."chat.example.com": unknown adapter "irc" (known: echo, ohce)')

    def test_wrong_values(self) -> None:
        cases = [
            ('[presence]\nmax_duration = "abc"', 'presence.max_duration: must be a positive integer, got "abc"'),
            ("[presence]\nmax_duration = 0", "presence.max_duration: must be a positive integer, got 0"),
            ("[presence]\ndefault_duration = -5", "presence.default_duration: must be a positive integer, got -5"),
            ("[presence]\ndefault_duration = true", "presence.default_duration: must be a positive integer, got true"),
            (
                "[presence]\ndefault_duration = 7200\nmax_duration = 3600",
                "presence.default_duration: must not exceed presence.max_duration (3600), got 7200",
            ),
            ('[gateway]\nname = ""', "gateway.name: must not be empty"),
            ("[gateway]\ndata_dir = 3", "gateway.data_dir: must be a string, got 3"),
            (
                '[gateway]\nlog_level = "loud"',
                'gateway.log_level: must be one of "debug", "info", "warn", "error", "critical", got "loud"',
            ),
            ('[store]\nkind = "etcd"', 'store.kind: must be one of "sqlite", "memory", "redis", got "etcd"'),
            ('[store]\nkind = "redis"\nurl = "http://127.0.0.1"',
             "store.url: must be a redis:// or rediss:// URL, got 'http://127.0.0.1'"),
            ('[gateway]\nworkers = 2', 'gateway.workers: 2 workers need the shared store ([store] kind = "redis"), '
             'not "sqlite"'),
            ("[cluster]\nheartbeat = 2.0\nnode_timeout = 1.0",
             "cluster.node_timeout: must be longer than cluster.heartbeat (2)"),
            ("[cluster]\nclaim_idle = 0", "cluster.claim_idle: must be a positive number of seconds, got 0"),
            ("[store]\npath = 1.5", "store.path: must be a string, got 1.5"),
            ('[routing]\nsrv_fallback = "yes"', 'routing.srv_fallback: must be true or false, got "yes"'),
            ('[routing]\ndomains = "x"', 'routing.domains: must be a table, got "x"'),
            ('[routing.domains]\n"not a domain" = "x"', 'routing.domains."not a domain": is not a domain name'),
            ("[bus]\nduplicate_ttl = -1.0", "bus.duplicate_ttl: must be a positive number of seconds, got -1.0"),
            ("[bus]\nmax_forwards = 0", "bus.max_forwards: must be a positive integer, got 0"),
            ("[bus]\nmax_forwards = 300", "bus.max_forwards: must be at most 255, got 300"),
            (
                '[policy]\npresence = "friends"',
                'policy.presence: must be one of "allow", "same-domain", "deny", got "friends"',
            ),
            ('[policy]\nmessage = "same-domain"', 'policy.message: must be one of "allow", "deny", got "same-domain"'),
            ('[policy]\nallow_domains = "a.example"', 'policy.allow_domains: must be a list of domain names, got "a.example"'),
            ('[policy]\ndeny_domains = ["ok.example", "bad domain"]', 'policy.deny_domains[1]: must be a domain name, got "bad domain"'),
            ('[tls]\nverify = "no"', 'tls.verify: must be true or false, got "no"'),
            ('[tls]\ncertificate = "a.pem"', "tls.private_key: must be set when the other of certificate/private_key is set"),
            ("[tls]\nca_certificates = false", "tls.ca_certificates: must be a string, got false"),
            ("gateway = 3", "gateway: must be a table, got 3"),
        ]
        for text, expected in cases:
            self.assertEqual(self.error(text + "\n"), expected, text)

    def test_unknown_keys(self) -> None:
        self.assertEqual(
            self.error("[presence]\nmax_durations = 5\n"),
            "presence.max_durations: unknown key (known: default_duration, max_duration)",
        )
        self.assertEqual(
            self.error("[server]\nport = 5\n"),
            "server: unknown key (known: gateway, store, routing, bus, presence, policy, tls, adapters, cluster)",
        )

    def test_unknown_adapter(self) -> None:
        self.assertEqual(self.error("[adapters.irc]\n"), "adapters.irc: unknown adapter (installed: none installed)")
        self.assertEqual(
            self.error("[adapters.irc]\nenabled = true\n", factories=self.echo_factories()),
            "adapters.irc: unknown adapter (installed: echo, ohce)",
        )

    def test_adapter_table(self) -> None:
        factories = self.echo_factories()
        c = load_config(
            self.write('[adapters.echo]\nport = 5222\ndomains = ["a.test", "b.test"]\n[adapters.ohce]\nenabled = true\n'),
            factories=factories,
        )
        self.assertEqual(
            c.adapter("echo"),
            AdapterSettings("echo", True, {"domains": ("a.test", "b.test"), "host": "127.0.0.1", "port": 5222, "fail": False}),
        )
        self.assertIs(c.adapter("ohce").enabled, True)
        self.assertEqual(
            self.error("[adapters.echo]\nenabled = 1\n", factories=factories), "adapters.echo.enabled: must be true or false, got 1"
        )
        self.assertEqual(
            self.error('[adapters.echo]\nport = "x"\n', factories=factories), 'adapters.echo.port: must be an integer, got "x"'
        )
        self.assertEqual(
            self.error("[adapters.echo]\nprot = 1\n", factories=factories),
            "adapters.echo.prot: unknown key (known: enabled, domains, host, port, fail)",
        )

    def test_syntax_error(self) -> None:
        self.assertEqual(
            self.error('[gateway]\nname = "gw"\nlog_level = loud\n'),
            "line 3, column 13: TOML syntax error: Invalid value",
        )
        self.assertEqual(
            self.error("[gateway\n"), "line 1, column 9: TOML syntax error: Expected ']' at the end of a table declaration"
        )

    def test_unreadable(self) -> None:
        path = self.mktemp()
        error = self.assertRaises(ConfigError, load_config, path, factories={})
        self.assertEqual(str(error), f"{path}: cannot read: No such file or directory")
        os.mkdir(path)
        error = self.assertRaises(ConfigError, load_config, path, factories={})
        self.assertEqual(str(error), f"{path}: cannot read: is a directory")
        bad = self.write("")
        with open(bad, "wb") as handle:
            handle.write(b"[gateway]\nname = \"\xff\"\n")
        error = self.assertRaises(ConfigError, load_config, bad, factories={})
        self.assertEqual(str(error), f"{bad}: not UTF-8 at offset 18")

    def test_parse_toml_without_path(self) -> None:
        error = self.assertRaises(ConfigError, parse_toml, "a = ", None)
        self.assertEqual(str(error), "<defaults>: line 1, column 5: TOML syntax error: Invalid value at the end")


class SampleTests(TestCase):
    """conf/cpimgw.toml lists every option at its default."""

    def check_sample(self) -> None:
        installed = own_adapter_factories()
        with open(SAMPLE, encoding="utf-8") as handle:
            text = handle.read()
        # As shipped (all commented out) it is the defaults.
        self.assertEqual(load_config(SAMPLE), defaults())
        uncommented = uncomment_sample(text, set(installed))
        data = parse_toml(uncommented, SAMPLE)
        loaded = config.from_mapping(data, SAMPLE)
        self.assertEqual(loaded, defaults())
        # Every option is there, not just the ones that happen to be listed.
        for table, cls in [
            ("gateway", GatewaySettings),
            ("store", StoreSettings),
            ("routing", RoutingSettings),
            ("bus", BusSettings),
            ("presence", PresenceSettings),
            ("policy", PolicySettings),
            ("tls", TLSSettings),
            ("cluster", ClusterSettings),
        ]:
            self.assertEqual(set(data[table]), {f.name for f in attrs.fields(cls)}, table)
        for name, factory in installed.items():
            self.assertIn(name, data.get("adapters", {}), f"no [adapters.{name}] region in the sample")
            self.assertEqual(
                set(data["adapters"][name]), set(factory.defaults()) | {"enabled"}, f"options of [adapters.{name}]"
            )

    def test_sample_equals_defaults(self) -> None:
        self.check_sample()

    def test_regions(self) -> None:
        with open(SAMPLE, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        for name in ("xmpp", "sip", "prim"):
            self.assertIn(f"# ---- adapter: {name} ----", lines)
            self.assertIn(f"# ---- end adapter: {name} ----", lines)
            start = lines.index(f"# ---- adapter: {name} ----")
            end = lines.index(f"# ---- end adapter: {name} ----")
            self.assertLess(start, end)
            self.assertIn(f"# [adapters.{name}]", lines[start:end])

    def test_uncomment(self) -> None:
        text = (
            "# An explanation = not an option.\n# key = 1\n#   e.g. other = 2\n# [t]\n"
            "# ---- adapter: gone ----\n# [adapters.gone]\n# x = 1\n# ---- end adapter: gone ----\n"
        )
        self.assertEqual(
            uncomment_sample(text, set()), "# An explanation = not an option.\nkey = 1\n#   e.g. other = 2\n[t]\n"
        )
