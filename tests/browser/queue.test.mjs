// The admission queue in the browser: with every media seat taken, a pupil's page says
// which place their room has in the queue, and enters by itself when a meeting ends.

import assert from 'node:assert/strict';
import {
  aulaSuite,
  logIn,
  createRoom,
  openMeeting,
  clickAndConfirm,
  connected,
  eventually,
  screenshotBoth,
  STATUS,
  MEDIA_WAIT,
  WAIT,
} from './harness.mjs';

// One media node with two seats: one lesson fills it.
const suite = aulaSuite('queue', { setup: () => ({ args: ['--media-capacity', '2'] }) });

suite.test(
  'a pupil whose room finds every seat taken sees its place in the queue and enters by themself when a lesson ends',
  async (s) => {
    const mathe = await s.person('teacher Mathe');
    await logIn(mathe.page, await suite.portal.provisionTeacher());
    const room = await createRoom(mathe.page, 'Mathe 7a');
    await openMeeting(mathe, room);

    const deutsch = await s.person('teacher Deutsch');
    await logIn(deutsch.page, await suite.portal.provisionTeacher());
    const other = await createRoom(deutsch.page, 'Deutsch 8b');

    // Paul opens the Deutsch invite link while the Mathe lesson holds every seat.
    const paul = await s.person('guest Paul');
    await paul.page.goto(other.inviteUrl);
    await paul.page.locator('#nickname').fill('Paul');
    await paul.page.locator('#join-submit').click();
    const status = paul.page.locator(STATUS);
    await eventually(
      "Paul reads his room's place in the queue",
      async () => /Nr\. 1 in der Warteschlange/.test(await status.innerText()),
      { timeout: MEDIA_WAIT },
    );
    assert.notEqual(await status.getAttribute('data-state'), 'connected', 'waiting is not connected');
    await screenshotBoth(paul.page, 'queue-waiting');
    // Still waiting a few polls later (the front asks every ~2 s): the seats are taken.
    await paul.page.waitForTimeout(3_000);
    assert.match(await status.innerText(), /Warteschlange/, 'no seat yet, still in line');

    // The Mathe lesson ends: its seats come back and Paul's page enters without a click.
    await clickAndConfirm(mathe.page, mathe.page.locator('#end-meeting'));
    paul.pid = await connected(paul.page, { timeout: MEDIA_WAIT * 2 });
    assert.ok(paul.pid, 'Paul is in his meeting');
    const trace = await paul.page.evaluate(() => (window.__aulaTrace || []).map((e) => e.what));
    assert.ok(
      trace.some((w) => /^queued: place \d+, position 1$/.test(w)),
      `the page waited in the queue: ${trace.join(' | ')}`,
    );
  },
  { timeout: WAIT * 16 },
);
