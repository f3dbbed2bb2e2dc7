"""`python -m svc_billing.phi_rotation`: re-encrypt billing's PHI with the active key.

The same two steps as the session service's: put the new key first in
TELEMESH_BILLING_PHI_KEYS (or the key file) keeping the old ones, run this, then drop
the old keys. The pass is `telemesh.phi_sealing`'s over `SEALED_COLUMNS`; the service
runs it at start to seal plaintext rows (charges recorded before codes were sealed).
"""

from __future__ import annotations

from svc_billing.models import ChargeRow, IdempotencyRecord
from svc_billing.sealed import CODES, DIGEST
from telemesh.config import RuntimeSettings, load
from telemesh.phi_sealing import SealedColumn, rotation_main

# The idempotent answers that carry a charge, whose diagnosis codes are PHI.
SEALED_ANSWERS = ("MarkChargeBilled", "VoidCharge")

SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn(ChargeRow, "charge_id", "diagnosis_codes_enc", CODES),
    SealedColumn(ChargeRow, "charge_id", "completion_digest", DIGEST),
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
)


def main() -> None:
    from svc_billing.app import BillingApp

    app = BillingApp(load(RuntimeSettings))  # reads the keys exactly as the service does
    rotation_main("billing", app.database_url, app.cipher, SEALED_COLUMNS)


if __name__ == "__main__":
    main()
