// The sensors table's "Complete" column: what the completeness ledger says of a series
// (GET /sensors/{id}/completeness?type=, docs/contract.md "Completeness"). Fetched when the
// row first scrolls into view, and again at most every REFRESH_MS while the stream brings
// readings that carry a seq, so a big fleet costs requests only for the rows on screen.

import { getJSON } from './api.js';
import { DASH, num } from './format.js';

const REFRESH_MS = 10000;
const GAPS_SHOWN = 5;

// {text, title} for a ledger answer: `–` for a series that never sent a seq.
export function describe(ledger) {
  if (ledger.last_seq === null) return { text: DASH, title: 'no seq received: completeness unknown' };
  const expected = ledger.received + ledger.missing_count;
  const share = ledger.missing_count ? Math.min(99.9, (100 * ledger.received) / expected) : 100;
  const gaps = ledger.missing.slice(-GAPS_SHOWN).map(([a, b]) => (a === b ? `${a}` : `${a}–${b}`));
  const lines = [
    `seq ${ledger.first_seq}–${ledger.last_seq}: ${ledger.received} received, ${ledger.missing_count} missing`,
    gaps.length ? `newest gaps: ${gaps.join(', ')}` : null,
    ledger.duplicates ? `${ledger.duplicates} duplicates (a seq sent again under another timestamp)` : null,
  ];
  // NOTE: short (`85.7% −5`): the table is narrow; the title has the figures and the gaps.
  const text = ledger.missing_count ? `${num(share, 1)}% −${num(ledger.missing_count, 0)}` : '100%';
  return { text, title: lines.filter(Boolean).join('\n') };
}

export class CompletenessCell {
  constructor(td, sensorId, type) {
    this.td = td;
    this.sensorId = sensorId;
    this.type = type;
    this.loadedAt = null; // ms, when the last answer arrived
    this.pending = null;
  }

  // Fetch now (through `limit`, the table's request limiter); one request at a time.
  load(limit) {
    this.pending ??= limit(() => getJSON(
      `/sensors/${encodeURIComponent(this.sensorId)}/completeness`, { type: this.type }))
      .then((ledger) => this.show(ledger))
      .finally(() => { this.pending = null; });
    return this.pending;
  }

  // A reading with a seq arrived: refetch if the row was loaded and the answer is old.
  touch(limit) {
    if (this.loadedAt !== null && Date.now() - this.loadedAt >= REFRESH_MS) this.load(limit).catch(() => {});
  }

  show(ledger) {
    this.loadedAt = Date.now();
    const { text, title } = describe(ledger);
    this.td.textContent = text;
    this.td.title = title;
    this.td.dataset.missing = String(ledger.missing_count);
    this.td.dataset.received = String(ledger.received);
    this.td.classList.toggle('incomplete', ledger.missing_count > 0);
  }
}
