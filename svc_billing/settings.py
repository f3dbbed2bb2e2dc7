"""The billing service's own settings (environment variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from telemesh.config import setting

RULES_FOLDER = Path(__file__).resolve().parent / "rules"


@dataclass(frozen=True)
class BillingSettings:
    rules_file: Path = setting(
        "TELEMESH_BILLING_RULES_FILE",
        RULES_FOLDER / "coding-rules.yaml",
        "Coding rule file (YAML or JSON), validated at start; default the packaged rules.",
    )
    fee_schedule_file: Path = setting(
        "TELEMESH_BILLING_FEE_SCHEDULE_FILE",
        RULES_FOLDER / "fee-schedule.yaml",
        "Fee schedule (YAML or JSON): the charge per procedure code, in minor units.",
    )
    default_rule_set: str = setting(
        "TELEMESH_BILLING_RULE_SET",
        "medicare-em",
        "Rule set that codes a visit whose payer has no mapping (or that names no payer).",
    )
    phi_keys: str = setting(
        "TELEMESH_BILLING_PHI_KEYS",
        "",
        "PHI field keys `kid:base64,...` (first encrypts); default a key file in TELEMESH_HOME.",
    )
    phi_key_file: Path | None = setting(
        "TELEMESH_BILLING_PHI_KEY_FILE",
        None,
        "PHI key file; default $TELEMESH_HOME/billing/phi-keys.json (created when missing).",
    )
    payer_rule_sets: tuple[str, ...] = setting(
        "TELEMESH_BILLING_PAYER_RULE_SETS",
        (),
        "Per-payer rule sets, `payer-id=rule-set,...` (e.g. `acme-health=cpt-telemedicine`).",
    )

    def payer_mapping(self) -> dict[str, str]:
        """The per-payer mapping; a malformed entry fails the start with its text."""
        mapping: dict[str, str] = {}
        for entry in self.payer_rule_sets:
            payer, sep, rule_set = (part.strip() for part in entry.partition("="))
            if not sep or not payer or not rule_set:
                raise ValueError(
                    f"TELEMESH_BILLING_PAYER_RULE_SETS: expected payer-id=rule-set, got {entry!r}"
                )
            if payer in mapping:
                raise ValueError(f"TELEMESH_BILLING_PAYER_RULE_SETS: payer {payer!r} twice")
            mapping[payer] = rule_set
        return mapping
