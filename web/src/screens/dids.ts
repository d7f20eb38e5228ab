// DIDs (ダイヤルイン番号) and their routing; CSV import/export.
import { del, enc, get, put } from '../api';
import { h, replace } from '../dom';
import { t } from '../i18n';
import { canManageDids, canWrite, session } from '../session';
import type { Announcement, Did } from '../types';
import { announcementOptions, loadAnnouncements } from '../data';
import {
  actions,
  alertBox,
  busy,
  button,
  card,
  clearBox,
  confirmDialog,
  destField,
  destText,
  exportLink,
  field,
  importPanel,
  input,
  pageTitle,
  select,
  showError,
  showStatus,
  statusBox,
  table,
} from '../ui';

export function renderDids(main: HTMLElement): void {
  const writable = canWrite('dids');
  const manage = canManageDids();
  const err = alertBox();
  const list = h('div');
  const formCard = h('div');
  let announcements: Announcement[] = [];

  const mayEdit = (d: Did) => writable && (manage || session.admin?.dids?.includes(d.number));

  async function load() {
    try {
      const dids = await get<Did[]>('/api/v1/dids');
      replace(
        list,
        table(
          [t('did.number'), t('did.dest'), t('did.label'), ...(writable ? [''] : [])],
          dids.map((d) => [
            d.number,
            destText(d.dest),
            d.label ?? '',
            ...(writable
              ? [
                  actions(
                    mayEdit(d) ? button(t('common.edit'), () => showForm(d), { class: 'small', 'data-testid': `did-edit-${d.number}` }) : null,
                    manage
                      ? button(t('common.delete'), (ev) => {
                          void (async () => {
                            if (!(await confirmDialog(t('did.deleteConfirm', { number: d.number })))) return;
                            await busy(ev.target as HTMLButtonElement, err, async () => {
                              await del(`/api/v1/dids/${enc(d.number)}`);
                              await load();
                            });
                          })();
                        }, { class: 'danger small', 'data-testid': `did-delete-${d.number}` })
                      : null,
                  ),
                ]
              : []),
          ]),
          { testid: 'dids-table', label: t('nav.dids'), empty: t('did.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  function showForm(d: Did | null) {
    if (!d && !manage) {
      replace(formCard);
      return;
    }
    const fErr = alertBox('did-error');
    const fOk = statusBox('did-result');
    const number = input('did-number', { value: d?.number ?? '', required: true, inputmode: 'tel', pattern: '[0-9+]+', readonly: !!d });
    const dest = destField('did-dest', t('did.dest'), d?.dest ?? null, true);
    const label = input('did-label', { value: d?.label ?? '' });
    const greeting = select('did-greeting', announcementOptions(announcements, d?.greeting, t('media.none')), d?.greeting ?? '');
    const moh = select('did-moh', announcementOptions(announcements, d?.moh, t('media.defaultMoh')), d?.moh ?? '');
    const save = h('button', { type: 'submit', class: 'primary', id: 'did-submit', 'data-testid': 'did-submit' }, d ? t('common.save') : t('common.add'));
    const form = h(
      'form',
      { class: 'form-grid', 'data-testid': 'did-form' },
      field('did-number', t('did.number'), number, t('did.numberHint')),
      dest.el,
      field('did-label', t('did.label'), label, t('did.labelHint')),
      field('did-greeting', t('media.greeting'), greeting, t('media.greetingHint')),
      field('did-moh', t('media.moh'), moh, t('media.mohHint')),
      h('div', { class: 'buttons span-all' }, save, d ? button(t('common.cancel'), () => showForm(null)) : null),
      h('div', { class: 'span-all' }, fErr, fOk),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(fOk);
      void busy(save, fErr, async () => {
        const num = number.value.trim();
        await put(`/api/v1/dids/${enc(num)}`, { dest: dest.value(), label: label.value.trim(), greeting: greeting.value, moh: moh.value });
        await load();
        showForm(null);
        const ok = formCard.querySelector<HTMLElement>('[data-testid="did-result"]');
        if (ok) showStatus(ok, t('did.saved', { number: num }));
      });
    });
    replace(formCard, card(d ? t('did.editTitle', { number: d.number }) : t('did.addTitle'), form));
    if (d) {
      formCard.scrollIntoView({ block: 'start' });
      (form.querySelector('select') as HTMLSelectElement).focus();
    }
  }

  replace(
    main,
    pageTitle('nav.dids', exportLink('/api/v1/dids/export', 'dids-export')),
    h('p', { class: 'hint' }, t('did.help')),
    err,
    list,
    writable ? formCard : null,
    manage ? card(t('did.importTitle'), importPanel({ id: 'dids', path: '/api/v1/dids/import', columns: 'number,dest,label', dryRun: true, onDone: () => void load() })) : null,
  );
  void (async () => {
    if (writable) {
      announcements = await loadAnnouncements();
      showForm(null);
    }
    await load();
  })();
}
