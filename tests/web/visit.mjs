// Drives the patient and clinician pages through a whole video visit in Debian's
// Chromium (playwright-core from web/node_modules) as two people on phones would, with
// the keyboard only (Tab to a control, Enter or Space to use it, typing into fields):
// profiles, hours, booking, consent, camera test, check-in, waiting room, admission, the
// call, completion and the bill. At each stage both pages are measured at phone widths
// (360 and 390 px) and at desktop width: horizontal overflow, tap target sizes, raw
// status names or ids in the visible text, and axe-core's WCAG 2.1 AA rules.
// tests/web/test_browser_visit.py runs it and reads its output: one JSON line per step,
// then {"result": ...} or {"failed": ...}.
//
//   node visit.mjs '{"webDir": ".../web", "webUrl": "http://localhost:5173",
//     "patientToken": "...", "clinicianToken": "...", "expiredToken": "...",
//     "clinicianId": "c-1", "edgeUrl": "https://localhost:8443",
//     "spki": "base64 sha-256 of the edge's public key", "userDataDir": "...",
//     "artifacts": "...", "images": "... or empty", "layout": "phone" or "desktop"}'
import { createRequire } from "node:module";
import { join } from "node:path";

const args = JSON.parse(process.argv[2]);
const require = createRequire(join(args.webDir, "package.json"));
const { chromium } = require("playwright-core");
const AXE = require.resolve("axe-core/axe.min.js");

const STEP_TIMEOUT_MS = 30000;
const PHONE = { width: 360, height: 780 };
const PHONE_WIDE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };
const BASE_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  "--allow-loopback-in-peer-connection",
];
// Trust exactly the edge's key (its certificate comes from the local CA): honoured
// because the context has its own --user-data-dir.
const CHROMIUM_ARGS = [...BASE_ARGS, `--ignore-certificate-errors-spki-list=${args.spki}`];
// The viewer's zone is not UTC, so that "times in the viewer's zone" means something.
const CONTEXT = {
  executablePath: "/usr/bin/chromium",
  headless: true,
  locale: "en-US",
  timezoneId: "America/New_York",
};

const started = Date.now();
const logs = [];
const checks = [];
let current = "launch";

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

async function step(name, work) {
  current = name;
  const at = Date.now();
  const value = await work();
  emit({ step: name, ms: Date.now() - at });
  return value;
}

function watch(page, name) {
  page.on("console", (message) => {
    if (message.type() === "error") logs.push(`${name} console.${message.type()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => logs.push(`${name} page error: ${error.message}`));
}

const ERRORS = "#error:not([hidden]), .action-error";

/** Waits for `selector`, failing at once with the page's error if one shows. */
async function waitFor(page, selector, timeout = STEP_TIMEOUT_MS, state = "visible") {
  const banner = page.locator(ERRORS).first();
  const wanted = page.locator(selector).first();
  const winner = await Promise.race([
    wanted.waitFor({ state, timeout }).then(() => "ok"),
    banner.waitFor({ state: "visible", timeout }).then(() => "error"),
  ]);
  if (winner === "error") {
    throw new Error(`the page showed an error while waiting for ${selector}: ${await banner.textContent()}`);
  }
  return wanted;
}

// --- the keyboard -----------------------------------------------------------------------

/** Presses Tab until the focus is on `selector` (as a keyboard user would get there). */
async function tabTo(page, selector, max = 400) {
  for (let i = 0; i < max; i++) {
    const there = await page.evaluate((s) => Boolean(document.activeElement?.matches(s)), selector);
    if (there) return i;
    await page.keyboard.press("Tab");
  }
  throw new Error(`${selector} cannot be reached with Tab`);
}

/** Tab to a button (or link) and press Enter. */
async function press(page, selector) {
  await tabTo(page, selector);
  await page.keyboard.press("Enter");
}

/** Tab to a field, select what is in it and type. */
async function type(page, selector, text) {
  await tabTo(page, selector);
  await page.keyboard.press("Control+A");
  await page.keyboard.type(text);
}

/** Tab to a checkbox and tick it with Space (unless ticked). */
async function tick(page, selector) {
  await tabTo(page, selector);
  if (!(await page.locator(selector).isChecked())) await page.keyboard.press("Space");
}

// --- the measurements -------------------------------------------------------------------

/** What a person sees on the page now, measured at `size`. */
async function measure(page, name, size) {
  await page.setViewportSize(size);
  await page.waitForTimeout(50);
  const found = await page.evaluate(async () => {
    const visible = (el) => {
      const rect = el.getBoundingClientRect();
      const style = getComputedStyle(el);
      return rect.width > 0 && rect.height > 0 && style.visibility !== "hidden" && !el.closest("[hidden]");
    };
    const targets = [];
    const controls = document.querySelectorAll(
      "button, a[href], select, textarea, input:not([type=checkbox]):not([type=hidden])",
    );
    for (const el of controls) {
      if (!visible(el) || el.classList.contains("skip")) continue;
      const rect = el.getBoundingClientRect();
      targets.push({
        what: el.id || el.dataset.testid || el.textContent.trim().slice(0, 30),
        w: rect.width,
        h: rect.height,
      });
    }
    // A checkbox's target is its row: the box and its label.
    for (const box of document.querySelectorAll("input[type=checkbox]")) {
      if (!visible(box)) continue;
      const row = box.closest(".check") ?? box;
      const rect = row.getBoundingClientRect();
      targets.push({ what: box.id, w: rect.width, h: rect.height });
    }
    const text = document.body.innerText;
    const raw = [
      ...(text.match(/\b[A-Z]{2,}(?:_[A-Z]+)+\b/g) ?? []),
      ...(text.match(/\b(?:UNKNOWN|UNAVAILABLE|UNAUTHENTICATED|INTERNAL)\b/g) ?? []),
      ...(text.match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}/g) ?? []),
      ...(text.match(/frames decoded|hello from the/gi) ?? []),
    ];
    const axeResult = await window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
    });
    return {
      scrollWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
      innerWidth: window.innerWidth,
      targets,
      raw,
      axe: axeResult.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
      })),
    };
  });
  const small = found.targets.filter((t) => t.w < 44 - 0.5 || t.h < 44 - 0.5);
  const minHeight = Math.min(...found.targets.map((t) => t.h));
  const minWidth = Math.min(...found.targets.map((t) => t.w));
  const check = {
    name,
    width: size.width,
    scrollWidth: found.scrollWidth,
    innerWidth: found.innerWidth,
    targets: found.targets.length,
    minHeight,
    minWidth,
    small,
    raw: found.raw,
    axe: found.axe,
  };
  checks.push(check);
  return check;
}

/** Both pages at the phone widths and at desktop width; back to `back` afterwards. */
async function measureAll(stage, pages) {
  for (const [name, page, back] of pages) {
    for (const size of [PHONE, PHONE_WIDE, DESKTOP]) await measure(page, `${name}: ${stage}`, size);
    await page.setViewportSize(back);
  }
}

/** Where the focus is and whether it is on screen; with `selector`, once it is there. */
async function focusInfo(page, selector = "") {
  if (selector) {
    await page
      .waitForFunction((s) => Boolean(document.activeElement?.matches(s)), selector, {
        timeout: STEP_TIMEOUT_MS,
      })
      .catch(() => undefined); // reported as it is, for the assertion to say
    await page.waitForTimeout(100); // the page settles (a list drawn after the move)
  }
  return page.evaluate(() => {
    const el = document.activeElement;
    const rect = el?.getBoundingClientRect();
    return {
      id: el?.id ?? "",
      tag: el?.tagName ?? "",
      text: (el?.textContent ?? "").trim().slice(0, 200),
      inView: Boolean(rect && rect.top >= -1 && rect.bottom <= window.innerHeight + 1 && rect.height > 0),
      top: rect?.top,
      bottom: rect?.bottom,
      innerHeight: window.innerHeight,
    };
  });
}

/** Polls the page's call stats until video frames have been decoded. */
async function framesDecoded(page, timeout = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const stats = await page.evaluate(() => window.telemesh?.callStats());
    if (stats && stats.framesDecoded > 0) return stats;
    if (Date.now() > deadline) throw new Error(`no frames decoded: ${JSON.stringify(stats)}`);
    await page.waitForTimeout(200);
  }
}

// The visit is walked with the patient at 360 px and the clinician at 390 px, or both at
// desktop width (args.layout); every stage is measured at all three widths either way.
const desktop = args.layout === "desktop";
const PATIENT_SIZE = desktop ? DESKTOP : PHONE;
const CLINICIAN_SIZE = desktop ? DESKTOP : PHONE_WIDE;
const context = await chromium.launchPersistentContext(args.userDataDir, {
  ...CONTEXT,
  args: CHROMIUM_ARGS,
  viewport: CLINICIAN_SIZE,
});
// axe-core goes in as an init script (the pages' CSP allows no inline or foreign script).
await context.addInitScript({ path: AXE });
const clinician = await context.newPage();
const patient = await context.newPage();
await clinician.setViewportSize(CLINICIAN_SIZE);
await patient.setViewportSize(PATIENT_SIZE);
watch(clinician, "clinician");
watch(patient, "patient");
const both = [
  ["patient", patient, PATIENT_SIZE],
  ["clinician", clinician, CLINICIAN_SIZE],
];

try {
  const clinicianUrl = `${args.webUrl}/clinician.html#token=${args.clinicianToken}`;
  const patientUrl = `${args.webUrl}/patient.html#token=${args.patientToken}&clinician=${args.clinicianId}`;

  const clinicianFirstRun = await step("clinician creates a profile, time zone from the picker", async () => {
    await clinician.goto(clinicianUrl);
    await waitFor(clinician, "[data-testid=first-run]");
    const hidden = await clinician.locator("#hours").isHidden();
    const zones = await clinician.locator("#profile-time-zone option").count();
    const zone = await clinician.locator("#profile-time-zone").inputValue();
    await measureAll("first run", [["clinician", clinician, CLINICIAN_SIZE]]);
    await type(clinician, "#profile-name", "Dr. Ada Quill");
    await press(clinician, "#profile-create");
    await waitFor(clinician, "[data-testid=profile-ready]");
    await clinician.waitForFunction(() => document.activeElement?.id === "hours-title");
    await waitFor(clinician, "#hours-state[data-state=none]");
    return {
      hoursHiddenBeforeProfile: hidden,
      zones,
      zone,
      focus: await focusInfo(clinician),
      signedIn: await clinician.locator("#who").innerText(),
    };
  });

  const hoursError = await step("bad hours: one message, next to the field, focus moved to it", async () => {
    await type(clinician, "#hours-start", "09:00");
    await type(clinician, "#hours-end", "08:00");
    await press(clinician, "#hours-save");
    await clinician.locator("#hours-end[aria-invalid=true]").waitFor({ timeout: STEP_TIMEOUT_MS });
    return clinician.evaluate(() => {
      const input = document.getElementById("hours-end");
      const errors = [...document.querySelectorAll("[data-testid=field-error]")];
      const rect = input.getBoundingClientRect();
      return {
        errors: errors.map((e) => e.textContent),
        nextToField: errors.length === 1 && errors[0].closest(".field") === input.closest(".field"),
        describedBy: input.getAttribute("aria-describedby"),
        focus: document.activeElement?.id,
        inView: rect.top >= -1 && rect.bottom <= window.innerHeight + 1,
        text: document.body.innerText.includes("INVALID_ARGUMENT"),
      };
    });
  });

  const hours = await step("clinician sets weekly hours; they are shown after a reload", async () => {
    for (const box of await clinician.locator("input[data-day]").all()) {
      await tick(clinician, `#${await box.getAttribute("id")}`);
    }
    await type(clinician, "#hours-start", "00:00");
    await type(clinician, "#hours-end", "24:00");
    await tabTo(clinician, "#hours-slot");
    await clinician.keyboard.type("5 minutes");
    await press(clinician, "#hours-save");
    await waitFor(clinician, "[data-testid=hours-state][data-state=saved]");
    const fieldErrors = await clinician.locator("[data-testid=field-error]").count();
    await clinician.reload();
    const shown = await waitFor(clinician, "[data-testid=hours-state][data-state=loaded]");
    return {
      fieldErrorsAfterFix: fieldErrors,
      afterReload: await shown.textContent(),
      start: await clinician.locator("#hours-start").inputValue(),
      end: await clinician.locator("#hours-end").inputValue(),
      slot: await clinician.locator("#hours-slot").inputValue(),
      days: await clinician.locator("input[data-day]:checked").count(),
    };
  });

  const patientFirstRun = await step("patient fills in their details first", async () => {
    await patient.goto(patientUrl);
    await waitFor(patient, "[data-testid=first-run]");
    const bookHidden = await patient.locator("#book").isHidden();
    await measureAll("first run", [["patient", patient, PATIENT_SIZE]]);
    await type(patient, "#profile-name", "Pat Example");
    await tabTo(patient, "#profile-birth-date");
    await patient.keyboard.type("01021980");
    await type(patient, "#profile-email", "pat@example.org");
    await type(patient, "#profile-phone", "+1 555 0100");
    await press(patient, "#profile-create");
    await waitFor(patient, "[data-testid=profile-ready]");
    await patient.waitForFunction(() => document.activeElement?.id === "consent-title");
    await waitFor(patient, "[data-testid=consent-state]");
    return { bookHidden, focus: await focusInfo(patient) };
  });

  const error = await step("an unknown clinician: plain words next to the button, in view", async () => {
    await type(patient, "#book-clinician", "c-nobody");
    await press(patient, "#book-find");
    const box = patient.locator(".action-error").first();
    await box.waitFor({ state: "visible", timeout: STEP_TIMEOUT_MS });
    const shown = await patient.evaluate(() => {
      const box = document.querySelector(".action-error");
      const rect = box.getBoundingClientRect();
      return {
        code: box.dataset.code,
        reason: box.dataset.reason,
        text: box.textContent,
        afterButton: box.previousElementSibling?.id === "book-find",
        focused: document.activeElement === box,
        inView: rect.top >= -1 && rect.bottom <= window.innerHeight + 1,
      };
    });
    return shown;
  });

  const unavailable = await step("the service does not answer: a retry that works", async () => {
    let refused = 0;
    const refuse = async (route) => {
      refused += 1;
      await route.fulfill({
        status: 503,
        headers: { "access-control-allow-origin": args.webUrl, "content-type": "text/plain" },
        body: "no healthy upstream",
      });
    };
    await patient.route("**/telemesh.session.v1.SessionService/ListSlots", refuse);
    await type(patient, "#book-clinician", args.clinicianId);
    await press(patient, "#book-find");
    const box = await patient.locator(".action-error[data-remedy=retry]").first();
    await box.waitFor({ state: "visible", timeout: STEP_TIMEOUT_MS });
    const text = await box.textContent();
    await patient.unroute("**/telemesh.session.v1.SessionService/ListSlots", refuse);
    await press(patient, ".action-error [data-testid=retry]");
    await waitFor(patient, "[data-testid=slot]");
    return { refused, text };
  });

  const visitId = await step("patient books the next slot (times in their own zone)", async () => {
    const slotText = await patient.locator("[data-testid=slot]").first().textContent();
    await press(patient, "[data-testid=slot]");
    await waitFor(patient, "[data-testid=booked]");
    const card = await waitFor(patient, "#visits li.visit[data-state=BOOKED]");
    return {
      id: await card.getAttribute("data-visit-id"),
      slotText,
      focus: await focusInfo(patient, "li.visit h3"),
    };
  });
  const vid = visitId.id;

  const later = await step("a later visit: check-in not offered yet, with when it opens", async () => {
    await press(patient, "#book-find");
    await waitFor(patient, "[data-testid=slot]");
    await press(patient, "#slots li:last-child [data-testid=slot]");
    await waitFor(patient, "[data-testid=booked]");
    await patient.waitForFunction(
      () => document.querySelectorAll("#visits li.visit[data-state=BOOKED]").length === 2,
    );
    const card = patient.locator("#visits li.visit[data-state=BOOKED]").nth(1);
    const result = {
      text: await card.textContent(),
      checkIn: await card.locator("[data-testid=check-in]").count(),
      order: await patient
        .locator("#visits li.visit")
        .evaluateAll((cards) => cards.map((c) => c.dataset.visitId)),
    };
    const id = await card.getAttribute("data-visit-id");
    await press(patient, `li.visit[data-visit-id="${id}"] [data-testid=cancel]`);
    await waitFor(patient, `li.visit[data-visit-id="${id}"][data-state=CANCELLED]`);
    return result;
  });

  await step("patient consents to video visits", async () => {
    await tick(patient, "#consent-agree");
    await press(patient, "#consent-grant");
    await waitFor(patient, "[data-testid=consent-state][data-state=active]");
  });

  const preCall = await step("patient tests the camera", async () => {
    await press(patient, "#precheck-start");
    const result = await waitFor(
      patient,
      "[data-testid=precheck-result][data-state=succeeded], [data-testid=precheck-result][data-state=failed]",
    );
    return { state: await result.getAttribute("data-state"), text: await result.textContent() };
  });

  await step("patient checks in from home", async () => {
    const card = `li.visit[data-visit-id="${vid}"]`;
    // The visit names the clinician as they chose to be seen (public_name), not by id.
    const title = (await patient.locator(`${card} h3`).textContent()) ?? "";
    if (!title.includes("with Dr. Ada Quill")) throw new Error(`the visit reads "${title}"`);
    await tabTo(patient, `${card} [data-testid=check-in-location]`);
    await press(patient, `${card} [data-testid=check-in]`);
    await waitFor(patient, `${card} [data-testid=join]`);
  });

  const waiting = await step("patient joins the waiting room; the call panel gets the focus", async () => {
    await press(patient, `li.visit[data-visit-id="${vid}"] [data-testid=join]`);
    await waitFor(patient, "[data-testid=call-status][data-state=waiting]");
    const focus = await focusInfo(patient, "#call-title");
    return { focus, status: await patient.locator("#call-status").textContent() };
  });

  const admission = await step("clinician opens the room and lets the patient in", async () => {
    const waitingCard = `#waiting-list li[data-visit-id="${vid}"]`;
    const name = await (await waitFor(clinician, `${waitingCard} h3`)).textContent();
    await press(clinician, `${waitingCard} [data-testid=open-room]`);
    const focus = await focusInfo(clinician, "#room-title");
    await waitFor(clinician, "#admit[data-state=ready]");
    const before = {
      completeDisabled: await clinician.locator("#complete").isDisabled(),
      state: await clinician.locator("#admit-state").textContent(),
    };
    await measureAll("waiting room", both);
    await press(clinician, "#admit");
    await waitFor(clinician, "#admit-state[data-state=admitted]");
    return { name, focus, before };
  });

  const call = await step("the call connects with video both ways", async () => {
    await waitFor(patient, "[data-testid=call-status][data-state=connected]");
    await waitFor(clinician, "[data-testid=call-status][data-state=connected]");
    const frames = { patient: await framesDecoded(patient), clinician: await framesDecoded(clinician) };
    await waitFor(patient, "[data-testid=call-quality][data-reports]");
    await waitFor(clinician, "[data-testid=call-quality][data-reports]");
    return {
      ...frames,
      quality: await patient.locator("#call-quality").textContent(),
      admitState: await clinician.locator("#admit-state").textContent(),
      completeEnabled: await clinician.locator("#complete").isEnabled(),
    };
  });

  const chat = await step("a chat message each way", async () => {
    await type(patient, "#chat-input", "Hello, can you hear me?");
    await patient.keyboard.press("Enter");
    await type(clinician, "#chat-input", "Yes, loud and clear.");
    await clinician.keyboard.press("Enter");
    const atPatient = await waitFor(patient, "#chat-log li[data-from=peer]");
    const atClinician = await waitFor(clinician, "#chat-log li[data-from=peer]");
    return { patient: await atPatient.textContent(), clinician: await atClinician.textContent() };
  });

  const layout = await step("the call laid out for a phone: remote large, self small", async () => {
    const sizes = {};
    for (const [name, page] of [
      ["patient", patient],
      ["clinician", clinician],
    ]) {
      sizes[name] = await page.evaluate(() => {
        const box = (id) => {
          const r = document.getElementById(id).getBoundingClientRect();
          return { x: r.x, y: r.y, w: r.width, h: r.height };
        };
        return {
          remote: box("remote-video"),
          local: box("local-video"),
          stage: document.querySelector(".stage").getBoundingClientRect().width,
          width: window.innerWidth,
        };
      });
    }
    await measureAll("in the call", both);
    return sizes;
  });

  const screenshots = await step("screenshots mid-call at phone width", async () => {
    const paths = {};
    for (const [name, page, back] of both) {
      await page.setViewportSize(desktop ? DESKTOP : PHONE_WIDE);
      // The patient's picture is the call; the clinician's starts at the room (who, and
      // whether they are in) with the call under it.
      const top = name === "patient" ? "call" : "room";
      await page.evaluate((id) => document.getElementById(id).scrollIntoView({ block: "start" }), top);
      paths[name] = join(args.artifacts, `web-${name}-in-call-${args.layout}.png`);
      await page.screenshot({ path: paths[name] });
      if (args.images) await page.screenshot({ path: join(args.images, `web-${name}-call.png`) });
      await page.screenshot({
        path: join(args.artifacts, `web-${name}-in-call-${args.layout}-full.png`),
        fullPage: true,
      });
      await page.setViewportSize(back);
    }
    return paths;
  });

  const resume = await step(
    "the patient's stream drops; an ICE restart sent meanwhile completes on resume",
    async () => {
      const ufrag = () => clinician.evaluate(() => window.telemesh.remoteIceUfrag());
      const before = await ufrag();
      await patient.evaluate(() => window.telemesh.dropStream(1500));
      await waitFor(patient, "#call-stream[data-state=reconnecting]");
      await clinician.evaluate(() => window.telemesh.restartIce());
      await waitFor(patient, "#call-stream[data-state=live]", STEP_TIMEOUT_MS, "attached");
      const deadline = Date.now() + STEP_TIMEOUT_MS;
      let after = before;
      while (after === before) {
        if (Date.now() > deadline) throw new Error(`the ICE restart did not complete (ufrag ${before})`);
        await clinician.waitForTimeout(100);
        after = await ufrag();
      }
      await waitFor(patient, "[data-testid=call-status][data-state=connected]");
      await waitFor(clinician, "[data-testid=call-status][data-state=connected]");
      return {
        before,
        after,
        patient: await framesDecoded(patient),
        clinician: await framesDecoded(clinician),
      };
    },
  );

  const completion = await step("clinician completes the visit with a diagnosis", async () => {
    await type(clinician, "#diagnosis", "J06.9");
    await press(clinician, "#complete");
    await waitFor(clinician, "[data-testid=complete-state][data-state=completed]");
    await waitFor(clinician, "[data-testid=call-status][data-state=ended]");
    return {
      text: await clinician.locator("#complete-state").textContent(),
      status: await clinician.locator("#call-status").textContent(),
      completeDisabled: await clinician.locator("#complete").isDisabled(),
      focus: await focusInfo(clinician, "#complete-state"),
    };
  });

  const charge = await step(
    "the patient's page follows: visit over, the charge shown, no reload",
    async () => {
      const row = await waitFor(patient, `[data-testid=charge][data-visit-id="${vid}"]`, 45000);
      await waitFor(patient, `li.visit[data-visit-id="${vid}"][data-state=COMPLETED]`);
      await patient
        .locator("#invoice")
        .screenshot({ path: join(args.artifacts, `web-patient-invoice-${args.layout}.png`) });
      const result = {
        state: await row.getAttribute("data-state"),
        text: await row.textContent(),
        total: await patient.locator("[data-testid=invoice-total]").textContent(),
        callStatus: await patient.locator("[data-testid=call-status]").getAttribute("data-state"),
        callText: await patient.locator("[data-testid=call-status]").textContent(),
        joinButtons: await patient.locator(`li.visit[data-visit-id="${vid}"] [data-testid=join]`).count(),
        visitText: await patient.locator(`li.visit[data-visit-id="${vid}"]`).textContent(),
        navigations: await patient.evaluate(() => performance.getEntriesByType("navigation").length),
      };
      await measureAll("after the visit", both);
      await waitFor(patient, "[data-testid=see-bill]");
      result.seeBill = await patient.locator("[data-testid=see-bill]").count();
      result.videoShown = await patient.locator("#remote-video").isVisible();
      if (args.images) {
        await patient.setViewportSize(PHONE_WIDE);
        await patient.evaluate(() => document.getElementById("call").scrollIntoView({ block: "start" }));
        await patient.screenshot({ path: join(args.images, "web-patient-after.png") });
        await patient.setViewportSize(PATIENT_SIZE);
      }
      return result;
    },
  );

  const expired = await step("an expired sign-in: said so, with a way to sign in again", async () => {
    const page = await context.newPage();
    watch(page, "expired");
    await page.setViewportSize(PHONE);
    await page.goto(`${args.webUrl}/patient.html#token=${args.expiredToken}`);
    const box = page.locator(".action-error[data-remedy=sign-in], #error:not([hidden])").first();
    await box.waitFor({ state: "visible", timeout: STEP_TIMEOUT_MS });
    const result = {
      text: await box.textContent(),
      header: await page.locator("#who").textContent(),
      headerState: await page.locator("#who").getAttribute("data-state"),
      signInAgain: await page.locator("[data-testid=sign-in-again]").count(),
    };
    await measure(page, "patient: expired sign-in", PHONE);
    await press(page, "[data-testid=sign-in-again]");
    await page.locator("#sign-in-token").waitFor({ timeout: STEP_TIMEOUT_MS });
    result.signInForm = true;
    await measure(page, "patient: sign-in form", PHONE);
    await page.close();
    return result;
  });

  const index = await step("the start page at phone width", async () => {
    const page = await context.newPage();
    await page.goto(`${args.webUrl}/`);
    await page.locator("a[href='patient.html']").waitFor();
    const check = await measure(page, "start page: first run", PHONE);
    await page.close();
    return check;
  });

  const untrusted = await step("a browser that does not trust the certificate: what to do", async () => {
    const other = await chromium.launchPersistentContext(`${args.userDataDir}-untrusted`, {
      ...CONTEXT,
      args: BASE_ARGS,
      viewport: PHONE,
    });
    try {
      await other.addInitScript({ path: AXE });
      const page = await other.newPage();
      watch(page, "untrusted");
      await page.goto(`${args.webUrl}/patient.html#token=${args.patientToken}`);
      const box = page.locator(".action-error[data-remedy=trust-certificate]").first();
      await box.waitFor({ state: "visible", timeout: STEP_TIMEOUT_MS });
      const result = {
        text: await box.textContent(),
        link: await page.locator("[data-testid=open-edge]").getAttribute("href"),
        retry: await page.locator(".action-error [data-testid=retry]").count(),
      };
      await measure(page, "patient: certificate not trusted", PHONE);
      return result;
    } finally {
      await other.close();
    }
  });

  emit({
    result: {
      visitId: vid,
      clinicianFirstRun,
      hoursError,
      hours,
      patientFirstRun,
      error,
      unavailable,
      booking: visitId,
      later,
      preCall,
      waiting,
      admission,
      call,
      chat,
      layout,
      screenshots,
      resume,
      completion,
      charge,
      expired,
      index,
      untrusted,
      checks,
      logs,
      ms: Date.now() - started,
    },
  });
} catch (error) {
  const shots = {};
  for (const [name, page] of [
    ["patient", patient],
    ["clinician", clinician],
  ]) {
    shots[name] = join(args.artifacts, `web-${name}-failure-${args.layout}.png`);
    await page.screenshot({ path: shots[name], fullPage: true }).catch(() => undefined);
  }
  emit({
    failed: { step: current, message: String(error?.message ?? error), logs, checks, screenshots: shots },
  });
  process.exitCode = 1;
} finally {
  await context.close();
}
