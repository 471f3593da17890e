// Moderation in the browser: the lobby (admit, deny), muting a guest, removing a guest for
// good, and ending the meeting.

import assert from 'node:assert/strict';
import {
  aulaSuite,
  logIn,
  createRoom,
  setLobby,
  openMeeting,
  joinAsGuest,
  tile,
  participantItem,
  farewell,
  clickAndConfirm,
  disclose,
  sendChat,
  chatMessages,
  expectVideoPlaying,
  expectAudioFlowing,
  expectAudioStopped,
  expectNoDuForm,
  eventually,
  sleep,
  css,
  STATUS,
  WAIT,
  MEDIA_WAIT,
  QUIET,
  screenshotBoth,
} from './harness.mjs';

const suite = aulaSuite('moderation');

/** The page shows `pid` as muted (`data-muted="true"` on their list entry or tile). */
async function expectShownMuted(page, pid) {
  await eventually(`${pid} is shown as muted`, () =>
    page.evaluate((pid) => {
      const p = `[data-participant=${JSON.stringify(pid)}]`;
      return [
        ...document.querySelectorAll(`[data-testid=participants] li${p}, [data-testid=tile]${p}`),
      ].some((el) => el.dataset.muted === 'true');
    }, pid),
  );
}

/** Guests get no moderator controls. */
async function expectNoModeratorControls(page) {
  for (const control of [
    '#end-meeting',
    '[data-testid=participants] button[data-action=mute]',
    '[data-testid=participants] button[data-action=remove]',
    '[data-testid=lobby] button[data-action=admit]',
  ]) {
    assert.equal(await page.locator(control).filter({ visible: true }).count(), 0, `a guest sees no ${control}`);
  }
}

suite.test(
  'with the lobby on, a guest waits until the teacher admits them, and a guest the teacher turns down is sent away',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Biologie 10d');
    await setLobby(teacher.page, room, true);
    await teacher.page.reload();
    assert.ok(
      await room.locator.locator('input[data-testid=room-lobby]').isChecked(),
      'the lobby setting is saved',
    );
    await openMeeting(teacher, room);
    assert.match(
      await teacher.page.locator('[data-testid=lobby]').innerText(),
      /Niemand wartet/,
      'the empty lobby says so',
    );

    // Anna knocks and waits; the teacher lets her in.
    const anna = await joinAsGuest(s, room.inviteUrl, 'Anna', { lobby: true });
    const waitingText = await anna.page.locator('[data-testid=lobby-waiting]').innerText();
    const page = await anna.page.locator('body').innerText();
    assert.equal(page.split(waitingText.trim()).length - 1, 1, 'the waiting guest reads the lobby sentence once');
    await expectNoDuForm(anna.page, 'the pupil waiting in the lobby');
    const knock = teacher.page.locator('[data-testid=lobby] li[data-participant]');
    await knock.first().waitFor({ timeout: WAIT });
    assert.equal(await knock.count(), 1, 'one guest waits in the lobby');
    await expectNoDuForm(teacher.page, 'the teacher with a pupil knocking');
    const annaPid = await knock.getAttribute('data-participant');
    assert.equal(
      await anna.page.locator(`${STATUS}[data-state=connected]`).count(),
      0,
      'a waiting guest is not in the meeting',
    );
    await knock.locator('button[data-action=admit]').click();
    await anna.page.locator('[data-testid=lobby-waiting]').waitFor({ state: 'hidden', timeout: MEDIA_WAIT });
    await anna.page.locator(`${STATUS}[data-state=connected]`).waitFor({ state: 'attached', timeout: MEDIA_WAIT });
    anna.pid = await anna.page.evaluate(() => window.__aula.me);
    assert.equal(anna.pid, annaPid, 'the admitted guest is the one who knocked');
    await knock.first().waitFor({ state: 'hidden', timeout: WAIT });
    await expectVideoPlaying(teacher.page, anna.pid);
    await expectVideoPlaying(anna.page, teacher.pid);
    await expectNoModeratorControls(anna.page);
    await expectNoDuForm(anna.page, 'the admitted pupil in the meeting');
    await expectNoDuForm(teacher.page, 'the teacher in the meeting');
    // Admitted means admitted everywhere: she can chat too.
    await sendChat(anna.page, 'room', 'Danke fürs Reinlassen!');
    await chatMessages(teacher.page, 'Danke fürs Reinlassen!').waitFor({ state: 'attached', timeout: WAIT });

    // Ben knocks; the teacher turns him down.
    const ben = await joinAsGuest(s, room.inviteUrl, 'Ben', { lobby: true });
    const benKnock = teacher.page.locator(
      `[data-testid=lobby] li[data-participant]:not([data-participant=${css(anna.pid)}])`,
    );
    await benKnock.first().waitFor({ timeout: WAIT });
    const benPid = await benKnock.getAttribute('data-participant');
    await benKnock.locator('button[data-action=deny]').click();
    await farewell(ben.page, 'denied').waitFor({ timeout: WAIT });
    await expectNoDuForm(ben.page, 'the pupil the teacher did not let in');
    await screenshotBoth(ben.page, 'farewell-denied');
    await benKnock.first().waitFor({ state: 'hidden', timeout: WAIT });
    await sleep(QUIET);
    assert.ok(!(await participantItem(teacher.page, benPid).isVisible()), 'Ben never joined');
    assert.ok(!(await tile(anna.page, benPid).isVisible()), 'Anna never sees Ben');
  },
);

suite.test(
  'pupils the teacher admits from the lobby a few hundred milliseconds apart all see the teacher\'s camera',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Physik 8b');
    await setLobby(teacher.page, room, true);
    await openMeeting(teacher, room);
    const pupils = [];
    for (const name of ['Anna', 'Ben', 'Cem']) {
      pupils.push(await joinAsGuest(s, room.inviteUrl, name, { lobby: true }));
    }
    const knocks = teacher.page.locator('[data-testid=lobby] li[data-participant]');
    await eventually('three pupils knock', async () => (await knocks.count()) === 3);

    // As a teacher does it: admit, admit, admit, 300 ms apart (a lesson hit a frozen
    // teacher's video at the second pupil this way; every keyframe request after the first
    // fell into the node's 300 ms window).
    const knocking = await knocks.evaluateAll((items) => items.map((li) => li.dataset.participant));
    for (const pid of knocking) {
      await teacher.page
        .locator(`[data-testid=lobby] li[data-participant=${css(pid)}] button[data-action=admit]`)
        .click();
      await sleep(300);
    }
    for (const pupil of pupils) {
      await pupil.page.locator(`${STATUS}[data-state=connected]`).waitFor({ state: 'attached', timeout: MEDIA_WAIT });
      pupil.pid = await pupil.page.evaluate(() => window.__aula.me);
    }
    for (const pupil of pupils) {
      await expectVideoPlaying(pupil.page, teacher.pid);
      for (const other of pupils.filter((p) => p !== pupil)) {
        await expectVideoPlaying(pupil.page, other.pid);
      }
    }
  },
);

suite.test(
  'the teacher mutes a guest, whose audio then stops reaching the others, and removes a guest, who cannot come back with the same invitation',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Musik 6a');
    await openMeeting(teacher, room);
    const anna = await joinAsGuest(s, room.inviteUrl, 'Anna');
    const ben = await joinAsGuest(s, room.inviteUrl, 'Ben');
    await expectNoModeratorControls(anna.page);

    // Mute Anna: the teacher's page shows it, and Ben stops receiving her audio (not her video).
    await expectAudioFlowing(ben.page, anna.pid);
    await participantItem(teacher.page, anna.pid).locator('button[data-action=mute]').click();
    await expectShownMuted(teacher.page, anna.pid);
    // She is told, as a teacher would be: with "Sie".
    await anna.page.locator('#toast', { hasText: 'stummgeschaltet' }).waitFor({ timeout: WAIT });
    await expectNoDuForm(anna.page, 'the pupil the teacher muted');
    // An icon shipped with the page, not an emoji that shows as a box without an emoji font.
    await tile(ben.page, anna.pid).locator('svg[data-icon=mic-off]').waitFor({ timeout: WAIT });
    await expectAudioStopped(ben.page, anna.pid);
    await expectVideoPlaying(ben.page, anna.pid);
    await expectAudioFlowing(ben.page, teacher.pid);

    // Remove Anna: she is told, and she is gone for the others.
    await participantItem(teacher.page, anna.pid).locator('button[data-action=remove]').click();
    await farewell(anna.page, 'removed').waitFor({ timeout: WAIT });
    await expectNoDuForm(anna.page, 'the removed pupil');
    await participantItem(teacher.page, anna.pid).waitFor({ state: 'hidden', timeout: WAIT });
    await tile(teacher.page, anna.pid).waitFor({ state: 'hidden', timeout: WAIT });
    await tile(ben.page, anna.pid).waitFor({ state: 'hidden', timeout: WAIT });

    // Reloading with the same invitation does not bring her back. (Refusals may show up as
    // failed requests in the console: those are expected here.)
    s.allowConsoleErrors(/Failed to load resource: the server responded with a status of 4\d\d/);
    await anna.page.reload();
    await farewell(anna.page).waitFor({ timeout: MEDIA_WAIT });
    await sleep(QUIET);
    assert.equal(
      await anna.page.locator(`${STATUS}[data-state=connected]`).count(),
      0,
      'the removed guest is not connected again',
    );
    assert.ok(!(await participantItem(teacher.page, anna.pid).isVisible()), 'the teacher does not see her again');
    assert.ok(!(await tile(ben.page, anna.pid).isVisible()), 'Ben does not see her again');
    await expectVideoPlaying(ben.page, teacher.pid);
  },
);

suite.test(
  'the teacher ends the meeting: every guest is sent away, and the room lists the meeting as past',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Physik 11');
    await openMeeting(teacher, room);
    const anna = await joinAsGuest(s, room.inviteUrl, 'Anna');
    await expectVideoPlaying(anna.page, teacher.pid);

    await clickAndConfirm(teacher.page, teacher.page.locator('#end-meeting'));
    await farewell(anna.page, 'ended').waitFor({ timeout: WAIT });
    await screenshotBoth(anna.page, 'farewell-ended');

    // The meeting record is written when the last participant has left.
    const meetings = await eventually(
      'the API lists the meeting',
      async () => {
        const res = await teacher.page.request.get(`/api/rooms/${room.id}/meetings`);
        const { meetings } = await res.json();
        return meetings.length > 0 && meetings.every((m) => m.ended_at) && meetings;
      },
      { timeout: MEDIA_WAIT, every: 500 },
    );
    await teacher.page.goto('/rooms');
    const list = room.locator.locator('[data-testid=past-meetings]');
    await list.waitFor({ state: 'attached' });
    await disclose(list);
    // One entry per meeting (a "no meetings yet" line stands only in an empty list).
    await eventually(`the room lists ${meetings.length} past meeting(s)`, async () =>
      (await list.locator('li').count()) === meetings.length,
    );
  },
);
