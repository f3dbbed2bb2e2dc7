"""A partner clinic's flow with the `telemesh-client` package: the patient has shared their
records with this clinic (a PARTNER_SHARING consent naming it); the clinic checks that
consent, lists the consents it may see, and is refused anything else (PARTNER_SCOPE).

    pip install telemesh_client-1.0.0-py3-none-any.whl
    python partner_flow.py --edge https://localhost:8443 --ca-file "$TELEMESH_HOME/ca/ca.pem" \\
        --token "$(telemesh token --partner clinic-x)" clinic-x p-1

(--edge, --ca-file and --token may also come from TELEMESH_EDGE, TELEMESH_CA_FILE and
TELEMESH_TOKEN.) Exits 0 when the sharing consent is in force, 1 when it is not, 2 on an
unexpected error.
"""

from __future__ import annotations

import argparse
import os
import sys

from telemesh_client import TelemeshClient, TelemeshError

from telemesh.consent.v1 import consent_pb2 as c


def flow(api: TelemeshClient, clinic: str, patient: str) -> bool:
    """Prints what the clinic sees; True when the sharing consent is in force."""
    # 1. Is the patient's sharing consent naming this clinic in force now?
    check = api.consent.CheckConsent(
        c.CheckConsentRequest(
            patient_id=patient,
            category=c.CONSENT_CATEGORY_PARTNER_SHARING,
            partner_clinic_id=clinic,
        )
    )
    decision = c.Decision.Name(check.decision).removeprefix("DECISION_")
    reason = c.DecisionReason.Name(check.reason).removeprefix("DECISION_REASON_")
    basis = f" (consent {check.consent.consent_id} v{check.consent.version})"
    print(f"sharing check: {decision} {reason}{basis if check.HasField('consent') else ''}")

    # 2. The patient's consents this clinic may read: only the sharing ones naming it.
    listed = api.consent.ListConsents(c.ListConsentsRequest(patient_id=patient))
    print(f"consents visible: {len(listed.consents)}")
    for consent in listed.consents:
        category = c.ConsentCategory.Name(consent.category).removeprefix("CONSENT_CATEGORY_")
        state = c.ConsentState.Name(consent.state).removeprefix("CONSENT_STATE_")
        print(f"consent: {category} {consent.partner_clinic_id} {state} v{consent.version}")

    # 3. Anything else is out of a partner's scope, for example the telehealth consent.
    try:
        api.consent.CheckConsent(
            c.CheckConsentRequest(patient_id=patient, category=c.CONSENT_CATEGORY_TELEHEALTH)
        )
        print("telehealth check: answered (unexpected for a partner)")
    except TelemeshError as refused:  # carries .code, .reason, .field_violations
        print(f"telehealth check: refused {refused}")
    return check.decision == c.DECISION_PERMIT


def main() -> int:
    parser = argparse.ArgumentParser(description="A partner clinic's Telemesh flow.")
    parser.add_argument("--edge", default=os.environ.get("TELEMESH_EDGE", "https://localhost:8443"))
    parser.add_argument("--ca-file", default=os.environ.get("TELEMESH_CA_FILE"))
    parser.add_argument("--token", default=os.environ.get("TELEMESH_TOKEN"))
    parser.add_argument("clinic", help="this clinic's id (the partner token's subject)")
    parser.add_argument("patient", help="the patient whose records were shared")
    args = parser.parse_args()
    if not args.token:
        parser.error("a partner token is needed: --token or TELEMESH_TOKEN")
    with TelemeshClient.connect(args.edge, token=args.token, ca_file=args.ca_file) as api:
        try:
            return 0 if flow(api, args.clinic, args.patient) else 1
        except TelemeshError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
