// "Meine Daten": see, export, correct, restrict or delete one's own data (GDPR Art. 15–18).

import { del, get, patch, post } from './api.js';
import { t } from './i18n.js';
import { LIMITS } from './limits.js';
import { navigate } from './nav.js';
import { forget, me } from './session.js';
import { STATES } from './states.js';
import { confirmDialog, download, errorText, field, h, toast } from './ui.js';

const FIELDS = ['first_name', 'last_name', 'email', 'organisation', 'federal_state'];
const MAX = { first_name: LIMITS.person_name, last_name: LIMITS.person_name, organisation: LIMITS.organisation };

export async function render(main) {
  const who = await me(true);
  if (!who) return navigate('/login', true);
  const inputs = Object.fromEntries(
    FIELDS.map((f) => [
      f,
      f === 'federal_state'
        ? // The Bundesland by its name ("Bayern"), not the code the API stores ("DE-BY").
          h('select', { id: 'correct-federal-state', required: true }, STATES.map(([c, n]) => h('option', { value: c, selected: c === who[f] }, n)))
        : h('input', { id: `correct-${f.replace('_', '-')}`, value: who[f] ?? '', required: true, maxlength: MAX[f] ?? null }),
    ]),
  );
  const correction = h(
    'form',
    { class: 'card' },
    FIELDS.map((f) => field(t(f), inputs[f])),
    h('button', { id: 'correct-submit', type: 'submit' }, t('correct_submit')),
  );
  correction.addEventListener('submit', async (e) => {
    e.preventDefault();
    const changes = {};
    for (const f of FIELDS) if (inputs[f].value.trim() !== String(who[f] ?? '')) changes[f] = inputs[f].value.trim();
    try {
      Object.assign(who, await patch('/api/me', changes));
      toast(t('saved'));
    } catch (err) {
      toast(errorText(err), 'error');
    }
  });
  const exportButton = h('button', { id: 'export', type: 'button' }, t('export'));
  exportButton.addEventListener('click', async () => {
    exportButton.disabled = true;
    exportButton.textContent = t('exporting');
    try {
      const data = await get('/api/me/export');
      download('aula-meine-daten.json', JSON.stringify(data, null, 2), 'application/json');
    } catch (err) {
      toast(errorText(err), 'error');
    } finally {
      exportButton.disabled = false;
      exportButton.textContent = t('export');
    }
  });
  const restrict = h('button', { id: 'restrict', type: 'button', class: 'secondary' }, t('restrict'));
  restrict.addEventListener('click', async () => {
    if (!(await confirmDialog(t('restrict_confirm'), t('restrict')))) return;
    try {
      await post('/api/me/restrict');
      forget();
      navigate('/login');
    } catch (err) {
      toast(errorText(err), 'error');
    }
  });
  const password = h('input', { id: 'delete-password', type: 'password', autocomplete: 'current-password' });
  const erase = h('button', { id: 'delete-account', type: 'button', class: 'danger' }, t('delete_account'));
  erase.addEventListener('click', async () => {
    if (!(await confirmDialog(t('delete_account'), t('delete')))) return;
    try {
      await del('/api/me', { password: password.value });
      forget({ erased: true });
      toast(t('delete_account_done'));
      navigate('/login');
    } catch (err) {
      toast(errorText(err), 'error');
    }
  });
  main.append(
    h('h1', {}, t('me_title')),
    h('p', { class: 'muted' }, t('me_intro')),
    h('section', { class: 'card' }, exportButton),
    h('section', { class: 'card' }, h('a', { href: '/password', id: 'change-password', class: 'button secondary' }, t('password_change'))),
    correction,
    h('section', { class: 'card' }, restrict),
    h('section', { class: 'card' }, field(t('delete_account_password'), password), erase),
  );
}
