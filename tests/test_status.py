"""Tests of ``cpimgw status``: the summary of a running gateway read over HTTP, and its exit status."""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from cpimgw import status
from cpimgw.cli import main
from cpimgw.config import from_mapping
from cpimgw.cpim.operations import Content, Message
from cpimgw.cpim.uri import im_uri
from cpimgw.service import make_service
from cpimgw.store.memory import MemoryStore
from tests.test_plugins import install_test_plugin
from tests.test_service import free_loopback_port

METRICS = """\
# TYPE cpimgw_operations counter
cpimgw_operations_total{adapter="sip",direction="in",kind="message",outcome="success"} 3
cpimgw_operations_total{adapter="sip",direction="out",kind="message",outcome="item-not-found"} 2
cpimgw_operations_total{adapter="sip",direction="out",kind="message",outcome="success"} 5
# TYPE cpimgw_operation_duration_seconds histogram
cpimgw_operation_duration_seconds_bucket{adapter="sip",direction="out",kind="message",le="0.01"} 4
cpimgw_operation_duration_seconds_bucket{adapter="sip",direction="out",kind="message",le="0.1"} 6
cpimgw_operation_duration_seconds_bucket{adapter="sip",direction="out",kind="message",le="+Inf"} 7
cpimgw_operation_duration_seconds_sum{adapter="sip",direction="out",kind="message"} 0.5
cpimgw_operation_duration_seconds_count{adapter="sip",direction="out",kind="message"} 7
# TYPE cpimgw_connections gauge
cpimgw_connections{adapter="sip",peer_kind="tcp"} 2
# TYPE cpimgw_subscriptions gauge
cpimgw_subscriptions 4
"""


class SummaryTests(TestCase):
    def test_summary_lines(self) -> None:
        samples = status.parse_metrics(METRICS)
        before = status.parse_metrics(METRICS.replace("} 3\n", "} 1\n"))
        view = {"gateway": "gw", "healthy": False, "problems": ["adapter sip not connected"],
                "adapters": {"sip": {"running": True, "connected": False}}}
        lines = status.summarise(view, samples, before, 2.0)
        self.assertEqual(lines[:3], ["gateway gw: UNHEALTHY", "  problem: adapter sip not connected", "adapters:"])
        self.assertEqual(lines[3], "  sip: running; NOT CONNECTED; connections tcp 2; in 3, out 7; 1.00/s in, 0.00/s out")
        self.assertIn("deliveries: 5 answered, 2 failed", lines)
        self.assertIn("  item-not-found: 2", lines)
        self.assertIn("presence: 4 subscriptions, 0 presence documents", lines)

    def test_quantiles(self) -> None:
        samples = status.parse_metrics(METRICS)
        # 7 observations: the median is in the first bucket (4 of 7 at or below 10 ms).
        self.assertAlmostEqual(status.quantile(samples, "cpimgw_operation_duration_seconds", 0.5), 0.00875)
        # The 99th percentile is beyond the last finite bound: that bound is the answer.
        self.assertEqual(status.quantile(samples, "cpimgw_operation_duration_seconds", 0.99), 0.1)
        self.assertIsNone(status.quantile(samples, "nothing_here", 0.5))


class LiveEndpointTests(TestCase):
    """``cpimgw status`` against a gateway's real endpoint (the HTTP client runs in a thread)."""

    def setUp(self) -> None:
        self.plugin: Any = install_test_plugin(self)
        self.factories = {"echo": self.plugin.echo}

    async def start(self) -> tuple[Any, int]:
        from twisted.internet import reactor

        port = free_loopback_port()
        config = from_mapping({"store": {"kind": "memory"}, "routing": {"srv_fallback": False},
                               "gateway": {"status_port": port, "name": "gw-status"}}, "t.toml",
                              factories=self.factories)
        svc = make_service(config, reactor, factories=self.factories, store=MemoryStore(),
                           on_start_failure=lambda f: None)
        svc.startService()
        self.addCleanup(svc.stopService)
        await svc.started
        return svc, port

    async def test_healthy_then_unhealthy(self) -> None:
        from cpimgw.metrics import TALLY

        svc, port = await self.start()

        def echo_out() -> int:  # the counters are the process's: other tests may have counted echo too
            return sum(n for (adapter, direction, *_), n in TALLY.operations.items()
                       if (adapter, direction) == ("echo", "out"))

        before = echo_out()
        await svc.bus.dispatch(Message(im_uri("a", "x.example"), im_uri("b", "echo.test"), Content("text/plain", b".")))
        self.assertEqual(echo_out(), before + 1)
        out, err = io.StringIO(), io.StringIO()
        code = await deferToThread(main, ["status", "--url", f"http://127.0.0.1:{port}/status"], stdout=out,
                                   stderr=err)
        self.assertEqual(code, 0, err.getvalue())
        text = out.getvalue()
        self.assertTrue(text.startswith(f"gateway gw-status: healthy\nadapters:\n  echo: running; in 0, out {before + 1}\n"),
                        text)
        self.assertRegex(text, r"\ndeliveries: \d+ answered, \d+ failed\n")
        svc.adapters[0].connected = False
        out, err = io.StringIO(), io.StringIO()
        code = await deferToThread(main, ["status", "--url", f"http://127.0.0.1:{port}"], stdout=out, stderr=err)
        self.assertEqual(code, 1)
        self.assertIn("gateway gw-status: UNHEALTHY\n  problem: adapter echo not connected\n", out.getvalue())
        out = io.StringIO()
        code = await deferToThread(main, ["status", "--url", f"http://127.0.0.1:{port}", "--json"], stdout=out,
                                   stderr=err)
        self.assertEqual(code, 1)
        self.assertIn('"healthy": false', out.getvalue())

    async def test_unreachable_and_usage(self) -> None:
        port = free_loopback_port()  # nothing listens there
        out, err = io.StringIO(), io.StringIO()
        code = await deferToThread(main, ["status", "--url", f"http://127.0.0.1:{port}"], stdout=out, stderr=err)
        self.assertEqual(code, 1)
        self.assertTrue(err.getvalue().startswith("cpimgw: status: unreachable: "), err.getvalue())
        self.assertEqual(err.getvalue().count("\n"), 1)
        err = io.StringIO()
        self.assertEqual(main(["status", "--interval", "-1"], stdout=out, stderr=err), 2)
        err = io.StringIO()
        self.assertEqual(main(["status", "--config", "/nonexistent/cpimgw.toml"], stdout=out, stderr=err), 2)
        self.assertIn("cannot read", err.getvalue())

    def test_url_from_config(self) -> None:
        import os

        path = os.path.abspath(self.mktemp())
        with open(path, "w") as handle:
            handle.write('[gateway]\nstatus_port = 9465\nstatus_address = "::1"\n')
        self.assertEqual(status.url_from_config(path), "http://[::1]:9465")
        with open(path, "w") as handle:
            handle.write("[gateway]\nstatus_port = 0\n")
        from cpimgw.cpim.errors import ConfigError

        self.assertRaises(ConfigError, status.url_from_config, path)
