// The page texts themselves, without a browser: every German text addresses the reader with
// "Sie". The meeting tests check the same on the pages as a teacher and a pupil see them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { duForms, ROOT } from './harness.mjs';

// i18n.js reads the chosen language from localStorage when it loads; Node has none.
globalThis.localStorage ??= { getItem: () => null, setItem: () => {} };
const { dictionaries } = await import(pathToFileURL(path.join(ROOT, 'web', 'js', 'i18n.js')).href);

test('no German text of the pages says "du", "dich", "dein" or a verb in the du form: teachers and pupils alike read "Sie"', () => {
  const informal = Object.entries(dictionaries.de)
    .map(([key, text]) => [key, text, duForms(text)])
    .filter(([, , words]) => words.length > 0);
  assert.deepEqual(
    informal.map(([key, text, words]) => `${key}: ${text} (${words.join(', ')})`),
    [],
    'German texts with a du form',
  );
});

test('the du-form check finds the forms a "du" text uses and passes their "Sie" versions', () => {
  assert.deepEqual(duForms('Du bist im Warteraum. Die Lehrkraft lässt dich gleich herein …'), ['Du', 'bist', 'dich']);
  assert.deepEqual(duForms('Die Lehrkraft hat deine Hand gesenkt.'), ['deine']);
  assert.deepEqual(duForms('Du wurdest stummgeschaltet. Du kannst dein Mikrofon einschalten.'), ['Du', 'wurdest', 'Du', 'kannst', 'dein']);
  assert.deepEqual(duForms('Sie sind im Warteraum. Die Lehrkraft lässt Sie gleich herein …'), []);
  // Words that only contain a du form.
  assert.deepEqual(duForms('Dauer, direkt, Bildschirm, dürfen, Duisburg, Meldungen, Hausaufgaben'), []);
});
