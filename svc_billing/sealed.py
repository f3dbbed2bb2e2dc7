"""A charge's sealed columns: its diagnosis codes (PHI) and its completion digest.

Both are sealed with the billing service's field cipher, bound to the charge. The
digest too: it is a SHA-256 over a completion whose other fields sit in the clear
beside it, so the few codes it hides could be found by trying them.
"""

from __future__ import annotations

import json

from svc_billing.models import ChargeRow
from telemesh.field_crypto import FieldCipher

TABLE = "charges"
CODES = "diagnosis_codes"
DIGEST = "completion_digest"


def seal_codes(cipher: FieldCipher, charge_id: str, codes: tuple[str, ...]) -> str:
    return cipher.encrypt(json.dumps(list(codes)), table=TABLE, column=CODES, row_id=charge_id)


def open_codes(cipher: FieldCipher, row: ChargeRow) -> tuple[str, ...]:
    # The plaintext is a JSON list: what the column held before it was sealed.
    plain = cipher.decrypt(row.diagnosis_codes_enc, table=TABLE, column=CODES, row_id=row.charge_id)
    return tuple(json.loads(plain))


def seal_digest(cipher: FieldCipher, charge_id: str, digest: str) -> str:
    return cipher.encrypt(digest, table=TABLE, column=DIGEST, row_id=charge_id)


def open_digest(cipher: FieldCipher, row: ChargeRow) -> str:
    return cipher.decrypt(row.completion_digest, table=TABLE, column=DIGEST, row_id=row.charge_id)
