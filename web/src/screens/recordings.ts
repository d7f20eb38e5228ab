// Recordings (録音): a plain list for now (recordings arrive in a later issue), and the access log.
import { get } from '../api';
import { h, replace } from '../dom';
import { fmtTime, t } from '../i18n';
import { alertBox, card, pageTitle, showError, table } from '../ui';

function cell(k: string, v: unknown): string {
  if (v == null) return '';
  if (typeof v === 'number' && /(_at|^at)$/.test(k)) return fmtTime(v);
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function generic(rows: Record<string, unknown>[], testid: string, label: string, empty: string): HTMLElement {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return table(keys, rows.map((r) => keys.map((k) => cell(k, r[k]))), { testid, label, empty });
}

export function renderRecordings(main: HTMLElement): void {
  const err = alertBox();
  const list = h('div');
  const log = h('div');
  replace(main, pageTitle('nav.recordings'), h('p', { class: 'hint' }, t('rec.help')), err, card(t('rec.list'), list), card(t('rec.accessLog'), log));
  void (async () => {
    try {
      const [recs, access] = await Promise.all([
        get<Record<string, unknown>[]>('/api/v1/recordings'),
        get<Record<string, unknown>[]>('/api/v1/recordings/access-log').catch(() => []),
      ]);
      replace(list, generic(Array.isArray(recs) ? recs : [], 'recordings-table', t('rec.list'), t('rec.none')));
      replace(log, generic(Array.isArray(access) ? access : [], 'recordings-access-table', t('rec.accessLog'), t('common.none')));
    } catch (e) {
      showError(err, e);
    }
  })();
}
