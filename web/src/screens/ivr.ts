// Voice menus (IVR, 音声メニュー): list, add/edit (PUT /ivr/{name}, a menu
// with all its options at once), delete. A loop of sub-menus is refused by
// the server (422, code "loop"); the editor says so naming the loop.
import { ApiError, del, enc, get, put } from '../api';
import { debounce, h, replace } from '../dom';
import { onEvent } from '../events';
import { getLang, t } from '../i18n';
import type { Key } from '../i18n/ja';
import { canView, canWrite } from '../session';
import type { Announcement, IvrMenu } from '../types';
import { announcementOptions, loadAnnouncements } from '../data';
import {
  actions,
  alertBox,
  busy,
  button,
  card,
  checkbox,
  clearBox,
  confirmDialog,
  destText,
  field,
  forgetNames,
  input,
  pageTitle,
  select,
  showError,
  showStatus,
  statusBox,
  table,
  yesNo,
} from '../ui';

const NAME_PATTERN = '[a-z0-9_\\-]{1,32}';
const SIMPLE = ['back', 'repeat', 'hangup'] as const;
const WITH_VALUE = ['user', 'group', 'number', 'schedule', 'ivr', 'announcement'] as const;
const ACTION_RE = /^(user|ext|group|number|tel|schedule|ivr|announcement):(.*)$/;

/** An action for display: "着信グループ 3000", "前のメニューへ戻る". */
export function actionText(a: string | null | undefined): string {
  if (!a) return '';
  if ((SIMPLE as readonly string[]).includes(a)) return t(`ivr.act.${a}` as Key);
  return destText(a);
}

interface ActionPicker {
  el: HTMLElement;
  kind: HTMLSelectElement;
  value(): string;
}

/**
 * An action picker: a kind select (a destination kind, back, repeat,
 * hangup) and a box for the number or name. `labelled`: a visible legend
 * (on_failure); otherwise labels for screen readers only (a table row).
 */
function actionPicker(id: string, label: string, value: string, opts: { allowRepeat: boolean; legend: boolean; menus: string[]; announcements: Announcement[] }): ActionPicker {
  const m = ACTION_RE.exec(value);
  let kind = m ? ({ ext: 'user', tel: 'number' } as Record<string, string>)[m[1]] ?? m[1] : value;
  let rest = m ? m[2] : '';
  const known = [...WITH_VALUE, ...SIMPLE] as readonly string[];
  if (value && !known.includes(kind)) {
    // A bare number: resolved when the call happens.
    rest = value;
    kind = 'any';
  }
  const kinds: [string, string][] = [
    ...WITH_VALUE.map((k) => [k, t(`dest.${k}` as Key)] as [string, string]),
    ...SIMPLE.filter((k) => opts.allowRepeat || k !== 'repeat').map((k) => [k, t(`ivr.act.${k}` as Key)] as [string, string]),
  ];
  if (kind === 'any') kinds.push(['any', t('dest.any')]);
  const sel = select(`${id}-kind`, kinds, kind || 'group', { 'data-testid': `${id}-kind` });
  const listId = `${id}-names`;
  const list = h('datalist', { id: listId });
  const box = input(`${id}-value`, { value: rest, autocomplete: 'off', class: 'dest-number', 'data-testid': `${id}-value` });
  const boxLabel = h('label', { for: `${id}-value`, class: 'sr-only' }, t('dest.numberLabel'));
  const sync = () => {
    const k = sel.value;
    const simple = (SIMPLE as readonly string[]).includes(k);
    const named = k === 'schedule' || k === 'ivr' || k === 'announcement';
    box.disabled = simple;
    box.hidden = simple;
    box.required = !simple;
    box.inputMode = named ? 'text' : 'tel';
    box.pattern = named ? NAME_PATTERN : '[0-9+*#]*';
    boxLabel.textContent = `${label}: ${named ? t(`dest.${k}Label` as Key) : t('dest.numberLabel')}`;
    const names = k === 'ivr' ? opts.menus : k === 'announcement' ? opts.announcements.map((a) => a.name) : [];
    replace(list, names.map((n) => h('option', { value: n })));
    if (names.length) box.setAttribute('list', listId);
    else box.removeAttribute('list');
  };
  sel.addEventListener('change', sync);
  sync();
  const kindLabel = h('label', { for: `${id}-kind`, class: 'sr-only' }, `${label}: ${t('ivr.actionKind')}`);
  const row = h('div', { class: 'dest-row' }, kindLabel, sel, boxLabel, box, list);
  const el = opts.legend ? h('fieldset', { class: 'field dest', id }, h('legend', null, label), row) : h('div', { id, class: 'ivr-action' }, row);
  return {
    el,
    kind: sel,
    value() {
      const k = sel.value;
      if ((SIMPLE as readonly string[]).includes(k)) return k;
      const v = box.value.trim();
      return k === 'any' ? v : `${k}:${v}`;
    },
  };
}

/** The loop a 422 names: "IVR menus loop: a → b → a (…)" or "IVR menu a loops to itself …". */
export function loopChain(message: string): string | null {
  let m = /IVR menus loop: (.+?) \(/.exec(message);
  if (m) return m[1];
  m = /IVR menu (\S+) loops to itself/.exec(message);
  if (m) return `${m[1]} → ${m[1]}`;
  return null;
}

function showLoop(box: HTMLElement, e: ApiError): void {
  const chain = loopChain(e.message) ?? e.message;
  replace(
    box,
    h('p', { 'data-testid': 'ivr-loop' }, t('ivr.loopTitle'), ' ', h('strong', { 'data-testid': 'ivr-loop-chain' }, chain)),
    h('p', { class: 'hint' }, t('ivr.loopHelp')),
    getLang() === 'ja' ? null : h('p', { class: 'hint' }, e.message),
  );
  box.title = e.message;
  box.hidden = false;
  box.scrollIntoView?.({ block: 'nearest' });
}

export function renderIvr(main: HTMLElement): () => void {
  const writable = canWrite('ivr');
  const err = alertBox();
  const list = h('div');
  const formCard = h('div');
  let announcements: Announcement[] = [];
  let menus: IvrMenu[] = [];

  async function load() {
    try {
      menus = await get<IvrMenu[]>('/api/v1/ivr');
      replace(
        list,
        table(
          [t('ivr.name'), t('ivr.label'), t('ivr.prompts'), t('ivr.options'), t('ivr.onFailure'), t('ivr.directDial'), ...(writable ? [''] : [])],
          menus.map((m) => [
            h('code', null, m.name),
            m.label,
            h(
              'ul',
              { class: 'route' },
              m.greeting ? h('li', null, h('span', { class: 'k' }, t('ivr.greetingShort')), ' ', m.greeting) : null,
              h('li', null, h('span', { class: 'k' }, t('ivr.promptShort')), ' ', m.prompt),
            ),
            h(
              'ul',
              { class: 'route', 'data-testid': `ivr-options-${m.name}` },
              Object.entries(m.options).map(([k, a]) => h('li', null, h('span', { class: 'k' }, k), ' → ', actionText(a))),
            ),
            actionText(m.on_failure),
            yesNo(m.direct_dial),
            ...(writable
              ? [
                  actions(
                    button(t('common.edit'), () => showForm(m), { class: 'small', 'data-testid': `ivr-edit-${m.name}`, 'aria-label': `${t('common.edit')} ${m.label || m.name}` }),
                    button(t('common.delete'), (ev) => {
                      void (async () => {
                        if (!(await confirmDialog(t('ivr.deleteConfirm', { name: m.name, label: m.label || m.name })))) return;
                        await busy(ev.target as HTMLButtonElement, err, async () => {
                          await del(`/api/v1/ivr/${enc(m.name)}`);
                          forgetNames('ivr');
                          await load();
                        });
                      })();
                    }, { class: 'danger small', 'data-testid': `ivr-delete-${m.name}`, 'aria-label': `${t('common.delete')} ${m.label || m.name}` }),
                  ),
                ]
              : []),
          ]),
          { testid: 'ivr-table', label: t('nav.ivr'), empty: t('ivr.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  function showForm(m: IvrMenu | null) {
    const fErr = alertBox('ivr-error');
    const fOk = statusBox('ivr-result');
    const menuNames = menus.map((x) => x.name);
    const name = input('ivr-name', { value: m?.name ?? '', required: true, pattern: NAME_PATTERN, maxlength: 32, autocomplete: 'off', spellcheck: false, readonly: !!m });
    const label = input('ivr-label', { value: m?.label ?? '', maxlength: 100 });
    const greeting = select('ivr-greeting', announcementOptions(announcements, m?.greeting, t('ivr.noGreeting')), m?.greeting ?? '');
    // A new menu's prompt is chosen on purpose (the form is not sent without one).
    const firstPrompt = m?.prompt ?? '';
    const prompt = select('ivr-prompt', announcementOptions(announcements, firstPrompt || null, firstPrompt ? null : t('ivr.choose')), firstPrompt, { required: true });
    const invalid = select('ivr-invalid-prompt', announcementOptions(announcements, m?.invalid_prompt ?? 'ivr-invalid', null), m?.invalid_prompt ?? 'ivr-invalid');
    const timeoutPrompt = select('ivr-timeout-prompt', announcementOptions(announcements, m?.timeout_prompt ?? 'ivr-timeout', null), m?.timeout_prompt ?? 'ivr-timeout');
    const firstDigit = input('ivr-first-digit', { type: 'number', min: 1, max: 60, step: 0.5, required: true, value: String((m?.first_digit_ms ?? 5000) / 1000) });
    const interDigit = input('ivr-inter-digit', { type: 'number', min: 0.5, max: 10, step: 0.5, required: true, value: String((m?.inter_digit_ms ?? 2000) / 1000) });
    const maxRepeats = input('ivr-max-repeats', { type: 'number', min: 1, max: 10, step: 1, required: true, value: String(m?.max_repeats ?? 3) });
    const onFailure = actionPicker('ivr-on-failure', t('ivr.onFailure'), m?.on_failure ?? 'hangup', { allowRepeat: false, legend: true, menus: menuNames, announcements });
    const direct = checkbox('ivr-direct-dial', t('ivr.directDialLabel'), !!m?.direct_dial);

    // ---- the options table: key → action rows ----------------------------------
    let seq = 0;
    const rows: { tr: HTMLTableRowElement; key: HTMLInputElement; action: ActionPicker }[] = [];
    const tbody = h('tbody');
    const addRow = (key: string, action: string, focus = false) => {
      const i = seq++;
      const keyBox = input(`ivr-opt-key-${i}`, { value: key, required: true, pattern: '[0-9*#]{1,4}', maxlength: 4, inputmode: 'tel', autocomplete: 'off', class: 'key-box', 'data-testid': `ivr-opt-key-${i}` });
      const picker = actionPicker(`ivr-opt-${i}`, t('ivr.optionN', { n: i + 1 }), action, { allowRepeat: true, legend: false, menus: menuNames, announcements });
      const remove = button(t('ivr.removeOption'), () => {
        const at = rows.findIndex((r) => r.tr === tr);
        if (at >= 0) rows.splice(at, 1);
        tr.remove();
        addBtn.focus();
      }, { class: 'small danger', 'data-testid': `ivr-opt-remove-${i}`, 'aria-label': t('ivr.removeOptionN', { n: i + 1 }) });
      const tr = h(
        'tr',
        { 'data-testid': 'ivr-option-row' },
        h('td', null, h('label', { for: `ivr-opt-key-${i}`, class: 'sr-only' }, t('ivr.keyN', { n: i + 1 })), keyBox),
        h('td', null, picker.el),
        h('td', null, remove),
      );
      rows.push({ tr, key: keyBox, action: picker });
      tbody.appendChild(tr);
      if (focus) keyBox.focus();
    };
    const addBtn = button(t('ivr.addOption'), () => {
      const used = new Set(rows.map((r) => r.key.value.trim()));
      const next = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '0'].find((k) => !used.has(k)) ?? '';
      addRow(next, 'group:', true);
    }, { class: 'small', id: 'ivr-add-option', 'data-testid': 'ivr-add-option' });
    for (const [k, a] of Object.entries(m?.options ?? {})) addRow(k, a);
    if (!m) addRow('1', 'group:');
    const optionsTable = h(
      'div',
      { class: 'table-wrap', role: 'region', 'aria-label': t('ivr.options'), tabindex: 0 },
      h(
        'table',
        { 'data-testid': 'ivr-options-table', class: 'options-table' },
        h('caption', { class: 'sr-only' }, t('ivr.options')),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('ivr.key')), h('th', { scope: 'col' }, t('ivr.action')), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, t('ivr.removeOption'))))),
        tbody,
      ),
    );

    const save = h('button', { type: 'submit', class: 'primary', id: 'ivr-submit', 'data-testid': 'ivr-submit' }, m ? t('common.save') : t('common.add'));
    const form = h(
      'form',
      { class: 'form-grid', 'data-testid': 'ivr-form' },
      field('ivr-name', t('ivr.name'), name, t('ivr.nameHint')),
      field('ivr-label', t('ivr.label'), label, t('ivr.labelHint')),
      field('ivr-greeting', t('ivr.greeting'), greeting, t('ivr.greetingHint')),
      field('ivr-prompt', t('ivr.prompt'), prompt, t('ivr.promptHint')),
      field('ivr-invalid-prompt', t('ivr.invalidPrompt'), invalid),
      field('ivr-timeout-prompt', t('ivr.timeoutPrompt'), timeoutPrompt),
      h(
        'fieldset',
        { class: 'span-all options' },
        h('legend', null, t('ivr.options')),
        h('p', { class: 'hint', id: 'ivr-options-hint' }, t('ivr.optionsHint')),
        optionsTable,
        h('div', { class: 'buttons' }, addBtn),
      ),
      onFailure.el,
      field('ivr-max-repeats', t('ivr.maxRepeats'), maxRepeats, t('ivr.maxRepeatsHint')),
      field('ivr-first-digit', t('ivr.firstDigit'), firstDigit, t('ivr.firstDigitHint')),
      field('ivr-inter-digit', t('ivr.interDigit'), interDigit, t('ivr.interDigitHint')),
      h('div', { class: 'span-all' }, direct, h('p', { class: 'hint' }, t('ivr.directDialHint'))),
      h('div', { class: 'buttons span-all' }, save, m ? button(t('common.cancel'), () => showForm(null)) : null),
      h('div', { class: 'span-all' }, fErr, fOk),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(fOk);
      fErr.removeAttribute('title');
      const n = name.value.trim();
      const options: Record<string, string> = {};
      for (const r of rows) {
        const k = r.key.value.trim();
        if (options[k] !== undefined) {
          showError(fErr, new Error(t('ivr.duplicateKey', { key: k })));
          r.key.focus();
          return;
        }
        options[k] = r.action.value();
      }
      void busy(save, fErr, async () => {
        let answer: IvrMenu;
        try {
          answer = await put<IvrMenu>(`/api/v1/ivr/${enc(n)}`, {
            label: label.value.trim(),
            greeting: greeting.value || null,
            prompt: prompt.value,
            invalid_prompt: invalid.value,
            timeout_prompt: timeoutPrompt.value,
            first_digit_ms: Math.round(Number(firstDigit.value) * 1000),
            inter_digit_ms: Math.round(Number(interDigit.value) * 1000),
            max_repeats: Number(maxRepeats.value),
            on_failure: onFailure.value(),
            direct_dial: (direct.querySelector('input') as HTMLInputElement).checked,
            options,
          });
        } catch (e) {
          if (e instanceof ApiError && e.code === 'loop') {
            showLoop(fErr, e);
            return;
          }
          throw e;
        }
        forgetNames('ivr');
        await load();
        showForm(null);
        const box = formCard.querySelector<HTMLElement>('[data-testid="ivr-result"]');
        if (box) {
          const missing = answer.missing_announcements ?? [];
          showStatus(
            box,
            h('p', null, t('ivr.saved', { name: n })),
            missing.length ? h('p', { class: 'notice', 'data-testid': 'ivr-missing' }, t('ivr.missing', { names: missing.join(t('common.listSep')) })) : null,
          );
        }
      });
    });
    replace(formCard, card(m ? t('ivr.editTitle', { name: m.name }) : t('ivr.addTitle'), form));
    if (m) {
      formCard.scrollIntoView({ block: 'start' });
      label.focus();
    }
  }

  replace(
    main,
    pageTitle('nav.ivr'),
    h('p', { class: 'hint' }, t('ivr.help')),
    canView('announcements') ? h('p', { class: 'hint' }, h('a', { href: '#/announcements' }, t('ivr.toAnnouncements'))) : null,
    err,
    list,
    writable ? formCard : null,
  );
  void (async () => {
    announcements = await loadAnnouncements();
    await load();
    if (writable) showForm(null);
  })();
  const reload = debounce(() => void load(), 300);
  const off = onEvent((e) => {
    if (e.type === 'change' && e.resource === 'ivr') reload();
  });
  return off;
}
