"""`python -m svc_session.phi_rotation`: re-encrypt PHI with the active field key.

Keys rotate in two steps: put the new key first (TELEMESH_SESSION_PHI_KEYS or the key
file) and keep the old ones listed, so everything still decrypts; then run this, which
re-encrypts every sealed value still sealed with an older key (and seals any left in
the clear). Afterwards the old keys can be dropped. It is safe to run while the service
serves, and again. The pass is `telemesh.phi_sealing`'s, over `SEALED_COLUMNS`; the
service runs the same pass at start to seal plaintext rows.
"""

from __future__ import annotations

from svc_session.models import ClinicianRow, IdempotencyRecord, OutboxEvent, PatientRow, VisitRow
from svc_session.profiles import PHI_COLUMNS
from svc_session.store import CODES_COLUMN
from svc_session.visits import RECORD_COMPLETION
from telemesh.config import RuntimeSettings, load
from telemesh.phi_sealing import SealedColumn, rotation_main

# The idempotent answers that carry PHI (stored sealed with the field cipher).
SEALED_ANSWERS = ("CreatePatient", "CreateClinician", "CompleteVisit")

SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    *(SealedColumn(PatientRow, "patient_id", f"{c}_enc", c) for c in PHI_COLUMNS),
    *(SealedColumn(ClinicianRow, "clinician_id", f"{c}_enc", c) for c in PHI_COLUMNS),
    SealedColumn(VisitRow, "visit_id", "diagnosis_codes_enc", CODES_COLUMN),
    SealedColumn(
        IdempotencyRecord,
        "request_id",
        "response",
        "response",
        binary=True,
        only=("method", SEALED_ANSWERS),
    ),
    SealedColumn(
        IdempotencyRecord,
        "request_id",
        "request_digest",
        "request_digest",
        only=("method", SEALED_ANSWERS),
    ),
    # The completion event carries the diagnosis codes to billing.
    SealedColumn(
        OutboxEvent,
        "event_id",
        "payload",
        "payload",
        binary=True,
        only=("method", (RECORD_COMPLETION,)),
    ),
)


def main() -> None:
    from svc_session.app import SessionApp

    app = SessionApp(load(RuntimeSettings))  # reads the keys exactly as the service does
    rotation_main("session", app.database_url, app.cipher, SEALED_COLUMNS)


if __name__ == "__main__":
    main()
