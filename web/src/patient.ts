// The patient's app: profile, consent, booking, pre-call check, check-in, waiting room,
// the call, and the invoice.
import { Code, ConnectError } from "@connectrpc/connect";
import {
  billing,
  consent,
  newRequestId,
  session,
  signaling,
  timestampDate,
  timestampFromDate,
  visitHeaders,
  type Telemesh,
} from "@telemesh/client";
import { localMedia, signIn, type SignedIn } from "./app";
import { exposeCall } from "./debug";
import { runPreCallCheck } from "./precall";
import "./styles.css";
import { byId, enumLabel, field, fill, formatMoney, formatTime, h, onClick, showError, sleep } from "./ui";
import { callSection, VisitCall } from "./visit-call";

// The telehealth consent text the patient agrees to; its SHA-256 goes with the grant, so
// the record names exactly this text. A new text needs a new version.
export const CONSENT_VERSION = "2026-01";
export const CONSENT_TEXT = [
  "I agree to receive care from Telemesh clinicians by video visit.",
  "I understand that a video visit has limits: the clinician cannot examine me in person and may ask me to seek care in person.",
  "I understand that the visit is not recorded unless I give separate consent to recording.",
  "I can withdraw this consent at any time in this app; withdrawing it ends my ability to join video visits.",
].join("\n");

const DAY_MS = 24 * 3600 * 1000;
const CHARGE_WAIT_MS = 30000;
const BOOKING_LEAD_MS = 2 * 60 * 1000;

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function isoDate(date: Date): string {
  return date.toISOString().slice(0, 10);
}

class PatientPage {
  private readonly api: Telemesh;
  private readonly patientId: string;
  private call: VisitCall | null = null;
  private visitWatch: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly signedIn: SignedIn) {
    this.api = signedIn.api;
    this.patientId = signedIn.claims.subject;
  }

  async render(): Promise<void> {
    fill(
      byId("main"),
      h("section", { id: "profile" }, h("h2", {}, "My profile"), h("div", { id: "profile-body" })),
      h(
        "section",
        { id: "consent" },
        h("h2", {}, "Consent to video visits"),
        h("div", { id: "consent-body" }),
      ),
      this.bookSection(),
      h("section", { id: "visits" }, h("h2", {}, "My visits"), h("div", { id: "visits-body" })),
      this.preCallSection(),
      callSection("Clinician"),
      h("section", { id: "invoice" }, h("h2", {}, "Invoice"), h("div", { id: "invoice-body" })),
    );
    exposeCall(() => this.call);
    const leave = h("button", { id: "leave", type: "button" }, "Leave the call");
    byId("call").append(leave);
    onClick(leave, async () => this.call?.leave(), "Leave");
    await Promise.all([this.loadProfile(), this.loadConsent(), this.loadVisits(), this.loadInvoice()]).catch(
      (error) => showError(error),
    );
  }

  // --- profile --------------------------------------------------------------------

  private async loadProfile(): Promise<void> {
    const body = byId("profile-body");
    try {
      const { patient } = await this.api.session.getPatient({ patientId: this.patientId });
      fill(body, h("p", { "data-testid": "profile-ready" }, `${patient?.displayName} (${this.patientId})`));
    } catch (error) {
      if (ConnectError.from(error).code !== Code.NotFound) throw error;
      this.profileForm(body);
    }
  }

  private profileForm(body: HTMLElement): void {
    const name = h("input", { id: "profile-name", autocomplete: "name", required: true });
    const birth = h("input", { id: "profile-birth-date", type: "date", required: true });
    const email = h("input", { id: "profile-email", type: "email", autocomplete: "email" });
    const phone = h("input", { id: "profile-phone", type: "tel", autocomplete: "tel" });
    const create = h("button", { id: "profile-create", type: "button" }, "Create my profile");
    fill(
      body,
      h("p", {}, "Tell your clinician who you are."),
      field("Name", name),
      field("Date of birth", birth),
      field("Email", email),
      field("Phone", phone),
      create,
    );
    onClick(create, async () => {
      await this.api.session.createPatient({
        requestId: newRequestId(),
        patient: {
          patientId: this.patientId,
          displayName: name.value,
          birthDate: birth.value,
          email: email.value,
          phone: phone.value,
        },
      });
      await this.loadProfile();
    });
  }

  // --- consent --------------------------------------------------------------------

  private async telehealthConsent(): Promise<consent.Consent | undefined> {
    const { consents } = await this.api.consent.listConsents({ patientId: this.patientId });
    return consents.find((c) => c.category === consent.ConsentCategory.TELEHEALTH);
  }

  private async loadConsent(): Promise<void> {
    const current = await this.telehealthConsent();
    const active = current?.state === consent.ConsentState.ACTIVE;
    const agree = h("input", { id: "consent-agree", type: "checkbox" });
    const grant = h("button", { id: "consent-grant", type: "button" }, "I agree");
    const revoke = h("button", { id: "consent-revoke", type: "button" }, "Withdraw my consent");
    const state = current
      ? `${enumLabel(consent.ConsentState, current.state)} (text version ${current.textVersion}, recorded ${formatTime(
          current.recordTime && timestampDate(current.recordTime),
        )})`
      : "not given";
    fill(
      byId("consent-body"),
      h("pre", { id: "consent-text", class: "consent-text" }, CONSENT_TEXT),
      h(
        "p",
        { id: "consent-state", "data-testid": "consent-state", "data-state": active ? "active" : "none" },
        `Your consent: ${state}`,
      ),
      active ? revoke : h("label", { class: "inline" }, agree, " I have read the text above and agree to it"),
      !active && grant,
    );
    onClick(
      grant,
      async () => {
        if (!agree.checked) throw new Error("tick the box to agree to the text first");
        await this.api.consent.grantConsent({
          requestId: newRequestId(),
          patientId: this.patientId,
          category: consent.ConsentCategory.TELEHEALTH,
          textVersion: CONSENT_VERSION,
          textSha256: await sha256Hex(byId("consent-text").textContent ?? ""),
          captureMethod: consent.CaptureMethod.IN_APP,
        });
        await this.loadConsent();
      },
      "Consent",
    );
    onClick(
      revoke,
      async () => {
        if (!current) return;
        await this.api.consent.revokeConsent({
          requestId: newRequestId(),
          consentId: current.consentId,
          expectedVersion: current.version,
        });
        await this.loadConsent();
      },
      "Withdraw consent",
    );
  }

  // --- booking --------------------------------------------------------------------

  private bookSection(): HTMLElement {
    const clinician = h("input", {
      id: "book-clinician",
      value: this.signedIn.params.get("clinician") ?? "",
    });
    const find = h("button", { id: "book-find", type: "button" }, "Find times");
    const section = h(
      "section",
      { id: "book" },
      h("h2", {}, "Book a visit"),
      field("Clinician id", clinician),
      find,
      h("ul", { id: "slots", class: "slots" }),
    );
    onClick(find, async () => this.findSlots(clinician.value.trim()), "Find times");
    return section;
  }

  private async findSlots(clinicianId: string): Promise<void> {
    // Times that start too soon to get ready for are not offered.
    const now = new Date(Date.now() + BOOKING_LEAD_MS);
    const { slots } = await this.api.session.listSlots({
      clinicianId,
      startTime: timestampFromDate(now),
      endTime: timestampFromDate(new Date(now.getTime() + 7 * DAY_MS)),
      pageSize: 12,
    });
    const list = byId("slots");
    if (slots.length === 0) {
      fill(list, h("li", {}, "No free times in the next week."));
      return;
    }
    fill(
      list,
      ...slots.map((slot) => {
        const button = h(
          "button",
          { type: "button", "data-testid": "slot" },
          formatTime(slot.startTime && timestampDate(slot.startTime)),
        );
        onClick(
          button,
          async () => {
            await this.api.session.bookVisit({
              requestId: newRequestId(),
              clinicianId,
              patientId: this.patientId,
              startTime: slot.startTime,
            });
            fill(list, h("li", { "data-testid": "booked" }, "Booked. See it under My visits."));
            await this.loadVisits();
          },
          "Book",
        );
        return h("li", {}, button);
      }),
    );
  }

  // --- visits ---------------------------------------------------------------------

  private async loadVisits(): Promise<void> {
    const { visits } = await this.api.session.listVisits({ patientId: this.patientId, pageSize: 20 });
    const rows = visits.map((visit) => this.visitRow(visit));
    fill(
      byId("visits-body"),
      rows.length === 0
        ? h("p", {}, "No visits yet.")
        : h(
            "table",
            {},
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", {}, "When"),
                h("th", {}, "Clinician"),
                h("th", {}, "State"),
                h("th", {}, ""),
              ),
            ),
            h("tbody", {}, ...rows),
          ),
    );
  }

  private visitRow(visit: session.Visit): HTMLTableRowElement {
    const state = enumLabel(session.VisitState, visit.state);
    const actions = h("td", { class: "actions" });
    if (visit.state === session.VisitState.BOOKED) {
      const location = h(
        "select",
        { "data-testid": "check-in-location" },
        h("option", { value: String(session.PatientLocation.HOME) }, "I am at home"),
        h("option", { value: String(session.PatientLocation.OTHER) }, "I am elsewhere"),
      );
      const checkIn = h("button", { type: "button", "data-testid": "check-in" }, "Check in");
      const cancel = h("button", { type: "button", "data-testid": "cancel" }, "Cancel");
      actions.append(location, checkIn, cancel);
      onClick(
        checkIn,
        async () => {
          await this.api.session.checkIn(
            { requestId: newRequestId(), visitId: visit.visitId, patientLocation: Number(location.value) },
            { headers: visitHeaders(visit) },
          );
          await this.loadVisits();
        },
        "Check in",
      );
      onClick(
        cancel,
        async () => {
          await this.api.session.cancelVisit(
            {
              requestId: newRequestId(),
              visitId: visit.visitId,
              reason: session.CancelReason.PATIENT_REQUEST,
            },
            { headers: visitHeaders(visit) },
          );
          await this.loadVisits();
        },
        "Cancel",
      );
    } else if (
      !this.call &&
      (visit.state === session.VisitState.CHECKED_IN || visit.state === session.VisitState.IN_PROGRESS)
    ) {
      const join = h("button", { type: "button", "data-testid": "join" }, "Join the waiting room");
      actions.append(join);
      onClick(join, async () => this.join(visit), "Join");
    }
    return h(
      "tr",
      { "data-visit-id": visit.visitId, "data-state": session.VisitState[visit.state] },
      h("td", {}, formatTime(visit.startTime && timestampDate(visit.startTime))),
      h("td", {}, visit.clinicianId),
      h("td", { class: "state" }, state),
      actions,
    );
  }

  // --- pre-call check ---------------------------------------------------------------

  private preCallSection(): HTMLElement {
    const start = h("button", { id: "precheck-start", type: "button" }, "Test my camera and connection");
    const section = h(
      "section",
      { id: "precheck" },
      h("h2", {}, "Pre-call check"),
      h("p", {}, "Sends your camera and microphone to our test peer and back, and measures the path."),
      start,
      h(
        "div",
        { class: "videos small" },
        h("video", { id: "precheck-local", autoplay: true, muted: true, playsinline: true }),
        h("video", { id: "precheck-echo", autoplay: true, muted: true, playsinline: true }),
      ),
      h("p", { id: "precheck-result", "data-testid": "precheck-result", "data-state": "" }),
    );
    onClick(
      start,
      async () => {
        const result = byId("precheck-result");
        result.dataset.state = "running";
        fill(result, "Checking...");
        const stream = await localMedia();
        for (const id of ["precheck-local", "precheck-echo"]) byId<HTMLVideoElement>(id).muted = true;
        byId<HTMLVideoElement>("precheck-local").srcObject = stream;
        try {
          const check = await runPreCallCheck(this.api, stream, (echo) => {
            byId<HTMLVideoElement>("precheck-echo").srcObject = echo;
          });
          const ok = check.state === signaling.PreCallCheckState.SUCCEEDED;
          result.dataset.state = ok ? "succeeded" : "failed";
          fill(
            result,
            ok
              ? `Ready: round trip ${check.roundTripTimeMs.toFixed(1)} ms, loss ${(check.fractionLost * 100).toFixed(1)}%, ` +
                  `jitter ${check.jitterMs.toFixed(1)} ms, ${check.framesReceived} video frames received by the test peer.`
              : "The test peer could not connect to you: check your network.",
          );
        } catch (error) {
          result.dataset.state = "failed";
          fill(result, "The check could not run.");
          throw error;
        } finally {
          for (const track of stream.getTracks()) track.stop();
        }
      },
      "Pre-call check",
    );
    return section;
  }

  // --- the call ---------------------------------------------------------------------

  private async join(visit: session.Visit): Promise<void> {
    if (this.call) throw new Error("you are already in a call");
    const stream = await localMedia();
    this.call = new VisitCall(this.api, visit, "patient", stream, {
      admitted: () => void this.loadVisits().catch((error) => showError(error)),
      peer: (present) => {
        if (!present) void this.checkVisitEnded(visit);
      },
      ended: () => {
        clearInterval(this.visitWatch);
        this.call = null;
        // The room closes when the visit ends: show how it ended, and its charge.
        void this.checkVisitEnded(visit);
      },
    });
    this.call.start();
    await this.loadVisits();
    // The clinician completes the visit; we learn it when they leave or when we look.
    this.visitWatch = setInterval(() => void this.checkVisitEnded(visit), 5000);
  }

  private async checkVisitEnded(visit: session.Visit): Promise<void> {
    try {
      const { visit: now } = await this.api.session.getVisit(
        { visitId: visit.visitId },
        { headers: visitHeaders(visit) },
      );
      const over = [session.VisitState.COMPLETED, session.VisitState.CANCELLED, session.VisitState.NO_SHOW];
      if (!now || !over.includes(now.state)) {
        if (!this.call) await this.loadVisits();
        return;
      }
      clearInterval(this.visitWatch);
      await this.call?.leave();
      await this.loadVisits();
      if (now.state === session.VisitState.COMPLETED) await this.waitForCharge(visit.visitId);
    } catch (error) {
      showError(error, "Visit");
    }
  }

  // --- invoice --------------------------------------------------------------------

  /** The visit's charge is made after completion, by billing: wait until it shows. */
  private async waitForCharge(visitId: string): Promise<void> {
    const deadline = Date.now() + CHARGE_WAIT_MS;
    while (Date.now() < deadline) {
      const { charges } = await this.api.billing.listCharges({ patientId: this.patientId, visitId });
      if (charges.length > 0) break;
      await sleep(1000);
    }
    await this.loadInvoice();
  }

  private async loadInvoice(): Promise<void> {
    const today = new Date();
    const [{ charges }, statement] = await Promise.all([
      this.api.billing.listCharges({ patientId: this.patientId, pageSize: 50 }),
      this.api.billing.getPatientStatement({
        patientId: this.patientId,
        startDate: isoDate(new Date(today.getTime() - 364 * DAY_MS)),
        endDate: isoDate(new Date(today.getTime() + DAY_MS)),
      }),
    ]);
    const body = byId("invoice-body");
    if (charges.length === 0) {
      fill(body, h("p", {}, "No charges yet."));
      return;
    }
    fill(
      body,
      h(
        "table",
        { "data-testid": "invoice" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ...["Date", "Visit", "Code", "State", "Amount", "Note"].map((title) => h("th", {}, title)),
          ),
        ),
        h("tbody", {}, ...charges.map((charge) => chargeRow(charge))),
      ),
      h("p", { "data-testid": "invoice-total", class: "total" }, `Total: ${formatMoney(statement.total)}`),
    );
  }
}

function chargeRow(charge: billing.Charge): HTMLTableRowElement {
  const notBillable = charge.state === billing.ChargeState.NOT_BILLABLE;
  const voided = charge.state === billing.ChargeState.VOIDED;
  // Not-billable and voided lines are owed nothing, whatever the fee schedule said.
  const amount =
    notBillable || voided
      ? { currencyCode: charge.amount?.currencyCode ?? "", amountMinor: 0n }
      : charge.amount;
  const note = notBillable
    ? charge.notBillableReason
    : voided
      ? `voided: ${charge.voidReason}`
      : charge.modifiers.join(" ");
  return h(
    "tr",
    {
      "data-testid": "charge",
      "data-visit-id": charge.visitId,
      "data-state": billing.ChargeState[charge.state],
    },
    h("td", {}, charge.serviceDate),
    h("td", {}, charge.visitId.slice(0, 8)),
    h("td", {}, charge.procedureCode || "—"),
    h("td", { class: "state" }, enumLabel(billing.ChargeState, charge.state)),
    h("td", { class: "amount" }, formatMoney(amount)),
    h("td", { class: "note" }, note),
  );
}

async function main(): Promise<void> {
  const signedIn = await signIn("patient");
  if (signedIn) await new PatientPage(signedIn).render();
}

void main().catch((error) => showError(error));
