"""docs/runbook.md has a section for every alert in ops/prometheus/rules/, each saying
what it means, what to look at first and how to mitigate."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "docs" / "runbook.md"
PARTS = ("**Means.**", "**Look at.**", "**Mitigate.**")


def _alerts() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "ops" / "prometheus" / "rules").glob("*.yaml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["alert"] for rule in group["rules"] if "alert" in rule)
    return names


def _sections() -> dict[str, str]:
    """Each `## Name` section's text, by name."""
    parts = re.split(r"^## (\S+)\n", RUNBOOK.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_alert_has_its_runbook_entry() -> None:
    sections = _sections()
    text = RUNBOOK.read_text()
    missing = sorted(
        name
        for name in _alerts()
        if name not in sections and f"**{name}**" not in text  # a shared section names it
    )
    assert not missing, f"alerts without a runbook entry in docs/runbook.md: {missing}"


def test_every_entry_says_what_it_means_where_to_look_and_how_to_mitigate() -> None:
    for name, body in _sections().items():
        for part in PARTS:
            assert part in body, f"{name}: no {part}"
        looks = body.split("**Look at.**", 1)[1].split("**Mitigate.**", 1)[0]
        assert len(re.findall(r"^\d\. ", looks, flags=re.MULTILINE)) >= 3, (
            f"{name}: the first three things to look at"
        )


def test_the_runbook_names_no_alert_that_does_not_exist() -> None:
    assert set(_sections()) <= _alerts()
