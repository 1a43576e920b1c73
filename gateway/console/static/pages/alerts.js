// Alerts: newest first, filter by state; acknowledge and clear (rules:write: operators and up).
import { get, post } from '../api.js';
import { h, field, fmtTime, say, table } from '../dom.js';

export async function render(main, session) {
  const state = h('select', { id: 'alert-state' }, [['', 'any'], ['ACTIVE', 'active'], ['ACKNOWLEDGED', 'acknowledged'], ['CLEARED', 'cleared']]
    .map(([v, l]) => h('option', { value: v }, l)));
  const body = h('div');
  const can = session.can('rules:write');
  main.append(h('h1', {}, 'Alerts'), h('div', { class: 'row' }, field('State', state)),
    ...(can ? [] : [h('p', { class: 'muted' }, `Your role (${session.user.role}) can look but not acknowledge or clear.`)]), body);  // append() would print a null
  const act = async (a, verb) => {
    try { await post(`/v1/alerts/${encodeURIComponent(a.alert_id)}/${verb}`); say(`Alert ${verb === 'acknowledge' ? 'acknowledged' : 'cleared'}.`); }
    catch (x) { say(x.message); }
    await load();
  };
  const load = async () => {
    const list = await get(`/v1/alerts?limit=200${state.value ? `&state=${state.value}` : ''}`);
    body.replaceChildren(list.data.length ? table(['When', 'Device', 'Severity', 'Message', 'State', 'Actions'], list.data.map((a) =>
      h('tr', { dataset: { alert: a.alert_id } }, h('td', {}, fmtTime(a.time)),
        h('td', {}, h('a', { href: `#/device/${encodeURIComponent(a.device_id)}` }, a.device_id)),
        h('td', { class: ['CRITICAL', 'MAJOR'].includes(a.severity) ? 'bad' : 'warn' }, a.severity),
        h('td', {}, a.message), h('td', { dataset: { state: a.state } }, a.state),
        h('td', {}, h('button', { type: 'button', disabled: !can || a.state !== 'ACTIVE', 'aria-label': `Acknowledge alert on ${a.device_id}`,
          onclick: () => act(a, 'acknowledge') }, 'Acknowledge'), ' ',
        h('button', { type: 'button', class: 'secondary', disabled: !can || a.state === 'CLEARED', 'aria-label': `Clear alert on ${a.device_id}`,
          onclick: () => act(a, 'clear') }, 'Clear'))))) : h('p', { class: 'muted' }, 'No alerts.'));
  };
  state.addEventListener('input', load);
  await load();
  const timer = setInterval(() => load().catch(() => {}), 5000);
  return { stop: () => clearInterval(timer) };
}
