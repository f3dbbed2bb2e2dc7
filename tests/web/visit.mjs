// Drives the patient and clinician pages through a whole video visit in Debian's
// Chromium (playwright-core from web/node_modules), as two people would: profiles,
// hours, booking, consent, pre-call check, check-in, waiting room, admission, the call,
// completion and the invoice. tests/web/test_browser_visit.py runs it and reads its
// output: one JSON line per step, then {"result": ...} or {"failed": ...}.
//
//   node visit.mjs '{"webDir": ".../web", "webUrl": "http://localhost:5173",
//     "patientToken": "...", "clinicianToken": "...", "clinicianId": "c-1",
//     "spki": "base64 sha-256 of the edge's public key", "userDataDir": "...",
//     "artifacts": "..."}'
import { createRequire } from "node:module";
import { join } from "node:path";

const args = JSON.parse(process.argv[2]);
const require = createRequire(join(args.webDir, "package.json"));
const { chromium } = require("playwright-core");

const STEP_TIMEOUT_MS = 30000;
const CHROMIUM_ARGS = [
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
  // Trust exactly the edge's key (its certificate comes from the local CA): honoured
  // because the context has its own --user-data-dir.
  `--ignore-certificate-errors-spki-list=${args.spki}`,
];

const started = Date.now();
const logs = [];
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
    if (message.type() === "error" || message.type() === "warning") {
      logs.push(`${name} console.${message.type()}: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => logs.push(`${name} page error: ${error.message}`));
}

/** Waits for `selector`, failing at once with the page's error banner if one shows. */
async function waitFor(page, selector, timeout = STEP_TIMEOUT_MS, state = "visible") {
  const banner = page.locator("#error:not([hidden])");
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

const context = await chromium.launchPersistentContext(args.userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: CHROMIUM_ARGS,
  viewport: { width: 1100, height: 1400 },
});
const clinician = await context.newPage();
const patient = await context.newPage();
watch(clinician, "clinician");
watch(patient, "patient");

try {
  const clinicianUrl = `${args.webUrl}/clinician.html#token=${args.clinicianToken}`;
  const patientUrl = `${args.webUrl}/patient.html#token=${args.patientToken}&clinician=${args.clinicianId}`;

  await step("clinician creates a profile", async () => {
    await clinician.goto(clinicianUrl);
    await waitFor(clinician, "#profile-create");
    await clinician.fill("#profile-name", "Dr. Ada Quill");
    await clinician.fill("#profile-time-zone", "UTC");
    await clinician.click("#profile-create");
    await waitFor(clinician, "[data-testid=profile-ready]");
  });

  await step("clinician sets weekly hours", async () => {
    for (const box of await clinician.locator("input[data-day]").all()) await box.check();
    await clinician.fill("#hours-start", "00:00");
    await clinician.fill("#hours-end", "24:00");
    await clinician.fill("#hours-slot", "5");
    await clinician.click("#hours-save");
    await waitFor(clinician, "[data-testid=hours-state][data-state=saved]");
  });

  await step("patient creates a profile", async () => {
    await patient.goto(patientUrl);
    await waitFor(patient, "#profile-create");
    await patient.fill("#profile-name", "Pat Example");
    await patient.fill("#profile-birth-date", "1980-01-02");
    await patient.fill("#profile-email", "pat@example.org");
    await patient.fill("#profile-phone", "+1 555 0100");
    await patient.click("#profile-create");
    await waitFor(patient, "[data-testid=profile-ready]");
  });

  const error = await step("an error shows its status and ErrorInfo reason", async () => {
    // The status details come back in grpc-status-details-bin: readable only because
    // the edge's CORS policy exposes that header to the page.
    await patient.fill("#book-clinician", "c-nobody");
    await patient.click("#book-find");
    const banner = patient.locator("#error:not([hidden])");
    await banner.waitFor({ state: "visible", timeout: STEP_TIMEOUT_MS });
    const shown = {
      code: await banner.getAttribute("data-code"),
      reason: await banner.getAttribute("data-reason"),
      text: await banner.textContent(),
    };
    await patient.fill("#book-clinician", args.clinicianId);
    return shown;
  });

  const visitId = await step("patient books the next slot", async () => {
    await patient.click("#book-find");
    await (await waitFor(patient, "[data-testid=slot]")).click();
    await waitFor(patient, "[data-testid=booked]");
    const row = await waitFor(patient, "#visits tr[data-state=BOOKED]");
    return row.getAttribute("data-visit-id");
  });

  await step("patient consents to video visits", async () => {
    await patient.check("#consent-agree");
    await patient.click("#consent-grant");
    await waitFor(patient, "[data-testid=consent-state][data-state=active]");
  });

  const preCall = await step("patient runs the pre-call check", async () => {
    await patient.click("#precheck-start");
    const result = await waitFor(
      patient,
      "[data-testid=precheck-result][data-state=succeeded], [data-testid=precheck-result][data-state=failed]",
    );
    return {
      state: await result.getAttribute("data-state"),
      text: await result.textContent(),
    };
  });

  await step("patient checks in from home", async () => {
    await patient.selectOption(`tr[data-visit-id="${visitId}"] [data-testid=check-in-location]`, {
      label: "I am at home",
    });
    await patient.click(`tr[data-visit-id="${visitId}"] [data-testid=check-in]`);
    await waitFor(patient, `tr[data-visit-id="${visitId}"] [data-testid=join]`);
  });

  await step("patient waits in the waiting room", async () => {
    await patient.click(`tr[data-visit-id="${visitId}"] [data-testid=join]`);
    await waitFor(patient, "[data-testid=call-status][data-state=waiting]");
  });

  await step("clinician opens the room and admits the patient", async () => {
    await (
      await waitFor(clinician, `#waiting-list li[data-visit-id="${visitId}"] [data-testid=open-room]`)
    ).click();
    await waitFor(clinician, "#admit[data-state=ready]");
    await clinician.click("#admit");
    await waitFor(clinician, "#admit[data-state=admitted]");
  });

  const call = await step("the call connects with video both ways", async () => {
    await waitFor(patient, "[data-testid=call-status][data-state=connected]");
    await waitFor(clinician, "[data-testid=call-status][data-state=connected]");
    const frames = {
      patient: await framesDecoded(patient),
      clinician: await framesDecoded(clinician),
    };
    // Each side has reported its call quality to the signaling service.
    await waitFor(patient, "[data-testid=call-quality][data-reports]");
    await waitFor(clinician, "[data-testid=call-quality][data-reports]");
    return frames;
  });

  const chat = await step("a data channel message arrives on each side", async () => {
    const atPatient = await waitFor(patient, "#chat-log li[data-from=peer]");
    const atClinician = await waitFor(clinician, "#chat-log li[data-from=peer]");
    return {
      patient: await atPatient.textContent(),
      clinician: await atClinician.textContent(),
    };
  });

  const screenshots = await step("screenshots mid-call", async () => {
    const paths = {
      patient: join(args.artifacts, "web-patient-in-call.png"),
      clinician: join(args.artifacts, "web-clinician-in-call.png"),
    };
    await patient.screenshot({ path: paths.patient, fullPage: true });
    await clinician.screenshot({ path: paths.clinician, fullPage: true });
    return paths;
  });

  const resume = await step(
    "the patient's stream drops; an ICE restart sent meanwhile completes on resume",
    async () => {
      const ufrag = () => clinician.evaluate(() => window.telemesh.remoteIceUfrag());
      const before = await ufrag();
      // Away for 1.5 s: the clinician's restart offer reaches the room while the patient
      // is not listening, and only the resumed stream's replay can deliver it.
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

  await step("clinician completes the visit with a diagnosis", async () => {
    await clinician.fill("#diagnosis", "J06.9");
    await clinician.click("#complete");
    await waitFor(clinician, "[data-testid=complete-state][data-state=completed]");
  });

  const charge = await step("the charge shows on the patient's invoice", async () => {
    const row = await waitFor(patient, `[data-testid=charge][data-visit-id="${visitId}"]`, 45000);
    await patient.locator("#invoice").screenshot({ path: join(args.artifacts, "web-patient-invoice.png") });
    return {
      state: await row.getAttribute("data-state"),
      text: await row.textContent(),
      total: await patient.locator("[data-testid=invoice-total]").textContent(),
      callStatus: await patient.locator("[data-testid=call-status]").getAttribute("data-state"),
    };
  });

  emit({
    result: {
      visitId,
      error,
      preCall,
      call,
      chat,
      screenshots,
      resume,
      charge,
      ms: Date.now() - started,
    },
  });
} catch (error) {
  const shots = {};
  for (const [name, page] of [
    ["patient", patient],
    ["clinician", clinician],
  ]) {
    shots[name] = join(args.artifacts, `web-${name}-failure.png`);
    await page.screenshot({ path: shots[name], fullPage: true }).catch(() => undefined);
  }
  emit({
    failed: {
      step: current,
      message: String(error?.message ?? error),
      logs,
      screenshots: shots,
    },
  });
  process.exitCode = 1;
} finally {
  await context.close();
}
