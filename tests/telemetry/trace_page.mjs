// Opens `telemesh trace --html` pages in Debian's Chromium (playwright-core from
// web/node_modules), as an SRE would: reads which calls are open, clicks one call's row to
// expand it, and takes screenshots. tests/telemetry/test_trace_view.py runs it and reads
// the one JSON line it prints.
//
//   node trace_page.mjs '{"webDir": ".../web", "page": "file:///.../trace.html",
//     "click": "session CheckIn", "shots": {"before": ".../a.png", "after": ".../b.png"},
//     "terminal": "file:///.../terminal.html", "terminalShot": ".../t.png",
//     "userDataDir": "..."}'
import { createRequire } from "node:module";
import { join } from "node:path";

const args = JSON.parse(process.argv[2]);
const require = createRequire(join(args.webDir, "package.json"));
const { chromium } = require("playwright-core");

const context = await chromium.launchPersistentContext(args.userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
  viewport: { width: 1500, height: 900 },
});
const result = {};
try {
  const page = await context.newPage();
  await page.goto(args.page);
  const visibleMembers = (label) =>
    page.locator(`tbody.call[data-label="${label}"] tr.member`).evaluateAll(
      (rows) => rows.filter((row) => row.offsetParent !== null).length);
  result.rows = await page.locator("tbody.call").evaluateAll((bodies) =>
    bodies.map((b) => ({ label: b.dataset.label, open: b.classList.contains("open") })));
  result.firstTable = await page.locator("table").first().getAttribute("class");
  result.membersBefore = await visibleMembers(args.click);
  if (args.shots.before) await page.screenshot({ path: args.shots.before, fullPage: true });
  await page.locator(`tbody.call[data-label="${args.click}"] tr.head`).click();
  result.membersAfter = await visibleMembers(args.click);
  if (args.shots.after) await page.screenshot({ path: args.shots.after, fullPage: true });
  if (args.terminal) {
    const terminal = await context.newPage();
    await terminal.setViewportSize({ width: 1280, height: 600 });
    await terminal.goto(args.terminal);
    await terminal.locator("pre").screenshot({ path: args.terminalShot });
  }
  console.log(JSON.stringify({ result }));
} catch (error) {
  console.log(JSON.stringify({ failed: String(error), result }));
} finally {
  await context.close();
}
