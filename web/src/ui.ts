// Small DOM helpers shared by both apps: elements, labelled fields, actions whose errors
// show next to what caused them (in plain words), focus moves, and formatting for people.
import { describeError } from "@telemesh/client";
import { fieldKey, plainError, type PlainError } from "./errors";

type Child = Node | string | null | undefined | false;
type Attributes = Record<string, string | boolean | number | undefined>;

/** An element with attributes (`data-testid`, `hidden`, ...) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    if (name === "class") element.className = String(value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.filter((child): child is Node | string => Boolean(child)));
  return element;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`no element #${id}`);
  return element as T;
}

/** Replaces an element's children. */
export function fill(element: HTMLElement, ...children: Child[]): void {
  element.replaceChildren(...children.filter((child): child is Node | string => Boolean(child)));
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// --- page-wide settings the error boxes need ---------------------------------------------

let edgeUrl = "";
let onSignInAgain: () => void = () => location.reload();

/** Where the service is (for the "trust the certificate" link) and how to sign in again. */
export function configureErrors(edge: string, signInAgain: () => void): void {
  edgeUrl = edge;
  onSignInAgain = signInAgain;
}

// --- fields ---------------------------------------------------------------------------------

/** A labelled form field: the label, the control, an optional hint, and room for an error
 * right under it. The control needs an id. */
export function field(label: string, input: HTMLElement, hint = ""): HTMLDivElement {
  const id = input.id;
  const hintId = `${id}-hint`;
  if (hint) input.setAttribute("aria-describedby", hintId);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    hint && h("p", { class: "hint", id: hintId }, hint),
    input,
  );
}

/** Marks a control as wrong, with the message under it. */
export function markField(input: HTMLElement, message: string): void {
  const errorId = `${input.id}-error`;
  document.getElementById(errorId)?.remove();
  input.setAttribute("aria-invalid", "true");
  const describedBy = (input.getAttribute("aria-describedby") ?? "").split(" ").filter(Boolean);
  if (!describedBy.includes(errorId)) describedBy.push(errorId);
  input.setAttribute("aria-describedby", describedBy.join(" "));
  const error = h("p", { class: "field-error", id: errorId, "data-testid": "field-error" }, message);
  (input.closest(".field") ?? input.parentElement)?.append(error);
}

function clearField(input: HTMLElement): void {
  const errorId = `${input.id}-error`;
  document.getElementById(errorId)?.remove();
  input.removeAttribute("aria-invalid");
  const describedBy = (input.getAttribute("aria-describedby") ?? "")
    .split(" ")
    .filter((id) => id && id !== errorId);
  if (describedBy.length) input.setAttribute("aria-describedby", describedBy.join(" "));
  else input.removeAttribute("aria-describedby");
}

// --- focus ----------------------------------------------------------------------------------

/** Brings `element` into view and moves the keyboard focus to it (headings and panels get
 * tabindex=-1 so that they can take it). */
export function bringIntoView(element: HTMLElement): void {
  if (!element.matches("a, button, input, select, textarea, [tabindex]")) element.tabIndex = -1;
  element.scrollIntoView({ block: "start", behavior: "instant" as ScrollBehavior });
  element.focus({ preventScroll: true });
}

// --- errors ---------------------------------------------------------------------------------

/** An error box with its remedy (try again, sign in again, open the service's address). */
function errorBox(shown: PlainError, retry: (() => void) | null): HTMLDivElement {
  const box = h(
    "div",
    {
      class: "action-error",
      role: "alert",
      tabindex: -1,
      "data-testid": "action-error",
      "data-code": shown.code,
      "data-reason": shown.reason,
      "data-remedy": shown.remedy,
    },
    h("p", {}, shown.message),
  );
  const actions = h("div", { class: "remedies" });
  if (shown.remedy === "sign-in") {
    const again = h("button", { type: "button", "data-testid": "sign-in-again" }, "Sign in again");
    again.addEventListener("click", () => onSignInAgain());
    actions.append(again);
    sessionExpired();
  }
  if (shown.remedy === "trust-certificate" && edgeUrl) {
    actions.append(
      h(
        "a",
        {
          href: edgeUrl,
          target: "_blank",
          rel: "noopener",
          class: "button-link",
          "data-testid": "open-edge",
        },
        "Open the service's address",
      ),
    );
  }
  if ((shown.remedy === "retry" || shown.remedy === "trust-certificate") && retry) {
    const again = h("button", { type: "button", "data-testid": "retry" }, "Try again");
    again.addEventListener("click", () => {
      box.remove();
      retry();
    });
    actions.append(again);
  }
  if (actions.childElementCount) box.append(actions);
  return box;
}

/** The header says so when the sign-in is gone (never "Signed in" after a refusal). */
export function sessionExpired(): void {
  const who = document.getElementById("who");
  if (!who || who.dataset.state === "expired") return;
  who.dataset.state = "expired";
  const again = h("button", { type: "button", class: "secondary" }, "Sign in again");
  again.addEventListener("click", () => onSignInAgain());
  fill(who, h("span", {}, "Your sign-in has expired. "), again);
}

export interface ErrorPlace {
  /** The box goes right after this element (the button, or the part of the page). */
  after: HTMLElement;
  /** The control of a bad field, by field path without indexes (`hours.end_local_time`). */
  fields?: (key: string) => HTMLElement | undefined;
  /** Runs the failed work again (for "Try again"). */
  retry?: () => void;
}

/** Shows an error next to what caused it: bad fields marked with their own message, one
 * box after `place.after`; scrolled into view with the focus on it. */
export function showError(error: unknown, place?: ErrorPlace): void {
  const shown = plainError(error);
  console.warn("telemesh call failed", describeError(error));
  const fields = place?.fields;
  let firstField: HTMLElement | undefined;
  const unplaced: string[] = [];
  for (const violation of shown.fields) {
    const input = fields?.(violation.field);
    if (input) {
      markField(input, violation.message);
      firstField ??= input;
    } else unplaced.push(violation.message);
  }
  // A bad field without a control of its own is said in the box.
  const boxed = unplaced.length ? { ...shown, message: [shown.message, ...unplaced].join(" ") } : shown;
  const box = errorBox(boxed, place?.retry ?? null);
  if (place) {
    const anchor = place.after;
    const next = anchor.nextElementSibling;
    if (next?.classList.contains("action-error")) next.remove();
    anchor.after(box);
  } else {
    const banner = byId("error");
    fill(banner, box);
    banner.hidden = false;
  }
  bringIntoView(firstField ?? box);
}

/** Removes the error boxes, field errors and old outcome messages of one part of the page. */
export function clearErrors(scope: ParentNode): void {
  for (const box of scope.querySelectorAll(".action-error")) box.remove();
  for (const input of scope.querySelectorAll<HTMLElement>("[aria-invalid=true]")) clearField(input);
  for (const outcome of scope.querySelectorAll<HTMLElement>("[data-outcome]")) fill(outcome);
  const banner = document.getElementById("error");
  if (banner) {
    banner.hidden = true;
    fill(banner);
  }
}

export interface ActionOptions {
  /** The controls of the request's fields, for errors next to them. */
  fields?: (key: string) => HTMLElement | undefined;
  /** Whether the button may be pressed again afterwards (default: yes). */
  enabled?: () => boolean;
  /** Where the error box goes (default: right after the button). */
  errorAfter?: HTMLElement;
}

/** Runs `work` for a button: disabled and busy meanwhile; a failure shown next to it. */
export function onClick(
  button: HTMLButtonElement,
  work: () => Promise<unknown>,
  options: ActionOptions = {},
): void {
  const run = async () => {
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    const scope = button.closest("section") ?? document;
    clearErrors(scope);
    try {
      await work();
    } catch (error) {
      showError(error, {
        after: options.errorAfter ?? button,
        fields: options.fields,
        retry: () => void run(),
      });
    } finally {
      button.removeAttribute("aria-busy");
      button.disabled = !(options.enabled?.() ?? true);
    }
  };
  button.addEventListener("click", (event) => {
    event.preventDefault();
    void run();
  });
}

/** A lookup of controls by field path, for ActionOptions.fields. */
export function fieldsOf(map: Record<string, HTMLElement>): (key: string) => HTMLElement | undefined {
  return (key) => map[fieldKey(key)];
}

// --- words and numbers for people -----------------------------------------------------------

/** The viewer's own time zone (IANA name). */
export const VIEWER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** A day and time in the viewer's zone, with the zone shown: `Tue, Dec 2, 4:45 PM UTC`. */
export function formatTime(date: Date | undefined, timeZone = VIEWER_ZONE): string {
  if (!date) return "";
  return date.toLocaleString(undefined, {
    weekday: "short",
    month: "short",
    day: "numeric",
    hour: "numeric",
    minute: "2-digit",
    timeZone,
    timeZoneName: "short",
  });
}

/** A time of day only, with the zone: `4:30 PM UTC`. */
export function formatClock(date: Date, timeZone = VIEWER_ZONE): string {
  return date.toLocaleTimeString(undefined, {
    hour: "numeric",
    minute: "2-digit",
    timeZone,
    timeZoneName: "short",
  });
}

/** A calendar date (`YYYY-MM-DD`) as words: `Dec 2, 2026`. */
export function formatDate(isoDate: string): string {
  const [year, month, day] = isoDate.split("-").map(Number);
  if (!year || !month || !day) return isoDate;
  return new Date(Date.UTC(year, month - 1, day)).toLocaleDateString(undefined, {
    dateStyle: "medium",
    timeZone: "UTC",
  });
}

/** Money in minor units as the viewer reads it: 12345 USD is `$123.45`. */
export function formatMoney(money: { currencyCode: string; amountMinor: bigint } | undefined): string {
  const code = money?.currencyCode || "USD";
  const minor = money?.amountMinor ?? 0n;
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: code }).format(
      Number(minor) / 100,
    );
  } catch {
    return `${code} ${(Number(minor) / 100).toFixed(2)}`;
  }
}

/** Minutes and seconds for a duration: `12 min 5 s`. */
export function formatDuration(seconds: number): string {
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  return minutes ? `${minutes} min${rest ? ` ${rest} s` : ""}` : `${rest} s`;
}
