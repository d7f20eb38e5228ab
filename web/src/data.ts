// Small shared look-ups.
import { get } from './api';
import { session } from './session';
import { getLang, t } from './i18n';
import type { Announcement, DeptRef, Department } from './types';

export async function loadDepartments(): Promise<Department[]> {
  try {
    return await get<Department[]>('/api/v1/departments');
  } catch {
    return [];
  }
}

export function deptName(ref: DeptRef | undefined, depts: Department[]): string {
  if (ref == null || ref === '') return '';
  const d = depts.find((x) => String(x.id) === String(ref) || x.name === ref);
  return d ? d.name : String(ref);
}

/** The departments an admin may assign (a group admin: those granted). */
export function assignable(depts: Department[]): Department[] {
  const a = session.admin;
  if (a?.role === 'group') return depts.filter((d) => a.departments?.some((id) => String(id) === String(d.id)));
  return depts;
}

export function deptOptions(depts: Department[], withNone: boolean, noneLabel = t('common.unassigned')): [string, string][] {
  return [...(withNone ? ([['', noneLabel]] as [string, string][]) : []), ...depts.map((d) => [String(d.id), d.name] as [string, string])];
}

/** A group admin must put users and groups in a granted department. */
export function mayLeaveUnassigned(): boolean {
  return session.admin?.role !== 'group';
}

/** A select value back to the id the API expects (numbers stay numbers). */
export function deptValue(v: string): number | string | null {
  if (v === '') return null;
  return /^\d+$/.test(v) ? Number(v) : v;
}

/** The select value for a user's department reference. */
export function deptSelectValue(ref: DeptRef | undefined, depts: Department[]): string {
  if (ref == null) return '';
  const d = depts.find((x) => String(x.id) === String(ref) || x.name === ref);
  return d ? String(d.id) : String(ref);
}

/** Announcements for the pickers (empty when the admin may not read them). */
export async function loadAnnouncements(): Promise<Announcement[]> {
  try {
    return await get<Announcement[]>('/api/v1/announcements');
  } catch {
    return [];
  }
}

/**
 * Options for an announcement select: "name（label）", with a first empty
 * choice unless `noneLabel` is null. A value not in the list (removed
 * meanwhile) is kept as its own option so saving does not change it.
 */
export function announcementOptions(list: Announcement[], value: string | null | undefined, noneLabel: string | null): [string, string][] {
  const out: [string, string][] = noneLabel == null ? [] : [['', noneLabel]];
  for (const a of list) out.push([a.name, a.label ? (getLang() === 'ja' ? `${a.name}（${a.label}）` : `${a.name} (${a.label})`) : a.name]);
  if (value && !list.some((a) => a.name === value)) out.push([value, value]);
  return out;
}
