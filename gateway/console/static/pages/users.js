// Users and roles (users:write: admins and owners; only owners make owners — the API decides).
import { ApiError, del, get, patch, post } from '../api.js';
import { h, field, fmtTime, say, table } from '../dom.js';

export async function render(main, session) {
  main.append(h('h1', {}, 'Users'));
  const email = h('input', { id: 'new-email', type: 'email', required: true });
  const role = h('select', { id: 'new-role' }, ['viewer', 'operator', 'admin', 'owner'].map((r) => h('option', { value: r }, r)));
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'row card' }, field('Email', email), field('Role', role), h('button', { type: 'submit' }, 'Add user'));
  const body = h('div');
  main.append(form, out, body);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const u = await post('/v1/users', { email: email.value, role: role.value });
      out.replaceChildren(h('p', {}, `Added ${u.email}. Their password, shown once: `, h('code', {}, u.password)));
      email.value = '';
      await load();
    } catch (x) { out.replaceChildren(h('p', { class: 'error', role: 'alert' }, x instanceof ApiError ? x.message : String(x))); }
  });
  const load = async () => {
    const list = await get('/v1/users');
    body.replaceChildren(table(['Email', 'Role', 'State', 'Last sign-in', 'Actions'], list.data.map((u) => {
      const pick = h('select', { 'aria-label': `Role of ${u.email}` }, ['viewer', 'operator', 'admin', 'owner'].map((r) => h('option', { value: r, selected: r === u.role }, r)));
      pick.addEventListener('change', async () => { try { await patch(`/v1/users/${u.id}`, { role: pick.value }); say(`${u.email} is now ${pick.value}.`); } catch (x) { say(x.message); } await load(); });
      return h('tr', {}, h('td', {}, u.email), h('td', {}, pick),
        h('td', {}, u.disabled ? 'disabled' : u.locked ? 'locked' : 'active'), h('td', {}, fmtTime(u.last_login_at)),
        h('td', {}, u.locked ? h('button', { type: 'button', class: 'secondary', onclick: async () => { await patch(`/v1/users/${u.id}`, { unlock: true }).catch((x) => say(x.message)); await load(); } }, 'Unlock') : null, ' ',
          u.disabled ? h('button', { type: 'button', class: 'secondary', onclick: async () => { await patch(`/v1/users/${u.id}`, { disabled: false }).catch((x) => say(x.message)); await load(); } }, 'Enable')
            : h('button', { type: 'button', class: 'secondary', disabled: u.id === session.user.user_id, onclick: async () => { await del(`/v1/users/${u.id}`).catch((x) => say(x.message)); await load(); } }, 'Disable')));
    })));
  };
  await load();
  return {};
}
