"""Patient and clinician profiles; their PHI is encrypted field by field at rest."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.models import ClinicianRow, PatientRow
from svc_session.schedule import is_time_zone
from telemesh.auth import current_principal, require_self_or
from telemesh.errors import AlreadyExists, NotFound
from telemesh.field_crypto import FieldCipher
from telemesh.session.v1 import session_pb2
from telemesh.timestamps import timestamp
from telemesh.validation import Violations

PHI_COLUMNS = ("display_name", "birth_date", "email", "phone")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9 ().-]{5,20}$")


def _check_person(
    check: Violations, prefix: str, person: session_pb2.Patient | session_pb2.Clinician
) -> None:
    check.required(f"{prefix}.display_name", person.display_name)
    check.max_length(f"{prefix}.display_name", person.display_name, 200)
    if person.birth_date:
        born = check.iso_date(f"{prefix}.birth_date", person.birth_date)
        if born is not None:
            check.check(
                date(1900, 1, 1) <= born <= datetime.now(UTC).date(),
                f"{prefix}.birth_date",
                "must be a past date after 1900",
            )
    if person.email:
        check.check(bool(_EMAIL.match(person.email)), f"{prefix}.email", "is not an email address")
    if person.phone:
        check.check(bool(_PHONE.match(person.phone)), f"{prefix}.phone", "is not a phone number")


def _seal(cipher: FieldCipher, table: str, row_id: str, person: object) -> dict[str, str]:
    return {
        f"{column}_enc": cipher.encrypt(
            getattr(person, column), table=table, column=column, row_id=row_id
        )
        for column in PHI_COLUMNS
    }


def _open(cipher: FieldCipher, table: str, row_id: str, row: object) -> dict[str, str]:
    return {
        column: cipher.decrypt(
            getattr(row, f"{column}_enc"), table=table, column=column, row_id=row_id
        )
        for column in PHI_COLUMNS
    }


def patient_proto(cipher: FieldCipher, row: PatientRow) -> session_pb2.Patient:
    return session_pb2.Patient(
        patient_id=row.patient_id,
        create_time=timestamp(row.create_time),
        **_open(cipher, "patients", row.patient_id, row),
    )


def clinician_proto(
    cipher: FieldCipher, row: ClinicianRow, *, with_phi: bool
) -> session_pb2.Clinician:
    phi = _open(cipher, "clinicians", row.clinician_id, row) if with_phi else {}
    return session_pb2.Clinician(
        clinician_id=row.clinician_id,
        time_zone=row.time_zone,
        practice_id=row.practice_id,
        create_time=timestamp(row.create_time),
        **phi,
    )


async def create_patient(
    session: AsyncSession, cipher: FieldCipher, request: session_pb2.CreatePatientRequest
) -> session_pb2.CreatePatientResponse:
    principal = current_principal()
    patient_id = request.patient.patient_id or principal.subject
    check = Violations()
    check.identifier("patient.patient_id", patient_id)
    _check_person(check, "patient", request.patient)
    check.raise_if_any()
    require_self_or("patient", patient_id, "admin")
    if await session.get(PatientRow, patient_id) is not None:
        raise AlreadyExists("PATIENT_EXISTS", f"patient {patient_id!r} already has a profile")
    row = PatientRow(
        patient_id=patient_id,
        create_time=datetime.now(UTC),
        **_seal(cipher, "patients", patient_id, request.patient),
    )
    session.add(row)
    await session.flush()
    return session_pb2.CreatePatientResponse(patient=patient_proto(cipher, row))


def check_patient_id(patient_id: str) -> None:
    check = Violations()
    check.identifier("patient_id", patient_id)
    check.raise_if_any()


async def get_patient(
    session: AsyncSession, cipher: FieldCipher, request: session_pb2.GetPatientRequest
) -> session_pb2.GetPatientResponse:
    """The profile, once the caller passed the patient-access gate (telemesh.care)."""
    row = await session.get(PatientRow, request.patient_id)
    if row is None:
        raise NotFound("patient", request.patient_id)
    return session_pb2.GetPatientResponse(patient=patient_proto(cipher, row))


async def create_clinician(
    session: AsyncSession, cipher: FieldCipher, request: session_pb2.CreateClinicianRequest
) -> session_pb2.CreateClinicianResponse:
    principal = current_principal()
    clinician = request.clinician
    clinician_id = clinician.clinician_id or principal.subject
    check = Violations()
    check.identifier("clinician.clinician_id", clinician_id)
    _check_person(check, "clinician", clinician)
    if check.required("clinician.time_zone", clinician.time_zone):
        check.check(
            is_time_zone(clinician.time_zone), "clinician.time_zone", "is not an IANA time zone"
        )
    check.identifier("clinician.practice_id", clinician.practice_id)
    check.raise_if_any()
    require_self_or("clinician", clinician_id, "admin")
    if await session.get(ClinicianRow, clinician_id) is not None:
        raise AlreadyExists("CLINICIAN_EXISTS", f"clinician {clinician_id!r} already has a profile")
    row = ClinicianRow(
        clinician_id=clinician_id,
        time_zone=clinician.time_zone,
        practice_id=clinician.practice_id,
        create_time=datetime.now(UTC),
        **_seal(cipher, "clinicians", clinician_id, clinician),
    )
    session.add(row)
    await session.flush()
    return session_pb2.CreateClinicianResponse(
        clinician=clinician_proto(cipher, row, with_phi=True)
    )


async def load_clinician(session: AsyncSession, clinician_id: str) -> ClinicianRow:
    row = await session.get(ClinicianRow, clinician_id)
    if row is None:
        raise NotFound("clinician", clinician_id)
    return row


async def get_clinician(
    session: AsyncSession, cipher: FieldCipher, request: session_pb2.GetClinicianRequest
) -> session_pb2.GetClinicianResponse:
    principal = current_principal()
    check = Violations()
    check.identifier("clinician_id", request.clinician_id)
    check.raise_if_any()
    row = await load_clinician(session, request.clinician_id)
    with_phi = principal.is_user("clinician", row.clinician_id) or principal.role == "admin"
    return session_pb2.GetClinicianResponse(
        clinician=clinician_proto(cipher, row, with_phi=with_phi)
    )
