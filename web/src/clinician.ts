// The clinician's app: profile and weekly hours, the schedule and waiting room, admitting
// the patient, the call, and completing the visit with its diagnosis codes.
import { Code, ConnectError } from "@connectrpc/connect";
import { newRequestId, session, timestampDate, visitHeaders, type Telemesh } from "@telemesh/client";
import { localMedia, signIn, type SignedIn } from "./app";
import { exposeCall } from "./debug";
import "./styles.css";
import { byId, enumLabel, field, fill, formatTime, h, onClick, showError } from "./ui";
import { callSection, VisitCall } from "./visit-call";

const DAYS: [session.DayOfWeek, string][] = [
  [session.DayOfWeek.MONDAY, "Mon"],
  [session.DayOfWeek.TUESDAY, "Tue"],
  [session.DayOfWeek.WEDNESDAY, "Wed"],
  [session.DayOfWeek.THURSDAY, "Thu"],
  [session.DayOfWeek.FRIDAY, "Fri"],
  [session.DayOfWeek.SATURDAY, "Sat"],
  [session.DayOfWeek.SUNDAY, "Sun"],
];
const SCHEDULE_REFRESH_MS = 3000;

class ClinicianPage {
  private readonly api: Telemesh;
  private readonly clinicianId: string;
  private profile: session.Clinician | undefined;
  private call: VisitCall | null = null;
  private visit: session.Visit | null = null;

  constructor(signedIn: SignedIn) {
    this.api = signedIn.api;
    this.clinicianId = signedIn.claims.subject;
  }

  async render(): Promise<void> {
    fill(
      byId("main"),
      h("section", { id: "profile" }, h("h2", {}, "My profile"), h("div", { id: "profile-body" })),
      this.hoursSection(),
      h(
        "section",
        { id: "waiting-room" },
        h("h2", {}, "Waiting room"),
        h("ul", { id: "waiting-list", "data-testid": "waiting-room" }),
      ),
      h("section", { id: "schedule" }, h("h2", {}, "Schedule"), h("div", { id: "schedule-body" })),
      this.roomSection(),
      callSection("Patient"),
    );
    exposeCall(() => this.call);
    await Promise.all([this.loadProfile(), this.loadSchedule()]).catch((error) => showError(error));
    setInterval(() => void this.loadSchedule().catch(() => undefined), SCHEDULE_REFRESH_MS);
  }

  // --- profile and hours -------------------------------------------------------------

  private async loadProfile(): Promise<void> {
    const body = byId("profile-body");
    try {
      const { clinician } = await this.api.session.getClinician({ clinicianId: this.clinicianId });
      this.profile = clinician;
      fill(
        body,
        h(
          "p",
          { "data-testid": "profile-ready" },
          `${clinician?.displayName} (${this.clinicianId}), ${clinician?.timeZone}, practice ${clinician?.practiceId}`,
        ),
      );
    } catch (error) {
      if (ConnectError.from(error).code !== Code.NotFound) throw error;
      this.profileForm(body);
    }
  }

  private profileForm(body: HTMLElement): void {
    const name = h("input", { id: "profile-name", autocomplete: "name" });
    const zone = h("input", {
      id: "profile-time-zone",
      value: Intl.DateTimeFormat().resolvedOptions().timeZone,
    });
    const practice = h("input", { id: "profile-practice", value: "practice-1" });
    const create = h("button", { id: "profile-create", type: "button" }, "Create my profile");
    fill(body, field("Name", name), field("Time zone", zone), field("Practice id", practice), create);
    onClick(
      create,
      async () => {
        await this.api.session.createClinician({
          requestId: newRequestId(),
          clinician: {
            clinicianId: this.clinicianId,
            displayName: name.value,
            timeZone: zone.value,
            practiceId: practice.value,
          },
        });
        await this.loadProfile();
      },
      "Create profile",
    );
  }

  private hoursSection(): HTMLElement {
    const days = DAYS.map(([day, label]) => {
      const box = h("input", {
        type: "checkbox",
        "data-day": day,
        checked: day <= session.DayOfWeek.FRIDAY,
      });
      return h("label", { class: "inline" }, box, ` ${label}`);
    });
    const start = h("input", { id: "hours-start", value: "09:00", pattern: "\\d\\d:\\d\\d", size: 5 });
    const end = h("input", { id: "hours-end", value: "17:00", pattern: "\\d\\d:\\d\\d", size: 5 });
    const slot = h("input", { id: "hours-slot", type: "number", value: "15", min: 5, max: 240, step: 5 });
    const save = h("button", { id: "hours-save", type: "button" }, "Set my hours");
    const section = h(
      "section",
      { id: "hours" },
      h("h2", {}, "My weekly hours"),
      h("p", {}, "In your own time zone; times as HH:MM (24:00 for midnight at the end of a day)."),
      h("div", { class: "days" }, ...days),
      field("From", start),
      field("Until", end),
      field("Slot minutes", slot),
      save,
      h("p", { id: "hours-state", "data-testid": "hours-state" }),
    );
    onClick(
      save,
      async () => {
        const chosen = days
          .map((label) => label.querySelector("input")!)
          .filter((box) => box.checked)
          .map((box) => Number(box.dataset.day) as session.DayOfWeek);
        const { availability } = await this.api.session.setWeeklyAvailability({
          requestId: newRequestId(),
          clinicianId: this.clinicianId,
          timeZone: this.profile?.timeZone ?? "",
          hours: chosen.map((day) => ({ day, startLocalTime: start.value, endLocalTime: end.value })),
          slotMinutes: Number(slot.value),
        });
        const state = byId("hours-state");
        state.dataset.state = "saved";
        fill(
          state,
          `Saved: ${availability?.hours.length ?? 0} periods a week, ${availability?.slotMinutes} minute slots, ${availability?.timeZone}.`,
        );
      },
      "Set my hours",
    );
    return section;
  }

  // --- schedule and waiting room -------------------------------------------------------

  private async loadSchedule(): Promise<void> {
    const { visits } = await this.api.session.listVisits({ clinicianId: this.clinicianId, pageSize: 50 });
    const waiting = visits.filter(
      (v) => v.state === session.VisitState.CHECKED_IN || v.state === session.VisitState.IN_PROGRESS,
    );
    fill(
      byId("waiting-list"),
      ...(waiting.length === 0
        ? [h("li", {}, "Nobody is waiting.")]
        : waiting.map((visit) => {
            const open = h("button", { type: "button", "data-testid": "open-room" }, "Open the room");
            onClick(open, async () => this.openRoom(visit), "Open the room");
            return h(
              "li",
              { "data-visit-id": visit.visitId, "data-state": session.VisitState[visit.state] },
              `${formatTime(visit.startTime && timestampDate(visit.startTime))}: patient ${visit.patientId} `,
              `(${enumLabel(session.VisitState, visit.state)}) `,
              this.visit?.visitId === visit.visitId ? "" : open,
            );
          })),
    );
    fill(
      byId("schedule-body"),
      visits.length === 0
        ? h("p", {}, "No visits booked.")
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
                h("th", {}, "Patient"),
                h("th", {}, "State"),
                h("th", {}, "Connected"),
              ),
            ),
            h(
              "tbody",
              {},
              ...visits.map((visit) =>
                h(
                  "tr",
                  { "data-visit-id": visit.visitId, "data-state": session.VisitState[visit.state] },
                  h("td", {}, formatTime(visit.startTime && timestampDate(visit.startTime))),
                  h("td", {}, visit.patientId),
                  h("td", { class: "state" }, enumLabel(session.VisitState, visit.state)),
                  h("td", {}, visit.connectedSeconds ? `${visit.connectedSeconds} s` : ""),
                ),
              ),
            ),
          ),
    );
  }

  // --- the room --------------------------------------------------------------------------

  private roomSection(): HTMLElement {
    const admit = h("button", { id: "admit", type: "button", disabled: true }, "Admit the patient");
    const codes = h("input", { id: "diagnosis", placeholder: "J06.9, R05.9" });
    const audioOnly = h("input", { id: "audio-only", type: "checkbox" });
    const complete = h("button", { id: "complete", type: "button" }, "Complete the visit");
    const leave = h("button", { id: "leave", type: "button" }, "Leave the room");
    const section = h(
      "section",
      { id: "room", hidden: true },
      h("h2", {}, "Visit room"),
      h("p", { id: "room-visit", "data-testid": "room-visit" }),
      admit,
      h(
        "div",
        { class: "complete" },
        field("Diagnosis codes (ICD-10-CM)", codes),
        h("label", { class: "inline" }, audioOnly, " The call was audio only"),
        complete,
        leave,
      ),
      h("p", { id: "complete-state", "data-testid": "complete-state" }),
    );
    admit.addEventListener("click", () => {
      // Not onClick(): the room's events, not the call's end, decide when it is enabled.
      admit.disabled = true;
      this.call?.admit().catch((error) => {
        admit.disabled = false;
        showError(error, "Admit");
      });
    });
    onClick(
      complete,
      async () => {
        const visit = this.visit;
        if (!visit) return;
        const reply = await this.api.session.completeVisit(
          {
            requestId: newRequestId(),
            visitId: visit.visitId,
            diagnosisCodes: codes.value.split(/[,\s]+/).filter(Boolean),
            audioOnly: audioOnly.checked,
          },
          { headers: visitHeaders(visit) },
        );
        const state = byId("complete-state");
        state.dataset.state = "completed";
        fill(state, `Visit completed: ${reply.visit?.connectedSeconds ?? 0} s connected.`);
        await this.call?.leave();
      },
      "Complete",
    );
    onClick(leave, async () => this.call?.leave(), "Leave");
    return section;
  }

  private async openRoom(visit: session.Visit): Promise<void> {
    if (this.call) throw new Error("you are already in a room");
    const stream = await localMedia();
    this.visit = visit;
    byId("room").hidden = false;
    fill(byId("complete-state"));
    const patient = await this.api.session
      .getPatient({ patientId: visit.patientId }, { headers: visitHeaders(visit) })
      .then(({ patient }) => patient?.displayName ?? visit.patientId)
      .catch(() => visit.patientId);
    fill(
      byId("room-visit"),
      `Visit with ${patient} at ${formatTime(visit.startTime && timestampDate(visit.startTime))}`,
    );
    const admit = byId<HTMLButtonElement>("admit");
    // The call keeps whether the patient is admitted and present; the button follows.
    const update = () => {
      const { admitted, peerPresent } = call;
      admit.disabled = admitted || !peerPresent;
      admit.dataset.state = admitted ? "admitted" : peerPresent ? "ready" : "waiting";
      admit.textContent = admitted ? "Admitted" : "Admit the patient";
    };
    const call = new VisitCall(this.api, visit, "clinician", stream, {
      joined: update,
      admitted: update,
      peer: update,
      ended: () => {
        this.call = null;
        this.visit = null;
        admit.disabled = true;
        void this.loadSchedule().catch((error) => showError(error));
      },
    });
    this.call = call;
    call.start();
    await this.loadSchedule();
  }
}

async function main(): Promise<void> {
  const signedIn = await signIn("clinician");
  if (signedIn) await new ClinicianPage(signedIn).render();
}

void main().catch((error) => showError(error));
