// The privacy notice, filled from the deployment's configuration and the data inventory.

import { get } from './api.js';
import { formatSpan, t } from './i18n.js';
import { errorText, h } from './ui.js';

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
  main.append(
    h('h1', {}, t('privacy_title')),
    h('p', {}, t('privacy_location', notice.location)),
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
      { class: 'table-wrap' },
      h(
        'table',
        { 'data-testid': 'privacy-records' },
        h('thead', {}, h('tr', {}, ['privacy_kind', 'privacy_fields', 'privacy_purposes', 'privacy_retention'].map((k) => h('th', { scope: 'col' }, t(k))))),
        h(
          'tbody',
          {},
          notice.records.map((r) =>
            h(
              'tr',
              {},
              h('th', { scope: 'row' }, r.description || r.kind),
              h('td', {}, r.fields.map((f) => f.name).join(', ')),
              h('td', {}, r.purposes.join('; ')),
              h('td', {}, retention(r)),
            ),
          ),
        ),
      ),
    ),
    h('h2', {}, t('privacy_browser_title')),
    h(
      'ul',
      { 'data-testid': 'privacy-browser' },
      (notice.browser_storage || []).map((b) =>
        h('li', {}, h('code', {}, b.name), ` – ${b.description}`),
      ),
    ),
    h('p', { class: 'muted' }, t('privacy_browser'), ' ', t('privacy_browser_cache')),
  );
}
