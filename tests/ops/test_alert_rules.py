"""The Prometheus rules in ops/prometheus: `promtool check rules` accepts every rule file,
`promtool test rules` passes every unit-test file, and every alert has a test where it
fires and one where it stays silent (docs/slo.md, ops/README.md)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
RULE_FILES = sorted((OPS / "rules").glob("*.yaml"))
TEST_FILES = sorted((OPS / "tests").glob("*.yaml"))

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed: it comes with Debian's prometheus package "
    "(scripts/debian-packages.txt; make setup installs it)",
)


def promtool(*args: str | Path, cwd: Path = OPS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def alert_names() -> set[str]:
    return {
        rule["alert"]
        for path in RULE_FILES
        for group in load(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def alert_checks() -> list[tuple[str, bool]]:
    """(alert name, whether the check expects it to fire) for every check of every test."""
    return [
        (check["alertname"], bool(check.get("exp_alerts")))
        for path in TEST_FILES
        for test in load(path)["tests"]
        for check in test.get("alert_rule_test", [])
    ]


def test_there_are_rules_and_tests() -> None:
    assert RULE_FILES, f"no rule files in {OPS / 'rules'}"
    assert TEST_FILES, f"no promtool test files in {OPS / 'tests'}"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    result = promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_one_test_and_stays_silent_in_another() -> None:
    checks = alert_checks()
    alerts = alert_names()
    unknown = {name for name, _ in checks} - alerts
    assert not unknown, f"tests name alerts no rule defines (they would pass vacuously): {unknown}"
    never_fires = alerts - {name for name, fires in checks if fires}
    never_silent = alerts - {name for name, fires in checks if not fires}
    assert not never_fires, f"alerts no test makes fire: {sorted(never_fires)}"
    assert not never_silent, f"alerts no test shows silent: {sorted(never_silent)}"


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_the_unit_tests_fail_when_a_firing_alert_is_expected_silent(
    path: Path, tmp_path: Path
) -> None:
    """The firing expectations are real: the same series with every firing check turned
    into `exp_alerts: []` make promtool fail."""
    document = load(path)
    document["rule_files"] = [str((path.parent / f).resolve()) for f in document["rule_files"]]
    for test in document["tests"]:
        for check in test.get("alert_rule_test", []):
            check["exp_alerts"] = []
    inverted = tmp_path / path.name
    inverted.write_text(yaml.safe_dump(document))
    result = promtool("test", "rules", inverted, cwd=tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr


def test_example_prometheus_config_loads_every_rule_file() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    for path in RULE_FILES:
        assert f"Checking {path.relative_to(OPS)}" in result.stdout, result.stdout
