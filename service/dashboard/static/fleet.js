// The sensors table's fleet controls (GET /sensors' fleet queries, docs/contract.md): the
// search box asks the server (debounced, any part of a sensor id), the sort (by id or by
// last seen, newest first), a "silent" duration (rows quiet longer get a badge; "only silent"
// asks the server for them) and the pager (next/prev through the API's cursors), so a fleet
// of any size is reached one page at a time and the page never holds more than PAGE sensors.

export const PAGE = 100; // sensors per page
const DEBOUNCE_MS = 250;
const UNIT_S = { s: 1, m: 60, h: 3600, d: 86400 };

// `5m` -> 300000 (ms); '' -> null.
export function durationMs(text) {
  const match = /^(\d+)([smhd])$/.exec(text || '');
  return match ? Number(match[1]) * UNIT_S[match[2]] * 1000 : null;
}

export class FleetControls {
  constructor(root, onChange) {
    this.search = root.querySelector('#sensor-filter');
    this.sort = root.querySelector('#sensor-sort');
    this.silent = root.querySelector('#sensor-silent');
    this.onlySilent = root.querySelector('#sensor-only-silent');
    this.prev = root.querySelector('#sensor-prev');
    this.next = root.querySelector('#sensor-next');
    this.pageLabel = root.querySelector('#sensor-page');
    this.onChange = onChange;
    this.cursors = [null]; // the cursor of each page visited; the last is the current page's
    this.nextCursor = null;
    let timer = null;
    this.search.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.restart(), DEBOUNCE_MS);
    });
    for (const control of [this.sort, this.silent, this.onlySilent]) {
      control.addEventListener('change', () => this.restart());
    }
    this.prev.addEventListener('click', () => {
      if (this.cursors.length > 1) this.cursors.pop();
      this.onChange();
    });
    this.next.addEventListener('click', () => {
      if (!this.nextCursor) return;
      this.cursors.push(this.nextCursor);
      this.onChange();
    });
  }

  restart() {
    this.cursors = [null];
    this.onChange();
  }

  // The query of the current page.
  params() {
    const silent = this.silent.value;
    return {
      q: this.search.value.trim(),
      sort: this.sort.value,
      silent_for: this.onlySilent.checked && silent ? silent : '',
      limit: PAGE,
      cursor: this.cursors[this.cursors.length - 1],
    };
  }

  // The unfiltered first page by id: the only view new sensors from the stream join.
  isDefault() {
    const p = this.params();
    return !p.q && p.sort === 'sensor_id' && !p.silent_for && !p.cursor;
  }

  silentMs() {
    return durationMs(this.silent.value);
  }

  // After a page arrived: its next cursor, and the pager's state.
  paged(nextCursor) {
    this.nextCursor = nextCursor;
    this.prev.disabled = this.cursors.length <= 1;
    this.next.disabled = !nextCursor;
    this.pageLabel.textContent = `page ${this.cursors.length}`;
  }
}
