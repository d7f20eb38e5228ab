// Dashboard: counts, trunk states and the live event feed.
import { get } from '../api';
import { debounce, h, replace } from '../dom';
import { connState, onConnState, onEvent, recent } from '../events';
import { fmtClock, t } from '../i18n';
import type { Key } from '../i18n/ja';
import type { Dashboard, LiveEvent } from '../types';
import { alertBox, busy, clearBox, confirmDialog, pageTitle, showError, table } from '../ui';
import { canSetDisaster } from '../session';
import { disasterOn, onDisaster, setDisaster } from '../disaster';

export function eventText(e: LiveEvent): string {
  switch (e.type) {
    case 'call': {
      const k = `event.call.${e.state}` as Key;
      return t(k, { caller: e.caller || '—', callee: e.callee || '—' }) + (e.did ? ` (${t('event.did', { did: e.did })})` : '');
    }
    case 'registration':
      return t(e.registered ? 'event.registered' : 'event.unregistered', { ext: e.extension });
    case 'change':
      return t('event.change', { resource: e.resource, key: e.key ?? '' });
    default:
      return JSON.stringify(e);
  }
}

function eventClass(e: LiveEvent): string {
  if (e.type === 'call') return `ev-call ev-${e.state}`;
  if (e.type === 'registration') return e.registered ? 'ev-reg' : 'ev-unreg';
  return 'ev-change';
}

function trunkState(s: string): string {
  const known: Record<string, Key> = {
    registered: 'trunk.state.registered',
    up: 'trunk.state.up',
    ok: 'trunk.state.up',
    failed: 'trunk.state.failed',
    down: 'trunk.state.down',
    unregistered: 'trunk.state.unregistered',
    registering: 'trunk.state.registering',
    unknown: 'trunk.state.unknown',
    '': 'trunk.state.unknown',
  };
  return known[s] ? t(known[s]) : s;
}

export function trunkBadge(s: string): HTMLElement {
  const good = ['registered', 'up', 'ok'].includes(s);
  const bad = ['failed', 'down'].includes(s);
  return h('span', { class: `badge ${good ? 'good' : bad ? 'bad' : 'neutral'}` }, trunkState(s));
}

/** The disaster-mode switch (system and org admins): a real button with role=switch, confirmed first. */
function disasterCard(): { el: HTMLElement; off: () => void } {
  const err = alertBox('disaster-error');
  const state = h('span', { class: 'switch-state', 'aria-hidden': 'true' });
  const btn = h(
    'button',
    { type: 'button', role: 'switch', id: 'disaster-toggle', 'data-testid': 'disaster-toggle', class: 'switch', 'aria-describedby': 'disaster-help' },
    h('span', { class: 'switch-track', 'aria-hidden': 'true' }, h('span', { class: 'switch-thumb' })),
    h('span', null, t('disaster.switch')),
    state,
  );
  const show = (on: boolean) => {
    btn.setAttribute('aria-checked', String(on));
    btn.classList.toggle('on', on);
    state.textContent = on ? t('disaster.on') : t('disaster.off');
    el.classList.toggle('disaster-on', on);
  };
  btn.addEventListener('click', () => {
    void (async () => {
      const next = !disasterOn();
      const ok = await confirmDialog(t(next ? 'disaster.confirmOn' : 'disaster.confirmOff'), t(next ? 'disaster.okOn' : 'disaster.okOff'));
      if (!ok) return;
      await busy(btn, err, () => setDisaster(next));
    })();
  });
  const el = h(
    'section',
    { class: 'card disaster-card', 'data-testid': 'disaster-card' },
    h('h2', null, t('disaster.title')),
    h('p', { class: 'hint', id: 'disaster-help' }, t('disaster.help')),
    btn,
    err,
  );
  show(disasterOn());
  return { el, off: onDisaster(show) };
}

export function renderDashboard(main: HTMLElement): () => void {
  const err = alertBox();
  const stats = h('div', { class: 'stats', 'data-testid': 'dashboard-stats' });
  const trunks = h('div');
  const conn = h('span', { class: 'conn', 'data-testid': 'events-state' });
  const feed = h('ol', { class: 'feed', 'data-testid': 'event-feed', 'aria-live': 'polite', 'aria-relevant': 'additions' });

  const stat = (key: Key, v: number, id: string) =>
    h('div', { class: 'stat', 'data-testid': `stat-${id}` }, h('span', { class: 'stat-value' }, String(v ?? 0)), h('span', { class: 'stat-label' }, t(key)));

  async function load() {
    try {
      const d = await get<Dashboard>('/api/v1/dashboard');
      clearBox(err);
      replace(
        stats,
        stat('dash.users', d.users, 'users'),
        stat('dash.regExt', d.registered_extensions, 'registered-extensions'),
        stat('dash.regDev', d.registered_devices, 'registered-devices'),
        stat('dash.callsNow', d.calls_now, 'calls-now'),
      );
      replace(
        trunks,
        table(
          [t('trunks.name'), t('trunks.state'), t('trunks.detail')],
          (d.trunks ?? []).map((x) => [x.name, trunkBadge(x.state), x.detail ?? '']),
          { testid: 'dashboard-trunks', label: t('dash.trunks'), empty: t('trunks.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  const feedItem = (at: number, e: LiveEvent) =>
    h(
      'li',
      { class: eventClass(e) },
      h('time', { datetime: new Date(at).toISOString() }, fmtClock(at)),
      h('span', { class: 'ev-text' }, eventText(e), e.type === 'registration' && e.device ? h('small', { class: 'ev-device' }, e.device) : null),
    );

  function showConn() {
    const s = connState();
    conn.className = `conn conn-${s}`;
    conn.textContent = t(`dash.conn.${s}` as Key);
  }

  const disaster = canSetDisaster() ? disasterCard() : null;
  replace(
    main,
    pageTitle('nav.dashboard'),
    err,
    disaster?.el,
    stats,
    h(
      'div',
      { class: 'grid-2' },
      h('section', { class: 'card' }, h('h2', null, t('dash.trunks')), trunks),
      h(
        'section',
        { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', null, t('dash.live')), conn),
        feed,
        h('p', { class: 'hint empty-feed' }, t('dash.noEvents')),
      ),
    ),
  );
  const emptyNote = main.querySelector('.empty-feed') as HTMLElement;
  for (const r of recent.slice(0, 30)) feed.appendChild(feedItem(r.at, r.event));
  emptyNote.hidden = recent.length > 0;
  showConn();
  void load();

  const reload = debounce(() => void load(), 400);
  const offEvent = onEvent((e) => {
    feed.prepend(feedItem(Date.now(), e));
    while (feed.children.length > 30) feed.lastElementChild?.remove();
    emptyNote.hidden = true;
    reload();
  });
  const offConn = onConnState(() => {
    showConn();
    if (connState() === 'open') reload();
  });
  return () => {
    offEvent();
    offConn();
    disaster?.off();
  };
}
