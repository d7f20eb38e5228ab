// PBX settings: the known keys (the server refuses others), each saved with PUT /settings/{key}.
import { enc, get, put } from '../api';
import { h, replace } from '../dom';
import { t } from '../i18n';
import type { Key } from '../i18n/ja';
import { canWrite } from '../session';
import { alertBox, busy, clearBox, input, pageTitle, showError, showStatus, statusBox, table } from '../ui';

type Settings = Record<string, string> | { key: string; value: string }[];

const KNOWN = ['main_number', 'outside_prefix', 'cid_main_prefix', 'cid_own_prefix', 'mfa_required_roles'];

function normalise(s: Settings): [string, string][] {
  if (Array.isArray(s)) return s.map((x) => [x.key, String(x.value ?? '')]);
  return Object.entries(s ?? {}).map(([k, v]) => [k, v == null ? '' : String(v)]);
}

export function renderSettings(main: HTMLElement): void {
  const writable = canWrite('settings');
  const err = alertBox();
  const ok = statusBox();
  const list = h('div');

  function describe(k: string): string {
    return KNOWN.includes(k) ? t(`settings.${k}` as Key) : '';
  }

  async function load() {
    try {
      const rows = normalise(await get<Settings>('/api/v1/settings'));
      replace(
        list,
        table(
          [t('settings.key'), t('settings.description'), t('settings.value')],
          rows.map(([k, v]) => {
            const id = `setting-${k}`;
            if (!writable) return [h('code', null, k), describe(k), v];
            const box = input(id, { value: v, 'aria-label': `${k} ${describe(k)}` });
            const save = h('button', { type: 'submit', class: 'small' }, t('common.save'));
            const form = h('form', { class: 'inline-form' }, box, save);
            form.addEventListener('submit', (ev) => {
              ev.preventDefault();
              clearBox(ok);
              void busy(save, err, async () => {
                await put(`/api/v1/settings/${enc(k)}`, { value: box.value });
                showStatus(ok, t('settings.saved', { key: k }));
              });
            });
            return [h('label', { for: id }, h('code', null, k)), describe(k), form];
          }),
          { testid: 'settings-table', label: t('nav.settings') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  replace(main, pageTitle('nav.settings'), h('p', { class: 'hint' }, t('settings.help')), err, ok, list);
  void load();
}
