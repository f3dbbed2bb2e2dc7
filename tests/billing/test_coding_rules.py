"""The coding rules as data: every threshold edge of both rule sets, and a rule file or
fee schedule that breaks its schema stops the start."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from svc_billing.coding import (
    AUDIO_ONLY_DISCUSSION_TOO_SHORT,
    BELOW_MINIMUM_TIME,
    RuleBook,
    VisitFacts,
    load_rule_sets,
)
from svc_billing.datafiles import DataFileError
from svc_billing.fees import load_fee_schedule
from svc_billing.settings import RULES_FOLDER, BillingSettings

RULES = RULES_FOLDER / "coding-rules.yaml"
FEES = RULES_FOLDER / "fee-schedule.yaml"

# The expected codes, written out by hand from the code descriptors (not read from the
# rule file): (minutes that must be met or exceeded, code), lowest first.
MEDICARE_NEW = [(15, "99202"), (30, "99203"), (45, "99204"), (60, "99205")]
MEDICARE_ESTABLISHED = [(10, "99212"), (20, "99213"), (30, "99214"), (40, "99215")]
EXPECTED = {
    # rule set -> (new patient, audio only) -> levels
    "medicare-em": {
        (True, False): MEDICARE_NEW,
        (True, True): MEDICARE_NEW,
        (False, False): MEDICARE_ESTABLISHED,
        (False, True): MEDICARE_ESTABLISHED,
    },
    "cpt-telemedicine": {
        (True, False): [(15, "98000"), (30, "98001"), (45, "98002"), (60, "98003")],
        (False, False): [(10, "98004"), (20, "98005"), (30, "98006"), (40, "98007")],
        (True, True): [(15, "98008"), (30, "98009"), (45, "98010"), (60, "98011")],
        (False, True): [(10, "98012"), (20, "98013"), (30, "98014"), (40, "98015")],
    },
}
LABELS = {"medicare-em": "medicare-em@2025.1", "cpt-telemedicine": "cpt-telemedicine@2025.1"}
# Medicare-style: modifier 93 on audio-only calls; CPT 2025: the code says audio-only.
AUDIO_ONLY_MODIFIERS = {"medicare-em": ("93",), "cpt-telemedicine": ()}
# CPT 2025 audio-only codes need more than 10 minutes of medical discussion.
AUDIO_ONLY_MORE_THAN_SECONDS = {"medicare-em": 0, "cpt-telemedicine": 600}


@dataclass(frozen=True)
class Case:
    rule_set: str
    new_patient: bool
    audio_only: bool
    at_home: bool
    seconds: int
    code: str  # "" for not billable

    @property
    def id(self) -> str:
        return "/".join(
            (
                self.rule_set,
                "new" if self.new_patient else "established",
                "audio-only" if self.audio_only else "audio-video",
                "home" if self.at_home else "other",
                f"{self.seconds}s",
            )
        )


def _expected_code(rule_set: str, new: bool, audio: bool, seconds: int) -> str:
    if audio and seconds <= AUDIO_ONLY_MORE_THAN_SECONDS[rule_set]:
        return ""
    met = [code for minutes, code in EXPECTED[rule_set][(new, audio)] if seconds >= minutes * 60]
    return met[-1] if met else ""


def _cases() -> list[Case]:
    cases = []
    for rule_set, groups in EXPECTED.items():
        for (new, audio), levels in groups.items():
            for at_home in (True, False):
                edges = {0, 86_400}
                for minutes, _code in levels:
                    edges |= {minutes * 60 - 1, minutes * 60, minutes * 60 + 1}
                for seconds in sorted(edges):
                    code = _expected_code(rule_set, new, audio, seconds)
                    cases.append(Case(rule_set, new, audio, at_home, seconds, code))
    return cases


CASES = _cases()
# Values worked out by hand, not by `_expected_code`: coded as the threshold test expects,
# they also pin the table above (its case of the same id must agree with the rules).
SPOT_CASES = [
    Case("medicare-em", True, False, True, 899, ""),
    Case("medicare-em", True, False, True, 900, "99202"),
    Case("medicare-em", False, True, False, 1201, "99213"),
    Case("cpt-telemedicine", False, True, True, 600, ""),
    Case("cpt-telemedicine", False, True, True, 601, "98012"),
    Case("cpt-telemedicine", True, True, True, 3600, "98011"),
]


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return RuleBook(load_rule_sets(RULES), "medicare-em")


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.id) for case in CASES]
    + [pytest.param(case, id=f"spot/{case.id}") for case in SPOT_CASES],
)
def test_coding_at_every_threshold_edge(book: RuleBook, case: Case) -> None:
    rule_set = book.rule_sets[case.rule_set]
    coding = rule_set.code(
        VisitFacts(case.seconds, case.new_patient, case.at_home, case.audio_only)
    )
    assert coding.rule_set == LABELS[case.rule_set]
    assert coding.procedure_code == case.code
    assert coding.place_of_service == ("10" if case.at_home else "02")
    if case.code:
        assert coding.billable
        assert coding.units == 1
        assert coding.not_billable_reason == ""
        expected = AUDIO_ONLY_MODIFIERS[case.rule_set] if case.audio_only else ()
        assert coding.modifiers == expected
    else:
        assert not coding.billable
        assert coding.units == 0
        assert coding.modifiers == ()
        assert f"{case.seconds} s connected" in coding.not_billable_reason
        assert LABELS[case.rule_set] in coding.not_billable_reason


def test_not_billable_reasons_say_why(book: RuleBook) -> None:
    short = book.default.code(VisitFacts(599, False, True, False))
    assert short.not_billable_reason.startswith("below-minimum-time: 599 s connected")
    assert "99212 needs 600 s" in short.not_billable_reason
    assert (short.not_billable_code, short.minimum_seconds) == (BELOW_MINIMUM_TIME, 600)
    cpt = book.rule_sets["cpt-telemedicine"]
    talk = cpt.code(VisitFacts(600, False, True, True))
    assert talk.not_billable_reason.startswith("audio-only-discussion-too-short")
    assert talk.not_billable_code == AUDIO_ONLY_DISCUSSION_TOO_SHORT
    assert "more than" in talk.not_billable_reason
    assert f"{talk.minimum_seconds} s" in talk.not_billable_reason
    billable = book.default.code(VisitFacts(1500, False, True, False))
    assert (billable.not_billable_code, billable.minimum_seconds) == ("", 0)


def test_the_payer_mapping_picks_the_rule_set() -> None:
    book = RuleBook(load_rule_sets(RULES), "medicare-em", {"acme-health": "cpt-telemedicine"})
    assert book.for_payer("acme-health").label == "cpt-telemedicine@2025.1"
    assert book.for_payer("other-payer").label == "medicare-em@2025.1"
    assert book.for_payer("").label == "medicare-em@2025.1"
    cpt_default = RuleBook(load_rule_sets(RULES), "cpt-telemedicine")
    assert cpt_default.for_payer("").label == "cpt-telemedicine@2025.1"


@pytest.mark.parametrize(
    ("default", "payers"),
    [("nope", {}), ("medicare-em", {"acme-health": "cpt-2099"})],
    ids=["unknown-default", "unknown-payer-rule-set"],
)
def test_an_unknown_rule_set_in_the_configuration_is_refused(
    default: str, payers: dict[str, str]
) -> None:
    with pytest.raises(DataFileError, match="unknown rule set"):
        RuleBook(load_rule_sets(RULES), default, payers)


def test_the_payer_mapping_setting_is_parsed_and_checked() -> None:
    settings = BillingSettings(payer_rule_sets=("acme=cpt-telemedicine", " b = medicare-em "))
    assert settings.payer_mapping() == {"acme": "cpt-telemedicine", "b": "medicare-em"}
    for bad in (("acme",), ("=cpt-telemedicine",), ("a=x", "a=y")):
        with pytest.raises(ValueError, match="TELEMESH_BILLING_PAYER_RULE_SETS"):
            BillingSettings(payer_rule_sets=bad).payer_mapping()


def test_a_json_rule_file_is_read_like_the_yaml_one(tmp_path: Path) -> None:
    content = yaml.safe_load(RULES.read_text())
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(content))
    assert [rs.label for rs in load_rule_sets(path)] == [rs.label for rs in load_rule_sets(RULES)]


def _first_rule_set(content: dict[str, object]) -> dict[str, object]:
    rule_sets = content["rule_sets"]
    assert isinstance(rule_sets, list)
    first: dict[str, object] = rule_sets[0]
    return first


def _levels(content: dict[str, object]) -> list[dict[str, object]]:
    levels = _first_rule_set(content)["levels"]
    assert isinstance(levels, list)
    return levels


BROKEN_RULES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "unknown-key": (lambda c: _first_rule_set(c).update(surprise=1), "surprise"),
    "minutes-as-text": (lambda c: _levels(c)[0].update(minutes="15"), "minutes"),
    "minutes-negative": (lambda c: _levels(c)[0].update(minutes=-5), "minutes"),
    "bad-code": (lambda c: _levels(c)[0].update(code="9920"), "code"),
    "bad-modality": (lambda c: _levels(c)[0].update(modality="video"), "modality"),
    "same-minutes-twice": (lambda c: _levels(c)[1].update(minutes=15), "same minutes"),
    "code-twice": (lambda c: _levels(c)[1].update(code="99202"), "codes appear twice"),
    "modality-gap": (
        lambda c: _levels(c)[0].update(modality="audio_video"),
        "need levels for modality",
    ),
    "bad-place-of-service": (
        lambda c: _first_rule_set(c).update(place_of_service={"home": "10", "other": "2"}),
        "place_of_service",
    ),
    "no-levels": (lambda c: _first_rule_set(c).update(levels=[]), "levels"),
    "duplicate-rule-set": (
        lambda c: c.update(rule_sets=[_first_rule_set(c), _first_rule_set(c)]),
        "unique",
    ),
    "schema-version": (lambda c: c.update(schema_version=2), "schema_version"),
}


@pytest.mark.parametrize("name", list(BROKEN_RULES))
def test_a_broken_rule_file_is_refused_with_the_reason(tmp_path: Path, name: str) -> None:
    content = yaml.safe_load(RULES.read_text())
    breaker, message = BROKEN_RULES[name]
    breaker(content)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(DataFileError, match=message) as caught:
        load_rule_sets(path)
    assert str(path) in str(caught.value)


def test_an_unreadable_rule_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rule_sets: [\n")
    with pytest.raises(DataFileError, match="does not parse"):
        load_rule_sets(tmp_path / "bad.yaml")
    with pytest.raises(DataFileError, match="cannot be read"):
        load_rule_sets(tmp_path / "missing.yaml")
    (tmp_path / "rules.txt").write_text("{}")
    with pytest.raises(DataFileError, match=r"expected a \.yaml"):
        load_rule_sets(tmp_path / "rules.txt")


def test_the_fee_schedule_prices_every_code_of_every_rule_set(book: RuleBook) -> None:
    fees = load_fee_schedule(FEES)
    fees.require(book.codes)
    assert fees.currency == "USD"
    assert fees.price("99213", 1) == 14000
    assert fees.label == "telemesh-default@2025.1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"currency": "XYZ"}, "currency"),
        ({"fees": {"99213": -1}}, "fees"),
        ({"fees": {"99213": 1.5}}, "fees"),
        ({"fees": {"9921": 100}}, "fees"),
    ],
    ids=["unknown-currency", "negative-fee", "fractional-fee", "bad-code"],
)
def test_a_broken_fee_schedule_is_refused(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    content = {**yaml.safe_load(FEES.read_text()), **change}
    path = tmp_path / "fees.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(DataFileError, match=message):
        load_fee_schedule(path)


def test_a_code_without_a_fee_stops_the_start(tmp_path: Path, book: RuleBook) -> None:
    content = yaml.safe_load(FEES.read_text())
    del content["fees"]["98015"]
    path = tmp_path / "fees.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(DataFileError, match="no fee for 98015"):
        load_fee_schedule(path).require(book.codes)
