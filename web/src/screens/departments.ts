// Departments: list, add, rename, delete.
import { del, enc, get, post, put } from '../api';
import { h, replace } from '../dom';
import { t } from '../i18n';
import { canWrite } from '../session';
import type { Department } from '../types';
import { actions, alertBox, busy, button, card, clearBox, confirmDialog, field, input, pageTitle, showError, table } from '../ui';

export function renderDepartments(main: HTMLElement): void {
  const writable = canWrite('departments');
  const err = alertBox();
  const list = h('div');

  async function load() {
    try {
      const depts = await get<Department[]>('/api/v1/departments');
      replace(
        list,
        table(
          [t('dept.name'), t('dept.users'), ...(writable ? [''] : [])],
          depts.map((d) => [
            h('span', { 'data-testid': `dept-name-${d.id}` }, d.name),
            h('a', { href: `#/users`, onclick: () => sessionStorage.setItem('tsunagu.deptFilter', String(d.id)) }, String(d.users ?? 0)),
            ...(writable ? [rowActions(d)] : []),
          ]),
          { testid: 'departments-table', label: t('nav.departments'), empty: t('dept.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  function rowActions(d: Department): HTMLElement {
    const cell = actions();
    const renameBtn = button(t('dept.rename'), () => {
      const id = `dept-rename-${d.id}`;
      const box = input(id, { value: d.name, required: true });
      const save = h('button', { type: 'submit', class: 'primary small' }, t('common.save'));
      const form = h(
        'form',
        { class: 'inline-form' },
        h('label', { for: id, class: 'sr-only' }, t('dept.newName', { name: d.name })),
        box,
        save,
        button(t('common.cancel'), () => void load(), { class: 'small' }),
      );
      form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        void busy(save, err, async () => {
          await put(`/api/v1/departments/${enc(String(d.id))}`, { name: box.value.trim() });
          await load();
        });
      });
      replace(cell, form);
      box.focus();
      box.select();
    }, { class: 'small', 'data-testid': `dept-rename-${d.id}` });
    const delBtn = button(t('common.delete'), () => {
      void (async () => {
        if (!(await confirmDialog(t('dept.deleteConfirm', { name: d.name })))) return;
        await busy(delBtn, err, async () => {
          await del(`/api/v1/departments/${enc(String(d.id))}`);
          await load();
        });
      })();
    }, { class: 'danger small', 'data-testid': `dept-delete-${d.id}` });
    replace(cell, renameBtn, delBtn);
    return cell;
  }

  const name = input('dept-name', { required: true, autocomplete: 'off' });
  const addBtn = h('button', { type: 'submit', class: 'primary', id: 'dept-submit', 'data-testid': 'dept-submit' }, t('common.add'));
  const addForm = h('form', { class: 'form-inline' }, field('dept-name', t('dept.name'), name), addBtn);
  addForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void busy(addBtn, err, async () => {
      await post('/api/v1/departments', { name: name.value.trim() });
      name.value = '';
      clearBox(err);
      await load();
    });
  });

  replace(
    main,
    pageTitle('nav.departments'),
    h('p', { class: 'hint' }, t('dept.help')),
    err,
    list,
    writable ? card(t('dept.addTitle'), addForm) : null,
  );
  void load();
}
