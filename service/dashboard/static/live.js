// The live stream (GET /stream, Server-Sent Events) and the "messages" view of the latest
// Kafka records, in place of Kafka UI on the local path. The browser's EventSource
// reconnects by itself and sends Last-Event-ID, so the server resumes without a gap; only
// when it gives up (the server answered with an error) is a new EventSource opened.

import { clock, el } from './format.js';

const KEEP = 200; // records kept in the view
const SHOWN = 50; // rows drawn
const RATE_WINDOW_MS = 5000;
const REOPEN_MS = 3000;

export function connectStream({ onReading, onAlert, onState, onReopen }) {
  let source = null;
  const open = () => {
    source = new EventSource('/stream');
    source.addEventListener('open', () => onState('live'));
    source.addEventListener('error', () => {
      if (source.readyState !== EventSource.CLOSED) {
        onState('reconnecting');
        return;
      }
      onState('down');
      setTimeout(() => {
        open();
        onReopen(); // a fresh stream has no Last-Event-ID: the tables are fetched again instead
      }, REOPEN_MS);
    });
    source.addEventListener('reading', (event) => onReading(JSON.parse(event.data)));
    source.addEventListener('alert', (event) => onAlert(JSON.parse(event.data)));
  };
  open();
  return () => source?.close();
}

export class MessagesView {
  constructor(root) {
    this.root = root;
    this.body = root.querySelector('tbody');
    this.records = []; // newest first
    this.arrivals = [];
    this.dirty = false;
    this.paused = false;
    this.filter = root.querySelector('#live-filter');
    this.filter.addEventListener('input', () => { this.dirty = true; this.render(); });
    this.pause = root.querySelector('#live-pause');
    this.pause.addEventListener('click', () => {
      this.paused = !this.paused;
      this.pause.textContent = this.paused ? 'Resume' : 'Pause';
      this.pause.setAttribute('aria-pressed', String(this.paused));
      this.dirty = true;
      this.render();
    });
  }

  add(message) {
    const now = Date.now();
    this.arrivals.push(now);
    if (this.paused) return;
    this.records.unshift({ ...message, received: new Date(now).toISOString() });
    if (this.records.length > KEEP) this.records.length = KEEP;
    this.dirty = true;
  }

  row(message) {
    return el('tr', { 'data-key': message.key ?? '', 'data-offset': String(message.offset) },
      el('td', { title: message.received }, clock(message.received)),
      el('td', {}, message.topic),
      el('td', { class: 'num' }, String(message.partition)),
      el('td', { class: 'num' }, String(message.offset)),
      el('td', { class: 'key' }, message.key ?? ''),
      el('td', { class: 'record', title: message.record }, el('code', {}, message.record)));
  }

  render() {
    const now = Date.now();
    while (this.arrivals.length && this.arrivals[0] < now - RATE_WINDOW_MS) this.arrivals.shift();
    const rate = this.arrivals.length / (RATE_WINDOW_MS / 1000);
    this.root.querySelector('#live-rate').textContent =
      `${rate.toFixed(1)} records/s${this.paused ? ' · paused' : ''}`;
    if (!this.dirty) return;
    this.dirty = false;
    const text = this.filter.value.trim();
    const shown = (text ? this.records.filter((m) => `${m.key} ${m.record}`.includes(text)) : this.records).slice(0, SHOWN);
    this.body.replaceChildren(...shown.map((m) => this.row(m)));
    this.root.classList.toggle('is-empty', shown.length === 0);
  }
}
