// The audit log, newest first; users' entries name them by email.
import { get } from '../api.js';
import { h, fmtTime, table } from '../dom.js';

export async function render(main) {
  main.append(h('h1', {}, 'Audit log'));
  const [log, users] = await Promise.all([get('/v1/audit?limit=200'), get('/v1/users').catch(() => ({ data: [] }))]);
  const names = Object.fromEntries(users.data.map((u) => [`user:${u.id}`, `${u.email} (${u.role})`]));
  main.append(table(['When', 'Who', 'Action', 'Target', 'Details'], log.data.map((e) =>
    h('tr', {}, h('td', {}, fmtTime(e.at)), h('td', { title: e.actor }, names[e.actor] || e.actor), h('td', {}, e.action),
      h('td', {}, e.target), h('td', { class: 'small' }, Object.keys(e.details).length ? JSON.stringify(e.details) : '')))));
  return {};
}
