// OTA campaigns: state and progress per wave (devices:read: everyone); pause, resume, abort (ota:write: operators and up).
import { get, post } from '../api.js';
import { h, fmtTime, say, table } from '../dom.js';

export async function render(main, session) {
  main.append(h('h1', {}, 'OTA campaigns'));
  const canAct = session.can('ota:write');
  if (!canAct) {
    main.append(h('p', { class: 'muted' }, `Pausing, resuming and aborting campaigns need the ota:write scope, which your role (${session.user.role}) does not have.`));
  }
  const body = h('div');
  main.append(body);
  const act = async (c, action) => {
    try { await post(`/v1/ota/campaigns/${c.id}/${action}`); say(`Campaign ${c.name || c.id.slice(0, 8)}: ${action} sent.`); }
    catch (x) { say(x.message); }
    await load();
  };
  const waves = (c) => h('ol', { class: 'small' }, c.waves.map((w) => h('li', {},
    `${w.percent}%: ${w.devices} devices`, Object.keys(w.states).length ? ` (${Object.entries(w.states).map(([k, v]) => `${k} ${v}`).join(', ')})` : '')));
  const load = async () => {
    const list = await get('/v1/ota/campaigns');
    body.replaceChildren(list.data.length ? table(['Campaign', 'Target', 'State', 'Waves', 'Updated', 'Actions'], list.data.map((c) => {
      const live = ['running', 'soaking', 'pending', 'scheduled'].includes(c.state);
      return h('tr', { dataset: { campaign: c.id } }, h('td', {}, c.name || c.id.slice(0, 8)),
        h('td', {}, `${c.device_type} → ${c.target_version}`),
        h('td', { dataset: { state: c.state } }, c.state, c.reason ? h('div', { class: 'small muted' }, c.reason) : null),
        h('td', {}, waves(c)), h('td', {}, fmtTime(c.updated_at)),
        h('td', {}, h('button', { type: 'button', disabled: !canAct || !live, onclick: () => act(c, 'pause') }, 'Pause'), ' ',
          h('button', { type: 'button', class: 'secondary', disabled: !canAct || c.state !== 'paused', onclick: () => act(c, 'resume') }, 'Resume'), ' ',
          h('button', { type: 'button', class: 'secondary', disabled: !canAct || !(live || c.state === 'paused'), onclick: () => act(c, 'cancel') }, 'Abort')));
    })) : h('p', { class: 'muted' }, 'No campaigns.'));
  };
  await load();
  const timer = setInterval(() => load().catch(() => {}), 5000);
  return { stop: () => clearInterval(timer) };
}
