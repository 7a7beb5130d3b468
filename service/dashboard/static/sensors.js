// The sensors table: one row per sensor and type with its latest reading and a sparkline of
// the last 30. Filled from GET /sensors, kept current by the stream's readings; a row's
// sparkline history is fetched (GET /sensors/{id}/readings?type=&limit=30) when it scrolls
// into view, so a big fleet costs one request per visible row, not per sensor. The table
// shows one page of GET /sensors' fleet query at a time (fleet.js: search, sort, silent).

import { getJSON, limiter } from './api.js';
import { CompletenessCell } from './completeness.js';
import { FleetControls } from './fleet.js';
import { clock, el, flash, seconds, showError, withUnit } from './format.js';
import { sparkline } from './spark.js';

const SPARK_POINTS = 30;
const MAX_ROWS = 500; // beyond this the table says how many it leaves out

const keyOf = (sensorId, type) => `${sensorId}\u0000${type}`;

class Row {
  constructor(sensorId, type, onSelect) {
    this.sensorId = sensorId;
    this.type = type;
    this.latest = null;
    this.lastSeen = null; // ms: when its sensor's newest reading arrived (GET /sensors' last_seen)
    this.order = Infinity; // its place in the page the server sent
    this.points = []; // [seconds, value], oldest first, at most SPARK_POINTS
    this.historyLoaded = false;
    this.dirty = true;
    this.value = el('td', { class: 'num value' });
    this.updated = el('td', { class: 'updated' });
    this.sparkCell = el('td', { class: 'spark-cell' });
    this.badge = el('span', { class: 'silent-badge', hidden: true }, 'silent');
    this.sensor = el('td', { class: 'sensor' }, sensorId, this.badge);
    this.complete = new CompletenessCell(el('td', { class: 'num complete' }), sensorId, type);
    this.tr = el('tr', { 'data-sensor': sensorId, 'data-type': type, tabindex: '0', onclick: () => onSelect(this) },
      this.sensor, el('td', {}, type), this.value, this.updated, this.sparkCell, this.complete.td);
    this.tr.addEventListener('keydown', (event) => { if (event.key === 'Enter') onSelect(this); });
    this.plot = null;
  }

  // A reading (from /sensors' latest, the history or the stream); returns true if it is new.
  add(reading) {
    const t = seconds(reading.timestamp);
    if (!this.latest || t >= seconds(this.latest.timestamp)) this.latest = reading;
    const at = this.points.findIndex(([s]) => s >= t);
    if (at >= 0 && this.points[at][0] === t) return false;
    if (at < 0) this.points.push([t, reading.value]);
    else this.points.splice(at, 0, [t, reading.value]);
    if (this.points.length > SPARK_POINTS) this.points.shift();
    this.dirty = true;
    return true;
  }

  render() {
    if (!this.dirty) return;
    this.dirty = false;
    const latest = this.latest;
    this.value.textContent = latest ? withUnit(latest.value, latest.unit) : '';
    this.sensor.title = latest?.location ? `${this.sensorId} at ${latest.location}` : this.sensorId;
    this.updated.textContent = latest ? clock(latest.timestamp) : '';
    this.updated.title = latest?.timestamp ?? '';
    this.tr.dataset.latest = latest ? String(latest.value) : '';
    this.tr.dataset.points = String(this.points.length);
    if (this.plot) this.plot.setData([this.points.map((p) => p[0]), this.points.map((p) => p[1])]);
  }

  // The "silent" badge: quiet (no reading arrived) for longer than silentMs; it ages by itself.
  renderBadge(silentMs) {
    const silent = silentMs !== null && this.lastSeen !== null && Date.now() - this.lastSeen > silentMs;
    if (this.tr.dataset.silent === String(silent)) return;
    this.tr.dataset.silent = String(silent);
    this.badge.hidden = !silent;
    this.badge.title = silent ? `no reading since ${new Date(this.lastSeen).toLocaleString()}` : '';
  }
}

export class SensorTable {
  constructor(root, { onSelect, onRowsChanged }) {
    this.root = root;
    this.body = root.querySelector('tbody');
    this.rows = new Map();
    this.skipped = new Set(); // series not shown (over MAX_ROWS)
    this.truncated = false;
    this.onSelect = onSelect;
    this.onRowsChanged = onRowsChanged;
    this.fetchLimit = limiter(4);
    this.fleet = new FleetControls(root, () => this.load());
    this.loading = 0;
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) if (entry.isIntersecting) this.loadHistory(entry.target);
    });
    this.selected = null;
  }

  async load() {
    const asked = ++this.loading; // a newer query (typing) wins over an older answer
    let page;
    try {
      page = await getJSON('/sensors', this.fleet.params());
    } catch (error) {
      if (asked === this.loading) showError(this.root, error);
      return;
    }
    if (asked !== this.loading) return;
    showError(this.root, null);
    this.fleet.paged(page.next_cursor);
    this.truncated = Boolean(page.next_cursor);
    const keep = new Set();
    let order = 0;
    for (const sensor of page.items) {
      for (const type of sensor.types) {
        const latest = sensor.latest?.[type];
        const { row } = this.row(sensor.sensor_id, type);
        if (!row) continue;
        keep.add(keyOf(sensor.sensor_id, type));
        row.order = order++;
        row.lastSeen = sensor.last_seen ? Date.parse(sensor.last_seen) : null;
        if (latest) row.add({ ...latest, type });
      }
    }
    for (const [key, row] of this.rows) {
      if (!keep.has(key)) {
        this.observer.unobserve(row.tr);
        this.rows.delete(key);
      }
    }
    this.skipped.clear();
    this.reorder();
    this.render();
  }

  // The row of (sensorId, type), made if missing; {row, created} (row null over MAX_ROWS).
  row(sensorId, type) {
    const key = keyOf(sensorId, type);
    let row = this.rows.get(key);
    if (row) return { row, created: false };
    if (this.rows.size >= MAX_ROWS) {
      this.skipped.add(key);
      return { row: null, created: false };
    }
    row = new Row(sensorId, type, (r) => this.select(r));
    this.rows.set(key, row);
    return { row, created: true };
  }

  reorder() {
    const sorted = [...this.rows.values()].sort((a, b) => a.order - b.order ||
      a.sensorId.localeCompare(b.sensorId) || a.type.localeCompare(b.type));
    this.body.replaceChildren(...sorted.map((r) => r.tr));
    for (const r of sorted) {
      if (!r.plot) {
        r.plot = sparkline(r.sparkCell, { width: 120, height: 28, stroke: '#2563eb', points: 3 });
        r.dirty = true;
        this.observer.observe(r.tr);
      }
    }
    this.onRowsChanged(sorted.map((r) => [r.sensorId, r.type]));
  }

  // A reading from the stream: the row is updated at the next render.
  applyReading(reading) {
    const known = this.rows.get(keyOf(reading.sensor_id, reading.type));
    if (!known && !this.fleet.isDefault()) return; // another page or query: its next load shows it
    const { row, created } = this.row(reading.sensor_id, reading.type);
    if (!row) return;
    for (const r of this.rows.values()) if (r.sensorId === reading.sensor_id) r.lastSeen = Date.now();
    if (row.add(reading)) flash(row.tr);
    if (reading.seq !== null && reading.seq !== undefined) row.complete.touch(this.fetchLimit);
    if (created) this.reorder();
  }

  async loadHistory(tr) {
    this.observer.unobserve(tr);
    const row = this.rows.get(keyOf(tr.dataset.sensor, tr.dataset.type));
    if (!row || row.historyLoaded) return;
    row.historyLoaded = true;
    row.complete.load(this.fetchLimit).catch((error) => showError(this.root, error));
    try {
      const page = await this.fetchLimit(() => getJSON(
        `/sensors/${encodeURIComponent(row.sensorId)}/readings`, { type: row.type, limit: SPARK_POINTS }));
      for (const reading of page.items) row.add(reading);
      row.render();
    } catch (error) {
      showError(this.root, error);
    }
  }

  select(row) {
    this.selected?.tr.classList.remove('selected');
    this.selected = row;
    row.tr.classList.add('selected');
    this.onSelect(row.sensorId, row.type, row.latest);
  }

  selectKey(sensorId, type) {
    const row = this.rows.get(keyOf(sensorId, type));
    if (row) this.select(row);
  }

  latestOf(sensorId, type) {
    return this.rows.get(keyOf(sensorId, type))?.latest ?? null;
  }

  render() {
    const silentMs = this.fleet.silentMs();
    for (const row of this.rows.values()) {
      row.render();
      row.renderBadge(silentMs);
    }
    const sensors = new Set([...this.rows.values()].map((r) => r.sensorId)).size;
    const more = this.skipped.size || this.truncated ? ' (more not shown)' : '';
    this.root.querySelector('#sensor-count').textContent = `${sensors} sensors, ${this.rows.size} series${more}`;
    this.root.classList.toggle('is-empty', this.rows.size === 0);
  }
}
