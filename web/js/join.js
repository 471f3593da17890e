// A guest opens the invite link, chooses a nickname (remembered in this browser) and joins.

import { get, post } from './api.js';
import { t } from './i18n.js';
import { LIMITS } from './limits.js';
import { Prejoin, handOff } from './meeting/prejoin.js';
import { navigate } from './nav.js';
import { forget, me } from './session.js';
import { errorText, field, h, toast } from './ui.js';

export async function render(main, token) {
  // A teacher who opens an invite link in their own browser (to test it, or their own room
  // from a bookmark) would join with their login and put their other window out of the
  // meeting: say so, and offer what they can do instead.
  if (await me()) return forTeacher(main);
  return guestForm(main, token);
}

async function forTeacher(main) {
  let own = null;
  try {
    const { rooms } = await get('/api/rooms');
    own = rooms.find((r) => new URL(r.invite_url, location.href).pathname === location.pathname) || null;
  } catch {
    /* not knowing the room only hides the teacher's button */
  }
  const copy = h(
    'button',
    {
      type: 'button',
      class: 'secondary',
      'data-testid': 'join-copy-link',
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(location.href);
          toast(t('join_link_copied'));
        } catch (e) {
          toast(errorText(e), 'error');
        }
      },
    },
    t('join_copy_link'),
  );
  const asGuest = h(
    'button',
    {
      type: 'button',
      class: 'secondary',
      'data-testid': 'join-logout-as-guest',
      onclick: async () => {
        try {
          await post('/api/auth/logout');
        } catch {
          /* the cookie is gone either way */
        }
        forget();
        navigate(location.pathname, true);
      },
    },
    t('join_logout_as_guest'),
  );
  main.append(
    h(
      'section',
      { class: 'card narrow', 'data-testid': 'join-teacher' },
      h('h1', {}, t('join_teacher_title')),
      own ? h('p', {}, t('join_own_room', own.name)) : null,
      own
        ? h('p', {}, h('a', { class: 'button', href: `/meeting/${own.id}`, 'data-testid': 'join-as-teacher' }, t('join_as_teacher')))
        : null,
      h('p', {}, t('join_guest_hint')),
      h('div', { class: 'row' }, copy, asGuest),
    ),
  );
}

function guestForm(main, token) {
  const nickname = h('input', {
    id: 'nickname',
    required: true,
    maxlength: LIMITS.nickname,
    autocomplete: 'nickname',
    value: localStorage.getItem('aula.nickname') || '',
  });
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const submit = h('button', { id: 'join-submit', type: 'submit' }, t('join_submit'));
  // The pre-join screen: how one will be seen and heard, before anyone else does.
  const prejoin = new Prejoin();
  const form = h(
    'form',
    { class: 'card prejoin-card' },
    h('h1', {}, t('join_title')),
    h('div', { class: 'prejoin-layout' }, prejoin.el, h('div', { class: 'prejoin-form' }, field(t('nickname'), nickname), error, submit)),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      const name = nickname.value.trim();
      const joined = await post(`/api/join/${encodeURIComponent(token)}`, { nickname: name });
      localStorage.setItem('aula.nickname', name);
      handOff(prejoin.result());
      navigate(`/meeting/${joined.guest.room}`);
    } catch (err) {
      error.textContent = err.status === 404 ? t('join_invalid') : errorText(err);
      error.hidden = false;
      submit.disabled = false;
    }
  });
  main.append(form);
  nickname.focus();
  prejoin.open();
  return () => prejoin.close();
}
