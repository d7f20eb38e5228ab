// Shapes from docs/api.md. Where the contract does not spell out a list's
// fields, the fields used here are marked "assumed".

export type Role = 'system' | 'org' | 'group' | 'auditor' | 'supervisor' | 'readonly';
export const ROLES: Role[] = ['system', 'org', 'group', 'auditor', 'supervisor', 'readonly'];
export type Right = 'recordings' | 'devices';
export const RIGHTS: Right[] = ['recordings', 'devices'];

export interface Admin {
  name: string;
  role: Role;
  rights: Right[];
  departments: number[];
  dids: string[];
  mfa: boolean;
  /** not in docs/api.md; the server sends them. */
  locked?: boolean;
  must_change_password?: boolean;
}

/** "password" (a one-time password must be replaced) is the server's, not in docs/api.md. */
export type SignInState = 'ok' | 'mfa' | 'enrol' | 'password';

export interface SessionAnswer {
  state: SignInState;
  csrf: string;
  admin?: Admin;
}

export interface Department {
  id: number;
  name: string;
  users: number;
}

/** A department reference: the contract sends an id (a name is tolerated). */
export type DeptRef = number | string | null;

export interface User {
  extension: string;
  name: string;
  department: DeptRef;
  caller_id: 'main' | 'own';
  own_did: string | null;
  registered: boolean | number;
  /** not in docs/api.md; the server sends it. */
  department_name?: string | null;
  sip_password?: string;
}

export interface Forwarding {
  always: string | null;
  busy: string | null;
  no_answer: string | null;
  no_answer_secs: number | null;
  unregistered: string | null;
}

/** assumed: the registrar's binding fields. */
export interface Device {
  device_key: string;
  user_agent?: string | null;
  contact?: string;
  source?: string;
  transport?: string;
  expires_at?: number;
}

export interface UserDetail extends User {
  forwarding?: Forwarding;
  devices?: Device[];
}

export type Strategy = 'simultaneous' | 'sequential' | 'round-robin' | 'longest-idle';
export const STRATEGIES: Strategy[] = ['simultaneous', 'sequential', 'round-robin', 'longest-idle'];

export interface Group {
  number: string;
  name: string;
  department: DeptRef;
  strategy: Strategy;
  members: string[] | string;
  member_timeout: number;
  timeout: number;
  overflow: string | null;
  skip_busy: boolean;
  /** Announcement names (null: none; the PBX default hold music). */
  moh?: string | null;
  greeting?: string | null;
  queue_announcement?: string | null;
  /** Seconds between waiting announcements (null: the default, 30). */
  queue_announcement_secs?: number | null;
}

export interface Did {
  number: string;
  dest: string;
  label: string;
  /** Announcement names (null: none). */
  moh?: string | null;
  greeting?: string | null;
}

/** An announcement or hold music (server/src/api/announcements.rs). */
export interface Announcement {
  name: string;
  label: string;
  source: 'builtin' | 'tts' | 'upload';
  text: string | null;
  voice: string | null;
  seconds: number;
  version: number;
  updated_at: number;
  /** A built-in one: deleting it restores the default. */
  builtin: boolean;
  /** What uses it ("ivr main", "did 0312345678", "setting music_on_hold"). */
  used_by?: string[];
}

/** A voice menu (server/src/api/ivr.rs). */
export interface IvrMenu {
  name: string;
  label: string;
  greeting: string | null;
  prompt: string;
  invalid_prompt: string;
  timeout_prompt: string;
  first_digit_ms: number;
  inter_digit_ms: number;
  max_repeats: number;
  on_failure: string;
  direct_dial: boolean;
  /** Keys → action: a destination, ivr:SUB, back, repeat, hangup. */
  options: Record<string, string>;
  /** In a PUT's answer: prompts named that are not recorded yet. */
  missing_announcements?: string[];
}

/** A call recording (server/src/api/logs.rs). */
export interface Recording {
  id: string;
  call_id: string;
  extension: string;
  started_at: number;
  duration_ms: number;
  state: 'recording' | 'stored' | 'failed' | 'interrupted';
  bytes: number;
  sha256: string;
  format: string;
  channels: string;
  reason: string;
  caller: string;
  callee: string;
  direction: string | null;
  did: string | null;
}

export interface Schedule {
  name: string;
  label: string;
  /** "mon,tue,wed,thu,fri 08:30-17:15; sat 09:00-12:00"; empty: never open. */
  hours: string;
  open: string;
  closed: string;
  /** null: the closed destination. */
  holiday: string | null;
  /** null: no change in disaster mode. */
  disaster: string | null;
  /** "12-29..01-03, 08-13" */
  closed_days: string;
  use_holidays: boolean;
  /** why: open | closed | holiday:NAME | closed_day | disaster */
  now: { to: string; why: string };
}

export interface Trunk {
  name: string;
  host: string;
  transport: 'udp' | 'tcp' | 'tls';
  username?: string | null;
  priority: number;
  register: boolean;
  state?: string;
  detail?: string;
}

export interface Dashboard {
  users: number;
  registered_extensions: number;
  registered_devices: number;
  calls_now: number;
  trunks: { name: string; state: string; detail: string }[];
}

export interface PhonebookEntry {
  id: number | string;
  name: string;
  kana: string;
  number: string;
  department: string;
  note: string;
}

export interface PhonebookAnswer {
  version: number;
  entries: PhonebookEntry[];
  deleted: (number | string)[];
}

export interface CallLog {
  id: string;
  direction: string;
  caller: string;
  callee: string;
  did: string | null;
  started_at: number;
  answered_at: number | null;
  ended_at: number | null;
  result: string;
  answered_by: string | null;
}

export interface AuditEntry {
  id: number | string;
  at: number;
  actor: string;
  action: string;
  target: string;
  before: unknown;
  after: unknown;
  source: string;
}

export type LiveEvent =
  | { type: 'registration'; extension: string; device: string; registered: boolean }
  | { type: 'call'; id: string; state: 'ringing' | 'answered' | 'ended'; caller: string; callee: string; did: string | null }
  | { type: 'change'; resource: string; key: string };
