// Business hours (営業時間): schedules that route by time of day, public
// holidays and closed days, and where each sends a call right now.
// List, add/edit (PUT /schedules/{name}), delete.
import { del, enc, get, put } from '../api';
import { debounce, h, replace } from '../dom';
import { onEvent } from '../events';
import { getLang, t } from '../i18n';
import { canWrite } from '../session';
import type { Schedule } from '../types';
import { disasterOn, onDisaster } from '../disaster';
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
  showError,
  showStatus,
  statusBox,
  table,
} from '../ui';

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const DAYS_JA = ['日', '月', '火', '水', '木', '金', '土'];
const DAYS_EN = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS_EN = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "mon,tue,wed,thu,fri 08:30-17:15; sat 09:00-12:00" → ["月〜金 8:30〜17:15", "土 9:00〜12:00"]. */
export function hoursLines(hours: string): string[] {
  const ja = getLang() === 'ja';
  const names = ja ? DAYS_JA : DAYS_EN;
  const parts = hours
    .split(';')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((part) => {
      const [days, times] = part.split(/\s+/, 2);
      const idx = (days ?? '')
        .split(',')
        .map((d) => DAYS.indexOf(d.trim().toLowerCase()))
        .filter((i) => i >= 0);
      if (!idx.length || !times) return part;
      // Monday first, so "mon-sun" reads as a run.
      const order = idx.map((i) => (i + 6) % 7).sort((a, b) => a - b);
      const runs: number[][] = [];
      for (const i of order) {
        const last = runs[runs.length - 1];
        if (last && last[last.length - 1] === i - 1) last.push(i);
        else runs.push([i]);
      }
      const name = (i: number) => names[(i + 1) % 7];
      const dayText = runs
        .map((r) => (r.length >= 3 ? `${name(r[0])}${ja ? '〜' : '–'}${name(r[r.length - 1])}` : r.map(name).join(ja ? '・' : ', ')))
        .join(ja ? '・' : ', ');
      const time = times.replace(/\b0(\d):/g, '$1:').replace('-', ja ? '〜' : '–');
      return `${dayText} ${time}`;
    });
  return parts;
}

/** "12-29..01-03, 08-13" → "12/29〜1/3、8/13" ("29 Dec – 3 Jan, 13 Aug" in English). */
export function closedDaysText(days: string): string {
  const ja = getLang() === 'ja';
  const md = (s: string) => {
    const m = /^(\d{1,2})-(\d{1,2})$/.exec(s.trim());
    if (!m) return s.trim();
    const [mo, d] = [Number(m[1]), Number(m[2])];
    return ja ? `${mo}/${d}` : `${d} ${MONTHS_EN[mo - 1] ?? mo}`;
  };
  return days
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => p.split('..').map(md).join(ja ? '〜' : ' – '))
    .join(ja ? '、' : ', ');
}

/** Why a schedule routes as it does now, in words: "祝日（成人の日）". */
export function whyText(why: string): string {
  if (why.startsWith('holiday:')) return t('sched.why.holiday', { name: why.slice(8) });
  switch (why) {
    case 'open':
      return t('sched.why.open');
    case 'closed':
      return t('sched.why.closed');
    case 'closed_day':
      return t('sched.why.closed_day');
    case 'disaster':
      return t('sched.why.disaster');
    default:
      return why;
  }
}

/** Labels of the schedules on screen, so "schedule:yakan" reads "営業時間 yakan（夜間窓口）". */
let labels = new Map<string, string>();
function dest(v: string | null | undefined): string {
  const m = /^schedule:(.*)$/.exec(v ?? '');
  const label = m ? labels.get(m[1]) : undefined;
  return label ? `${destText(v)}（${label}）` : destText(v);
}

function nowCell(s: Schedule): HTMLElement {
  const why = s.now?.why ?? '';
  const kind = why.startsWith('holiday:') ? 'holiday' : why;
  return h(
    'span',
    { class: `now now-${kind}`, 'data-testid': `schedule-now-${s.name}` },
    h('span', { class: 'now-why' }, whyText(why)),
    ' → ',
    dest(s.now?.to),
  );
}

/** The four destinations in order: open → closed → holiday → disaster. */
function routeCell(s: Schedule): HTMLElement {
  const row = (label: string, v: string) => h('li', null, h('span', { class: 'k' }, label), ' ', v);
  return h(
    'ul',
    { class: 'route' },
    row(t('sched.openShort'), dest(s.open)),
    row(t('sched.closedShort'), dest(s.closed)),
    row(t('sched.holidayShort'), s.holiday ? dest(s.holiday) : t('sched.holidayNone')),
    row(t('sched.disasterShort'), s.disaster ? dest(s.disaster) : t('sched.disasterNone')),
  );
}

export function renderSchedules(main: HTMLElement): () => void {
  const writable = canWrite('schedules');
  const err = alertBox();
  const note = h('div', { class: 'notice', 'data-testid': 'schedules-disaster-note', hidden: !disasterOn() }, t('sched.disasterNote'));
  const list = h('div');
  const formCard = h('div');

  async function load() {
    try {
      const schedules = await get<Schedule[]>('/api/v1/schedules');
      labels = new Map(schedules.filter((x) => x.label).map((x) => [x.name, x.label]));
      clearBox(err);
      replace(
        list,
        table(
          [t('sched.name'), t('sched.label'), t('sched.hours'), t('sched.route'), t('sched.closedDays'), t('sched.holidays'), t('sched.now'), ...(writable ? [''] : [])],
          schedules.map((s) => [
            h('code', null, s.name),
            s.label,
            s.hours ? h('ul', { class: 'hours', title: s.hours }, hoursLines(s.hours).map((l) => h('li', null, l))) : h('span', { class: 'muted' }, t('sched.never')),
            routeCell(s),
            s.closed_days ? h('span', { title: s.closed_days }, closedDaysText(s.closed_days)) : '',
            s.use_holidays ? t('sched.holidaysOn') : t('sched.holidaysOff'),
            nowCell(s),
            ...(writable
              ? [
                  actions(
                    button(t('common.edit'), () => showForm(s), { class: 'small', 'data-testid': `schedule-edit-${s.name}`, 'aria-label': `${t('common.edit')} ${s.label || s.name}` }),
                    button(t('common.delete'), (ev) => {
                      void (async () => {
                        if (!(await confirmDialog(t('sched.deleteConfirm', { name: s.name, label: s.label || s.name })))) return;
                        await busy(ev.target as HTMLButtonElement, err, async () => {
                          await del(`/api/v1/schedules/${enc(s.name)}`);
                          await load();
                        });
                      })();
                    }, { class: 'danger small', 'data-testid': `schedule-delete-${s.name}`, 'aria-label': `${t('common.delete')} ${s.label || s.name}` }),
                  ),
                ]
              : []),
          ]),
          { testid: 'schedules-table', label: t('nav.schedules'), empty: t('sched.none') },
        ),
      );
    } catch (e) {
      showError(err, e);
    }
  }

  function showForm(s: Schedule | null) {
    const fErr = alertBox('schedule-error');
    const fOk = statusBox('schedule-result');
    const name = input('schedule-name', { value: s?.name ?? '', required: true, pattern: '[a-z0-9_\\-]{1,32}', maxlength: 32, autocomplete: 'off', spellcheck: false, readonly: !!s });
    const label = input('schedule-label', { value: s?.label ?? '', maxlength: 100 });
    const hours = input('schedule-hours', { value: s?.hours ?? '', autocomplete: 'off', spellcheck: false });
    const open = destField('schedule-open', t('sched.open'), s?.open ?? null, true);
    const closed = destField('schedule-closed', t('sched.closed'), s?.closed ?? null, true);
    const holiday = destField('schedule-holiday', t('sched.holiday'), s?.holiday ?? null, false, t('sched.holidayNone'));
    const disaster = destField('schedule-disaster', t('sched.disaster'), s?.disaster ?? null, false, t('sched.disasterNone'));
    const closedDays = input('schedule-closed-days', { value: s?.closed_days ?? '', autocomplete: 'off', spellcheck: false });
    const useHolidays = checkbox('schedule-use-holidays', t('sched.useHolidays'), s ? !!s.use_holidays : true);
    const save = h('button', { type: 'submit', class: 'primary', id: 'schedule-submit', 'data-testid': 'schedule-submit' }, s ? t('common.save') : t('common.add'));
    const form = h(
      'form',
      { class: 'form-grid', 'data-testid': 'schedule-form' },
      field('schedule-name', t('sched.name'), name, t('sched.nameHint')),
      field('schedule-label', t('sched.label'), label, t('sched.labelHint')),
      h('div', { class: 'span-all' }, field('schedule-hours', t('sched.hours'), hours, t('sched.hoursHint'))),
      open.el,
      closed.el,
      holiday.el,
      disaster.el,
      h('div', { class: 'span-all' }, field('schedule-closed-days', t('sched.closedDays'), closedDays, t('sched.closedDaysHint'))),
      h('div', { class: 'span-all' }, useHolidays),
      h('div', { class: 'buttons span-all' }, save, s ? button(t('common.cancel'), () => showForm(null)) : null),
      h('div', { class: 'span-all' }, fErr, fOk),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearBox(fOk);
      void busy(save, fErr, async () => {
        const n = name.value.trim();
        await put(`/api/v1/schedules/${enc(n)}`, {
          label: label.value.trim(),
          hours: hours.value.trim(),
          open: open.value(),
          closed: closed.value(),
          holiday: holiday.value(),
          disaster: disaster.value(),
          closed_days: closedDays.value.trim(),
          use_holidays: (useHolidays.querySelector('input') as HTMLInputElement).checked,
        });
        await load();
        showForm(null);
        const ok = formCard.querySelector<HTMLElement>('[data-testid="schedule-result"]');
        if (ok) showStatus(ok, t('sched.saved', { name: n }));
      });
    });
    replace(formCard, card(s ? t('sched.editTitle', { name: s.name }) : t('sched.addTitle'), form));
    if (s) {
      formCard.scrollIntoView({ block: 'start' });
      label.focus();
    }
  }

  replace(main, pageTitle('nav.schedules'), h('p', { class: 'hint' }, t('sched.help')), note, err, list, writable ? formCard : null);
  if (writable) showForm(null);
  void load();

  // Changes by others, disaster mode, and the clock (the "now" column) keep the list current.
  const reload = debounce(() => void load(), 300);
  const offEvent = onEvent((e) => {
    if (e.type === 'change' && (e.resource === 'schedules' || e.resource === 'disaster')) reload();
  });
  const offDisaster = onDisaster((on) => {
    note.hidden = !on;
    reload();
  });
  const timer = setInterval(() => void load(), 60_000);
  return () => {
    offEvent();
    offDisaster();
    clearInterval(timer);
  };
}
