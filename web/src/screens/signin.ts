// Sign-in: name + password, then a TOTP (or recovery) code, or TOTP enrolment.
import { get, post, setCsrf } from '../api';
import { h, replace } from '../dom';
import { t } from '../i18n';
import type { Key } from '../i18n/ja';
import type { SessionAnswer, SignInState } from '../types';
import { alertBox, busy, field, input, qrCode, showError } from '../ui';

export type PendingState = Exclude<SignInState, 'ok'>;

export interface SignInOptions {
  state: PendingState | null;
  notice: Key | null;
  onState: (s: PendingState | null) => void;
  onSignedIn: (a: SessionAnswer) => void;
}

export function renderSignIn(main: HTMLElement, opts: SignInOptions): void {
  const box = h('div', { class: 'signin card' });
  replace(main, box);
  /** The password just typed, to replace a one-time password without asking again. */
  let typed = '';

  const next = (ans: SessionAnswer) => {
    if (ans.csrf) setCsrf(ans.csrf);
    if (ans.state === 'ok' && ans.admin) {
      opts.onSignedIn(ans);
    } else if (ans.state === 'mfa') {
      opts.onState('mfa');
      mfaStep();
    } else if (ans.state === 'enrol') {
      opts.onState('enrol');
      void enrolStep();
    } else if (ans.state === 'password') {
      opts.onState('password');
      newPasswordStep();
    }
  };

  function passwordStep() {
    const err = alertBox('signin-error');
    const name = input('signin-name', { autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
    const pass = input('signin-password', { type: 'password', autocomplete: 'current-password', required: true });
    const btn = h('button', { type: 'submit', id: 'signin-submit', 'data-testid': 'signin-submit', class: 'primary wide' }, t('signin.submit'));
    const form = h(
      'form',
      { 'aria-labelledby': 'signin-heading' },
      h('h1', { id: 'signin-heading' }, t('signin.title')),
      opts.notice ? h('p', { class: 'notice', role: 'status' }, t(opts.notice)) : null,
      field('signin-name', t('signin.name'), name),
      field('signin-password', t('signin.password'), pass),
      err,
      btn,
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void busy(btn, err, async () => {
        const ans = await post<SessionAnswer>('/api/v1/session', { name: name.value.trim(), password: pass.value });
        typed = pass.value;
        next(ans);
      }).then(() => {
        pass.value = '';
      });
    });
    replace(box, form);
    name.focus();
  }

  function mfaStep() {
    const err = alertBox('totp-error');
    const code = input('totp-code', {
      autocomplete: 'one-time-code',
      inputmode: 'text',
      required: true,
      autocapitalize: 'none',
      spellcheck: 'false',
      maxlength: 32,
    });
    const btn = h('button', { type: 'submit', id: 'totp-submit', 'data-testid': 'totp-submit', class: 'primary wide' }, t('signin.verify'));
    const form = h(
      'form',
      { 'aria-labelledby': 'mfa-heading' },
      h('h1', { id: 'mfa-heading' }, t('signin.mfaTitle')),
      field('totp-code', t('signin.totpCode'), code, t('signin.totpHint')),
      err,
      btn,
      h('p', null, h('button', { type: 'button', class: 'link', id: 'signin-restart', onclick: restart }, t('signin.restart'))),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void busy(btn, err, async () => {
        const ans = await post<SessionAnswer>('/api/v1/session/totp', { code: code.value.replace(/\s+/g, '') });
        next(ans);
      });
    });
    replace(box, form);
    code.focus();
  }

  async function enrolStep() {
    const err = alertBox('enrol-error');
    replace(box, h('h1', null, t('signin.enrolTitle')), h('p', null, t('common.loading')), err);
    let secret: { secret: string; otpauth_url: string };
    try {
      secret = await post('/api/v1/me/totp');
    } catch (e) {
      showError(err, e);
      box.appendChild(h('p', null, h('button', { type: 'button', class: 'link', onclick: restart }, t('signin.restart'))));
      return;
    }
    const code = input('enrol-code', { autocomplete: 'one-time-code', inputmode: 'numeric', required: true, maxlength: 8, pattern: '[0-9 ]*' });
    const btn = h('button', { type: 'submit', id: 'enrol-submit', 'data-testid': 'enrol-submit', class: 'primary wide' }, t('signin.enrolConfirm'));
    const qr = await qrCode(secret.otpauth_url, t('signin.qrLabel'), 'totp-qr');
    const form = h(
      'form',
      { 'aria-labelledby': 'enrol-heading' },
      h('h1', { id: 'enrol-heading' }, t('signin.enrolTitle')),
      h('p', null, t('signin.enrolIntro')),
      h('ol', { class: 'steps' }, h('li', null, t('signin.enrolStep1')), h('li', null, t('signin.enrolStep2'))),
      qr,
      h('p', { class: 'hint' }, t('signin.secretText')),
      h('code', { class: 'secret-value', 'data-testid': 'totp-secret' }, secret.secret),
      field('enrol-code', t('signin.firstCode'), code),
      err,
      btn,
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void busy(btn, err, async () => {
        const ans = await post<Partial<SessionAnswer> & { recovery_codes: string[] }>('/api/v1/me/totp/confirm', {
          code: code.value.replace(/\s+/g, ''),
        });
        recoveryStep(ans.recovery_codes ?? [], ans.state && ans.csrf ? (ans as SessionAnswer) : null);
      });
    });
    replace(box, form);
    code.focus();
  }

  function recoveryStep(codes: string[], after: SessionAnswer | null) {
    const err = alertBox('recovery-error');
    const btn = h('button', { type: 'button', id: 'recovery-continue', 'data-testid': 'recovery-continue', class: 'primary wide' }, t('signin.savedThem'));
    btn.addEventListener('click', () => {
      void busy(btn, err, async () => {
        // The session moved on (to "ok", or to replacing a one-time password).
        next(after?.admin ? after : await get<SessionAnswer>('/api/v1/session'));
      });
    });
    replace(
      box,
      h('h1', { id: 'recovery-heading', tabindex: -1 }, t('signin.recoveryTitle')),
      h('p', null, t('signin.recoveryIntro')),
      h('ol', { class: 'codes', 'data-testid': 'recovery-codes' }, codes.map((c) => h('li', null, h('code', null, c)))),
      err,
      btn,
    );
    (box.querySelector('#recovery-heading') as HTMLElement).focus();
  }

  function newPasswordStep() {
    const err = alertBox('new-password-error');
    const cur = input('new-password-current', { type: 'password', autocomplete: 'current-password', required: true });
    const neu = input('new-password', { type: 'password', autocomplete: 'new-password', required: true, minlength: 10 });
    const again = input('new-password-again', { type: 'password', autocomplete: 'new-password', required: true, minlength: 10 });
    const btn = h('button', { type: 'submit', id: 'new-password-submit', 'data-testid': 'new-password-submit', class: 'primary wide' }, t('password.submit'));
    const form = h(
      'form',
      { 'aria-labelledby': 'new-password-heading' },
      h('h1', { id: 'new-password-heading' }, t('signin.newPasswordTitle')),
      h('p', null, t('signin.newPasswordIntro')),
      typed ? null : field('new-password-current', t('password.current'), cur),
      field('new-password', t('password.new'), neu, t('password.rule')),
      field('new-password-again', t('password.again'), again),
      err,
      btn,
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (neu.value !== again.value) {
        showError(err, new Error(t('password.mismatch')));
        return;
      }
      void busy(btn, err, async () => {
        const ans = await post<SessionAnswer>('/api/v1/me/password', { current: typed || cur.value, new: neu.value });
        typed = '';
        next(ans?.state ? ans : await get<SessionAnswer>('/api/v1/session'));
      });
    });
    replace(box, form);
    (typed ? neu : cur).focus();
  }

  function restart() {
    opts.onState(null);
    opts.notice = null;
    passwordStep();
  }

  if (opts.state === 'mfa') mfaStep();
  else if (opts.state === 'enrol') void enrolStep();
  else if (opts.state === 'password') newPasswordStep();
  else passwordStep();
}
