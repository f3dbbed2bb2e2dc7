"""A patient's statement (invoice) for a period, from the same charge records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from svc_billing.convert import STATE_TO_PROTO, money
from svc_billing.models import VOIDED, ChargeRow
from telemesh.billing.v1 import billing_pb2
from telemesh.errors import FailedPrecondition


def build_statement(
    patient_id: str, start: date, end: date, rows: Sequence[ChargeRow], currency: str
) -> billing_pb2.GetPatientStatementResponse:
    """Lines by date of service; voided lines at zero; the total of the others.

    `currency` is the fee schedule's, used for an empty statement; charges priced in
    another currency (an older fee schedule) cannot be added up and are refused.
    """
    currencies = {row.currency for row in rows}
    if len(currencies) > 1:
        raise FailedPrecondition(
            "MIXED_CURRENCIES",
            "the period holds charges in several currencies; ask for shorter periods",
            {"currencies": ",".join(sorted(currencies))},
        )
    currency = currencies.pop() if currencies else currency
    lines = []
    total = 0
    for row in rows:
        amount = 0 if row.state == VOIDED else row.amount_minor
        total += amount
        lines.append(
            billing_pb2.StatementLine(
                charge_id=row.charge_id,
                visit_id=row.visit_id,
                service_date=row.service_date.isoformat(),
                procedure_code=row.procedure_code,
                amount=money(amount, row.currency),
                state=STATE_TO_PROTO[row.state],
            )
        )
    return billing_pb2.GetPatientStatementResponse(
        patient_id=patient_id,
        start_date=start.isoformat(),
        end_date=end.isoformat(),
        lines=lines,
        total=money(total, currency),
    )
