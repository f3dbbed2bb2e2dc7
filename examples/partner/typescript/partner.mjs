// A partner clinic's flow with @telemesh/client: the patient has shared their records
// with this clinic (a PARTNER_SHARING consent naming it); the clinic checks that consent,
// lists the consents it may see, and is refused anything else (PARTNER_SCOPE).
//
//   TELEMESH_EDGE=https://localhost:8443 \
//   TELEMESH_TOKEN=$(telemesh token --partner clinic-x) \
//   NODE_EXTRA_CA_CERTS=$TELEMESH_HOME/ca/ca.pem \
//   node partner.mjs clinic-x p-1
//
// (the clinic and the patient may also come from TELEMESH_CLINIC and TELEMESH_PATIENT).
// Exits 1 when the sharing consent is not in force, 2 on an unexpected error.
import { consent, createTelemesh, describeError, formatError } from "@telemesh/client";

const { ConsentCategory, Decision, DecisionReason, ConsentState } = consent;

const edge = process.env.TELEMESH_EDGE ?? "https://localhost:8443";
const token = process.env.TELEMESH_TOKEN;
const clinicId = process.argv[2] ?? process.env.TELEMESH_CLINIC;
const patientId = process.argv[3] ?? process.env.TELEMESH_PATIENT;
if (!token || !clinicId || !patientId) {
  console.error("usage: TELEMESH_TOKEN=<partner token> node partner.mjs <clinic id> <patient id>");
  process.exit(2);
}

// The partner's token carries role `partner` and subject = its clinic id.
const api = createTelemesh({ baseUrl: edge, token });
const options = { timeoutMs: 10_000 };

try {
  // 1. Is the patient's sharing consent naming this clinic in force now?
  const check = await api.consent.checkConsent(
    { patientId, category: ConsentCategory.PARTNER_SHARING, partnerClinicId: clinicId },
    options,
  );
  const decision = Decision[check.decision];
  const basis = check.consent ? ` (consent ${check.consent.consentId} v${check.consent.version})` : "";
  console.log(`sharing check: ${decision} ${DecisionReason[check.reason]}${basis}`);

  // 2. The patient's consents this clinic may read: only the sharing ones naming it.
  const { consents } = await api.consent.listConsents({ patientId }, options);
  console.log(`consents visible: ${consents.length}`);
  for (const c of consents) {
    const category = ConsentCategory[c.category];
    console.log(`consent: ${category} ${c.partnerClinicId} ${ConsentState[c.state]} v${c.version}`);
  }

  // 3. Anything else is out of a partner's scope, for example the telehealth consent.
  try {
    await api.consent.checkConsent({ patientId, category: ConsentCategory.TELEHEALTH }, options);
    console.log("telehealth check: answered (unexpected for a partner)");
  } catch (error) {
    const { code, reason, message } = describeError(error);
    console.log(`telehealth check: refused ${code} ${reason}: ${message}`);
  }

  process.exit(check.decision === Decision.PERMIT ? 0 : 1);
} catch (error) {
  console.error(`error: ${formatError(error)}`);
  process.exit(2);
}
