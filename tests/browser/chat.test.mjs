// Chat in the browser: room messages and private messages arrive live, the history is
// there after a reload, and a private message stays between its two participants.

import assert from 'node:assert/strict';
import {
  aulaSuite,
  logIn,
  createRoom,
  openMeeting,
  joinAsGuest,
  connected,
  passPrejoin,
  sendChat,
  chatMessages,
  TEST_TIMEOUT,
  WAIT,
  eventually,
} from './harness.mjs';

const suite = aulaSuite('chat');

/** The one message with `text` on the page, once it is there; checks its attributes. */
async function expectMessage(page, text, { conversation, author }) {
  const msg = chatMessages(page, text);
  await msg.first().waitFor({ state: 'attached', timeout: WAIT });
  assert.equal(await msg.count(), 1, `"${text}" is shown once`);
  const got = await msg.evaluate((el) => ({
    conversation: el.dataset.conversation,
    author: el.dataset.author,
    text: el.textContent,
  }));
  assert.ok(
    Array.isArray(conversation) ? conversation.includes(got.conversation) : got.conversation === conversation,
    `"${text}" belongs to ${JSON.stringify(conversation)}, not ${got.conversation}`,
  );
  assert.equal(got.author, author, `"${text}" is by ${author}`);
  assert.ok(got.text.includes(text));
  // Chat lines read from the left edge like any chat (they were once centred).
  const indent = await msg.evaluate((el) => {
    const body = el.querySelector('.body') || el.lastElementChild;
    return body.getBoundingClientRect().left - el.getBoundingClientRect().left;
  });
  assert.ok(indent < 12, `"${text}" starts at the left edge of its line (indent ${indent} px)`);
}

/** `text` is nowhere on the page: no message element and not in the page's text. */
async function expectNoMessage(page, text) {
  assert.equal(await chatMessages(page, text).count(), 0, `"${text}" is not shown`);
  const body = await page.evaluate(() => document.body.textContent);
  assert.ok(!body.includes(text), `"${text}" is nowhere on the page`);
}

suite.test(
  'a room message and a private message arrive live; after a reload the history is there; the third participant never sees the private message',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Deutsch 8c');
    await openMeeting(teacher, room);
    const anna = await joinAsGuest(s, room.inviteUrl, 'Anna');
    const ben = await joinAsGuest(s, room.inviteUrl, 'Ben');
    const everyone = [teacher, anna, ben];

    const hello = 'Guten Morgen, bitte Seite 42 aufschlagen.';
    const secret = 'Darf ich kurz etwas früher gehen? (nur für Sie)';
    const later = 'Danke, alle zusammen – bis morgen!';
    const privately = [`p/${anna.pid}/${teacher.pid}`, `p/${teacher.pid}/${anna.pid}`];

    // Live: the room message reaches everyone, the private one its two participants.
    await sendChat(teacher.page, 'room', hello);
    for (const p of everyone) {
      await expectMessage(p.page, hello, { conversation: 'room', author: teacher.pid });
    }
    await sendChat(anna.page, teacher.pid, secret);
    for (const p of [teacher, anna]) {
      await expectMessage(p.page, secret, { conversation: privately, author: anna.pid });
    }
    // Ben got everything sent after the private message, and still not the private one.
    await sendChat(teacher.page, 'room', later);
    await expectMessage(ben.page, later, { conversation: 'room', author: teacher.pid });
    await expectNoMessage(ben.page, secret);

    // The history comes back from the portal, not only from what a browser kept: the
    // teacher comes back on another device, Anna reloads with her browser storage cleared,
    // Ben simply reloads.
    await teacher.context.close();
    const again = await s.person('teacher on another device');
    await logIn(again.page, data);
    await again.page.goto(`/meeting/${room.id}`);
    await passPrejoin(again.page);
    assert.equal(await connected(again.page), teacher.pid, 'the teacher is the same participant');
    await anna.page.evaluate(() => {
      localStorage.clear();
      sessionStorage.clear();
    });
    for (const p of [anna, ben]) {
      await p.page.reload();
      assert.equal(await connected(p.page), p.pid, `${p.label} is the same participant after a reload`);
    }
    for (const p of [again, anna, ben]) {
      await expectMessage(p.page, hello, { conversation: 'room', author: teacher.pid });
      await expectMessage(p.page, later, { conversation: 'room', author: teacher.pid });
    }
    for (const p of [again, anna]) {
      await expectMessage(p.page, secret, { conversation: privately, author: anna.pid });
    }
    await expectNoMessage(ben.page, secret);
    // Ben can write to the room and to each of the others, not to himself.
    const options = await ben.page
      .locator('select#chat-to option')
      .evaluateAll((os) => os.map((o) => o.value));
    for (const to of ['room', teacher.pid, anna.pid]) {
      assert.ok(options.includes(to), `Ben can write to ${to} (recipients: ${options})`);
    }
    assert.ok(!options.includes(ben.pid), 'nobody writes privately to themselves');
  },
  // Four browser contexts, three joins through the pre-join screen and two reloads: 55 s on
  // the quiet 2-core machine, too close to the default minute.
  { timeout: 2 * TEST_TIMEOUT },
);

/** The chat messages one browser keeps for `me` (all rooms), from its localStorage. */
async function keptChat(page) {
  return page.evaluate(() => {
    const kept = {};
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (key.startsWith('aula.chat.')) kept[key] = JSON.parse(localStorage.getItem(key));
    }
    return kept;
  });
}

const bodies = (kept) => Object.values(kept).flat().map((m) => m.body);

suite.test(
  'the chat a browser keeps never outlives the server: deleted and expired messages leave it, and logging out empties it',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Chemie 10a');
    await openMeeting(teacher, room);
    const anna = await joinAsGuest(s, room.inviteUrl, 'Anna');

    const stays = 'Protokoll bis Freitag abgeben.';
    const deleted = 'Falscher Link, bitte ignorieren.';
    await sendChat(teacher.page, 'room', stays);
    await sendChat(teacher.page, 'room', deleted);
    for (const p of [teacher, anna]) await expectMessage(p.page, deleted, { conversation: 'room', author: teacher.pid });
    await eventually('both messages are kept in Anna\'s browser', async () => {
      const kept = bodies(await keptChat(anna.page));
      return [stays, deleted].every((b) => kept.includes(b));
    });

    // The teacher deletes one message on the server; Anna's copy goes when she comes back.
    const id = await chatMessages(teacher.page, deleted).first().getAttribute('data-id');
    const status = await teacher.page.evaluate(
      async ({ room, id }) => (await fetch(`/api/rooms/${room}/chat/${id}`, { method: 'DELETE' })).status,
      { room: room.id, id },
    );
    assert.equal(status, 204, 'the teacher deleted the message');
    await anna.page.reload();
    await connected(anna.page);
    await expectMessage(anna.page, stays, { conversation: 'room', author: teacher.pid });
    await eventually('the deleted message left the page and the browser', async () =>
      (await chatMessages(anna.page, deleted).count()) === 0 && !bodies(await keptChat(anna.page)).includes(deleted),
    );

    // A message older than the server's retention (6 months) is never shown from the
    // cache, not even while the server cannot be reached.
    const ancient = 'Nachricht aus dem letzten Schuljahr';
    await anna.page.evaluate(
      ({ ancient }) => {
        const key = Object.keys(localStorage).find((k) => k.startsWith('aula.chat.'));
        const kept = JSON.parse(localStorage.getItem(key));
        const old = { ...kept[0], id: `0${kept[0].id.slice(1)}`, body: ancient, posted_at: Date.now() - 184 * 86_400_000 };
        localStorage.setItem(key, JSON.stringify([old, ...kept]));
      },
      { ancient },
    );
    s.allowConsoleErrors(/Failed to load resource: net::ERR_FAILED/);
    await anna.page.route('**/api/rooms/*/chat*', (r) => r.abort());
    await anna.page.reload();
    await connected(anna.page);
    await expectMessage(anna.page, stays, { conversation: 'room', author: teacher.pid });
    await expectNoMessage(anna.page, ancient);
    assert.ok(!bodies(await keptChat(anna.page)).includes(ancient), 'the expired message left the browser');
    await anna.page.unroute('**/api/rooms/*/chat*');

    // Logging out empties what the teacher's browser kept; the language choice stays.
    assert.ok(bodies(await keptChat(teacher.page)).includes(stays), 'the teacher\'s browser kept the chat');
    await teacher.page.goto('/rooms');
    await teacher.page.locator('#logout').click();
    await teacher.page.waitForURL((u) => u.pathname === '/login', { timeout: WAIT });
    assert.deepEqual(await keptChat(teacher.page), {}, 'no chat is left in the browser after logout');
    const left = await teacher.page.evaluate(() => Object.keys(localStorage));
    assert.ok(left.every((k) => k === 'aula.lang'), `only the language choice is left: ${left}`);
  },
);
