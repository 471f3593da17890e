// The app shell: routes (history API), the navigation, the language switch. Pages never
// import this module: they ask for a page change through nav.js (an event this shell
// listens for) and read the login through session.js.

import { post } from './api.js';
import { NAVIGATE, navigate } from './nav.js';
import { forget, me } from './session.js';
import { language, setLanguage, t, translateStatic } from './i18n.js';
import { h, toast } from './ui.js';

const routes = [
  [/^\/$/, () => import('./rooms.js'), 'home'],
  [/^\/login$/, () => import('./login.js')],
  [/^\/rooms$/, () => import('./rooms.js')],
  [/^\/me$/, () => import('./me.js')],
  [/^\/password$/, () => import('./password.js')],
  [/^\/admin$/, () => import('./admin.js')],
  [/^\/privacy$/, () => import('./privacy.js')],
  [/^\/j\/([A-Za-z0-9_-]+)$/, () => import('./join.js')],
  [/^\/meeting\/([0-9a-f-]{36})$/, () => import('./meeting.js')],
];

let cleanup = null;
async function render() {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* the old page is gone either way */
    }
    cleanup = null;
  }
  const path = location.pathname;
  const main = document.getElementById('main');
  const who = await renderNav();
  // A handed-over password (initial, or reset by the operator) is changed before anything
  // else; the privacy page stays readable.
  if (who?.must_change_password && !['/password', '/privacy'].includes(path)) {
    return navigate('/password', true);
  }
  for (const [pattern, load] of routes) {
    const m = path.match(pattern);
    if (!m) continue;
    main.replaceChildren(h('p', { class: 'muted' }, t('loading')));
    const page = await load();
    main.replaceChildren();
    cleanup = (await page.render(main, ...m.slice(1))) || null;
    // Screen readers start at the new content; a page that put the cursor into its first
    // field keeps it there.
    if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
    return;
  }
  main.replaceChildren(h('h1', {}, t('not_found')));
}

async function renderNav() {
  const nav = document.getElementById('nav');
  const who = await me();
  const link = (href, key) =>
    h('a', { href, 'aria-current': location.pathname === href ? 'page' : null }, t(key));
  if (who) {
    nav.replaceChildren(
      link('/rooms', 'nav_rooms'),
      who.role === 'admin' ? link('/admin', 'nav_admin') : '',
      link('/me', 'nav_me'),
      h('button', { type: 'button', class: 'link', id: 'logout', onclick: logout }, t('nav_logout')),
    );
  } else {
    nav.replaceChildren(link('/login', 'nav_login'));
  }
  return who;
}

async function logout() {
  try {
    await post('/api/auth/logout');
  } catch {
    /* the cookie is gone either way */
  }
  forget();
  navigate('/login');
}

function start() {
  const select = document.getElementById('lang');
  setLanguage(language());
  select.value = language();
  select.addEventListener('change', () => {
    setLanguage(select.value);
    translateStatic();
    render();
  });
  translateStatic();
  // Links inside the app navigate without reloading.
  document.addEventListener('click', (e) => {
    const a = e.target.closest('a[href]');
    if (!a || a.target || a.origin !== location.origin || e.ctrlKey || e.metaKey || e.shiftKey) return;
    if (a.hasAttribute('download')) return;
    e.preventDefault();
    navigate(a.pathname);
  });
  addEventListener('popstate', render);
  addEventListener(NAVIGATE, render);
  addEventListener('unhandledrejection', (e) => {
    toast(t('error_generic', e.reason?.message || String(e.reason)), 'error');
  });
  render();
}

start();
