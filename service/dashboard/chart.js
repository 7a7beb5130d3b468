// One sensor's readings and aggregates over a chosen range: the raw readings
// (GET /sensors/{id}/readings) as a line with points, the aggregates
// (GET /sensors/{id}/aggregates) as the bucket average with a min-max band. Readings from the
// stream are appended while the range ends now (or at the latest reading).

import uPlot from './vendor/uPlot.esm.js';
import { getAll } from './api.js';
import { seconds, showError } from './format.js';

const RAW_LIMIT = 5000; // newest raw readings drawn; the note says when there were more
const BUCKET_SECONDS = { '1m': 60, '5m': 300, '1h': 3600, '1d': 86400 };
const AGG_REFRESH_MS = 10000; // while readings stream in, aggregates are fetched again this often

// A bucket that keeps a range under ~400 points.
function autoBucket(rangeSeconds) {
  if (rangeSeconds <= 6 * 3600) return '1m';
  if (rangeSeconds <= 86400) return '5m';
  if (rangeSeconds <= 7 * 86400) return '1h';
  return '1d';
}

const toLocalInput = (date) => new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 19);

export class SensorChart {
  constructor(root, { latestOf }) {
    this.root = root;
    this.target = root.querySelector('#chart');
    this.note = root.querySelector('#chart-note');
    this.controls = {
      series: root.querySelector('#chart-series'),
      range: root.querySelector('#chart-range'),
      end: root.querySelector('#chart-end'),
      from: root.querySelector('#chart-from'),
      to: root.querySelector('#chart-to'),
      bucket: root.querySelector('#chart-bucket'),
    };
    this.latestOf = latestOf;
    this.selection = null; // [sensorId, type]
    this.raw = []; // [seconds, value], oldest first
    this.aggregates = [];
    this.window = null;
    this.bucket = '5m';
    this.dirty = false;
    this.aggFetchedAt = 0;
    this.generation = 0; // a newer refresh wins over an older one still in flight
    this.plot = null;
    root.querySelector('#chart-controls').addEventListener('submit', (event) => {
      event.preventDefault();
      this.refresh();
    });
    for (const name of ['range', 'end', 'bucket', 'from', 'to']) {
      this.controls[name].addEventListener('change', () => this.refresh());
    }
    this.controls.series.addEventListener('change', () => {
      const [sensorId, type] = JSON.parse(this.controls.series.value);
      this.select(sensorId, type);
    });
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(this.target);
    this.showCustom();
  }

  // The series to choose from, [[sensorId, type], ...].
  setSeries(series) {
    const select = this.controls.series;
    const current = select.value;
    select.replaceChildren(...series.map(([sensorId, type]) => {
      const option = document.createElement('option');
      option.value = JSON.stringify([sensorId, type]);
      option.textContent = `${sensorId} · ${type}`;
      return option;
    }));
    if (current) select.value = current;
  }

  select(sensorId, type) {
    this.selection = [sensorId, type];
    this.controls.series.value = JSON.stringify(this.selection);
    this.refresh();
  }

  showCustom() {
    const custom = this.controls.range.value === 'custom';
    for (const label of this.root.querySelectorAll('.custom')) label.hidden = !custom;
    this.controls.end.parentElement.hidden = custom;
    if (custom && !this.controls.from.value && this.window) {
      this.controls.from.value = toLocalInput(new Date(this.window.from * 1000));
      this.controls.to.value = toLocalInput(new Date(this.window.to * 1000));
    }
  }

  // [from, to) in seconds, and whether it slides with new readings.
  computeWindow() {
    const { range, end, from, to } = this.controls;
    if (range.value === 'custom') {
      const start = Date.parse(from.value) / 1000;
      const stop = Date.parse(to.value) / 1000;
      if (!(start < stop)) return null;
      return { from: start, to: stop, live: false };
    }
    const span = Number(range.value);
    let stop = Date.now() / 1000;
    if (end.value === 'latest' && this.selection) {
      const latest = this.latestOf(...this.selection);
      if (latest) stop = seconds(latest.timestamp) + 1;
    }
    return { from: stop - span, to: stop, live: true };
  }

  async refresh() {
    this.showCustom();
    if (!this.selection) return;
    const window = this.computeWindow();
    if (!window) {
      showError(this.root, 'choose a From before the To');
      return;
    }
    const generation = ++this.generation;
    const [sensorId, type] = this.selection;
    const chosen = this.controls.bucket.value;
    const bucket = chosen === 'auto' ? autoBucket(window.to - window.from) : chosen;
    const path = `/sensors/${encodeURIComponent(sensorId)}`;
    const params = { type, from: new Date(window.from * 1000).toISOString(), to: new Date(window.to * 1000).toISOString() };
    try {
      const [raw, aggregates] = await Promise.all([
        getAll(`${path}/readings`, { ...params, limit: RAW_LIMIT }, 1),
        getAll(`${path}/aggregates`, { ...params, bucket, limit: 1000 }, 20),
      ]);
      if (generation !== this.generation) return;
      showError(this.root, null);
      this.window = window;
      this.bucket = bucket;
      this.raw = raw.items.map((r) => [seconds(r.timestamp), r.value]).reverse();
      this.rawTruncated = raw.truncated;
      this.aggregates = aggregates.items;
      this.aggFetchedAt = Date.now();
      this.dirty = true;
      this.render();
    } catch (error) {
      if (generation === this.generation) showError(this.root, error);
    }
  }

  async refreshAggregates() {
    if (!this.window || !this.selection) return;
    this.aggFetchedAt = Date.now();
    const generation = this.generation;
    const [sensorId, type] = this.selection;
    const params = { type, bucket: this.bucket, limit: 1000,
      from: new Date(this.window.from * 1000).toISOString(), to: new Date(this.window.to * 1000).toISOString() };
    try {
      const page = await getAll(`/sensors/${encodeURIComponent(sensorId)}/aggregates`, params, 20);
      if (generation !== this.generation) return;
      this.aggregates = page.items;
      this.dirty = true;
    } catch (error) {
      showError(this.root, error);
    }
  }

  // A reading from the stream: appended when it is the chosen series and the range follows.
  applyReading(reading) {
    if (!this.selection || !this.window?.live) return;
    if (reading.sensor_id !== this.selection[0] || reading.type !== this.selection[1]) return;
    const t = seconds(reading.timestamp);
    if (this.controls.end.value === 'now') {
      const now = Date.now() / 1000;
      this.window = { ...this.window, from: this.window.from + (now - this.window.to), to: now };
    } else if (t + 1 > this.window.to) {
      this.window = { ...this.window, from: this.window.from + (t + 1 - this.window.to), to: t + 1 };
    }
    if (t < this.window.from) return;
    const at = this.raw.findIndex(([s]) => s >= t);
    if (at >= 0 && this.raw[at][0] === t) return;
    if (at < 0) this.raw.push([t, reading.value]);
    else this.raw.splice(at, 0, [t, reading.value]);
    while (this.raw.length && this.raw[0][0] < this.window.from) this.raw.shift();
    this.dirty = true;
    if (Date.now() - this.aggFetchedAt > AGG_REFRESH_MS) this.refreshAggregates();
  }

  size() {
    return { width: Math.max(this.target.clientWidth, 200), height: 300 };
  }

  data() {
    const half = BUCKET_SECONDS[this.bucket] / 2;
    const aggs = this.aggregates.filter((a) => a.count > 0);
    return uPlot.join([
      [this.raw.map((p) => p[0]), this.raw.map((p) => p[1])],
      [aggs.map((a) => seconds(a.start) + half), aggs.map((a) => a.avg), aggs.map((a) => a.min), aggs.map((a) => a.max)],
    ]);
  }

  makePlot(data) {
    const [sensorId, type] = this.selection;
    const unit = this.latestOf(sensorId, type)?.unit ?? '';
    this.target.replaceChildren();
    this.plot = new uPlot({
      ...this.size(),
      series: [
        {},
        { label: `${type} (raw)`, stroke: '#2563eb', width: 1.5, spanGaps: true, points: { show: true, size: 4 }, value: (u, v) => (v == null ? '–' : `${v} ${unit}`) },
        { label: `avg / ${this.bucket}`, stroke: '#ea580c', width: 2, spanGaps: true, points: { show: false } },
        { label: 'min', stroke: 'rgba(234, 88, 12, 0.35)', width: 1, dash: [4, 4], spanGaps: true, points: { show: false } },
        { label: 'max', stroke: 'rgba(234, 88, 12, 0.35)', width: 1, dash: [4, 4], spanGaps: true, points: { show: false } },
      ],
      bands: [{ series: [4, 3], fill: 'rgba(234, 88, 12, 0.10)' }],
      scales: { x: { time: true, range: () => [this.window.from, this.window.to] } },
      axes: [{}, { label: unit, size: 60 }],
      legend: { live: true },
    }, data, this.target);
  }

  render() {
    if (!this.dirty || !this.selection || !this.window) return;
    this.dirty = false;
    const data = this.data();
    const key = `${this.selection.join('\u0000')}\u0000${this.bucket}`;
    if (!this.plot || this.plotKey !== key) {
      this.plotKey = key;
      this.makePlot(data);
    } else {
      this.plot.setData(data);
    }
    const last = this.raw.at(-1);
    Object.assign(this.root.dataset, {
      series: this.selection.join(' · '),
      points: String(this.raw.length),
      buckets: String(this.aggregates.length),
      last: last ? String(last[1]) : '',
    });
    const notes = [];
    if (this.raw.length === 0 && this.aggregates.length === 0) {
      notes.push('No readings in this range; try a longer range or "ending at the latest reading".');
    }
    if (this.rawTruncated) notes.push(`Only the newest ${RAW_LIMIT} raw readings are drawn.`);
    notes.push(`${this.raw.length} readings, ${this.aggregates.length} buckets of ${this.bucket}.`);
    this.note.textContent = notes.join(' ');
  }
}
