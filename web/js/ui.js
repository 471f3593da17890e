// Small DOM helpers: element builder, toasts, an in-page confirmation dialog.

import { t } from './i18n.js';

/** Builds an element: h('button', { class: 'x', onclick: f }, 'text', child …). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let toastTimer;
export function toast(text, kind = 'info') {
  const el = document.getElementById('toast');
  el.textContent = text;
  el.dataset.kind = kind;
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), 4000);
}

/** Asks in a modal dialog; resolves to true when confirmed. */
export function confirmDialog(question, yesLabel) {
  return new Promise((resolve) => {
    const dialog = h(
      'dialog',
      { 'data-testid': 'confirm', 'aria-label': question },
      h('p', {}, question),
      h(
        'div',
        { class: 'row' },
        h('button', { type: 'button', 'data-answer': 'no', onclick: () => done(false) }, t('cancel')),
        h('button', { type: 'button', class: 'danger', 'data-answer': 'yes', onclick: () => done(true) }, yesLabel),
      ),
    );
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    dialog.addEventListener('cancel', () => done(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A labelled form field. */
export function field(label, input) {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

export function errorText(e) {
  if (e && e.code === 'network') return t('error_network');
  // The store did not answer in time (an outage): nothing is wrong with what was sent.
  if (e && e.code === 'unavailable') return t('error_unavailable');
  if (e && e.code === 'password_change_required') return t('password_required');
  return t('error_generic', (e && e.message) || String(e));
}

/** Offers `text` as a file download, made in the page (nothing is uploaded anywhere). */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  // The click has started the download by then; the object URL is only needed for it.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
