// Errors for people: what went wrong, in plain words, from the status's ErrorInfo reason
// and its field violations (never the raw status name), and what the person can do next.
import { describeError, type TelemeshError } from "@telemesh/client";

/** What the page offers next to an error message. */
export type Remedy = "retry" | "sign-in" | "trust-certificate" | "none";

export interface PlainError {
  /** One sentence or two for the person, without status names. */
  message: string;
  remedy: Remedy;
  /** One message per bad field: the request's field path and the words for it. */
  fields: { field: string; message: string }[];
  /** The status and reason, for data attributes and the console (never shown). */
  code: string;
  reason: string;
}

// Reasons the apps meet, in words for the person who sees them.
const REASONS: Record<string, string> = {
  CLINICIAN_NOT_FOUND: "We could not find that clinician. Check the clinician code you were given.",
  PATIENT_NOT_FOUND: "Please fill in your details first (the first step on this page).",
  PATIENT_EXISTS: "You already have a profile.",
  CLINICIAN_EXISTS: "You already have a profile.",
  NO_AVAILABILITY: "This clinician has not published any visit times yet.",
  SLOT_TAKEN: "Someone has just booked that time. Please choose another one.",
  NOT_A_SLOT: "That time is no longer free. Please choose another one.",
  OUTSIDE_CHECK_IN_WINDOW: "Check-in is not open for this visit right now.",
  ILLEGAL_TRANSITION:
    "This visit has moved on since the page was loaded. The page now shows where it stands.",
  NOT_ADMITTED: "The clinician has not let you in yet.",
  CONSENT_REQUIRED: "Please agree to video visits first (the consent step on this page).",
  CONSENT_NOT_ACTIVE: "Please agree to video visits first (the consent step on this page).",
  NOT_OWNER: "You can only do this for your own account.",
  NOT_PARTICIPANT: "This visit belongs to someone else.",
  NO_CARE_RELATIONSHIP: "You are not this patient's clinician.",
  VISIT_NOT_FOUND: "We could not find this visit.",
  GRACE_PERIOD: "It is too early to mark this visit as missed.",
  CONSENT_VERSION_CONFLICT: "Your consent changed in another window. The page now shows the latest version.",
  CONSENT_ALREADY_REVOKED: "You have already withdrawn your consent.",
  RECORDING_CONSENT_REQUIRED: "Recording needs your separate consent.",
  OUTSIDE_JOIN_WINDOW: "This visit's room is not open right now.",
  NOT_JOINABLE: "This visit can no longer be joined.",
  VISIT_NOT_ADMITTABLE: "The patient cannot be let in now: the visit has moved on.",
  NOT_IN_PROGRESS: "The visit has not started yet: let the patient in first.",
  NOT_CHECKED_IN: "The patient has not checked in yet.",
  VISIT_COMPLETION_CONFLICT: "This visit was already completed with other details.",
  RATE_LIMITED: "Too many requests just now. Please wait a moment and try again.",
  DEPENDENCY_UNAVAILABLE: "Part of the service is not answering right now. Please try again in a moment.",
  DRAINING: "The service is restarting. Please try again in a moment.",
  PRECALL_BUSY: "The camera test is busy. Please try again in a minute.",
  PRECALL_ALREADY_RUNNING: "A camera test is already running.",
  ROOM_CLOSED: "The visit's room has closed.",
  STREAM_SUPERSEDED: "You joined this visit in another window or tab, so this one has stopped.",
};

// Status codes without a known reason.
const CODES: Record<string, { message: string; remedy: Remedy }> = {
  UNAVAILABLE: {
    message: "The service is not answering right now. Please try again in a moment.",
    remedy: "retry",
  },
  DEADLINE_EXCEEDED: { message: "That took too long. Please try again.", remedy: "retry" },
  UNAUTHENTICATED: { message: "Your sign-in has expired. Please sign in again.", remedy: "sign-in" },
  PERMISSION_DENIED: { message: "You are not allowed to do this.", remedy: "none" },
  INVALID_ARGUMENT: { message: "Please check the highlighted fields.", remedy: "none" },
  NOT_FOUND: { message: "We could not find what you asked for.", remedy: "none" },
  ALREADY_EXISTS: { message: "This has already been done.", remedy: "none" },
  FAILED_PRECONDITION: { message: "This cannot be done yet.", remedy: "none" },
  RESOURCE_EXHAUSTED: {
    message: "Too many requests just now. Please wait a moment and try again.",
    remedy: "retry",
  },
  INTERNAL: { message: "Something went wrong on our side. Please try again.", remedy: "retry" },
};

// Field violations in words: the last part of the field path and what was wrong.
const FIELD_WORDS: [RegExp, string][] = [
  [/time_zone$/, "Choose a time zone from the list."],
  [/display_name$/, "Please enter a name."],
  [/birth_date$/, "Enter your date of birth (day, month and year)."],
  [/email$/, "Enter an email address like name@example.com."],
  [/phone$/, "Enter a phone number with digits only, like +1 555 0100."],
  [/end_local_time$/, "The end time must be after the start time (use 24:00 for midnight)."],
  [/start_local_time$/, "Enter a start time like 09:00."],
  [/slot_minutes$/, "Visit length must be 5 to 240 minutes, in steps of 5."],
  [/^hours(\[\d+\])?$/, "Two periods on the same day overlap."],
  [/diagnosis_codes/, "Enter ICD-10-CM codes like J06.9, separated by commas."],
  [/practice_id$/, "Enter your practice code."],
];

function fieldMessage(field: string, description: string): string {
  for (const [pattern, words] of FIELD_WORDS) if (pattern.test(field)) return words;
  // A description from the service reads as "is required", "must be ...": make it a sentence.
  const text = description.trim();
  return text ? `${text.charAt(0).toUpperCase()}${text.slice(1)}.` : "Please check this field.";
}

/** The field a violation belongs to, without list indexes: `hours[3].end_local_time` is
 * `hours.end_local_time` (the form has one "until" for every day). */
export function fieldKey(field: string): string {
  return field.replace(/\[\d+\]/g, "");
}

/** Whether the browser could not reach the edge at all (no answer, or an untrusted
 * certificate: a page cannot tell the two apart). */
function unreachable(described: TelemeshError): boolean {
  return (
    (described.code === "UNKNOWN" || described.code === "UNAVAILABLE") &&
    !described.reason &&
    /failed to fetch|networkerror|load failed|network error/i.test(described.message)
  );
}

/** An error as the person should see it. A plain `Error` thrown by the page is already in
 * words and is shown as it is. */
export function plainError(error: unknown): PlainError {
  if (error instanceof Error && !("code" in error) && error.name === "Error") {
    return { message: error.message, remedy: "none", fields: [], code: "", reason: "" };
  }
  const described = describeError(error);
  const seen = new Set<string>();
  const fields: PlainError["fields"] = [];
  for (const violation of described.fieldViolations) {
    const key = fieldKey(violation.field);
    if (seen.has(key)) continue; // one message per field, however many periods had it
    seen.add(key);
    fields.push({ field: key, message: fieldMessage(key, violation.description) });
  }
  const base = { fields, code: described.code, reason: described.reason };
  if (unreachable(described)) {
    return {
      ...base,
      message:
        "We could not reach Telemesh. Check that you are online. If this is the first time on this device, " +
        "your browser may not trust the service's certificate yet: open the service's address once, accept it, " +
        "then try again.",
      remedy: "trust-certificate",
    };
  }
  const byCode = CODES[described.code];
  if (described.code === "UNAUTHENTICATED") return { ...base, ...CODES.UNAUTHENTICATED! };
  const byReason = REASONS[described.reason];
  if (byReason) return { ...base, message: byReason, remedy: byCode?.remedy === "retry" ? "retry" : "none" };
  if (fields.length > 0) return { ...base, message: "Please check the highlighted fields.", remedy: "none" };
  return { ...base, ...(byCode ?? { message: "Something went wrong. Please try again.", remedy: "retry" }) };
}
