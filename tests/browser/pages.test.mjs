// The portal's pages besides the meeting: logging in (German first, English on request),
// managing rooms, the privacy notice, and "Meine Daten" (export, correction, restriction,
// erasure). Screenshots of each go to target/browser-artifacts/.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  aulaSuite,
  logIn,
  createRoom,
  describeRoom,
  roomNamed,
  setLobby,
  clickAndConfirm,
  eventually,
  screenshot,
  sleep,
  SUPERVISORY_AUTHORITY,
  DATA_PROTECTION_OFFICER,
  WAIT,
  QUIET,
} from './harness.mjs';

const suite = aulaSuite('pages');

const bodyText = (page) => page.locator('body').innerText();

suite.test(
  'the login page is German even in an English browser, switches to English and back, tells a wrong password, and logs a teacher in to "Meine Räume"',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const visitor = await s.person('teacher', { locale: 'en-US' });
    const { page } = visitor;
    await page.goto('/login');
    const lang = page.locator('select#lang');
    assert.equal(await lang.inputValue(), 'de', 'German by default');
    const submit = page.locator('#login-submit');
    await submit.waitFor();
    const german = { page: await bodyText(page), button: (await submit.innerText()).trim() };
    assert.ok(german.button, 'the login button is labelled');
    await screenshot(page, 'login');

    await lang.selectOption('en');
    const english = await eventually('the page turns English', async () => {
      const button = (await submit.innerText()).trim();
      return button && button !== german.button && { page: await bodyText(page), button };
    });
    assert.notEqual(english.page, german.page);
    await screenshot(page, 'login-en');
    await lang.selectOption('de');
    await eventually(
      'the page is German again',
      async () => (await submit.innerText()).trim() === german.button,
    );

    // A wrong password: an error, and no way in. (The refused login may show up in the
    // console as a failed request: that is expected here.)
    s.allowConsoleErrors(/Failed to load resource: the server responded with a status of 40[13]/);
    await page.locator('#login-email').fill(data.email);
    await page.locator('#login-password').fill(`${data.password}-falsch`);
    await page.locator('#login-submit').click();
    const error = page.locator('[data-testid=login-error]');
    await error.waitFor({ timeout: WAIT });
    assert.ok((await error.innerText()).trim().length > 0, 'the error says something');
    assert.equal(new URL(page.url()).pathname, '/login');

    await logIn(page, data);
    await page.getByText('Meine Räume').first().waitFor({ timeout: WAIT });
  },
);

suite.test(
  'a teacher who opens their invite link in their own browser is offered to join as the teacher or to use a private window, and can log out there to join as a guest; fields keep the cursor',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const { page } = await s.person('teacher');
    await page.goto('/login');
    await eventually('the cursor is in the email field', () =>
      page.evaluate(() => document.activeElement?.id === 'login-email'),
    );
    await logIn(page, data);
    const room = await createRoom(page, 'Erdkunde 7c');
    assert.equal(
      await page.evaluate(() => getComputedStyle(document.getElementById('main')).outlineStyle),
      'none',
      'no frame runs round the content',
    );

    // The README says: try the link yourself. In the same browser that would join with the
    // teacher's login and put the other window out of the meeting.
    const second = await page.context().newPage();
    await second.goto(room.inviteUrl);
    const offer = second.locator('[data-testid=join-teacher]');
    await offer.waitFor({ timeout: WAIT });
    assert.match(await offer.innerText(), /Erdkunde 7c/, 'the teacher is told it is their room');
    assert.match(await offer.innerText(), /privaten Fenster/, 'and how to see it as a guest');
    assert.equal(await second.locator('#nickname').count(), 0, 'no guest form that would join with the login');
    assert.equal(
      await second.locator('[data-testid=join-as-teacher]').getAttribute('href'),
      `/meeting/${room.id}`,
      'joining as the teacher opens the meeting',
    );
    await second.locator('[data-testid=join-logout-as-guest]').click();
    await second.locator('#nickname').waitFor({ timeout: WAIT });
    await eventually('the cursor is in the nickname field', () =>
      second.evaluate(() => document.activeElement?.id === 'nickname'),
    );
    await second.close();
  },
);

suite.test(
  'on "Meine Räume" a teacher creates rooms, each with its own invite link, and renames one, switches its lobby on and deletes another, all of which a reload keeps',
  async (s) => {
    const data = await suite.portal.provisionTeacher();
    const teacher = await s.person('teacher');
    const { page } = teacher;
    await logIn(page, data);
    const chemie = await createRoom(page, 'Chemie 9b');
    const kunst = await createRoom(page, 'Kunst AG');
    assert.notEqual(chemie.id, kunst.id);
    assert.notEqual(chemie.inviteUrl, kunst.inviteUrl, 'each room has its own invite link');
    await screenshot(page, 'rooms');

    // Rename: by a prompt or by an edit field in the room, whichever the page offers.
    teacher.promptAnswer = 'Chemie 9b (Labor)';
    const dialog = page.waitForEvent('dialog', { timeout: QUIET }).catch(() => null);
    await chemie.locator.locator('button[data-testid=rename-room]').click();
    if (!(await dialog)) {
      const field = chemie.locator.getByRole('textbox', { name: 'Neuer Name des Raums' });
      await field.fill(teacher.promptAnswer);
      await field.press('Enter');
    }
    await roomNamed(page, 'Chemie 9b (Labor)').waitFor({ timeout: WAIT });

    await setLobby(page, chemie, true);

    const before = await page.locator('[data-testid=room]').count();
    await clickAndConfirm(page, kunst.locator.locator('button[data-testid=delete-room]'));
    await kunst.locator.waitFor({ state: 'detached', timeout: WAIT });
    assert.equal(await page.locator('[data-testid=room]').count(), before - 1);

    await page.reload();
    const renamed = await describeRoom(page, roomNamed(page, 'Chemie 9b (Labor)'), 'Chemie 9b (Labor)');
    assert.equal(renamed.id, chemie.id);
    assert.equal(renamed.inviteUrl, chemie.inviteUrl, 'renaming keeps the invite link');
    assert.ok(await renamed.locator.locator('input[data-testid=room-lobby]').isChecked());
    await sleep(200);
    assert.equal(await page.locator(`[data-testid=room][data-room-id="${kunst.id}"]`).count(), 0);
  },
);

suite.test(
  'the privacy notice names the supervisory authority and the data protection officer, lists every kind of record kept and everything the browser keeps, in plain German: no English description, no field name as the description, the audit log\'s 365 days and its purpose',
  async (s) => {
    const { page } = await s.person('visitor');
    await page.goto('/privacy');
    const authority = page.locator('[data-testid=privacy-authority]');
    await authority.waitFor({ timeout: WAIT });
    assert.ok((await authority.innerText()).includes(SUPERVISORY_AUTHORITY));
    assert.ok(
      (await page.locator('[data-testid=privacy-dpo]').innerText()).includes(DATA_PROTECTION_OFFICER),
    );
    const kinds = (await suite.portal.api('GET', '/api/privacy')).body.records.length;
    assert.ok(kinds > 0);
    const rows = page.locator('[data-testid=privacy-records] tr');
    await rows.first().waitFor({ timeout: WAIT });
    assert.ok((await rows.count()) >= kinds, `at least one row per kind of record (${kinds})`);
    // Plain German: the page's own words, not the API's English descriptions.
    const notice = (await suite.portal.api('GET', '/api/privacy')).body;
    const text = await page.locator('main').innerText();
    for (const r of notice.records) {
      assert.ok(!text.includes(r.description), `"${r.description}" is said in German`);
      const described = await page.locator(`[data-testid=privacy-records] tr[data-kind=${r.kind}] th`).innerText();
      assert.match(described, /[a-zäöüß]{3,} [a-zäöüß]{3,}/i, `${r.kind} is described in words`);
    }
    for (const word of ['operating_the_service', 'abuse_detection', "embedded store"]) {
      assert.ok(!text.includes(word), `no "${word}" on the German page`);
    }
    const audit = await page.locator('[data-testid=privacy-records] tr[data-kind=audit]').innerText();
    assert.match(audit, /365 Tage/, 'the audit log is kept 365 days');
    assert.match(audit, /Behörden/, 'and says what for');
    const browser = page.locator('[data-testid=privacy-browser]');
    for (const b of notice.browser_storage) {
      const item = await browser.locator(`li[data-name="${b.name}"]`).innerText();
      assert.ok(!item.includes(b.description), `${b.name} is described in German`);
    }
    assert.match(await browser.innerText(), /aula\.lang[^\n]*Sprach/, 'the language choice in localStorage is declared');
    assert.match(await browser.innerText(), /aula\.chat[^\n]*Chat/, 'and the chat cache');
    await screenshot(page, 'privacy');
  },
);

suite.test(
  'on "Meine Daten" a teacher downloads their data as JSON, corrects their first name, and restricts their account, which then cannot log in',
  async (s) => {
    const portal = suite.portal;
    const data = await portal.provisionTeacher({ first_name: 'Erika' });
    const teacher = await s.person('teacher');
    const { page } = teacher;
    await logIn(page, data);
    await page.goto('/me');

    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: WAIT }),
      page.locator('#export').click(),
    ]);
    const exported = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
    assert.ok(JSON.stringify(exported).includes(data.email), 'the export holds the account');
    await screenshot(page, 'me');
    // The Bundesland by its name, not its code.
    const state = page.locator('#correct-federal-state');
    assert.equal(await state.inputValue(), data.federal_state);
    assert.equal((await state.locator('option:checked').innerText()).trim(), 'Bayern');

    // Correct the first name in the correction field that holds it.
    const fields = page.locator('[id^=correct-]:is(input, select, textarea)');
    await fields.first().waitFor({ timeout: WAIT });
    const ids = await fields.evaluateAll((els) => els.map((e) => ({ id: e.id, value: e.value })));
    const first =
      ids.find((f) => /first/i.test(f.id)) ?? ids.find((f) => f.value === data.first_name);
    assert.ok(first, `a correction field for the first name among ${JSON.stringify(ids)}`);
    await page.locator(`#${first.id}`).fill('Erika-Marie');
    await page.locator('#correct-submit').click();
    await eventually('the correction is saved', async () => {
      const me = await page.request.get('/api/me');
      return me.ok() && (await me.json()).first_name === 'Erika-Marie';
    });

    // Restrict: the account is blocked and cannot log in any more.
    await clickAndConfirm(page, page.locator('#restrict'));
    await eventually('the account is restricted', async () => {
      const account = (await portal.accounts()).find((a) => a.email === data.email);
      return account?.status === 'restricted';
    });
    const refused = await portal.api('POST', '/api/auth/login', {
      body: { email: data.email, password: data.password },
    });
    assert.equal(refused.status, 403, 'a restricted account cannot log in');
    assert.equal(refused.body?.error?.code, 'account_restricted');
  },
);

suite.test('on "Meine Daten" a teacher erases their account, which then no longer exists', async (s) => {
  const portal = suite.portal;
  const data = await portal.provisionTeacher();
  const teacher = await s.person('teacher');
  const { page } = teacher;
  await logIn(page, data);
  await createRoom(page, 'Wird gelöscht');
  await page.goto('/me');
  await page.locator('#delete-account').waitFor();

  // Erasure asks for the password: in a prompt, or in a password field on the page (shown
  // from the start or after the first click).
  teacher.promptAnswer = data.password;
  // (Checked in the admin's list: failed logins would count towards the lockout.)
  const gone = async () => !(await portal.accounts()).some((a) => a.email === data.email);
  const password = page.locator('input[type=password]').filter({ visible: true });
  for (let attempt = 0; attempt < 2 && !(await gone()); attempt++) {
    if ((await password.count()) === 1 && !(await password.inputValue())) {
      await password.fill(data.password);
    }
    await clickAndConfirm(page, page.locator('#delete-account'));
    await sleep(500);
  }
  await eventually('the account is gone', gone);
  const refused = await portal.api('POST', '/api/auth/login', {
    body: { email: data.email, password: data.password },
  });
  assert.equal(refused.status, 401, 'an erased account cannot log in');
  const me = await page.request.get('/api/me');
  assert.ok(!me.ok(), 'the old session is gone too');
});
