// The test environment itself, without the portal: Chromium starts headless with fake
// devices, media flows through a real peer connection and the harness's probes see it,
// screen sharing works without a picker, the clipboard works, and the recorder catches what
// the portal tests rely on it to catch. When these fail, the portal tests cannot be trusted;
// when only the portal tests fail, the portal is to blame.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  launchBrowser,
  Recorder,
  received,
  expectVideoPlaying,
  expectAudioFlowing,
  expectAudioStopped,
  screenshot,
  WAIT,
} from './harness.mjs';

// A page that sends its camera and microphone to itself over two peer connections and
// shows what it receives in a tile of the DOM contract; screen sharing adds a second video.
const LOOPBACK = `<!doctype html>
<html lang="de"><meta charset="utf-8"><title>Harness self-check</title>
<div data-testid="tile" data-participant="g:loop">
  <video data-source="camera" autoplay muted playsinline></video>
  <audio autoplay></audio>
</div>
<button id="share">Bildschirm teilen</button>
<script type="module">
  const tile = document.querySelector('[data-testid=tile]');
  const publish = new RTCPeerConnection();
  const subscribe = new RTCPeerConnection();
  publish.onicecandidate = (e) => e.candidate && subscribe.addIceCandidate(e.candidate);
  subscribe.onicecandidate = (e) => e.candidate && publish.addIceCandidate(e.candidate);
  subscribe.ontrack = (e) => {
    const camera = tile.querySelector('video[data-source=camera]');
    let el = tile.querySelector('audio');
    if (e.track.kind === 'video') {
      el = camera.srcObject ? document.createElement('video') : camera;
      if (el !== camera) {
        el.dataset.source = 'screen';
        el.muted = el.autoplay = el.playsInline = true;
        tile.append(el);
      }
    }
    el.srcObject = new MediaStream([e.track]);
  };
  async function negotiate() {
    await publish.setLocalDescription();
    await subscribe.setRemoteDescription(publish.localDescription);
    await subscribe.setLocalDescription();
    await publish.setRemoteDescription(subscribe.localDescription);
  }
  const local = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  for (const t of local.getTracks()) publish.addTrack(t, local);
  await negotiate();
  window.__aula = { publish, subscribe, me: 'm:self' };
  window.silence = () =>
    publish.getSenders().find((s) => s.track?.kind === 'audio').replaceTrack(null);
  document.querySelector('#share').onclick = async () => {
    const screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
    publish.addTrack(screen.getVideoTracks()[0], screen);
    await negotiate();
  };
</script>
</html>`;

let server;
let origin;
let browser;

before(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/' || req.url === '/quiet') {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(req.url === '/' ? LOOPBACK : '<!doctype html><title>leer</title><p>leer</p>');
    } else if (req.url.startsWith('/api/')) {
      res.statusCode = req.url === '/api/me' ? 401 : 403;
      res.setHeader('content-type', 'application/json');
      res.end('{"error":{"code":"unauthenticated","message":"log in first"}}');
    } else {
      res.statusCode = 204;
      res.end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${server.address().port}`;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve) ?? resolve());
});

async function open(recorder, { permissions = ['camera', 'microphone'] } = {}) {
  const context = await browser.newContext({ baseURL: origin, permissions });
  context.setDefaultTimeout(WAIT);
  recorder.attachContext(context, 'self-check');
  const page = await context.newPage();
  recorder.attachPage(page, 'self-check');
  return { context, page };
}

test('Chromium runs headless, and its fake camera and microphone reach a peer connection that the probes read', async () => {
  const recorder = new Recorder(origin);
  const { context, page } = await open(recorder);
  try {
    await page.goto('/');
    await page.waitForFunction(() => window.__aula, null, { timeout: WAIT });
    const video = await expectVideoPlaying(page, 'g:loop');
    assert.ok(video.video.width > 0 && video.video.framesDecoded > 0);
    const audio = await expectAudioFlowing(page, 'g:loop');
    assert.equal(audio.audio.track, 'live');
    await page.evaluate(() => window.silence());
    await expectAudioStopped(page, 'g:loop');
    await screenshot(page, 'self-check-loopback');
  } finally {
    await context.close();
  }
  recorder.check();
});

test('screen sharing works headless without a picker (getDisplayMedia after a click)', async () => {
  const recorder = new Recorder(origin);
  const { context, page } = await open(recorder);
  try {
    await page.goto('/');
    await page.waitForFunction(() => window.__aula, null, { timeout: WAIT });
    await page.locator('#share').click();
    const screen = await expectVideoPlaying(page, 'g:loop', 'screen');
    assert.ok(screen.video.width > 0);
    const settings = await page.evaluate(async () => {
      const s = await navigator.mediaDevices.getDisplayMedia({ video: true });
      const t = s.getVideoTracks()[0];
      const out = { label: t.label, ...t.getSettings() };
      t.stop();
      return out;
    });
    assert.equal(settings.displaySurface, 'monitor');
  } finally {
    await context.close();
  }
  recorder.check();
});

test('the clipboard can be written and read back with the clipboard permissions', async () => {
  const recorder = new Recorder(origin);
  const { context, page } = await open(recorder, {
    permissions: ['clipboard-read', 'clipboard-write'],
  });
  try {
    await page.goto('/');
    const back = await page.evaluate(async () => {
      await navigator.clipboard.writeText('http://127.0.0.1/j/abc');
      return navigator.clipboard.readText();
    });
    assert.equal(back, 'http://127.0.0.1/j/abc');
  } finally {
    await context.close();
  }
  recorder.check();
});

test('the recorder catches requests to other origins, console errors and uncaught errors, and nothing else', async () => {
  const recorder = new Recorder(origin);
  assert.ok(recorder.isPortal(`${origin}/api/me`));
  assert.ok(recorder.isPortal(`${origin.replace('http:', 'ws:')}/media`));
  assert.ok(recorder.isPortal('data:image/png;base64,AAAA'));
  assert.ok(!recorder.isPortal(`${origin.replace('http:', 'https:')}/`));
  assert.ok(!recorder.isPortal(origin.replace('127.0.0.1', 'localhost')));
  assert.ok(!recorder.isPortal(`http://127.0.0.1:1/`));
  assert.ok(!recorder.isPortal('https://fonts.example/x.woff2'));

  const { context, page } = await open(recorder, { permissions: [] });
  try {
    await page.goto('/quiet');
    await page.evaluate(() => fetch('/ok'));
    // Asking "who am I?" and hearing 401 is how a page learns nobody is logged in.
    await page.evaluate(() => fetch('/api/me'));
    await page.waitForTimeout(300);
    recorder.check(); // a clean page passes

    // Any other HTTP error answer is a console error, unless the test expects it.
    recorder.allowConsoleErrors(/status of 403/);
    await page.evaluate(() => fetch('/api/rooms'));
    await page.waitForTimeout(300);
    recorder.check();
    await page.evaluate(() => fetch('/api/rooms'));
    await page.waitForTimeout(300);
    assert.throws(() => recorder.check(), /status of 403/);

    const other = origin.replace('127.0.0.1', 'localhost');
    await page.evaluate((url) => fetch(url, { mode: 'no-cors' }).catch(() => {}), `${other}/track`);
    await page.evaluate(() => console.error('kaputt'));
    await page.evaluate(() => setTimeout(() => {
      throw new Error('nicht gefangen');
    }));
    await page.waitForTimeout(300);
  } finally {
    await context.close();
  }
  const problems = [...recorder.problems];
  assert.throws(() => recorder.check());
  assert.ok(problems.some((p) => p.includes('request to another origin') && p.includes('localhost')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('console error') && p.includes('kaputt')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('uncaught error') && p.includes('nicht gefangen')), problems.join('\n'));
  recorder.check(); // and it starts afresh
});
