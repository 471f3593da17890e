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
  sendChat,
  chatMessages,
  WAIT,
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
);
