// A guest opens the invite link, chooses a nickname (remembered in this browser) and joins.

import { post } from './api.js';
import { t } from './i18n.js';
import { LIMITS } from './limits.js';
import { navigate } from './nav.js';
import { errorText, field, h } from './ui.js';

export async function render(main, token) {
  const nickname = h('input', {
    id: 'nickname',
    required: true,
    maxlength: LIMITS.nickname,
    autocomplete: 'nickname',
    value: localStorage.getItem('aula.nickname') || '',
  });
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const submit = h('button', { id: 'join-submit', type: 'submit' }, t('join_submit'));
  const form = h(
    'form',
    { class: 'card narrow' },
    h('h1', {}, t('join_title')),
    field(t('nickname'), nickname),
    error,
    submit,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      const name = nickname.value.trim();
      const joined = await post(`/api/join/${encodeURIComponent(token)}`, { nickname: name });
      localStorage.setItem('aula.nickname', name);
      navigate(`/meeting/${joined.guest.room}`);
    } catch (err) {
      error.textContent = err.status === 404 ? t('join_invalid') : errorText(err);
      error.hidden = false;
      submit.disabled = false;
    }
  });
  main.append(form);
  nickname.focus();
}
