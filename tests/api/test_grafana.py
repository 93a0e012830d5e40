"""The Grafana provisioning: a Prometheus datasource and a dashboard whose every query names a
metric the service defines (test_distributed checks them against a live deployment's samples)."""

import json
import re

import yaml
from prometheus_client import REGISTRY

import service.metrics  # noqa: F401  (registers every metric)
from bench.servers import ROOT

GRAFANA = ROOT / "docker" / "grafana"


def test_datasource_and_dashboard_provider():
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http://")
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/lumos.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((GRAFANA / "dashboards/lumos.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"]["uid"] == source["uid"] for p in panels)
    assert all(t["expr"] for p in panels for t in p["targets"])


def test_dashboard_queries_only_defined_metrics():
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    defined = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, ("",))
    }
    dashboard = json.loads((GRAFANA / "dashboards/lumos.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    names = {name for expr in exprs for name in re.findall(r"\blumos_\w+", expr)}
    assert names and names <= defined, sorted(names - defined)
    # Well-formed queries: balanced brackets, and range selectors that are durations.
    for expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
        for match in re.finditer(r"\[(\w+)\]", expr):
            assert re.fullmatch(r"\d+[smh]", match.group(1)), expr
