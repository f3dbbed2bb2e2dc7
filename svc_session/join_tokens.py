"""Join tokens: short-lived, visit- and role-scoped passes into the signaling room.

A join token is an ES256 JWT signed with the session service's own key: `iss`
telemesh-session, `aud` telemesh-signaling, `sub` the participant, `role`, `visit_id`,
`patient_id`, `clinician_id`, `traceparent` (the visit's trace), `window_end` (when the
join window closes, Unix seconds: signaling's TURN credentials end with it), `jti`,
`iat`, `exp`.
Signaling verifies it with the keys from GetJoinTokenKeys. A token is issued only to a
participant, inside the visit's join window, and only while the patient's telehealth
consent is active: when the consent service cannot answer, no token (fail closed).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.access import require_participant
from svc_session.store import load_visit, visit_work
from telemesh.auth import Principal
from telemesh.errors import FailedPrecondition
from telemesh.identity.signing_keys import SigningKey
from telemesh.session.v1 import session_pb2

ISSUER = "telemesh-session"
AUDIENCE = "telemesh-signaling"
S = session_pb2.VisitState

# Who may take a token in which state: the clinician may open the room early; the
# patient comes in through the waiting room (check-in).
JOINABLE = {
    "clinician": frozenset(
        {S.VISIT_STATE_BOOKED, S.VISIT_STATE_CHECKED_IN, S.VISIT_STATE_IN_PROGRESS}
    ),
    "patient": frozenset({S.VISIT_STATE_CHECKED_IN, S.VISIT_STATE_IN_PROGRESS}),
}
TelehealthCheck = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expire_time: datetime
    role: str  # "patient" or "clinician"


async def issue(
    session: AsyncSession,
    principal: Principal,
    visit_id: str,
    *,
    key: SigningKey,
    ttl_seconds: int,
    window_before: timedelta,
    window_after: timedelta,
    telehealth_permitted: TelehealthCheck,
) -> IssuedToken:
    visit = await load_visit(session, visit_id)
    with visit_work(visit, "join token"):
        role = require_participant(visit, principal)
        if visit.state not in JOINABLE[role]:
            reason = (
                "NOT_CHECKED_IN"
                if role == "patient" and visit.state == S.VISIT_STATE_BOOKED
                else "NOT_JOINABLE"
            )
            raise FailedPrecondition(reason, "the visit cannot be joined in its current state")
        now = datetime.now(UTC)
        window_end = visit.end_time + window_after
        if not visit.start_time - window_before <= now <= window_end:
            raise FailedPrecondition("OUTSIDE_JOIN_WINDOW", "the visit's join window is not open")
        if not await telehealth_permitted(visit.patient_id):
            raise FailedPrecondition(
                "CONSENT_REQUIRED", "the patient's telehealth consent is not active"
            )
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": principal.subject,
            "role": role,
            "visit_id": visit.visit_id,
            "patient_id": visit.patient_id,
            "clinician_id": visit.clinician_id,
            # Signaling's spans about the room join the visit's trace through it.
            "traceparent": visit.traceparent,
            "window_end": int(window_end.timestamp()),
            "jti": str(uuid.uuid4()),
        }
        token = key.sign(claims, ttl_seconds)
        return IssuedToken(token, now + timedelta(seconds=ttl_seconds), role)


def keys_json(key: SigningKey) -> str:
    """The public keys that verify join tokens (a JWKS)."""
    return json.dumps(key.jwks())
