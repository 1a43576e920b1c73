// Fleet: every device with status, type, tags and connection; search, filters, online/offline counts.
// Refreshed every 3 s (connection state changes arrive as device events too; polling keeps it simple and
// exact after a reconnect).
import { get } from '../api.js';
import { h, field, fmtTime, table } from '../dom.js';

export async function render(main) {
  const q = h('input', { id: 'search', type: 'search', placeholder: 'device id or tag' });
  const status = h('select', { id: 'filter-status' }, ['', 'provisioned', 'active', 'suspended', 'decommissioned']
    .map((s) => h('option', { value: s }, s || 'any')));
  const conn = h('select', { id: 'filter-connection' }, [['', 'any'], ['online', 'online'], ['offline', 'offline']]
    .map(([v, l]) => h('option', { value: v }, l)));
  const type = h('select', { id: 'filter-type' }, h('option', { value: '' }, 'any'));
  const counts = h('div', { class: 'counts', 'aria-live': 'polite' });
  const body = h('div');
  main.append(h('h1', {}, 'Fleet'), counts,
    h('div', { class: 'row', role: 'search' }, field('Search', q), field('Status', status), field('Type', type),
      field('Connection', conn)), body);

  let devices = [];
  const draw = () => {
    const text = q.value.trim().toLowerCase();
    const shown = devices.filter((d) => (!text || d.device_id.toLowerCase().includes(text) || d.tags.some((t) => t.toLowerCase().includes(text)))
      && (!status.value || d.status === status.value) && (!type.value || d.device_type === type.value)
      && (!conn.value || (conn.value === 'online') === d.online));
    const online = devices.filter((d) => d.online).length;
    counts.replaceChildren(h('div', { id: 'count-online' }, h('strong', {}, online), ' online'),
      h('div', { id: 'count-offline' }, h('strong', {}, devices.length - online), ' offline'),
      h('div', { class: 'muted' }, `${devices.length} devices, ${shown.length} shown`));
    body.replaceChildren(table(['Device', 'Connection', 'Status', 'Type', 'Tags', 'Last seen'], shown.map((d) =>
      h('tr', { dataset: { device: d.device_id } },
        h('td', {}, h('a', { href: `#/device/${encodeURIComponent(d.device_id)}` }, d.device_id)),
        h('td', {}, h('span', { class: `pill ${d.online ? 'online' : 'offline'}`, dataset: { connection: d.online ? 'online' : 'offline' } },
          d.online ? 'online' : 'offline')),
        h('td', {}, d.status), h('td', {}, d.device_type || '—'), h('td', {}, d.tags.join(', ')),
        h('td', {}, fmtTime(d.last_seen))))));
  };
  for (const el of [q, status, type, conn]) el.addEventListener('input', draw);

  const load = async () => {
    const all = [];
    let cursor = null;
    do {  // every page: the counts are the fleet's, not the first page's
      const page = await get(`/v1/devices?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      all.push(...page.data);
      cursor = page.next_cursor;
    } while (cursor && all.length < 20000);
    devices = all;
    const types = [...new Set(all.map((d) => d.device_type).filter(Boolean))].sort();
    if (type.options.length - 1 !== types.length) {
      const keep = type.value;
      type.replaceChildren(h('option', { value: '' }, 'any'), ...types.map((t) => h('option', { value: t }, t)));
      type.value = keep;
    }
    draw();
  };
  await load();
  const timer = setInterval(() => load().catch(() => {}), 3000);
  return { stop: () => clearInterval(timer) };
}
