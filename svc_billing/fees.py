"""The fee schedule as data: the charge per procedure code, in minor units."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr, field_validator

from svc_billing.datafiles import DataFileError, FileModel, parse_data_file
from svc_billing.money import MINOR_UNIT_DIGITS

Amount = Annotated[StrictInt, Field(ge=0, le=100_000_000)]


class FeeScheduleFile(FileModel):
    schema_version: Literal[1]
    name: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]{1,39}$")]
    version: Annotated[StrictStr, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.-]{0,19}$")]
    currency: StrictStr
    fees: dict[Annotated[StrictStr, Field(pattern=r"^[0-9]{4}[0-9A-Z]$")], Amount]

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in MINOR_UNIT_DIGITS:
            raise ValueError(f"currency {value!r} is not one of {sorted(MINOR_UNIT_DIGITS)}")
        return value


class FeeSchedule:
    """Prices coded visits."""

    def __init__(self, spec: FeeScheduleFile) -> None:
        self.spec = spec
        self.label = f"{spec.name}@{spec.version}"
        self.currency = spec.currency

    def price(self, code: str, units: int) -> int:
        """The charge for `units` of `code`, in minor units."""
        return self.spec.fees[code] * units

    def require(self, codes: Iterable[str]) -> None:
        """Every code the rules can produce has a fee, or the start fails."""
        missing = sorted(set(codes) - set(self.spec.fees))
        if missing:
            raise DataFileError(f"fee schedule {self.label} has no fee for {', '.join(missing)}")


def load_fee_schedule(path: Path) -> FeeSchedule:
    return FeeSchedule(parse_data_file(path, FeeScheduleFile))
