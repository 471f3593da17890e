// The browser test harness: the real portal binary, real headless Chromium (Debian's
// `chromium`), driven by playwright-core, under Node's built-in test runner.
//
// A test file calls `aulaSuite(name)` once: that starts one portal (fresh data directory)
// and one Chromium for the whole file and stops both at the end. Each test is written with
// `suite.test(sentence, async (s) => …)`, where `s` is a Scenario: it opens its own browser
// contexts (one per person), records every request, console error and page error of every
// page, closes its contexts at the end, and fails the test if any page talked to another
// origin than the portal or logged an error. The rest of this file are the steps the
// tests are made of (log in, create a room, join as a guest, …) and the probes of what a
// page receives (video frames decoded, audio packets received), all against the DOM
// contract in README.md beside this file.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const ARTIFACTS = path.resolve(
  process.env.AULA_BROWSER_ARTIFACTS || path.join(ROOT, 'target', 'browser-artifacts'),
);
export const CHROMIUM = process.env.AULA_CHROMIUM || '/usr/bin/chromium';

// Every wait is bounded. AULA_BROWSER_TIMEOUT_SCALE stretches them all on a slow machine.
export const SCALE = Number(process.env.AULA_BROWSER_TIMEOUT_SCALE || 1) || 1;
/** One wait for the page to show something. */
export const WAIT = 5_000 * SCALE;
/** Media to flow: ICE, DTLS, the first keyframe. */
export const MEDIA_WAIT = 10_000 * SCALE;
/** How long a page must stay quiet to count as "it did not happen". */
export const QUIET = 1_500 * SCALE;
/** One test, setup included. */
export const TEST_TIMEOUT = 60_000 * SCALE;

/**
 * The flags Chromium runs with.
 *
 * Screen sharing in headless Chromium: there is no picker to click, so
 * `getDisplayMedia({video: true})` only resolves with `--use-fake-ui-for-media-stream`,
 * which picks a fake "Entire screen" source at once (label `screen:-3:0`, displaySurface
 * `monitor`, 1280x720 at 30 fps; frames keep coming). Without it the promise never settles,
 * `--auto-select-desktop-capture-source=…` changes nothing in headless (it names an entry of
 * the picker, which headless does not show), and `--auto-accept-this-tab-capture` only
 * answers `getDisplayMedia({preferCurrentTab: true})` (it captures the tab itself). The
 * auto-select flag stays for runs with a display (AULA_HEADED=1).
 */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--auto-select-desktop-capture-source=Entire screen',
];

const ADMIN_EMAIL = 'admin@aula.local';
/** What the privacy page must name (passed to the portal; the defaults say "not configured"). */
export const SUPERVISORY_AUTHORITY =
  'Bayerisches Landesamt für Datenschutzaufsicht (Testumgebung)';
export const DATA_PROTECTION_OFFICER = 'Datenschutzbeauftragte der Testschule, dsb@schule.example';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A file name from any text. */
function slug(text) {
  return (
    String(text)
      .normalize('NFKD')
      .replace(/[^\w.-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 80) || 'unnamed'
  );
}

/** A value for a CSS attribute selector: `[data-participant=${css(pid)}]`. */
export function css(value) {
  return JSON.stringify(String(value));
}

// ---- German: "Sie", never "du" ------------------------------------------------------------

// Aula addresses everyone, teacher and pupil, with "Sie" (a teacher who saw "du" in the
// meeting and "Sie" elsewhere took it for a mistake). These are the words that give a "du"
// away: the pronouns, singular and plural, and the second-person verb forms the pages could
// use. "ihr" is left out: it is also "her" ("ihr Konto").
const DU_FORMS = new RegExp(
  `(?<!\\p{L})(${[
    'du', 'dich', 'dir', 'dein', 'deine', 'deinen', 'deinem', 'deiner', 'deines',
    'euch', 'euer', 'eure', 'euren', 'eurem', 'eurer', 'eures',
    'bist', 'hast', 'kannst', 'wirst', 'wurdest', 'musst', 'darfst', 'sollst', 'willst', 'möchtest',
  ].join('|')})(?!\\p{L})`,
  'giu',
);

/** The words of a German text that address the reader with "du" (none: []). */
export function duForms(text) {
  return [...String(text).matchAll(DU_FORMS)].map((m) => m[0]);
}

/**
 * Everything `page` shows or reads out in German addresses the reader with "Sie": its visible
 * text, its last message (toast), and the labels, titles and placeholders a screen reader or
 * a hovering mouse gives.
 */
export async function expectNoDuForm(page, who) {
  const text = await page.evaluate(() =>
    [
      document.body.innerText,
      // The last message that popped up, also once it has gone again.
      document.getElementById('toast')?.textContent ?? '',
      ...[...document.querySelectorAll('[aria-label], [title], [placeholder]')].flatMap((el) =>
        ['aria-label', 'title', 'placeholder'].map((a) => el.getAttribute(a) ?? ''),
      ),
    ].join('\n'),
  );
  assert.deepEqual(duForms(text), [], `${who} is addressed with "Sie" everywhere on the page:\n${text}`);
}

// ---- waiting ------------------------------------------------------------------------------

/**
 * Calls `probe` until it returns a truthy value (which is returned) or the time is up; then
 * throws an error that says what was awaited and what the last probe saw or threw.
 */
export async function eventually(what, probe, { timeout = WAIT, every = 200 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
      last = value;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) {
      const seen =
        last instanceof Error ? `last error: ${last.message}` : `last seen: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting until ${what} (${seen})`);
    }
    await sleep(every);
  }
}

// ---- the portal ---------------------------------------------------------------------------

/** The portal binary: the run script's AULA_BIN, or the debug build. */
export function portalBinary() {
  return path.resolve(process.env.AULA_BIN || path.join(ROOT, 'target', 'debug', 'aula'));
}

function stripAnsi(s) {
  return s.replace(/\x1b\[[0-9;]*m/g, '');
}

/** One running `aula serve` on a fresh data directory, and its HTTP API from Node. */
export class Portal {
  /**
   * Starts the portal, reads the admin's initial password and the URL it prints, and checks
   * that it serves the frontend (a page at /login); on any failure it stops again and throws.
   */
  static async start(name, { listen = '127.0.0.1:0', args = [], env: extraEnv = {} } = {}) {
    const bin = portalBinary();
    if (!fs.existsSync(bin)) {
      throw new Error(
        `the portal binary ${bin} does not exist: build it (cargo build --bin aula) or set AULA_BIN`,
      );
    }
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aula-browser-'));
    const logPath = path.join(ARTIFACTS, `${slug(name)}.portal.log`);
    const log = fs.createWriteStream(logPath);
    // The portal's own AULA_* settings come from us only (the test script may have set some
    // for the API tests, e.g. AULA_STORE).
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('AULA_')),
    );
    Object.assign(env, {
      NO_COLOR: '1',
      RUST_LOG: process.env.AULA_BROWSER_RUST_LOG || 'info',
      AULA_STORE: 'embedded',
      AULA_SUPERVISORY_AUTHORITY: SUPERVISORY_AUTHORITY,
      AULA_DATA_PROTECTION_OFFICER: DATA_PROTECTION_OFFICER,
      ...extraEnv,
    });
    const child = spawn(bin, ['serve', '--listen', listen, '--data-dir', dataDir, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const portal = new Portal(child, dataDir, logPath, log);
    try {
      await portal.#started();
      await portal.#servesFrontend();
      return portal;
    } catch (e) {
      await portal.stop();
      throw e;
    }
  }

  constructor(child, dataDir, logPath, log) {
    this.child = child;
    this.dataDir = dataDir;
    this.logPath = logPath;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    this.exitStatus = null;
    this.exited.then((s) => (this.exitStatus = s));
    this.password = null;
    this.origin = null;
    /** The media node's UDP address, from the log (`udp=127.0.0.1:PORT`). */
    this.mediaUdp = null;
    this.#waiters = [];
    const line = (stream, tag) => {
      readline.createInterface({ input: stream }).on('line', (raw) => {
        const text = stripAnsi(raw);
        log.write(`${tag} ${text}\n`);
        this.#lines.push(text);
        this.#parse(text);
      });
    };
    line(child.stdout, 'out|');
    line(child.stderr, 'err|');
    // Never leave a portal behind, even when the test process dies.
    this.#killOnExit = () => child.exitCode === null && child.kill('SIGKILL');
    process.on('exit', this.#killOnExit);
    this.#log = log;
  }

  #lines = [];
  #waiters;
  #killOnExit;
  #log;

  #parse(text) {
    const password = text.match(/initial password (\S+)/);
    if (password) this.password = password[1];
    const url = text.match(/Aula is running at (https?:\/\/[^\s/]+)/);
    if (url) this.origin = url[1];
    const udp = text.match(/\budp=(\S+:\d+)/);
    if (udp && !this.mediaUdp) this.mediaUdp = udp[1];
    this.#waiters = this.#waiters.filter((w) => !w());
  }

  async #started() {
    const ready = new Promise((resolve) => {
      const check = () => {
        if (this.password && this.origin) {
          resolve();
          return true;
        }
        return false;
      };
      if (!check()) this.#waiters.push(check);
    });
    const timeout = 30_000 * SCALE;
    const outcome = await Promise.race([
      ready.then(() => 'ready'),
      this.exited.then(() => 'exited'),
      sleep(timeout).then(() => 'timeout'),
    ]);
    if (outcome === 'ready') return;
    const tail = this.#lines.slice(-15).join('\n');
    if (outcome === 'exited') {
      throw new Error(
        `the portal exited (${JSON.stringify(this.exitStatus)}) before it printed its password and URL:\n${tail}`,
      );
    }
    throw new Error(
      `the portal printed no "initial password" and "Aula is running at" lines within ${timeout} ms:\n${tail}`,
    );
  }

  /** Fails clearly when the portal has no frontend (yet). */
  async #servesFrontend() {
    const res = await fetch(this.url('/login'), { redirect: 'manual' });
    const type = res.headers.get('content-type') || '';
    if (res.status !== 200 || !type.includes('text/html')) {
      throw new Error(
        `the portal serves no login page: GET ${this.url('/login')} answered ${res.status} ` +
          `(${type || 'no content type'}), not an HTML page; the frontend (web/) is missing or not served by this binary`,
      );
    }
  }

  url(p = '/') {
    return new URL(p, this.origin).href;
  }

  get host() {
    return new URL(this.origin).host;
  }

  /** A lines of the portal's output since it started (for failure messages). */
  tail(n = 20) {
    return this.#lines.slice(-n).join('\n');
  }

  /**
   * One API call from Node. `cookie` is a Cookie header value (from `login`). Resolves to
   * `{ status, body, cookie }`, where `cookie` holds the cookies the answer set.
   */
  async api(method, p, { body, cookie } = {}) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (cookie) headers.cookie = cookie;
    const res = await fetch(this.url(p), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    const set = res.headers.getSetCookie().map((c) => c.split(';')[0]);
    return { status: res.status, body: parsed, cookie: set.join('; ') };
  }

  /** Logs in through the API; resolves to the session cookie, or throws. */
  async login(email, password) {
    const res = await this.api('POST', '/api/auth/login', { body: { email, password } });
    if (res.status !== 200 || !res.cookie) {
      throw new Error(`API login of ${email} failed: ${res.status} ${JSON.stringify(res.body)}`);
    }
    return res.cookie;
  }

  /** The admin's session cookie for API calls. The portal allows a handed-over password
   *  nothing but its change, so the first use sets the admin's own password (as a newcomer
   *  does first) and `adminOwnPassword` says which. */
  async adminCookie() {
    this.#admin ??= this.#adminSession();
    return this.#admin;
  }
  #admin;

  async #adminSession() {
    const cookie = await this.login(ADMIN_EMAIL, this.password);
    const me = await this.api('GET', '/api/me', { cookie });
    if (me.body?.must_change_password) {
      const own = `${this.password}-Verwaltung`;
      const res = await this.api('POST', '/api/me/password', { body: { current: this.password, new: own }, cookie });
      if (res.status !== 204) {
        throw new Error(`setting the admin's own password failed: ${res.status} ${JSON.stringify(res.body)}`);
      }
      this.password = own;
      this.adminOwnPassword = own;
    }
    return cookie;
  }

  /** The admin's password changed (a test set an own one, or the operator reset it): the
   *  API calls log in with the new one. */
  adminPasswordIs(password) {
    this.password = password;
    this.#admin = undefined;
  }

  /**
   * Has the admin provision a teacher (POST /api/admin/moderators); resolves to the
   * profile with `password` (the teacher's own, set after the first login, or with
   * `keepInitialPassword` the initial one), `initial_password` and `account`.
   */
  async provisionTeacher(profile = {}, { keepInitialPassword = false } = {}) {
    const n = ++Portal.#teachers;
    const teacher = {
      last_name: 'Lehrerin',
      first_name: `Erika${n}`,
      email: `lehrkraft${n}.${Date.now()}@schule.example`,
      federal_state: 'DE-BY',
      organisation: 'Gymnasium Teststadt',
      ...profile,
    };
    const res = await this.api('POST', '/api/admin/moderators', {
      body: teacher,
      cookie: await this.adminCookie(),
    });
    if (res.status !== 201 || !res.body?.initial_password) {
      throw new Error(`provisioning a teacher failed: ${res.status} ${JSON.stringify(res.body)}`);
    }
    // The portal asks for an own password at the first login (the initial one was handed
    // over); the teachers of the tests have set theirs, unless a test wants the first login.
    const initial = res.body.initial_password;
    if (!keepInitialPassword) {
      const own = `${initial}-eigenes`;
      const cookie = await this.login(teacher.email, initial);
      const changed = await this.api('POST', '/api/me/password', { body: { current: initial, new: own }, cookie });
      if (changed.status !== 204) {
        throw new Error(`setting the teacher's own password failed: ${changed.status} ${JSON.stringify(changed.body)}`);
      }
      return { ...teacher, password: own, initial_password: initial, account: res.body.account };
    }
    return { ...teacher, password: initial, initial_password: initial, account: res.body.account };
  }
  static #teachers = 0;

  /** Every account, as the admin sees it (GET /api/admin/moderators). */
  async accounts() {
    const res = await this.api('GET', '/api/admin/moderators', { cookie: await this.adminCookie() });
    if (res.status !== 200) {
      throw new Error(`listing the accounts failed: ${res.status} ${JSON.stringify(res.body)}`);
    }
    return res.body.moderators;
  }

  /** SIGTERM, then SIGKILL after a few seconds; removes the data directory. */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const done = await Promise.race([this.exited.then(() => true), sleep(8_000).then(() => false)]);
      if (!done) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    process.off('exit', this.#killOnExit);
    await new Promise((resolve) => this.#log.end(resolve));
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

// ---- the browser --------------------------------------------------------------------------

/**
 * Starts Chromium. `executablePath` runs it through a wrapper (netns.mjs starts it inside a
 * network namespace that way); `args` are further flags.
 */
export async function launchBrowser({ executablePath = CHROMIUM, args = [] } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run tests/browser/install.sh`);
  }
  const headed = process.env.AULA_HEADED === '1';
  const flags = headed ? CHROMIUM_FLAGS.filter((f) => f !== '--headless') : CHROMIUM_FLAGS;
  return chromium.launch({
    executablePath,
    headless: !headed,
    args: [...flags, ...args],
    timeout: 30_000 * SCALE,
  });
}

/**
 * The flag that lets a page on `origin` use the camera and Secure cookies over plain HTTP,
 * as on localhost: for a portal on an address other than the loopback one.
 */
export function secureOriginFlags(origin) {
  const host = new URL(origin).hostname;
  if (host === '127.0.0.1' || host === 'localhost' || host === '[::1]') return [];
  return [`--unsafely-treat-insecure-origin-as-secure=${new URL(origin).origin}`];
}

const SESSION_PROBES = ['/api/me', '/api/guest'];

/**
 * Watches pages: every request and WebSocket (which must go to the portal's origin), every
 * console message of type error and every uncaught page error (which must not happen).
 */
export class Recorder {
  constructor(origin) {
    this.origin = new URL(origin);
    this.requests = [];
    this.problems = [];
    this.allowed = [];
    this.transcript = [];
    this.recording = true;
    /** host:port of separately run media nodes the page may open WebSockets to. */
    this.mediaHosts = new Set();
    this.#seen = new WeakSet();
  }
  #seen;

  /** Whether a URL is the portal's (http and ws to its host:port; data:, blob:, about:). */
  isPortal(url) {
    let u;
    try {
      u = new URL(url);
    } catch {
      return false;
    }
    if (['data:', 'blob:', 'about:'].includes(u.protocol)) return true;
    const secure = this.origin.protocol === 'https:';
    const schemes = secure ? ['https:', 'wss:'] : ['http:', 'ws:'];
    if (u.protocol === schemes[1] && this.mediaHosts.has(u.host)) return true;
    return schemes.includes(u.protocol) && u.host === this.origin.host;
  }

  /** Console errors matching `pattern` are expected until the next `check()`. */
  allowConsoleErrors(pattern) {
    this.allowed.push(pattern);
  }

  /**
   * Chromium logs every HTTP error answer to a page's request as a console error ("Failed
   * to load resource: the server responded with a status of 401 (Unauthorized)"), so each
   * one fails the test unless the test expects it. Always expected: 401 to the session
   * probes GET /api/me and /api/guest ("who am I?"), which is how a page learns that nobody
   * is logged in.
   */
  #expected(text, url) {
    if (/^Failed to load resource: the server responded with a status of 401\b/.test(text)) {
      try {
        if (SESSION_PROBES.includes(new URL(url).pathname)) return true;
      } catch {
        // no URL: not a session probe
      }
    }
    return this.allowed.some((re) => re.test(text));
  }

  #note(line) {
    this.transcript.push(`${new Date().toISOString()} ${line}`);
  }

  #request(label, url, kind) {
    if (!this.recording) return;
    this.requests.push({ label, url, kind });
    if (!this.isPortal(url)) this.problems.push(`${label}: ${kind} to another origin: ${url}`);
  }

  attachContext(context, label) {
    context.on('page', (page) => this.attachPage(page, label));
    // Every request of every page of the context, and of its workers.
    context.on('request', (req) => {
      this.#note(`${label} → ${req.method()} ${req.url()}`);
      this.#request(label, req.url(), `${req.resourceType()} request`);
    });
  }

  attachPage(page, label) {
    if (this.#seen.has(page)) return;
    this.#seen.add(page);
    page.on('websocket', (ws) => {
      this.#note(`${label} → WebSocket ${ws.url()}`);
      this.#request(label, ws.url(), 'WebSocket');
    });
    page.on('console', (msg) => {
      const where = msg.location()?.url ? ` (${msg.location().url}:${msg.location().lineNumber})` : '';
      this.#note(`${label} console.${msg.type()}: ${msg.text()}${where}`);
      if (!this.recording || msg.type() !== 'error') return;
      if (this.#expected(msg.text(), msg.location()?.url)) return;
      this.problems.push(`${label}: console error on ${page.url()}: ${msg.text()}${where}`);
    });
    page.on('pageerror', (err) => {
      this.#note(`${label} page error: ${err.stack || err.message}`);
      if (!this.recording) return;
      this.problems.push(`${label}: uncaught error on ${page.url()}: ${err.stack || err.message}`);
    });
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) this.#note(`${label} at ${frame.url()}`);
    });
    page.on('dialog', (d) => this.#note(`${label} dialog ${d.type()}: ${d.message()}`));
  }

  /** Fails with every problem seen since the last check, then starts afresh. */
  check() {
    const problems = this.problems;
    this.problems = [];
    this.allowed = [];
    assert.deepEqual(
      problems,
      [],
      `pages must talk only to the portal (${this.origin.origin}) and log no errors`,
    );
  }
}

// ---- scenarios ----------------------------------------------------------------------------

/**
 * One test file's portal and browser, started before its first test and stopped after its
 * last. Returns `{ portal, browser, test(sentence, fn, options) }`.
 *
 * `setup()` runs first and may resolve to the portal's options (`Portal.start`); with a
 * `listen` address other than the loopback the browser starts once the portal's origin is
 * known (it needs the flag that makes that origin secure). `teardown()` runs last, also
 * when the setup failed half-way.
 */
export function aulaSuite(name, { setup = async () => ({}), teardown = async () => {} } = {}) {
  const shared = { portal: null, browser: null };
  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const options = (await setup()) ?? {};
    const loopback = !options.listen || options.listen.startsWith('127.');
    const [portal, browser] = await Promise.allSettled([
      Portal.start(name, options),
      loopback ? launchBrowser() : Promise.resolve(null),
    ]);
    shared.portal = portal.value ?? null;
    shared.browser = browser.value ?? null;
    if (portal.status === 'rejected') throw portal.reason;
    if (browser.status === 'rejected') throw browser.reason;
    shared.browser ??= await launchBrowser({ args: secureOriginFlags(shared.portal.origin) });
  });
  after(async () => {
    await shared.browser?.close().catch(() => {});
    await shared.portal?.stop();
    await teardown();
  });
  return {
    get portal() {
      return shared.portal;
    },
    get browser() {
      return shared.browser;
    },
    test(sentence, fn, { timeout = TEST_TIMEOUT, skip = false } = {}) {
      test(sentence, { timeout, skip }, async () => {
        assert.ok(shared.portal && shared.browser, 'the portal and the browser are running');
        const s = new Scenario(shared.browser, shared.portal, `${name} ${sentence}`);
        try {
          await fn(s);
        } catch (e) {
          await s.captureFailure();
          // What went wrong in the pages often explains what the test then missed.
          if (s.recorder.problems.length > 0) {
            e.message += `\nmeanwhile in the pages:\n  ${s.recorder.problems.join('\n  ')}`;
          }
          if (shared.portal.exitStatus) {
            e.message += `\nthe portal has exited: ${JSON.stringify(shared.portal.exitStatus)}`;
          }
          throw e;
        } finally {
          await s.close();
        }
        try {
          s.recorder.check();
        } catch (e) {
          s.writeTranscript();
          throw e;
        }
      });
    },
  };
}

/** One test: the people in it (each a browser context with one page) and what they did. */
export class Scenario {
  constructor(browser, portal, title) {
    this.browser = browser;
    this.portal = portal;
    this.title = title;
    this.recorder = new Recorder(portal.origin);
    this.people = [];
  }

  /**
   * A new person: a browser context of their own (own cookies), camera and microphone
   * allowed (the clipboard too with `clipboard: true`), and one page. Dialogs are accepted
   * (with `person.promptAnswer` for prompts). `browser` is another Chromium than the suite's
   * (one in a network namespace, from netns.mjs). `phone: true` emulates a phone held upright
   * (390×844, touch, a mobile viewport); `viewport` gives another size (sideways: 844×390).
   */
  async person(label, { clipboard = false, locale = 'de-DE', browser = this.browser, phone = false, viewport } = {}) {
    const permissions = ['camera', 'microphone'];
    if (clipboard) permissions.push('clipboard-read', 'clipboard-write');
    const device = phone ? { isMobile: true, hasTouch: true, deviceScaleFactor: 1 } : {};
    const context = await browser.newContext({
      baseURL: this.portal.origin,
      permissions,
      locale,
      viewport: viewport ?? (phone ? { width: 390, height: 844 } : { width: 1280, height: 800 }),
      acceptDownloads: true,
      ...device,
    });
    context.setDefaultTimeout(WAIT);
    context.setDefaultNavigationTimeout(WAIT * 2);
    if (process.env.AULA_WEB_DIR) await serveWebFromDisk(context, this.portal.origin, process.env.AULA_WEB_DIR);
    this.recorder.attachContext(context, label);
    const page = await context.newPage();
    this.recorder.attachPage(page, label);
    const who = { label, context, page, pid: null, promptAnswer: undefined };
    page.on('dialog', (d) => {
      d.accept(d.type() === 'prompt' ? who.promptAnswer ?? d.defaultValue() : undefined).catch(() => {});
    });
    this.people.push(who);
    return who;
  }

  /** Console errors matching `pattern` are expected in this test from now on. */
  allowConsoleErrors(pattern) {
    this.recorder.allowConsoleErrors(pattern);
  }

  async screenshot(page, name) {
    return screenshot(page, name);
  }

  /** On failure: a screenshot of every page and the transcript of what they did. */
  async captureFailure() {
    for (const [i, who] of this.people.entries()) {
      if (who.page.isClosed()) continue;
      const file = `FAILED-${slug(this.title)}-${i}-${slug(who.label)}.png`;
      await who.page.screenshot({ path: path.join(ARTIFACTS, file), timeout: 3_000 }).catch(() => {});
    }
    this.writeTranscript();
  }

  /** Every request, WebSocket, console message and navigation of the test's pages. */
  writeTranscript() {
    fs.writeFileSync(
      path.join(ARTIFACTS, `FAILED-${slug(this.title)}.log`),
      `${this.recorder.transcript.join('\n')}\n\n--- portal output (last lines)\n${this.portal.tail(40)}\n`,
    );
  }

  /** Stops recording, then closes every context of the test. */
  async close() {
    this.recorder.recording = false;
    await Promise.all(this.people.map((p) => p.context.close().catch(() => {})));
  }
}

/**
 * AULA_WEB_DIR=web: the stylesheet, scripts and images come from that folder instead of the
 * binary (which embeds them when built), so a change to the frontend can be tried without a
 * rebuild. Pages (index.html) still come from the binary.
 */
async function serveWebFromDisk(context, origin, dir) {
  const root = path.resolve(ROOT, dir);
  const types = { css: 'text/css', js: 'text/javascript', svg: 'image/svg+xml', png: 'image/png' };
  await context.route(
    (url) => url.origin === origin && /^\/(app\.css|js\/|img\/)/.test(url.pathname),
    async (route) => {
      const file = path.join(root, new URL(route.request().url()).pathname);
      if (!file.startsWith(root) || !fs.existsSync(file)) return route.continue();
      await route.fulfill({ body: fs.readFileSync(file), contentType: types[path.extname(file).slice(1)] });
    },
  );
}

/** Saves a PNG of the page to target/browser-artifacts/NAME.png. */
export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${slug(name)}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: WAIT });
  return file;
}

/**
 * Saves NAME.png as the page is (1280×800 for a desktop person), then the same page at a
 * phone's 390×844 as phone-NAME.png (the layout follows the width, as on a phone), and puts
 * the window back; fails if the narrow page scrolls sideways. For screens a test reaches
 * only on the desktop.
 */
export async function screenshotBoth(page, name) {
  await screenshot(page, name);
  const size = page.viewportSize();
  await page.setViewportSize({ width: 390, height: 844 });
  // The layout settles in a frame or two (a resize observer sizes the meeting's tiles).
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await page.waitForTimeout(300);
  await screenshot(page, `phone-${name}`);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (size) await page.setViewportSize(size);
  assert.ok(wide <= 390, `${name} fits a phone's width without sideways scrolling (the page is ${wide} px wide)`);
}

// ---- steps: accounts and rooms ------------------------------------------------------------

/** Logs the teacher in on /login; ends on /rooms. */
export async function logIn(page, { email, password }) {
  await page.goto('/login');
  await page.locator('#login-email').fill(email);
  await page.locator('#login-password').fill(password);
  await page.locator('#login-submit').click();
  await page.waitForURL((u) => u.pathname === '/rooms', { timeout: WAIT });
}

/** The room of that name on /rooms. */
export function roomNamed(page, name) {
  return page
    .locator('[data-testid=room]')
    .filter({ has: page.locator('.room-name', { hasText: new RegExp(`^\\s*${escapeRegExp(name)}\\s*$`) }) });
}

export function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Creates a room on /rooms; resolves to `{ id, name, inviteUrl, locator }` once it is listed.
 */
export async function createRoom(page, name) {
  await page.locator('#room-name').fill(name);
  await page.locator('#room-create').click();
  const room = roomNamed(page, name);
  await room.waitFor({ timeout: WAIT });
  return describeRoom(page, room, name);
}

export async function describeRoom(page, room, name) {
  const id = await room.getAttribute('data-room-id');
  assert.ok(id, 'the room element has a data-room-id');
  const invite = room.locator('input[data-testid=invite-url]');
  const inviteUrl = await eventually('the invite link is filled in', () => invite.inputValue());
  return { id, name, inviteUrl, locator: page.locator(`[data-testid=room][data-room-id=${css(id)}]`) };
}

/** Switches a room's lobby on or off on /rooms and waits until the change is saved. */
export async function setLobby(page, room, on) {
  const box = room.locator.locator('input[data-testid=room-lobby]');
  const saved = page.waitForResponse(
    (r) => r.url().includes(`/api/rooms/${room.id}`) && r.request().method() !== 'GET',
    { timeout: WAIT },
  );
  await box.setChecked(on);
  const res = await saved;
  assert.ok(res.ok(), `saving the lobby setting answered ${res.status()}`);
}

/**
 * Clicks `button` and says yes if the page asks: a native `confirm()` is accepted by the
 * dialog handler of `Scenario.person`; an in-page `dialog[data-testid=confirm]` gets its
 * `button[data-answer=yes]` clicked. Resolves to whether an in-page dialog asked.
 */
export async function clickAndConfirm(page, button, { timeout = QUIET } = {}) {
  await button.click();
  const yes = page.locator('dialog[data-testid=confirm][open] button[data-answer=yes]');
  try {
    await yes.waitFor({ timeout });
  } catch {
    return false;
  }
  await yes.click();
  return true;
}

/** Opens the `<details>` around `locator`, if it is in a closed one. */
export async function disclose(locator) {
  const details = locator.locator('xpath=ancestor::details[1]');
  if ((await details.count()) === 1 && !(await details.evaluate((d) => d.open))) {
    await details.locator('summary').first().click();
  }
}

// ---- steps: meetings ----------------------------------------------------------------------

export const STATUS = '[data-testid=status]';

/**
 * Waits until the meeting page is connected and publishing (`window.__aula.publish`);
 * returns `me`. (The subscribe connection may only come with the first other participant.)
 */
export async function connected(page, { timeout = MEDIA_WAIT } = {}) {
  await page.locator(`${STATUS}[data-state=connected]`).waitFor({ state: 'attached', timeout });
  const handle = await page.waitForFunction(
    () => window.__aula?.me && window.__aula.publish && window.__aula.me,
    null,
    { timeout: WAIT },
  );
  return handle.jsonValue();
}

/** The teacher opens the room from /rooms and joins from the pre-join screen; resolves once
 * connected (and sets `who.pid`). */
export async function openMeeting(who, room) {
  await room.locator.locator('a[data-testid=open-room]').click();
  await who.page.waitForURL((u) => u.pathname === `/meeting/${room.id}`, { timeout: WAIT });
  await passPrejoin(who.page);
  who.pid = await connected(who.page);
  return who;
}

/** Joins from the meeting page's pre-join screen (a teacher's; guests have theirs on the
 * invite page), optionally with the camera off. */
export async function passPrejoin(page, { cameraOff = false } = {}) {
  await page.locator('[data-testid=prejoin-preview]').waitFor({ state: 'attached', timeout: WAIT });
  if (cameraOff) await page.locator('#prejoin-camera-off').check();
  await page.locator('#prejoin-join').click();
}

/**
 * A guest opens the invite link in a browser of their own and joins with a nickname; with
 * `lobby: true` it resolves once they wait in the lobby, otherwise once connected. `browser`:
 * another Chromium than the suite's (one in a network namespace).
 */
export async function joinAsGuest(s, inviteUrl, nickname, { lobby = false, browser } = {}) {
  const guest = await s.person(`guest ${nickname}`, { browser });
  await guest.page.goto(inviteUrl);
  await guest.page.locator('#nickname').fill(nickname);
  await guest.page.locator('#join-submit').click();
  if (lobby) {
    await guest.page.locator('[data-testid=lobby-waiting]').waitFor({ timeout: MEDIA_WAIT });
  } else {
    guest.pid = await connected(guest.page);
  }
  return guest;
}

export function tile(page, pid) {
  return page.locator(`[data-testid=tile][data-participant=${css(pid)}]`);
}

export function participantItem(page, pid) {
  return page.locator(`[data-testid=participants] li[data-participant=${css(pid)}]`);
}

export function farewell(page, reason) {
  const r = reason ? `[data-reason=${css(reason)}]` : '';
  return page.locator(`[data-testid=farewell]${r}`);
}

/** Sends a chat message to `to` (`room` or a participant id). */
export async function sendChat(page, to, text) {
  await page.locator('select#chat-to').selectOption(to);
  await page.locator('#chat-input').fill(text);
  await page.locator('#chat-send').click();
}

export function chatMessages(page, text) {
  const all = page.locator('[data-testid=chat-message]');
  return text === undefined ? all : all.filter({ hasText: text });
}

// ---- probes: what a page receives ---------------------------------------------------------

/**
 * What the page receives from participant `pid`: for the `source` video in their tile its
 * size, track state and the frames decoded so far; for their audio the track state and the
 * packets received so far (both from `__aula.subscribe.getStats()`, matched by track id).
 */
export async function received(page, pid, source = 'camera') {
  return page.evaluate(
    async ({ pid, source }) => {
      const tile = document.querySelector(`[data-testid=tile][data-participant=${JSON.stringify(pid)}]`);
      if (!tile) return { tile: false };
      const inbound = new Map();
      const subscribe = window.__aula?.subscribe;
      const stats = subscribe ? await subscribe.getStats() : new Map();
      stats.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.trackIdentifier) inbound.set(r.trackIdentifier, r);
      });
      const video = tile.querySelector(`video[data-source=${JSON.stringify(source)}]`);
      const audio = tile.querySelector('audio');
      // Whether a person sees the element: rendered, with a size, and at its centre nothing
      // opaque on top of it (a transparent overlay with a name or a button is fine).
      const opaque = (el) => {
        const cs = getComputedStyle(el);
        if (cs.backgroundImage !== 'none') return true;
        const alpha = cs.backgroundColor.match(/rgba?\(([^)]*)\)/)?.[1].split(/[ ,/]+/)[3];
        return cs.backgroundColor !== 'transparent' && (alpha === undefined || Number(alpha) >= 0.5);
      };
      const shown = (el) => {
        if (!el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) return false;
        el.scrollIntoView({ block: 'nearest', inline: 'nearest' });
        const r = el.getBoundingClientRect();
        if (r.width < 2 || r.height < 2) return false;
        const stack = document.elementsFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        const at = stack.indexOf(el);
        return at >= 0 && !stack.slice(0, at).some(opaque);
      };
      const vt = video?.srcObject?.getVideoTracks?.()[0];
      const at = audio?.srcObject?.getAudioTracks?.()[0];
      return {
        tile: true,
        muted: tile.dataset.muted ?? null,
        video: video && {
          shown: shown(video),
          width: video.videoWidth,
          height: video.videoHeight,
          track: vt?.readyState ?? null,
          framesDecoded: vt ? inbound.get(vt.id)?.framesDecoded ?? null : null,
          // For the failure message: whether packets still arrive, keyframes, requests.
          ...(() => {
            const r = vt ? inbound.get(vt.id) : null;
            return r
              ? {
                  packetsReceived: r.packetsReceived,
                  packetsLost: r.packetsLost,
                  framesReceived: r.framesReceived,
                  keyFramesDecoded: r.keyFramesDecoded,
                  pliCount: r.pliCount,
                  freezeCount: r.freezeCount,
                }
              : {};
          })(),
        },
        audio: audio && {
          track: at?.readyState ?? null,
          packetsReceived: at ? inbound.get(at.id)?.packetsReceived ?? null : null,
        },
      };
    },
    { pid, source },
  );
}

/**
 * Waits until `pid`'s `source` video plays on the page: it has a size, frames keep being
 * decoded, and (unless `shown: false`) a person sees it: rendered, and not covered at its
 * centre by anything else (an avatar, say).
 */
export async function expectVideoPlaying(
  page,
  pid,
  source = 'camera',
  { timeout = MEDIA_WAIT, shown = true } = {},
) {
  return eventually(
    `${source} video of ${pid} plays (videoWidth > 0, framesDecoded increasing${shown ? ', shown' : ''})`,
    async () => {
      const a = await received(page, pid, source);
      await sleep(600);
      const b = await received(page, pid, source);
      const ok =
        (!shown || b.video?.shown) &&
        b.video?.width > 0 &&
        b.video.track === 'live' &&
        a.video?.framesDecoded != null &&
        b.video.framesDecoded > a.video.framesDecoded;
      return ok && b;
    },
    { timeout },
  ).catch(async (e) => {
    e.message += `\nlast probe: ${JSON.stringify(await received(page, pid, source).catch((x) => x.message))}`;
    throw e;
  });
}

/** Waits until `pid`'s audio on the page is a live track whose packets keep coming. */
export async function expectAudioFlowing(page, pid, { timeout = MEDIA_WAIT } = {}) {
  return eventually(
    `audio of ${pid} is live and packets keep coming`,
    async () => {
      const a = await received(page, pid);
      await sleep(500);
      const b = await received(page, pid);
      return (
        b.audio?.track === 'live' &&
        a.audio?.packetsReceived != null &&
        b.audio.packetsReceived > a.audio.packetsReceived &&
        b
      );
    },
    { timeout },
  ).catch(async (e) => {
    e.message += `\nlast probe: ${JSON.stringify(await received(page, pid).catch((x) => x.message))}`;
    throw e;
  });
}

/** Waits until no audio packets of `pid` arrive at the page for QUIET ms. */
export async function expectAudioStopped(page, pid, { timeout = MEDIA_WAIT } = {}) {
  return eventually(
    `no audio packets of ${pid} arrive for ${QUIET} ms`,
    async () => {
      const a = await received(page, pid);
      await sleep(QUIET);
      const b = await received(page, pid);
      return (
        a.audio?.packetsReceived != null && b.audio.packetsReceived === a.audio.packetsReceived && b
      );
    },
    { timeout: timeout + QUIET },
  );
}

/**
 * The page's peer connections use no STUN/TURN server other than the portal's host, and
 * the media goes to the node's UDP address: no third party learns who is in a meeting.
 */
export async function expectMediaOnlyToPortal(page, portal) {
  const seen = await page.evaluate(async () => {
    const out = {};
    for (const name of ['publish', 'subscribe']) {
      const pc = window.__aula?.[name];
      if (!pc) {
        out[name] = { missing: true, servers: [], remotes: [] };
        continue;
      }
      const servers = (pc.getConfiguration().iceServers || []).flatMap((s) =>
        Array.isArray(s.urls) ? s.urls : [s.urls],
      );
      const stats = await pc.getStats();
      const remotes = [];
      stats.forEach((r) => {
        if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
        const remote = stats.get(stats.get(r.selectedCandidatePairId)?.remoteCandidateId);
        if (remote) remotes.push(`${remote.address}:${remote.port}`);
      });
      out[name] = { servers, remotes };
    }
    return out;
  });
  const host = new URL(portal.origin).hostname;
  for (const [name, { missing, servers, remotes }] of Object.entries(seen)) {
    assert.ok(!missing, `window.__aula.${name} is the ${name} peer connection`);
    for (const url of servers) {
      assert.ok(
        url.replace(/^(stun|turns?):/, '').split(/[:?]/)[0] === host,
        `the ${name} connection uses an ICE server other than the portal: ${url}`,
      );
    }
    assert.ok(remotes.length > 0, `the ${name} connection has a selected candidate pair`);
    for (const remote of remotes) {
      if (portal.mediaUdp) {
        assert.equal(remote, portal.mediaUdp, `the ${name} connection sends media to the node's UDP port`);
      } else {
        assert.equal(remote.split(':')[0], host, `the ${name} connection sends media to the portal's host`);
      }
    }
  }
  return seen;
}

/** Resolves after `ms` (for "nothing happens within …" checks). */
export { sleep };

/**
 * How the large tile (a `[data-testid=tile]` locator) shows its picture (the shared screen if
 * there is one, else the camera): the share of the tile's inside with no picture (black
 * bars, 0…1), the share of the picture's width and height cut off to fill the tile, and the
 * tile's and the stage's size in px.
 */
export function tilePicture(locator) {
  return locator.evaluate((tile) => {
    const video = tile.querySelector('video[data-source=screen]:not([hidden])') ?? tile.querySelector('video[data-source=camera]');
    const stage = tile.closest('[data-testid=stage]').getBoundingClientRect();
    const outer = tile.getBoundingClientRect();
    const w = video.clientWidth;
    const h = video.clientHeight;
    const aspect = video.videoWidth / video.videoHeight;
    if (!(aspect > 0) || w === 0 || h === 0) return { source: video.dataset.source, noPicture: true };
    // The picture as object-fit lays it out inside the element, then what of it shows.
    const fit = getComputedStyle(video).objectFit;
    const wider = w / h > aspect;
    let pw = w;
    let ph = h;
    if (fit === 'cover') [pw, ph] = wider ? [w, w / aspect] : [h * aspect, h];
    else if (fit === 'contain' || fit === 'scale-down') [pw, ph] = wider ? [h * aspect, h] : [w, w / aspect];
    const shownW = Math.min(pw, w);
    const shownH = Math.min(ph, h);
    const round = (x) => Math.round(x * 1000) / 1000;
    return {
      source: video.dataset.source,
      picture: `${video.videoWidth}×${video.videoHeight}`,
      fit,
      bars: round(1 - (shownW * shownH) / (tile.clientWidth * tile.clientHeight)),
      cropWidth: round(1 - shownW / pw),
      cropHeight: round(1 - shownH / ph),
      tile: { width: Math.round(outer.width), height: Math.round(outer.height) },
      stage: { width: Math.round(stage.width), height: Math.round(stage.height) },
    };
  });
}
