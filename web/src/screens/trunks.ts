// SIP trunks (外線回線): list, add/edit (PUT /trunks/{name}), delete. The password is write-only.
import { del, enc, get, put } from '../api';
import { h, replace } from '../dom';
import { t } from '../i18n';
import { canWrite } from '../session';
import type { Trunk } from '../types';
import {
  actions,
  alertBox,
  busy,
  button,
  card,
  checkbox,
  clearBox,
  confirmDialog,
  field,
  input,
  pageTitle,
  select,
  showError,
  showStatus,
  statusBox,
  table,
  yesNo,
} from '../ui';
import { trunkBadge } from './dashboard';

export function renderTrunks(main: HTMLElement): void {
  const writable = canWrite('trunks');
  const err = alertBox();
  const list = h('div');
  const formCard = h('div');

  async function load() {
    try {
      const trunks = await get<Trunk[]>('/api/v1/trunks');
      replace(
        list,
        table(
          [t('trunks.name'), t('trunks.host'), t('trunks.transport'), t('trunks.username'), t('trunks.priority'), t('trunks.register'), t('trunks.state'), ...(writable ? [''] : [])],
          trunks.map((x) => [
            x.name,
            x.host,
            (x.transport ?? '').toUpperCase(),
            x.username ?? '',
            String(x.priority ?? ''),
            yesNo(x.register),
            x.state ? h('span', { title: x.detail ?? '' }, trunkBadge(x.state)) : '',
            ...(writable
              ? [
                  actions(
                    button(t('common.edit'), () => showForm(x), { class: 'small', 'data-testid': `trunk-edit-${x.name}` }),
                    button(t('common.delete'), (ev) => {
                      void (async () => {
                        if (!(await confirmDialog(t('trunks.deleteConfirm', { name: x.name })))) return;
                        await busy(ev.target as HTMLButtonElement, err, async () => {
                          await del(`/api/v1/trunks/${enc(x.name)}`);
                          await load();
                        });
                      })();
                    }, { class: 'danger small', 'data-testid': `trunk-delete-${x.name}` }),
                  ),
                ]
              : []),
          ]),
          { testid: 'trunks-table', label: t('nav.trunks'), empty: t('trunks.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  function showForm(x: Trunk | null) {
    const fErr = alertBox('trunk-error');
    const fOk = statusBox('trunk-result');
    const name = input('trunk-name', { value: x?.name ?? '', required: true, readonly: !!x, pattern: '[A-Za-z0-9_.-]+' });
    const host = input('trunk-host', { value: x?.host ?? '', required: true, placeholder: '203.0.113.10:5060', autocomplete: 'off' });
    const transport = select('trunk-transport', [['udp', 'UDP'], ['tcp', 'TCP'], ['tls', 'TLS']], x?.transport ?? 'udp');
    const username = input('trunk-username', { value: x?.username ?? '', autocomplete: 'off' });
    const password = input('trunk-password', { type: 'password', autocomplete: 'new-password' });
    const priority = input('trunk-priority', { type: 'number', value: String(x?.priority ?? 10), min: 0, max: 1000 });
    const register = checkbox('trunk-register', t('trunks.registerLabel'), x ? !!x.register : true);
    const save = h('button', { type: 'submit', class: 'primary', id: 'trunk-submit', 'data-testid': 'trunk-submit' }, x ? t('common.save') : t('common.add'));
    const form = h(
      'form',
      { class: 'form-grid', 'data-testid': 'trunk-form' },
      field('trunk-name', t('trunks.name'), name),
      field('trunk-host', t('trunks.host'), host, t('trunks.hostHint')),
      field('trunk-transport', t('trunks.transport'), transport),
      field('trunk-priority', t('trunks.priority'), priority, t('trunks.priorityHint')),
      field('trunk-username', t('trunks.username'), username),
      field('trunk-password', t('trunks.password'), password, x ? t('trunks.passwordKeep') : t('trunks.passwordHint')),
      register,
      h('div', { class: 'buttons span-all' }, save, x ? button(t('common.cancel'), () => showForm(null)) : null),
      h('div', { class: 'span-all' }, fErr, fOk),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(fOk);
      void busy(save, fErr, async () => {
        const n = name.value.trim();
        const body: Record<string, unknown> = {
          host: host.value.trim(),
          transport: transport.value,
          username: username.value.trim() || null,
          priority: Number(priority.value),
          register: (register.querySelector('input') as HTMLInputElement).checked,
        };
        if (password.value) body.password = password.value;
        await put(`/api/v1/trunks/${enc(n)}`, body);
        await load();
        showForm(null);
        const ok = formCard.querySelector<HTMLElement>('[data-testid="trunk-result"]');
        if (ok) showStatus(ok, t('trunks.saved', { name: n }));
      });
    });
    replace(formCard, card(x ? t('trunks.editTitle', { name: x.name }) : t('trunks.addTitle'), form));
    if (x) {
      formCard.scrollIntoView({ block: 'start' });
      host.focus();
    }
  }

  replace(main, pageTitle('nav.trunks'), err, list, writable ? formCard : null);
  if (writable) showForm(null);
  void load();
}
