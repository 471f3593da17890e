// "Verwaltung", for the ministry's admins: teachers (list, search, create one or a list
// from a spreadsheet, block, unblock, export, erase), tomorrow morning's forecast from the
// scheduled meetings, the audit log, and an authority's disclosure request. Every action on someone's data asks for the reason the audit log
// keeps.

import { get, post } from './api.js';
import { formatTime, language, t } from './i18n.js';
import { LIMITS } from './limits.js';
import { navigate } from './nav.js';
import { me } from './session.js';
import { download, errorText, field, h, toast } from './ui.js';
import { STATES, stateName } from './states.js';

const PROFILE = ['last_name', 'first_name', 'email', 'federal_state', 'organisation'];

export async function render(main) {
  const who = await me();
  if (!who) return navigate('/login', true);
  if (who.role !== 'admin') {
    main.append(h('h1', {}, t('admin_title')), h('p', {}, t('admin_only')));
    return;
  }
  const teachers = teacherSection(who);
  main.append(
    h('h1', {}, t('admin_title')),
    teachers.section,
    createSection(teachers.reload),
    importSection(teachers.reload),
    forecastSection(),
    auditSection(),
    disclosureSection(teachers),
  );
  await teachers.reload();
}

/** Asks for the reason an action needs (the audit log keeps it); null when cancelled. */
function askReason(question, yesLabel) {
  return new Promise((resolve) => {
    const reason = h('input', { id: 'reason', required: true, maxlength: LIMITS.reason });
    const form = h(
      'form',
      { method: 'dialog' },
      h('h2', {}, question),
      field(t('admin_reason'), reason),
      h('p', { class: 'muted' }, t('admin_reason_hint')),
      h(
        'div',
        { class: 'row' },
        h('button', { type: 'button', 'data-answer': 'no', onclick: () => done(null) }, t('cancel')),
        h('button', { type: 'submit', class: 'danger', 'data-answer': 'yes' }, yesLabel),
      ),
    );
    const dialog = h('dialog', { 'data-testid': 'reason-dialog', 'aria-label': question }, form);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (reason.value.trim()) done(reason.value.trim());
    });
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    dialog.addEventListener('cancel', () => done(null));
    document.body.append(dialog);
    dialog.showModal();
    reason.focus();
  });
}

function teacherSection(self) {
  const search = h('input', { id: 'teacher-search', type: 'search', 'aria-label': t('admin_search') });
  const body = h('tbody');
  const count = h('p', { class: 'muted', 'aria-live': 'polite', id: 'teacher-count' });
  let all = [];
  const show = () => {
    const q = search.value.trim().toLowerCase();
    const hits = all.filter((m) =>
      !q || [m.last_name, m.first_name, m.email, m.organisation, stateName(m.federal_state)].some((v) => v.toLowerCase().includes(q)),
    );
    body.replaceChildren(...hits.map((m) => row(m)));
    count.textContent = t('admin_count', hits.length, all.length);
  };
  const reload = async () => {
    try {
      // As a German list is read: "Ärger" beside "Arndt", not after "Zorn"; "Klasse 2" before "Klasse 10".
      const order = new Intl.Collator('de', { numeric: true, sensitivity: 'base' });
      all = (await get('/api/admin/moderators')).moderators.sort(
        (a, b) => order.compare(a.last_name, b.last_name) || order.compare(a.first_name, b.first_name),
      );
      show();
    } catch (err) {
      toast(errorText(err), 'error');
    }
  };
  const act = async (m, kind) => {
    const name = `${m.first_name} ${m.last_name}`;
    const reason = await askReason(t(`admin_${kind}_q`, name), t(`admin_${kind}`));
    if (!reason) return;
    try {
      const path = `/api/admin/moderators/${m.id}/${kind}`;
      if (kind === 'export') {
        const data = await post(path, { reason });
        download(`aula-konto-${m.email}.json`, JSON.stringify(data, null, 2), 'application/json');
      } else {
        await post(path, { reason });
        toast(t(`admin_${kind}_done`, name));
      }
      await reload();
    } catch (err) {
      toast(errorText(err), 'error');
    }
  };
  const row = (m) => {
    const button = (kind, cls) =>
      h('button', { type: 'button', class: cls, 'data-action': kind, onclick: () => act(m, kind) }, t(`admin_${kind}`));
    const own = m.id === self.id;
    return h(
      'tr',
      { 'data-email': m.email },
      h('td', { class: 'title' }, `${m.last_name}, ${m.first_name}`, m.role === 'admin' ? h('span', { class: 'badge' }, t('admin_role_admin')) : null),
      h('td', { 'data-label': t('email') }, m.email),
      h('td', { 'data-label': t('admin_col_school') }, m.organisation, h('br'), h('span', { class: 'muted' }, stateName(m.federal_state))),
      h(
        'td',
        { 'data-label': t('admin_col_status') },
        m.status === 'restricted' ? t('admin_status_restricted') : t('admin_status_active'),
        m.must_change_password ? h('br') : null,
        m.must_change_password ? h('span', { class: 'muted' }, t('admin_initial_password')) : null,
      ),
      h(
        'td',
        { class: 'actions' },
        button('export', 'secondary'),
        own ? null : m.status === 'restricted' ? button('unrestrict', 'secondary') : button('restrict', 'secondary'),
        own ? null : button('erase', 'danger'),
      ),
    );
  };
  search.addEventListener('input', show);
  const section = h(
    'section',
    { class: 'card', 'aria-labelledby': 'teachers-title' },
    h('h2', { id: 'teachers-title' }, t('admin_teachers')),
    field(t('admin_search'), search),
    count,
    h(
      'div',
      { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-labelledby': 'teachers-title' },
      h(
        'table',
        { id: 'teachers', class: 'stack' },
        h('thead', {}, h('tr', {}, ['admin_col_name', 'email', 'admin_col_school', 'admin_col_status', 'admin_col_actions'].map((k) => h('th', { scope: 'col' }, t(k))))),
        body,
      ),
    ),
  );
  return { section, reload, list: () => all };
}

function createSection(reload) {
  const inputs = {};
  for (const f of PROFILE) {
    inputs[f] =
      f === 'federal_state'
        ? h('select', { id: `new-${f}`, required: true }, STATES.map(([c, n]) => h('option', { value: c }, n)))
        : h('input', {
            id: `new-${f}`,
            required: true,
            type: f === 'email' ? 'email' : 'text',
            maxlength: f === 'organisation' ? LIMITS.organisation : f === 'email' ? null : LIMITS.person_name,
          });
  }
  const admin = h('input', { id: 'new-admin', type: 'checkbox' });
  const result = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'create-title' },
    h('h2', { id: 'create-title' }, t('admin_create')),
    h('div', { class: 'form-grid' }, PROFILE.map((f) => field(t(f), inputs[f]))),
    h('label', { class: 'check' }, admin, t('admin_make_admin')),
    h('button', { id: 'new-submit', type: 'submit' }, t('admin_create_submit')),
    result,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = Object.fromEntries(PROFILE.map((f) => [f, inputs[f].value.trim()]));
    try {
      const out = await post('/api/admin/moderators', { ...body, admin: admin.checked });
      result.replaceChildren(handOver([{ ...out.account, initial_password: out.initial_password }]));
      for (const f of PROFILE) if (f !== 'federal_state') inputs[f].value = '';
      await reload();
    } catch (err) {
      toast(errorText(err), 'error');
    }
  });
  return form;
}

/** The initial passwords, shown once, with the file to hand them over. */
function handOver(accounts) {
  const csv = ['Nachname;Vorname;E-Mail;Erstes Passwort']
    .concat(accounts.map((a) => [a.last_name, a.first_name, a.email, a.initial_password].map(csvField).join(';')))
    .join('\r\n');
  const save = h(
    'button',
    { type: 'button', id: 'credentials-download', onclick: () => download('aula-zugangsdaten.csv', '\ufeff' + csv + '\r\n', 'text/csv') },
    t('admin_credentials_download'),
  );
  return h(
    'div',
    { class: 'notice', id: 'credentials' },
    h('p', {}, t('admin_credentials_once', accounts.length)),
    accounts.length <= 3
      ? h('ul', {}, accounts.map((a) => h('li', {}, `${a.email}: `, h('code', { 'data-testid': 'initial-password' }, a.initial_password))))
      : null,
    save,
  );
}

function csvField(v) {
  const s = String(v ?? '');
  return /[;"\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function importSection(reload) {
  const file = h('input', { id: 'import-file', type: 'file', accept: '.csv,text/csv,text/plain' });
  const text = h('textarea', { id: 'import-text', rows: 6, placeholder: 'Meier;Anna;anna.meier@schule.de;Bayern;Gymnasium Nord' });
  const report = h('div', { id: 'import-report', 'aria-live': 'polite' });
  const check = h('button', { type: 'button', id: 'import-check' }, t('admin_import_check'));
  const create = h('button', { type: 'button', id: 'import-create', disabled: true }, t('admin_import_create'));
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (f) text.value = await f.text();
    create.disabled = true;
  });
  text.addEventListener('input', () => (create.disabled = true));
  const run = async (dryRun) => {
    check.disabled = create.disabled = true;
    try {
      const out = await post('/api/admin/moderators/import', { csv: text.value, dry_run: dryRun });
      const bad = out.lines.filter((l) => l.problem);
      const summary = h(
        'p',
        { id: 'import-summary' },
        dryRun ? t('admin_import_checked', out.valid, bad.length) : t('admin_import_done', out.valid, bad.length),
      );
      // The API's detail is English: on a German page the translated problem says it alone.
      const detail = (l) => (l.detail && language() === 'en' ? h('span', { class: 'muted' }, ` (${l.detail})`) : null);
      const problems = bad.length
        ? h('ul', { class: 'problems' }, bad.map((l) => h('li', { 'data-line': l.line }, t('admin_import_line', l.line, l.email || '–', t(`import_${l.problem}`)), detail(l))))
        : null;
      const created = dryRun ? [] : out.lines.filter((l) => l.initial_password).map((l) => ({ ...l.account, initial_password: l.initial_password }));
      report.replaceChildren(summary, problems ?? '', created.length ? handOver(created) : '');
      create.disabled = !dryRun || out.valid === 0;
      if (!dryRun) await reload();
    } catch (err) {
      report.replaceChildren(h('p', { class: 'error' }, errorText(err)));
    } finally {
      check.disabled = false;
    }
  };
  check.addEventListener('click', () => run(true));
  create.addEventListener('click', () => run(false));
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'import-title' },
    h('h2', { id: 'import-title' }, t('admin_import')),
    h('p', { class: 'muted' }, t('admin_import_hint')),
    field(t('admin_import_file'), file),
    field(t('admin_import_text'), text),
    h('div', { class: 'row' }, check, create),
    report,
  );
}

// Tomorrow 06:00–12:00 in the admin's own time, in 30-minute slots: what the teachers have
// scheduled, and the seats and media nodes it asks for.
function forecastSection() {
  const body = h('tbody');
  const summary = h('p', { 'data-testid': 'forecast-peak' });
  const wrap = h(
    'div',
    { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-labelledby': 'forecast-title', hidden: true },
    h(
      'table',
      { id: 'forecast', class: 'stack' },
      h('thead', {}, h('tr', {}, ['forecast_time', 'forecast_meetings', 'forecast_participants', 'forecast_seats', 'forecast_nodes'].map((k) => h('th', { scope: 'col' }, t(k))))),
      body,
    ),
  );
  const load = async () => {
    const start = new Date();
    start.setDate(start.getDate() + 1);
    start.setHours(6, 0, 0, 0);
    const from = start.getTime();
    const until = from + 6 * 3_600_000;
    try {
      const f = await get(`/api/admin/forecast?from=${from}&until=${until}&slot=30`);
      body.replaceChildren(
        ...f.slots.map((s) =>
          h(
            'tr',
            { 'data-testid': 'forecast-slot' },
            h('td', { class: 'title' }, formatTime(s.starts_at)),
            h('td', { 'data-label': t('forecast_meetings') }, String(s.meetings)),
            h('td', { 'data-label': t('forecast_participants') }, String(s.expected_participants)),
            h('td', { 'data-label': t('forecast_seats') }, String(s.seats)),
            h('td', { 'data-label': t('forecast_nodes') }, String(s.nodes)),
          ),
        ),
      );
      const peak = f.slots.reduce((a, s) => (s.nodes > a.nodes ? s : a), { nodes: 0, expected_participants: 0 });
      summary.textContent = peak.nodes
        ? t('forecast_peak', peak.expected_participants, peak.nodes, f.node_capacity)
        : t('forecast_none');
      // "Nothing planned" says it all: twelve rows of zeros below it would only bury it.
      wrap.hidden = !peak.nodes;
    } catch (err) {
      toast(errorText(err), 'error');
    }
  };
  load();
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'forecast-title' },
    h('h2', { id: 'forecast-title' }, t('forecast_title')),
    h('p', { class: 'muted' }, t('forecast_intro')),
    summary,
    wrap,
  );
}

function auditSection() {
  const day = 86_400_000;
  const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
  const from = h('input', { id: 'audit-from', type: 'date', value: isoDay(Date.now() - 30 * day) });
  const until = h('input', { id: 'audit-until', type: 'date', value: isoDay(Date.now()) });
  const filter = h('input', { id: 'audit-filter', type: 'search' });
  const body = h('tbody');
  let entries = [];
  const show = () => {
    const q = filter.value.trim().toLowerCase();
    const hits = entries.filter((e) => !q || [t(`audit_${e.action}`), e.target, e.reason, e.actor].some((v) => String(v).toLowerCase().includes(q)));
    body.replaceChildren(
      ...hits.map((e) =>
        h(
          'tr',
          {},
          h('td', { class: 'title' }, formatTime(e.time)),
          h('td', { 'data-label': t('audit_action') }, t(`audit_${e.action}`)),
          h('td', { 'data-label': t('audit_target') }, e.target),
          h('td', { 'data-label': t('admin_reason') }, e.reason),
          h('td', { 'data-label': t('audit_actor') }, h('code', {}, e.actor)),
        ),
      ),
    );
    if (!hits.length) body.append(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, t('audit_none'))));
  };
  const load = async () => {
    try {
      const start = Date.parse(from.value);
      const end = Date.parse(until.value) + day;
      entries = (await get(`/api/admin/audit?from=${start}&until=${end}`)).entries.sort((a, b) => b.time - a.time);
      show();
    } catch (err) {
      toast(errorText(err), 'error');
    }
  };
  const form = h(
    'form',
    { class: 'row' },
    field(t('audit_from'), from),
    field(t('audit_until'), until),
    h('button', { type: 'submit', id: 'audit-load' }, t('audit_show')),
    field(t('audit_filter'), filter),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    load();
  });
  filter.addEventListener('input', show);
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'audit-title' },
    h('h2', { id: 'audit-title' }, t('audit_title')),
    h('p', { class: 'muted' }, t('audit_intro')),
    form,
    h(
      'div',
      { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-labelledby': 'audit-title' },
      h('table', { id: 'audit', class: 'stack' }, h('thead', {}, h('tr', {}, ['audit_time', 'audit_action', 'audit_target', 'admin_reason', 'audit_actor'].map((k) => h('th', { scope: 'col' }, t(k))))), body),
    ),
  );
}

function disclosureSection(teachers) {
  const who = h('select', { id: 'disclosure-moderator' });
  const room = h('input', { id: 'disclosure-room', placeholder: '00000000-0000-0000-0000-000000000000', pattern: '[0-9a-f-]{36}' });
  const from = h('input', { id: 'disclosure-from', type: 'datetime-local' });
  const until = h('input', { id: 'disclosure-until', type: 'datetime-local' });
  const reason = h('input', { id: 'disclosure-reason', required: true, maxlength: LIMITS.reason });
  const fill = () =>
    who.replaceChildren(
      h('option', { value: '' }, t('disclosure_nobody')),
      ...teachers.list().map((m) => h('option', { value: m.id }, `${m.last_name}, ${m.first_name} (${m.email})`)),
    );
  who.addEventListener('focus', fill);
  fill();
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'disclosure-title' },
    h('h2', { id: 'disclosure-title' }, t('disclosure_title')),
    h('p', { class: 'muted' }, t('disclosure_intro')),
    field(t('disclosure_moderator'), who),
    field(t('disclosure_room'), room),
    h('div', { class: 'row' }, field(t('disclosure_from'), from), field(t('disclosure_until'), until)),
    field(t('disclosure_reason'), reason),
    h('button', { type: 'submit', id: 'disclosure-submit', class: 'danger' }, t('disclosure_submit')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {
      moderator: who.value || null,
      room: room.value.trim() || null,
      access_log_from: from.value ? Date.parse(from.value) : null,
      access_log_until: until.value ? Date.parse(until.value) : null,
      reason: reason.value.trim(),
    };
    if (!body.moderator && !body.room && body.access_log_from === null && body.access_log_until === null) {
      return toast(t('disclosure_empty'), 'error');
    }
    try {
      const data = await post('/api/admin/disclosure', body);
      download('aula-auskunft-behoerde.json', JSON.stringify(data, null, 2), 'application/json');
      toast(t('disclosure_done'));
    } catch (err) {
      toast(errorText(err), 'error');
    }
  });
  return form;
}
