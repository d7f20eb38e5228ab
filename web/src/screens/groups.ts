// Ring groups (着信グループ): list, add/edit (PUT /groups/{number}), delete.
import { del, enc, get, put } from '../api';
import { h, replace } from '../dom';
import { t } from '../i18n';
import type { Key } from '../i18n/ja';
import { canWrite } from '../session';
import { STRATEGIES, type Announcement, type Department, type Group } from '../types';
import { announcementOptions, assignable, loadAnnouncements, deptName, deptOptions, deptSelectValue, deptValue, loadDepartments, mayLeaveUnassigned } from '../data';
import {
  actions,
  alertBox,
  busy,
  button,
  card,
  checkbox,
  clearBox,
  confirmDialog,
  destField,
  destText,
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

export function membersText(m: string[] | string | null | undefined): string {
  if (!m) return '';
  return Array.isArray(m) ? m.join(', ') : m;
}

/** Members for the table: "1001, 1002, 着信グループ 3000". */
function membersShort(m: string[] | string | null | undefined): string {
  const list = Array.isArray(m) ? m : (m ?? '').split(',');
  return list.map((x) => x.trim()).filter(Boolean).map((x) => (x.startsWith('user:') ? x.slice(5) : destText(x))).join(', ');
}

export function renderGroups(main: HTMLElement): void {
  const writable = canWrite('groups');
  const err = alertBox();
  const list = h('div');
  const formCard = h('div');
  let depts: Department[] = [];
  let announcements: Announcement[] = [];

  async function load() {
    try {
      const groups = await get<Group[]>('/api/v1/groups');
      replace(
        list,
        table(
          [t('group.number'), t('group.name'), t('users.department'), t('group.strategy'), t('group.members'), t('group.timeouts'), t('group.overflow'), t('group.skipBusyShort'), ...(writable ? [''] : [])],
          groups.map((g) => [
            g.number,
            g.name,
            deptName(g.department, depts),
            t(`strategy.${g.strategy}` as Key),
            membersShort(g.members),
            t('group.timeoutsValue', { member: g.member_timeout ?? '', total: g.timeout ?? '' }),
            destText(g.overflow),
            yesNo(g.skip_busy),
            ...(writable
              ? [
                  actions(
                    button(t('common.edit'), () => showForm(g), { class: 'small', 'data-testid': `group-edit-${g.number}` }),
                    button(t('common.delete'), (ev) => {
                      void (async () => {
                        if (!(await confirmDialog(t('group.deleteConfirm', { number: g.number, name: g.name })))) return;
                        await busy(ev.target as HTMLButtonElement, err, async () => {
                          await del(`/api/v1/groups/${enc(g.number)}`);
                          await load();
                        });
                      })();
                    }, { class: 'danger small', 'data-testid': `group-delete-${g.number}` }),
                  ),
                ]
              : []),
          ]),
          { testid: 'groups-table', label: t('nav.groups'), empty: t('group.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  function showForm(g: Group | null) {
    const fErr = alertBox('group-error');
    const fOk = statusBox('group-result');
    const number = input('group-number', { value: g?.number ?? '', required: true, inputmode: 'numeric', pattern: '[0-9]+', readonly: !!g });
    const name = input('group-name', { value: g?.name ?? '', required: true });
    const dv = deptSelectValue(g?.department ?? null, depts);
    const dept = select('group-department', deptOptions(assignable(depts), mayLeaveUnassigned()), dv);
    const strategy = select('group-strategy', STRATEGIES.map((s) => [s, t(`strategy.${s}` as Key)]), g?.strategy ?? 'simultaneous');
    const members = input('group-members', { value: membersText(g?.members), required: true, placeholder: '1001, 1002, 1003' });
    const memberTimeout = input('group-member-timeout', { type: 'number', min: 1, max: 300, value: String(g?.member_timeout ?? 15) });
    const timeout = input('group-timeout', { type: 'number', min: 1, max: 600, value: String(g?.timeout ?? 60) });
    const overflow = destField('group-overflow', t('group.overflow'), g?.overflow ?? null);
    const skip = checkbox('group-skip-busy', t('group.skipBusy'), g ? !!g.skip_busy : true);
    const greeting = select('group-greeting', announcementOptions(announcements, g?.greeting, t('media.none')), g?.greeting ?? '');
    const moh = select('group-moh', announcementOptions(announcements, g?.moh, t('media.defaultMoh')), g?.moh ?? '');
    const queueAnn = select('group-queue-announcement', announcementOptions(announcements, g?.queue_announcement, t('media.none')), g?.queue_announcement ?? '');
    const queueSecs = input('group-queue-announcement-secs', { type: 'number', min: 5, max: 600, step: 1, value: g?.queue_announcement_secs ? String(g.queue_announcement_secs) : '', placeholder: '30' });
    const save = h('button', { type: 'submit', class: 'primary', id: 'group-submit', 'data-testid': 'group-submit' }, g ? t('common.save') : t('common.add'));
    const form = h(
      'form',
      { class: 'form-grid', 'data-testid': 'group-form' },
      field('group-number', t('group.number'), number),
      field('group-name', t('group.name'), name),
      field('group-department', t('users.department'), dept),
      field('group-strategy', t('group.strategy'), strategy, t('group.strategyHint')),
      h('div', { class: 'span-all' }, field('group-members', t('group.members'), members, t('group.membersHint'))),
      field('group-member-timeout', t('group.memberTimeout'), memberTimeout),
      field('group-timeout', t('group.timeout'), timeout),
      overflow.el,
      skip,
      h(
        'fieldset',
        { class: 'span-all form-grid media-fields' },
        h('legend', null, t('media.title')),
        field('group-greeting', t('media.greeting'), greeting, t('media.greetingHint')),
        field('group-moh', t('media.moh'), moh, t('media.mohHint')),
        field('group-queue-announcement', t('media.queue'), queueAnn, t('media.queueHint')),
        field('group-queue-announcement-secs', t('media.queueSecs'), queueSecs, t('media.queueSecsHint')),
      ),
      h('div', { class: 'buttons span-all' }, save, g ? button(t('common.cancel'), () => showForm(null)) : null),
      h('div', { class: 'span-all' }, fErr, fOk),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(fOk);
      void busy(save, fErr, async () => {
        const num = number.value.trim();
        await put(`/api/v1/groups/${enc(num)}`, {
          number: num,
          name: name.value.trim(),
          department: deptValue(dept.value),
          strategy: strategy.value,
          members: members.value.split(/[,、\s]+/).map((s) => s.trim()).filter(Boolean),
          member_timeout: Number(memberTimeout.value),
          timeout: Number(timeout.value),
          overflow: overflow.value(),
          skip_busy: (skip.querySelector('input') as HTMLInputElement).checked,
          greeting: greeting.value,
          moh: moh.value,
          queue_announcement: queueAnn.value,
          queue_announcement_secs: queueSecs.value.trim() ? Number(queueSecs.value) : 0,
        });
        await load();
        showForm(null);
        showStatus(formCard.querySelector('[data-testid="group-result"]') as HTMLElement, t('group.saved', { number: num }));
      });
    });
    replace(formCard, card(g ? t('group.editTitle', { number: g.number }) : t('group.addTitle'), form));
    if (g) {
      formCard.scrollIntoView({ block: 'start' });
      name.focus();
    }
  }

  replace(main, pageTitle('nav.groups'), h('p', { class: 'hint' }, t('group.help')), err, list, writable ? formCard : null);
  void (async () => {
    [depts, announcements] = await Promise.all([loadDepartments(), writable ? loadAnnouncements() : Promise.resolve([])]);
    if (writable) showForm(null);
    await load();
  })();
}
