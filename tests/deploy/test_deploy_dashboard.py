"""The Grafana dashboard (deploy/grafana/dashboards/llm-gateway.json) queries only what the gateway exports.

The exported names come from a gateway started in-process and asked for ``GET /metrics``: a counter's
samples end in ``_total``, a histogram's in ``_bucket``/``_sum``/``_count``. Every metric a query names must be
one of them, with labels the metric has, and every family the gateway exports must have a panel. The
``process_*`` metrics are left out on purpose: in multiprocess mode (WORKERS > 1) the gateway serves none.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from llm_gateway.app import create_app
from llm_gateway.settings import load_settings
from llm_gateway.telemetry.metrics import GatewayMetrics
from tests.deploy_support import DEPLOY, load_yaml
from tests.identity_support import sqlite_url

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "llm-gateway.json"
# Labels Prometheus adds to every scraped series.
SCRAPE_LABELS = {"instance", "job"}
PROMQL_WORDS = set("by without on ignoring group_left group_right bool and or unless offset inf nan".split())
# Prometheus' own series the dashboard may use besides the gateway's.
PROMETHEUS_SERIES = {"up": set[str]()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``{family: type}`` from the ``# TYPE`` lines of a real ``/metrics`` answer (every family, observed or not)."""
    env = {"GATEWAY_CONFIG": "", "LOG_LEVEL": "WARNING", "DATABASE_URL": sqlite_url(tmp_path_factory.mktemp("db"))}
    text = asyncio.run(_scrape(create_app(load_settings(env))))
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    # A counter's creation time, which the text format lists as a family of its own: nothing to chart.
    return {name: kind for name, kind in families.items() if name.removesuffix("_created") + "_total" not in families}


async def _scrape(app: FastAPI) -> str:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


def dashboard() -> Any:
    return json.loads(DASHBOARD.read_text())


def sample_names(family: str, kind: str) -> set[str]:
    if kind == "histogram":
        return {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    return {family}  # a counter's TYPE line already ends in _total (text format 0.0.4); _created is not queried


def queries(node: Any) -> Iterator[str]:
    """Every PromQL expression in the dashboard: panel targets and template variables alike."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def strip(expr: str) -> str:
    """The expression without strings, ranges and Grafana variables, so only identifiers are left to read."""
    # Grafana's label_values(metric, label) asks what ``sum by (label) (metric)`` would show.
    expr = re.sub(r"label_values\(([^,]+),\s*(\w+)\)", r"sum by (\2) (\1)", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    return re.sub(r"\$\w+", "", expr)


def selectors(expr: str) -> Iterator[tuple[str, set[str]]]:
    """``(metric, labels in its matcher)`` for each metric an expression names."""
    expr = strip(expr)
    grouping = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(?![\w:])\s*(\{[^}]*\})?(?!\s*\()", grouping):
        name, matcher = match[1], match[2] or ""
        if name.lower() in PROMQL_WORDS or name.isdigit():
            continue
        yield name, set(re.findall(r"(\w+)\s*[=!]~?", matcher))


def groupings(expr: str) -> set[str]:
    return {
        label.strip()
        for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", strip(expr))
        for label in clause.split(",")
        if label.strip()
    }


def test_every_queried_metric_is_exported(exported: dict[str, str]) -> None:
    available = {name for family, kind in exported.items() for name in sample_names(family, kind)}
    named = {name for expr in queries(dashboard()) for name, _ in selectors(expr)}
    assert named, "the dashboard queries nothing?"
    unknown = sorted(named - available - set(PROMETHEUS_SERIES))
    assert not unknown, f"the dashboard queries metrics /metrics does not export: {unknown}"
    assert not {name for name in named if name.startswith("process_")}, "absent in multiprocess mode"


def family_of(sample: str, exported: dict[str, str]) -> str:
    for family, kind in exported.items():
        if sample in sample_names(family, kind):
            return family
    raise KeyError(sample)


def test_every_exported_family_has_a_panel(exported: dict[str, str]) -> None:
    named = {name for expr in queries(dashboard()) for name, _ in selectors(expr)}
    shown = {family_of(name, exported) for name in named if name not in PROMETHEUS_SERIES}
    gateway = {family for family in exported if family.startswith("llm_gateway_")}
    assert gateway - shown == set(), "a metric the gateway exports has no panel on the dashboard"


def test_queries_use_labels_the_metrics_have(exported: dict[str, str]) -> None:
    known = metric_labels()
    for expr in queries(dashboard()):
        used = dict(selectors(expr))
        allowed = set(SCRAPE_LABELS)
        for name, matcher in used.items():
            family = name if name in PROMETHEUS_SERIES else family_of(name, exported)
            own = PROMETHEUS_SERIES.get(family, known.get(family, set()))
            bucket = {"le"} if name.endswith("_bucket") else set()
            assert matcher <= own | bucket | SCRAPE_LABELS, f"{name} has no label {matcher - own}: {expr}"
            allowed |= own | bucket
        assert groupings(expr) <= allowed, f"grouped by a label none of its metrics has: {expr}"


def metric_labels() -> dict[str, set[str]]:
    """Each gateway family's label names (prometheus_client keeps them on the metric; a family without children
    shows none in an exposition)."""
    metrics = GatewayMetrics()
    found = {}
    for attribute in vars(metrics).values():
        metric = getattr(attribute, "_metric", attribute)
        names = getattr(metric, "_labelnames", None)
        if names is not None:
            family = metric._name + ("_total" if metric._type == "counter" else "")
            found[family] = set(names)
    return found


def test_template_variables_and_datasource() -> None:
    board = dashboard()
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    provisioned = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")
    assert variables["datasource"]["current"]["value"] == provisioned["datasources"][0]["uid"]
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    used = {name for expr in queries(board) for name in re.findall(r"\$(\w+)", expr)}
    assert used - {"__rate_interval", "__range"} <= set(variables), "a query names an undefined variable"


def test_jobs_named_by_the_dashboard_are_scraped() -> None:
    jobs = {job["job_name"] for job in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]}
    named = {job for expr in queries(dashboard()) for job in re.findall(r'job="([^"]+)"', expr)}
    assert named and named <= jobs


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
