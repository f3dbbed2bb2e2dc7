// The services' states and notes in words for the people who read them.
import { billing, session } from "@telemesh/client";

export const VISIT_STATE_WORDS: Record<number, string> = {
  [session.VisitState.BOOKED]: "Booked",
  [session.VisitState.CHECKED_IN]: "Checked in",
  [session.VisitState.IN_PROGRESS]: "In progress",
  [session.VisitState.COMPLETED]: "Completed",
  [session.VisitState.CANCELLED]: "Cancelled",
  [session.VisitState.NO_SHOW]: "Missed",
};

export const CHARGE_STATE_WORDS: Record<number, string> = {
  [billing.ChargeState.BILLABLE]: "To be billed",
  [billing.ChargeState.BILLED]: "Billed",
  [billing.ChargeState.VOIDED]: "Cancelled",
  [billing.ChargeState.NOT_BILLABLE]: "Not billed",
};

export const OVER = [session.VisitState.COMPLETED, session.VisitState.CANCELLED, session.VisitState.NO_SHOW];

/** Whether a visit is still ahead or going on. */
export function isOpen(visit: session.Visit): boolean {
  return !OVER.includes(visit.state);
}

/** Why a charge is not billed, as a patient understands it. Billing's note reads like
 * `below-minimum-time: 20 s connected; the lowest ... code 99212 needs 600 s (rule set)`. */
export function notBilledWords(note: string): string {
  const seconds = /needs (\d+) s/.exec(note)?.[1] ?? /more than (\d+) s/.exec(note)?.[1];
  const minutes = seconds ? Math.round(Number(seconds) / 60) : 0;
  if (note.startsWith("below-minimum-time")) {
    return minutes
      ? `Not billed: the call was shorter than ${minutes} minutes.`
      : "Not billed: the call was too short to bill.";
  }
  if (note.startsWith("audio-only-discussion-too-short")) {
    return minutes
      ? `Not billed: a phone-only call needs more than ${minutes} minutes of discussion.`
      : "Not billed: the phone-only call was too short to bill.";
  }
  return "Not billed.";
}

/** A voided charge's note. */
export function voidedWords(): string {
  return "Cancelled: you owe nothing for this visit.";
}
