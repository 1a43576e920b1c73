// The console's shell: sign-in, session refresh, the hash router and role-aware navigation.
import { api, setOnUnauthenticated } from './api.js';
import { h, field, say } from './dom.js';
import * as fleet from './pages/fleet.js';
import * as device from './pages/device.js';
import * as alerts from './pages/alerts.js';
import * as rules from './pages/rules.js';
import * as ota from './pages/ota.js';
import * as audit from './pages/audit.js';
import * as users from './pages/users.js';

const main = document.getElementById('main');
const header = document.querySelector('header.top');
export const session = { user: null, scopes: new Set(), can: (s) => session.scopes.has(s) };
let current = null;  // the page's cleanup (timers, WebSockets)

const routes = { fleet, device, alerts, rules, ota, audit, users };

function showLogin(message) {
  cleanup();
  header.hidden = true;
  session.user = null;
  const params = new URLSearchParams(location.search);
  const tenant = h('input', { id: 'tenant', name: 'tenant', required: true, autocomplete: 'organization',
                               value: params.get('tenant') || localStorage.getItem('fs.tenant') || '' });
  const email = h('input', { id: 'email', name: 'email', type: 'email', required: true, autocomplete: 'username' });
  const password = h('input', { id: 'password', name: 'password', type: 'password', required: true,
                                 autocomplete: 'current-password' });
  const err = h('p', { class: 'error', role: 'alert' }, message || '');
  const form = h('form', { class: 'login card', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to fleetstream'),
    field('Tenant', tenant), field('Email', email), field('Password', password), err,
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Sign in'),
      h('button', { type: 'button', class: 'secondary', id: 'sso', onclick: () => {
        if (!tenant.value) { err.textContent = 'Enter your tenant first.'; tenant.focus(); return; }
        localStorage.setItem('fs.tenant', tenant.value);
        location.assign(`/v1/sso/${encodeURIComponent(tenant.value)}/login`);
      } }, 'Sign in with single sign-on')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      await api('POST', '/v1/session', { body: { tenant: tenant.value, email: email.value, password: password.value }, quiet401: true });
      localStorage.setItem('fs.tenant', tenant.value);
      await start();
    } catch (x) {
      err.textContent = x.status === 401 ? 'Wrong tenant, email or password — or the account is locked.' : x.message;
      password.value = '';
      password.focus();
    }
  });
  main.replaceChildren(form);
  (tenant.value ? email : tenant).focus();
}

function cleanup() { if (current && current.stop) current.stop(); current = null; }

async function route() {
  if (!session.user) return;
  const [, name = 'fleet', ...rest] = location.hash.split('/');
  const page = routes[name] || fleet;
  for (const a of header.querySelectorAll('nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  cleanup();
  main.replaceChildren();
  try {
    current = await page.render(main, session, ...rest.map(decodeURIComponent));
  } catch (x) {
    main.replaceChildren(h('p', { class: 'error', role: 'alert' }, `Could not load this page: ${x.message}`));
  }
  const h1 = main.querySelector('h1');
  if (h1) { h1.setAttribute('tabindex', '-1'); h1.focus(); }
}

async function start() {
  const me = await api('GET', '/v1/session', { quiet401: true });
  session.user = me; session.scopes = new Set(me.scopes);
  header.hidden = false;
  document.getElementById('who').textContent = `${me.email || me.user_id} · ${me.role}`;
  for (const a of header.querySelectorAll('nav a[data-scope]')) a.hidden = !session.can(a.dataset.scope);
  if (!location.hash) location.hash = '#/fleet';
  await route();
}

setOnUnauthenticated(() => showLogin('Your session ended. Please sign in again.'));
window.addEventListener('hashchange', route);
document.getElementById('signout').addEventListener('click', async () => {
  await api('DELETE', '/v1/session').catch(() => {});
  showLogin('Signed out.');
});
// the session token lives 15 minutes; a fresh one (with the role as it is now) every 10
setInterval(() => { if (session.user) api('POST', '/v1/session/refresh').catch(() => {}); }, 10 * 60_000);

const ssoError = new URLSearchParams(location.search).get('sso_error');
start().catch((x) => showLogin(ssoError ? `Single sign-on failed: ${ssoError}`
  : x.status === 401 ? '' : `The console could not start: ${x.message}`));
export { say };
