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

// 24-hour axis labels, with the date under the first tick and wherever the day changes.
function timeLabels(u, splits, axis, space, increment) {
  let day = null;
  return splits.map((t) => {
    const date = new Date(t * 1000);
    const dayText = date.toLocaleDateString('en-GB', { day: 'numeric', month: 'short' });
    if (increment >= 86400) return dayText;
    const time = date.toLocaleTimeString('en-GB', {
      hour: '2-digit', minute: '2-digit', second: increment < 60 ? '2-digit' : undefined, hour12: false,
    });
    const label = day === dayText ? time : `${time}\n${dayText}`;
    day = dayText;
    return label;
  });
}

const stepped = uPlot.paths.stepped({ align: 1 });

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

  // Raw readings at their times; each bucket as a step over [start, start + bucket), with a
  // gap (null) where buckets are missing. uPlot.join aligns the two: its alignment holes are
  // `undefined`, which the lines pass over, while the nulls stay gaps.
  data() {
    const width = BUCKET_SECONDS[this.bucket];
    const steps = [[], [], [], []];
    const push = (x, a) => {
      steps[0].push(x);
      steps[1].push(a && a.avg);
      steps[2].push(a && a.min);
      steps[3].push(a && a.max);
    };
    const aggs = this.aggregates.filter((a) => a.count > 0);
    aggs.forEach((a, i) => {
      const start = seconds(a.start);
      push(start, a);
      const next = aggs[i + 1];
      if (!next || seconds(next.start) > start + width) {
        push(start + width, a);
        if (next) push(start + width + 0.001, null);
      }
    });
    return uPlot.join([[this.raw.map((p) => p[0]), this.raw.map((p) => p[1])], steps]);
  }

  makePlot(data) {
    const [sensorId, type] = this.selection;
    const unit = this.latestOf(sensorId, type)?.unit ?? '';
    this.target.replaceChildren();
    this.plot = new uPlot({
      ...this.size(),
      series: [
        { value: (u, t) => (t == null ? '–' : new Date(t * 1000).toLocaleString('en-GB', { hour12: false })) },
        { label: `${type} (raw)`, stroke: '#2563eb', width: 1.5, points: { show: true, size: 4 }, value: (u, v) => (v == null ? '–' : `${v} ${unit}`) },
        { label: `avg per ${this.bucket}`, stroke: '#ea580c', width: 2, paths: stepped, points: { show: false } },
        { label: 'min', stroke: 'rgba(234, 88, 12, 0.45)', width: 1, dash: [4, 4], paths: stepped, points: { show: false } },
        { label: 'max', stroke: 'rgba(234, 88, 12, 0.45)', width: 1, dash: [4, 4], paths: stepped, points: { show: false } },
      ],
      bands: [{ series: [4, 3], fill: 'rgba(234, 88, 12, 0.10)' }],
      scales: { x: { time: true, range: () => [this.window.from, this.window.to] } },
      axes: [{ values: timeLabels, space: 60 }, { label: unit, size: 60 }],
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
