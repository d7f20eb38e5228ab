// API tokens for scripts (GET/POST /me/tokens, DELETE /me/tokens/{id}):
// each acts with the signed-in admin's own rights; a new token is shown once.
import { del, get, post } from '../api';
import { h, replace } from '../dom';
import { fmtTime, t } from '../i18n';
import { alertBox, busy, button, card, clearBox, confirmDialog, field, input, showStatus, statusBox, table } from '../ui';

interface Token {
  id: number;
  label: string;
  created_at: number;
  last_used_at: number;
  expires_at: number;
}

interface NewToken {
  id: number;
  label: string;
  expires_at: number;
  token: string;
}

const secs = (s: number) => fmtTime(s * 1000);

async function copyText(text: string, source: HTMLElement): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (plain http, old browser): select the text instead.
    const range = document.createRange();
    range.selectNodeContents(source);
    const sel = window.getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
    try {
      return document.execCommand('copy');
    } catch {
      return false;
    }
  }
}

export function tokensPanel(): HTMLElement {
  const err = alertBox('tokens-error');
  const ok = statusBox('tokens-status');
  const list = h('div', { 'data-testid': 'tokens-list' }, h('p', { class: 'loading' }, t('common.loading')));
  const fresh = h('div', { 'aria-live': 'polite' });

  const load = () =>
    busy(null, err, async () => {
      const rows = await get<Token[]>('/api/v1/me/tokens');
      const now = Date.now() / 1000;
      replace(
        list,
        table(
          [t('tokens.label'), t('tokens.created'), t('tokens.lastUsed'), t('tokens.expires'), ''],
          rows.map((r) => {
            const name = r.label || t('tokens.noLabel');
            return [
              h('span', { 'data-testid': `token-label-${r.id}` }, name),
              secs(r.created_at),
              h('span', { 'data-testid': `token-used-${r.id}` }, r.last_used_at ? secs(r.last_used_at) : t('tokens.never')),
              r.expires_at <= now ? `${secs(r.expires_at)} ${t('tokens.expired')}` : secs(r.expires_at),
              button(t('tokens.revoke'), () => void revoke(r, name), {
                class: 'danger small',
                'data-testid': `token-revoke-${r.id}`,
                'aria-label': t('tokens.revokeNamed', { label: name }),
              }),
            ];
          }),
          { testid: 'tokens-table', label: t('tokens.listLabel'), empty: t('tokens.none') },
        ),
      );
    });

  async function revoke(r: Token, name: string) {
    clearBox(ok);
    if (!(await confirmDialog(t('tokens.revokeConfirm', { label: name }), t('tokens.revoke')))) return;
    await busy(null, err, async () => {
      await del(`/api/v1/me/tokens/${r.id}`);
      if (fresh.dataset.id === String(r.id)) {
        replace(fresh);
        delete fresh.dataset.id;
      }
      showStatus(ok, t('tokens.revoked', { label: name }));
      await load();
      document.getElementById('token-label')?.focus();
    });
  }

  function showNew(n: NewToken) {
    const value = h('code', { class: 'secret-value', id: 'token-value', 'data-testid': 'token-value' }, n.token);
    const copied = h('span', { role: 'status', class: 'hint', 'data-testid': 'token-copied' });
    const copy = button(t('tokens.copy'), () => {
      void copyText(n.token, value).then((done) => replace(copied, done ? t('tokens.copied') : t('tokens.copyFailed')));
    }, { id: 'token-copy', 'data-testid': 'token-copy', 'aria-describedby': 'token-value' });
    const dismiss = button(t('tokens.dismiss'), () => {
      replace(fresh);
      delete fresh.dataset.id;
      document.getElementById('token-label')?.focus();
    }, { id: 'token-dismiss' });
    fresh.dataset.id = String(n.id);
    replace(
      fresh,
      h(
        'div',
        { class: 'secret', 'data-testid': 'token-new', role: 'group', 'aria-labelledby': 'token-new-title' },
        h('p', null, h('strong', { id: 'token-new-title' }, `${t('tokens.newTitle')}: ${n.label || t('tokens.noLabel')}`)),
        h('p', null, h('strong', null, h('span', { 'aria-hidden': 'true' }, '⚠ '), t('tokens.newWarning'))),
        value,
        h('div', { class: 'buttons' }, copy, copied),
        h('p', { class: 'hint' }, t('tokens.usage')),
        h('div', { class: 'buttons' }, dismiss),
      ),
    );
    copy.focus();
  }

  const label = input('token-label', { maxlength: 100, autocomplete: 'off' });
  const days = input('token-days', { type: 'number', min: 1, max: 366, step: 1, value: '90', required: true, inputmode: 'numeric' });
  const btn = h('button', { type: 'submit', class: 'primary', id: 'token-submit', 'data-testid': 'token-submit' }, t('tokens.create'));
  const form = h(
    'form',
    { class: 'form-grid', 'data-testid': 'token-form' },
    field('token-label', t('tokens.label'), label, t('tokens.labelHint')),
    field('token-days', t('tokens.days'), days, t('tokens.daysHint')),
    h('div', { class: 'buttons span-all' }, btn),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearBox(ok);
    void busy(btn, err, async () => {
      const n = await post<NewToken>('/api/v1/me/tokens', { label: label.value.trim(), days: Number(days.value) || 90 });
      label.value = '';
      days.value = '90';
      showNew(n);
      await load();
    });
  });

  void load();
  return card(t('tokens.title'), h('p', { class: 'hint' }, t('tokens.intro')), list, fresh, form, err, ok);
}
