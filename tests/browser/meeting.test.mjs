// Meetings in the browser: a teacher and two guests see and hear each other, and a guest's
// screen share reaches the teacher. Every page talks only to the portal and logs no errors.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  aulaSuite,
  logIn,
  createRoom,
  openMeeting,
  joinAsGuest,
  tile,
  participantItem,
  expectVideoPlaying,
  expectAudioFlowing,
  expectMediaOnlyToPortal,
  eventually,
  screenshot,
  sleep,
  WAIT,
} from './harness.mjs';

const suite = aulaSuite('meeting');

suite.test(
  'a teacher creates a room and copies the invite link; two guests join from their own browsers, and every page plays the other two participants\' video and audio',
  async (s) => {
    const portal = suite.portal;
    const data = await portal.provisionTeacher();
    const teacher = await s.person('teacher', { clipboard: true });
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Mathematik 7b');

    // The invite link: shown read-only, a full URL on the portal, and copied as it is shown.
    const invite = room.locator.locator('input[data-testid=invite-url]');
    assert.ok(await invite.evaluate((el) => el.readOnly), 'the invite link field is read-only');
    assert.ok(
      room.inviteUrl.startsWith(`${portal.origin}/`),
      `the invite link ${room.inviteUrl} is a full URL on the portal`,
    );
    await teacher.page.evaluate(() => navigator.clipboard.writeText(''));
    await room.locator.locator('button[data-testid=copy-invite]').click();
    const copied = await eventually('the invite link is on the clipboard', () =>
      teacher.page.evaluate(() => navigator.clipboard.readText()),
    );
    assert.equal(copied, room.inviteUrl);

    await openMeeting(teacher, room);
    const anna = await joinAsGuest(s, copied, 'Anna');
    const ben = await joinAsGuest(s, copied, 'Ben');
    const everyone = [teacher, anna, ben];
    assert.equal(new Set(everyone.map((p) => p.pid)).size, 3, 'three different participant ids');

    for (const viewer of everyone) {
      await viewer.page.locator('[data-testid=tile][data-self]').waitFor({ timeout: WAIT });
      for (const other of everyone.filter((p) => p !== viewer)) {
        await tile(viewer.page, other.pid).waitFor({ timeout: WAIT });
        await expectVideoPlaying(viewer.page, other.pid);
        const heard = await expectAudioFlowing(viewer.page, other.pid);
        assert.equal(heard.audio.track, 'live', `${viewer.label} hears ${other.label}`);
      }
      // Only the two others get tiles of their own (plus one's own preview).
      assert.equal(await viewer.page.locator('[data-testid=tile]:not([data-self])').count(), 2);
      await expectMediaOnlyToPortal(viewer.page, portal);
    }
    for (const other of [anna, ben]) {
      await participantItem(teacher.page, other.pid).waitFor({ timeout: WAIT });
    }
    await screenshot(teacher.page, 'meeting');
    await screenshot(anna.page, 'meeting-guest');

    // Ben leaves: the others no longer show him.
    await ben.page.locator('#leave').click();
    for (const viewer of [teacher, anna]) {
      await tile(viewer.page, ben.pid).waitFor({ state: 'hidden', timeout: WAIT });
    }
    await participantItem(teacher.page, ben.pid).waitFor({ state: 'hidden', timeout: WAIT });
  },
);

suite.test(
  'a guest shares their screen, the teacher sees it in the guest\'s tile next to the camera, and it goes away when the guest stops',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Erdkunde 9a');
    await openMeeting(teacher, room);
    const anna = await joinAsGuest(s, room.inviteUrl, 'Anna');
    await expectVideoPlaying(teacher.page, anna.pid, 'camera');
    await expectSimulcast(anna.page);

    // Sharing replaces the publish connection (simulcast streams cannot be renegotiated):
    // the camera keeps reaching the teacher, still in layers.
    await anna.page.locator('#toggle-screen').click();
    const shared = await expectVideoPlaying(teacher.page, anna.pid, 'screen');
    assert.ok(shared.video.width > 0, 'the shared screen has a size');
    // (The camera keeps coming; whether it is shown beside the screen is the page's choice.)
    await expectVideoPlaying(teacher.page, anna.pid, 'camera', { shown: false });
    await expectSimulcast(anna.page);
    // Large enough to read a worksheet: the whole width of the stage (it once got a
    // 279 px thumbnail), and a button that makes it fill the monitor.
    const sharing = tile(teacher.page, anna.pid);
    await sharing.locator('button[data-action=fullscreen]').waitFor({ timeout: WAIT });
    // The large tile takes the share's shape (never cropped), so it spans the stage's width
    // or its height, whichever the shape meets first.
    const sizes = await teacher.page.evaluate((pid) => {
      const grid = document.querySelector('.grid').getBoundingClientRect();
      const screen = document
        .querySelector(`[data-testid=tile][data-participant=${JSON.stringify(pid)}] video[data-source=screen]`)
        .getBoundingClientRect();
      return { gridW: grid.width, gridH: grid.height, screenW: screen.width, screenH: screen.height };
    }, anna.pid);
    assert.ok(
      sizes.screenW >= 0.85 * sizes.gridW || sizes.screenH >= 0.7 * sizes.gridH,
      `the screen share spans the stage (${JSON.stringify(sizes)})`,
    );
    await screenshot(teacher.page, 'meeting-screen-share');

    // (The screen video may stay in the tile, hidden, or go.)
    await anna.page.locator('#toggle-screen').click();
    await tile(teacher.page, anna.pid)
      .locator('video[data-source=screen]')
      .waitFor({ state: 'hidden', timeout: WAIT });
    await expectVideoPlaying(teacher.page, anna.pid, 'camera');
  },
);

suite.test(
  'when the connection to the media node drops, the page says it is reconnecting and the meeting comes back by itself',
  async (s) => {
    const portal = suite.portal;
    const data = await portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Physik 8a');
    await openMeeting(teacher, room);
    const anna = await joinAsGuest(s, room.inviteUrl, 'Anna');
    await expectVideoPlaying(anna.page, teacher.pid);

    // The signalling connection breaks (as when the network drops).
    await anna.page.evaluate(() => window.__aula.signalling.close());
    await eventually('the page shows that it is reconnecting', () =>
      anna.page.locator('[data-testid=status]').getAttribute('data-state').then((s) => s === 'reconnecting' || null),
    );
    await eventually('the page is connected again', () =>
      anna.page.locator('[data-testid=status]').getAttribute('data-state').then((s) => s === 'connected' || null),
      { timeout: 15_000 },
    );
    await expectVideoPlaying(anna.page, teacher.pid);
    await expectVideoPlaying(teacher.page, anna.pid);
  },
);

/** Drops every UDP datagram to `port` on loopback (the media node's port) until `restore`:
 * a node that hangs or is cut off answers nothing and closes nothing. Needs root and nft
 * (tests/browser/install.sh installs Debian's nftables). */
function cutUdp(port) {
  const table = `aula_browser_test_${process.pid}`;
  const nft = (...args) => execFileSync('nft', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  nft('add', 'table', 'netdev', table);
  const restore = () => nft('delete', 'table', 'netdev', table);
  try {
    nft('add', 'chain', 'netdev', table, 'in', '{ type filter hook ingress device lo priority 0; }');
    nft('add', 'rule', 'netdev', table, 'in', 'meta', 'protocol', 'ip', 'udp', 'dport', String(port), 'drop');
  } catch (e) {
    restore();
    throw e;
  }
  return { restore };
}

const statusOf = (page) => page.locator('[data-testid=status]').getAttribute('data-state');

suite.test(
  'when the media node stops answering while the signalling stays open, the page stops saying "Verbunden" within seconds, never claims it while no media flows, and the meeting comes back once the node answers',
  async (s) => {
    const portal = suite.portal;
    const data = await portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Chemie 10b');
    await openMeeting(teacher, room);
    const anna = await joinAsGuest(s, room.inviteUrl, 'Anna');
    await expectVideoPlaying(anna.page, teacher.pid);
    assert.ok(portal.mediaUdp, 'the portal logged its media UDP address');

    const cut = cutUdp(Number(portal.mediaUdp.split(':').pop()));
    try {
      // Each browser notices missing ICE consent answers by itself, after about 5 s.
      for (const [who, page] of [['the guest', anna.page], ['the teacher', teacher.page]]) {
        await eventually(`${who}'s page no longer says it is connected`, async () => (await statusOf(page)) !== 'connected', {
          timeout: 10_000,
        });
      }
      // It rejoins over the still-working signalling, but media cannot flow: never "Verbunden".
      const until = Date.now() + 15_000;
      while (Date.now() < until) {
        assert.notEqual(await statusOf(anna.page), 'connected', 'the page claims a connection while no media flows');
        assert.notEqual(await statusOf(teacher.page), 'connected', 'the teacher\'s page claims a connection too');
        await sleep(250);
      }
    } finally {
      cut.restore();
    }
    await eventually('the page is connected again', async () => (await statusOf(anna.page)) === 'connected', {
      timeout: 30_000,
    });
    await expectVideoPlaying(anna.page, teacher.pid);
    await expectVideoPlaying(teacher.page, anna.pid);
  },
);

/** Waits until the page sends its camera in at least two simulcast layers. */
async function expectSimulcast(page) {
  const layers = () =>
    page.evaluate(async () => {
      const sent = {};
      (await window.__aula.publish.getStats()).forEach((r) => {
        if (r.type === 'outbound-rtp' && r.kind === 'video' && r.rid) sent[r.rid] = r.bytesSent;
      });
      return sent;
    });
  // Chrome starts a higher layer only once its bandwidth estimate reaches it, which on a
  // busy machine (CI's two cores, three browsers) has taken more than 5 s after the first
  // picture arrived.
  return eventually(
    'the camera goes out in two or more simulcast layers',
    async () => {
      const a = await layers();
      await new Promise((resolve) => setTimeout(resolve, 500));
      const b = await layers();
      const growing = Object.keys(b).filter((rid) => b[rid] > (a[rid] ?? 0));
      return growing.length >= 2 && growing;
    },
    { timeout: 3 * WAIT },
  );
}

/** Audio packets the page's publish connection has sent so far. */
function audioPacketsSent(page) {
  return page.evaluate(async () => {
    let sent = 0;
    (await window.__aula.publish.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'audio') sent += r.packetsSent;
    });
    return sent;
  });
}

/** Audio packets the page sends in three seconds. */
async function audioPacketsIn3s(page) {
  const before = await audioPacketsSent(page);
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  return (await audioPacketsSent(page)) - before;
}

suite.test(
  'a guest who turns their microphone off sends almost no audio packets (Opus DTX), and a full stream again once it is on',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Physik 9a');
    await openMeeting(teacher, room);
    const anna = await joinAsGuest(s, room.inviteUrl, 'Anna');
    await expectAudioFlowing(teacher.page, anna.pid);

    // Opus sends a packet every 20 ms while the microphone is on: about 150 in 3 s.
    const on = await audioPacketsIn3s(anna.page);
    assert.ok(on >= 100, `with the microphone on, ${on} audio packets in 3 s`);

    await anna.page.locator('#toggle-mic').click();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // Silence with DTX: a comfort-noise update every 400 ms or so instead of 50 packets/s.
    const off = await audioPacketsIn3s(anna.page);
    assert.ok(off <= 30, `with the microphone off, ${off} audio packets in 3 s (without DTX about 150)`);

    await anna.page.locator('#toggle-mic').click();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const again = await audioPacketsIn3s(anna.page);
    assert.ok(again >= 100, `with the microphone on again, ${again} audio packets in 3 s`);
    await expectAudioFlowing(teacher.page, anna.pid);
  },
);
