// Language state: Japanese by default, English on request, kept in localStorage.
import { ja, type Dict, type Key } from './ja';
import { en } from './en';

export type Lang = 'ja' | 'en';
const DICTS: Record<Lang, Dict> = { ja, en };
const STORE_KEY = 'tsunagu.lang';

function initial(): Lang {
  try {
    return localStorage.getItem(STORE_KEY) === 'en' ? 'en' : 'ja';
  } catch {
    return 'ja';
  }
}

let lang: Lang = initial();

export function getLang(): Lang {
  return lang;
}

export function setLang(l: Lang): void {
  lang = l;
  try {
    localStorage.setItem(STORE_KEY, l);
  } catch {
    /* private mode: keep it for this page only */
  }
  document.documentElement.lang = l;
}

/** Translate a key; `{name}` placeholders are filled from vars. */
export function t(key: Key, vars?: Record<string, string | number>): string {
  let s: string = DICTS[lang][key] ?? ja[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.split(`{${k}}`).join(String(v));
  return s;
}

export function locale(): string {
  return lang === 'ja' ? 'ja-JP' : 'en-GB';
}

export function fmtTime(ms: number | null | undefined): string {
  if (ms == null || !ms) return '';
  return new Intl.DateTimeFormat(locale(), {
    year: 'numeric',
    // "07 Dec 2026" in English: day/month order is never in doubt.
    month: lang === 'ja' ? '2-digit' : 'short',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).format(new Date(ms));
}

/** Time of day only (the live feed). */
export function fmtClock(ms: number): string {
  return new Intl.DateTimeFormat(locale(), { hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(new Date(ms));
}

export function fmtDuration(secs: number): string {
  const s = Math.max(0, Math.round(secs));
  const m = Math.floor(s / 60);
  const r = s % 60;
  return `${m}:${String(r).padStart(2, '0')}`;
}
