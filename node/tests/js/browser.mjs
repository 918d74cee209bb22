// The browser the explorer scripts drive: Debian's Chromium through playwright-core (no
// downloaded browser), one page that records its errors and every address it requests.
import { chromium } from "playwright-core";

// How long a script waits for each thing it expects the page to show.
export const STEP_MS = 30_000;

// Launches the browser and opens a page. `failures` fills with the page's errors and console
// errors; `outside()` lists what the page requested beyond loopback (the explorer fetches
// nothing but its node). Close `browser` when done.
export async function openPage() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const failures = [];
  const requested = [];
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("pageerror", (error) => failures.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") failures.push(`console error: ${message.text()}`);
  });
  page.on("request", (request) => requested.push(request.url()));
  const outside = () =>
    requested.filter((address) => !/^(http|ws):\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(address) && !address.startsWith("data:"));
  return { browser, page, failures, outside };
}
