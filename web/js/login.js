// Logging in (teachers and admins).

import { post } from './api.js';
import { t } from './i18n.js';
import { navigate } from './nav.js';
import { me } from './session.js';
import { field, h } from './ui.js';

export async function render(main) {
  if (await me()) return navigate('/rooms', true);
  const email = h('input', { id: 'login-email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', {
    id: 'login-password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const error = h('p', { class: 'error', 'data-testid': 'login-error', role: 'alert', hidden: true });
  const submit = h('button', { id: 'login-submit', type: 'submit' }, t('login_submit'));
  const form = h(
    'form',
    { class: 'card narrow' },
    h('h1', {}, t('login_title')),
    h('p', { class: 'muted' }, t('login_intro')),
    field(t('email'), email),
    field(t('password'), password),
    error,
    submit,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      await post('/api/auth/login', { email: email.value.trim(), password: password.value });
      password.value = '';
      await me(true);
      navigate('/rooms');
    } catch (err) {
      error.textContent =
        err.code === 'rate_limited'
          ? t('login_locked', err.retryAfter || 60)
          : err.code === 'account_restricted'
            ? t('login_restricted')
            : t('login_failed');
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form);
  email.focus();
}
