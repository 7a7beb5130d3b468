// The API, as the panels use it: JSON GETs (with cursor pagination), POSTs with the API key,
// and errors that name the request, so a panel can say which call failed and why.

const KEY_STORAGE = 'sensor-pipeline.api-key';

export class ApiError extends Error {
  constructor(method, path, status, message) {
    const said = String(message).startsWith(String(status)) ? message : `${status} ${message}`;
    super(`${method} ${path.split('?')[0]}: ${status ? said : message}`);
    this.status = status;
  }
}

export function withQuery(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') query.set(name, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function request(method, path, headers = {}) {
  let response;
  try {
    response = await fetch(path, { method, headers: { Accept: 'application/json', ...headers } });
  } catch {
    throw new ApiError(method, path, 0, 'the API does not answer');
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null; // not JSON (a proxy's error page, say): the status says enough
  }
  if (!response.ok) throw new ApiError(method, path, response.status, body?.error ?? response.statusText);
  return body;
}

export function getJSON(path, params = {}) {
  return request('GET', withQuery(path, params));
}

// Follows next_cursor up to maxPages pages; `truncated` says whether more were left.
export async function getAll(path, params = {}, maxPages = 10) {
  const items = [];
  let cursor = null;
  let pages = 0;
  do {
    const page = await getJSON(path, { ...params, cursor });
    items.push(...page.items);
    cursor = page.next_cursor;
    pages += 1;
  } while (cursor && pages < maxPages);
  return { items, truncated: Boolean(cursor) };
}

export function postJSON(path) {
  const key = apiKey();
  return request('POST', path, key ? { 'X-API-Key': key } : {});
}

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) ?? '';
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

// Runs at most `limit` of the queued async jobs at a time (sparkline fetches on a big fleet).
export function limiter(limit) {
  let running = 0;
  const queue = [];
  const next = () => {
    if (running >= limit || queue.length === 0) return;
    const [job, resolve, reject] = queue.shift();
    running += 1;
    job().then(resolve, reject).finally(() => {
      running -= 1;
      next();
    });
  };
  return (job) => new Promise((resolve, reject) => {
    queue.push([job, resolve, reject]);
    next();
  });
}
