// Admins and roles (管理者): list, add (one-time password), edit, delete, reset MFA, unlock.
import { del, enc, get, post, put } from '../api';
import { h, replace } from '../dom';
import { t } from '../i18n';
import type { Key } from '../i18n/ja';
import { canWrite, session } from '../session';
import { RIGHTS, ROLES, type Admin, type Department, type Role } from '../types';
import { deptName, loadDepartments } from '../data';
import {
  actions,
  alertBox,
  busy,
  button,
  card,
  clearBox,
  confirmDialog,
  field,
  input,
  pageTitle,
  secretBox,
  select,
  showError,
  showStatus,
  statusBox,
  table,
  yesNo,
} from '../ui';

export function roleLabel(r: Role): string {
  return t(`role.${r}` as Key);
}

export function renderAdmins(main: HTMLElement): void {
  const me = session.admin!;
  const writable = canWrite('admins');
  const isSystem = me.role === 'system';
  const err = alertBox();
  const ok = statusBox();
  const list = h('div');
  const formCard = h('div');
  let depts: Department[] = [];

  /** An org admin manages neither system nor org admins. */
  const manageable = (a: Admin) => writable && (isSystem || (a.role !== 'system' && a.role !== 'org'));
  const roleChoices = ROLES.filter((r) => isSystem || (r !== 'system' && r !== 'org'));

  async function load() {
    try {
      const admins = await get<Admin[]>('/api/v1/admins');
      replace(
        list,
        table(
          [t('admin.name'), t('admin.role'), t('admin.departments'), t('admin.dids'), t('admin.rights'), t('admin.mfa'), t('admin.locked'), ...(writable ? [''] : [])],
          admins.map((a) => [
            a.name,
            roleLabel(a.role),
            (a.departments ?? []).map((d) => deptName(d, depts)).join(t('common.listSep')),
            (a.dids ?? []).join(', '),
            (a.rights ?? []).map((r) => t(`rightShort.${r}` as Key)).join(t('common.listSep')),
            yesNo(a.mfa),
            a.locked ? h('span', { class: 'badge bad' }, t('admin.lockedYes')) : '',
            ...(writable ? [manageable(a) && a.name !== me.name ? rowActions(a) : ''] : []),
          ]),
          { testid: 'admins-table', label: t('nav.admins'), empty: t('common.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  function act(label: string, testid: string, confirmText: string | null, okLabel: string, fn: () => Promise<void>, cls = 'small') {
    const b: HTMLButtonElement = button(label, () => {
      void (async () => {
        if (confirmText && !(await confirmDialog(confirmText, okLabel))) return;
        clearBox(ok);
        await busy(b, err, fn);
      })();
    }, { class: cls, 'data-testid': testid });
    return b;
  }

  function rowActions(a: Admin): HTMLElement {
    const path = `/api/v1/admins/${enc(a.name)}`;
    return actions(
      button(t('common.edit'), () => showForm(a), { class: 'small', 'data-testid': `admin-edit-${a.name}` }),
      act(t('admin.resetMfa'), `admin-reset-mfa-${a.name}`, t('admin.resetMfaConfirm', { name: a.name }), t('admin.resetMfa'), async () => {
        await post(`${path}/reset-mfa`);
        showStatus(ok, t('admin.resetMfaDone', { name: a.name }));
        await load();
      }),
      a.locked === false
        ? null
        : act(t('admin.unlock'), `admin-unlock-${a.name}`, null, '', async () => {
            await post(`${path}/unlock`);
            showStatus(ok, t('admin.unlocked', { name: a.name }));
            await load();
          }),
      act(t('common.delete'), `admin-delete-${a.name}`, t('admin.deleteConfirm', { name: a.name }), t('common.delete'), async () => {
        await del(path);
        showStatus(ok, t('admin.deleted', { name: a.name }));
        await load();
      }, 'danger small'),
    );
  }

  function showForm(a: Admin | null) {
    const fErr = alertBox('admin-error');
    const fOk = statusBox('admin-result');
    const name = input('admin-name', { value: a?.name ?? '', required: true, readonly: !!a, autocomplete: 'off', autocapitalize: 'none' });
    const role = select('admin-role', roleChoices.map((r) => [r, roleLabel(r)]), a?.role ?? 'group');
    const deptBoxes = depts.map((d) =>
      h(
        'div',
        { class: 'check' },
        h('input', { type: 'checkbox', id: `admin-dept-${d.id}`, value: String(d.id), checked: !!a?.departments?.some((x) => String(x) === String(d.id)) }),
        h('label', { for: `admin-dept-${d.id}` }, d.name),
      ),
    );
    const deptSet = h('fieldset', { class: 'field checks', id: 'admin-departments' }, h('legend', null, t('admin.departments')), deptBoxes.length ? deptBoxes : h('p', { class: 'hint' }, t('dept.none')));
    const dids = input('admin-dids', { value: (a?.dids ?? []).join(', '), placeholder: '0312345678, 0312345679', inputmode: 'tel' });
    const rightBoxes = RIGHTS.map((r) =>
      h(
        'div',
        { class: 'check' },
        h('input', { type: 'checkbox', id: `admin-right-${r}`, value: r, checked: !!a?.rights?.includes(r), disabled: !isSystem }),
        h('label', { for: `admin-right-${r}` }, t(`right.${r}` as Key)),
      ),
    );
    const rightSet = h('fieldset', { class: 'field checks', id: 'admin-rights' }, h('legend', null, t('admin.rights')), rightBoxes, isSystem ? null : h('p', { class: 'hint' }, t('admin.rightsSystemOnly')));
    const roleHint = h('p', { class: 'hint span-all', id: 'admin-role-help', 'aria-live': 'polite' });
    const syncRole = () => {
      roleHint.textContent = t(`roleHelp.${role.value}` as Key);
      const scoped = role.value === 'group';
      deptSet.hidden = !scoped;
      dids.closest('.field')!.toggleAttribute('hidden', !scoped);
    };
    role.addEventListener('change', syncRole);
    const save = h('button', { type: 'submit', class: 'primary', id: 'admin-submit', 'data-testid': 'admin-submit' }, a ? t('common.save') : t('common.add'));
    const form = h(
      'form',
      { class: 'form-grid', 'data-testid': 'admin-form' },
      field('admin-name', t('admin.name'), name),
      field('admin-role', t('admin.role'), role),
      roleHint,
      deptSet,
      field('admin-dids', t('admin.dids'), dids, t('admin.didsHint')),
      rightSet,
      h('div', { class: 'buttons span-all' }, save, a ? button(t('common.cancel'), () => showForm(null)) : null),
      h('div', { class: 'span-all' }, fErr, fOk),
    );
    syncRole();
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(fOk);
      void busy(save, fErr, async () => {
        const scoped = role.value === 'group';
        const body = {
          name: name.value.trim(),
          role: role.value,
          departments: scoped ? deptBoxes.map((d) => d.querySelector('input')!).filter((c) => c.checked).map((c) => Number(c.value)) : [],
          dids: scoped ? dids.value.split(/[,、\s]+/).map((s) => s.trim()).filter(Boolean) : [],
          rights: rightBoxes.map((d) => d.querySelector('input')!).filter((c) => c.checked).map((c) => c.value),
        };
        if (a) {
          await put(`/api/v1/admins/${enc(a.name)}`, body);
          await load();
          showForm(null);
          showStatus(ok, t('common.saved'));
        } else {
          const r = await post<{ one_time_password: string }>('/api/v1/admins', body);
          await load();
          showForm(null);
          const box = formCard.querySelector<HTMLElement>('[data-testid="admin-result"]')!;
          showStatus(box, h('p', null, t('admin.added', { name: body.name })), secretBox(t('admin.oneTimePassword'), r.one_time_password, 'one-time-password'), h('p', { class: 'hint' }, t('admin.oneTimeHint')));
        }
      });
    });
    replace(formCard, card(a ? t('admin.editTitle', { name: a.name }) : t('admin.addTitle'), form));
    if (a) {
      formCard.scrollIntoView({ block: 'start' });
      role.focus();
    }
  }

  replace(main, pageTitle('nav.admins'), err, ok, list, writable ? formCard : null);
  void (async () => {
    depts = await loadDepartments();
    if (writable) showForm(null);
    await load();
  })();
}
