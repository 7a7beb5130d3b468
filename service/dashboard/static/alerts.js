// Alerts: GET /alerts?state= (active by default), fetched again when the stream reports an
// alert raised or cleared; POST /alerts/{id}/ack from the row's button (with the API key
// from the header's field when API_KEYS is set). Each row shows its rule in full: sensor
// pattern, condition, duration, hysteresis or no-data (rule.js).

import { getJSON, postJSON } from './api.js';
import { DASH, clock, el, num, showError } from './format.js';
import { notificationCell } from './notifications.js';
import { describeRule, ruleLabels, ruleParts } from './rule.js';

// The rule's cell: its text, then each part labelled; data-* attributes name the parts.
export function ruleCell(text) {
  const parts = ruleParts(text);
  const code = el('code', {}, text);
  if (!parts) return el('td', { class: 'rule' }, code);
  const labels = ruleLabels(parts).map(([label, value]) =>
    el('span', { class: 'rule-part' }, el('span', { class: 'rule-label' }, `${label} `), value));
  return el('td', {
    class: 'rule',
    title: describeRule(text),
    'data-kind': parts.silent ? 'no-data' : 'threshold',
    'data-pattern': parts.pattern ?? '',
    'data-duration': parts.duration ?? parts.silent ?? '',
    'data-clear': parts.clear ?? '',
  }, code, el('div', { class: 'rule-parts' }, ...labels));
}

export class AlertsPanel {
  constructor(root, { askForKey }) {
    this.root = root;
    this.body = root.querySelector('tbody');
    this.state = root.querySelector('#alert-state');
    this.state.addEventListener('change', () => this.load());
    this.askForKey = askForKey;
    this.pending = null;
  }

  async load() {
    let page;
    try {
      page = await getJSON('/alerts', { state: this.state.value, limit: 200 });
    } catch (error) {
      showError(this.root, error);
      return;
    }
    showError(this.root, null);
    this.body.replaceChildren(...page.items.map((alert) => this.row(alert)));
    const active = page.items.filter((a) => a.state === 'active').length;
    const more = page.next_cursor ? '+' : '';
    this.root.querySelector('#alert-count').textContent = active ? `${active}${more} active` : '';
    this.root.classList.toggle('is-empty', page.items.length === 0);
  }

  // An alert event from the stream: fetch the list again (once for a burst of events).
  onStreamAlert() {
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.load(), 100);
  }

  row(alert) {
    const acked = alert.acked_at
      ? el('span', { class: 'acked', title: alert.acked_at }, `✓ ${clock(alert.acked_at)}`)
      : el('button', { type: 'button', class: 'ack', onclick: (event) => this.ack(alert, event.target) }, 'Acknowledge');
    const cleared = alert.cleared_at
      ? el('span', { title: alert.cleared_at }, `${clock(alert.cleared_at)} (${num(alert.cleared_value)})`)
      : DASH;
    return el('tr', { 'data-alert-id': alert.id, 'data-state': alert.state, 'data-acked': alert.acked_at ? 'true' : 'false' },
      el('td', {}, el('span', { class: `state state-${alert.state}` }, alert.state)),
      el('td', { class: 'sensor' }, alert.sensor_id),
      el('td', {}, alert.type),
      ruleCell(alert.rule),
      el('td', { title: alert.raised_at }, clock(alert.raised_at)),
      el('td', { class: 'num' }, num(alert.raised_value)),
      el('td', { class: 'num', title: alert.last_at }, num(alert.last_value)),
      el('td', {}, cleared),
      el('td', {}, acked),
      el('td', { class: 'notified' }, notificationCell(alert)));
  }

  async ack(alert, button) {
    button.disabled = true;
    try {
      const updated = await postJSON(`/alerts/${encodeURIComponent(alert.id)}/ack`);
      showError(this.root, null);
      this.body.querySelector(`tr[data-alert-id="${CSS.escape(String(alert.id))}"]`)?.replaceWith(this.row(updated));
    } catch (error) {
      button.disabled = false;
      if (error.status === 401) {
        this.askForKey();
        showError(this.root, 'The API wants a key for this (API_KEYS is set): enter it under "API key" above.');
      } else {
        showError(this.root, error);
      }
    }
  }
}
