// Everything Aula keeps in the browser, in one place (the privacy page declares each):
//   aula.lang                    the language choice
//   aula.nickname                a guest's last nickname, to fill the join form
//   aula.chat.<me>.<room>        a cache of the chat one person saw in one room
//   aula.meetings.<room>         a cache of a room's past meetings (teachers)
// Caches never outlive the server's copy: entries past the server's retention are dropped
// when read, the chat cache is replaced by what the server still has whenever it answers,
// and everything personal is removed at logout, restriction and erasure.

/** The server's history retention (chats, meetings): 183 days. */
export const HISTORY_MS = 183 * 24 * 60 * 60 * 1000;
const CHAT_LIMIT = 200;

const chatKey = (me, room) => `aula.chat.${me}.${room}`;
const meetingsKey = (room) => `aula.meetings.${room}`;

function read(key) {
  try {
    const value = JSON.parse(localStorage.getItem(key) || 'null');
    return Array.isArray(value) ? value : [];
  } catch {
    return []; // a broken cache is no cache
  }
}

function write(key, list) {
  try {
    if (list.length) localStorage.setItem(key, JSON.stringify(list));
    else localStorage.removeItem(key);
  } catch {
    /* storage full or disabled: the cache is only a cache */
  }
}

const live = (at, now) => typeof at === 'number' && at + HISTORY_MS > now;

/** The cached chat of `me` in `room`, without anything the server has let expire. */
export function cachedChat(me, room, now = Date.now()) {
  const kept = read(chatKey(me, room)).filter((m) => live(m.posted_at, now));
  write(chatKey(me, room), kept);
  return kept;
}

/** Keeps the newest messages (posting order) of `me` in `room`. */
export function saveChat(me, room, messages, now = Date.now()) {
  const recent = messages
    .filter((m) => live(m.posted_at, now))
    .sort((a, b) => a.posted_at - b.posted_at)
    .slice(-CHAT_LIMIT);
  write(chatKey(me, room), recent);
}

export function cachedMeetings(room, now = Date.now()) {
  return read(meetingsKey(room)).filter((m) => live(m.ended_at ?? m.started_at, now));
}

export function saveMeetings(room, meetings, now = Date.now()) {
  write(meetingsKey(room), meetings.filter((m) => live(m.ended_at ?? m.started_at, now)));
}

export function forgetRoom(room) {
  for (const key of keys()) {
    if (key === meetingsKey(room) || (key.startsWith('aula.chat.') && key.endsWith(`.${room}`))) localStorage.removeItem(key);
  }
}

function keys() {
  const all = [];
  try {
    for (let i = 0; i < localStorage.length; i++) all.push(localStorage.key(i));
  } catch {
    /* storage disabled */
  }
  return all.filter(Boolean);
}

/** Removes every cache a logged-in teacher left (on a shared school computer, the next
 *  person must not find it): at logout, restriction, erasure, and when the session is gone. */
export function forgetTeacherData() {
  for (const key of keys()) {
    if (key.startsWith('aula.chat.m:') || key.startsWith('aula.meetings.')) localStorage.removeItem(key);
  }
}

/** Removes everything personal, guests' caches and nickname included; the language stays. */
export function forgetEverything() {
  for (const key of keys()) {
    if (key.startsWith('aula.') && key !== 'aula.lang') localStorage.removeItem(key);
  }
}
