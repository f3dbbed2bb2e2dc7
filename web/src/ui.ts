// Small DOM helpers shared by both apps: elements, the error banner, busy buttons.
import { describeError, formatError } from "@telemesh/client";

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

/** Shows an error from a call: status, ErrorInfo reason, message and bad fields. */
export function showError(error: unknown, context = ""): void {
  const banner = byId("error");
  const described = describeError(error);
  banner.dataset.code = described.code;
  banner.dataset.reason = described.reason;
  fill(banner, context ? `${context}: ${formatError(error)}` : formatError(error));
  banner.hidden = false;
  console.warn("telemesh call failed", described);
}

export function clearError(): void {
  const banner = byId("error");
  banner.hidden = true;
  fill(banner);
}

/** Runs `work` for a button: disabled meanwhile, errors shown in the banner. */
export function onClick(button: HTMLButtonElement, work: () => Promise<unknown>, context = ""): void {
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    clearError();
    try {
      await work();
    } catch (error) {
      showError(error, context || button.textContent || "");
    } finally {
      button.disabled = false;
    }
  });
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A labelled form field. */
export function field(label: string, input: HTMLElement): HTMLLabelElement {
  return h("label", {}, h("span", {}, label), input);
}

export function formatTime(date: Date | undefined): string {
  if (!date) return "";
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Money in minor units as text: 12345 USD is `USD 123.45`. */
export function formatMoney(money: { currencyCode: string; amountMinor: bigint } | undefined): string {
  if (!money) return "0.00";
  const minor = money.amountMinor;
  const sign = minor < 0n ? "-" : "";
  const abs = minor < 0n ? -minor : minor;
  const cents = (abs % 100n).toString().padStart(2, "0");
  return `${money.currencyCode || ""} ${sign}${abs / 100n}.${cents}`.trim();
}

/** An enum value as words: VisitState.CHECKED_IN is `checked in`. */
export function enumLabel(names: object, value: number): string {
  const name = (names as Record<number, string | undefined>)[value] ?? String(value);
  return name.toLowerCase().replace(/_/g, " ");
}
