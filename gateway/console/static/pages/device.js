// One device: connection, latest values, a live chart (history from the telemetry API, live points from the
// WebSocket), the shadow with a version-respecting editor, and commands followed to their end.
import { ApiError, api, get, live, post } from '../api.js';
import { LineChart } from '../chart.js';
import { h, field, fmtTime, json, say, table } from '../dom.js';

const FINAL = new Set(['succeeded', 'failed', 'timed_out', 'expired']);

export async function render(main, session, deviceId) {
  const path = `/v1/devices/${encodeURIComponent(deviceId)}`;
  const d = await get(path);
  const connection = h('span', { id: 'device-connection', class: 'pill' });
  const setConnection = (online) => {
    connection.textContent = online ? 'online' : 'offline';
    connection.className = `pill ${online ? 'online' : 'offline'}`;
    connection.dataset.connection = online ? 'online' : 'offline';
  };
  setConnection(d.online);
  main.append(h('p', { class: 'small' }, h('a', { href: '#/fleet' }, '← Fleet')),
    h('h1', {}, `Device ${d.device_id} `, connection),
    h('p', { class: 'muted' }, `status ${d.status} · type ${d.device_type || '—'} · tags ${d.tags.join(', ') || '—'}`));

  const latestBody = h('div', { id: 'latest' });
  const metric = h('select', { id: 'metric' });
  const chartBox = h('div', { id: 'chart' });
  const shadowCard = h('section', { class: 'card', 'aria-labelledby': 'shadow-title' });
  const commandCard = h('section', { class: 'card', 'aria-labelledby': 'command-title' });
  main.append(h('div', { class: 'grid' },
    h('section', { class: 'card', 'aria-labelledby': 'latest-title' }, h('h2', { id: 'latest-title' }, 'Latest values'), latestBody),
    h('section', { class: 'card', 'aria-labelledby': 'chart-title' }, h('h2', { id: 'chart-title' }, 'Live chart (last 15 minutes)'),
      h('div', { class: 'row' }, field('Metric', metric)), chartBox)),
  h('div', { class: 'grid' }, shadowCard, commandCard));

  // -- latest values and the chart ----------------------------------------------------------------------
  const latest = {};
  const drawLatest = () => {
    const names = Object.keys(latest).sort();
    latestBody.replaceChildren(names.length ? table(['Metric', 'Value', 'Time'], names.map((m) =>
      h('tr', { dataset: { metric: m } }, h('td', {}, m), h('td', {}, String(latest[m].value)), h('td', {}, fmtTime(latest[m].ts)))))
      : h('p', { class: 'muted' }, 'No readings yet.'));
    const have = [...metric.options].map((o) => o.value);
    if (names.some((n) => !have.includes(n))) {
      const keep = metric.value;
      metric.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
      // first the metric heard from most recently: the one most likely to move
      metric.value = keep && names.includes(keep) ? keep : names.reduce((a, b) => (latest[b].ts > latest[a].ts ? b : a));
      if (metric.value !== keep) loadHistory();
    }
  };
  const lv = await get(`${path}/telemetry/latest`);
  for (const [m, v] of Object.entries(lv.values)) latest[m] = { value: v.value, ts: Date.parse(v.ts) };

  let chart = new LineChart(chartBox, { label: 'no metric' });
  async function loadHistory() {
    const m = metric.value;
    chart = new LineChart(chartBox, { label: m || 'no metric' });
    if (!m) return;
    const from = new Date(Date.now() - 15 * 60_000).toISOString();
    const page = await get(`${path}/telemetry?metric=${encodeURIComponent(m)}&from=${encodeURIComponent(from)}&limit=1000`);
    const pts = page.points.map((p) => [Date.parse(p.ts), p.value]).filter(([, v]) => typeof v === 'number');
    pts.sort((a, b) => a[0] - b[0]);
    if (metric.value === m) chart.set([...pts, ...chart.points.filter(([t]) => !pts.length || t > pts.at(-1)[0])]);
  }
  metric.addEventListener('change', () => loadHistory().catch((x) => say(x.message)));
  drawLatest();
  await loadHistory();

  const stream = live([deviceId], (ev) => {
    if (ev.device_id !== deviceId) return;
    if (ev.type === 'telemetry') {
      for (const [m, v] of Object.entries(ev.values)) latest[m] = { value: v, ts: ev.ts };
      drawLatest();
      if (metric.value in ev.values) chart.add(ev.ts, ev.values[metric.value]);
    } else if (ev.type === 'device_event' && ['ONLINE', 'OFFLINE'].includes(ev.event_type)) {
      setConnection(ev.event_type === 'ONLINE');
    }
  });
  const poll = setInterval(() => get(path).then((x) => setConnection(x.online)).catch(() => {}), 3000);

  // -- the shadow -----------------------------------------------------------------------------------------
  const canShadow = session.can('devices:write');
  let shadow = await get(`${path}/shadow`);
  let base = shadow.version;  // the version the editor's change is meant for
  const docs = h('div');
  const editor = h('textarea', { id: 'desired-editor', disabled: !canShadow, 'aria-describedby': 'shadow-help' },
    '{\n  \n}');
  const baseNote = h('span', { id: 'shadow-base' });
  const conflict = h('div', { id: 'shadow-conflict', role: 'alert' });
  const drawShadow = () => {
    docs.replaceChildren(h('p', {}, 'Version ', h('strong', { id: 'shadow-version' }, shadow.version),
      shadow.updated_at ? ` · updated ${fmtTime(shadow.updated_at)}` : ''),
    h('div', { class: 'grid' }, ...['desired', 'reported', 'delta'].map((k) =>
      h('div', {}, h('h3', { class: 'small' }, k), h('pre', { id: `shadow-${k}` }, json(shadow[k]))))));
    baseNote.textContent = `Your change applies to version ${base}.`;
  };
  async function save(expected) {
    let patchDoc;
    try { patchDoc = JSON.parse(editor.value); } catch { conflict.replaceChildren(h('p', { class: 'error' }, 'The patch is not valid JSON.')); return; }
    try {
      shadow = await api('PATCH', `${path}/shadow/desired`, { body: patchDoc, headers: { 'If-Match': String(expected) } });
      base = shadow.version;
      conflict.replaceChildren();
      say(`Desired state saved: version ${shadow.version}.`);
      drawShadow();
    } catch (x) {
      if (!(x instanceof ApiError) || x.status !== 412) { conflict.replaceChildren(h('p', { class: 'error' }, x.message)); return; }
      // somebody else changed the shadow: show theirs beside ours; nothing is lost, nothing applied blindly
      shadow = await get(`${path}/shadow`);
      drawShadow();
      conflict.replaceChildren(h('div', { class: 'conflict' },
        h('p', {}, h('strong', {}, 'Version conflict. '),
          `The shadow changed to version ${shadow.version} since you started from version ${expected}. `,
          'Your edit is kept in the editor; the current desired state is:'),
        h('pre', {}, json(shadow.desired)),
        h('div', { class: 'row' },
          h('button', { type: 'button', id: 'apply-anyway', onclick: () => { base = shadow.version; save(base); } },
            `Apply my edit to version ${shadow.version}`),
          h('button', { type: 'button', class: 'secondary', onclick: () => { base = shadow.version; conflict.replaceChildren(); drawShadow(); } },
            'Keep theirs'))));
    }
  }
  shadowCard.append(h('h2', { id: 'shadow-title' }, 'Shadow'), docs,
    h('label', { for: 'desired-editor' }, 'Change desired state (JSON merge patch; null deletes a key)'), editor,
    h('p', { id: 'shadow-help', class: 'muted small' }, baseNote,
      canShadow ? '' : ` Your role (${session.user.role}) cannot change shadows.`),
    conflict,
    h('div', { class: 'row' }, h('button', { type: 'button', id: 'save-desired', disabled: !canShadow, onclick: () => save(base) }, 'Save desired state'),
      h('button', { type: 'button', class: 'secondary', onclick: async () => { shadow = await get(`${path}/shadow`); base = shadow.version; drawShadow(); } }, 'Reload')));
  drawShadow();
  const shadowPoll = setInterval(() => get(`${path}/shadow`).then((s) => { shadow = s; drawShadow(); }).catch(() => {}), 5000);

  // -- commands ---------------------------------------------------------------------------------------------
  const canCommand = session.can('commands:write');
  const name = h('input', { id: 'command-name', value: 'reboot', required: true, disabled: !canCommand });
  const params = h('textarea', { id: 'command-params', disabled: !canCommand }, '{}');
  const state = h('div', { id: 'command-state', 'aria-live': 'polite' });
  const recent = h('div');
  let follow = null;
  const drawCommand = (c) => state.replaceChildren(h('p', {}, `Command ${c.name} (${c.command_id.slice(0, 8)}): `,
    h('strong', { id: 'command-status', dataset: { status: c.status } }, c.status),
    c.reason ? ` — ${c.reason}` : ''),
  h('ol', { class: 'timeline' }, c.history.map(([s, t]) => h('li', {}, `${s} at ${fmtTime(t)}`))),
  c.result !== null && c.result !== undefined ? h('pre', {}, json(c.result)) : null);
  const loadRecent = async () => {
    const list = await get(`${path}/commands?limit=10`).catch(() => ({ data: [] }));
    recent.replaceChildren(h('h3', { class: 'small' }, 'Recent commands'), list.data.length ? table(['Command', 'Status', 'Sent'],
      list.data.map((c) => h('tr', {}, h('td', {}, c.name), h('td', {}, c.status), h('td', {}, fmtTime(c.created_at))))) : h('p', { class: 'muted' }, 'None yet.'));
  };
  const form = h('form', {},
    h('div', { class: 'row' }, field('Command', name)),
    h('label', { for: 'command-params' }, 'Parameters (JSON object)'), params,
    h('div', { class: 'row' }, h('button', { type: 'submit', id: 'send-command', disabled: !canCommand }, 'Send command')),
    canCommand ? null : h('p', { class: 'muted small' }, `Your role (${session.user.role}) cannot send commands.`));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let p;
    try { p = JSON.parse(params.value || '{}'); } catch { state.replaceChildren(h('p', { class: 'error' }, 'Parameters are not valid JSON.')); return; }
    try {
      const c = await post(`${path}/commands`, { name: name.value, params: p });
      drawCommand(c);
      clearInterval(follow);
      follow = setInterval(async () => {
        const now = await get(`${path}/commands/${c.command_id}`).catch(() => null);
        if (!now) return;
        drawCommand(now);
        if (FINAL.has(now.status)) { clearInterval(follow); loadRecent(); say(`Command ${now.name}: ${now.status}.`); }
      }, 1000);
    } catch (x) { state.replaceChildren(h('p', { class: 'error', role: 'alert' }, x.message)); }
  });
  commandCard.append(h('h2', { id: 'command-title' }, 'Send a command'), form, state, recent);
  loadRecent();

  return { stop() { stream.close(); clearInterval(poll); clearInterval(shadowPoll); clearInterval(follow); } };
}
