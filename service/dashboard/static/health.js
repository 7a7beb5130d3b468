// Pipeline health: GET /pipeline (the API's and the pool's own metrics over its window), as
// cards with the last few minutes of each figure drawn behind it.

import { getJSON } from './api.js';
import { DASH, el, num, showError } from './format.js';
import { sparkline } from './spark.js';

const HISTORY = 90; // samples kept per card (3 min at one poll every 2 s)
const HISTORY_S = 180; // the x range drawn, so a young history starts at the right, not stretched

const ms = (v) => (v === null || v === undefined ? DASH : `${num(v, v < 10 ? 1 : 0)} ms`);
const rate = (v) => (v === null || v === undefined ? DASH : `${num(v, 1)} /s`);
const count = (v) => num(v, 0);

// [field of /pipeline, label, format, hint, status(value, body) -> '' | 'warn' | 'bad', spark]
const CARDS = [
  ['ingest_rate', 'Ingest rate', rate, 'readings/s accepted by the API', () => '', true],
  ['stored_rate', 'Stored rate', rate, 'readings/s written by the pool', () => '', true],
  ['e2e_p50_ms', 'End to end p50', ms, 'POST received → row stored', () => '', true],
  ['e2e_p99_ms', 'End to end p99', ms, 'POST received → row stored', (v) => (v > 1000 ? 'warn' : ''), true],
  ['lag', 'Consumer lag', count, 'records not yet consumed', (v) => (v > 10000 ? 'warn' : ''), true],
  ['workers_alive', 'Workers alive', count, 'pool worker processes', (v, b) => (b.pool_reachable && v === 0 ? 'bad' : ''), false],
  ['dlq_total', 'Dead letters', count, 'records sent to the DLQ', (v) => (v > 0 ? 'warn' : ''), false],
  ['pool_reachable', 'Consumer pool', (v) => (v ? 'reachable' : 'unreachable'), "the pool's /metrics", (v) => (v ? '' : 'bad'), false],
];

export class HealthPanel {
  constructor(root) {
    this.root = root;
    this.cards = new Map();
    const cards = root.querySelector('.cards');
    for (const [field, label, format, hint, status, hasSpark] of CARDS) {
      const value = el('div', { class: 'value' }, DASH);
      const card = el('div', { class: 'card', 'data-metric': field },
        el('div', { class: 'label' }, label), value, el('div', { class: 'hint' }, hint));
      cards.append(card);
      let plot = null;
      if (hasSpark) {
        const holder = el('div', { class: 'card-spark', 'aria-hidden': 'true' });
        card.prepend(holder);
        plot = sparkline(holder, {
          width: 180,
          height: 26,
          stroke: '#93b4f5',
          fill: 'rgba(37, 99, 235, 0.08)',
          x: (u, min, max) => [max - HISTORY_S, max],
          y: (u, min, max) => [0, Math.max(max * 1.1, 1e-9)],
        });
      }
      this.cards.set(field, { card, value, format, status, plot, history: [[], []] });
    }
  }

  async refresh() {
    let body;
    try {
      body = await getJSON('/pipeline');
    } catch (error) {
      showError(this.root, error);
      this.root.dataset.state = 'error';
      return;
    }
    showError(this.root, null);
    this.root.dataset.state = 'ok';
    this.root.dataset.window = String(body.window_s);
    this.root.querySelector('#health-window').textContent = `over the last ${num(body.window_s, 0)} s`;
    for (const [field, entry] of this.cards) {
      const value = body[field];
      entry.value.textContent = entry.format(value);
      entry.card.dataset.status = value === null || value === undefined ? 'none' : entry.status(value, body) || 'ok';
      if (entry.plot && typeof value === 'number') {
        const [xs, ys] = entry.history;
        xs.push(body.at);
        ys.push(value);
        if (xs.length > HISTORY) { xs.shift(); ys.shift(); }
        const width = entry.card.clientWidth;
        if (width && entry.plot.width !== width) entry.plot.setSize({ width, height: entry.plot.height });
        entry.plot.setData(entry.history);
      }
    }
  }
}
