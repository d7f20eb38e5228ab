// App shell: session, header, navigation, hash routing.
import './style.css';
import { get, del, onSessionLost, setApiLanguage, setCsrf } from './api';
import { h, replace } from './dom';
import { getLang, setLang, t } from './i18n';
import type { Key } from './i18n/ja';
import { session, canView, canSetDisaster, firstScreen, SCREENS, type Screen } from './session';
import { startEvents, stopEvents } from './events';
import { disasterOn, onDisaster, startDisaster, stopDisaster } from './disaster';
import type { Admin, SessionAnswer } from './types';
import { renderSignIn, type PendingState } from './screens/signin';
import { renderDashboard } from './screens/dashboard';
import { renderUsers } from './screens/users';
import { renderUser } from './screens/user';
import { renderDepartments } from './screens/departments';
import { renderGroups } from './screens/groups';
import { renderDids } from './screens/dids';
import { renderSchedules } from './screens/schedules';
import { renderAnnouncements } from './screens/announcements';
import { renderIvr } from './screens/ivr';
import { renderTrunks } from './screens/trunks';
import { renderSettings } from './screens/settings';
import { renderPhonebook } from './screens/phonebook';
import { renderCalls } from './screens/calls';
import { renderAudit } from './screens/audit';
import { renderAdmins } from './screens/admins';
import { renderRecordings } from './screens/recordings';
import { renderPassword } from './screens/password';

export type Cleanup = (() => void) | void;
export type Render = (main: HTMLElement, params: string[]) => Cleanup;

const ROUTES: Record<Screen, Render> = {
  dashboard: renderDashboard,
  users: (m, p) => (p[0] ? renderUser(m, p[0]) : renderUsers(m)),
  departments: renderDepartments,
  groups: renderGroups,
  dids: renderDids,
  schedules: renderSchedules,
  announcements: renderAnnouncements,
  ivr: renderIvr,
  trunks: renderTrunks,
  settings: renderSettings,
  phonebook: renderPhonebook,
  calls: renderCalls,
  audit: renderAudit,
  admins: renderAdmins,
  recordings: renderRecordings,
};

const app = document.getElementById('app')!;
let cleanup: Cleanup;
/** A partly finished sign-in to resume after a reload or language switch. */
let pendingState: PendingState | null = null;
let signInNotice: Key | null = null;

function langButton(): HTMLButtonElement {
  return h(
    'button',
    {
      type: 'button',
      id: 'lang-switch',
      class: 'ghost',
      lang: getLang() === 'ja' ? 'en' : 'ja',
      onclick: () => {
        setLang(getLang() === 'ja' ? 'en' : 'ja');
        setApiLanguage(getLang());
        render();
        document.getElementById('lang-switch')?.focus();
      },
    },
    getLang() === 'ja' ? 'English' : '日本語',
  );
}

function roleLabel(a: Admin): string {
  return t(`role.${a.role}` as Key);
}

function parseHash(): string[] {
  return location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
}

function signedIn(admin: Admin, csrf: string) {
  session.admin = admin;
  setCsrf(csrf);
  pendingState = null;
  signInNotice = null;
  startEvents();
  startDisaster();
  render();
}

function signedOut(notice: Key | null) {
  session.admin = null;
  setCsrf('');
  offBanner?.();
  offBanner = null;
  stopDisaster();
  stopEvents();
  signInNotice = notice;
  render();
}

async function signOut() {
  try {
    await del('/api/v1/session');
  } catch {
    /* signed out anyway */
  }
  pendingState = null;
  signedOut(null);
}

let offBanner: (() => void) | null = null;

/** The red disaster-mode banner under the top bar (a live region: it is announced when it appears). */
function disasterBanner(): HTMLElement {
  const slot = h('div', { class: 'disaster-slot', 'aria-live': 'assertive' });
  const show = (on: boolean) =>
    replace(
      slot,
      on
        ? h(
            'div',
            { class: 'disaster-banner', 'data-testid': 'disaster-banner' },
            h('strong', null, h('span', { 'aria-hidden': 'true' }, '⚠ '), t('disaster.banner')),
            h('span', null, t('disaster.bannerText')),
            h('a', { href: '#/schedules' }, t('disaster.bannerLink')),
            canSetDisaster() ? h('a', { href: '#/dashboard' }, t('disaster.bannerOff')) : null,
          )
        : null,
    );
  offBanner?.();
  offBanner = onDisaster(show);
  show(disasterOn());
  return slot;
}

function renderShell(): HTMLElement {
  const a = session.admin!;
  const navList = h(
    'ul',
    null,
    SCREENS.filter(canView).map((s) =>
      h('li', null, h('a', { href: `#/${s}`, 'data-testid': `nav-${s}`, id: `nav-${s}` }, t(`nav.${s}` as Key))),
    ),
  );
  const nav = h('nav', { id: 'nav', class: 'nav', 'aria-label': t('nav.label') }, navList);
  const menu = h(
    'button',
    {
      type: 'button',
      id: 'menu-toggle',
      class: 'menu-toggle ghost',
      'aria-controls': 'nav',
      'aria-expanded': 'false',
      onclick: () => {
        const closed = document.body.classList.toggle('nav-closed');
        const open = !closed;
        menu.setAttribute('aria-expanded', String(open));
      },
    },
    h('span', { 'aria-hidden': 'true', class: 'burger' }, '☰'),
    ' ',
    t('nav.menu'),
  );
  document.body.classList.add('nav-closed');
  nav.addEventListener('click', (e) => {
    if ((e.target as HTMLElement).closest('a')) {
      document.body.classList.add('nav-closed');
      menu.setAttribute('aria-expanded', 'false');
    }
  });
  const main = h('main', { id: 'main', tabindex: -1 });
  return h(
    'div',
    { class: 'shell' },
    h('button', { type: 'button', class: 'skip', onclick: () => main.focus() }, t('nav.skip')),
    h(
      'header',
      { class: 'topbar' },
      menu,
      h('a', { class: 'brand', href: '#/' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, '繋'), t('app.title')),
      h('div', { class: 'spacer' }),
      h(
        'span',
        { class: 'who', 'data-testid': 'who' },
        h('a', { href: '#/password', title: t('me.title'), 'data-testid': 'me-link' }, a.name),
        h('span', { class: 'role-badge' }, roleLabel(a)),
      ),
      langButton(),
      h('button', { type: 'button', id: 'signout', 'data-testid': 'signout', class: 'ghost', onclick: () => void signOut() }, t('nav.signout')),
    ),
    canView('schedules') ? disasterBanner() : null,
    h('div', { class: 'layout' }, nav, main),
  );
}

function route() {
  if (!session.admin) return;
  const main = document.getElementById('main');
  if (!main) return;
  if (typeof cleanup === 'function') cleanup();
  cleanup = undefined;
  const [first, ...rest] = parseHash();
  if (first === 'password') {
    cleanup = renderPassword(main);
  } else if (first && (SCREENS as string[]).includes(first) && canView(first as Screen)) {
    cleanup = ROUTES[first as Screen](main, rest);
  } else {
    const s = firstScreen();
    if (s) {
      history.replaceState(null, '', `#/${s}`);
      cleanup = ROUTES[s](main, []);
    } else {
      replace(main, h('h1', null, t('app.title')), h('p', null, t('app.nothing')));
    }
  }
  const current = parseHash()[0] ?? '';
  for (const a of document.querySelectorAll<HTMLAnchorElement>('#nav a')) {
    if (a.getAttribute('href') === `#/${current}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const title = main.querySelector('h1')?.textContent;
  document.title = title ? `${title} — ${t('app.title')}` : t('app.title');
}

function render() {
  document.documentElement.lang = getLang();
  if (typeof cleanup === 'function') cleanup();
  cleanup = undefined;
  if (!session.admin) {
    document.title = `${t('signin.title')} — ${t('app.title')}`;
    replace(
      app,
      h(
        'div',
        { class: 'signin-page' },
        h('header', { class: 'topbar plain' }, h('span', { class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, '繋'), t('app.title')), h('div', { class: 'spacer' }), langButton()),
        h('main', { id: 'main', tabindex: -1 }),
      ),
    );
    renderSignIn(app.querySelector('main')!, {
      state: pendingState,
      notice: signInNotice,
      onState: (s) => (pendingState = s),
      onSignedIn: (ans: SessionAnswer) => signedIn(ans.admin!, ans.csrf),
    });
    return;
  }
  replace(app, renderShell());
  route();
}

window.addEventListener('hashchange', () => {
  if (session.admin) {
    route();
    document.getElementById('main')?.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
});

onSessionLost(() => {
  if (session.admin) signedOut('signin.expired');
});

async function boot() {
  setLang(getLang());
  setApiLanguage(getLang());
  replace(app, h('p', { class: 'loading' }, t('common.loading')));
  try {
    const s = await get<SessionAnswer>('/api/v1/session');
    if (s.state === 'ok' && s.admin) {
      signedIn(s.admin, s.csrf);
      return;
    }
    setCsrf(s.csrf);
    pendingState = s.state === 'mfa' || s.state === 'enrol' || s.state === 'password' ? s.state : null;
  } catch {
    /* not signed in */
  }
  render();
}

void boot();
