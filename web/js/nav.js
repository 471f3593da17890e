// Page changes: a page asks for one here; the app shell (main.js) listens and renders.

export const NAVIGATE = 'aula:navigate';

export function navigate(path, replace = false) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  dispatchEvent(new Event(NAVIGATE));
}
