// Reads the explorer's home page of a live chorusd in the system's Chromium (see browser.mjs):
// what its Validators and Peers cards show, once they list `MEMBERS` Raft members and `PEERS`
// peers. Then a click on the first member's address opens that account's page. For the Raft
// explorer test in testnet/harness/tests/raft.rs:
//
//   node explorer-home.mjs EXPLORER_URL MEMBERS PEERS SCREENSHOT
//
// Prints one JSON line: the Validators card's summary line, each table's rows as the texts of
// their cells, the account page's heading and balance, and what the page requested beyond
// loopback or reported as an error. Exits non-zero with the reason if a step does not happen
// within its bound.
import { openPage, STEP_MS } from "./browser.mjs";

const [url, members, peers, screenshot] = process.argv.slice(2);

const { browser, page, failures, outside } = await openPage();
try {
  await page.goto(`${url}#/`);
  const rows = (selector) =>
    page.$$eval(`${selector} tbody tr`, (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  const count = (selector, n) =>
    page.waitForFunction(([selector, n]) => document.querySelectorAll(`${selector} tbody tr`).length === n, [selector, n], {
      timeout: STEP_MS,
    });
  await count("#members", Number(members));
  await count("#peers-table", Number(peers));
  const summary = await page.textContent("#validators p");
  const memberRows = await rows("#members");
  const peerRows = await rows("#peers-table");
  await page.screenshot({ path: screenshot, fullPage: true });

  await page.click("#members tbody tr:first-child a.account-link");
  await page.waitForSelector("#account-balance", { timeout: STEP_MS });
  const account = { hash: await page.evaluate(() => location.hash), balance: (await page.textContent("#account-balance")).replaceAll(",", "") };

  console.log(JSON.stringify({ summary, members: memberRows, peers: peerRows, account, outside: outside(), failures }));
} catch (error) {
  console.error(`explorer-home: ${error.message}\n${failures.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
process.exit();
