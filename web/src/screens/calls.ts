// Call logs (通話履歴): filters, table, CSV export link with the same filters.
import { get, query } from '../api';
import { h, replace } from '../dom';
import { fmtDuration, fmtTime, t } from '../i18n';
import type { Key } from '../i18n/ja';
import type { CallLog } from '../types';
import { alertBox, clearBox, exportLink, field, input, pageTitle, showError, table } from '../ui';

const LIMIT = 500;

/** A yyyy-mm-dd date (local time) to Unix ms; `end` gives the end of that day. */
export function dateMs(v: string, end: boolean): number | null {
  if (!v) return null;
  const [y, m, d] = v.split('-').map(Number);
  if (!y || !m || !d) return null;
  return end ? new Date(y, m - 1, d + 1).getTime() - 1 : new Date(y, m - 1, d).getTime();
}

function known(prefix: string, v: string): string {
  const k = `${prefix}.${v}`;
  const s = t(k as Key);
  return s === undefined || s === k ? v : s;
}

export function renderCalls(main: HTMLElement): void {
  const err = alertBox();
  const list = h('div');
  const user = input('calls-user', { inputmode: 'numeric', autocomplete: 'off', placeholder: '1001' });
  const from = input('calls-from', { type: 'date' });
  const to = input('calls-to', { type: 'date' });
  const exp = exportLink('/api/v1/calls/export', 'calls-export');
  const btn = h('button', { type: 'submit', class: 'primary', id: 'calls-search', 'data-testid': 'calls-search' }, t('common.show'));

  const params = () => ({ user: user.value.trim(), from: dateMs(from.value, false), to: dateMs(to.value, true) });
  const syncExport = () => {
    exp.href = `/api/v1/calls/export${query(params())}`;
  };

  async function load() {
    syncExport();
    try {
      const calls = await get<CallLog[]>(`/api/v1/calls${query({ ...params(), limit: LIMIT })}`);
      clearBox(err);
      replace(
        list,
        h('p', { class: 'count' }, calls.length >= LIMIT ? t('calls.limited', { n: LIMIT }) : t('common.count', { n: calls.length })),
        table(
          [t('calls.started'), t('calls.direction'), t('calls.caller'), t('calls.callee'), t('calls.did'), t('calls.result'), t('calls.answeredBy'), t('calls.duration')],
          calls.map((c) => [
            fmtTime(c.started_at),
            known('dir', c.direction),
            c.caller,
            c.callee,
            c.did ?? '',
            known('result', c.result),
            c.answered_by ?? '',
            c.answered_at && c.ended_at ? fmtDuration((c.ended_at - c.answered_at) / 1000) : '',
          ]),
          { testid: 'calls-table', label: t('nav.calls'), empty: t('calls.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  const form = h(
    'form',
    { class: 'filters', role: 'search', 'data-testid': 'calls-filters' },
    field('calls-user', t('calls.user'), user),
    field('calls-from', t('common.from'), from),
    field('calls-to', t('common.to'), to),
    h('div', { class: 'buttons' }, btn),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void load();
  });
  for (const c of [user, from, to]) c.addEventListener('input', syncExport);

  replace(main, pageTitle('nav.calls', exp), form, err, list);
  void load();
}
