// The pre-join screen: one's own camera picture, a level meter for the microphone, the choice
// of devices, and whether to join with the camera or the microphone off. Guests see it on the
// invite page (with their nickname), teachers on the meeting page before they join.
//
// The devices opened here are handed to the meeting page (the app is one page: no second
// permission prompt, no camera blinking off and on); a reload of the meeting goes straight
// back in with the same choices (kept in the tab's history entry, not in browser storage).

import { t } from '../i18n.js';
import { icon } from '../icons.js';
import { field, h } from '../ui.js';

let handed = null;

/** Gives the choices (and the open devices) to the meeting page that opens next. */
export function handOff(choice) {
  handed?.stream?.getTracks().forEach((tr) => tr.stop());
  handed = choice;
}

/** What the pre-join screen handed over (once), else null. */
export function takeHandOff() {
  const c = handed;
  handed = null;
  return c;
}

/** The camera asked for everywhere: 720p where the camera has it, so the active speaker's
 * picture is the full layer (the simulcast layers follow the height really captured). */
export const CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 } };

export class Prejoin {
  /** `who`: the name shown (a teacher's), or null when a field for it comes with the form. */
  constructor({ who = null } = {}) {
    this.camOn = true;
    this.micOn = true;
    this.stream = null;
    this.failed = false;
    this.closed = false;
    this.video = h('video', { id: 'prejoin-preview', 'data-testid': 'prejoin-preview', autoplay: true, playsinline: true, muted: true });
    this.video.muted = true;
    this.avatar = h('span', { class: 'avatar', 'aria-hidden': 'true' }, icon('camera-off'));
    this.level = h('meter', { id: 'prejoin-level', 'data-testid': 'prejoin-level', min: 0, max: 1, low: 0.05, value: 0, 'aria-label': t('prejoin_level') });
    this.micSelect = h('select', { id: 'prejoin-mic', onchange: () => this.reopen() });
    this.camSelect = h('select', { id: 'prejoin-camera', onchange: () => this.reopen() });
    this.camOff = h('input', { type: 'checkbox', id: 'prejoin-camera-off', onchange: () => this.setCamera(!this.camOff.checked) });
    this.micOff = h('input', { type: 'checkbox', id: 'prejoin-mic-off', onchange: () => this.setMic(!this.micOff.checked) });
    this.problem = h('p', { class: 'muted', role: 'status', hidden: true });
    this.el = h(
      'div',
      { class: 'prejoin', 'data-testid': 'prejoin' },
      h(
        'div',
        { class: 'preview' },
        this.avatar,
        this.video,
        who ? h('span', { class: 'who', 'data-testid': 'prejoin-name' }, who) : null,
      ),
      h('div', { class: 'level' }, icon('mic'), this.level),
      this.problem,
      h('label', { class: 'check' }, this.camOff, t('prejoin_camera_off')),
      h('label', { class: 'check' }, this.micOff, t('prejoin_mic_off')),
      h('div', { class: 'device-choice' }, field(t('microphone'), this.micSelect), field(t('camera'), this.camSelect)),
    );
  }

  /** Opens camera and microphone (what is switched on) and starts the meter. */
  async open() {
    const want = {
      audio: this.micSelect.value ? { deviceId: { exact: this.micSelect.value } } : true,
      video: this.camOn ? { ...CAMERA, ...(this.camSelect.value && { deviceId: { exact: this.camSelect.value } }) } : false,
    };
    let stream = null;
    try {
      stream = await navigator.mediaDevices.getUserMedia(want);
    } catch {
      // Perhaps only the camera is missing or refused: the microphone alone still helps.
      try {
        stream = want.video ? await navigator.mediaDevices.getUserMedia({ audio: want.audio }) : null;
      } catch {
        stream = null;
      }
    }
    if (this.closed) {
      stream?.getTracks().forEach((tr) => tr.stop());
      return;
    }
    this.stream?.getTracks().forEach((tr) => tr.stop());
    this.stream = stream;
    this.failed = !stream;
    this.problem.hidden = !!stream?.getVideoTracks().length || !this.camOn;
    this.problem.textContent = stream ? t('prejoin_no_camera') : t('no_devices');
    this.show();
    this.meter();
    await this.listDevices();
  }

  reopen() {
    return this.open();
  }

  show() {
    const video = this.stream?.getVideoTracks()[0];
    this.video.srcObject = video ? new MediaStream([video]) : null;
    this.video.hidden = !video;
    this.avatar.hidden = !!video;
  }

  async setCamera(on) {
    this.camOn = on;
    if (!on) {
      // Switched off is off: the camera light goes out too.
      for (const tr of this.stream?.getVideoTracks() || []) {
        tr.stop();
        this.stream.removeTrack(tr);
      }
      this.problem.hidden = true;
      this.show();
      return;
    }
    await this.open();
  }

  setMic(on) {
    this.micOn = on;
    for (const tr of this.stream?.getAudioTracks() || []) tr.enabled = on;
  }

  async listDevices() {
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      const fill = (select, kind, track) => {
        const current = track?.getSettings().deviceId || select.value;
        select.replaceChildren(
          ...devices
            .filter((d) => d.kind === kind)
            .map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === current }, d.label || `${t(kind === 'audioinput' ? 'microphone' : 'camera')} ${i + 1}`)),
        );
      };
      fill(this.micSelect, 'audioinput', this.stream?.getAudioTracks()[0]);
      fill(this.camSelect, 'videoinput', this.stream?.getVideoTracks()[0]);
    } catch {
      /* no list: the defaults are used */
    }
  }

  /** The microphone's level, ten times a second, from an analyser on its track. */
  meter() {
    clearInterval(this.meterTimer);
    this.audioCtx?.close().catch(() => {});
    this.audioCtx = null;
    const track = this.stream?.getAudioTracks()[0];
    this.level.value = 0;
    this.level.dataset.level = '0';
    if (!track) return;
    try {
      const ctx = new AudioContext();
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 512;
      ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
      this.audioCtx = ctx;
      const samples = new Float32Array(analyser.fftSize);
      // Browsers start audio only after the person has clicked or typed on the page.
      const resume = () => ctx.state === 'suspended' && ctx.resume().catch(() => {});
      resume();
      this.el.ownerDocument.addEventListener('pointerdown', resume, { once: true });
      this.el.ownerDocument.addEventListener('keydown', resume, { once: true });
      this.meterTimer = setInterval(() => {
        analyser.getFloatTimeDomainData(samples);
        let sum = 0;
        for (const s of samples) sum += s * s;
        // RMS on a rough loudness curve: speech at a normal distance fills about half.
        const level = this.micOn ? Math.min(1, Math.sqrt(sum / samples.length) * 4) : 0;
        this.level.value = level;
        this.level.dataset.level = level.toFixed(3);
      }, 100);
    } catch {
      /* no meter; the microphone still works */
    }
  }

  /** The choices, with the open devices (the caller owns them from now on). */
  result() {
    const stream = this.stream;
    this.stream = null;
    return {
      stream,
      failed: this.failed,
      camOn: this.camOn,
      micOn: this.micOn,
      mic: stream?.getAudioTracks()[0]?.getSettings().deviceId || this.micSelect.value || null,
      camera: stream?.getVideoTracks()[0]?.getSettings().deviceId || this.camSelect.value || null,
    };
  }

  close() {
    this.closed = true;
    clearInterval(this.meterTimer);
    this.audioCtx?.close().catch(() => {});
    this.stream?.getTracks().forEach((tr) => tr.stop());
    this.stream = null;
  }
}
