// The patient's app, in the order a first visit needs it: your details, consent, booking,
// your visits (check-in when its window is open, the waiting room), the camera test, the
// call, and your bills. The page follows the visit by itself (polling and the room's
// stream): no reload is needed to see it end or its charge appear.
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
import { localMedia, showSignedIn, signIn, type SignedIn } from "./app";
import { exposeCall } from "./debug";
import { runPreCallCheck } from "./precall";
import "./styles.css";
import {
  bringIntoView,
  byId,
  field,
  fieldsOf,
  fill,
  formatClock,
  formatDate,
  formatMoney,
  formatTime,
  h,
  onClick,
  showError,
  sleep,
  VIEWER_ZONE,
} from "./ui";
import { callQuality, callSection, VisitCall } from "./visit-call";
import { CHARGE_STATE_WORDS, isOpen, notBilledWords, VISIT_STATE_WORDS, voidedWords } from "./words";

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
const VISITS_REFRESH_MS = 3000;

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function isoDate(date: Date): string {
  return date.toISOString().slice(0, 10);
}

const startOf = (visit: session.Visit) => (visit.startTime ? timestampDate(visit.startTime) : new Date(0));
const endOf = (visit: session.Visit) => (visit.endTime ? timestampDate(visit.endTime) : new Date(0));
// When check-in opens and closes, as the session service says (its join window).
const checkInOpens = (visit: session.Visit) =>
  visit.checkInOpenTime ? timestampDate(visit.checkInOpenTime) : startOf(visit);
const checkInCloses = (visit: session.Visit) =>
  visit.checkInCloseTime ? timestampDate(visit.checkInCloseTime) : endOf(visit);

function section(id: string, title: string, ...children: (Node | string)[]): HTMLElement {
  return h(
    "section",
    { id, "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title`, tabindex: -1 }, title),
    ...children,
  );
}

class PatientPage {
  private readonly api: Telemesh;
  private readonly patientId: string;
  private call: VisitCall | null = null;
  private callVisitId = "";
  private visits: session.Visit[] = [];
  private visitsKey = "";
  private checkInTimer: ReturnType<typeof setTimeout> | undefined;
  private chargesWanted = new Set<string>();
  /** The names patients see of their clinicians (public_name), by clinician id. */
  private clinicianNames = new Map<string, string>();

  constructor(private readonly signedIn: SignedIn) {
    this.api = signedIn.api;
    this.patientId = signedIn.claims.subject;
  }

  async render(): Promise<void> {
    fill(
      byId("main"),
      section("profile", "Your details", h("div", { id: "profile-body" })),
      section("consent", "Consent to video visits", h("div", { id: "consent-body" })),
      this.bookSection(),
      section("visits", "Your visits", h("div", { id: "visits-body" })),
      this.preCallSection(),
      callSection("your clinician", "Leave the call"),
      section("invoice", "Your bills", h("div", { id: "invoice-body" })),
    );
    exposeCall(() => this.call);
    onClick(byId<HTMLButtonElement>("leave"), async () => this.call?.leave(), { enabled: () => false });
    const ready = await this.loadProfile();
    this.showSteps(ready);
    if (ready) await this.loadRest();
  }

  /** Until the profile exists, the other steps are not offered (they would only fail). */
  private showSteps(ready: boolean): void {
    for (const id of ["consent", "book", "visits", "precheck", "invoice"]) byId(id).hidden = !ready;
  }

  private async loadRest(): Promise<void> {
    const place = { after: byId("profile") };
    await Promise.all([
      this.loadConsent().catch((error) => showError(error, { ...place, after: byId("consent-title") })),
      this.loadVisits().catch((error) => showError(error, { ...place, after: byId("visits-title") })),
      this.loadInvoice().catch((error) => showError(error, { ...place, after: byId("invoice-title") })),
    ]);
    setInterval(() => void this.followVisits(), VISITS_REFRESH_MS);
  }

  // --- profile --------------------------------------------------------------------

  /** Whether the profile exists (shown), else the form to create it. */
  private async loadProfile(): Promise<boolean> {
    const body = byId("profile-body");
    try {
      const { patient } = await this.api.session.getPatient({ patientId: this.patientId });
      const name = patient?.displayName ?? "";
      showSignedIn(name);
      fill(
        body,
        h("p", { "data-testid": "profile-ready" }, `${name}, born ${formatDate(patient?.birthDate ?? "")}`),
      );
      return true;
    } catch (error) {
      const code = ConnectError.from(error).code;
      if (code !== Code.NotFound) {
        showError(error, { after: byId("profile-title"), retry: () => location.reload() });
        return false;
      }
      this.profileForm(body);
      return false;
    }
  }

  private profileForm(body: HTMLElement): void {
    const name = h("input", { id: "profile-name", autocomplete: "name", required: true });
    const birth = h("input", {
      id: "profile-birth-date",
      type: "date",
      required: true,
      autocomplete: "bday",
    });
    const email = h("input", { id: "profile-email", type: "email", autocomplete: "email" });
    const phone = h("input", { id: "profile-phone", type: "tel", autocomplete: "tel" });
    const create = h("button", { id: "profile-create", type: "button" }, "Save my details");
    fill(
      body,
      h(
        "p",
        { class: "lead", "data-testid": "first-run" },
        "Start here: tell us who you are. Then you can agree to video visits and book one.",
      ),
      field("Full name", name),
      field("Date of birth", birth),
      field("Email (optional)", email),
      field("Phone (optional)", phone),
      create,
    );
    onClick(
      create,
      async () => {
        await this.api.session.createPatient({
          requestId: newRequestId(),
          patient: {
            patientId: this.patientId,
            displayName: name.value.trim(),
            birthDate: birth.value,
            email: email.value.trim(),
            phone: phone.value.trim(),
          },
        });
        if (await this.loadProfile()) {
          this.showSteps(true);
          bringIntoView(byId("consent-title"));
          await this.loadRest();
        }
      },
      {
        fields: fieldsOf({
          "patient.display_name": name,
          "patient.birth_date": birth,
          "patient.email": email,
          "patient.phone": phone,
        }),
      },
    );
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
    const revoke = h(
      "button",
      { id: "consent-revoke", type: "button", class: "secondary" },
      "Withdraw my consent",
    );
    const state = active
      ? `You agreed on ${formatTime(current.recordTime && timestampDate(current.recordTime))}.`
      : current?.state === consent.ConsentState.REVOKED
        ? "You withdrew your consent. Agree again to join video visits."
        : "You have not agreed yet. You need to agree before you can join a video visit.";
    fill(
      byId("consent-body"),
      h("pre", { id: "consent-text", class: "consent-text" }, CONSENT_TEXT),
      h(
        "p",
        { id: "consent-state", "data-testid": "consent-state", "data-state": active ? "active" : "none" },
        state,
      ),
      active
        ? revoke
        : h(
            "div",
            { class: "check" },
            agree,
            h("label", { for: "consent-agree" }, "I have read the text above and agree to it"),
          ),
      !active && grant,
    );
    onClick(
      grant,
      async () => {
        if (!agree.checked) throw new Error("Tick the box to agree to the text first.");
        await this.api.consent.grantConsent({
          requestId: newRequestId(),
          patientId: this.patientId,
          category: consent.ConsentCategory.TELEHEALTH,
          textVersion: CONSENT_VERSION,
          textSha256: await sha256Hex(byId("consent-text").textContent ?? ""),
          captureMethod: consent.CaptureMethod.IN_APP,
        });
        await this.loadConsent();
        byId("consent-state").focus();
      },
      { fields: fieldsOf({}) },
    );
    byId("consent-state").tabIndex = -1;
    onClick(revoke, async () => {
      if (!current) return;
      await this.api.consent.revokeConsent({
        requestId: newRequestId(),
        consentId: current.consentId,
        expectedVersion: current.version,
      });
      await this.loadConsent();
      byId("consent-state").focus();
    });
  }

  // --- booking --------------------------------------------------------------------

  private bookSection(): HTMLElement {
    const clinician = h("input", {
      id: "book-clinician",
      value: this.signedIn.params.get("clinician") ?? "",
      autocomplete: "off",
      autocapitalize: "none",
    });
    const find = h("button", { id: "book-find", type: "button" }, "Show free times");
    const result = h("div", { id: "slots-body", "data-outcome": "" });
    const element = section(
      "book",
      "Book a visit",
      field("Clinician code", clinician, "The code your clinic gave you."),
      find,
      result,
    );
    onClick(find, async () => this.findSlots(clinician.value.trim()), {
      fields: fieldsOf({ clinician_id: clinician }),
    });
    return element;
  }

  private async findSlots(clinicianId: string): Promise<void> {
    if (!clinicianId) throw new Error("Enter the clinician code your clinic gave you.");
    // Times that start too soon to get ready for are not offered.
    const now = new Date(Date.now() + BOOKING_LEAD_MS);
    const { slots } = await this.api.session.listSlots({
      clinicianId,
      startTime: timestampFromDate(now),
      endTime: timestampFromDate(new Date(now.getTime() + 7 * DAY_MS)),
      pageSize: 8,
    });
    const result = byId("slots-body");
    if (slots.length === 0) {
      fill(result, h("p", { role: "status" }, "No free times in the next week. Please try again later."));
      return;
    }
    const list = h("ul", { id: "slots", class: "slots", "aria-labelledby": "slots-title" });
    fill(
      result,
      h("h3", { id: "slots-title", tabindex: -1 }, "Free times"),
      h("p", { class: "hint" }, `Times are in your time zone (${VIEWER_ZONE}). Each button books that time.`),
      list,
    );
    for (const slot of slots) {
      const start = slot.startTime && timestampDate(slot.startTime);
      const button = h(
        "button",
        { type: "button", "data-testid": "slot", class: "secondary" },
        formatTime(start),
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
          fill(
            result,
            h(
              "p",
              { "data-testid": "booked", role: "status", class: "ok" },
              `Booked for ${formatTime(start)}.`,
            ),
          );
          await this.loadVisits();
          const card = document.querySelector<HTMLElement>("#visits li.visit[data-state=BOOKED] h3");
          if (card) bringIntoView(card);
        },
        { errorAfter: list },
      );
      list.append(h("li", {}, button));
    }
    bringIntoView(byId("slots-title"));
  }

  // --- visits ---------------------------------------------------------------------

  /** Keeps the visits (and the bills of visits that just ended) current. */
  private async followVisits(): Promise<void> {
    try {
      await this.loadVisits();
    } catch (error) {
      console.warn("refreshing the visits failed", error);
    }
  }

  private async loadVisits(): Promise<void> {
    const { visits } = await this.api.session.listVisits({ patientId: this.patientId, pageSize: 50 });
    const before = new Map(this.visits.map((v) => [v.visitId, v.state]));
    this.visits = visits;
    // A visit that ended since we last looked: its charge comes shortly.
    for (const visit of visits) {
      const was = before.get(visit.visitId);
      if (was !== undefined && was !== visit.state && visit.state === session.VisitState.COMPLETED) {
        void this.waitForCharge(visit.visitId);
      }
      if (visit.visitId === this.callVisitId && !isOpen(visit) && this.call) {
        await this.call.leave(
          visit.state === session.VisitState.COMPLETED ? "The visit has ended." : "The call has ended.",
        );
      }
    }
    await this.learnClinicianNames(visits);
    // Re-drawn only when something changed: a choice being made is not taken away.
    const key = JSON.stringify([
      visits.map((v) => [v.visitId, v.state, v.connectedSeconds.toString()]),
      [...this.clinicianNames.entries()],
      this.call ? this.callVisitId : "",
      this.checkInOpen(),
    ]);
    if (key === this.visitsKey) return;
    this.visitsKey = key;
    this.renderVisits();
  }

  /** Looks up the names patients see of the visits' clinicians (once each). */
  private async learnClinicianNames(visits: session.Visit[]): Promise<void> {
    const unknown = [...new Set(visits.map((v) => v.clinicianId))].filter(
      (id) => !this.clinicianNames.has(id),
    );
    await Promise.all(
      unknown.map(async (clinicianId) => {
        const name = await this.api.session
          .getClinician({ clinicianId })
          .then(({ clinician }) => clinician?.publicName ?? "")
          .catch(() => "");
        this.clinicianNames.set(clinicianId, name);
      }),
    );
  }

  /** The clinician as the patient may name them. */
  private clinicianOf(visit: session.Visit): string {
    return this.clinicianNames.get(visit.clinicianId) || "your clinician";
  }

  /** Which booked visits have their check-in window open now (a change re-draws). */
  private checkInOpen(): string[] {
    const now = Date.now();
    return this.visits
      .filter((v) => v.state === session.VisitState.BOOKED)
      .filter((v) => checkInOpens(v).getTime() <= now && now <= checkInCloses(v).getTime())
      .map((v) => v.visitId);
  }

  private renderVisits(): void {
    const upcoming = this.visits.filter(isOpen).sort((a, b) => startOf(a).getTime() - startOf(b).getTime());
    const past = this.visits
      .filter((v) => !isOpen(v))
      .sort((a, b) => startOf(b).getTime() - startOf(a).getTime());
    clearTimeout(this.checkInTimer);
    const opensNext = upcoming
      .filter((v) => v.state === session.VisitState.BOOKED)
      .map((v) => checkInOpens(v).getTime())
      .filter((at) => at > Date.now())
      .sort((a, b) => a - b)[0];
    // Check-in is offered the moment its window opens, without a reload.
    if (opensNext !== undefined && opensNext - Date.now() < 2 ** 31 - 1) {
      this.checkInTimer = setTimeout(() => void this.followVisits(), opensNext - Date.now() + 500);
    }
    fill(
      byId("visits-body"),
      upcoming.length === 0 && h("p", {}, "No upcoming visits. Book one above."),
      upcoming.length > 0 &&
        h(
          "ul",
          { class: "cards", "aria-label": "Upcoming visits" },
          ...upcoming.map((v) => this.visitCard(v)),
        ),
      past.length > 0 && h("h3", {}, "Past visits"),
      past.length > 0 &&
        h("ul", { class: "cards", "aria-label": "Past visits" }, ...past.map((v) => this.visitCard(v))),
    );
  }

  private visitCard(visit: session.Visit): HTMLLIElement {
    const start = startOf(visit);
    const titleId = `visit-${visit.visitId}-title`;
    const lines: (HTMLElement | string)[] = [];
    const actions = h("div", { class: "actions" });
    const now = Date.now();
    const opens = checkInOpens(visit);
    const minutesBefore = Math.round((start.getTime() - opens.getTime()) / 60000);
    let detail = "";
    if (visit.state === session.VisitState.BOOKED) {
      if (now < opens.getTime()) {
        detail = `Check-in opens at ${formatClock(opens)}, ${minutesBefore} minutes before the visit.`;
      } else if (now > checkInCloses(visit).getTime()) {
        detail = "The time for this visit has passed.";
      } else {
        detail = "Check-in is open. Tell us where you are, then check in.";
        const locationId = `visit-${visit.visitId}-location`;
        const location = h(
          "select",
          { id: locationId, "data-testid": "check-in-location" },
          h("option", { value: String(session.PatientLocation.HOME) }, "At home"),
          h("option", { value: String(session.PatientLocation.OTHER) }, "Somewhere else"),
        );
        const checkIn = h("button", { type: "button", "data-testid": "check-in" }, "Check in");
        actions.append(field("Where are you right now?", location), checkIn);
        onClick(checkIn, async () => {
          await this.api.session.checkIn(
            { requestId: newRequestId(), visitId: visit.visitId, patientLocation: Number(location.value) },
            { headers: visitHeaders(visit) },
          );
          await this.loadVisits();
          document
            .querySelector<HTMLElement>(`li.visit[data-visit-id="${visit.visitId}"] [data-testid=join]`)
            ?.focus();
        });
      }
      const cancel = h(
        "button",
        { type: "button", "data-testid": "cancel", class: "secondary" },
        "Cancel this visit",
      );
      actions.append(cancel);
      onClick(cancel, async () => {
        await this.api.session.cancelVisit(
          { requestId: newRequestId(), visitId: visit.visitId, reason: session.CancelReason.PATIENT_REQUEST },
          { headers: visitHeaders(visit) },
        );
        await this.loadVisits();
      });
    } else if (
      visit.state === session.VisitState.CHECKED_IN ||
      visit.state === session.VisitState.IN_PROGRESS
    ) {
      if (this.call && this.callVisitId === visit.visitId) {
        detail = "You are in this visit's call (below).";
      } else {
        detail =
          visit.state === session.VisitState.CHECKED_IN
            ? "You are checked in. Join the waiting room when you are ready."
            : "Your visit has started. Join the call.";
        const join = h(
          "button",
          { type: "button", "data-testid": "join" },
          visit.state === session.VisitState.CHECKED_IN ? "Join the waiting room" : "Join the call",
        );
        actions.append(join);
        onClick(join, async () => this.join(visit));
      }
    } else if (visit.state === session.VisitState.COMPLETED) {
      detail = visit.connectedSeconds
        ? `The visit is complete. You were connected for ${Math.max(1, Math.round(Number(visit.connectedSeconds) / 60))} minute(s).`
        : "The visit is complete.";
    } else if (visit.state === session.VisitState.NO_SHOW) {
      detail = "Nobody joined this visit in time.";
    }
    lines.push(
      h("p", { class: "state", "data-testid": "visit-state" }, VISIT_STATE_WORDS[visit.state] ?? ""),
    );
    if (detail) lines.push(h("p", { class: "detail" }, detail));
    return h(
      "li",
      {
        class: "visit card",
        "data-visit-id": visit.visitId,
        "data-state": session.VisitState[visit.state],
        "aria-labelledby": titleId,
      },
      h("h3", { id: titleId, tabindex: -1 }, `${formatTime(start)} with ${this.clinicianOf(visit)}`),
      ...lines,
      actions.childElementCount ? actions : null,
    );
  }

  // --- pre-call check ---------------------------------------------------------------

  private preCallSection(): HTMLElement {
    const start = h("button", { id: "precheck-start", type: "button", class: "secondary" }, "Test my camera");
    const element = section(
      "precheck",
      "Test your camera and connection",
      h("p", {}, "Takes a few seconds. You will see yourself, and yourself as the clinician will see you."),
      start,
      h(
        "div",
        { class: "videos small", id: "precheck-videos", hidden: true },
        h("video", {
          id: "precheck-local",
          autoplay: true,
          muted: true,
          playsinline: true,
          "aria-label": "Your camera",
        }),
        h("video", {
          id: "precheck-echo",
          autoplay: true,
          muted: true,
          playsinline: true,
          "aria-label": "Your camera as the clinician will see it",
        }),
      ),
      h("p", { id: "precheck-result", "data-testid": "precheck-result", "data-state": "", role: "status" }),
    );
    onClick(start, async () => {
      const result = byId("precheck-result");
      result.dataset.state = "running";
      fill(result, "Testing...");
      const stream = await localMedia();
      byId("precheck-videos").hidden = false;
      for (const id of ["precheck-local", "precheck-echo"]) byId<HTMLVideoElement>(id).muted = true;
      byId<HTMLVideoElement>("precheck-local").srcObject = stream;
      try {
        const check = await runPreCallCheck(this.api, stream, (echo) => {
          byId<HTMLVideoElement>("precheck-echo").srcObject = echo;
        });
        const ok = check.state === signaling.PreCallCheckState.SUCCEEDED;
        result.dataset.state = ok ? "succeeded" : "failed";
        const quality = callQuality({
          framesDecoded: Number(check.framesReceived),
          framesReceived: Number(check.framesReceived),
          audioPacketsReceived: 0,
          roundTripTimeMs: check.roundTripTimeMs,
          jitterMs: check.jitterMs,
          fractionLost: check.fractionLost,
          connectionState: "connected",
        });
        result.dataset.quality = quality;
        fill(
          result,
          ok
            ? `Your camera, microphone and connection work. Connection: ${quality}.`
            : "We could not connect to the test service. Check your internet connection and try again.",
        );
      } catch (error) {
        result.dataset.state = "failed";
        fill(result);
        throw error;
      } finally {
        for (const track of stream.getTracks()) track.stop();
        byId("precheck-videos").hidden = true; // no dead, black pictures left behind
      }
    });
    return element;
  }

  // --- the call ---------------------------------------------------------------------

  private async join(visit: session.Visit): Promise<void> {
    if (this.call) throw new Error("You are already in a call.");
    const stream = await localMedia();
    byId("call").dataset.visitId = visit.visitId;
    const leave = byId<HTMLButtonElement>("leave");
    this.callVisitId = visit.visitId;
    this.call = new VisitCall(this.api, visit, "patient", stream, "Clinician", {
      joined: () => {
        leave.disabled = false;
      },
      admitted: () => void this.followVisits(),
      ended: () => {
        this.call = null;
        leave.disabled = true;
        // The room closes when the visit ends: show how it ended, and its charge.
        void this.followVisits().then(() => this.afterCall(visit.visitId));
      },
    });
    this.call.start();
    await this.loadVisits();
    bringIntoView(byId("call-title")); // again: the visits above were drawn anew
  }

  /** Under the ended call: where the visit stands and, once it is complete, the bill. */
  private afterCall(visitId: string): void {
    const visit = this.visits.find((v) => v.visitId === visitId);
    if (!visit || this.call) return;
    const after = byId("call-after");
    if (visit.state === session.VisitState.COMPLETED) {
      const bills = h(
        "button",
        { type: "button", class: "secondary", "data-testid": "see-bill" },
        "See your bill",
      );
      bills.addEventListener("click", () => bringIntoView(byId("invoice-title")));
      fill(after, h("p", {}, "Thank you. Your bill for this visit is under Your bills."), bills);
    } else if (isOpen(visit)) {
      fill(after, h("p", {}, "The visit is still open: you can join it again from Your visits."));
    }
  }

  // --- bills --------------------------------------------------------------------------

  /** The visit's charge is made after completion, by billing: shown as soon as it exists. */
  private async waitForCharge(visitId: string): Promise<void> {
    if (this.chargesWanted.has(visitId)) return;
    this.chargesWanted.add(visitId);
    const deadline = Date.now() + CHARGE_WAIT_MS;
    try {
      while (Date.now() < deadline) {
        const { charges } = await this.api.billing.listCharges({ patientId: this.patientId, visitId });
        if (charges.length > 0) break;
        await sleep(1000);
      }
      await this.loadInvoice();
    } catch (error) {
      showError(error, { after: byId("invoice-title"), retry: () => void this.loadInvoice() });
    }
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
      fill(body, h("p", {}, "No bills yet."));
      return;
    }
    const sorted = [...charges].sort((a, b) => b.serviceDate.localeCompare(a.serviceDate));
    fill(
      body,
      h(
        "ul",
        { class: "cards", "data-testid": "invoice" },
        ...sorted.map((charge) => this.chargeCard(charge)),
      ),
      h(
        "p",
        { "data-testid": "invoice-total", class: "total" },
        `Total for the last 12 months: ${formatMoney(statement.total)}`,
      ),
    );
  }

  private chargeCard(charge: billing.Charge): HTMLLIElement {
    const notBillable = charge.state === billing.ChargeState.NOT_BILLABLE;
    const voided = charge.state === billing.ChargeState.VOIDED;
    // Not-billable and voided lines are owed nothing, whatever the fee schedule said.
    const amount =
      notBillable || voided
        ? { currencyCode: charge.amount?.currencyCode ?? "", amountMinor: 0n }
        : charge.amount;
    const visit = this.visits.find((v) => v.visitId === charge.visitId);
    const note = notBillable
      ? notBilledWords(charge)
      : voided
        ? voidedWords()
        : `${CHARGE_STATE_WORDS[charge.state] ?? ""}${charge.audioOnly ? " (phone-only visit)" : ""}`;
    return h(
      "li",
      {
        class: "card charge",
        "data-testid": "charge",
        "data-visit-id": charge.visitId,
        "data-state": billing.ChargeState[charge.state],
      },
      h(
        "p",
        { class: "charge-head" },
        h(
          "span",
          {},
          visit
            ? `Video visit, ${formatTime(startOf(visit))}`
            : `Video visit, ${formatDate(charge.serviceDate)}`,
        ),
        h("strong", { class: "amount" }, formatMoney(amount)),
      ),
      h("p", { class: "note" }, note),
    );
  }
}

async function main(): Promise<void> {
  const signedIn = await signIn("patient");
  if (signedIn) await new PatientPage(signedIn).render();
}

void main().catch((error) => showError(error));
