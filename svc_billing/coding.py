"""Coding rules as data: the rule file's schema, its checks, and the engine that codes a
completed visit with the rule set in force.

The rules live in `svc_billing/rules/coding-rules.yaml` (its header explains them); this
module only reads, validates and applies them, so a new code or threshold is a change of
data, not of code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr, model_validator

from svc_billing.datafiles import DataFileError, FileModel, parse_data_file

PatientStatus = Literal["new", "established"]
Modality = Literal["audio_video", "audio_only", "any"]
ProcedureCode = Annotated[StrictStr, Field(pattern=r"^[0-9]{4}[0-9A-Z]$")]
ModifierCode = Annotated[StrictStr, Field(pattern=r"^[0-9A-Z]{2}$")]
PlaceOfServiceCode = Annotated[StrictStr, Field(pattern=r"^[0-9]{2}$")]

# The modality groups a patient status may use: one code list for both, or one each.
_COMPLETE_MODALITIES = ({"any"}, {"audio_video", "audio_only"})


class Level(FileModel):
    """One code and the connected minutes that must be met or exceeded for it."""

    patient: PatientStatus
    modality: Modality
    minutes: Annotated[StrictInt, Field(ge=1, le=1440)]
    code: ProcedureCode


class PlaceOfService(FileModel):
    home: PlaceOfServiceCode
    other: PlaceOfServiceCode


class Modifiers(FileModel):
    audio_video: tuple[ModifierCode, ...]
    audio_only: tuple[ModifierCode, ...]


class RuleSetSpec(FileModel):
    name: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]{1,39}$")]
    version: Annotated[StrictStr, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.-]{0,19}$")]
    description: StrictStr
    place_of_service: PlaceOfService
    modifiers: Modifiers
    audio_only_more_than_minutes: Annotated[StrictInt, Field(ge=0, le=1440)] = 0
    # How many connected seconds make a minute: 60 in every real rule set. Only the
    # demonstration rules (telemesh_tools/demo/demo-coding-rules.yaml, a rule set named
    # `*-demo`) count a second as a minute, so that a short demo call codes like a visit.
    seconds_per_minute: Annotated[StrictInt, Field(ge=1, le=60)] = 60
    levels: Annotated[tuple[Level, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _only_demo_rules_shorten_the_minute(self) -> RuleSetSpec:
        if self.seconds_per_minute != 60 and not self.name.endswith("-demo"):
            raise ValueError("only a rule set named *-demo may change seconds_per_minute")
        return self

    @model_validator(mode="after")
    def _levels_are_complete_and_unambiguous(self) -> RuleSetSpec:
        codes = [level.code for level in self.levels]
        duplicates = sorted({code for code in codes if codes.count(code) > 1})
        if duplicates:
            raise ValueError(f"codes appear twice: {', '.join(duplicates)}")
        for patient in ("new", "established"):
            modalities = {level.modality for level in self.levels if level.patient == patient}
            if modalities not in _COMPLETE_MODALITIES:
                raise ValueError(
                    f"{patient} patients need levels for modality 'any', or for both "
                    f"'audio_video' and 'audio_only' (found {sorted(modalities)})"
                )
            for modality in modalities:
                minutes = [
                    level.minutes
                    for level in self.levels
                    if level.patient == patient and level.modality == modality
                ]
                if len(set(minutes)) != len(minutes):
                    raise ValueError(f"two {patient}/{modality} levels have the same minutes")
        return self


class RuleFile(FileModel):
    schema_version: Literal[1]
    rule_sets: Annotated[tuple[RuleSetSpec, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _names_are_unique(self) -> RuleFile:
        names = [rule_set.name for rule_set in self.rule_sets]
        if len(set(names)) != len(names):
            raise ValueError("rule set names must be unique")
        return self


@dataclass(frozen=True)
class VisitFacts:
    """What the coding of a completed visit rests on."""

    connected_seconds: int
    new_patient: bool
    at_home: bool
    audio_only: bool


# Why a visit is not billable (Coding.not_billable_code, the API's NotBillableCode).
BELOW_MINIMUM_TIME = "below-minimum-time"
AUDIO_ONLY_DISCUSSION_TOO_SHORT = "audio-only-discussion-too-short"


@dataclass(frozen=True)
class Coding:
    """A coded visit: a claim line's code, or why there is none."""

    rule_set: str  # name@version
    procedure_code: str  # empty when not billable
    modifiers: tuple[str, ...]
    place_of_service: str
    units: int
    not_billable_reason: str
    # Why not billable ("" when billable), and the connected seconds the rule needed.
    not_billable_code: str = ""
    minimum_seconds: int = 0

    @property
    def billable(self) -> bool:
        return bool(self.procedure_code)


class RuleSet:
    """One validated rule set, ready to code visits."""

    def __init__(self, spec: RuleSetSpec) -> None:
        self.spec = spec
        self.label = f"{spec.name}@{spec.version}"
        groups: dict[tuple[str, str], list[Level]] = defaultdict(list)
        for level in spec.levels:
            groups[(level.patient, level.modality)].append(level)
        # Highest threshold first: the first level met is the code.
        self._groups = {
            key: sorted(levels, key=lambda level: level.minutes, reverse=True)
            for key, levels in groups.items()
        }

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(level.code for level in self.spec.levels)

    def _levels(self, patient: str, modality: str) -> list[Level]:
        return self._groups.get((patient, modality)) or self._groups[(patient, "any")]

    def code(self, facts: VisitFacts) -> Coding:
        patient = "new" if facts.new_patient else "established"
        modality = "audio_only" if facts.audio_only else "audio_video"
        place = (
            self.spec.place_of_service.home if facts.at_home else self.spec.place_of_service.other
        )
        seconds = facts.connected_seconds
        levels = self._levels(patient, modality)

        def not_billable(code: str, needed: int, reason: str) -> Coding:
            return Coding(
                self.label, "", (), place, 0, f"{code}: {reason} ({self.label})", code, needed
            )

        minute = self.spec.seconds_per_minute
        discussion = self.spec.audio_only_more_than_minutes * minute
        if facts.audio_only and discussion and seconds <= discussion:
            return not_billable(
                AUDIO_ONLY_DISCUSSION_TOO_SHORT,
                discussion,
                f"{seconds} s connected; audio-only codes need more than {discussion} s of "
                "medical discussion",
            )
        for level in levels:
            if seconds >= level.minutes * minute:
                modifiers = getattr(self.spec.modifiers, modality)
                return Coding(self.label, level.code, tuple(modifiers), place, 1, "")
        lowest = levels[-1]
        return not_billable(
            BELOW_MINIMUM_TIME,
            lowest.minutes * minute,
            f"{seconds} s connected; the lowest {patient}-patient "
            f"{modality.replace('_', '-')} code {lowest.code} needs {lowest.minutes * minute} s",
        )


class RuleBook:
    """The rule sets of the rule file and which one codes a given payer's visits."""

    def __init__(
        self, rule_sets: Iterable[RuleSet], default: str, payers: dict[str, str] | None = None
    ) -> None:
        self.rule_sets = {rule_set.spec.name: rule_set for rule_set in rule_sets}
        self.payers = dict(payers or {})
        unknown = sorted({default, *self.payers.values()} - set(self.rule_sets))
        if unknown:
            raise DataFileError(
                f"unknown rule set(s) {', '.join(unknown)}; the rule file has "
                f"{', '.join(sorted(self.rule_sets))}"
            )
        self.default = self.rule_sets[default]

    def for_payer(self, payer_id: str) -> RuleSet:
        """The payer's mapped rule set, or the default one."""
        name = self.payers.get(payer_id) if payer_id else None
        return self.rule_sets[name] if name else self.default

    @property
    def codes(self) -> frozenset[str]:
        return frozenset().union(*(rule_set.codes for rule_set in self.rule_sets.values()))


def load_rule_sets(path: Path) -> list[RuleSet]:
    """The rule sets in the rule file at `path`; DataFileError when it is not valid."""
    return [RuleSet(spec) for spec in parse_data_file(path, RuleFile).rule_sets]
