// Announcements (音声ガイダンス) and hold music: list with a player per row,
// make one from text (espeak-ng on the server), upload a recording (WAV, MP3,
// Ogg Opus), delete (a built-in one goes back to its default).
import { api, del, enc, get, put } from '../api';
import { debounce, h, replace } from '../dom';
import { onEvent } from '../events';
import { fmtTime, getLang, t } from '../i18n';
import type { Key } from '../i18n/ja';
import { canWrite } from '../session';
import type { Announcement } from '../types';
import {
  actions,
  alertBox,
  busy,
  button,
  card,
  clearBox,
  confirmDialog,
  field,
  forgetNames,
  input,
  pageTitle,
  showError,
  showStatus,
  statusBox,
  table,
} from '../ui';

const NAME_PATTERN = '[a-z0-9_\\-]{1,32}';
/** Voices offered in the list (any espeak-ng voice name is accepted). */
const VOICES: [string, Key][] = [
  ['ja', 'ann.voice.ja'],
  ['en-us', 'ann.voice.enUs'],
  ['en', 'ann.voice.en'],
];

/** 12.3 s → "0:12" (a tenth of a second matters only for very short ones). */
export function lengthText(secs: number): string {
  if (secs < 10) return t('ann.secs', { n: secs.toFixed(1) });
  const s = Math.round(secs);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** A player for one announcement: the WAV is fetched (with the session cookie) only when played. */
export function announcementPlayer(a: Announcement): HTMLAudioElement {
  return h('audio', {
    controls: true,
    preload: 'none',
    src: `/api/v1/announcements/${enc(a.name)}/audio?v=${a.version}`,
    'aria-label': t('ann.play', { name: a.label || a.name }),
    'data-testid': `announcement-audio-${a.name}`,
    class: 'player',
  });
}

/** What uses an announcement, as the server words it, in Japanese when shown in Japanese. */
const USED_JA: [RegExp, (m: RegExpExecArray) => string][] = [
  [/^DID (\S+) \((.+)\)$/, (m) => `ダイヤルイン ${m[1]}（${WHAT_JA[m[2]] ?? m[2]}）`],
  [/^ring group (\S+) \((.+)\)$/, (m) => `着信グループ ${m[1]}（${WHAT_JA[m[2]] ?? m[2]}）`],
  [/^schedule (\S+) \((.+)\)$/, (m) => `営業時間 ${m[1]}（${WHAT_JA[m[2]] ?? m[2]}）`],
  [/^extension (\S+) \(forwarding\)$/, (m) => `内線 ${m[1]}（転送）`],
  [/^setting music_on_hold$/, () => 'PBX設定（保留音）'],
  [/^setting recording_notice$/, () => 'PBX設定（録音のお知らせ）'],
  [/^IVR menu (\S+)$/, (m) => `音声メニュー ${m[1]}`],
];
const WHAT_JA: Record<string, string> = {
  destination: '着信先',
  'hold music': '保留音',
  greeting: '最初のガイダンス',
  'waiting announcement': '待ち時間のガイダンス',
  overflow: '応答がないときの転送先',
  open: '開庁',
  closed: '時間外',
  holiday: '祝日',
  disaster: '災害時',
};
function usedByText(u: string): string {
  if (getLang() !== 'ja') return u;
  for (const [re, say] of USED_JA) {
    const m = re.exec(u);
    if (m) return say(m);
  }
  return u;
}

export function renderAnnouncements(main: HTMLElement): () => void {
  const writable = canWrite('announcements');
  const err = alertBox();
  const ok = statusBox();
  const list = h('div');
  const forms = h('div');

  async function load() {
    try {
      const items = await get<Announcement[]>('/api/v1/announcements');
      replace(
        list,
        table(
          [t('ann.name'), t('ann.label'), t('ann.source'), t('ann.length'), t('ann.listen'), t('ann.usedBy'), ...(writable ? [''] : [])],
          items.map((a) => [
            h('code', null, a.name),
            h('span', { title: a.text ?? '' }, a.label),
            h('span', { class: `badge ${a.source === 'builtin' ? 'neutral' : 'good'}`, 'data-testid': `announcement-source-${a.name}` }, t(`ann.src.${a.source}` as Key)),
            h('span', { title: fmtTime(a.updated_at) }, lengthText(a.seconds)),
            announcementPlayer(a),
            a.used_by?.length ? h('ul', { class: 'route' }, a.used_by.map((u) => h('li', null, usedByText(u)))) : h('span', { class: 'muted' }, t('ann.unused')),
            ...(writable
              ? [
                  actions(
                    a.source !== 'upload' && a.text != null
                      ? button(t('common.edit'), () => showForms(a), { class: 'small', 'data-testid': `announcement-edit-${a.name}`, 'aria-label': `${t('common.edit')} ${a.label || a.name}` })
                      : null,
                    a.builtin && a.source === 'builtin'
                      ? null
                      : button(a.builtin ? t('ann.restore') : t('common.delete'), (ev) => {
                          void (async () => {
                            const msg = a.builtin ? t('ann.restoreConfirm', { name: a.name }) : t('ann.deleteConfirm', { name: a.name, label: a.label || a.name });
                            if (!(await confirmDialog(msg, a.builtin ? t('ann.restore') : t('common.delete')))) return;
                            clearBox(ok);
                            await busy(ev.target as HTMLButtonElement, err, async () => {
                              await del(`/api/v1/announcements/${enc(a.name)}`);
                              forgetNames('announcement');
                              await load();
                              showStatus(ok, a.builtin ? t('ann.restored', { name: a.name }) : t('ann.deleted', { name: a.name }));
                            });
                          })();
                        }, { class: 'danger small', 'data-testid': `announcement-delete-${a.name}`, 'aria-label': `${a.builtin ? t('ann.restore') : t('common.delete')} ${a.label || a.name}` }),
                  ),
                ]
              : []),
          ]),
          { testid: 'announcements-table', label: t('nav.announcements'), empty: t('ann.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  /** The two ways to make one: from text, or from a file. `a`: edit that spoken one. */
  function showForms(a: Announcement | null) {
    // ---- from text --------------------------------------------------------------
    const tErr = alertBox('announcement-tts-error');
    const tOk = statusBox('announcement-tts-result');
    const name = input('ann-tts-name', { value: a?.name ?? '', required: true, pattern: NAME_PATTERN, maxlength: 32, autocomplete: 'off', spellcheck: false, readonly: !!a });
    const label = input('ann-tts-label', { value: a?.label ?? '', maxlength: 100 });
    const text = h('textarea', { id: 'ann-tts-text', name: 'ann-tts-text', required: true, rows: 3, maxlength: 2000, lang: 'ja' }, a?.text ?? '');
    const voiceList = h('datalist', { id: 'ann-tts-voices' }, VOICES.map(([v, k]) => h('option', { value: v }, t(k))));
    const voice = input('ann-tts-voice', { value: a?.voice ?? 'ja', required: true, list: 'ann-tts-voices', autocomplete: 'off', spellcheck: false, maxlength: 40 });
    const save = h('button', { type: 'submit', class: 'primary', id: 'ann-tts-submit', 'data-testid': 'announcement-tts-submit' }, a ? t('ann.speakAgain') : t('ann.speak'));
    const ttsForm = h(
      'form',
      { class: 'form-grid', 'data-testid': 'announcement-tts-form' },
      field('ann-tts-name', t('ann.name'), name, t('ann.nameHint')),
      field('ann-tts-label', t('ann.label'), label, t('ann.labelHint')),
      h('div', { class: 'span-all' }, field('ann-tts-text', t('ann.text'), text, t('ann.textHint'))),
      field('ann-tts-voice', t('ann.voice'), voice, t('ann.voiceHint')),
      voiceList,
      h('div', { class: 'buttons span-all' }, save, a ? button(t('common.cancel'), () => showForms(null)) : null),
      h('div', { class: 'span-all' }, tErr, tOk),
    );
    ttsForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(tOk, ok);
      void busy(save, tErr, async () => {
        const n = name.value.trim();
        save.textContent = t('ann.speaking');
        try {
          await put(`/api/v1/announcements/${enc(n)}`, { label: label.value.trim(), text: text.value.trim(), voice: voice.value.trim() || 'ja' });
        } finally {
          save.textContent = a ? t('ann.speakAgain') : t('ann.speak');
        }
        forgetNames('announcement');
        await load();
        showForms(null);
        const box = forms.querySelector<HTMLElement>('[data-testid="announcement-tts-result"]');
        if (box) showStatus(box, t('ann.saved', { name: n }));
      });
    });

    // ---- from a file ------------------------------------------------------------
    const uErr = alertBox('announcement-upload-error');
    const uOk = statusBox('announcement-upload-result');
    const uName = input('ann-upload-name', { required: true, pattern: NAME_PATTERN, maxlength: 32, autocomplete: 'off', spellcheck: false });
    const uLabel = input('ann-upload-label', { maxlength: 100 });
    const file = h('input', { id: 'ann-upload-file', name: 'ann-upload-file', type: 'file', required: true, accept: '.wav,.mp3,.ogg,.opus,audio/wav,audio/x-wav,audio/mpeg,audio/ogg,audio/opus' });
    const send = h('button', { type: 'submit', class: 'primary', id: 'ann-upload-submit', 'data-testid': 'announcement-upload-submit' }, t('ann.upload'));
    const upForm = h(
      'form',
      { class: 'form-grid', 'data-testid': 'announcement-upload-form' },
      field('ann-upload-name', t('ann.name'), uName, t('ann.nameReplaceHint')),
      field('ann-upload-label', t('ann.label'), uLabel, t('ann.labelHint')),
      h('div', { class: 'span-all' }, field('ann-upload-file', t('ann.file'), file, t('ann.fileHint'))),
      h('div', { class: 'buttons span-all' }, send),
      h('div', { class: 'span-all' }, uErr, uOk),
    );
    upForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(uOk, ok);
      const f = file.files?.[0];
      if (!f) {
        showError(uErr, new Error(t('ann.noFile')));
        return;
      }
      void busy(send, uErr, async () => {
        const n = uName.value.trim();
        const lbl = uLabel.value.trim();
        await api('POST', `/api/v1/announcements/${enc(n)}/audio${lbl ? `?label=${enc(lbl)}` : ''}`, undefined, {
          raw: f,
          contentType: f.type || 'application/octet-stream',
        });
        forgetNames('announcement');
        await load();
        showForms(null);
        const box = forms.querySelector<HTMLElement>('[data-testid="announcement-upload-result"]');
        if (box) showStatus(box, t('ann.uploaded', { name: n, file: f.name }));
      });
    });

    replace(
      forms,
      card(a ? t('ann.editTitle', { name: a.name }) : t('ann.ttsTitle'), h('p', { class: 'hint' }, t('ann.ttsHelp')), ttsForm),
      a ? null : card(t('ann.uploadTitle'), h('p', { class: 'hint' }, t('ann.uploadHelp')), upForm),
    );
    if (a) {
      forms.scrollIntoView({ block: 'start' });
      text.focus();
    }
  }

  replace(main, pageTitle('nav.announcements'), h('p', { class: 'hint' }, t('ann.help')), err, ok, list, writable ? forms : null);
  if (writable) showForms(null);
  void load();
  // A change by another admin (or another tab) shows at once.
  const reload = debounce(() => void load(), 300);
  const off = onEvent((e) => {
    if (e.type === 'change' && e.resource === 'announcements') reload();
  });
  return off;
}
