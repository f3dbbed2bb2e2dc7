"""`python -m svc_session.phi_rotation`: re-encrypt PHI with the active field key.

Keys rotate in two steps: put the new key first (TELEMESH_SESSION_PHI_KEYS or the key
file) and keep the old ones listed, so everything still decrypts; then run this, which
re-encrypts every PHI value and every encrypted idempotent answer still sealed with an
older key. Afterwards the old keys can be dropped. It is safe to run while the service
serves, and again.
"""

from __future__ import annotations

import asyncio
import logging

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.models import ClinicianRow, PatientRow
from svc_session.profiles import PHI_COLUMNS
from telemesh.config import RuntimeSettings, load
from telemesh.db import Database
from telemesh.field_crypto import FieldCipher
from telemesh.idempotency import TABLE, IdempotencyRecord
from telemesh.logs import log, setup_logging

logger = logging.getLogger("svc_session.phi_rotation")
# The idempotent answers that carry PHI (stored sealed with the field cipher).
SEALED_ANSWERS = ("CreatePatient", "CreateClinician")


def _rotate_value(cipher: FieldCipher, stored: str, table: str, column: str, row_id: str) -> str:
    if not cipher.needs_rotation(stored):
        return stored
    plain = cipher.decrypt(stored, table=table, column=column, row_id=row_id)
    return cipher.encrypt(plain, table=table, column=column, row_id=row_id)


async def rotate(db: Database, cipher: FieldCipher) -> int:
    """Re-encrypts everything sealed with an older key; returns how many rows changed."""

    async def work(session: AsyncSession) -> int:
        changed = 0
        for model, table in ((PatientRow, "patients"), (ClinicianRow, "clinicians")):
            key = "patient_id" if model is PatientRow else "clinician_id"
            for row in (await session.exec(select(model))).all():
                row_id = getattr(row, key)
                before = [getattr(row, f"{c}_enc") for c in PHI_COLUMNS]
                for column in PHI_COLUMNS:
                    setattr(
                        row,
                        f"{column}_enc",
                        _rotate_value(cipher, getattr(row, f"{column}_enc"), table, column, row_id),
                    )
                if before != [getattr(row, f"{c}_enc") for c in PHI_COLUMNS]:
                    session.add(row)
                    changed += 1
        answers = await session.exec(
            select(IdempotencyRecord).where(col(IdempotencyRecord.method).in_(SEALED_ANSWERS))
        )
        for record in answers.all():
            stored = record.response.decode()
            rotated = _rotate_value(cipher, stored, TABLE, "response", record.request_id)
            if rotated != stored:
                record.response = rotated.encode()
                session.add(record)
                changed += 1
        return changed

    return await db.run_write(work)


def main() -> None:
    from svc_session.app import SessionApp

    settings = load(RuntimeSettings)
    setup_logging("session-phi-rotation", settings.log_level)
    app = SessionApp(settings)  # reads the keys exactly as the service does
    db = Database(app.database_url)

    async def run() -> int:
        try:
            return await rotate(db, app.cipher)
        finally:
            await db.dispose()

    changed = asyncio.run(run())
    log(
        logger,
        logging.INFO,
        "PHI re-encrypted with the active key",
        rows=changed,
        active_key=app.cipher.keys.active,
    )
    print(f"re-encrypted {changed} rows with key {app.cipher.keys.active}")


if __name__ == "__main__":
    main()
