// "Meine Räume": create, rename, configure, delete rooms; invite links; past and scheduled
// meetings.

import { del, get, patch, post } from './api.js';
import { formatTime, t } from './i18n.js';
import { LIMITS } from './limits.js';
import { navigate } from './nav.js';
import { me } from './session.js';
import { cachedMeetings, forgetRoom, saveMeetings } from './storage.js';
import { confirmDialog, errorText, field, h, toast } from './ui.js';

const SETTINGS = [
  ['lobby', 'setting_lobby', 'room-lobby'],
  ['guests_may_share_screen', 'setting_screen', 'room-screen'],
  ['guests_may_send_video', 'setting_video', 'room-video'],
  ['mute_on_join', 'setting_mute', 'room-mute'],
];

export async function render(main) {
  if (!(await me())) return navigate('/login', true);
  const list = h('ul', { class: 'rooms', 'aria-live': 'polite' });
  const name = h('input', { id: 'room-name', required: true, maxlength: LIMITS.room_name });
  const form = h(
    'form',
    { class: 'row create' },
    field(t('room_name'), name),
    h('button', { id: 'room-create', type: 'submit' }, t('room_create')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const room = await post('/api/rooms', { name: name.value.trim() });
      name.value = '';
      toast(t('room_created', room.name));
      list.prepend(roomItem(room));
      list.querySelector('.empty')?.remove();
    } catch (err) {
      toast(errorText(err), 'error');
    }
  });
  main.append(h('h1', {}, t('rooms_title')), form, list);
  try {
    const [{ rooms }, { scheduled }] = await Promise.all([get('/api/rooms'), get('/api/schedule')]);
    if (rooms.length === 0) list.append(h('li', { class: 'empty muted' }, t('rooms_empty')));
    for (const r of rooms) list.append(roomItem(r, scheduled.filter((s) => s.room_id === r.id)));
  } catch (err) {
    toast(errorText(err), 'error');
  }
}

// How many the teacher expects: seats are reserved for them when the meeting starts.
function expectedField(room) {
  const input = h('input', {
    type: 'number',
    min: 1,
    max: 1000,
    inputmode: 'numeric',
    'data-testid': 'room-expected',
    value: room.settings.expected_participants ?? '',
  });
  input.addEventListener('change', async () => {
    const n = input.value.trim() === '' ? 0 : Number(input.value);
    if (!Number.isInteger(n) || n < 0 || n > 1000) {
      input.value = room.settings.expected_participants ?? '';
      return toast(t('error_generic', t('setting_expected')), 'error');
    }
    try {
      const r = await patch(`/api/rooms/${room.id}`, { settings: { expected_participants: n } });
      room.settings = r.settings;
      toast(t('saved'));
    } catch (err) {
      input.value = room.settings.expected_participants ?? '';
      toast(errorText(err), 'error');
    }
  });
  return field(t('setting_expected'), input);
}

// The room's scheduled meetings (date, start, length, expected participants), with a form
// to schedule one; seats for them are reserved when the meeting is about to begin.
function scheduleSection(room, scheduled) {
  const list = h('ul', { 'data-testid': 'scheduled-meetings', class: 'meetings' });
  const show = () => {
    list.replaceChildren(
      ...(scheduled.length
        ? scheduled.map((s) =>
            h(
              'li',
              { class: 'row spread', 'data-testid': 'scheduled-meeting' },
              h('span', {}, t('schedule_line', formatTime(s.starts_at), s.minutes, s.expected_participants)),
              h(
                'button',
                {
                  type: 'button',
                  class: 'secondary',
                  'data-testid': 'delete-scheduled',
                  onclick: async () => {
                    try {
                      await del(`/api/rooms/${room.id}/schedule/${s.id}`);
                      scheduled = scheduled.filter((x) => x.id !== s.id);
                      show();
                      toast(t('schedule_deleted'));
                    } catch (err) {
                      toast(errorText(err), 'error');
                    }
                  },
                },
                t('schedule_delete'),
              ),
            ),
          )
        : [h('li', { class: 'muted' }, t('schedule_none'))]),
    );
  };
  const pad = (n) => String(n).padStart(2, '0');
  const tomorrow = new Date(Date.now() + 86_400_000);
  const date = h('input', {
    type: 'date',
    required: true,
    'data-testid': 'schedule-date',
    value: `${tomorrow.getFullYear()}-${pad(tomorrow.getMonth() + 1)}-${pad(tomorrow.getDate())}`,
  });
  const time = h('input', { type: 'time', required: true, 'data-testid': 'schedule-time', value: '08:00' });
  const minutes = h('input', { type: 'number', min: 5, max: 600, required: true, 'data-testid': 'schedule-minutes', value: 45 });
  const expected = h('input', {
    type: 'number',
    min: 1,
    max: 1000,
    required: true,
    'data-testid': 'schedule-expected',
    value: room.settings.expected_participants ?? 16,
  });
  const form = h(
    'form',
    { class: 'row' },
    field(t('schedule_date'), date),
    field(t('schedule_time'), time),
    field(t('schedule_minutes'), minutes),
    field(t('schedule_expected'), expected),
    h('button', { type: 'submit', 'data-testid': 'schedule-submit' }, t('schedule_submit')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    // The date and time as the teacher means them: in this browser's time zone.
    const startsAt = new Date(`${date.value}T${time.value}`).getTime();
    try {
      const s = await post(`/api/rooms/${room.id}/schedule`, {
        starts_at: startsAt,
        minutes: Number(minutes.value),
        expected_participants: Number(expected.value),
      });
      scheduled = [...scheduled, s].sort((a, b) => a.starts_at - b.starts_at);
      show();
      toast(t('schedule_done', formatTime(s.starts_at)));
    } catch (err) {
      toast(errorText(err), 'error');
    }
  });
  show();
  return h('details', { 'data-testid': 'schedule' }, h('summary', {}, t('schedule_title')), form, list);
}

function roomItem(room, scheduled = []) {
  const title = h('h2', { class: 'room-name' }, room.name);
  const invite = h('input', {
    'data-testid': 'invite-url',
    readonly: true,
    value: room.invite_url,
    'aria-label': t('invite_link'),
  });
  const copy = h(
    'button',
    {
      type: 'button',
      'data-testid': 'copy-invite',
      onclick: async () => {
        invite.select();
        try {
          await navigator.clipboard.writeText(invite.value);
        } catch {
          document.execCommand('copy');
        }
        toast(t('copied'));
      },
    },
    t('copy_invite'),
  );
  const rotate = h(
    'button',
    {
      type: 'button',
      class: 'secondary',
      'data-testid': 'rotate-invite',
      onclick: async () => {
        try {
          const r = await post(`/api/rooms/${room.id}/invite`);
          invite.value = r.invite_url;
          toast(t('new_invite_done'));
        } catch (err) {
          toast(errorText(err), 'error');
        }
      },
    },
    t('new_invite'),
  );
  const settings = h(
    'fieldset',
    { class: 'settings' },
    h('legend', {}, t('settings')),
    SETTINGS.map(([key, label, testid]) => {
      const box = h('input', { type: 'checkbox', 'data-testid': testid, checked: !!room.settings[key] });
      box.addEventListener('change', async () => {
        try {
          const r = await patch(`/api/rooms/${room.id}`, { settings: { [key]: box.checked } });
          room.settings = r.settings;
          toast(t('saved'));
        } catch (err) {
          box.checked = !box.checked;
          toast(errorText(err), 'error');
        }
      });
      return h('label', { class: 'check' }, box, ' ', t(label));
    }),
    expectedField(room),
  );
  const meetings = h('ul', { 'data-testid': 'past-meetings', class: 'meetings' });
  const item = h(
    'li',
    { class: 'card room', 'data-testid': 'room', 'data-room-id': room.id },
    h(
      'div',
      { class: 'row spread' },
      title,
      h('a', { class: 'button', 'data-testid': 'open-room', href: `/meeting/${room.id}` }, t('open_room')),
    ),
    h('div', { class: 'row invite' }, invite, copy, rotate),
    settings,
    scheduleSection(room, scheduled),
    h('details', { ontoggle: (e) => e.target.open && loadMeetings(room.id, meetings) },
      h('summary', {}, t('past_meetings')), meetings),
    h(
      'div',
      { class: 'row' },
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          'data-testid': 'rename-room',
          onclick: async () => {
            const input = h('input', { value: room.name, 'aria-label': t('rename_prompt') });
            const ok = h('button', { type: 'submit' }, t('rename'));
            const f = h('form', { class: 'row' }, input, ok);
            f.addEventListener('submit', async (e) => {
              e.preventDefault();
              try {
                const r = await patch(`/api/rooms/${room.id}`, { name: input.value.trim() });
                room.name = r.name;
                title.textContent = r.name;
                f.replaceWith(title);
                toast(t('saved'));
              } catch (err) {
                toast(errorText(err), 'error');
              }
            });
            title.replaceWith(f);
            input.focus();
          },
        },
        t('rename'),
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          'data-testid': 'delete-room',
          onclick: async () => {
            if (!(await confirmDialog(t('delete_room_confirm', room.name), t('delete')))) return;
            try {
              await del(`/api/rooms/${room.id}`);
              forgetRoom(room.id);
              item.remove();
              toast(t('room_deleted'));
            } catch (err) {
              toast(errorText(err), 'error');
            }
          },
        },
        t('delete'),
      ),
    ),
  );
  return item;
}

async function loadMeetings(roomId, list) {
  // The list kept in the browser shows at once; the server's answer replaces it.
  const cached = cachedMeetings(roomId);
  if (cached.length) showMeetings(list, cached);
  try {
    const { meetings } = await get(`/api/rooms/${roomId}/meetings`);
    showMeetings(list, meetings);
    saveMeetings(roomId, meetings);
  } catch (err) {
    toast(errorText(err), 'error');
  }
}

function showMeetings(list, meetings) {
  list.replaceChildren(
    ...(meetings.length
      ? meetings.map((m) =>
          h(
            'li',
            {},
            t(
              'meeting_line',
              formatTime(m.started_at),
              m.ended_at ? formatTime(m.ended_at) : t('running'),
              m.peak_participants,
            ),
          ),
        )
      : [h('li', { class: 'muted' }, t('no_meetings'))]),
  );
}
