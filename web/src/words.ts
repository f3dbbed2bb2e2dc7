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

/** Why a charge is not billed, as a patient understands it (billing's code and the
 * connected time its rule needed). */
export function notBilledWords(charge: billing.Charge): string {
  const minutes = Math.round(Number(charge.minimumSeconds) / 60);
  switch (charge.notBillableCode) {
    case billing.NotBillableCode.BELOW_MINIMUM_TIME:
      return minutes
        ? `Not billed: the call was shorter than ${minutes} minutes.`
        : "Not billed: the call was too short to bill.";
    case billing.NotBillableCode.AUDIO_ONLY_DISCUSSION_TOO_SHORT:
      return minutes
        ? `Not billed: a phone-only call needs more than ${minutes} minutes of discussion.`
        : "Not billed: the phone-only call was too short to bill.";
    default:
      return "Not billed.";
  }
}

/** A voided charge's note. */
export function voidedWords(): string {
  return "Cancelled: you owe nothing for this visit.";
}
