// The signed-in admin and what the role table in docs/api.md lets them see and change.
import type { Admin, Right } from './types';

export type Screen =
  | 'dashboard'
  | 'users'
  | 'departments'
  | 'groups'
  | 'dids'
  | 'schedules'
  | 'announcements'
  | 'ivr'
  | 'trunks'
  | 'settings'
  | 'phonebook'
  | 'calls'
  | 'audit'
  | 'admins'
  | 'recordings';

export const SCREENS: Screen[] = [
  'dashboard',
  'users',
  'departments',
  'groups',
  'dids',
  'schedules',
  'announcements',
  'ivr',
  'trunks',
  'settings',
  'phonebook',
  'calls',
  'audit',
  'admins',
  'recordings',
];

export const session: { admin: Admin | null } = { admin: null };

export function hasRight(r: Right): boolean {
  return !!session.admin?.rights?.includes(r);
}

/**
 * May the admin open this screen? Announcements go by the schedules
 * resource and voice menus by `ivr` (the same rights). Mirrors the server's
 * `Principal::may(resource, Read)` (server/src/api/rights.rs) exactly.
 */
export function canView(s: Screen): boolean {
  const a = session.admin;
  if (!a) return false;
  // Recordings go by the right alone, whatever the role.
  if (s === 'recordings') return hasRight('recordings');
  switch (a.role) {
    case 'system':
    case 'org':
      return true;
    case 'group':
      return ['dashboard', 'departments', 'phonebook', 'calls', 'users', 'groups', 'dids', 'schedules', 'announcements', 'ivr'].includes(s);
    case 'auditor':
      return false;
    case 'supervisor':
      return ['dashboard', 'departments', 'users', 'groups', 'dids', 'schedules', 'announcements', 'ivr', 'phonebook', 'calls'].includes(s);
    case 'readonly':
      return s !== 'audit' && s !== 'admins';
  }
}

/**
 * May the admin change things on this screen? The server's
 * `Principal::may(resource, Write)`: dashboards, call logs, the audit log
 * and recordings are read-only for everyone; an org admin reads trunks and
 * PBX settings but does not change them; a group admin changes users, ring
 * groups and DIDs within the grants.
 */
export function canWrite(s: Screen): boolean {
  const a = session.admin;
  if (!a || !canView(s)) return false;
  if (s === 'calls' || s === 'audit' || s === 'dashboard' || s === 'recordings') return false;
  switch (a.role) {
    case 'system':
      return true;
    case 'org':
      return s !== 'trunks' && s !== 'settings';
    case 'group':
      return s === 'users' || s === 'groups' || s === 'dids';
    default:
      return false;
  }
}

/** Adding or deleting DIDs (a group admin only routes the DIDs granted). */
export function canManageDids(): boolean {
  const r = session.admin?.role;
  return r === 'system' || r === 'org';
}

/** Disaster mode (on or off for the whole organisation): Schedules, Write. */
export function canSetDisaster(): boolean {
  const r = session.admin?.role;
  return r === 'system' || r === 'org';
}

export function firstScreen(): Screen | null {
  return SCREENS.find(canView) ?? null;
}
