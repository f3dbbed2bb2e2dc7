"""Patient and clinician profiles; their PHI is encrypted field by field at rest."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.models import ClinicianRow, PatientRow
from svc_session.requests import NewClinician, Person
from telemesh.auth import Principal, require_self_or
from telemesh.errors import AlreadyExists, NotFound
from telemesh.field_crypto import FieldCipher

PHI_COLUMNS = ("display_name", "birth_date", "email", "phone")


def seal_person(cipher: FieldCipher, table: str, row_id: str, person: Person) -> dict[str, str]:
    """The person's PHI columns, each sealed to its table, column and row."""
    return {
        f"{column}_enc": cipher.encrypt(
            getattr(person, column), table=table, column=column, row_id=row_id
        )
        for column in PHI_COLUMNS
    }


def open_person(cipher: FieldCipher, table: str, row_id: str, row: object) -> dict[str, str]:
    """The row's PHI columns, opened."""
    return {
        column: cipher.decrypt(
            getattr(row, f"{column}_enc"), table=table, column=column, row_id=row_id
        )
        for column in PHI_COLUMNS
    }


async def create_patient(
    session: AsyncSession, cipher: FieldCipher, principal: Principal, person: Person
) -> PatientRow:
    """The patient's own profile (or one an admin creates)."""
    patient_id = person.person_id
    require_self_or(principal, "patient", patient_id, "admin")
    if await session.get(PatientRow, patient_id) is not None:
        raise AlreadyExists("PATIENT_EXISTS", f"patient {patient_id!r} already has a profile")
    row = PatientRow(
        patient_id=patient_id,
        create_time=datetime.now(UTC),
        **seal_person(cipher, "patients", patient_id, person),
    )
    session.add(row)
    await session.flush()
    return row


async def load_patient(session: AsyncSession, patient_id: str) -> PatientRow:
    """The profile, once the caller passed the patient-access gate (telemesh.care)."""
    row = await session.get(PatientRow, patient_id)
    if row is None:
        raise NotFound("patient", patient_id)
    return row


async def create_clinician(
    session: AsyncSession, cipher: FieldCipher, principal: Principal, wanted: NewClinician
) -> ClinicianRow:
    """The clinician's own profile (or one an admin creates)."""
    clinician_id = wanted.person.person_id
    require_self_or(principal, "clinician", clinician_id, "admin")
    if await session.get(ClinicianRow, clinician_id) is not None:
        raise AlreadyExists("CLINICIAN_EXISTS", f"clinician {clinician_id!r} already has a profile")
    row = ClinicianRow(
        clinician_id=clinician_id,
        time_zone=wanted.time_zone,
        practice_id=wanted.practice_id,
        public_name=wanted.public_name,
        create_time=datetime.now(UTC),
        **seal_person(cipher, "clinicians", clinician_id, wanted.person),
    )
    session.add(row)
    await session.flush()
    return row


async def load_clinician(session: AsyncSession, clinician_id: str) -> ClinicianRow:
    row = await session.get(ClinicianRow, clinician_id)
    if row is None:
        raise NotFound("clinician", clinician_id)
    return row
