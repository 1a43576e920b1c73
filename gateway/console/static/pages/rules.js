// Rules: the tenant's rules with enable/disable, and an editor for a rule's document (new or a new version)
// with the existing dry-run against a device's recent telemetry. Saving an edit sends If-Match with the
// version it started from, so an edit made meanwhile by someone else is shown, not overwritten.
import { ApiError, api, get, post } from '../api.js';
import { h, field, fmtTime, json, say, table } from '../dom.js';

const EXAMPLE = {
  name: 'Hot boiler', description: '', scope: { device_types: ['boiler'] },
  condition: { type: 'threshold', metric: 'temperature', op: '>', value: 28 },
  actions: [{ type: 'alert', severity: 'MAJOR', message: 'temperature above 28' }],
};

const summary = (c) => (c.type === 'threshold' ? `${c.metric} ${c.op} ${c.value}`
  : c.type === 'all' || c.type === 'any' ? `${c.type}(${c.conditions.map(summary).join(', ')})`
    : c.type === 'for' ? `${summary(c.condition)} for ${c.for_s} s` : c.type);

export async function render(main, session) {
  const can = session.can('rules:write');
  main.append(h('h1', {}, 'Rules'),
    ...(can ? [] : [h('p', { class: 'muted' }, `Your role (${session.user.role}) can look and dry-run but not save rules.`)]));
  const body = h('div');
  const editorTitle = h('h2', { id: 'rule-editor-title' }, 'New rule');
  const editor = h('textarea', { id: 'rule-editor', rows: 14, 'aria-describedby': 'rule-help' }, json(EXAMPLE));
  const device = h('input', { id: 'dry-run-device', placeholder: 'device id', required: true });
  const hours = h('input', { id: 'dry-run-hours', type: 'number', min: 1, max: 720, value: 24 });
  const out = h('div', { id: 'rule-result', 'aria-live': 'polite' });
  let editing = null;  // the rule being edited: its id and the version the edit starts from

  const parse = () => {
    try { return JSON.parse(editor.value); } catch { out.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'The rule is not valid JSON.')); return null; }
  };
  const fail = (x) => out.replaceChildren(h('p', { class: 'error', role: 'alert' },
    x instanceof ApiError ? `${x.message}${x.body && x.body.error && x.body.error.details ? ` ${JSON.stringify(x.body.error.details)}` : ''}` : String(x)));
  const edit = (r) => {
    editing = r ? { id: r.rule_id, version: r.version } : null;
    editorTitle.textContent = r ? `Edit rule ${r.document.name} (version ${r.version})` : 'New rule';
    editor.value = json(r ? r.document : EXAMPLE);
    out.replaceChildren();
    editor.focus();
  };
  const dryRun = async () => {
    const doc = parse();
    if (!doc) return;
    try {
      const r = await post('/v1/rules/dry-run', { rule: doc, device_id: device.value, hours: Number(hours.value) });
      out.replaceChildren(h('div', { class: 'card', id: 'dry-run-result' },
        h('p', {}, h('strong', {}, 'Dry run: '), `${r.device_id} is ${r.in_scope ? 'in' : 'NOT in'} scope; `,
          `${r.readings} readings, `, h('span', { id: 'dry-run-transitions' }, `${r.transitions.length} transitions`), '.'),
        r.transitions.length ? table(['When', 'Event', 'Values'], r.transitions.slice(-20).map((t) =>
          h('tr', {}, h('td', {}, fmtTime(t.ts)), h('td', {}, t.event), h('td', { class: 'small' }, JSON.stringify(t.values))))) : null));
    } catch (x) { fail(x); }
  };
  const save = async () => {
    const doc = parse();
    if (!doc) return;
    try {
      const r = editing
        ? await api('PUT', `/v1/rules/${editing.id}`, { body: doc, headers: { 'If-Match': String(editing.version) } })
        : await post('/v1/rules', doc);
      say(`Rule ${r.document.name} saved: version ${r.version}.`);
      edit(r);
      out.replaceChildren(h('p', {}, `Saved as version ${r.version}.`));
      await load();
    } catch (x) {
      if (x instanceof ApiError && x.status === 412) {
        out.replaceChildren(h('div', { class: 'conflict', role: 'alert' }, h('p', {}, h('strong', {}, 'Version conflict. '),
          `The rule changed since you opened version ${editing.version}; your edit is kept here. Reload it to see theirs.`)));
      } else fail(x);
    }
  };
  const load = async () => {
    const list = await get('/v1/rules');
    body.replaceChildren(list.data.length ? table(['Rule', 'Condition', 'Actions', 'Version', 'Enabled', 'Updated', ''], list.data.map((r) =>
      h('tr', { dataset: { rule: r.rule_id } }, h('td', {}, r.document.name), h('td', { class: 'small' }, summary(r.document.condition)),
        h('td', { class: 'small' }, r.document.actions.map((a) => a.type).join(', ')), h('td', {}, r.version),
        h('td', { dataset: { enabled: String(r.enabled) } }, r.enabled ? 'yes' : 'no'), h('td', {}, fmtTime(r.updated_at)),
        h('td', {}, h('button', { type: 'button', class: 'secondary', 'aria-label': `Edit rule ${r.document.name}`, onclick: () => edit(r) }, 'Edit'), ' ',
          h('button', { type: 'button', class: 'secondary', disabled: !can, 'aria-label': `${r.enabled ? 'Disable' : 'Enable'} rule ${r.document.name}`,
            onclick: async () => { try { await post(`/v1/rules/${r.rule_id}/${r.enabled ? 'disable' : 'enable'}`); } catch (x) { say(x.message); } await load(); } },
          r.enabled ? 'Disable' : 'Enable'))))) : h('p', { class: 'muted' }, 'No rules yet.'));
  };
  main.append(body, h('section', { class: 'card', 'aria-labelledby': 'rule-editor-title' }, editorTitle,
    h('label', { for: 'rule-editor' }, 'Rule document (JSON: name, scope, condition, actions)'), editor,
    h('p', { id: 'rule-help', class: 'muted small' }, 'Try it first: a dry run replays the device\'s recent telemetry through the condition without saving.'),
    h('div', { class: 'row' }, field('Dry-run device', device), field('Hours back', hours),
      h('button', { type: 'button', class: 'secondary', id: 'dry-run', onclick: dryRun }, 'Dry run'),
      h('button', { type: 'button', id: 'save-rule', disabled: !can, onclick: save }, 'Save rule'),
      h('button', { type: 'button', class: 'secondary', onclick: () => edit(null) }, 'New rule')),
    out));
  await load();
  return {};
}
