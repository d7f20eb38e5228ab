// The admin's own page: change one's password (POST /me/password) and
// manage one's API tokens (screens/tokens.ts).
import { post } from '../api';
import { h, replace } from '../dom';
import { t } from '../i18n';
import { alertBox, busy, card, clearBox, field, input, showError, showStatus, statusBox } from '../ui';
import { tokensPanel } from './tokens';

export function renderPassword(main: HTMLElement): void {
  const err = alertBox();
  const ok = statusBox();
  const cur = input('password-current', { type: 'password', autocomplete: 'current-password', required: true });
  const neu = input('password-new', { type: 'password', autocomplete: 'new-password', required: true, minlength: 10 });
  const again = input('password-again', { type: 'password', autocomplete: 'new-password', required: true, minlength: 10 });
  const btn = h('button', { type: 'submit', class: 'primary', id: 'password-submit' }, t('password.submit'));
  const form = h(
    'form',
    { class: 'form-grid' },
    h('div', { class: 'span-all' }, field('password-current', t('password.current'), cur)),
    field('password-new', t('password.new'), neu, t('password.rule')),
    field('password-again', t('password.again'), again),
    h('div', { class: 'buttons span-all' }, btn),
    h('div', { class: 'span-all' }, err, ok),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearBox(ok);
    if (neu.value !== again.value) {
      showError(err, new Error(t('password.mismatch')));
      return;
    }
    void busy(btn, err, async () => {
      await post('/api/v1/me/password', { current: cur.value, new: neu.value });
      cur.value = neu.value = again.value = '';
      showStatus(ok, t('password.done'));
    });
  });
  replace(
    main,
    h('div', { class: 'page-head' }, h('h1', { id: 'page-title' }, t('me.title'))),
    card(t('password.title'), form),
    tokensPanel(),
  );
}
