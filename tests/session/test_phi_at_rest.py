"""A database dump shows no readable name, birth date, email or phone."""

from __future__ import annotations

import uuid

from telemesh.session.v1 import session_pb2
from tests.support.dumps import dump_service_database
from tests.support.flows import Flows
from tests.support.harness import Stack


async def test_no_phi_in_the_clear_in_the_database_or_the_logs(
    flows: Flows, session_stack: Stack
) -> None:
    marker = uuid.uuid4().hex[:8]
    phi = {
        "display_name": f"Zelda Quintessa {marker}",
        "birth_date": "1977-07-13",
        "email": f"zelda.{marker}@phi-example.org",
        "phone": f"+1 555 01{int(marker, 16) % 100:02d}",
    }
    visit = await flows.book(**phi)
    profile = await flows.session.GetPatient(
        session_pb2.GetPatientRequest(patient_id=visit.patient_id), metadata=visit.patient
    )
    assert profile.patient.email == phi["email"], "the service itself still reads it back"
    dump = dump_service_database(session_stack, "session")
    assert visit.patient_id in dump, "the dump is real: it holds the patient's id"
    logs = session_stack.logs()
    for value in (phi["display_name"], marker, phi["birth_date"], phi["email"], phi["phone"]):
        assert value not in dump, f"{value!r} is readable in the database"
        assert value not in logs, f"{value!r} is in the logs"
