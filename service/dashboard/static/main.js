// The dashboard: builds the panels, loads them from the query endpoints, keeps them current
// from the stream and redraws what changed four times a second (a busy stream costs one
// redraw per tick, not one per reading). Polling stops while the tab is hidden.

import { apiKey, setApiKey } from './api.js';
import { AlertsPanel } from './alerts.js';
import { SensorChart } from './chart.js';
import { HealthPanel } from './health.js';
import { MessagesView, connectStream } from './live.js';
import { SensorTable } from './sensors.js';

const RENDER_MS = 250;
const HEALTH_MS = 2000;
const ALERTS_MS = 10000;
const SENSORS_MS = 30000;

const $ = (selector) => document.querySelector(selector);

const keyInput = $('#api-key');
keyInput.value = apiKey();
keyInput.addEventListener('change', () => setApiKey(keyInput.value.trim()));

const health = new HealthPanel($('#health'));
const alerts = new AlertsPanel($('#alerts'), {
  askForKey: () => {
    $('#key-box').open = true;
    keyInput.focus();
  },
});
const messages = new MessagesView($('#live'));
let chart = null;
const sensors = new SensorTable($('#sensors'), {
  onSelect: (sensorId, type) => chart.select(sensorId, type),
  onRowsChanged: (series) => {
    chart.setSeries(series);
    if (!chart.selection && series.length) sensors.selectKey(...series[0]);
  },
});
chart = new SensorChart($('#chart-panel'), { latestOf: (sensorId, type) => sensors.latestOf(sensorId, type) });

const streamState = $('#stream-state');
connectStream({
  onState: (state) => {
    streamState.dataset.state = state;
    streamState.textContent = `stream: ${state}`;
  },
  onReading: (message) => {
    messages.add(message);
    sensors.applyReading(message.reading);
    chart.applyReading(message.reading);
  },
  onAlert: () => alerts.onStreamAlert(),
  onReopen: () => {
    sensors.load();
    alerts.load();
  },
});

function every(ms, job) {
  setInterval(() => {
    if (document.visibilityState === 'visible') job();
  }, ms);
}

health.refresh();
alerts.load();
sensors.load();
every(HEALTH_MS, () => health.refresh());
every(ALERTS_MS, () => alerts.load());
every(SENSORS_MS, () => sensors.load());
setInterval(() => {
  sensors.render();
  chart.render();
  messages.render();
}, RENDER_MS);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') {
    health.refresh();
    alerts.load();
  }
});
document.body.dataset.ready = 'true';
