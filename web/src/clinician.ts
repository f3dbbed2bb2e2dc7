// The clinician's app: the profile first (with a time-zone picker), then the waiting room,
// the visit room (admit, call, complete), the schedule and the weekly hours (the saved
// hours shown and edited).
import { Code, ConnectError } from "@connectrpc/connect";
import { newRequestId, session, timestampDate, visitHeaders, type Telemesh } from "@telemesh/client";
import { localMedia, showSignedIn, signIn, type SignedIn } from "./app";
import { exposeCall } from "./debug";
import "./styles.css";
import {
  bringIntoView,
  byId,
  field,
  fieldsOf,
  fill,
  formatDuration,
  formatTime,
  h,
  onClick,
  showError,
  VIEWER_ZONE,
} from "./ui";
import { callSection, VisitCall } from "./visit-call";
import { isOpen, VISIT_STATE_WORDS } from "./words";

const DAYS: [session.DayOfWeek, string, string][] = [
  [session.DayOfWeek.MONDAY, "Mon", "Monday"],
  [session.DayOfWeek.TUESDAY, "Tue", "Tuesday"],
  [session.DayOfWeek.WEDNESDAY, "Wed", "Wednesday"],
  [session.DayOfWeek.THURSDAY, "Thu", "Thursday"],
  [session.DayOfWeek.FRIDAY, "Fri", "Friday"],
  [session.DayOfWeek.SATURDAY, "Sat", "Saturday"],
  [session.DayOfWeek.SUNDAY, "Sun", "Sunday"],
];
const SCHEDULE_REFRESH_MS = 3000;
const SLOT_CHOICES = [5, 10, 15, 20, 30, 45, 60];

/** Every IANA time zone the browser knows, the viewer's own and UTC included. */
function timeZones(): string[] {
  const known = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  return [...new Set([...known, "UTC", VIEWER_ZONE])].sort();
}

function section(id: string, title: string, ...children: (Node | string | null)[]): HTMLElement {
  return h(
    "section",
    { id, "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title`, tabindex: -1 }, title),
    ...children,
  );
}

interface PublishedHours {
  days: session.DayOfWeek[];
  start: string;
  end: string;
  slotMinutes: number;
}

class ClinicianPage {
  private readonly api: Telemesh;
  private readonly clinicianId: string;
  private profile: session.Clinician | undefined;
  private call: VisitCall | null = null;
  private visit: session.Visit | null = null;
  private completed = false;
  /** The patient was let in (the room said so), for this visit. */
  private admitted = false;
  /** The visit is over, however it ended. */
  private over = false;
  private patientNames = new Map<string, string>();
  private scheduleKey = "";

  constructor(signedIn: SignedIn) {
    this.api = signedIn.api;
    this.clinicianId = signedIn.claims.subject;
  }

  async render(): Promise<void> {
    fill(
      byId("main"),
      section("profile", "Your profile", h("div", { id: "profile-body" })),
      section(
        "waiting-room",
        "Waiting room",
        h("ul", { id: "waiting-list", "data-testid": "waiting-room", class: "cards" }),
      ),
      ...(([room, finish]) => [room, callSection("the patient", "Leave the call"), finish])(
        this.roomSections(),
      ),
      section("schedule", "Your visits", h("div", { id: "schedule-body" })),
      this.hoursSection(),
    );
    exposeCall(() => this.call);
    onClick(byId<HTMLButtonElement>("leave"), async () => this.call?.leave(), { enabled: () => false });
    if (await this.loadProfile()) await this.loadRest();
  }

  private showSteps(ready: boolean): void {
    for (const id of ["waiting-room", "schedule", "hours"]) byId(id).hidden = !ready;
  }

  private async loadRest(): Promise<void> {
    await Promise.all([
      this.loadSchedule().catch((error) => showError(error, { after: byId("schedule-title") })),
      this.loadHours().catch((error) => showError(error, { after: byId("hours-title") })),
    ]);
    setInterval(
      () => void this.loadSchedule().catch((error) => console.warn("schedule refresh failed", error)),
      SCHEDULE_REFRESH_MS,
    );
  }

  // --- profile and hours -------------------------------------------------------------

  private async loadProfile(): Promise<boolean> {
    const body = byId("profile-body");
    this.showSteps(false);
    try {
      const { clinician } = await this.api.session.getClinician({ clinicianId: this.clinicianId });
      this.profile = clinician;
      showSignedIn(clinician?.displayName ?? "");
      fill(
        body,
        h(
          "p",
          { "data-testid": "profile-ready" },
          `${clinician?.displayName}, ${clinician?.timeZone}. Your clinician code for patients: `,
          h("code", {}, this.clinicianId),
        ),
      );
      this.showSteps(true);
      return true;
    } catch (error) {
      if (ConnectError.from(error).code !== Code.NotFound) {
        showError(error, { after: byId("profile-title"), retry: () => location.reload() });
        return false;
      }
      this.profileForm(body);
      return false;
    }
  }

  private profileForm(body: HTMLElement): void {
    const name = h("input", { id: "profile-name", autocomplete: "name" });
    const zone = h(
      "select",
      { id: "profile-time-zone" },
      ...timeZones().map((z) => h("option", { value: z, selected: z === VIEWER_ZONE }, z)),
    );
    const practice = h("input", { id: "profile-practice", value: "practice-1", autocomplete: "off" });
    const create = h("button", { id: "profile-create", type: "button" }, "Save my profile");
    fill(
      body,
      h(
        "p",
        { class: "lead", "data-testid": "first-run" },
        "Start here: your profile comes first. Then set your weekly hours so that patients can book.",
      ),
      field("Name patients will see", name),
      field("Time zone", zone, "Your weekly hours are in this time zone."),
      field("Practice code", practice),
      create,
    );
    onClick(
      create,
      async () => {
        await this.api.session.createClinician({
          requestId: newRequestId(),
          clinician: {
            clinicianId: this.clinicianId,
            displayName: name.value.trim(),
            // The name typed here is the one patients see.
            publicName: name.value.trim(),
            timeZone: zone.value,
            practiceId: practice.value.trim(),
          },
        });
        if (await this.loadProfile()) {
          bringIntoView(byId("hours-title"));
          await this.loadRest();
        }
      },
      {
        fields: fieldsOf({
          "clinician.display_name": name,
          "clinician.public_name": name,
          "clinician.time_zone": zone,
          "clinician.practice_id": practice,
        }),
      },
    );
  }

  private hoursSection(): HTMLElement {
    const days = DAYS.map(([day, , long]) => {
      const id = `hours-day-${day}`;
      return h(
        "div",
        { class: "check" },
        h("input", { type: "checkbox", id, "data-day": day, checked: day <= session.DayOfWeek.FRIDAY }),
        h("label", { for: id }, long),
      );
    });
    const start = h("input", {
      id: "hours-start",
      value: "09:00",
      inputmode: "numeric",
      autocomplete: "off",
      size: 6,
    });
    const end = h("input", {
      id: "hours-end",
      value: "17:00",
      inputmode: "numeric",
      autocomplete: "off",
      size: 6,
    });
    const slot = h(
      "select",
      { id: "hours-slot" },
      ...SLOT_CHOICES.map((m) => h("option", { value: m, selected: m === 15 }, `${m} minutes`)),
    );
    const save = h("button", { id: "hours-save", type: "button" }, "Save my hours");
    const daysGroup = h("fieldset", { id: "hours-days", class: "days" }, h("legend", {}, "Days"), ...days);
    const element = section(
      "hours",
      "Your weekly hours",
      h("p", { id: "hours-state", "data-testid": "hours-state", role: "status" }),
      daysGroup,
      h(
        "div",
        { class: "row" },
        field("From", start, "HH:MM, 24-hour clock"),
        field("Until", end, "HH:MM; 24:00 is midnight"),
      ),
      field("Visit length", slot),
      save,
    );
    onClick(
      save,
      async () => {
        const chosen = Array.from(daysGroup.querySelectorAll<HTMLInputElement>("input[data-day]"))
          .filter((box) => box.checked)
          .map((box) => Number(box.dataset.day) as session.DayOfWeek);
        if (chosen.length === 0) throw new Error("Tick at least one day.");
        const { availability } = await this.api.session.setWeeklyAvailability({
          requestId: newRequestId(),
          clinicianId: this.clinicianId,
          timeZone: this.profile?.timeZone ?? "",
          hours: chosen.map((day) => ({
            day,
            startLocalTime: start.value.trim(),
            endLocalTime: end.value.trim(),
          })),
          slotMinutes: Number(slot.value),
        });
        if (availability) {
          this.showHours(
            {
              days: availability.hours.map((hours) => hours.day),
              start: availability.hours[0]?.startLocalTime ?? start.value,
              end: availability.hours[0]?.endLocalTime ?? end.value,
              slotMinutes: availability.slotMinutes,
            },
            "saved",
          );
        }
        byId("hours-state").focus();
      },
      {
        fields: fieldsOf({
          "hours.start_local_time": start,
          "hours.end_local_time": end,
          "hours.day": daysGroup,
          hours: daysGroup,
          slot_minutes: slot,
          time_zone: start,
        }),
      },
    );
    return element;
  }

  /** The weekly hours as saved (GetWeeklyAvailability), shown and put in the form. */
  private async loadHours(): Promise<void> {
    let availability: session.Availability | undefined;
    try {
      ({ availability } = await this.api.session.getWeeklyAvailability({
        clinicianId: this.clinicianId,
      }));
    } catch (error) {
      if (ConnectError.from(error).code !== Code.NotFound) throw error;
    }
    const first = availability?.hours[0];
    if (!availability || !first) {
      fill(byId("hours-state"), "You have not set your hours yet: patients cannot book you until you do.");
      byId("hours-state").dataset.state = "none";
      return;
    }
    this.showHours(
      {
        days: [...new Set(availability.hours.map((hours) => hours.day))],
        start: first.startLocalTime,
        end: first.endLocalTime,
        slotMinutes: availability.slotMinutes,
      },
      "loaded",
    );
  }

  /** Says which hours are published and puts them in the form, to be edited. */
  private showHours(hours: PublishedHours, state: "saved" | "loaded"): void {
    const names = DAYS.filter(([day]) => hours.days.includes(day)).map(([, , long]) => long);
    const zone = this.profile?.timeZone ?? "";
    const status = byId("hours-state");
    status.dataset.state = state;
    status.tabIndex = -1;
    fill(
      status,
      `${state === "saved" ? "Saved. " : ""}Your hours: ${names.join(", ")}, ${hours.start} to ${hours.end} (${zone}), ` +
        `${hours.slotMinutes}-minute visits.`,
    );
    for (const box of document.querySelectorAll<HTMLInputElement>("#hours-days input[data-day]")) {
      box.checked = hours.days.includes(Number(box.dataset.day));
    }
    byId<HTMLInputElement>("hours-start").value = hours.start;
    byId<HTMLInputElement>("hours-end").value = hours.end;
    const slot = byId<HTMLSelectElement>("hours-slot");
    if (!SLOT_CHOICES.includes(hours.slotMinutes))
      slot.append(h("option", { value: hours.slotMinutes }, `${hours.slotMinutes} minutes`));
    slot.value = String(hours.slotMinutes);
  }

  // --- schedule and waiting room -------------------------------------------------------

  private async patientName(visit: session.Visit): Promise<string> {
    const known = this.patientNames.get(visit.patientId);
    if (known) return known;
    const name = await this.api.session
      .getPatient({ patientId: visit.patientId }, { headers: visitHeaders(visit) })
      .then(({ patient }) => patient?.displayName || "")
      .catch(() => "");
    if (name) this.patientNames.set(visit.patientId, name);
    return name || "A patient";
  }

  private async loadSchedule(): Promise<void> {
    const { visits } = await this.api.session.listVisits({ clinicianId: this.clinicianId, pageSize: 50 });
    const sorted = [...visits].sort(
      (a, b) =>
        (a.startTime ? timestampDate(a.startTime).getTime() : 0) -
        (b.startTime ? timestampDate(b.startTime).getTime() : 0),
    );
    const names = new Map<string, string>();
    for (const visit of sorted) names.set(visit.patientId, await this.patientName(visit));
    const key = JSON.stringify([
      sorted.map((v) => [v.visitId, v.state, v.connectedSeconds.toString()]),
      this.call ? (this.visit?.visitId ?? "") : "",
      [...names],
    ]);
    if (key === this.scheduleKey) return; // nothing changed: a focused button stays
    this.scheduleKey = key;
    const waiting = sorted.filter(
      (v) => v.state === session.VisitState.CHECKED_IN || v.state === session.VisitState.IN_PROGRESS,
    );
    fill(
      byId("waiting-list"),
      ...(waiting.length === 0
        ? [h("li", { class: "empty" }, "Nobody is waiting.")]
        : waiting.map((visit) => {
            const open = h("button", { type: "button", "data-testid": "open-room" }, "Open the room");
            onClick(open, async () => this.openRoom(visit, names.get(visit.patientId) ?? ""));
            return h(
              "li",
              {
                class: "card",
                "data-visit-id": visit.visitId,
                "data-state": session.VisitState[visit.state],
              },
              h("h3", {}, names.get(visit.patientId) ?? ""),
              h(
                "p",
                {},
                `${formatTime(visit.startTime && timestampDate(visit.startTime))}: ` +
                  (visit.state === session.VisitState.CHECKED_IN ? "checked in and waiting" : "in the call"),
              ),
              this.call && this.visit?.visitId === visit.visitId
                ? h("p", { class: "note" }, "Open below.")
                : open,
            );
          })),
    );
    const upcoming = sorted.filter(isOpen);
    const past = sorted.filter((v) => !isOpen(v)).reverse();
    const card = (visit: session.Visit) =>
      h(
        "li",
        { class: "card", "data-visit-id": visit.visitId, "data-state": session.VisitState[visit.state] },
        h("h3", {}, `${formatTime(visit.startTime && timestampDate(visit.startTime))}`),
        h("p", {}, `${names.get(visit.patientId)}: ${VISIT_STATE_WORDS[visit.state] ?? ""}`),
        visit.connectedSeconds
          ? h("p", { class: "note" }, `Connected ${formatDuration(Number(visit.connectedSeconds))}`)
          : null,
      );
    fill(
      byId("schedule-body"),
      visits.length === 0 ? h("p", {}, "No visits booked yet.") : null,
      upcoming.length > 0 ? h("h3", {}, "Upcoming") : null,
      upcoming.length > 0
        ? h("ul", { class: "cards", "aria-label": "Upcoming visits" }, ...upcoming.map(card))
        : null,
      past.length > 0 ? h("h3", {}, "Past") : null,
      past.length > 0 ? h("ul", { class: "cards", "aria-label": "Past visits" }, ...past.map(card)) : null,
    );
  }

  // --- the room --------------------------------------------------------------------------

  /** The visit room (who, whether they are in, let them in) and, after the call, the
   * completion form. */
  private roomSections(): [HTMLElement, HTMLElement] {
    const admit = h("button", { id: "admit", type: "button", disabled: true }, "Let the patient in");
    const codes = h("input", { id: "diagnosis", autocomplete: "off", autocapitalize: "characters" });
    const audioOnly = h("input", { id: "audio-only", type: "checkbox" });
    const complete = h("button", { id: "complete", type: "button", disabled: true }, "Complete the visit");
    const element = section(
      "room",
      "Visit room",
      h("p", { id: "room-visit", "data-testid": "room-visit" }),
      h("p", {
        id: "admit-state",
        "data-testid": "admit-state",
        "data-state": "waiting",
        role: "status",
        class: "badge",
      }),
      admit,
    );
    const finish = section(
      "finish",
      "Complete the visit",
      field("Diagnosis codes (ICD-10-CM)", codes, "For example J06.9, R05.9"),
      h("div", { class: "check" }, audioOnly, h("label", { for: "audio-only" }, "The call was audio only")),
      complete,
      h("p", { id: "complete-state", "data-testid": "complete-state", role: "status", tabindex: -1 }),
    );
    element.hidden = true;
    finish.hidden = true;
    admit.addEventListener("click", () => {
      // Not onClick(): the room's events, not the call's end, decide when it is enabled.
      admit.disabled = true;
      this.call?.admit().catch((error) => {
        this.updateRoom();
        showError(error, { after: admit, retry: () => admit.click() });
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
        this.completed = true;
        // The visit is complete whatever happens to the call now: hang up, then say so.
        await this.call?.leave("You completed the visit.").catch(() => undefined);
        const state = byId("complete-state");
        state.dataset.state = "completed";
        fill(
          state,
          `Visit completed. Connected for ${formatDuration(Number(reply.visit?.connectedSeconds ?? 0))}.`,
        );
        state.focus();
      },
      {
        fields: fieldsOf({ diagnosis_codes: codes, audio_only: audioOnly }),
        enabled: () => this.canComplete(),
      },
    );
    return [element, finish];
  }

  private canComplete(): boolean {
    return Boolean(this.visit) && this.admitted && !this.completed && !this.over;
  }

  /** The room's buttons and words follow what the call knows: admitted, present, over. */
  private updateRoom(): void {
    const admit = byId<HTMLButtonElement>("admit");
    const state = byId("admit-state");
    const call = this.call;
    if (call?.admitted) this.admitted = true;
    const admitted = this.admitted;
    const present = Boolean(call?.peerPresent);
    admit.disabled = !call || admitted || !present;
    admit.hidden = admitted || !call; // once in, there is nobody to let in: the words below say so
    admit.dataset.state = admitted ? "admitted" : present ? "ready" : "waiting";
    state.dataset.state = this.completed
      ? "completed"
      : this.over
        ? "over"
        : !call
          ? "left"
          : admitted
            ? "admitted"
            : present
              ? "ready"
              : "waiting";
    fill(
      state,
      this.completed
        ? "The visit is complete."
        : this.over
          ? "This visit is over."
          : !call
            ? "You left the call. The visit is still open: complete it below, or open the room again."
            : admitted
              ? present
                ? "The patient is in the call."
                : "The patient was let in and has stepped out."
              : present
                ? "The patient is in the waiting room."
                : "Waiting for the patient to join.",
    );
    byId<HTMLButtonElement>("complete").disabled = !this.canComplete();
  }

  /** After the call: whether the visit ended (completed here or elsewhere, cancelled). */
  private async visitOver(visit: session.Visit): Promise<void> {
    try {
      const { visit: now } = await this.api.session.getVisit(
        { visitId: visit.visitId },
        { headers: visitHeaders(visit) },
      );
      if (now && !isOpen(now) && this.visit?.visitId === visit.visitId) {
        this.over = true;
        this.updateRoom();
      }
      await this.loadSchedule();
    } catch (error) {
      console.warn("reading the visit after the call failed", error);
    }
  }

  private async openRoom(visit: session.Visit, patient: string): Promise<void> {
    if (this.call) throw new Error("You are already in a visit room. Leave it first.");
    const stream = await localMedia();
    this.visit = visit;
    this.completed = false;
    this.over = false;
    this.admitted = visit.state === session.VisitState.IN_PROGRESS;
    const room = byId("room");
    room.hidden = false;
    byId("finish").hidden = false;
    fill(byId("complete-state"));
    byId<HTMLInputElement>("diagnosis").value = "";
    fill(
      byId("room-visit"),
      `Visit with ${patient}, booked for ${formatTime(visit.startTime && timestampDate(visit.startTime))}`,
    );
    const leave = byId<HTMLButtonElement>("leave");
    const call = new VisitCall(this.api, visit, "clinician", stream, patient, {
      joined: () => {
        leave.disabled = false;
        this.updateRoom();
      },
      admitted: () => this.updateRoom(),
      peer: () => this.updateRoom(),
      ended: () => {
        // The room and the completion form stay: the visit may still need completing.
        this.call = null;
        leave.disabled = true;
        this.updateRoom();
        void this.visitOver(visit);
      },
    });
    this.call = call;
    this.updateRoom();
    call.start();
    await this.loadSchedule();
    bringIntoView(byId("room-title"));
  }
}

async function main(): Promise<void> {
  const signedIn = await signIn("clinician");
  if (signedIn) await new ClinicianPage(signedIn).render();
}

void main().catch((error) => showError(error));
