// The /v1 API with the session cookie: the same routes, scopes and audit as any API client (adr/0161).
// Unsafe requests echo the session's CSRF value, read from its script-readable twin cookie.

export class ApiError extends Error {
  constructor(status, code, message, body) { super(message); this.status = status; this.code = code; this.body = body; }
}

function csrf() {
  const m = document.cookie.split('; ').find((c) => c.startsWith('fs_csrf='));
  return m ? decodeURIComponent(m.slice(8)) : '';
}

export let onUnauthenticated = () => {};
export function setOnUnauthenticated(fn) { onUnauthenticated = fn; }

export async function api(method, path, { body, headers = {}, quiet401 = false } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (!['GET', 'HEAD'].includes(method)) h['X-CSRF-Token'] = csrf();
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers: h, credentials: 'same-origin',
                                body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) {
    const err = (data && data.error) || {};
    if (r.status === 401 && !quiet401) onUnauthenticated();
    throw new ApiError(r.status, err.code || String(r.status), err.message || r.statusText, data);
  }
  return data;
}

export const get = (p) => api('GET', p);
export const post = (p, body, o = {}) => api('POST', p, { ...o, body });
export const patch = (p, body, o = {}) => api('PATCH', p, { ...o, body });
export const del = (p) => api('DELETE', p);

// Live events over the existing WebSocket API; the browser sends the session cookie with the handshake.
export function live(devices, onEvent, kinds = ['telemetry', 'device_event', 'alert']) {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/stream`);
  let closed = false;
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type === 'ready') ws.send(JSON.stringify({ type: 'subscribe', id: 'console', devices, kinds }));
    else onEvent(ev);
  };
  ws.onclose = () => { if (!closed) setTimeout(() => { if (!closed) Object.assign(handle, live(devices, onEvent, kinds)); }, 2000); };
  const handle = { close() { closed = true; ws.close(); }, ws };
  return handle;
}
