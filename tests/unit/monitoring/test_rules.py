"""The alerts of manifests/overlays/monitoring: promtool checks them and runs their unit tests
(rules_test.yaml: every alert firing and not firing)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.monitoring_support import RULES_TEST, alert_rules, promtool_dir, rules_file


@pytest.fixture(scope="module")
def tools() -> Path:
    return promtool_dir()


def promtool(tools: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools / "promtool"), *args], capture_output=True, text=True, cwd=cwd, check=False)


def test_promtool_is_the_pinned_version(tools: Path) -> None:
    go_mod = (Path(__file__).resolve().parents[3] / "hack" / "promtool" / "go.mod").read_text()
    pinned = next(line.split()[1:] for line in go_mod.splitlines() if "github.com/prometheus/prometheus " in line)
    minor = pinned[1].split(".")[1]  # v0.316.0 -> Prometheus 3.16
    out = promtool(tools, "--version")
    assert out.returncode == 0, out.stderr
    assert f"promtool, version {minor[0]}.{int(minor[1:])}." in out.stdout


def test_promtool_check_rules(tools: Path, tmp_path: Path) -> None:
    out = promtool(tools, "check", "rules", "--lint=all", "--lint-fatal", str(rules_file(tmp_path)))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in out.stdout


def test_promtool_test_rules(tools: Path, tmp_path: Path) -> None:
    rules_file(tmp_path)
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    out = promtool(tools, "test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = [c for t in yaml.safe_load(RULES_TEST.read_text())["tests"] for c in t["alert_rule_test"]]
    for rule in alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']}: no case where it stays quiet"


def test_promtool_test_rules_fails_on_a_wrong_expectation(tools: Path, tmp_path: Path) -> None:
    """The harness is not vacuous: expecting an alert that does not fire is a failure."""
    rules_file(tmp_path)
    doc = yaml.safe_load(RULES_TEST.read_text())
    case = next(c for t in doc["tests"] for c in t["alert_rule_test"] if not c["exp_alerts"])
    case["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    (tmp_path / "broken_test.yaml").write_text(yaml.safe_dump(doc))
    out = promtool(tools, "test", "rules", "broken_test.yaml", cwd=tmp_path)
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr
