// Short tones for what a teacher should notice without looking: a raised hand and a pupil
// knocking in the lobby. Made with WebAudio (no sound files); switched off with the
// "Töne" button; never for one's own actions (the callers make sure of that).
// A part of the meeting (see ../meeting.js): `this` is the whole meeting.

import { t } from '../i18n.js';
import { icon } from '../icons.js';

/** Each kind: its notes (Hz), each ~0.12 s; a hand rises, a knock is two equal taps. */
const TONES = {
  hand: [660, 880],
  knock: [520, 520],
};

export class Sounds {
  /** Plays the tone for `kind`, unless sounds are off or the browser allows no audio yet. */
  chime(kind) {
    if (this.soundsOff) return;
    const notes = TONES[kind];
    if (!notes) return;
    try {
      this.audio ??= new AudioContext();
      const ctx = this.audio;
      if (ctx.state === 'suspended') ctx.resume().catch(() => {});
      const start = ctx.currentTime + 0.02;
      notes.forEach((freq, i) => {
        const at = start + i * 0.16;
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = 'sine';
        osc.frequency.value = freq;
        // A soft attack and decay: no click, and quiet beside the voices.
        gain.gain.setValueAtTime(0.0001, at);
        gain.gain.exponentialRampToValueAtTime(0.2, at + 0.015);
        gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.12);
        osc.connect(gain).connect(ctx.destination);
        osc.start(at);
        osc.stop(at + 0.13);
      });
    } catch {
      // No WebAudio here: the toast and the queue still tell.
    }
  }

  toggleSounds() {
    this.soundsOff = !this.soundsOff;
    // Kept for this tab (a reload keeps it), like the other choices of the meeting.
    history.replaceState({ ...history.state, aulaSoundsOff: this.soundsOff }, '');
    this.renderSoundButton();
  }

  renderSoundButton() {
    this.soundsOff ??= !!history.state?.aulaSoundsOff;
    const on = !this.soundsOff;
    this.soundButton.setAttribute('aria-pressed', String(on));
    this.soundButton.replaceChildren(icon(on ? 'bell' : 'bell-off'), t('sounds'));
    this.soundButton.title = t(on ? 'sounds_on_hint' : 'sounds_off_hint');
  }
}
