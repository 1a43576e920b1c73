// Elements from data with textContent only (never innerHTML): device names, tags and messages are tenant
// input and must not become markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function say(message) {
  const s = document.getElementById('status');
  s.textContent = message;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { s.textContent = ''; }, 6000);
}

export const fmtTime = (v) => (v ? new Date(typeof v === 'number' ? v : Date.parse(v)).toLocaleString() : '—');
export const json = (v) => JSON.stringify(v, null, 2);

export function field(label, input) { return h('label', {}, label, input); }

export function table(headers, rows, caption) {
  return h('table', {}, caption ? h('caption', { class: 'muted small' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows));
}
