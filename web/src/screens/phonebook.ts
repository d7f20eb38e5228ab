// Phonebook (電話帳): debounced search, add/edit/delete, CSV import/export.
import { del, enc, get, post, put, query } from '../api';
import { debounce, h, replace } from '../dom';
import { t } from '../i18n';
import { canWrite } from '../session';
import type { PhonebookAnswer, PhonebookEntry } from '../types';
import {
  actions,
  alertBox,
  busy,
  button,
  card,
  clearBox,
  confirmDialog,
  exportLink,
  field,
  importPanel,
  input,
  pageTitle,
  showError,
  showStatus,
  statusBox,
  table,
} from '../ui';

const LIMIT = 200;

export function renderPhonebook(main: HTMLElement): void {
  const writable = canWrite('phonebook');
  const err = alertBox();
  const list = h('div');
  const formCard = h('div');
  const q = input('phonebook-search', { type: 'search', autocomplete: 'off', placeholder: t('pb.searchPlaceholder') });

  async function load() {
    try {
      const ans = await get<PhonebookAnswer>(`/api/v1/phonebook${query({ q: q.value.trim(), limit: LIMIT })}`);
      const entries = ans.entries ?? [];
      replace(
        list,
        h('p', { class: 'count', 'data-testid': 'phonebook-count' }, entries.length >= LIMIT ? t('pb.limited', { n: LIMIT }) : t('common.count', { n: entries.length })),
        table(
          [t('pb.name'), t('pb.kana'), t('pb.number'), t('pb.department'), t('pb.note'), ...(writable ? [''] : [])],
          entries.map((e) => [
            e.name,
            e.kana ?? '',
            h('a', { href: `tel:${e.number}` }, e.number),
            e.department ?? '',
            e.note ?? '',
            ...(writable
              ? [
                  actions(
                    button(t('common.edit'), () => showForm(e), { class: 'small', 'data-testid': `pb-edit-${e.id}` }),
                    button(t('common.delete'), (ev) => {
                      void (async () => {
                        if (!(await confirmDialog(t('pb.deleteConfirm', { name: e.name })))) return;
                        await busy(ev.target as HTMLButtonElement, err, async () => {
                          await del(`/api/v1/phonebook/${enc(String(e.id))}`);
                          await load();
                        });
                      })();
                    }, { class: 'danger small', 'data-testid': `pb-delete-${e.id}` }),
                  ),
                ]
              : []),
          ]),
          { testid: 'phonebook-table', label: t('nav.phonebook'), empty: t('pb.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  function showForm(e: PhonebookEntry | null) {
    const fErr = alertBox('pb-error');
    const fOk = statusBox('pb-result');
    const name = input('pb-name', { value: e?.name ?? '', required: true });
    const kana = input('pb-kana', { value: e?.kana ?? '' });
    const number = input('pb-number', { value: e?.number ?? '', required: true, inputmode: 'tel' });
    const dept = input('pb-department', { value: e?.department ?? '' });
    const note = input('pb-note', { value: e?.note ?? '' });
    const save = h('button', { type: 'submit', class: 'primary', id: 'pb-submit', 'data-testid': 'pb-submit' }, e ? t('common.save') : t('common.add'));
    const form = h(
      'form',
      { class: 'form-grid', 'data-testid': 'pb-form' },
      field('pb-name', t('pb.name'), name),
      field('pb-kana', t('pb.kana'), kana, t('pb.kanaHint')),
      field('pb-number', t('pb.number'), number),
      field('pb-department', t('pb.department'), dept),
      h('div', { class: 'span-all' }, field('pb-note', t('pb.note'), note)),
      h('div', { class: 'buttons span-all' }, save, e ? button(t('common.cancel'), () => showForm(null)) : null),
      h('div', { class: 'span-all' }, fErr, fOk),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(fOk);
      void busy(save, fErr, async () => {
        const body = { name: name.value.trim(), kana: kana.value.trim(), number: number.value.trim(), department: dept.value.trim(), note: note.value.trim() };
        if (e) await put(`/api/v1/phonebook/${enc(String(e.id))}`, { id: e.id, ...body });
        else await post('/api/v1/phonebook', body);
        await load();
        showForm(null);
        const ok = formCard.querySelector<HTMLElement>('[data-testid="pb-result"]');
        if (ok) showStatus(ok, t('common.saved'));
      });
    });
    replace(formCard, card(e ? t('pb.editTitle') : t('pb.addTitle'), form));
    if (e) {
      formCard.scrollIntoView({ block: 'start' });
      name.focus();
    }
  }

  replace(
    main,
    pageTitle('nav.phonebook', exportLink('/api/v1/phonebook/export', 'phonebook-export')),
    h('div', { class: 'filters', role: 'search' }, field('phonebook-search', t('common.search'), q)),
    err,
    list,
    writable ? formCard : null,
    writable
      ? card(t('pb.importTitle'), importPanel({ id: 'phonebook', path: '/api/v1/phonebook/import', columns: 'name,kana,number,department,note', dryRun: false, onDone: () => void load() }))
      : null,
  );
  q.addEventListener('input', debounce(() => void load(), 300));
  if (writable) showForm(null);
  void load();
  clearBox(err);
}
