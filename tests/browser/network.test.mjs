// Meetings over the networks pupils have: a pupil's Chromium runs in a network namespace of
// its own (netns.mjs), behind a bandwidth cap, random loss, a firewall or an outage, while
// the teacher sits on a clean link.

import assert from 'node:assert/strict';
import {
  logIn,
  createRoom,
  openMeeting,
  joinAsGuest,
  tile,
  expectVideoPlaying,
  expectAudioFlowing,
  expectMediaOnlyToPortal,
  WAIT,
} from './harness.mjs';
import { netnsSuite } from './netns.mjs';

const suite = netnsSuite('network', { namespaces: ['pupil'] });

/** The local addresses of the page's selected candidate pairs (where its media leaves from). */
function localAddresses(page) {
  return page.evaluate(async () => {
    const out = [];
    for (const pc of [window.__aula?.publish, window.__aula?.subscribe]) {
      if (!pc) continue;
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
        const local = stats.get(stats.get(r.selectedCandidatePairId)?.localCandidateId);
        if (local) out.push(local.address);
      });
    }
    return out;
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
    const locals = await localAddresses(pupil.page);
    assert.ok(locals.length > 0, 'the pupil has selected candidate pairs');
    for (const a of locals) assert.equal(a, link.address, 'the pupil sends from their own link');
    const passed = await link.shaperStats();
    assert.ok(passed.down?.bytes > 100_000, `the downlink cap passed the teacher's media: ${JSON.stringify(passed)}`);
    assert.ok(passed.up?.bytes > 100_000, `the uplink cap passed the pupil's media: ${JSON.stringify(passed)}`);
  },
);
