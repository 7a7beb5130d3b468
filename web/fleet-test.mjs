// The dashboard on a 100,000-sensor fleet (seeded by tests/dashboard/test_browser.py straight
// into the stack's store): typing part of a sensor id finds it through the server's search
// (debounced), the table holds one page (never the whole fleet), the pager moves through the
// cursors, "last seen first" sorts by arrival and the "silent" badge marks the quiet sensors.
//   DASHBOARD_URL=... FLEET_TARGET=site12-f054321 FLEET_TYPED=54321 node fleet-test.mjs
// Prints one JSON line (timings in ms, rows) on success; exits 1 with the reason otherwise.
import { chromium } from 'playwright-core';

const BASE = process.env.DASHBOARD_URL ?? 'http://127.0.0.1:5000';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TARGET = process.env.FLEET_TARGET;
const TYPED = process.env.FLEET_TYPED;
const NEWEST = process.env.FLEET_NEWEST; // the sensor that arrived last
const PAGE_MAX_ROWS = 2 * 100; // a page: 100 sensors, at most 2 series each here

const result = {};
const rows = () => document.querySelectorAll('#sensors tbody tr').length;

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const logs = [];
  page.on('pageerror', (error) => logs.push(`page error: ${error}`));
  page.on('console', (message) => { if (message.type() === 'error') logs.push(`console: ${message.text()}`); });
  result.logs = logs;
  const started = Date.now();
  await page.goto(`${BASE}/dashboard`, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => document.querySelectorAll('#sensors tbody tr').length > 0, null, { timeout: 20000 });
  result.first_page_ms = Date.now() - started;
  result.first_page_rows = await page.evaluate(rows);
  if (result.first_page_rows > PAGE_MAX_ROWS) throw new Error(`the first page holds ${result.first_page_rows} rows`);
  const firstSensor = await page.getAttribute('#sensors tbody tr', 'data-sensor');

  // the pager: next shows other sensors, prev the first page again
  await page.click('#sensor-next');
  await page.waitForFunction((s) => document.querySelector('#sensors tbody tr')?.dataset.sensor !== s, firstSensor, { timeout: 10000 });
  result.second_page_first = await page.getAttribute('#sensors tbody tr', 'data-sensor');
  await page.click('#sensor-prev');
  await page.waitForFunction((s) => document.querySelector('#sensors tbody tr')?.dataset.sensor === s, firstSensor, { timeout: 10000 });

  // the search: typed like a person, answered by the server
  const typed = Date.now();
  await page.fill('#sensor-filter', '');
  await page.type('#sensor-filter', TYPED, { delay: 40 });
  await page.waitForSelector(`#sensors tbody tr[data-sensor="${TARGET}"]`, { timeout: 10000 });
  result.search_ms = Date.now() - typed;
  result.search_rows = await page.evaluate(rows);

  // by last seen, newest first: the newest arrival heads the table; the silent badge
  await page.fill('#sensor-filter', '');
  await page.selectOption('#sensor-sort', 'last_seen');
  await page.waitForFunction((s) => document.querySelector('#sensors tbody tr')?.dataset.sensor === s, NEWEST, { timeout: 10000 });
  await page.check('#sensor-only-silent');
  await page.waitForFunction(() => {
    const all = [...document.querySelectorAll('#sensors tbody tr')];
    return all.length > 0 && all.every((tr) => tr.dataset.silent === 'true');
  }, null, { timeout: 10000 });
  result.silent_rows = await page.evaluate(rows);
  console.log(JSON.stringify(result));
} catch (error) {
  console.error(String(error?.stack ?? error));
  console.error(JSON.stringify(result));
  process.exitCode = 1;
} finally {
  await browser.close();
}
