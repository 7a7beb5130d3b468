// The dashboard in a real browser (playwright-core driving the system's Chromium) against a
// running stack: readings POSTed to the API must show in the sensors table, the chart and the
// live messages within 2 s; a breaking reading raises an alert that the button acknowledges and
// a later reading clears. Screenshots of the page go to SCREENSHOTS_DIR.
// Run by tests/dashboard/test_browser.py, which starts the stack (ALERT_RULES=temperature>40).
//   DASHBOARD_URL=http://127.0.0.1:5000 SCREENSHOTS_DIR=/tmp/shots node dashboard-test.mjs
// Prints one JSON line of timings (ms) on success; exits 1 with the reason otherwise.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.DASHBOARD_URL ?? 'http://127.0.0.1:5000';
const SHOTS = process.env.SCREENSHOTS_DIR ?? 'screenshots';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const LIVE_MS = 2000; // the issue's bound: POSTed readings on the page within 2 s
const ALERT_MS = 5000;
const LOAD_MS = 15000;

const timings = {};
const problems = [];

async function api(method, path, body) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

async function until(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  for (;;) {
    try {
      const result = await check();
      if (result) return result;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (${last})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const iso = (ms) => new Date(ms).toISOString();

// Half an hour of one reading a minute for a small fleet, so the table, the sparklines and
// the chart have something to show when the page opens.
function history(now) {
  const fleet = [
    ['greenhouse-1', 'temperature', 'C', 'greenhouse', 27, 3],
    ['greenhouse-1', 'humidity', '%', 'greenhouse', 68, 6],
    ['lab-1', 'temperature', 'C', 'lab', 21.5, 1],
    ['lab-1', 'humidity', '%', 'lab', 41, 3],
    ['lab-2', 'temperature', 'C', 'lab', 23, 1.5],
    ['server-room', 'temperature', 'C', 'basement', 31, 2],
  ];
  const readings = [];
  for (let i = 30; i >= 1; i -= 1) {
    for (const [sensor, type, unit, location, base, swing] of fleet) {
      const phase = sensor.length + type.length;
      const value = Math.round((base + swing * Math.sin((i + phase) / 4)) * 100) / 100;
      const reading = { sensor_id: sensor, timestamp: iso(now - i * 60000), type, value, unit, location };
      // lab-2's device numbers its readings and lost seq 21-25: the Complete column shows it.
      if (sensor === 'lab-2') reading.seq = 31 - i + (i <= 10 ? 5 : 0);
      readings.push(reading);
    }
  }
  return readings;
}

// Waits in the page for `predicate(arg)` and returns the ms since `since`; fails past `bound`.
async function seen(page, name, since, bound, predicate, arg) {
  const left = Math.max(bound - (Date.now() - since), 1);
  try {
    await page.waitForFunction(predicate, arg, { timeout: left, polling: 25 });
  } catch (error) {
    throw new Error(`${name}: not on the page within ${bound} ms (${error.message.split('\n')[0]})`);
  }
  timings[name] = Date.now() - since;
  return timings[name];
}

// A few other series report five times a second while the page is open, as a fleet would,
// so the health cards and the live view have something to show; lab-1 temperature and lab-2
// (the series the checks follow) are left alone.
const traffic = {
  timer: null,
  pending: Promise.resolve(),
  start() {
    const series = [['greenhouse-1', 'temperature', 'C', 'greenhouse', 27], ['greenhouse-1', 'humidity', '%', 'greenhouse', 66],
      ['lab-1', 'humidity', '%', 'lab', 41], ['server-room', 'temperature', 'C', 'basement', 31]];
    let i = 0;
    this.timer = setInterval(() => {
      const [sensor, type, unit, location, base] = series[i % series.length];
      const value = Math.round((base + Math.sin(i / 7)) * 100) / 100;
      i += 1;
      const reading = { sensor_id: sensor, timestamp: iso(Date.now()), type, value, unit, location };
      this.pending = api('POST', '/sensor', reading).catch((error) => problems.push(`background POST: ${error}`));
    }, 200);
  },
  async stop() {
    clearInterval(this.timer);
    await this.pending;
  },
};

const rowOf = (sensor, type) => `#sensors tr[data-sensor="${sensor}"][data-type="${type}"]`;

async function run() {
  mkdirSync(SHOTS, { recursive: true });
  const now = Date.now();
  const seed = history(now);
  await api('POST', '/sensor/batch', seed);
  await until('the seeded readings to be stored', async () => {
    const page = await api('GET', '/sensors?limit=100');
    return page.items.length === 4 && page.items.every((s) => Object.keys(s.latest).length === s.types.length);
  }, LOAD_MS);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-dev-shm-usage'], // root in CI; small /dev/shm in containers
    timeout: 30000,
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    });
    page.on('response', (response) => {
      if (response.status() >= 400) problems.push(`${response.request().method()} ${response.url()}: ${response.status()}`);
    });

    const opened = Date.now();
    await page.goto(`${BASE}/dashboard`, { waitUntil: 'load', timeout: LOAD_MS });
    await page.waitForSelector('body[data-ready="true"]', { timeout: LOAD_MS });
    await page.waitForSelector('#stream-state[data-state="live"]', { timeout: LOAD_MS });
    timings.stream_live = Date.now() - opened;
    traffic.start();
    // Every seeded series in the table with its 30 readings in the sparkline.
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#sensors tbody tr')];
      return rows.length === 6 && rows.every((r) => r.dataset.points === '30');
    }, null, { timeout: LOAD_MS });
    timings.page_loaded = Date.now() - opened;
    // The Complete column: lab-2 skipped 5 of its seq numbers, the others send none.
    await page.waitForFunction(([sel, other]) => document.querySelector(`${sel} td.complete`)?.dataset.missing === '5'
      && document.querySelector(`${sel} td.complete`).textContent === '85.7% −5'
      && document.querySelector(`${other} td.complete`)?.textContent === '–', [rowOf('lab-2', 'temperature'), rowOf('lab-1', 'temperature')],
    { timeout: LOAD_MS });

    // The chart of lab-1 temperature: the 30 seeded readings and their per-minute buckets.
    await page.click(rowOf('lab-1', 'temperature'));
    await page.waitForFunction(() => {
      const chart = document.querySelector('#chart-panel').dataset;
      return chart.series === 'lab-1 · temperature' && chart.points === '30' && Number(chart.buckets) >= 30;
    }, null, { timeout: LOAD_MS });
    const plotted = await page.$$eval('#chart canvas', (canvases) => canvases.length);
    if (plotted < 1) throw new Error('the chart drew no canvas');

    // A new reading: in the table, the chart and the live view within 2 s of the POST.
    const posted = Date.now();
    const reading = { sensor_id: 'lab-1', timestamp: iso(posted), type: 'temperature', value: 23.45, unit: 'C', location: 'lab' };
    const accepted = await api('POST', '/sensor', reading);
    await Promise.all([
      seen(page, 'table', posted, LIVE_MS, ([sel, v]) => document.querySelector(sel)?.dataset.latest === v,
        [rowOf('lab-1', 'temperature'), '23.45']),
      seen(page, 'chart', posted, LIVE_MS, (v) => {
        const chart = document.querySelector('#chart-panel').dataset;
        return chart.last === v && chart.points === '31';
      }, '23.45'),
      seen(page, 'live', posted, LIVE_MS, ([partition, offset]) => [...document.querySelectorAll('#live tbody tr')].some(
        (r) => r.dataset.key === 'lab-1' && r.dataset.offset === offset
          && r.children[2].textContent === partition && r.textContent.includes('23.45')),
      [String(accepted.partition), String(accepted.offset)]),
    ]);

    // A breaking reading raises an alert; the button acknowledges it.
    const breaking = Date.now();
    await api('POST', '/sensor', { sensor_id: 'lab-2', timestamp: iso(breaking), type: 'temperature', value: 45.5, unit: 'C', location: 'lab' });
    await seen(page, 'alert_raised', breaking, ALERT_MS, () => Boolean(
      document.querySelector('#alerts tbody tr[data-state="active"][data-acked="false"] button.ack')), null);
    const alertId = await page.getAttribute('#alerts tbody tr[data-state="active"]', 'data-alert-id');
    // Its rule is shown in full: the pattern, the condition, the duration and the hysteresis.
    const rule = await page.$eval(`#alerts tbody tr[data-alert-id="${alertId}"] td.rule`,
      (td) => ({ ...td.dataset, text: td.textContent, title: td.title }));
    if (rule.pattern !== 'lab-*' || rule.clear !== '<30' || rule.kind !== 'threshold'
      || !rule.text.includes('sensors lab-*') || !rule.text.includes('when temperature > 40')
      || !rule.text.includes('for at once') || !rule.text.includes('clears < 30') || !rule.title.includes('cleared by a reading <30')) {
      throw new Error(`the alert's rule is not shown in full: ${JSON.stringify(rule)}`);
    }

    // The health cards show the background traffic: readings in, stored, e2e latency (over a
    // window of a few seconds, so the screenshot shows rates as a user would see them).
    await page.waitForFunction(() => Number(document.querySelector('#health').dataset.window) >= 5
      && ['ingest_rate', 'stored_rate', 'e2e_p50_ms', 'e2e_p99_ms'].every((metric) => {
      const card = document.querySelector(`#health .card[data-metric="${metric}"]`);
      return card.dataset.status === 'ok' && Number.parseFloat(card.querySelector('.value').textContent) > 0;
    }) && document.querySelector('#health .card[data-metric="workers_alive"] .value').textContent === '2',
    null, { timeout: LOAD_MS });
    await page.screenshot({ path: join(SHOTS, 'dashboard.png'), fullPage: true });

    const clicked = Date.now();
    await page.click(`#alerts tbody tr[data-alert-id="${alertId}"] button.ack`);
    await seen(page, 'alert_acked', clicked, ALERT_MS,
      (id) => document.querySelector(`#alerts tbody tr[data-alert-id="${id}"]`)?.dataset.acked === 'true', alertId);
    const stored = await api('GET', '/alerts?state=active&sensor_id=lab-2');
    const acked = stored.items.find((a) => String(a.id) === alertId);
    if (!acked?.acked_at) throw new Error(`GET /alerts does not show alert ${alertId} acknowledged: ${JSON.stringify(stored)}`);

    // A reading back under the threshold clears it: it leaves the active list.
    const calm = Date.now();
    await api('POST', '/sensor', { sensor_id: 'lab-2', timestamp: iso(calm), type: 'temperature', value: 22.1, unit: 'C', location: 'lab' });
    await seen(page, 'alert_cleared', calm, ALERT_MS,
      (id) => !document.querySelector(`#alerts tbody tr[data-alert-id="${id}"]`), alertId);
    await page.selectOption('#alert-state', 'all');
    await page.waitForFunction((id) => {
      const row = document.querySelector(`#alerts tbody tr[data-alert-id="${id}"]`);
      return row?.dataset.state === 'cleared' && row.dataset.acked === 'true';
    }, alertId, { timeout: ALERT_MS });
    if (process.env.EXPECT_WEBHOOKS) {
      // A webhook receiver got the raise, the acknowledgement and the clear: the row says sent.
      const since = Date.now();
      await until('the alert\'s notifications shown as sent', async () => {
        await page.selectOption('#alert-state', 'cleared');
        await page.selectOption('#alert-state', 'all');
        await page.waitForTimeout(300);
        return page.evaluate((id) => document.querySelector(
          `#alerts tbody tr[data-alert-id="${id}"] [data-notify]`)?.dataset.notify === 'sent', alertId);
      }, 20000);
      timings.alert_notified = Date.now() - since;
    }

    await page.locator('#alerts').screenshot({ path: join(SHOTS, 'alerts.png') });
    await page.locator('#live').screenshot({ path: join(SHOTS, 'live-messages.png') });
  } catch (error) {
    // What the page looked like when it failed, for the test's report.
    await browser.contexts()[0]?.pages()[0]?.screenshot({ path: join(SHOTS, 'failure.png'), fullPage: true }).catch(() => {});
    throw error;
  } finally {
    await traffic.stop();
    await browser.close();
  }
  if (problems.length) throw new Error(`the page reported problems:\n${problems.join('\n')}`);
}

try {
  await run();
  console.log(JSON.stringify(timings));
} catch (error) {
  console.error(String(error.stack ?? error));
  if (problems.length) console.error(problems.join('\n'));
  process.exit(1);
}
