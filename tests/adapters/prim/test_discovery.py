"""Tests of PRIM server discovery (server-00 §5.2, -01 §7.2): SRV names in order, then the A record.

The resolver is a real ``twisted.names`` authority serving an in-memory zone.
"""

from __future__ import annotations

from twisted.names import authority, common, dns
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim.adapter import discover


class Zone(authority.FileAuthority):
    """An authority for ``example.net`` built from records in memory."""

    def __init__(self, records: dict) -> None:
        common.ResolverBase.__init__(self)
        self.soa = (b"example.net", dns.Record_SOA(mname=b"ns.example.net", rname=b"root.example.net", serial=1))
        self.records = {b"example.net": [self.soa[1]], **records}
        self._cache = {}


def srv(port: int, target: bytes, priority: int = 0) -> dns.Record_SRV:
    return dns.Record_SRV(priority=priority, weight=0, port=port, target=target)


class DiscoveryTests(TestCase):
    def test_prim_labels_first(self) -> None:
        zone = Zone({
            b"_prim-im._tcp.example.net": [srv(7000, b"im.example.net")],
            b"_im._tcp.example.net": [srv(7100, b"old.example.net")],
            b"_prim-pr._tcp.example.net": [srv(7001, b"pr2.example.net", 5), srv(7002, b"pr1.example.net", 1)],
        })
        self.assertEqual(self.successResultOf(discover(zone, "example.net", "im", 5780)), [("im.example.net", 7000)])
        self.assertEqual(self.successResultOf(discover(zone, "example.net", "presence", 5780)),
                         [("pr1.example.net", 7002), ("pr2.example.net", 7001)])

    def test_legacy_labels(self) -> None:
        zone = Zone({b"_presence._tcp.example.net": [srv(7200, b"legacy.example.net")]})
        self.assertEqual(self.successResultOf(discover(zone, "example.net", "presence", 5780)),
                         [("legacy.example.net", 7200)])

    def test_a_record_fallback(self) -> None:
        zone = Zone({b"example.net": [dns.Record_A("192.0.2.1")]})
        self.assertEqual(self.successResultOf(discover(zone, "example.net", "im", 5780)), [("example.net", 5780)])

    def test_nothing(self) -> None:
        zone = Zone({})
        self.assertEqual(self.successResultOf(discover(zone, "nowhere.example.net", "im", 5780)), [])
