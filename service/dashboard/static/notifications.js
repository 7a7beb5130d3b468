// An alert's webhook notifications: the `notifications` of a GET /alerts item (docs/contract.md,
// "Webhook notifications"), shown as one cell: sent, pending (with its attempts so far) or
// failed, the last error as the tooltip; a dash when no webhook is configured.

import { DASH, el } from './format.js';

export function notificationCell(alert) {
  const n = alert.notifications;
  if (!n) return el('span', { class: 'notify', 'data-notify': 'none', title: 'no webhook configured' }, DASH);
  const tries = n.attempts === 1 ? '1 attempt' : `${n.attempts} attempts`;
  const label = n.state === 'pending' ? `pending · ${tries}` : n.state;
  const title = [`${n.deliveries} deliveries, ${n.pending} pending, ${tries}`, n.last_error].filter(Boolean).join('\n');
  return el('span', { class: `notify notify-${n.state}`, 'data-notify': n.state, title }, label);
}
