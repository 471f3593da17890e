// The ministry's administration in the browser: the first admin sets an own password, creates
// teachers one by one or from a spreadsheet list, blocks and unblocks with a reason the audit
// log shows, and the operator's password reset on the server. Screenshots go to
// target/browser-artifacts/.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { aulaSuite, createRoom, eventually, logIn, portalBinary, screenshot, screenshotBoth, WAIT } from './harness.mjs';

const suite = aulaSuite('admin');
const run = promisify(execFile);

/** Logs in on /login as someone whose password was handed over: the portal asks for an own one
 *  first; sets it and ends on /rooms. */
async function firstLogin(page, email, handedOver, own) {
  await page.goto('/login');
  await page.locator('#login-email').fill(email);
  await page.locator('#login-password').fill(handedOver);
  await page.locator('#login-submit').click();
  await page.waitForURL((u) => u.pathname === '/password', { timeout: WAIT });
  await page.locator('#password-required').waitFor();
  // Going elsewhere first does not get around it.
  await page.goto('/rooms');
  await page.waitForURL((u) => u.pathname === '/password', { timeout: WAIT });
  // Nor does calling the API: the server refuses all but the change (and the own data).
  for (const path of ['/api/rooms', '/api/admin/moderators']) {
    const refused = await page.request.get(path);
    assert.equal(refused.status(), 403, `${path} before the password is changed`);
    assert.equal((await refused.json()).error.code, 'password_change_required');
  }
  assert.equal((await page.request.get('/api/me')).status(), 200, 'the own account stays readable');
  await page.locator('#password-current').fill(handedOver);
  await page.locator('#password-new').fill(own);
  await page.locator('#password-repeat').fill(`${own}x`);
  await page.locator('#password-submit').click();
  await eventually('a mismatch is pointed out', async () =>
    (await page.locator('#password-problem').innerText()).trim().length > 0,
  );
  await page.locator('#password-repeat').fill(own);
  await page.locator('#password-submit').click();
  await page.waitForURL((u) => u.pathname === '/rooms', { timeout: WAIT });
}

/** The admin, logged in with an own password (set on the first login, once per portal). */
async function admin(s) {
  const person = await s.person('admin');
  const portal = suite.portal;
  if (!portal.adminOwnPassword) {
    portal.adminOwnPassword = `${portal.password}-Verwaltung`;
    await firstLogin(person.page, 'admin@aula.local', portal.password, portal.adminOwnPassword);
    portal.adminPasswordIs(portal.adminOwnPassword);
  } else {
    await person.page.goto('/login');
    await person.page.locator('#login-email').fill('admin@aula.local');
    await person.page.locator('#login-password').fill(portal.adminOwnPassword);
    await person.page.locator('#login-submit').click();
    await person.page.waitForURL((u) => u.pathname === '/rooms', { timeout: WAIT });
  }
  await person.page.locator('nav a[href="/admin"]').click();
  await person.page.locator('#teachers tbody tr').first().waitFor();
  return person;
}

function teacherList(n, bad) {
  const lines = ['Nachname;Vorname;E-Mail;Bundesland;Schule'];
  for (let i = 1; i <= n; i++) {
    const email = bad[i] === 'email' ? `kein-at-zeichen-${i}` : `import${i}.${Date.now()}@schule.example`;
    const state = bad[i] === 'state' ? 'Atlantis' : i % 2 ? 'Bayern' : 'DE-HE';
    lines.push(`Import${i};"Anna ${i}";${email};${state};"Gymnasium ""Am See"""`);
  }
  return lines.join('\r\n');
}

suite.test(
  'an admin imports 50 teachers from a spreadsheet list, sees the 2 bad lines by number before anything is created, hands over the credentials as a file, and a teacher of the list must set an own password at the first login',
  async (s) => {
    const portal = suite.portal;
    const { page } = await admin(s);
    const before = (await portal.accounts()).length;
    // Line numbers count the header: teacher 7 is on line 8, teacher 31 on line 32.
    await page.locator('#import-text').fill(teacherList(50, { 7: 'email', 31: 'state' }));
    await page.locator('#import-check').click();
    const summary = page.locator('#import-summary');
    await eventually('the check reports 48 fine lines and 2 with errors', async () => {
      const text = await summary.innerText().catch(() => '');
      return text.includes('48') && text.includes('2');
    });
    const problems = page.locator('.problems li');
    assert.equal(await problems.count(), 2, 'exactly the two bad lines are listed');
    assert.match(await page.locator('.problems li[data-line="8"]').innerText(), /E-Mail/);
    assert.match(await page.locator('.problems li[data-line="32"]').innerText(), /Bundesland/);
    // In German only: the API's English detail stays off the German page.
    assert.doesNotMatch(await page.locator('.problems').innerText(), /not valid|federal state/);
    assert.equal((await portal.accounts()).length, before, 'checking creates nothing');
    await screenshotBoth(page, 'admin-import-checked');

    await page.locator('#import-create').click();
    // 48 Argon2id hashes: seconds on a loaded machine with the dev build.
    await eventually(
      '48 accounts are created',
      async () => (await summary.innerText().catch(() => '')).includes('48 Konten angelegt'),
      { timeout: 90_000 },
    );
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: WAIT }),
      page.locator('#credentials-download').click(),
    ]);
    const file = await download.path();
    const rows = fs
      .readFileSync(file, 'utf8')
      .replace(/^\ufeff/, '')
      .trim()
      .split(/\r\n/)
      .map((l) => l.split(';'));
    assert.deepEqual(rows[0], ['Nachname', 'Vorname', 'E-Mail', 'Erstes Passwort']);
    assert.equal(rows.length, 49, 'one line per created teacher');
    const accounts = await portal.accounts();
    assert.equal(accounts.length, before + 48);
    const imported = accounts.find((a) => a.email === rows[5][2]);
    assert.ok(imported, 'the teacher of the file exists');
    assert.equal(imported.organisation, 'Gymnasium "Am See"');
    assert.equal(imported.must_change_password, true);
    await screenshotBoth(page, 'admin-import-done');

    // A teacher of the list logs in with the delivered password and must set an own one.
    const teacher = await s.person('teacher');
    await firstLogin(teacher.page, rows[5][2], rows[5][3], 'Ein eigenes Passwort für den Unterricht');
    await screenshot(teacher.page, 'rooms-after-first-login');
    const after = (await portal.accounts()).find((a) => a.email === rows[5][2]);
    assert.equal(after.must_change_password, false, 'the own password is set');

    // The same list again: every line's email is taken now.
    await page.locator('#import-check').click();
    await eventually('the second check finds every address taken', async () =>
      (await page.locator('.problems li').count()) === 50,
    );

    // The list of teachers reads as a German list does, numbers by their value.
    await page.reload();
    await eventually('the list shows the imported teachers', async () => (await page.locator('#teachers tbody tr').count()) >= 49);
    const imports = (await page.locator('#teachers tbody td.title').allInnerTexts())
      .map((n) => n.split(',')[0].trim())
      .filter((n) => n.startsWith('Import'));
    assert.deepEqual(imports.slice(0, 7), ['Import1', 'Import2', 'Import3', 'Import4', 'Import5', 'Import6', 'Import8'], `in order: ${imports.join(', ')}`);
    assert.ok(imports.indexOf('Import9') < imports.indexOf('Import10'), `Import9 before Import10: ${imports.join(', ')}`);
  },
  { timeout: 180_000 },
);

suite.test(
  'an admin creates one teacher, blocks and unblocks the account with a reason, finds both with the reason in the audit log, and cannot block their own account',
  async (s) => {
    const { page } = await admin(s);
    await page.locator('#new-last_name').fill('Einzeln');
    await page.locator('#new-first_name').fill('Berta');
    const email = `einzeln.${Date.now()}@schule.example`;
    await page.locator('#new-email').fill(email);
    await page.locator('#new-federal_state').selectOption('DE-SN');
    await page.locator('#new-organisation').fill('Oberschule Mitte');
    await page.locator('#new-submit').click();
    const password = page.locator('[data-testid=initial-password]');
    await password.waitFor();
    assert.ok((await password.innerText()).length >= 16, 'the initial password is shown once');

    const row = page.locator(`#teachers tr[data-email="${email}"]`);
    await row.waitFor();
    assert.match(await row.innerText(), /Sachsen/);
    const act = async (action, reason) => {
      await row.locator(`[data-action=${action}]`).click();
      const dialog = page.locator('[data-testid=reason-dialog]');
      await dialog.locator('#reason').fill(reason);
      await dialog.locator('[data-answer=yes]').click();
    };
    await act('restrict', 'Az. 2026-117: Dienstende');
    await eventually('the row says blocked', async () => /gesperrt/.test(await row.innerText()));
    await act('unrestrict', 'Az. 2026-118: Rückkehr');
    await eventually('the row says active', async () => /aktiv/.test(await row.innerText()));

    await page.locator('#audit-load').click();
    const audit = page.locator('#audit tbody');
    await eventually('both actions are in the audit log with their reasons', async () => {
      const text = await audit.innerText();
      return text.includes('Az. 2026-117: Dienstende') && text.includes('Az. 2026-118: Rückkehr') && text.includes('Konto gesperrt');
    });
    await page.locator('#audit-filter').fill('2026-118');
    await eventually('the filter keeps only the matching entry', async () => (await audit.locator('tr').count()) === 1);

    const own = page.locator('#teachers tr[data-email="admin@aula.local"]');
    assert.equal(await own.locator('[data-action=restrict]').count(), 0, 'no block button on the own account');
    assert.equal(await own.locator('[data-action=erase]').count(), 0, 'no delete button on the own account');
    await screenshot(page, 'admin');
  },
);

suite.test(
  'the operator resets a lost admin password on the server: the old one and the old sessions stop working and the new one must be changed at the next login',
  async (s) => {
    const portal = suite.portal;
    const { page } = await admin(s);
    const { stdout } = await run(
      portalBinary(),
      ['admin', 'reset-password', 'admin@aula.local', '--data-dir', portal.dataDir],
      { env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AULA_'))), timeout: 30_000 },
    );
    const fresh = stdout.match(/New password for admin@aula\.local \(admin\): (\S+)/)?.[1];
    assert.ok(fresh, `the command prints the new password: ${stdout}`);
    const old = await portal.api('POST', '/api/auth/login', {
      body: { email: 'admin@aula.local', password: portal.adminOwnPassword },
    });
    assert.equal(old.status, 401, 'the old password no longer works');
    const me = await page.request.get('/api/me');
    assert.equal(me.status(), 401, 'the old session has ended');
    const visitor = await s.person('admin again');
    portal.adminOwnPassword = `${fresh}-neu-gesetzt`;
    await firstLogin(visitor.page, 'admin@aula.local', fresh, portal.adminOwnPassword);
    portal.adminPasswordIs(portal.adminOwnPassword);
    assert.equal((await portal.accounts()).find((a) => a.email === 'admin@aula.local').must_change_password, false);
  },
);

suite.test(
  "a teacher schedules tomorrow's 8:00 lesson with 30 expected, sees it in the room and in the admin's forecast for tomorrow morning, and the forecast drops it once the teacher deletes it",
  async (s) => {
    const portal = suite.portal;
    const teacher = await portal.provisionTeacher();
    const t = await s.person('teacher');
    await logIn(t.page, teacher);
    const room = await createRoom(t.page, 'Abitur Mathematik');
    const plan = room.locator.locator('[data-testid=schedule]');
    await plan.locator('summary').click();
    // The form proposes tomorrow at 8:00; the teacher sets the class size and a double lesson.
    assert.equal(await plan.locator('[data-testid=schedule-time]').inputValue(), '08:00');
    await plan.locator('[data-testid=schedule-expected]').fill('30');
    await plan.locator('[data-testid=schedule-minutes]').fill('90');
    await plan.locator('[data-testid=schedule-submit]').click();
    const line = plan.locator('[data-testid=scheduled-meeting]');
    await eventually('the plan is listed with its size', async () => /90 Minuten, 30 erwartet/.test(await line.innerText()));
    // Still there after a reload: it is stored, not only shown.
    await t.page.reload();
    await room.locator.locator('[data-testid=schedule] summary').click();
    await eventually('the plan is listed after a reload', async () => (await line.count()) === 1);

    const a = await admin(s);
    const peak = a.page.locator('[data-testid=forecast-peak]');
    await eventually('the forecast names the peak of 30', async () => /Spitze: 30 Teilnehmende/.test(await peak.innerText()));
    const rows = a.page.locator('#forecast tbody tr');
    // The expected participants of the slot beginning at `time` (the third column).
    const expectedAt = async (time) =>
      (await rows.filter({ has: a.page.locator('td.title', { hasText: time }) }).locator('td').nth(2).innerText()).trim();
    // Seats are held from half an hour before the bell until the lesson ends (8:00–9:30).
    assert.equal(await expectedAt('07:00'), '0');
    assert.equal(await expectedAt('07:30'), '30');
    assert.equal(await expectedAt('09:00'), '30');
    assert.equal(await expectedAt('09:30'), '0');
    await screenshotBoth(a.page, 'admin-forecast');

    await line.locator('[data-testid=delete-scheduled]').click();
    await eventually('the plan is gone from the room', async () => (await line.count()) === 0);
    await a.page.reload();
    await eventually('the forecast is empty again', async () => /nichts geplant/.test(await peak.innerText()));
  },
);
