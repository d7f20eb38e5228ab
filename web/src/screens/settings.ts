// PBX settings: the known keys (the server refuses others), each saved with
// PUT /settings/{key}. Hold music and call recording have their own cards
// with proper controls; the rest are plain text boxes in a table.
import { enc, get, put } from '../api';
import { h, replace } from '../dom';
import { t } from '../i18n';
import type { Key } from '../i18n/ja';
import { canView, canWrite } from '../session';
import { announcementOptions, loadAnnouncements } from '../data';
import type { Announcement } from '../types';
import { alertBox, busy, card, clearBox, field, input, pageTitle, select, showError, showStatus, statusBox, table } from '../ui';

type Settings = Record<string, string> | { key: string; value: string; default?: string | null }[];

const KNOWN = [
  'main_number',
  'outside_prefix',
  'cid_main_prefix',
  'cid_own_prefix',
  'mfa_required_roles',
  'disaster_mode',
  'schedule_clock',
  'transfer_mode',
  'transfer_recall_secs',
  'park_recall_secs',
  'transfer_code',
];
/** Keys with their own card below the table. */
const RECORDING_KEYS = ['recording_mode', 'recording_retention_days', 'recording_quota_mb', 'recording_prefix', 'recording_notice'];
const OWN_CARD = new Set([...RECORDING_KEYS, 'music_on_hold']);

function normalise(s: Settings): [string, string][] {
  if (Array.isArray(s)) return s.map((x) => [x.key, String(x.value ?? '')]);
  return Object.entries(s ?? {}).map(([k, v]) => [k, v == null ? '' : String(v)]);
}

export function renderSettings(main: HTMLElement): void {
  const writable = canWrite('settings');
  const err = alertBox();
  const ok = statusBox();
  const list = h('div');
  const media = h('div');

  function describe(k: string): string {
    return KNOWN.includes(k) ? t(`settings.${k}` as Key) : '';
  }

  /** Save the keys whose value changed, one PUT each, in order. */
  async function saveKeys(values: [string, string][], before: Map<string, string>, box: HTMLElement) {
    const changed = values.filter(([k, v]) => before.get(k) !== v);
    for (const [k, v] of changed) {
      await put(`/api/v1/settings/${enc(k)}`, { value: v });
      before.set(k, v);
    }
    showStatus(box, changed.length ? t('settings.savedMany', { keys: changed.map(([k]) => k).join(', ') }) : t('settings.unchanged'));
  }

  function mediaCards(values: Map<string, string>, anns: Announcement[]) {
    const disabled = !writable;
    // ---- hold music -------------------------------------------------------------
    const mohErr = alertBox('settings-moh-error');
    const mohOk = statusBox('settings-moh-result');
    const moh = select('setting-music_on_hold', announcementOptions(anns, values.get('music_on_hold') || 'hold-music', null), values.get('music_on_hold') || 'hold-music', { disabled });
    const mohSave = h('button', { type: 'submit', class: 'primary', id: 'settings-moh-submit', 'data-testid': 'settings-moh-submit' }, t('common.save'));
    const mohForm = h(
      'form',
      { class: 'form-grid', 'data-testid': 'settings-moh-form' },
      field('setting-music_on_hold', t('settings.music_on_hold'), moh, t('settings.music_on_holdHint')),
      writable ? h('div', { class: 'buttons span-all' }, mohSave) : null,
      h('div', { class: 'span-all' }, mohErr, mohOk),
    );
    mohForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(mohOk);
      void busy(mohSave, mohErr, () => saveKeys([['music_on_hold', moh.value]], values, mohOk));
    });

    // ---- call recording ------------------------------------------------------------
    const rErr = alertBox('settings-recording-error');
    const rOk = statusBox('settings-recording-result');
    const v = (k: string) => values.get(k) ?? '';
    const mode = select('setting-recording_mode', (['none', 'all', 'selected'] as const).map((m) => [m, t(`settings.recMode.${m}` as Key)]), v('recording_mode') || 'none', { disabled });
    const retention = input('setting-recording_retention_days', { type: 'number', min: 0, max: 36500, step: 1, required: true, value: v('recording_retention_days'), disabled });
    const quota = input('setting-recording_quota_mb', { type: 'number', min: 0, step: 1, required: true, value: v('recording_quota_mb'), disabled });
    const prefix = input('setting-recording_prefix', { value: v('recording_prefix'), pattern: '\\*[0-9*#]{0,7}', maxlength: 8, required: true, inputmode: 'tel', autocomplete: 'off', disabled });
    const notice = select('setting-recording_notice', announcementOptions(anns, v('recording_notice') || null, t('settings.recNoticeNone')), v('recording_notice'), { disabled });
    const rSave = h('button', { type: 'submit', class: 'primary', id: 'settings-recording-submit', 'data-testid': 'settings-recording-submit' }, t('common.save'));
    const rForm = h(
      'form',
      { class: 'form-grid', 'data-testid': 'settings-recording-form' },
      field('setting-recording_mode', t('settings.recording_mode'), mode, t('settings.recording_modeHint')),
      field('setting-recording_retention_days', t('settings.recording_retention_days'), retention, t('settings.recording_retention_daysHint')),
      field('setting-recording_quota_mb', t('settings.recording_quota_mb'), quota, t('settings.recording_quota_mbHint')),
      field('setting-recording_prefix', t('settings.recording_prefix'), prefix, t('settings.recording_prefixHint')),
      field('setting-recording_notice', t('settings.recording_notice'), notice, t('settings.recording_noticeHint')),
      writable ? h('div', { class: 'buttons span-all' }, rSave) : null,
      h('div', { class: 'span-all' }, rErr, rOk),
    );
    rForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(rOk);
      void busy(rSave, rErr, () =>
        saveKeys(
          [
            ['recording_mode', mode.value],
            ['recording_retention_days', retention.value.trim()],
            ['recording_quota_mb', quota.value.trim()],
            ['recording_prefix', prefix.value.trim()],
            ['recording_notice', notice.value],
          ],
          values,
          rOk,
        ),
      );
    });
    replace(
      media,
      card(t('settings.mohTitle'), mohForm),
      card(
        t('settings.recTitle'),
        h('p', { class: 'hint' }, t('settings.recHelp')),
        canView('announcements') ? h('p', { class: 'hint' }, h('a', { href: '#/announcements' }, t('ivr.toAnnouncements'))) : null,
        rForm,
      ),
    );
  }

  async function load() {
    try {
      const [all, anns] = await Promise.all([get<Settings>('/api/v1/settings'), loadAnnouncements()]);
      const pairs = normalise(all);
      const rows = pairs.filter(([k]) => !OWN_CARD.has(k));
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
      if (pairs.some(([k]) => OWN_CARD.has(k))) mediaCards(new Map(pairs), anns);
    } catch (e) {
      showError(err, e);
    }
  }

  replace(main, pageTitle('nav.settings'), h('p', { class: 'hint' }, t('settings.help')), err, ok, list, media);
  void load();
}
