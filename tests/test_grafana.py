"""The Grafana dashboard of conf/grafana/: valid in Grafana's dashboard schema, over metrics the gateway exports.

``tests/grafana_dashboard.schema.json`` is Grafana's dashboard kind (schema
0.0, ``schemaVersion`` 36) as published in grafana/grafana
``kinds/dashboard/dashboard_kind.cue``, transcribed to JSON Schema; the small
validator below implements the part of JSON Schema (draft 2020-12) it uses.
No network: nothing is fetched.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Iterator

from twisted.trial.unittest import TestCase

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "conf" / "grafana" / "cpimgw-dashboard.json"
SCHEMA = Path(__file__).resolve().parent / "grafana_dashboard.schema.json"

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> Iterator[str]:
    """Every place where ``value`` breaks ``schema`` (JSON Schema keywords used by the Grafana transcription)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        yield from schema_errors(value, root["$defs"][name], root, path)
        return
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[kind](value) for kind in kinds):
            yield f"{path}: {json.dumps(value)[:60]} is not of type {'/'.join(kinds)}"
            return
    if "const" in schema and value != schema["const"]:
        yield f"{path}: must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        yield f"{path}: {value!r} is not one of {schema['enum']}"
    if "not" in schema and not list(schema_errors(value, schema["not"], root, path)):
        yield f"{path}: {value!r} is not allowed here"
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            yield f"{path}: {value} < {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            yield f"{path}: {value} > {schema['maximum']}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            yield f"{path}: {value} <= {schema['exclusiveMinimum']}"
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            yield f"{path}: {value} >= {schema['exclusiveMaximum']}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            yield f"{path}: shorter than {schema['minLength']}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield f"{path}: longer than {schema['maxLength']}"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                yield f"{path}: {name!r} is required"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                yield from schema_errors(item, properties[name], root, f"{path}.{name}")
            elif extra is False:
                yield f"{path}: {name!r} is not a property of this object"
            elif isinstance(extra, dict):
                yield from schema_errors(item, extra, root, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from schema_errors(item, schema["items"], root, f"{path}[{index}]")
    if "oneOf" in schema:
        results = [list(schema_errors(value, option, root, path)) for option in schema["oneOf"]]
        matching = [errors for errors in results if not errors]
        if len(matching) != 1:
            best = min(results, key=len) if not matching else []
            yield f"{path}: matches {len(matching)} of the alternatives, not exactly one" + (
                f" (closest: {'; '.join(best[:3])})" if best else "")


def load() -> tuple[dict[str, Any], dict[str, Any]]:
    return json.loads(DASHBOARD.read_text()), json.loads(SCHEMA.read_text())


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


class SchemaTests(TestCase):
    def test_dashboard_is_valid(self) -> None:
        dashboard, schema = load()
        errors = list(schema_errors(dashboard, schema, schema))
        self.assertEqual(errors, [])

    def test_validator_refuses_what_grafana_refuses(self) -> None:
        dashboard, schema = load()

        def broken(change: Any) -> list[str]:
            copied = copy.deepcopy(dashboard)
            change(copied)
            return list(schema_errors(copied, schema, schema))

        index = next(i for i, p in enumerate(dashboard["panels"]) if p["type"] != "row")
        self.assertTrue(broken(lambda d: d.pop("schemaVersion")))
        self.assertTrue(broken(lambda d: d.update(graphTooltip=3)))
        self.assertTrue(broken(lambda d: d.update(style="blue")))
        self.assertTrue(broken(lambda d: d["panels"][index]["gridPos"].update(w=25)))
        self.assertTrue(broken(lambda d: d["panels"][index]["gridPos"].update(x=24)))
        self.assertTrue(broken(lambda d: d["panels"][index].update(type="")))
        self.assertTrue(broken(lambda d: d["panels"][index].pop("fieldConfig")))
        self.assertTrue(broken(lambda d: d["panels"][index].update(colour="red")))  # #Panel is closed
        self.assertTrue(broken(lambda d: d["panels"][index]["fieldConfig"]["defaults"].update(unit=5)))
        self.assertTrue(broken(lambda d: d["templating"]["list"][0].pop("hide")))
        self.assertTrue(broken(lambda d: d.update(refresh=True)))

    def test_layout(self) -> None:
        dashboard, _ = load()
        panels = all_panels(dashboard)
        ids = [panel["id"] for panel in panels]
        self.assertEqual(len(ids), len(set(ids)))
        cells: dict[tuple[int, int], str] = {}
        for panel in panels:
            grid = panel["gridPos"]
            self.assertLessEqual(grid["x"] + grid["w"], 24, panel["title"])
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    self.assertNotIn((x, y), cells, f"{panel['title']} overlaps {cells.get((x, y))}")
                    cells[(x, y)] = panel["title"]

    def test_panels_the_issue_asks_for(self) -> None:
        dashboard, _ = load()
        titles = [panel["title"] for panel in all_panels(dashboard)]
        for wanted in ("Messages per protocol pair", "Delivery latency p50 / p99", "Failures by condition",
                       "Connections", "Subscriptions"):
            self.assertIn(wanted, titles)
        exprs = " ".join(t["expr"] for p in all_panels(dashboard) for t in p.get("targets", []))
        self.assertIn("histogram_quantile(0.5,", exprs)
        self.assertIn("histogram_quantile(0.99,", exprs)

    def test_queries_use_exported_metrics(self) -> None:
        """Every metric a panel queries is one the gateway's /metrics page has."""
        from prometheus_client import generate_latest
        from twisted.internet.testing import MemoryReactorClock

        from cpimgw.config import from_mapping
        from cpimgw.metrics import REGISTRY, Combined
        from cpimgw.service import make_service
        from cpimgw.store.memory import MemoryStore

        config = from_mapping({"store": {"kind": "memory"}, "routing": {"srv_fallback": False}}, factories={})
        svc = make_service(config, MemoryReactorClock(), factories={}, store=MemoryStore(),
                           on_start_failure=lambda f: None)
        text = generate_latest(Combined(REGISTRY, svc.metrics_registry())).decode()
        exported = set(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
        names = set()
        for name, kind in exported:
            names.add(name)
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
            if kind == "counter":
                names.add(f"{name}_total")
        dashboard, _ = load()
        for panel in all_panels(dashboard):
            for target in panel.get("targets", []):
                for metric in re.findall(r"\b(cpimgw_[a-z0-9_]+)", target["expr"]):
                    self.assertIn(metric, names, f"panel {panel['title']!r} queries {metric}, not exported")
