// Every page on a phone (390×844 with touch, and the meeting also held sideways at 844×390),
// and an axe-core audit (WCAG 2.1 A and AA) of every page on the desktop and on the phone:
// login, "Meine Räume", "Mein Konto", the forced password change, the administration, the
// privacy notice, the invite page, the lobby, the pre-join screen and the meeting as teacher
// and pupil (screenshots phone-*.png, and *-desktop.png at 1280×800, in
// target/browser-artifacts/); and a pupil chatting on a phone with the teacher in view,
// upright (also with the on-screen keyboard up) and sideways.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import {
  aulaSuite,
  logIn,
  createRoom,
  setLobby,
  passPrejoin,
  connected,
  openMeeting,
  expectVideoPlaying,
  chatMessages,
  tile,
  eventually,
  screenshot,
  WAIT,
  MEDIA_WAIT,
} from './harness.mjs';

const suite = aulaSuite('phone');
const AXE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const TOUCH = 44;

/** The admin's own password (set once per portal through the API, as on a first login). */
async function adminData() {
  const portal = suite.portal;
  if (!portal.adminOwnPassword) {
    const cookie = await portal.login('admin@aula.local', portal.password);
    const own = `${portal.password}-Verwaltung`;
    const res = await portal.api('POST', '/api/me/password', { body: { current: portal.password, new: own }, cookie });
    assert.equal(res.status, 204, `the admin's own password is set (${JSON.stringify(res.body)})`);
    portal.adminOwnPassword = own;
    portal.adminPasswordIs(own);
  }
  return { email: 'admin@aula.local', password: portal.adminOwnPassword };
}

/** What axe-core finds against WCAG 2.1 A and AA on the page as it is, one line per node. */
async function axeViolations(page) {
  // Evaluated through the DevTools protocol: the page's CSP forbids inline scripts, rightly.
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    });
    if (result.passes.length === 0) throw new Error('axe-core checked nothing on the page');
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ')}`),
    }));
  });
  return violations.flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}, ${v.help}) ${n}`));
}

/**
 * What a phone user would trip over on the page as it is: a page wider than the screen,
 * and controls (buttons, links that stand alone, fields, selects, summaries; a checkbox by
 * its label) smaller than 44×44 px or (partly) outside the screen's width.
 */
function layoutProblems(page) {
  return page.evaluate((touch) => {
    const problems = [];
    const width = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth > width + 1) {
      problems.push(`the page scrolls sideways (${document.documentElement.scrollWidth} px wide on a ${width} px screen)`);
    }
    const describe = (el) => {
      const text = (el.getAttribute('aria-label') || el.textContent || el.id || '').trim().replace(/\s+/g, ' ').slice(0, 40);
      return `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''} "${text}"`;
    };
    // A link inside running text is exempt (WCAG 2.5.5 and 2.5.8 say so too).
    const inText = (el) =>
      el.tagName === 'A' &&
      getComputedStyle(el).display === 'inline' &&
      [...el.parentElement.childNodes].some((n) => n !== el && n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    const controls = document.querySelectorAll('button, a[href], input, select, textarea, summary, [role=button]');
    for (let el of controls) {
      if (el.closest('.sr-only, .skip') || !el.checkVisibility({ visibilityProperty: true, opacityProperty: true })) continue;
      if (inText(el)) continue;
      if (el.matches('input[type=checkbox], input[type=radio]') && el.closest('label')) el = el.closest('label');
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.width < touch - 0.5 || r.height < touch - 0.5) {
        problems.push(`${describe(el)} is ${Math.round(r.width)}×${Math.round(r.height)} px`);
      }
      if (r.left < -0.5 || r.right > width + 0.5) {
        problems.push(`${describe(el)} reaches outside the screen (${Math.round(r.left)}…${Math.round(r.right)} of ${width} px)`);
      }
    }
    return [...new Set(problems)];
  }, TOUCH);
}

/** Checks one screen: the phone's layout rules (on a phone), axe, and a screenshot (phone-NAME.png
 * on the phone, NAME.png at 1280×800). */
async function check(found, page, name, { phone = true } = {}) {
  await page.waitForLoadState('networkidle').catch(() => {});
  const layout = phone ? await layoutProblems(page) : [];
  const axe = await axeViolations(page);
  for (const p of layout) found.layout.push(`${name}: ${p}`);
  for (const v of axe) found.axe.push(`${name}: ${v}`);
  found.pages.push(name);
  await screenshot(page, phone ? `phone-${name}` : name);
}

function report(found) {
  const lines = [];
  if (found.layout.length) lines.push(`${found.layout.length} layout problems:`, ...found.layout.map((x) => `  ${x}`));
  if (found.axe.length) lines.push(`${found.axe.length} axe-core violations:`, ...found.axe.map((x) => `  ${x}`));
  if (lines.length) console.log(lines.join('\n'));
  assert.deepEqual(found.layout, [], `every page fits a phone with controls of at least ${TOUCH} px (pages: ${found.pages.join(', ')})`);
  assert.deepEqual(found.axe, [], `axe-core finds nothing against WCAG 2.1 AA (pages: ${found.pages.join(', ')})`);
}

/**
 * Walks every page as the given kind of device: the teacher logs in, opens the room, passes
 * the pre-join screen; a pupil opens the invite link, knocks, is admitted; both open the chat
 * and the participants; the forced password change and the administration; the privacy page.
 */
async function walk(s, { phone }) {
  const found = { layout: [], axe: [], pages: [] };
  const suffix = phone ? '' : '-desktop';
  const device = { phone };
  const data = await suite.portal.provisionTeacher({ first_name: 'Friederike', last_name: 'Müller-Lüdenscheidt' });
  const teacher = await s.person('teacher', { ...device, clipboard: true });
  const tp = teacher.page;

  await tp.goto('/login');
  await tp.locator('#login-submit').waitFor();
  await check(found, tp, `login${suffix}`, device);
  await logIn(tp, data);
  const room = await createRoom(tp, 'Mathematik 7b');
  await setLobby(tp, room, true);
  await check(found, tp, `rooms${suffix}`, device);
  await tp.goto('/me');
  await tp.locator('h1').waitFor();
  await check(found, tp, `me${suffix}`, device);
  await tp.goto('/privacy');
  await tp.locator('h1').waitFor();
  await check(found, tp, `privacy${suffix}`, device);

  // The teacher's pre-join screen, then the meeting.
  await tp.goto(`/meeting/${room.id}`);
  await tp.locator('[data-testid=prejoin-preview]').waitFor({ state: 'attached' });
  await check(found, tp, `prejoin${suffix}`, device);
  await passPrejoin(tp);
  teacher.pid = await connected(tp);

  // A pupil: the invite page (her pre-join screen), the lobby, the meeting.
  const pupil = await s.person('guest Anna', device);
  const pp = pupil.page;
  await pp.goto(room.inviteUrl);
  await pp.locator('#nickname').waitFor();
  await check(found, pp, `join${suffix}`, device);
  await pp.locator('#nickname').fill('Anna');
  await pp.locator('#join-submit').click();
  await pp.locator('[data-testid=lobby-waiting]').waitFor({ timeout: MEDIA_WAIT });
  await check(found, pp, `lobby-waiting${suffix}`, device);
  const knock = tp.locator('[data-testid=lobby] li[data-participant] button[data-action=admit]');
  if (phone && !(await knock.isVisible())) await tp.locator('#toggle-people').click();
  await knock.waitFor({ timeout: MEDIA_WAIT });
  await check(found, tp, `meeting-lobby${suffix}`, device);
  await knock.click();
  pupil.pid = await connected(pp);
  await tp.locator(`[data-testid=tile][data-participant="${pupil.pid}"]`).waitFor({ timeout: MEDIA_WAIT });
  await pp.locator(`[data-testid=tile][data-participant="${teacher.pid}"]`).waitFor({ timeout: MEDIA_WAIT });
  if (phone) await closePanels(tp);
  await check(found, tp, `meeting-teacher${suffix}`, device);
  if (phone) await closePanels(pp);
  await check(found, pp, `meeting-guest${suffix}`, device);
  if (phone) {
    await openPanel(pp, 'chat');
    await pp.locator('#chat-input').fill('Guten Morgen!');
    await pp.locator('#chat-send').click();
    await check(found, pp, 'meeting-guest-chat', device);
    await closePanels(pp);
    await openPanel(tp, 'people');
    await check(found, tp, 'meeting-teacher-people', device);
    await closePanels(tp);
    await openPanel(tp, 'chat');
    await tp.locator('[data-testid=chat-message]').filter({ hasText: 'Guten Morgen!' }).waitFor();
    await check(found, tp, 'meeting-teacher-chat', device);
    await closePanels(tp);
    // The teacher's group, the view and the invite link open from "Mehr".
    await tp.locator('#more-controls').click();
    await tp.locator('[data-testid=more-sheet] #mute-all').waitFor();
    assert.equal(await tp.locator('[data-testid=more-sheet] [data-testid=meeting-invite]').inputValue(), room.inviteUrl);
    await check(found, tp, 'meeting-teacher-more', device);
    await tp.locator('#more-controls').click();
    await tp.locator('[data-testid=more-sheet]').waitFor({ state: 'hidden' });
    // Held sideways.
    await pp.setViewportSize({ width: 844, height: 390 });
    await tp.setViewportSize({ width: 844, height: 390 });
    await check(found, pp, 'landscape-meeting-guest', device);
    await check(found, tp, 'landscape-meeting-teacher', device);
  } else {
    await pp.locator('#chat-input').fill('Guten Morgen!');
    await pp.locator('#chat-send').click();
    await tp.locator('[data-testid=chat-message]').filter({ hasText: 'Guten Morgen!' }).waitFor();
    await check(found, tp, 'meeting-teacher-chat-desktop', device);
  }

  // A new teacher's first login: the forced password change.
  const fresh = await suite.portal.provisionTeacher({}, { keepInitialPassword: true });
  const newcomer = await s.person('new teacher', device);
  await newcomer.page.goto('/login');
  await newcomer.page.locator('#login-email').fill(fresh.email);
  await newcomer.page.locator('#login-password').fill(fresh.initial_password);
  await newcomer.page.locator('#login-submit').click();
  await newcomer.page.locator('#password-required').waitFor();
  await check(found, newcomer.page, `password${suffix}`, device);

  // The administration.
  const admin = await s.person('admin', device);
  await logIn(admin.page, await adminData());
  await admin.page.goto('/admin');
  await admin.page.locator('#teachers tbody tr').first().waitFor();
  await check(found, admin.page, `admin${suffix}`, device);

  report(found);
}

/** Opens the chat (below or beside the stage) or the participants (a sheet over the meeting) on the phone. */
async function openPanel(page, which) {
  const button = page.locator(`#toggle-${which}`);
  if ((await button.getAttribute('aria-pressed')) !== 'true') await button.click();
  await page.locator(`#panel-${which}`).waitFor();
}

/** Closes whatever sheet is open, with its close button. */
async function closePanels(page) {
  for (const which of ['chat', 'people']) {
    if ((await page.locator(`#toggle-${which}`).getAttribute('aria-pressed')) === 'true') {
      await page.locator(`#panel-${which} button[data-action=close-panel]`).click();
      await eventually(`the ${which} sheet closes`, async () => (await page.locator(`#toggle-${which}`).getAttribute('aria-pressed')) === 'false', { timeout: WAIT });
    }
  }
}

suite.test(
  'on a phone every page fits the screen without sideways scrolling, every control is at least 44 px and on the screen, the meeting shows the teacher first with the chat below or beside them and the participants as a sheet, and axe-core finds no WCAG 2.1 AA violation',
  (s) => walk(s, { phone: true }),
  { timeout: 180_000 },
);

suite.test(
  'on the desktop axe-core finds no WCAG 2.1 AA violation on any page: login, rooms, account, privacy, pre-join, invite, lobby, meeting as teacher and pupil, password change, administration',
  (s) => walk(s, { phone: false }),
  { timeout: 180_000 },
);

/** Where an element is on the screen: its box, how much of it is inside the window, and
 * whether it is what a finger at its visible centre would touch (nothing covers it). */
function onScreen(locator) {
  return locator.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const [vw, vh] = [window.innerWidth, window.innerHeight];
    const left = Math.max(r.left, 0);
    const right = Math.min(r.right, vw);
    const top = Math.max(r.top, 0);
    const bottom = Math.min(r.bottom, vh);
    const hit = right > left && bottom > top ? document.elementFromPoint((left + right) / 2, (top + bottom) / 2) : null;
    return {
      top: Math.round(r.top),
      bottom: Math.round(r.bottom),
      left: Math.round(r.left),
      right: Math.round(r.right),
      visibleWidth: Math.round(Math.max(0, right - left)),
      visibleHeight: Math.round(Math.max(0, bottom - top)),
      whole: r.top >= -0.5 && r.left >= -0.5 && r.bottom <= vh + 0.5 && r.right <= vw + 0.5,
      uncovered: !!hit && (hit === el || el.contains(hit)),
      window: `${vw}×${vh}`,
    };
  });
}

/** While the pupil writes in the chat the teacher stays in view: at least `height` px of the
 * teacher's tile, uncovered, with the picture playing; the message field and the send
 * button whole on the screen and not covered; the cursor in the field. */
async function teacherInViewWhileChatting(pupil, teacherPid, { height, width }) {
  const page = pupil.page;
  const teacherTile = await onScreen(tile(page, teacherPid));
  const input = await onScreen(page.locator('#chat-input'));
  const send = await onScreen(page.locator('#chat-send'));
  const seen = JSON.stringify({ teacherTile, input, send });
  assert.ok(teacherTile.uncovered, `the chat does not cover the teacher (${seen})`);
  assert.ok(teacherTile.visibleHeight >= height && teacherTile.visibleWidth >= width, `the teacher's tile shows at least ${width}×${height} px (${seen})`);
  assert.ok(input.whole && input.uncovered && send.whole && send.uncovered, `the message field and the send button are on the screen (${seen})`);
  assert.ok(input.bottom <= teacherTile.top || input.top >= teacherTile.bottom || input.left >= teacherTile.right, `the field is beside or below the teacher, not on top (${seen})`);
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'chat-input', 'the cursor is in the message field');
  await expectVideoPlaying(page, teacherPid);
}

suite.test(
  'on a phone the pupil chats with the teacher in view: upright the chat takes the lower part, also with the on-screen keyboard up; sideways it stands beside the teacher',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    await logIn(teacher.page, data);
    const room = await createRoom(teacher.page, 'Biologie 6a');
    await openMeeting(teacher, room);
    const pupil = await s.person('guest Anna', { phone: true });
    const pp = pupil.page;
    await pp.goto(room.inviteUrl);
    await pp.locator('#nickname').fill('Anna');
    await pp.locator('#join-submit').click();
    pupil.pid = await connected(pp);
    await expectVideoPlaying(pp, teacher.pid);

    // Upright: opening the chat puts the cursor in the field, the teacher stays above.
    await openPanel(pp, 'chat');
    await teacherInViewWhileChatting(pupil, teacher.pid, { width: 300, height: 200 });
    await pp.locator('#chat-input').fill('Ich habe eine Frage zu Aufgabe 3.');
    await pp.locator('#chat-send').click();
    await chatMessages(teacher.page, 'Ich habe eine Frage zu Aufgabe 3.').first().waitFor({ timeout: WAIT });
    await pp.locator('#chat-input').focus();
    await screenshot(pp, 'phone-meeting-chat');

    // The on-screen keyboard takes the lower 336 px: Chrome on Android shrinks the page to
    // what is left (the page's viewport asks it to), which is what this emulates.
    await pp.setViewportSize({ width: 390, height: 508 });
    await teacherInViewWhileChatting(pupil, teacher.pid, { width: 250, height: 140 });
    await screenshot(pp, 'phone-meeting-chat-keyboard');
    await pp.setViewportSize({ width: 390, height: 844 });

    // Sideways: the chat beside the teacher.
    await pp.setViewportSize({ width: 844, height: 390 });
    await pp.locator('#chat-input').focus();
    await teacherInViewWhileChatting(pupil, teacher.pid, { width: 300, height: 170 });
    await screenshot(pp, 'phone-landscape-meeting-chat');

    // Closing the chat gives the chat's room to the teacher.
    const beside = await onScreen(tile(pp, teacher.pid));
    await closePanels(pp);
    await eventually('the teacher grows when the chat closes', async () => {
      const whole = await onScreen(tile(pp, teacher.pid));
      return whole.visibleWidth > beside.visibleWidth + 50 && whole.visibleHeight >= beside.visibleHeight - 1;
    });
  },
  { timeout: 120_000 },
);
