// "Passwort ändern": for everyone logged in, and required first when the password was
// handed over (an initial password from the admin, or one the operator reset).

import { post } from './api.js';
import { t } from './i18n.js';
import { LIMITS } from './limits.js';
import { navigate } from './nav.js';
import { me } from './session.js';
import { errorText, field, h, toast } from './ui.js';

export async function render(main) {
  const who = await me(true);
  if (!who) return navigate('/login', true);
  const input = (id, autocomplete) =>
    h('input', { id, type: 'password', autocomplete, required: true, maxlength: LIMITS.password });
  const current = input('password-current', 'current-password');
  const fresh = input('password-new', 'new-password');
  fresh.minLength = 10;
  const repeat = input('password-repeat', 'new-password');
  const problem = h('p', { class: 'error', role: 'alert', id: 'password-problem' });
  const form = h(
    'form',
    { class: 'card narrow' },
    field(who.must_change_password ? t('password_handed_over') : t('password_current'), current),
    field(t('password_new'), fresh),
    h('p', { class: 'muted' }, t('password_rules')),
    field(t('password_repeat'), repeat),
    problem,
    h('button', { id: 'password-submit', type: 'submit' }, t('password_change')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    problem.textContent = '';
    if (fresh.value !== repeat.value) {
      problem.textContent = t('password_mismatch');
      return repeat.focus();
    }
    try {
      await post('/api/me/password', { current: current.value, new: fresh.value });
      await me(true);
      toast(t('password_changed'));
      navigate('/rooms', true);
    } catch (err) {
      problem.textContent = err.code === 'bad_credentials' ? t('password_current_wrong') : errorText(err);
    }
  });
  main.append(
    h('h1', {}, t('password_title')),
    who.must_change_password ? h('p', { class: 'notice', id: 'password-required' }, t('password_required')) : null,
    form,
  );
  current.focus();
}
