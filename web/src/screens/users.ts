// Users / extensions: list with search and department filter, add, CSV import/export.
import { enc, get, post, query } from '../api';
import { debounce, h, replace } from '../dom';
import { t } from '../i18n';
import type { Key } from '../i18n/ja';
import { canWrite } from '../session';
import type { Department, User } from '../types';
import { assignable, deptName, deptOptions, deptValue, loadDepartments, mayLeaveUnassigned } from '../data';
import {
  alertBox,
  busy,
  card,
  clearBox,
  exportLink,
  field,
  importPanel,
  input,
  pageTitle,
  secretBox,
  select,
  showError,
  showStatus,
  statusBox,
  table,
} from '../ui';

export function regBadge(r: boolean | number): HTMLElement {
  const on = typeof r === 'number' ? r > 0 : !!r;
  return h('span', { class: `badge ${on ? 'good' : 'neutral'}` }, on ? t('users.registered') : t('users.unregistered'));
}

/** The users import's columns (server/src/api/users.rs IMPORT_COLUMNS). */
const USER_IMPORT_COLUMNS = ['extension', 'name', 'department', 'password', 'caller_id', 'own_did'] as const;

function importHelp(): HTMLElement {
  return h(
    'details',
    { class: 'hint import-columns', 'data-testid': 'users-import-columns', open: true },
    h('summary', null, t('import.usersColumns')),
    h(
      'dl',
      { class: 'kv' },
      USER_IMPORT_COLUMNS.map((c) => [h('dt', null, h('code', null, c)), h('dd', null, t(`import.col.${c}` as Key))]),
    ),
    h('p', null, t('import.usersNote')),
  );
}

export function renderUsers(main: HTMLElement): void {
  const writable = canWrite('users');
  const err = alertBox();
  const list = h('div', { 'data-testid': 'users-list' });
  const q = input('users-search', { type: 'search', autocomplete: 'off', placeholder: t('users.searchPlaceholder') });
  const deptFilter = select('users-department-filter', [['', t('common.all')]], '');
  let depts: Department[] = [];

  async function load() {
    try {
      const users = await get<User[]>(`/api/v1/users${query({ q: q.value.trim(), department: deptFilter.value })}`);
      clearBox(err);
      replace(
        list,
        h('p', { class: 'count', 'data-testid': 'users-count' }, t('common.count', { n: users.length })),
        table(
          [t('users.extension'), t('users.name'), t('users.department'), t('users.callerId'), t('users.state'), ''],
          users.map((u) => [
            h('a', { href: `#/users/${enc(u.extension)}`, 'data-testid': `user-link-${u.extension}` }, u.extension),
            u.name,
            u.department_name ?? deptName(u.department, depts),
            u.caller_id === 'own' ? `${t('users.cidOwn')}${u.own_did ? ` (${u.own_did})` : ''}` : t('users.cidMain'),
            regBadge(u.registered),
            h('a', { href: `#/users/${enc(u.extension)}`, class: 'button-link small', 'aria-label': t('users.editOf', { ext: u.extension }) }, writable ? t('common.edit') : t('common.details')),
          ]),
          { testid: 'users-table', label: t('nav.users'), empty: t('users.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  // ---- add form
  const addErr = alertBox('user-add-error');
  const addOk = statusBox('user-add-result');
  const ext = input('user-extension', { required: true, inputmode: 'numeric', pattern: '[0-9]{2,16}', autocomplete: 'off', maxlength: 16 });
  const name = input('user-name', { required: true, autocomplete: 'off' });
  const dept = select('user-department', [['', t('common.unassigned')]], '');
  const pass = input('user-password', { type: 'password', autocomplete: 'new-password', minlength: 8, maxlength: 128 });
  const addBtn = h('button', { type: 'submit', id: 'user-submit', 'data-testid': 'user-submit', class: 'primary' }, t('users.add'));
  const addForm = h(
    'form',
    { id: 'user-form', 'data-testid': 'user-form', class: 'form-grid' },
    field('user-extension', t('users.extension'), ext, t('users.extensionHint')),
    field('user-name', t('users.name'), name),
    field('user-department', t('users.department'), dept),
    field('user-password', t('users.sipPasswordOptional'), pass, t('users.passwordHint')),
    h('div', { class: 'buttons span-all' }, addBtn),
    h('div', { class: 'span-all' }, addErr, addOk),
  );
  addForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearBox(addOk);
    void busy(addBtn, addErr, async () => {
      const body: Record<string, unknown> = { extension: ext.value.trim(), name: name.value.trim(), department: deptValue(dept.value) };
      if (pass.value) body.password = pass.value;
      const u = await post<User>('/api/v1/users', body);
      showStatus(
        addOk,
        h('p', null, t('users.added', { ext: u.extension ?? body.extension as string })),
        u.sip_password ? secretBox(t('users.generatedPassword'), u.sip_password, 'sip-password') : null,
      );
      ext.value = '';
      name.value = '';
      pass.value = '';
      void load();
    });
  });

  replace(
    main,
    pageTitle('nav.users', exportLink('/api/v1/users/export', 'users-export')),
    h(
      'div',
      { class: 'filters', role: 'search' },
      field('users-search', t('common.search'), q),
      field('users-department-filter', t('users.department'), deptFilter),
    ),
    err,
    list,
    writable ? card(t('users.addTitle'), addForm) : null,
    writable
      ? card(
          t('users.importTitle'),
          importPanel({ id: 'users', path: '/api/v1/users/import', columns: USER_IMPORT_COLUMNS.join(','), dryRun: true, help: importHelp(), onDone: () => void load() }),
        )
      : null,
  );

  q.addEventListener('input', debounce(() => void load(), 300));
  deptFilter.addEventListener('change', () => void load());
  void (async () => {
    depts = await loadDepartments();
    replace(deptFilter, ...deptOptions(mayLeaveUnassigned() ? depts : assignable(depts), true, t('common.all')).map(([v, l]) => h('option', { value: v }, l)));
    replace(dept, ...deptOptions(assignable(depts), mayLeaveUnassigned()).map(([v, l]) => h('option', { value: v }, l)));
    const pre = sessionStorage.getItem('tsunagu.deptFilter');
    if (pre) {
      sessionStorage.removeItem('tsunagu.deptFilter');
      deptFilter.value = pre;
    }
    await load();
  })();
}
