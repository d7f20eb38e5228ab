// Shared widgets: messages, form fields, tables, confirmation, CSV import/export, destinations.
import { ApiError, api, get, query } from './api';
import { h, replace, type Attrs, type Child } from './dom';
import { getLang, t } from './i18n';
import type { Key } from './i18n/ja';
import { canView } from './session';

// ---- messages ---------------------------------------------------------------

/** An error region (role=alert), hidden until an error is shown. */
export function alertBox(testid = 'error'): HTMLDivElement {
  return h('div', { class: 'alert', role: 'alert', 'data-testid': testid, hidden: true });
}

/** A polite status region for successes. */
export function statusBox(testid = 'status'): HTMLDivElement {
  return h('div', { class: 'status', role: 'status', 'data-testid': testid, hidden: true });
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.code === 'network') return t('err.network');
    if (err.status === 423) {
      const min = Math.max(1, Math.ceil((err.retryAfterSecs ?? 60) / 60));
      return `${t('err.locked', { min })}${err.message ? ` (${err.message})` : ''}`;
    }
    if (err.code === 'csrf') return t('err.csrf');
    return err.message || t('err.generic', { status: err.status });
  }
  return err instanceof Error ? err.message : String(err);
}

export function showError(box: HTMLElement, err: unknown): void {
  const rows = err instanceof ApiError ? err.rows : [];
  // With bad CSV rows, the localized intro says what the server's summary says.
  replace(
    box,
    rows.length ? null : h('p', null, errorText(err)),
    rows.length
      ? h('div', null, h('p', null, t('import.rowsIntro', { n: rows.length })), rowErrorsTable(rows))
      : null,
  );
  box.hidden = false;
  box.scrollIntoView?.({ block: 'nearest' });
}

export function showStatus(box: HTMLElement, ...content: Child[]): void {
  replace(box, ...content);
  box.hidden = false;
}

export function clearBox(...boxes: HTMLElement[]): void {
  for (const b of boxes) {
    b.hidden = true;
    b.replaceChildren();
  }
}

/**
 * The server words CSV row problems in English; in Japanese, the known
 * ones are said in Japanese (the original stays in the cell's title).
 */
const ROW_MESSAGES_JA: [RegExp, (m: RegExpExecArray) => string][] = [
  [/^extension "(.*)" must be 2 to 16 digits$/, (m) => `内線番号「${m[1]}」は2〜16桁の数字にしてください`],
  [/^extension (\S+) is also on row (\d+)$/, (m) => `内線番号 ${m[1]} が ${m[2]} 行目と重複しています`],
  [/^extension (\S+) already exists$/, (m) => `内線番号 ${m[1]} はすでに登録されています`],
  [/^(\S+) is already a ring group's number$/, (m) => `${m[1]} は着信グループの番号として使われています`],
  [/^no department named "(.*)"$/, (m) => `部署「${m[1]}」はありません（先に部署を作成してください）`],
  [/^department "(.*)" is not granted to (.+)$/, (m) => `部署「${m[1]}」は ${m[2]} の担当ではありません`],
  [/^(\d+) fields where the header has (\d+)$/, (m) => `列の数が ${m[1]} 個です（見出し行は ${m[2]} 個）`],
  [/^the SIP password must have 8 to 128 characters$/, () => 'SIPパスワードは8〜128文字にしてください'],
  [/^caller_id "(.*)": expected main .* or own .*$/, (m) => `caller_id「${m[1]}」は main か own にしてください`],
  [/^own_did "(.*)": 2 to 20 digits$/, (m) => `own_did「${m[1]}」は2〜20桁の数字にしてください`],
  [/^the name is longer than 100 characters$/, () => '氏名が100文字を超えています'],
  [/^number "(.*)": 2 to 20 digits$/, (m) => `番号「${m[1]}」は2〜20桁の数字にしてください`],
  [/^number (\S+) is also on row (\d+)$/, (m) => `番号 ${m[1]} が ${m[2]} 行目と重複しています`],
];

export function rowMessage(message: string): string {
  if (getLang() !== 'ja') return message;
  return message
    .split('; ')
    .map((part) => {
      for (const [re, say] of ROW_MESSAGES_JA) {
        const m = re.exec(part);
        if (m) return say(m);
      }
      return part;
    })
    .join('／');
}

function rowErrorsTable(rows: { row: number; message: string }[]): HTMLElement {
  return table(
    [t('import.row'), t('import.message')],
    rows.map((r) => [String(r.row), h('span', { title: r.message }, rowMessage(r.message))]),
    { testid: 'import-errors', label: t('import.errorsCaption') },
  );
}

// ---- layout ---------------------------------------------------------------------

export function pageTitle(key: Key, ...extra: Child[]): HTMLElement {
  return h('div', { class: 'page-head' }, h('h1', { id: 'page-title' }, t(key)), ...extra);
}

export function card(title: string | null, ...children: Child[]): HTMLElement {
  return h('section', { class: 'card' }, title ? h('h2', null, title) : null, ...children);
}

// ---- form fields ----------------------------------------------------------------

export function field(id: string, label: string, control: HTMLElement, hint?: string): HTMLElement {
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint ? h('small', { id: hintId, class: 'hint' }, hint) : null,
  );
}

export function input(id: string, attrs: Attrs = {}): HTMLInputElement {
  return h('input', { id, name: id, type: 'text', ...attrs });
}

export function checkbox(id: string, label: string, checked: boolean, attrs: Attrs = {}): HTMLElement {
  return h(
    'div',
    { class: 'field check' },
    h('input', { id, name: id, type: 'checkbox', checked, ...attrs }),
    h('label', { for: id }, label),
  );
}

export function select(id: string, options: [string, string][], value: string, attrs: Attrs = {}): HTMLSelectElement {
  return h(
    'select',
    { id, name: id, ...attrs },
    options.map(([v, l]) => h('option', { value: v, selected: v === value }, l)),
  );
}

export function button(label: string, onclick: (ev: MouseEvent) => void, attrs: Attrs = {}): HTMLButtonElement {
  return h('button', { type: 'button', onclick, ...attrs }, label);
}

/** Run an async action with the button disabled; errors go to the alert box. */
export async function busy<T>(btn: HTMLButtonElement | null, box: HTMLElement | null, fn: () => Promise<T>): Promise<T | undefined> {
  if (btn) btn.disabled = true;
  if (box) clearBox(box);
  try {
    return await fn();
  } catch (e) {
    if (box) showError(box, e);
    else throw e;
    return undefined;
  } finally {
    if (btn) btn.disabled = false;
  }
}

// ---- tables -----------------------------------------------------------------------

export function table(
  headers: string[],
  rows: Child[][],
  opts: { testid?: string; label?: string; empty?: string } = {},
): HTMLElement {
  const body = rows.length
    ? rows.map((r) => h('tr', null, r.map((c) => h('td', null, c))))
    : [h('tr', null, h('td', { colspan: headers.length, class: 'empty' }, opts.empty ?? t('common.none')))];
  return h(
    'div',
    { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': opts.label ?? headers.join(', ') },
    h(
      'table',
      { 'data-testid': opts.testid },
      opts.label ? h('caption', { class: 'sr-only' }, opts.label) : null,
      h('thead', null, h('tr', null, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', null, body),
    ),
  );
}

export function actions(...buttons: Child[]): HTMLElement {
  return h('div', { class: 'row-actions' }, ...buttons);
}

export function yesNo(v: unknown): string {
  return v ? t('common.yes') : t('common.no');
}

// ---- confirmation -------------------------------------------------------------------

/** A modal <dialog> asking to confirm; resolves true on OK. */
export function confirmDialog(message: string, okLabel = t('common.delete')): Promise<boolean> {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'button', class: 'danger', 'data-testid': 'confirm-ok', id: 'confirm-ok' }, okLabel);
    const cancel = h('button', { type: 'button', 'data-testid': 'confirm-cancel', id: 'confirm-cancel' }, t('common.cancel'));
    const dlg = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': 'confirm-msg', 'data-testid': 'confirm-dialog' },
      h('p', { id: 'confirm-msg' }, message),
      h('div', { class: 'buttons' }, cancel, ok),
    );
    const opener = document.activeElement as HTMLElement | null;
    const done = (v: boolean) => {
      dlg.close();
      dlg.remove();
      opener?.focus?.();
      resolve(v);
    };
    ok.addEventListener('click', () => done(true));
    cancel.addEventListener('click', () => done(false));
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.appendChild(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

// ---- one-time secrets and QR codes ----------------------------------------------------

export function secretBox(title: string, value: string, testid: string): HTMLElement {
  return h(
    'div',
    { class: 'secret', 'data-testid': `${testid}-box` },
    h('p', null, h('strong', null, title)),
    h('code', { class: 'secret-value', 'data-testid': testid }, value),
    h('p', { class: 'hint' }, t('common.shownOnce')),
  );
}

/** Render text as an SVG QR code (client side). */
export async function qrCode(text: string, label: string, testid: string): Promise<HTMLElement> {
  // Loaded on demand: only enrolment and provisioning need it.
  const { default: QRCode } = await import('qrcode');
  const svg = await QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2, width: 220 });
  const box = h('div', { class: 'qr', role: 'img', 'aria-label': label, 'data-testid': testid });
  box.innerHTML = svg; // generated locally by the qrcode library from our own data
  return box;
}

// ---- CSV import / export ----------------------------------------------------------------

export interface ImportAnswer {
  imported?: number;
  /** The server answers a dry run with { dry_run: true, would_import } (not in docs/api.md). */
  would_import?: number;
  generated?: { extension: string; sip_password: string }[];
}

/**
 * A CSV import form: file input `#{id}-import-file`, optional dry-run checkbox
 * `#{id}-import-dry-run` (checked by default), button `#{id}-import-submit`.
 */
export function importPanel(opts: { id: string; path: string; columns: string; dryRun: boolean; help?: Child; onDone?: () => void }): HTMLElement {
  const { id } = opts;
  const file = h('input', { id: `${id}-import-file`, name: `${id}-import-file`, type: 'file', accept: '.csv,text/csv' });
  const dry = opts.dryRun ? checkbox(`${id}-import-dry-run`, t('import.dryRun'), true, { 'data-testid': `${id}-import-dry-run` }) : null;
  const err = alertBox(`${id}-import-error`);
  const ok = statusBox(`${id}-import-result`);
  const btn = h('button', { type: 'submit', id: `${id}-import-submit`, 'data-testid': `${id}-import-submit` }, t('import.submit'));
  const form = h(
    'form',
    { class: 'import', 'data-testid': `${id}-import` },
    h('p', { class: 'hint' }, t('import.help', { columns: opts.columns })),
    opts.help ?? null,
    field(`${id}-import-file`, t('import.file'), file),
    dry,
    h('div', { class: 'buttons' }, btn),
    err,
    ok,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearBox(ok);
    const f = file.files?.[0];
    if (!f) {
      showError(err, new Error(t('import.noFile')));
      return;
    }
    const isDry = !!dry && (dry.querySelector('input') as HTMLInputElement).checked;
    void busy(btn, err, async () => {
      const res = await api<ImportAnswer>('POST', `${opts.path}${query({ dry_run: isDry ? 'true' : null })}`, undefined, {
        raw: f,
        contentType: 'text/csv',
      });
      const n = res?.imported ?? res?.would_import ?? 0;
      const gen = res?.generated ?? [];
      showStatus(
        ok,
        h('p', { 'data-testid': `${id}-import-count` }, isDry ? t('import.dryOk', { n }) : t('import.done', { n })),
        !isDry && gen.length
          ? h(
              'div',
              null,
              h('p', null, h('strong', null, t('import.generated')), ' ', t('common.shownOnce')),
              table(
                [t('users.extension'), t('users.sipPassword')],
                gen.map((g) => [g.extension, h('code', null, g.sip_password)]),
                { testid: 'import-generated' },
              ),
            )
          : null,
      );
      if (!isDry) opts.onDone?.();
    });
  });
  return form;
}

export function exportLink(href: string, testid: string, label = t('common.exportCsv')): HTMLAnchorElement {
  return h('a', { href, download: '', class: 'button-link', 'data-testid': testid }, label);
}

// ---- destinations (user:EXT | group:N | number:DIGITS | schedule:NAME | ivr:NAME | announcement:NAME) ----

export interface DestField {
  el: HTMLElement;
  value(): string | null;
}

const DEST_RE = /^(user|ext|group|number|tel|schedule|ivr|announcement):(.*)$/;

type Named = { name: string; label: string };
/** Names for the picker's suggestions (one request per kind shared for a few seconds). */
const nameCache = new Map<string, { at: number; names: Promise<Named[]> }>();
const NAME_SOURCES: Record<string, { path: string; screen: 'schedules' | 'ivr' | 'announcements' }> = {
  schedule: { path: '/api/v1/schedules', screen: 'schedules' },
  ivr: { path: '/api/v1/ivr', screen: 'ivr' },
  announcement: { path: '/api/v1/announcements', screen: 'announcements' },
};
function loadNames(kind: string): Promise<Named[]> {
  const src = NAME_SOURCES[kind];
  if (!src || !canView(src.screen)) return Promise.resolve([]);
  const hit = nameCache.get(kind);
  if (hit && Date.now() - hit.at <= 10_000) return hit.names;
  const names = get<Named[]>(src.path).catch(() => []);
  nameCache.set(kind, { at: Date.now(), names });
  return names;
}
/** Forget cached names (after a screen added or removed one). */
export function forgetNames(kind: 'schedule' | 'ivr' | 'announcement'): void {
  nameCache.delete(kind);
}

/**
 * A destination picker: a kind select plus a number (or schedule name) box.
 * `noneLabel` names the empty choice ("転送しない" unless said otherwise).
 */
export function destField(id: string, label: string, value: string | null, required = false, noneLabel?: string): DestField {
  const v = value ?? '';
  const m = DEST_RE.exec(v);
  const kind = m ? ({ ext: 'user', tel: 'number' }[m[1]] ?? m[1]) : v ? 'any' : '';
  const num = m ? m[2] : v;
  const opts: [string, string][] = [
    ...(required ? [] : ([['', noneLabel ?? t('dest.none')]] as [string, string][])),
    ['user', t('dest.user')],
    ['group', t('dest.group')],
    ['number', t('dest.number')],
    ['schedule', t('dest.schedule')],
    ['ivr', t('dest.ivr')],
    ['announcement', t('dest.announcement')],
  ];
  if (kind === 'any') opts.push(['any', t('dest.any')]);
  const sel = select(`${id}-kind`, opts, kind || (required ? 'user' : ''));
  const listId = `${id}-names`;
  const list = h('datalist', { id: listId });
  const box = input(`${id}-number`, { value: num, autocomplete: 'off', class: 'dest-number' });
  const numLabel = h('label', { for: `${id}-number`, class: 'sr-only' }, t('dest.numberLabel'));
  const sync = () => {
    const kindNow = sel.value;
    const named = kindNow in NAME_SOURCES;
    box.disabled = kindNow === '';
    box.required = kindNow !== '';
    box.inputMode = named ? 'text' : 'tel';
    box.pattern = named ? '[a-z0-9_\\-]{1,32}' : '[0-9+*#]*';
    box.placeholder = kindNow === 'schedule' || kindNow === 'ivr' ? 'main' : '';
    numLabel.textContent = named ? t(`dest.${kindNow}Label` as Key) : t('dest.numberLabel');
    if (named) {
      box.setAttribute('list', listId);
      void loadNames(kindNow).then((names) => {
        if (sel.value === kindNow) replace(list, names.map((n) => h('option', { value: n.name }, n.label || n.name)));
      });
    } else {
      box.removeAttribute('list');
    }
  };
  sel.addEventListener('change', sync);
  sync();
  const el = h(
    'fieldset',
    { class: 'field dest', id },
    h('legend', null, label),
    h('div', { class: 'dest-row' },
      h('label', { for: `${id}-kind`, class: 'sr-only' }, t('dest.kind')),
      sel,
      numLabel,
      box,
      list,
    ),
  );
  return {
    el,
    value() {
      const n = box.value.trim();
      if (!sel.value || !n) return null;
      return sel.value === 'any' ? n : `${sel.value}:${n}`;
    },
  };
}

/** A destination for display: "内線 1001". */
export function destText(v: string | null | undefined): string {
  if (!v) return '';
  const m = DEST_RE.exec(v);
  if (!m) return v;
  const k = ({ ext: 'user', tel: 'number' } as Record<string, string>)[m[1]] ?? m[1];
  return `${t(`dest.${k}` as Key)} ${m[2]}`;
}
