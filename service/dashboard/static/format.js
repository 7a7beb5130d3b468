// Formatting and a small DOM helper shared by the panels.

export const DASH = '–';

export function num(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  return Number(value).toLocaleString('en', { maximumFractionDigits: digits });
}

export function withUnit(value, unit) {
  const text = num(value);
  return unit && text !== DASH ? `${text} ${unit}` : text;
}

export function seconds(timestamp) {
  return Date.parse(timestamp) / 1000;
}

// Local wall-clock time; the date too when it is not today. The RFC 3339 text goes in a title.
export function clock(timestamp) {
  if (!timestamp) return DASH;
  const date = new Date(timestamp);
  const time = date.toLocaleTimeString('en-GB', { hour12: false });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString('en-GB', { day: 'numeric', month: 'short', year: 'numeric' })} ${time}`;
}

// el('td', {class: 'num', title: 't'}, 'text', childNode): an element with attributes and children.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// Restarts the row's highlight animation (a value just changed).
export function flash(node) {
  node.classList.remove('flash');
  void node.offsetWidth; // NOTE: forces a reflow so the animation starts again
  node.classList.add('flash');
}

export function showError(panel, error) {
  const slot = panel.querySelector('.panel-error');
  if (!slot) return;
  slot.textContent = error ? String(error.message ?? error) : '';
  slot.hidden = !error;
}
