"""gc tuning of the running gateway (cpimgw.service): freeze after start, raise gen0, undo on stop."""

from __future__ import annotations

import gc
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from cpimgw.config import from_mapping
from cpimgw.service import GC_GEN0_THRESHOLD, make_service, tune_gc, untune_gc
from cpimgw.store.memory import MemoryStore
from tests.test_plugins import install_test_plugin


class GcTuningTests(TestCase):
    def setUp(self) -> None:
        self.plugin: Any = install_test_plugin(self)
        self.factories = {"echo": self.plugin.echo}
        thresholds = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *thresholds)
        self.addCleanup(gc.unfreeze)

    def build(self, **kw: Any) -> Any:
        config = from_mapping({"store": {"kind": "memory"}, "routing": {"srv_fallback": False}}, "test.toml",
                              factories=self.factories)
        return make_service(config, MemoryReactorClock(), factories=self.factories, store=MemoryStore(),
                            on_start_failure=lambda failure: None, **kw)

    def test_tune_and_untune(self) -> None:
        gc.set_threshold(700, 10, 10)
        frozen, before = tune_gc(2000)
        self.assertEqual(before, (700, 10, 10))
        self.assertGreater(frozen, 1000)
        self.assertEqual(gc.get_freeze_count(), frozen)
        self.assertEqual(gc.get_threshold(), (2000, 10, 10))
        untune_gc(before)
        self.assertEqual(gc.get_freeze_count(), 0)
        self.assertEqual(gc.get_threshold(), (700, 10, 10))

    def test_threshold_never_lowered(self) -> None:
        gc.set_threshold(5000, 20, 20)
        tune_gc(2000)
        self.assertEqual(gc.get_threshold(), (5000, 20, 20))
        self.assertRaises(ValueError, tune_gc, 0)

    def test_service_freezes_once_started_and_unfreezes_when_stopped(self) -> None:
        gc.set_threshold(700, 10, 10)
        svc = self.build(freeze_gc=True)
        self.assertEqual(gc.get_freeze_count(), 0)
        svc.startService()
        self.successResultOf(svc.started)
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertEqual(gc.get_threshold()[0], GC_GEN0_THRESHOLD)
        self.successResultOf(svc.stopService())
        self.assertEqual(gc.get_freeze_count(), 0)
        self.assertEqual(gc.get_threshold(), (700, 10, 10))

    def test_not_by_default_on_a_given_reactor(self) -> None:
        svc = self.build()
        self.assertFalse(svc.freeze_gc)
        svc.startService()
        self.successResultOf(svc.started)
        self.assertEqual(gc.get_freeze_count(), 0)
        self.successResultOf(svc.stopService())
