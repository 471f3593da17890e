// Who is logged in (asked once, then remembered until a page asks again), and forgetting it.

import { get } from './api.js';
import { forgetEverything, forgetTeacherData } from './storage.js';

let account; // undefined: not asked yet; null: not logged in

/** The logged-in moderator, or null. */
export async function me(refresh = false) {
  if (account === undefined || refresh) {
    try {
      account = (await get('/api/me')) ?? null;
    } catch (e) {
      account = null;
      // The server says there is no session (logged out elsewhere, expired): what a teacher
      // left in this browser goes. A network error says nothing about the session.
      if (e.status === 401) forgetTeacherData();
    }
  }
  return account;
}

/** Forgets the logged-in teacher and the caches they left in this browser; `erased`: also
 *  everything else personal (nickname, guests' chat caches). */
export function forget({ erased = false } = {}) {
  account = null;
  if (erased) forgetEverything();
  else forgetTeacherData();
}
