// Audit log (監査ログ): filters (from, to, actor), table, CSV export.
import { get, query } from '../api';
import { h, replace } from '../dom';
import { fmtTime, t } from '../i18n';
import type { Key } from '../i18n/ja';
import type { AuditEntry } from '../types';
import { alertBox, clearBox, exportLink, field, input, pageTitle, showError, table } from '../ui';
import { dateMs } from './calls';

const LIMIT = 500;

/** A value as a short text: lists joined, objects as compact JSON. */
function valueText(v: unknown): string {
  if (v == null) return '—';
  if (Array.isArray(v)) return v.length ? v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ') : '—';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/**
 * What changed, compactly: for a change, only the fields that differ
 * (before → after); for an addition or removal, the fields that say
 * something (empty lists, nulls and false left out).
 */
function changes(before: unknown, after: unknown): HTMLElement | string {
  if (before == null && after == null) return '';
  const line = (k: string, ...v: (string | Node)[]) => h('li', null, h('span', { class: 'k' }, k), ' ', ...v);
  const arrow = (b: unknown, a: unknown) => [h('del', null, valueText(b)), ' → ', h('ins', null, valueText(a))];
  let items: HTMLElement[];
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    items = keys.filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])).map((k) => line(k, ...arrow(before[k], after[k])));
  } else if (before != null && after != null) {
    items = [h('li', null, ...arrow(before, after))];
  } else {
    const v = after ?? before;
    const sign = after != null ? '' : '− ';
    items = isObject(v)
      ? Object.entries(v)
          .filter(([, x]) => x != null && x !== false && x !== '' && !(Array.isArray(x) && !x.length))
          .map(([k, x]) => line(`${sign}${k}`, valueText(x)))
      : [h('li', null, `${sign}${valueText(v)}`)];
  }
  return items.length ? h('ul', { class: 'changes' }, items) : '';
}

function actionLabel(action: string): HTMLElement {
  const key = `audit.act.${action}` as Key;
  const label = t(key);
  return h('span', { title: action }, label === key ? action : label);
}

export function renderAudit(main: HTMLElement): void {
  const err = alertBox();
  const list = h('div');
  const from = input('audit-from', { type: 'date' });
  const to = input('audit-to', { type: 'date' });
  const actor = input('audit-actor', { autocomplete: 'off' });
  const exp = exportLink('/api/v1/audit/export', 'audit-export');
  const btn = h('button', { type: 'submit', class: 'primary', id: 'audit-search', 'data-testid': 'audit-search' }, t('common.show'));
  const params = () => ({ from: dateMs(from.value, false), to: dateMs(to.value, true), actor: actor.value.trim() });
  const syncExport = () => {
    exp.href = `/api/v1/audit/export${query(params())}`;
  };

  async function load() {
    syncExport();
    try {
      const rows = await get<AuditEntry[]>(`/api/v1/audit${query({ ...params(), limit: LIMIT })}`);
      clearBox(err);
      replace(
        list,
        h('p', { class: 'count' }, rows.length >= LIMIT ? t('calls.limited', { n: LIMIT }) : t('common.count', { n: rows.length })),
        table(
          [t('audit.at'), t('audit.actor'), t('audit.action'), t('audit.target'), t('audit.changes'), t('audit.source')],
          rows.map((r) => [fmtTime(r.at), r.actor, actionLabel(r.action), r.target, changes(r.before, r.after), r.source ?? '']),
          { testid: 'audit-table', label: t('nav.audit'), empty: t('audit.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  const form = h(
    'form',
    { class: 'filters', role: 'search' },
    field('audit-from', t('common.from'), from),
    field('audit-to', t('common.to'), to),
    field('audit-actor', t('audit.actor'), actor),
    h('div', { class: 'buttons' }, btn),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void load();
  });
  for (const c of [from, to, actor]) c.addEventListener('input', syncExport);
  replace(main, pageTitle('nav.audit', exp), form, err, list);
  void load();
}
