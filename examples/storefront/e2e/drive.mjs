// Drives the storefront page in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core; no browser download) for tests/api/browser.rs:
//   node e2e/drive.mjs <page url> [screenshot.png]
// Prints one JSON line per change of the page's state ({session, checkoutUrl, status, error})
// and per console message ({console}); exits 0 once the page shows COMPLETED or an error,
// 1 when neither happens within 90 s.
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  chromiumSandbox: false,
  // A closed network: nothing in the background may try to reach the internet.
  args: [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let code = 1;
try {
  // A fresh profile per run (playwright's launch uses a new temporary user-data-dir).
  const page = await browser.newPage();
  page.on("console", (m) => say({ console: m.text() }));
  await page.goto(url);
  const read = () =>
    page.evaluate(() => ({
      session: document.getElementById("session").textContent,
      checkoutUrl: document.getElementById("checkout-url").textContent,
      result: document.getElementById("result").textContent,
      status: document.getElementById("status").textContent,
      error: document.getElementById("error").textContent,
    }));
  const deadline = Date.now() + 90_000;
  let last = "";
  while (Date.now() < deadline) {
    const state = await read();
    const line = JSON.stringify(state);
    if (line !== last) say(state);
    last = line;
    if (state.status === "COMPLETED" || state.error) {
      code = 0;
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (screenshot) await page.screenshot({ path: screenshot });
} finally {
  await browser.close();
}
process.exit(code);
