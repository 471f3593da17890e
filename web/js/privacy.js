// The privacy notice, filled from the deployment's configuration and the data inventory.
// The API describes each record in English; in German the page says the same in plain
// words of its own (GDPR Art. 12: clear and plain language), with the technical names kept
// small for those who want to check them.

import { get } from './api.js';
import { formatSpan, language, t } from './i18n.js';
import { errorText, h } from './ui.js';

/** The page's own text for `key` in the chosen language, or `fallback` (the API's English). */
function plain(key, fallback) {
  return language() === 'de' ? t(key) === key ? fallback : t(key) : fallback;
}

/** The portal's built-in processing locations (src/portal.rs, functions/api), said in the
 * chosen language; a location the operator configured is shown as configured. */
function location(text) {
  if (text === "this server (the portal's embedded store)") return t('location_embedded');
  const aws = /^AWS DynamoDB and S3, region (\S+)$/.exec(text) || /^AWS (eu-central-1) \(Frankfurt am Main, Germany\)$/.exec(text);
  if (aws) return aws[1] === 'eu-central-1' ? t('location_frankfurt') : t('location_aws', aws[1]);
  return text;
}

export async function render(main) {
  let notice;
  try {
    notice = await get('/api/privacy');
  } catch (e) {
    main.append(h('p', { class: 'error' }, errorText(e)));
    return;
  }
  const retention = (r) => {
    const kind = r.retention;
    const span = r.retention_seconds;
    if (kind === 'until_erased' || span === undefined || span === null) return t('retention_until_erased');
    return t(`retention_${kind}`, formatSpan(span));
  };
  const purposes = (list) => list.map((p) => plain(`purpose_${p}`, p.replaceAll('_', ' '))).join('; ');
  main.append(
    h('h1', {}, t('privacy_title')),
    h('p', {}, t('privacy_intro')),
    h('p', {}, t('privacy_location', location(notice.location))),
    h(
      'p',
      { 'data-testid': 'privacy-deletion' },
      t('privacy_deletion'),
      notice.backup_days ? ` ${t('privacy_backups', notice.backup_days)}` : '',
    ),
    h(
      'dl',
      { class: 'contacts' },
      h('dt', {}, t('privacy_authority')),
      h('dd', { 'data-testid': 'privacy-authority' }, notice.contacts.supervisory_authority),
      h('dt', {}, t('privacy_dpo')),
      h('dd', { 'data-testid': 'privacy-dpo' }, notice.contacts.data_protection_officer),
    ),
    h('h2', {}, t('privacy_records')),
    h(
      'div',
      // Focusable: a keyboard scrolls it where it is wider than the window.
      { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': t('privacy_records') },
      h(
        'table',
        { 'data-testid': 'privacy-records', class: 'stack' },
        h('thead', {}, h('tr', {}, ['privacy_what', 'privacy_purposes', 'privacy_retention'].map((k) => h('th', { scope: 'col' }, t(k))))),
        h(
          'tbody',
          {},
          notice.records.map((r) =>
            h(
              'tr',
              { 'data-kind': r.kind },
              h(
                'th',
                { scope: 'row' },
                plain(`record_${r.kind}`, r.description || r.kind),
                h('small', { class: 'muted technical' }, t('privacy_technical', r.fields.map((f) => f.name).join(', '))),
              ),
              h('td', { 'data-label': t('privacy_purposes') }, purposes(r.purposes)),
              h('td', { 'data-label': t('privacy_retention') }, retention(r)),
            ),
          ),
        ),
      ),
    ),
    h('h2', {}, t('privacy_browser_title')),
    h(
      'ul',
      { 'data-testid': 'privacy-browser', class: 'browser-items' },
      (notice.browser_storage || []).map((b) =>
        h(
          'li',
          { 'data-name': b.name },
          h('code', {}, b.name),
          ` – ${plain(`browser_${b.name}`, b.description)} (${
            b.lifetime_seconds ? t('browser_lifetime', formatSpan(b.lifetime_seconds)) : t('browser_until_cleared')
          })`,
        ),
      ),
    ),
    h('p', { class: 'muted' }, t('privacy_browser'), ' ', t('privacy_browser_cache')),
  );
}
