"""What the monitoring tests share: promtool, the rules and dashboard of manifests/overlays/monitoring,
the metric names their PromQL selects (Prometheus' own parser, hack/promtool/metricnames), the names
an exposition exports, and the metrics table of docs/metrics.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = ROOT / "manifests" / "overlays" / "monitoring"
DASHBOARD_OVERLAY = ROOT / "manifests" / "overlays" / "dashboard"
RULES_TEST = ROOT / "tests" / "unit" / "monitoring" / "rules_test.yaml"
DOCS = ROOT / "docs" / "metrics.md"
PROMETHEUS_SERIES = frozenset({"up"})
"""Series Prometheus makes itself for each target (queries may name them; nothing exports them)."""
STANDARD_PREFIXES = ("process_", "python_")
"""prometheus_client's default collectors on the operator's /metrics (not ours to document)."""
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool_dir() -> Path:
    """``$TJO_PROMTOOL`` (hack/test.sh exports it), else hack/build-promtool.sh when Go is there.

    A set but broken ``TJO_PROMTOOL`` fails; without it and without Go the caller is skipped."""
    given = os.environ.get("TJO_PROMTOOL")
    if given:
        path = Path(given)
        if not (path / "promtool").is_file() or not (path / "metricnames").is_file():
            pytest.fail(f"TJO_PROMTOOL={given} has no promtool and metricnames (hack/build-promtool.sh)")
        return path
    if shutil.which("go") is None:
        pytest.skip("neither TJO_PROMTOOL nor Go: cannot build promtool")
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-promtool.sh")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.fail(f"hack/build-promtool.sh failed: {out.stderr[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def prometheus_rule() -> dict[str, Any]:
    return dict(yaml.safe_load((OVERLAY / "prometheusrule.yaml").read_text()))


def rules_file(directory: Path) -> Path:
    """The PrometheusRule's ``spec`` as a plain Prometheus rules file (the one source of the rules)."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(prometheus_rule()["spec"], sort_keys=False))
    return path


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in prometheus_rule()["spec"]["groups"] for r in g["rules"] if "alert" in r]


def dashboard() -> dict[str, Any]:
    return dict(json.loads((DASHBOARD_OVERLAY / "dashboard.json").read_text()))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels of a collapsed row


GRAFANA_RANGES = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}")
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)


def as_promql(expr: str) -> str:
    """A Grafana query with its variables replaced, so Prometheus' parser reads it: the range
    variables by 5m; any other variable (used inside label matcher strings) by a plain word."""
    return GRAFANA_VARIABLE.sub("x", GRAFANA_RANGES.sub("5m", expr))


@dataclass(frozen=True)
class Query:
    where: str
    """A panel title ("panel: ..."), a template variable ("variable: ...") or an alert ("alert: ...")."""
    expr: str


def dashboard_queries(board: dict[str, Any] | None = None) -> list[Query]:
    board = board if board is not None else dashboard()
    out = [
        Query(f"panel: {p['title']}", as_promql(t["expr"]))
        for p in panels(board)
        for t in p.get("targets", [])
        if t.get("expr")
    ]
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = LABEL_VALUES.match(query)
        out.append(Query(f"variable: {var['name']}", as_promql(match.group(1) if match else query)))
    return out


def rule_queries() -> list[Query]:
    return [Query(f"alert: {r['alert']}", r["expr"]) for r in alert_rules()]


def metric_names(tools: Path, queries: list[Query]) -> dict[Query, set[str]]:
    """The metric names each query selects, by Prometheus' PromQL parser; a parse error fails."""
    out = subprocess.run(
        [str(tools / "metricnames")],
        input=json.dumps([q.expr for q in queries]),
        capture_output=True,
        text=True,
        check=True,
    )
    results = json.loads(out.stdout)
    errors = [f"{q.where}: {r['error']}\n  {q.expr}" for q, r in zip(queries, results, strict=True) if r.get("error")]
    assert not errors, "PromQL that does not parse:\n" + "\n".join(errors)
    return {q: set(r["names"]) for q, r in zip(queries, results, strict=True)}


@dataclass(frozen=True)
class Family:
    name: str
    """As documented and queried: counters with ``_total``, histograms by their base name."""
    type: str
    labels: frozenset[str]


def families(exposition: str) -> dict[str, Family]:
    """Metric families of a text exposition (a scrape, a Pushgateway payload), with the label
    names their samples carry. A labelled family with no samples yet still counts (HELP/TYPE)."""
    out: dict[str, Family] = {}
    for fam in text_string_to_metric_families(exposition):
        name = f"{fam.name}_total" if fam.type == "counter" else fam.name
        labels = {k for s in fam.samples for k in s.labels if k not in ("le", "quantile")}
        out[name] = Family(name, fam.type, frozenset(labels))
    # prometheus_client writes a counter's or histogram's creation time as a gauge family of its own
    # (``x_created``): part of that metric, not one to document or query.
    created = {n for n in out if n.endswith("_created") and {n[:-8], f"{n[:-8]}_total"} & set(out)}
    return {n: f for n, f in out.items() if n not in created}


def merged(*expositions: str) -> dict[str, Family]:
    """Families of several expositions (one Pushgateway payload per trainer pod), labels united."""
    out: dict[str, Family] = {}
    for text in expositions:
        for name, fam in families(text).items():
            seen = out.get(name)
            out[name] = fam if seen is None else Family(name, fam.type, seen.labels | fam.labels)
    return out


def ours(found: dict[str, Family]) -> dict[str, Family]:
    return {n: f for n, f in found.items() if not n.startswith(STANDARD_PREFIXES)}


def family_of(name: str, known: dict[str, Family]) -> str | None:
    """The family a queried series name belongs to (``x_bucket`` -> histogram ``x``), if known."""
    if name in known:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if name.endswith(suffix) and base in known and known[base].type in ("histogram", "summary"):
            return base
    return None


def unknown_names(used: dict[Query, set[str]], known: dict[str, Family]) -> list[str]:
    return sorted(
        f"{q.where}: {name}"
        for q, names in used.items()
        for name in names
        if name not in PROMETHEUS_SERIES and family_of(name, known) is None
    )


@dataclass(frozen=True)
class DocRow:
    metric: str
    type: str
    labels: frozenset[str]
    used_by: frozenset[str]
    """``panel: <title>`` and ``alert: <name>`` entries, as in :class:`Query.where`."""


ROW = re.compile(r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|")


def documented() -> dict[str, DocRow]:
    """Rows of the metrics tables in docs/metrics.md: | `metric` | type | `labels` | meaning | used by |.

    "used by": panels as "Title" in double quotes, alerts as `AlertName` in backticks."""
    rows: dict[str, DocRow] = {}
    for line in DOCS.read_text().splitlines():
        match = ROW.match(line)
        if not match:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"docs/metrics.md: a metrics row needs 5 cells: {line}"
        used = {f"panel: {t}" for t in re.findall(r'"([^"]+)"', cells[4])}
        used |= {f"alert: {a}" for a in re.findall(r"`([A-Za-z]+)`", cells[4])}
        rows[match.group(1)] = DocRow(
            match.group(1), cells[1], frozenset(re.findall(r"`(\w+)`", cells[2])), frozenset(used)
        )
    return rows


def usage(used: dict[Query, set[str]], known: dict[str, Family]) -> dict[str, set[str]]:
    """Family -> the panels and alerts whose queries select it (template variables left out)."""
    out: dict[str, set[str]] = {}
    for q, names in used.items():
        if q.where.startswith("variable: "):
            continue
        for name in names:
            fam = family_of(name, known)
            if fam is not None:
                out.setdefault(fam, set()).add(q.where)
    return out


def check_docs(known: dict[str, Family], used: dict[Query, set[str]]) -> list[str]:
    """What docs/metrics.md gets wrong about ``known`` (our families) and their use."""
    rows = documented()
    problems = [f"not in docs/metrics.md: {n}" for n in sorted(set(known) - set(rows))]
    problems += [f"in docs/metrics.md but not exported: {n}" for n in sorted(set(rows) - set(known))]
    uses = usage(used, known)
    for name in sorted(set(rows) & set(known)):
        row, fam = rows[name], known[name]
        if row.type != fam.type:
            problems.append(f"{name}: documented as {row.type}, exported as {fam.type}")
        if fam.labels and row.labels != fam.labels:
            problems.append(f"{name}: documented labels {sorted(row.labels)}, exported {sorted(fam.labels)}")
        if row.used_by != uses.get(name, set()):
            problems.append(f"{name}: documented use {sorted(row.used_by)}, actual {sorted(uses.get(name, set()))}")
    return problems
