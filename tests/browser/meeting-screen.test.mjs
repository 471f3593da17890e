// The meeting screen as a teacher and pupils use it: the pre-join screen, the speaker view
// and the gallery, a shared screen shown large, the control bar and its keyboard shortcuts,
// the queue of raised hands, the unread-chat count, and the teacher's grouped controls.

import assert from 'node:assert/strict';
import {
  aulaSuite,
  logIn,
  createRoom,
  openMeeting,
  joinAsGuest,
  connected,
  passPrejoin,
  tile,
  participantItem,
  sendChat,
  chatMessages,
  expectVideoPlaying,
  expectAudioFlowing,
  expectNoDuForm,
  received,
  tilePicture,
  eventually,
  screenshot,
  screenshotBoth,
  sleep,
  WAIT,
  MEDIA_WAIT,
} from './harness.mjs';

const suite = aulaSuite('meeting-screen');

/** A teacher in a new room and the given pupils, all connected. */
async function lesson(s, subject, pupils = ['Anna']) {
  const data = await suite.portal.provisionTeacher();
  const teacher = await s.person('teacher', { clipboard: true });
  await logIn(teacher.page, data);
  const room = await createRoom(teacher.page, subject);
  await openMeeting(teacher, room);
  const guests = [];
  for (const name of pupils) guests.push(await joinAsGuest(s, room.inviteUrl, name));
  return { data, room, teacher, guests };
}

/** The size of an element on the page (0×0 when it is not rendered). */
function box(locator) {
  return locator.evaluate((el) => {
    const r = el.getBoundingClientRect();
    return { width: r.width, height: r.height };
  });
}

/** What a `video` element of the page shows: its picture's size, and whether it plays. */
function videoOf(locator) {
  return locator.evaluate((v) => ({ width: v.videoWidth, playing: !v.paused && v.readyState >= 2, track: v.srcObject?.getVideoTracks()[0]?.readyState ?? null }));
}

const pressed = (page, selector) => page.locator(selector).getAttribute('aria-pressed');

/** The names in the queue of raised hands, in its order. */
function handQueue(page) {
  return page.locator('[data-testid=hands] li .name').allInnerTexts();
}

suite.test(
  'before joining, the teacher sees the room\'s name, their own camera, a moving microphone level, the devices and their name; a pupil who joins with the camera off is a tile with initials and no video, until she switches it on',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Kunst 6c');
    await room.locator.locator('a[data-testid=open-room]').click();

    const page = teacher.page;
    const preview = page.locator('[data-testid=prejoin-preview]');
    await eventually('the own camera plays in the preview', async () => (await videoOf(preview)).width > 0);
    assert.match(await page.locator('[data-testid=prejoin-name]').innerText(), new RegExp(`${data.first_name} ${data.last_name}`));
    await eventually('the title names the room', async () => (await page.locator('[data-testid=prejoin-title]').innerText()).includes('Kunst 6c'));
    assert.ok((await page.locator('#prejoin-mic option').count()) >= 1, 'a microphone to choose');
    assert.ok((await page.locator('#prejoin-camera option').count()) >= 1, 'a camera to choose');
    // Browsers start audio analysis once the person has clicked on the page.
    await page.locator('.prejoin-card h1').click();
    await eventually('the microphone level moves', async () =>
      Number(await page.locator('[data-testid=prejoin-level]').getAttribute('data-level')) > 0,
    );
    assert.equal(await page.locator('[data-testid=stage]').isVisible(), false, 'nobody is seen before joining');
    await screenshot(page, 'prejoin');
    await passPrejoin(page);
    teacher.pid = await connected(page);

    // The pupil's pre-join screen is the invite page: camera preview, then camera off.
    const anna = await s.person('guest Anna');
    await anna.page.goto(room.inviteUrl);
    const annaPreview = anna.page.locator('[data-testid=prejoin-preview]');
    await eventually('the pupil sees her camera before joining', async () => (await videoOf(annaPreview)).width > 0);
    await screenshot(anna.page, 'prejoin-guest');
    await expectNoDuForm(anna.page, 'the pupil on the invite page');
    await anna.page.locator('#prejoin-camera-off').check();
    await eventually('the preview no longer shows the camera', async () => !(await annaPreview.isVisible()));
    await anna.page.locator('#nickname').fill('Anna');
    await anna.page.locator('#join-submit').click();
    anna.pid = await connected(anna.page);

    await tile(page, anna.pid).waitFor({ timeout: WAIT });
    await expectAudioFlowing(page, anna.pid);
    const annaTile = tile(page, anna.pid);
    assert.equal(await annaTile.locator('.avatar').innerText(), 'A', 'her initial stands in her tile');
    const seen = await received(page, anna.pid, 'camera');
    assert.ok(!seen.video.shown || !seen.video.track, `no video of her is shown (${JSON.stringify(seen.video)})`);
    assert.equal(await pressed(anna.page, '#toggle-camera'), 'false', 'her camera button says it is off');
    assert.equal(
      await anna.page.evaluate(() => window.__aula.publish.getSenders().filter((x) => x.track?.kind === 'video').length),
      0,
      'her page sends no video',
    );

    await anna.page.locator('#toggle-camera').click();
    await expectVideoPlaying(page, anna.pid, 'camera');
    assert.equal(await pressed(anna.page, '#toggle-camera'), 'true');
  },
);

suite.test(
  'the speaker view shows one person large and the others in a strip; the gallery gives everyone a tile of the same size; the button and G switch between them',
  async (s) => {
    const { teacher, guests } = await lesson(s, 'Deutsch 8b', ['Anna', 'Ben']);
    const [anna, ben] = guests;
    const page = teacher.page;
    for (const g of guests) await expectVideoPlaying(page, g.pid);

    // Speaker view (the default): one tile large, the rest small below it.
    assert.equal(await page.locator('[data-testid=stage]').getAttribute('data-view'), 'speaker');
    const featured = page.locator('[data-testid=tile].featured');
    assert.equal(await featured.count(), 1, 'one tile is large');
    const large = await box(featured);
    const stage = await box(page.locator('[data-testid=stage]'));
    assert.ok(large.width >= 0.95 * stage.width, `the large tile spans the stage (${JSON.stringify({ large, stage })})`);
    for (const small of await page.locator('[data-testid=tile]:not(.featured)').all()) {
      const b = await box(small);
      assert.ok(b.width * b.height * 4 < large.width * large.height, `a strip tile is much smaller (${JSON.stringify(b)})`);
    }
    await screenshot(page, 'meeting-speaker');

    await page.locator('#toggle-view').click();
    assert.equal(await page.locator('[data-testid=stage]').getAttribute('data-view'), 'gallery');
    assert.equal(await featured.count(), 0, 'no tile is large in the gallery');
    const sizes = await Promise.all((await page.locator('[data-testid=tile]').all()).map(box));
    assert.equal(sizes.length, 3);
    for (const b of sizes) {
      assert.ok(Math.abs(b.width - sizes[0].width) <= 1 && Math.abs(b.height - sizes[0].height) <= 1, `tiles of one size (${JSON.stringify(sizes)})`);
    }
    // Three tiles in a 16:10 window: two rows, each tile more than a third of the stage wide.
    assert.ok(sizes[0].width > stage.width / 3, `the tiles use the stage (${JSON.stringify({ sizes, stage })})`);
    for (const g of [anna, ben]) await expectVideoPlaying(page, g.pid);
    await screenshotBoth(page, 'meeting-gallery');

    // The keyboard: G switches back (the cursor not in a field).
    await page.evaluate(() => document.activeElement?.blur());
    await page.keyboard.press('g');
    assert.equal(await page.locator('[data-testid=stage]').getAttribute('data-view'), 'speaker');
  },
);

/** Waits until the large tile shows `pid`'s picture with at most 3 % black bars and at most a
 * third of the camera's width or height cut off; returns the measurement. */
async function largeAndFilled(page, pid) {
  const large = tile(page, pid);
  let last = null;
  await eventually(`${pid}'s large tile is filled by the picture`, async () => {
    if (!(await large.evaluate((el) => el.classList.contains('featured')))) return false;
    last = await tilePicture(large);
    return !last.noPicture && last.bars <= 0.03 && last.cropWidth <= 0.34 && last.cropHeight <= 0.34;
  }).catch((e) => {
    e.message += `\nlast measurement: ${JSON.stringify(last)}`;
    throw e;
  });
  return last;
}

suite.test(
  'with two people in the meeting the other person\'s camera fills the large tile without black bars, on a 1280×800 screen and on a phone held upright, and the large tile fills the stage',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Physik 9c');
    await openMeeting(teacher, room);
    const anna = await s.person('guest Anna', { phone: true });
    await anna.page.goto(room.inviteUrl);
    await anna.page.locator('#nickname').fill('Anna');
    await anna.page.locator('#join-submit').click();
    anna.pid = await connected(anna.page);
    await expectVideoPlaying(teacher.page, anna.pid);
    await expectVideoPlaying(anna.page, teacher.pid);

    const desk = await largeAndFilled(teacher.page, anna.pid);
    assert.ok(desk.tile.width * desk.tile.height >= 0.6 * desk.stage.width * desk.stage.height, `on the desktop the large tile takes most of the stage (${JSON.stringify(desk)})`);
    await screenshot(teacher.page, 'meeting-two');

    const phone = await largeAndFilled(anna.page, teacher.pid);
    assert.ok(phone.tile.width >= 0.95 * phone.stage.width, `on the phone the teacher's tile spans the screen's width (${JSON.stringify(phone)})`);
    assert.ok(phone.tile.height >= 0.35 * phone.stage.height, `and a good part of its height (${JSON.stringify(phone)})`);
    await screenshot(anna.page, 'phone-meeting-two');

    // The teacher shares a worksheet: on the phone it is whole, without bars, across the screen.
    await teacher.page.locator('#toggle-screen').click();
    await expectVideoPlaying(anna.page, teacher.pid, 'screen');
    let shared = null;
    await eventually('the shared screen fills its tile on the phone, uncut', async () => {
      shared = await tilePicture(tile(anna.page, teacher.pid));
      return shared.source === 'screen' && !shared.noPicture && shared.bars <= 0.03;
    }).catch((e) => {
      e.message += `\nlast measurement: ${JSON.stringify(shared)}`;
      throw e;
    });
    assert.equal(shared.cropWidth + shared.cropHeight, 0, `nothing of the screen is cut off (${JSON.stringify(shared)})`);
    assert.ok(shared.tile.width >= 0.95 * shared.stage.width, `the screen spans the phone's width (${JSON.stringify(shared)})`);
    await screenshot(anna.page, 'phone-meeting-screen-share');
  },
);

suite.test(
  'a pupil\'s shared screen opens large by itself even in the gallery, a button puts it in full screen, the pupil sees a small preview of it, and the gallery comes back when she stops',
  async (s) => {
    const { teacher, guests } = await lesson(s, 'Geschichte 10a', ['Anna']);
    const [anna] = guests;
    const page = teacher.page;
    await page.locator('#toggle-view').click();
    assert.equal(await page.locator('[data-testid=stage]').getAttribute('data-view'), 'gallery');

    await anna.page.locator('#toggle-screen').click();
    await expectVideoPlaying(page, anna.pid, 'screen');
    assert.equal(await page.locator('[data-testid=stage]').getAttribute('data-view'), 'speaker', 'the share switched to the speaker view');
    const sharing = tile(page, anna.pid);
    assert.ok(await sharing.evaluate((el) => el.classList.contains('featured')), 'the sharing tile is the large one');
    // The whole worksheet, as large as the stage allows, and no black bars around it.
    let shown = null;
    await eventually('the shared screen fills its tile, uncut', async () => {
      shown = await tilePicture(sharing);
      return shown.source === 'screen' && !shown.noPicture && shown.bars <= 0.03;
    }).catch((e) => {
      e.message += `\nlast measurement: ${JSON.stringify(shown)}`;
      throw e;
    });
    assert.equal(shown.cropWidth + shown.cropHeight, 0, `nothing of the screen is cut off (${JSON.stringify(shown)})`);
    assert.ok(shown.tile.width * shown.tile.height >= 0.6 * shown.stage.width * shown.stage.height, `the screen takes most of the stage (${JSON.stringify(shown)})`);
    await screenshot(page, 'meeting-screen-share-large');

    await sharing.locator('button[data-action=fullscreen]').click();
    await eventually('the shared screen fills the monitor', () =>
      page.evaluate(() => document.fullscreenElement?.dataset.source === 'screen'),
    );
    await page.evaluate(() => document.exitFullscreen());

    // The sharer: a small preview in her own tile, not a mirror of the whole stage.
    const own = anna.page.locator('[data-testid=tile][data-self] video[data-source=screen]');
    await eventually('the pupil sees what she shares', async () => (await videoOf(own)).width > 0 && (await own.isVisible()));
    const preview = await box(own);
    const hers = await box(anna.page.locator('[data-testid=stage]'));
    assert.ok(preview.width * preview.height * 4 < hers.width * hers.height, `the preview is small (${JSON.stringify({ preview, hers })})`);

    await anna.page.locator('#toggle-screen').click();
    await sharing.locator('video[data-source=screen]').waitFor({ state: 'hidden', timeout: WAIT });
    await eventually('the gallery comes back', async () => (await page.locator('[data-testid=stage]').getAttribute('data-view')) === 'gallery');
  },
);

suite.test(
  'the control bar has an icon and a label on every button, and the keys M, V, H, C, P and ? do what the help dialog lists, but not while typing a message',
  async (s) => {
    const { teacher, guests } = await lesson(s, 'Englisch 7a', ['Anna']);
    const [anna] = guests;
    const page = anna.page;
    for (const id of ['toggle-mic', 'toggle-camera', 'toggle-screen', 'raise-hand', 'toggle-chat', 'toggle-people', 'leave']) {
      const b = page.locator(`#${id}`);
      assert.equal(await b.locator('svg.icon').count(), 1, `#${id} has an icon`);
      assert.ok((await b.locator('.label').innerText()).trim().length > 2, `#${id} has a label`);
    }
    // The icons are the page's own SVG, not emoji or pictures from elsewhere.
    assert.equal(await page.locator('.controls img').count(), 0);

    await page.keyboard.press('m');
    assert.equal(await pressed(page, '#toggle-mic'), 'false');
    await eventually('the teacher sees her muted', async () => (await participantItem(teacher.page, anna.pid).getAttribute('data-muted')) === 'true');
    await page.keyboard.press('m');
    assert.equal(await pressed(page, '#toggle-mic'), 'true');

    await page.keyboard.press('h');
    assert.equal(await pressed(page, '#raise-hand'), 'true');
    await eventually('the teacher sees her hand', async () => (await participantItem(teacher.page, anna.pid).getAttribute('data-hand')) === 'true');
    await page.keyboard.press('h');
    assert.equal(await pressed(page, '#raise-hand'), 'false');

    await page.keyboard.press('v');
    await eventually('V switches the camera off', async () => (await pressed(page, '#toggle-camera')) === 'false');

    await page.keyboard.press('c');
    assert.equal(await page.locator('#panel-chat').isVisible(), false, 'C hides the chat');
    await page.keyboard.press('c');
    assert.equal(await page.locator('#panel-chat').isVisible(), true, 'C shows it again');
    // Opened to write: the cursor is in the message field; Escape leaves it for the keys.
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'chat-input');
    await page.keyboard.press('Escape');
    assert.notEqual(await page.evaluate(() => document.activeElement?.id), 'chat-input');
    await page.keyboard.press('p');
    assert.equal(await page.locator('#panel-people').isVisible(), false, 'P hides the people');
    await page.keyboard.press('p');
    assert.equal(await page.locator('#panel-people').isVisible(), true);

    // Typing an "m" into the chat is a letter, not a command.
    await page.locator('#chat-input').fill('');
    await page.locator('#chat-input').pressSequentially('mhm');
    assert.equal(await pressed(page, '#toggle-mic'), 'true', 'typing did not mute');
    assert.equal(await pressed(page, '#raise-hand'), 'false', 'typing raised no hand');
    await page.locator('#chat-input').blur();

    await page.keyboard.press('?');
    const help = page.locator('dialog[data-testid=shortcuts]');
    await help.waitFor({ timeout: WAIT });
    const text = await help.innerText();
    for (const key of ['M', 'V', 'H', 'C', 'P', 'G', 'S']) assert.match(text, new RegExp(`^${key}$`, 'm'), `the help lists ${key}`);
    assert.match(text, /Mikrofon/);
    await screenshotBoth(page, 'meeting-shortcuts');
    await page.keyboard.press('Escape');
    await help.waitFor({ state: 'detached', timeout: WAIT });
  },
);

suite.test(
  'raised hands are queued in the order they went up, for everyone; the teacher lowers one, then all',
  async (s) => {
    const { teacher, guests } = await lesson(s, 'Mathematik 9c', ['Anna', 'Ben']);
    const [anna, ben] = guests;
    await ben.page.locator('#raise-hand').click();
    await eventually('the teacher sees Ben\'s hand', async () => (await handQueue(teacher.page)).join() === 'Ben');
    await anna.page.locator('#raise-hand').click();
    await eventually('Ben first, then Anna', async () => (await handQueue(teacher.page)).join() === 'Ben,Anna');
    assert.equal(await teacher.page.locator('[data-testid=hand-badge]').innerText(), '2', 'the people button counts two hands');
    // The pupils see the same queue (themselves named as such).
    await eventually('Anna sees Ben before herself', async () => (await handQueue(anna.page)).length === 2 && (await handQueue(anna.page))[0] === 'Ben');

    await teacher.page.locator('[data-testid=hands] li', { hasText: 'Ben' }).locator('button[data-action=lower-hand]').click();
    await eventually('Ben\'s hand is down for the teacher', async () => (await handQueue(teacher.page)).join() === 'Anna');
    await eventually('and on Ben\'s own page', async () => (await pressed(ben.page, '#raise-hand')) === 'false');
    await ben.page.locator('#toast', { hasText: 'Hand' }).waitFor({ timeout: WAIT });
    await expectNoDuForm(ben.page, 'the pupil whose hand the teacher lowered');

    // Ben again: now after Anna.
    await ben.page.locator('#raise-hand').click();
    await eventually('Anna first, then Ben', async () => (await handQueue(teacher.page)).join() === 'Anna,Ben');
    await teacher.page.locator('#lower-hands').click();
    await teacher.page.locator('[data-testid=hands]').waitFor({ state: 'hidden', timeout: WAIT });
    for (const g of [anna, ben]) {
      await eventually(`${g.label}'s hand is down`, async () => (await pressed(g.page, '#raise-hand')) === 'false');
    }
  },
);

suite.test(
  'messages that arrive while the chat is closed are counted on the chat button; opening the chat shows them and clears the count',
  async (s) => {
    const { teacher, guests } = await lesson(s, 'Chemie 9b', ['Anna']);
    const [anna] = guests;
    const badge = anna.page.locator('[data-testid=chat-badge]');
    await anna.page.locator('#toggle-chat').click();
    assert.equal(await anna.page.locator('#panel-chat').isVisible(), false);
    await sendChat(teacher.page, 'room', 'Bitte Seite 42 aufschlagen');
    await sendChat(teacher.page, 'room', 'Und Aufgabe 3 lesen');
    await eventually('two unread', async () => (await badge.isVisible()) && (await badge.innerText()) === '2');
    await screenshot(anna.page, 'meeting-chat-badge');
    await anna.page.locator('#toggle-chat').click();
    await chatMessages(anna.page, 'Aufgabe 3').waitFor({ timeout: WAIT });
    await badge.waitFor({ state: 'hidden', timeout: WAIT });
    // With the chat open, a room message is read as it comes.
    await sendChat(teacher.page, 'room', 'Danke');
    await chatMessages(anna.page, 'Danke').waitFor({ timeout: WAIT });
    await sleep(300);
    assert.equal(await badge.isVisible(), false, 'no count for a message read as it came');
  },
);

suite.test(
  'the teacher\'s controls are grouped: the invite link copies from inside the meeting, the lobby switches on for the next pupil, and "Alle stumm" mutes every pupil; pupils see none of it',
  async (s) => {
    const { room, teacher, guests } = await lesson(s, 'Physik 12', ['Anna']);
    const [anna] = guests;
    const page = teacher.page;
    const group = page.locator('[data-testid=moderation]');
    for (const id of ['mute-all', 'lower-hands', 'toggle-lobby', 'end-meeting']) {
      assert.equal(await group.locator(`#${id}`).isVisible(), true, `#${id} is in the teacher's group`);
    }
    assert.equal(await anna.page.locator('[data-testid=moderation]').isVisible(), false, 'the pupil has no teacher controls');
    assert.equal(await anna.page.locator('[data-testid=meeting-invite]').isVisible(), false, 'nor the invite link');

    const invite = page.locator('[data-testid=meeting-invite]');
    await eventually('the invite link is shown', async () => (await invite.inputValue()) === room.inviteUrl);
    await page.evaluate(() => navigator.clipboard.writeText(''));
    await page.locator('[data-testid=meeting-copy-invite]').click();
    await eventually('the invite link is on the clipboard', async () => (await page.evaluate(() => navigator.clipboard.readText())) === room.inviteUrl);

    await page.locator('#mute-all').click();
    await eventually('Anna is muted', async () => (await pressed(anna.page, '#toggle-mic')) === 'false');

    await page.locator('#toggle-lobby').click();
    await eventually('the lobby is on', async () => (await pressed(page, '#toggle-lobby')) === 'true');
    const ben = await joinAsGuest(s, room.inviteUrl, 'Ben', { lobby: true });
    await page.locator('[data-testid=lobby] li button[data-action=admit]').click();
    ben.pid = await connected(ben.page, { timeout: MEDIA_WAIT });
    await tile(page, ben.pid).waitFor({ timeout: WAIT });
  },
);

/** Counts the tones a page plays (each note of a chime is one oscillator started). */
function countTones() {
  window.__tones = 0;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    window.__tones += 1;
    return start.apply(this, args);
  };
}
const tones = (page) => page.evaluate(() => window.__tones);

suite.test(
  'the teacher hears a short tone when a pupil knocks in the lobby and when a pupil raises her hand, none for their own hand and none once "Töne" is off; the pupil hears none',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await teacher.context.addInitScript(countTones);
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Musik 5a');
    await openMeeting(teacher, room);
    const page = teacher.page;
    assert.equal(await tones(page), 0, 'no tone on joining');

    await page.locator('#toggle-lobby').click();
    await eventually('the lobby is on', async () => (await pressed(page, '#toggle-lobby')) === 'true');
    const anna = await s.person('guest Anna');
    await anna.context.addInitScript(countTones);
    await anna.page.goto(room.inviteUrl);
    await anna.page.locator('#nickname').fill('Anna');
    await anna.page.locator('#join-submit').click();
    await page.locator('[data-testid=lobby] li button[data-action=admit]').waitFor({ timeout: MEDIA_WAIT });
    await eventually('a tone tells the teacher that Anna knocks', async () => (await tones(page)) > 0);
    await page.locator('[data-testid=lobby] li button[data-action=admit]').click();
    anna.pid = await connected(anna.page);

    let before = await tones(page);
    await page.locator('#raise-hand').click();
    await eventually('the teacher\'s own hand is queued', async () => (await handQueue(page)).length === 1);
    await page.locator('#raise-hand').click();
    await page.locator('[data-testid=hands]').waitFor({ state: 'hidden' });
    assert.equal(await tones(page), before, 'no tone for the teacher\'s own hand');

    await anna.page.locator('#raise-hand').click();
    await eventually('the teacher sees Anna\'s hand', async () => (await handQueue(page)).join() === 'Anna');
    await eventually('and hears it', async () => (await tones(page)) > before);

    // "Töne" off: the next hand is seen, not heard.
    await page.locator('#toggle-sounds').click();
    assert.equal(await pressed(page, '#toggle-sounds'), 'false');
    await anna.page.locator('#raise-hand').click();
    await eventually('Anna\'s hand is down', async () => (await handQueue(page)).length === 0);
    before = await tones(page);
    await anna.page.locator('#raise-hand').click();
    await eventually('the teacher sees Anna\'s hand again', async () => (await handQueue(page)).join() === 'Anna');
    assert.equal(await tones(page), before, 'no tone with "Töne" off');
    assert.equal(await tones(anna.page), 0, 'the pupil heard no tone at all');
    assert.equal(await anna.page.locator('#toggle-sounds').isVisible(), false, 'nor has she a switch for tones');
  },
);

/**
 * How the page shows `name` in `locator`'s element: its text, and whether the name is cut
 * off (by the element or a box around it that hides what overflows, or by the window's
 * edge); if cut, whether with "…" and the full name in a `title` or `aria-label` there.
 */
function nameShown(locator, name) {
  return locator.evaluate((el, name) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0);
    const text = { left: Math.min(...rects.map((r) => r.left)), right: Math.max(...rects.map((r) => r.right)) };
    let cutBy = null;
    if (text.left < -1 || text.right > innerWidth + 1) cutBy = 'the window';
    for (let a = el; a && a !== document.body && !cutBy; a = a.parentElement) {
      if (getComputedStyle(a).overflowX === 'visible') continue;
      const left = a.getBoundingClientRect().left + a.clientLeft;
      if (text.left < left - 1 || text.right > left + a.clientWidth + 1) cutBy = a;
    }
    const around = [];
    for (let a = el; a; a = a.parentElement) around.push(a);
    const full = around.some((a) => (a.getAttribute('title') ?? '').includes(name) || (a.getAttribute('aria-label') ?? '').includes(name));
    return {
      text: el.textContent,
      shown: rects.length > 0,
      cut: cutBy === null ? null : cutBy === 'the window' ? cutBy : `${cutBy.tagName.toLowerCase()}.${[...cutBy.classList].join('.')}`,
      ellipsis: cutBy instanceof Element && getComputedStyle(cutBy).textOverflow === 'ellipsis',
      full,
    };
  }, name);
}

/** `name` stands in full in the element, or is cut with "…" and the full name in a title. */
async function expectFullName(locator, name, where) {
  await locator.waitFor({ timeout: WAIT });
  const r = await nameShown(locator, name);
  assert.ok(r.shown && r.text.includes(name), `${where}: the whole name "${name}" is there (${JSON.stringify(r)})`);
  assert.ok(r.cut === null || (r.ellipsis && r.full), `${where}: "${name}" is shown in full, or cut with "…" and the full name on hover (${JSON.stringify(r)})`);
}

suite.test(
  'long names stand in full wherever a name is shown (pre-join screen, tiles, participants, raised hands, chat), on the teacher\'s 1280×800 screen and on a pupil\'s phone, or cut with "…" where a tile is small and the full name on hover',
  async (s) => {
    const teacherName = { first_name: 'Anne-Katrin', last_name: 'Müller-Lüdenscheidt' };
    const full = `${teacherName.first_name} ${teacherName.last_name}`;
    const pupilName = 'Maximilian-Alexander Rottluff';
    const data = await suite.portal.provisionTeacher(teacherName);
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Kunst 10c');
    await room.locator.locator('a[data-testid=open-room]').click();
    const page = teacher.page;
    await expectFullName(page.locator('[data-testid=prejoin-name]'), full, 'the teacher\'s pre-join screen');
    await passPrejoin(page);
    teacher.pid = await connected(page);

    const max = await s.person('guest Max', { phone: true });
    await max.page.goto(room.inviteUrl);
    await max.page.locator('#nickname').fill(pupilName);
    await max.page.locator('#join-submit').click();
    max.pid = await connected(max.page);
    await expectVideoPlaying(page, max.pid);
    await expectVideoPlaying(max.page, teacher.pid);
    await max.page.locator('#raise-hand').click();
    await page.locator('#raise-hand').click();
    await eventually('both hands are up for the pupil', async () => (await handQueue(max.page)).length === 2);
    await sendChat(page, 'room', 'Heute zeichnen wir Porträts.');
    // On the phone the chat opens below the stage when asked for.
    if (!(await max.page.locator('#panel-chat').isVisible())) await max.page.locator('#toggle-chat').click();
    await sendChat(max.page, 'room', 'Mit Bleistift?');
    await chatMessages(page, 'Mit Bleistift?').waitFor({ timeout: WAIT });

    // The teacher, in the speaker view (the pupil large) and in the gallery.
    const atTeacher = {
      'the pupil\'s tile': tile(page, max.pid).locator('figcaption .name'),
      'the participants list': participantItem(page, max.pid).locator('span').first(),
      'the raised hands': page.locator(`[data-testid=hands] li[data-participant="${max.pid}"] .name`),
      'the chat': chatMessages(page, 'Mit Bleistift?').locator('.meta'),
    };
    for (const [where, locator] of Object.entries(atTeacher)) await expectFullName(locator, pupilName, `teacher, speaker view, ${where}`);
    await screenshot(page, 'meeting-long-names');
    await page.locator('#toggle-view').click();
    await expectFullName(atTeacher['the pupil\'s tile'], pupilName, 'teacher, gallery, the pupil\'s tile');

    // The pupil on the phone: the teacher's tile, the chat, then the people sheet with the hands.
    const p = max.page;
    await expectFullName(tile(p, teacher.pid).locator('figcaption .name'), full, 'pupil\'s phone, the teacher\'s tile');
    await expectFullName(chatMessages(p, 'Porträts').locator('.meta'), full, 'pupil\'s phone, the chat');
    await screenshot(p, 'phone-meeting-long-names');
    await p.locator('#toggle-people').click();
    await expectFullName(participantItem(p, teacher.pid).locator('span').first(), full, 'pupil\'s phone, the participants');
    await expectFullName(p.locator(`[data-testid=hands] li[data-participant="${teacher.pid}"] .name`), full, 'pupil\'s phone, the raised hands');
    await screenshot(p, 'phone-meeting-long-names-people');
  },
);
