"""Care relationships, decided here for every service: a clinician reaches a patient
through a visit with them, past or upcoming, that was not cancelled (telemesh.care)."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.models import PatientRow, VisitRow
from telemesh.care import CareAnswer
from telemesh.db import Database
from telemesh.session.v1 import session_pb2

# The services that ask (their own access rules rest on the answer).
ASKING_SERVICES = ("consent", "billing", "signaling")


async def has_relationship(session: AsyncSession, patient_id: str, clinician_id: str) -> bool:
    found = await session.exec(
        select(VisitRow.visit_id)
        .where(VisitRow.patient_id == patient_id)
        .where(VisitRow.clinician_id == clinician_id)
        .where(VisitRow.state != session_pb2.VISIT_STATE_CANCELLED)
        .limit(1)
    )
    return found.first() is not None


async def answer(session: AsyncSession, patient_id: str, clinician_id: str) -> CareAnswer:
    exists = await session.get(PatientRow, patient_id) is not None
    related = (
        bool(clinician_id) and exists and await has_relationship(session, patient_id, clinician_id)
    )
    return CareAnswer(patient_exists=exists, has_relationship=related)


class LocalCareSource:
    """The session service's own answers, read from its tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def lookup(self, patient_id: str, clinician_id: str) -> CareAnswer:
        async with self.db.read() as session:
            return await answer(session, patient_id, clinician_id)
