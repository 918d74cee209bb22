// Drives the explorer page of a live chorusd in the system's Chromium (see browser.mjs), for
// `the_explorer_page_shows_the_chain_live_in_a_browser` in tests/chorusd.rs:
//
//   node explorer.mjs EXPLORER_URL TX_HASH ADDRESS SCREENSHOT
//
// Prints one JSON line of what the page showed, then waits for a line on stdin (the test has
// stopped the node by then), and prints a second JSON line: the page's banner once it finds the
// node gone. Exits non-zero with the reason if a step does not happen within its bound.
import { createInterface } from "node:readline";
import { openPage, STEP_MS } from "./browser.mjs";

const [url, txHash, address, screenshot] = process.argv.slice(2);

const { browser, page, failures, outside } = await openPage();
try {
  const height = async () => Number(await page.textContent("#head-height"));
  await page.goto(url);
  await page.waitForFunction(() => /^\d+$/.test(document.querySelector("#head-height").textContent), null, { timeout: STEP_MS });
  const headBefore = await height();
  await page.waitForFunction((before) => Number(document.querySelector("#head-height").textContent) > before, headBefore, {
    timeout: STEP_MS,
  });
  const headAfter = await height();

  // The latest blocks list fills; a click on its newest block opens that block's page.
  await page.waitForSelector("#latest-blocks tbody tr", { timeout: STEP_MS });
  await page.waitForSelector("#validator-set tbody tr", { timeout: STEP_MS });
  const newest = await page.textContent("#latest-blocks tbody tr:first-child a.block-link");
  await page.click("#latest-blocks tbody tr:first-child a.block-link");
  await page.waitForSelector("#block-fields", { timeout: STEP_MS });
  const clickedHeight = await page.textContent('#block-fields tr[data-field="height"] td');

  // The transaction's page, found by its hash, links to its block, whose page lists it.
  await page.fill("#query", txHash);
  await page.press("#query", "Enter");
  await page.waitForSelector("#tx-fields", { timeout: STEP_MS });
  const txStatus = await page.textContent('#tx-fields tr[data-field="status"] td');
  await page.click('#tx-fields tr[data-field="block"] a.block-link');
  await page.waitForSelector("#block-transactions", { timeout: STEP_MS });
  const blockTxs = await page.$$eval("#block-transactions a.tx-link", (links) =>
    links.map((link) => link.getAttribute("href").replace("#/tx/", "")),
  );
  const txBlockHeight = await page.textContent('#block-fields tr[data-field="height"] td');

  // An address search shows the account's balance.
  await page.fill("#query", address);
  await page.click("#search button");
  await page.waitForSelector("#account-balance", { timeout: STEP_MS });
  const balance = (await page.textContent("#account-balance")).replaceAll(",", "");

  // A hash of nothing gets a message, not an empty page.
  await page.fill("#query", "00".repeat(32));
  await page.press("#query", "Enter");
  await page.waitForSelector("#message", { timeout: STEP_MS });
  const notFound = await page.textContent("#message");

  // The home page, for the record.
  await page.goto(`${url}#/`);
  await page.waitForSelector("#latest-blocks tbody tr", { timeout: STEP_MS });
  await page.waitForSelector("#validator-set tbody tr", { timeout: STEP_MS });
  await page.screenshot({ path: screenshot, fullPage: true });

  console.log(
    JSON.stringify({ headBefore, headAfter, newest, clickedHeight, txStatus, txBlockHeight, blockTxs, balance, notFound, outside: outside(), failures }),
  );

  // The test stops the node, then says so.
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === "stopped") break;
  }
  await page.waitForSelector("#connection:not([hidden])", { timeout: STEP_MS });
  const banner = await page.textContent("#connection");
  console.log(JSON.stringify({ banner }));
} catch (error) {
  console.error(`explorer: ${error.message}\n${failures.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
process.exit();
