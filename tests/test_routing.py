"""Tests of cpimgw.routing: the static table, RFC 2782 ordering, and RFC 3861 SRV lookups.

The SRV tests run real DNS over UDP on 127.0.0.1: a ``twisted.names`` server
with a zone built in code, queried by a ``twisted.names`` client resolver.
"""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.names import authority, client, dns, server
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from cpimgw.cpim.errors import ConfigError
from cpimgw.interfaces import IResolver
from cpimgw.routing import SRVResolver, SRVTarget, StaticRoutes, order_srv


class StaticRoutesTests(unittest.TestCase):
    def setUp(self) -> None:
        self.routes = StaticRoutes({
            "Example.COM": "xmpp",
            ".example.com": "sip",
            ".deep.example.com": "prim",
            "other.example.": "xmpp",
        })

    def test_exact_case_insensitive(self) -> None:
        self.assertEqual(self.routes.lookup("example.com"), "xmpp")
        self.assertEqual(self.routes.lookup("EXAMPLE.com."), "xmpp")
        self.assertEqual(self.routes.lookup("other.example"), "xmpp")

    def test_subdomains_only_with_leading_dot(self) -> None:
        self.assertEqual(self.routes.lookup("chat.example.com"), "sip")
        self.assertEqual(self.routes.lookup("a.b.example.com"), "sip")
        self.assertIsNone(self.routes.lookup("sub.other.example"))
        self.assertIsNone(self.routes.lookup("badexample.com"))

    def test_longest_suffix_wins(self) -> None:
        self.assertEqual(self.routes.lookup("x.deep.example.com"), "prim")
        self.assertEqual(self.routes.lookup("deep.example.com"), "sip")

    def test_container(self) -> None:
        self.assertIn("chat.example.com", self.routes)
        self.assertNotIn("nowhere.example", self.routes)
        self.assertEqual(len(self.routes), 4)
        self.assertEqual(len(StaticRoutes({})), 0)

    def test_bad_tables(self) -> None:
        self.assertRaises(ConfigError, StaticRoutes, {"": "xmpp"})
        self.assertRaises(ConfigError, StaticRoutes, {"example.com": ""})
        self.assertRaises(ConfigError, StaticRoutes, {"example.com": 3})


class OrderSRVTests(unittest.TestCase):
    def test_priority_first(self) -> None:
        records = [SRVTarget(20, 0, 1, "c."), SRVTarget(10, 5, 2, "a."), SRVTarget(10, 5, 3, "b.")]
        ordered = order_srv(records, random.Random(1))
        self.assertEqual([r.priority for r in ordered], [10, 10, 20])
        self.assertEqual(ordered[2].target, "c.")

    def test_weight_proportion(self) -> None:
        heavy, light = SRVTarget(10, 90, 1, "heavy."), SRVTarget(10, 10, 1, "light.")
        rng = random.Random(7)
        firsts = Counter(order_srv([light, heavy], rng)[0].target for _ in range(1000))
        self.assertGreater(firsts["heavy."], 850)
        self.assertGreater(firsts["light."], 50)

    def test_zero_weight_can_still_come_first(self) -> None:
        zero, some = SRVTarget(0, 0, 1, "zero."), SRVTarget(0, 1, 1, "some.")
        rng = random.Random(3)
        firsts = Counter(order_srv([some, zero], rng)[0].target for _ in range(400))
        self.assertGreater(firsts["zero."], 0)
        self.assertGreater(firsts["some."], firsts["zero."])

    def test_dot_means_no_service(self) -> None:
        self.assertEqual(order_srv([SRVTarget(0, 0, 0, ".")]), [])
        self.assertEqual(order_srv([]), [])

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.builds(SRVTarget, st.integers(0, 5), st.integers(0, 100), st.integers(1, 65535),
                              st.sampled_from(["a.", "b.", "c.", "d."])), min_size=2, max_size=12),
           st.integers(0, 2**32))
    def test_permutation_in_priority_order(self, records: list[SRVTarget], seed: int) -> None:
        ordered = order_srv(records, random.Random(seed))
        self.assertEqual(Counter(ordered), Counter(records))
        self.assertEqual([r.priority for r in ordered], sorted(r.priority for r in records))


class ZoneAuthority(authority.FileAuthority):
    """An authority whose zone is a list of (name, record) built in code.

    XMPP names under ``slow.example.test`` are never answered, so the client times out.
    """

    def loadFile(self, zone: list) -> None:  # noqa: N802 - Twisted's name
        self.records = {}
        for name, record in zone:
            if isinstance(record, dns.Record_SOA):
                self.soa = (dns.domainString(name), record)
            self.records.setdefault(dns.domainString(name).lower(), []).append(record)

    def _lookup(self, name, cls, type, timeout=None):  # type: ignore[no-untyped-def]
        if b"_xmpp.slow." in dns.domainString(name):
            return Deferred()
        return super()._lookup(name, cls, type, timeout)


ZONE = [
    ("example.test", dns.Record_SOA(mname=b"ns.example.test", rname=b"root.example.test", serial=1,
                                    refresh=3600, retry=600, expire=86400, minimum=60)),
    ("example.test", dns.Record_A("127.0.0.1")),
    ("plain.example.test", dns.Record_A("127.0.0.2")),
    # xmpp.example.test speaks only XMPP (_im._xmpp).
    ("_im._xmpp.xmpp.example.test", dns.Record_SRV(10, 0, 5269, "gw.xmpp.example.test")),
    # sip.example.test publishes presence only over SIP (_pres._sip).
    ("_pres._sip.sip.example.test", dns.Record_SRV(0, 0, 5060, "sip.example.test")),
    # both.example.test: XMPP and SIP; two XMPP targets at different priorities.
    ("_im._sip.both.example.test", dns.Record_SRV(0, 0, 5060, "proxy.both.example.test")),
    ("_im._xmpp.both.example.test", dns.Record_SRV(20, 0, 5270, "backup.both.example.test")),
    ("_im._xmpp.both.example.test", dns.Record_SRV(10, 0, 5269, "main.both.example.test")),
    # closed.example.test: "." = decidedly no service.
    ("_im._xmpp.closed.example.test", dns.Record_SRV(0, 0, 0, b"")),  # the root name "."
    # a slow XMPP label, a working SIP one.
    ("_im._sip.slow.example.test", dns.Record_SRV(0, 0, 5060, "slow.example.test")),
]


class SRVResolverTests(unittest.TestCase):
    """Real DNS on loopback: a twisted.names server on a UDP port 0 of 127.0.0.1."""

    def setUp(self) -> None:
        factory = server.DNSServerFactory(authorities=[ZoneAuthority(ZONE)])
        self.port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        address = self.port.getHost()
        self.names = client.Resolver(servers=[(address.host, address.port)])
        self.resolver = SRVResolver(self.names, timeout=(1,))

    def tearDown(self) -> Deferred:
        return defer.maybeDeferred(self.port.stopListening)

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IResolver, self.resolver))

    @inlineCallbacks
    def test_first_label_with_answers_wins(self):
        self.assertEqual((yield self.resolver.resolve("xmpp.example.test", ["_sip", "_xmpp"])), "_xmpp")
        self.assertEqual((yield self.resolver.resolve("both.example.test", ["_xmpp", "_sip"])), "_xmpp")
        self.assertEqual((yield self.resolver.resolve("both.example.test", ["_sip", "_xmpp"])), "_sip")

    @inlineCallbacks
    def test_pres_service_counts(self):
        self.assertEqual((yield self.resolver.resolve("SIP.example.test.", ["_xmpp", "_sip"])), "_sip")

    @inlineCallbacks
    def test_nxdomain_and_unknown_give_none(self):
        self.assertIsNone((yield self.resolver.resolve("plain.example.test", ["_xmpp", "_sip"])))
        self.assertIsNone((yield self.resolver.resolve("nowhere.example.test", ["_xmpp"])))
        self.assertIsNone((yield self.resolver.resolve("xmpp.example.test", [])))

    @inlineCallbacks
    def test_timeout_moves_to_next_label(self):
        # _im._xmpp.slow... and _pres._xmpp.slow... time out (1 s each); _sip answers.
        self.assertEqual((yield self.resolver.resolve("slow.example.test", ["_xmpp", "_sip"])), "_sip")

    @inlineCallbacks
    def test_next_hops_in_priority_order(self):
        hops = yield self.resolver.next_hops("both.example.test", "_xmpp")
        self.assertEqual(hops, [("main.both.example.test", 5269), ("backup.both.example.test", 5270)])

    @inlineCallbacks
    def test_implicit_srv(self):
        hops = yield self.resolver.next_hops("plain.example.test", "_xmpp", default_port=5269)
        self.assertEqual(hops, [("plain.example.test", 5269)])
        none = yield self.resolver.next_hops("plain.example.test", "_xmpp")
        self.assertEqual(none, [])
        missing = yield self.resolver.next_hops("nowhere.example.test", "_xmpp", default_port=5269)
        self.assertEqual(missing, [])

    @inlineCallbacks
    def test_no_service(self):
        self.assertEqual((yield self.resolver.next_hops("closed.example.test", "_xmpp", default_port=1)), [])

    @inlineCallbacks
    def test_bus_routes_through_dns(self):
        from cpimgw.testing import RecordingAdapter, attach, make_bus

        bus = make_bus(resolver=self.resolver, adapter_labels={"x": ("_xmpp",), "s": ("_sip",)})
        x, s = RecordingAdapter("x", ["x.local"]), RecordingAdapter("s", ["s.local"])
        attach(bus, x, s)
        self.assertIs((yield bus.adapter_for("xmpp.example.test")), x)
        self.assertIs((yield bus.adapter_for("sip.example.test")), s)
        self.assertIsNone((yield bus.adapter_for("plain.example.test")))
        yield bus.stop()
