// Call recordings (通話録音): the list (start in Japan time, parties,
// duration, state), a player per stored recording (needs the recordings
// right; the server logs each listening), a download of the stored copy
// for auditors only (also logged), and the access log.
import { enc, get } from '../api';
import { h, replace } from '../dom';
import { fmtDuration, fmtTime, locale, t } from '../i18n';
import type { Key } from '../i18n/ja';
import { canView, hasRight, session } from '../session';
import type { Recording } from '../types';
import { alertBox, card, pageTitle, showError, table } from '../ui';

/** A time in Japan Standard Time whatever the browser's zone: "2026/04/01 09:30:05". */
export function fmtJst(ms: number | null | undefined): string {
  if (!ms) return '';
  return new Intl.DateTimeFormat(locale(), {
    timeZone: 'Asia/Tokyo',
    year: 'numeric',
    month: locale() === 'ja-JP' ? '2-digit' : 'short',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).format(new Date(ms));
}

function sizeText(bytes: number): string {
  if (!bytes) return '';
  if (bytes < 1024 * 1024) return `${Math.max(1, Math.round(bytes / 1024))} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function stateBadge(r: Recording): HTMLElement {
  const cls = r.state === 'stored' ? 'good' : r.state === 'failed' ? 'bad' : 'neutral';
  return h('span', { class: `badge ${cls}`, title: r.reason || undefined, 'data-testid': `recording-state-${r.id}` }, t(`rec.state.${r.state}` as Key));
}

const playable = (r: Recording) => (r.state === 'stored' || r.state === 'interrupted') && !!r.sha256;

interface AccessRow {
  at: number;
  actor: string;
  recording: string;
  action: string;
  source: string;
}

export function renderRecordings(main: HTMLElement): void {
  const err = alertBox();
  const list = h('div');
  const log = h('div');
  const auditor = session.admin?.role === 'auditor';
  const mayPlay = hasRight('recordings');
  replace(
    main,
    pageTitle('nav.recordings'),
    h('p', { class: 'hint' }, t('rec.help')),
    h('p', { class: 'hint' }, auditor ? t('rec.helpAuditor') : t('rec.helpPlay')),
    canView('settings') ? h('p', { class: 'hint' }, h('a', { href: '#/settings', 'data-testid': 'recordings-settings-link' }, t('rec.settingsLink'))) : null,
    err,
    card(t('rec.list'), list),
    card(t('rec.accessLog'), log),
  );
  void (async () => {
    try {
      // One after the other: the access log then includes this listing.
      const recs = await get<Recording[]>('/api/v1/recordings');
      const access = await get<AccessRow[]>('/api/v1/recordings/access-log').catch(() => [] as AccessRow[]);
      replace(
        list,
        table(
          [t('rec.started'), t('calls.caller'), t('calls.callee'), t('calls.duration'), t('rec.state'), t('rec.size'), ...(mayPlay || auditor ? [auditor ? t('rec.playDownload') : t('rec.play')] : [])],
          (Array.isArray(recs) ? recs : []).map((r) => [
            h('time', { datetime: new Date(r.started_at).toISOString(), title: fmtTime(r.started_at) }, fmtJst(r.started_at)),
            r.caller,
            r.callee,
            r.duration_ms ? fmtDuration(r.duration_ms / 1000) : '',
            stateBadge(r),
            sizeText(r.bytes),
            ...(mayPlay || auditor
              ? [
                  playable(r)
                    ? h(
                        'div',
                        { class: 'rec-actions' },
                        mayPlay
                          ? h('audio', {
                              controls: true,
                              preload: 'none',
                              class: 'player',
                              src: `/api/v1/recordings/${enc(r.id)}/audio`,
                              'aria-label': t('rec.playOf', { caller: r.caller, callee: r.callee, at: fmtJst(r.started_at) }),
                              'data-testid': `recording-audio-${r.id}`,
                            })
                          : null,
                        auditor
                          ? h(
                              'a',
                              {
                                href: `/api/v1/recordings/${enc(r.id)}/download`,
                                download: `recording-${r.id}.wav`,
                                class: 'button-link small',
                                'data-testid': `recording-download-${r.id}`,
                                'aria-label': t('rec.downloadOf', { caller: r.caller, callee: r.callee, at: fmtJst(r.started_at) }),
                              },
                              t('rec.download'),
                            )
                          : null,
                      )
                    : h('span', { class: 'muted' }, '—'),
                ]
              : []),
          ]),
          { testid: 'recordings-table', label: t('rec.list'), empty: t('rec.none') },
        ),
      );
      replace(
        log,
        table(
          [t('audit.at'), t('audit.actor'), t('rec.action'), t('rec.recording'), t('audit.source')],
          (Array.isArray(access) ? access : []).map((a) => [
            fmtJst(a.at),
            a.actor,
            t(`rec.act.${a.action}` as Key) === `rec.act.${a.action}` ? a.action : t(`rec.act.${a.action}` as Key),
            a.recording ? h('code', null, a.recording) : '',
            a.source,
          ]),
          { testid: 'recordings-access-table', label: t('rec.accessLog'), empty: t('common.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  })();
}
