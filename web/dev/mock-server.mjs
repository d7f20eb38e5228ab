#!/usr/bin/env node
// A tiny in-memory mock of docs/api.md for clicking through the web app
// (Node 20, no dependencies). Serves web/dist and /api/v1.
//
//   node dev/mock-server.mjs [port]      (default 8089)
//
// Sign-ins (every password is "password"):
//   admin   system, rights devices+recordings, answers "mfa": code 123456
//           (or a recovery code "AAAA-BBBB")
//   org     org admin, no MFA
//   group   group admin of department 1 (市民課), DID 0312345001
//   ro      readonly
//   audit   auditor with the recordings right
//   enrol   system admin that must enrol TOTP (any 6 digits confirm)
//   newbie  readonly with a one-time password (state "password")
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PORT = Number(process.argv[2] || process.env.PORT || 8089);
const DIST = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');

// ---- data -------------------------------------------------------------------
const now = Date.now();
const admins = new Map(
  [
    { name: 'admin', role: 'system', rights: ['devices', 'recordings'], departments: [], dids: [], mfa: true },
    { name: 'org', role: 'org', rights: [], departments: [], dids: [], mfa: false },
    { name: 'group', role: 'group', rights: [], departments: [1], dids: ['0312345001'], mfa: false },
    { name: 'ro', role: 'readonly', rights: [], departments: [], dids: [], mfa: false },
    { name: 'audit', role: 'auditor', rights: ['recordings'], departments: [], dids: [], mfa: false },
    { name: 'enrol', role: 'system', rights: ['devices'], departments: [], dids: [], mfa: false, mustEnrol: true },
    { name: 'newbie', role: 'readonly', rights: [], departments: [], dids: [], mfa: false, must_change_password: true, locked: true },
  ].map((a) => [a.name, { password: 'password', locked: false, must_change_password: false, ...a }]),
);
let deptSeq = 4;
const departments = new Map([
  [1, { id: 1, name: '市民課' }],
  [2, { id: 2, name: '税務課' }],
  [3, { id: 3, name: '総務課' }],
]);
const users = new Map();
const addUser = (extension, name, department, extra = {}) =>
  users.set(extension, {
    extension, name, department, caller_id: 'main', own_did: null, registered: false,
    forwarding: { always: null, busy: null, no_answer: null, no_answer_secs: 20, unregistered: null },
    devices: [], ...extra,
  });
addUser('1001', '山田 太郎', 1, { registered: true, devices: [{ device_key: 'yealink-1', user_agent: 'Yealink T54W 96.86', contact: 'sip:1001@192.0.2.11:5060', source: '192.0.2.11:5060', transport: 'udp', expires_at: Math.floor(now / 1000) + 3600 }] });
addUser('1002', '佐藤 花子', 1, { registered: true, caller_id: 'own', own_did: '0312345002', devices: [{ device_key: 'app-ios-7f3a', user_agent: 'Tsunagu Phone iOS 1.2', contact: 'sip:1002@198.51.100.4:50122;transport=tls', source: '198.51.100.4:50122', transport: 'tls', expires_at: Math.floor(now / 1000) + 600 }] });
addUser('1003', '鈴木 一郎', 1, { forwarding: { always: null, busy: 'user:1001', no_answer: 'group:3000', no_answer_secs: 15, unregistered: 'number:09012345678' } });
addUser('2001', '高橋 美咲', 2, { registered: true, devices: [{ device_key: 'yealink-2', user_agent: 'Yealink T46U', contact: 'sip:2001@192.0.2.21', source: '192.0.2.21:5060', transport: 'udp', expires_at: Math.floor(now / 1000) + 1800 }] });
addUser('2002', '田中 健', 2);
addUser('3001', '伊藤 さくら', 3, { registered: true });
const groups = new Map([
  ['3000', { number: '3000', name: '市民課 窓口', department: 1, strategy: 'simultaneous', members: ['user:1001', 'user:1002', 'user:1003'], member_timeout: 15, timeout: 60, overflow: 'user:1001', skip_busy: true }],
  ['3100', { number: '3100', name: '税務課 相談', department: 2, strategy: 'round-robin', members: ['user:2001', 'user:2002'], member_timeout: 20, timeout: 90, overflow: null, skip_busy: true }],
]);
const dids = new Map([
  ['0312345000', { number: '0312345000', dest: 'group:3000', label: '代表' }],
  ['0312345001', { number: '0312345001', dest: 'group:3000', label: '市民課 窓口' }],
  ['0312345002', { number: '0312345002', dest: 'user:1002', label: '佐藤（直通）' }],
]);
const trunks = new Map([
  ['ntt-hikari', { name: 'ntt-hikari', host: '203.0.113.10:5060', transport: 'udp', username: '0312345000', has_password: true, priority: 10, register: true, state: 'registered', detail: '200 OK', password: 'x' }],
  ['backup', { name: 'backup', host: '198.51.100.20:5061', transport: 'tls', username: null, has_password: false, priority: 20, register: false, state: 'failed', detail: 'TLS handshake timed out' }],
]);
const schedules = new Map([
  ['main', { name: 'main', label: '代表番号', hours: 'mon,tue,wed,thu,fri 08:30-17:15', open: 'group:3000', closed: 'number:0312349999', holiday: null, disaster: 'group:3000', closed_days: '12-29..01-03', use_holidays: true }],
]);
let disaster = false;
function scheduleView(s) {
  if (disaster && s.disaster) return { ...s, now: { to: s.disaster, why: 'disaster' } };
  const jst = new Date(Date.now() + 9 * 3600e3);
  const min = jst.getUTCHours() * 60 + jst.getUTCMinutes();
  const open = s.hours && jst.getUTCDay() >= 1 && jst.getUTCDay() <= 5 && min >= 510 && min < 1035;
  return { ...s, now: open ? { to: s.open, why: 'open' } : { to: s.closed, why: 'closed' } };
}
const settings = new Map([
  ['main_number', '0312345000'],
  ['outside_prefix', '0'],
  ['cid_main_prefix', '*81'],
  ['cid_own_prefix', '*82'],
  ['schedule_clock', ''],
  ['transfer_mode', 'pbx'],
  ['transfer_recall_secs', '30'],
  ['park_recall_secs', '120'],
  ['transfer_code', '##'],
]);
let pbSeq = 4;
let pbVersion = 3;
const phonebook = new Map([
  [1, { id: 1, name: '〇〇市 消防本部', kana: 'しょうぼうほんぶ', number: '0312340119', department: '消防', note: '' }],
  [2, { id: 2, name: '〇〇県庁 代表', kana: 'けんちょう', number: '0312349999', department: '県', note: '平日 8:30–17:15' }],
  [3, { id: 3, name: '水道局 お客さまセンター', kana: 'すいどうきょく', number: '0120123456', department: '水道局', note: '' }],
]);
const calls = [];
for (let i = 0; i < 24; i++) {
  const started = now - i * 47 * 60 * 1000;
  const answered = i % 4 === 3 ? null : started + 8000;
  calls.push({
    id: `c${1000 - i}`, direction: ['inbound', 'internal', 'outbound'][i % 3],
    caller: i % 3 === 0 ? '09011112222' : ['1001', '2001', '1002'][i % 3], callee: i % 3 === 2 ? '0311112222' : ['1001', '1002', '2001'][i % 3],
    did: i % 3 === 0 ? '0312345001' : null, started_at: started, answered_at: answered,
    ended_at: started + 8000 + (i * 37 % 400) * 1000, result: answered ? 'answered' : i % 8 === 3 ? 'busy' : 'no-answer', answered_by: answered ? '1001' : null,
  });
}
let auditSeq = 1;
const audit = [];
function logAudit(actor, action, target, before, after, source = '192.0.2.50') {
  audit.unshift({ id: auditSeq++, at: Date.now(), actor, action, target, before: before ?? null, after: after ?? null, source });
}
logAudit('admin', 'sign_in', 'admin', null, { mfa: 'totp' });
logAudit('admin', 'user_changed', '1002', { caller_id: 'main' }, { caller_id: 'own', own_did: '0312345002' });

// ---- sessions ---------------------------------------------------------------
const sessions = new Map(); // token -> { admin, state, csrf }
const adminJson = (a) => ({ name: a.name, role: a.role, rights: a.rights, departments: a.departments, dids: a.dids, mfa: a.mfa, must_change_password: a.must_change_password, locked: a.locked });
const answer = (s) => ({ state: s.state, csrf: s.csrf, admin: adminJson(admins.get(s.admin)) });
function nextState(a, codeDone) {
  if (a.mfa && !codeDone) return 'mfa';
  if (!a.mfa && a.mustEnrol) return 'enrol';
  if (a.must_change_password) return 'password';
  return 'ok';
}

// ---- helpers ----------------------------------------------------------------
class HttpError extends Error {
  constructor(status, code, message, extra = {}) {
    super(message);
    Object.assign(this, { status, code, extra });
  }
}
const bad = (m) => new HttpError(400, 'invalid', m);
const notFound = (m) => new HttpError(404, 'not_found', m);
const dup = (m) => new HttpError(409, 'duplicate', m);
const forbidden = (m) => new HttpError(403, 'forbidden', m);

function send(res, status, body, headers = {}) {
  if (body === undefined || status === 204) {
    res.writeHead(status, headers);
    return res.end();
  }
  const data = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8', ...headers });
  res.end(data);
}
function csv(res, name, rows) {
  const esc = (v) => (v == null ? '' : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  const body = '\ufeff' + rows.map((r) => r.map(esc).join(',')).join('\r\n') + '\r\n';
  res.writeHead(200, { 'Content-Type': 'text/csv; charset=utf-8', 'Content-Disposition': `attachment; filename="${name}"` });
  res.end(body);
}
function parseCsv(text) {
  text = text.replace(/^\ufeff/, '');
  const rows = [];
  let row = [], cell = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') q = false; else cell += c;
    } else if (c === '"') q = true;
    else if (c === ',') { row.push(cell); cell = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell); rows.push(row); row = []; cell = '';
    } else cell += c;
  }
  if (cell || row.length) { row.push(cell); rows.push(row); }
  return rows.filter((r) => r.some((c) => c.trim()));
}
async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}
async function json(req) {
  const b = (await body(req)).toString('utf8');
  if (!b) return {};
  try { return JSON.parse(b); } catch { throw bad('body: not JSON'); }
}
const validDest = (d) => d == null || /^((user|group|number):)?[0-9+*#]{1,24}$/.test(d) || /^schedule:[a-z0-9_-]{1,32}$/.test(d);
const rndPassword = () => crypto.randomBytes(9).toString('base64url');
const uid = () => crypto.randomBytes(6).toString('hex');
const apiTokens = [{ id: 1, admin: 'admin', label: '夜間の内線CSV連携', created_at: Math.floor(now / 1000) - 30 * 86400, last_used_at: Math.floor(now / 1000) - 3600, expires_at: Math.floor(now / 1000) + 60 * 86400 }];
let apiTokenSeq = 2;

// ---- the API ------------------------------------------------------------------
async function api(req, res, url) {
  const p = url.pathname.replace(/^\/api\/v1/, '');
  const m = req.method;
  const cookies = Object.fromEntries((req.headers.cookie || '').split(/;\s*/).filter(Boolean).map((c) => c.split('=')));
  const token = cookies.tsunagu_session;
  const sess = token ? sessions.get(token) : undefined;
  const q = url.searchParams;

  if (p === '/session' && m === 'POST') {
    const b = await json(req);
    const a = admins.get(b.name);
    if (!a || a.password !== b.password) throw new HttpError(401, 'unauthenticated', 'wrong name or password');
    if (a.name === 'locked') throw new HttpError(423, 'locked', 'too many failed sign-ins', { retry_after_secs: 300 });
    const t = uid() + uid();
    const s = { admin: a.name, state: nextState(a, false), csrf: uid() };
    sessions.set(t, s);
    logAudit(a.name, 'sign_in', a.name, null, { state: s.state });
    return send(res, 200, answer(s), { 'Set-Cookie': `tsunagu_session=${t}; HttpOnly; SameSite=Strict; Path=/` });
  }
  if (!sess) throw new HttpError(401, 'unauthenticated', 'not signed in');
  if (m !== 'GET' && req.headers['x-csrf-token'] !== sess.csrf) throw new HttpError(403, 'csrf', 'missing or wrong X-CSRF-Token');
  const me = admins.get(sess.admin);
  if (p === '/session' && m === 'GET') return send(res, 200, answer(sess));
  if (p === '/session' && m === 'DELETE') { sessions.delete(token); return send(res, 204); }
  if (p === '/session/totp' && m === 'POST') {
    const { code } = await json(req);
    if (sess.state !== 'mfa') throw new HttpError(409, 'duplicate', 'no code expected now');
    if (code !== '123456' && code !== 'AAAA-BBBB') throw new HttpError(401, 'unauthenticated', 'wrong code');
    sess.state = nextState(me, true);
    return send(res, 200, answer(sess));
  }
  if (p === '/me/totp' && m === 'POST') {
    sess.pending = 'JBSWY3DPEHPK3PXP';
    return send(res, 200, { secret: sess.pending, otpauth_url: `otpauth://totp/Tsunagu:${me.name}?secret=${sess.pending}&issuer=Tsunagu` });
  }
  if (p === '/me/totp/confirm' && m === 'POST') {
    const { code } = await json(req);
    if (!/^\d{6}$/.test(code || '')) throw new HttpError(401, 'unauthenticated', 'wrong code');
    me.mfa = true;
    sess.state = nextState(me, true);
    const codes = Array.from({ length: 10 }, () => `${uid().slice(0, 4)}-${uid().slice(0, 4)}`.toUpperCase());
    return send(res, 200, { ...answer(sess), recovery_codes: codes });
  }
  if (p === '/me/password' && m === 'POST') {
    const b = await json(req);
    if (b.current !== me.password) throw new HttpError(401, 'unauthenticated', 'the current password is wrong');
    if (!b.new || b.new.length < 10) throw bad('new: at least 10 characters');
    me.password = b.new;
    me.must_change_password = false;
    sess.state = nextState(me, true);
    return send(res, 200, answer(sess));
  }
  if (sess.state !== 'ok') throw new HttpError(401, 'unauthenticated', `finish signing in first (${sess.state})`);
  // API tokens (every role manages its own; the server also takes them as Bearer tokens, the mock does not).
  if (p === '/me/tokens' && m === 'GET') return send(res, 200, apiTokens.filter((x) => x.admin === me.name).map(({ admin, ...x }) => x));
  if (p === '/me/tokens' && m === 'POST') {
    const b = await json(req);
    const days = b.days ?? 90;
    if (!(days >= 1 && days <= 366)) throw bad('days: 1 to 366');
    const at = Math.floor(Date.now() / 1000);
    const x = { id: apiTokenSeq++, admin: me.name, label: b.label || '', created_at: at, last_used_at: 0, expires_at: at + days * 86400 };
    apiTokens.push(x);
    return send(res, 201, { id: x.id, label: x.label, expires_at: x.expires_at, token: `tsu_${crypto.randomBytes(20).toString('hex')}` });
  }
  const tm = p.match(/^\/me\/tokens\/(\d+)$/);
  if (tm && m === 'DELETE') {
    const i = apiTokens.findIndex((x) => x.id === Number(tm[1]) && x.admin === me.name);
    if (i < 0) throw notFound(`${me.name} has no API token ${tm[1]}`);
    apiTokens.splice(i, 1);
    return send(res, 204);
  }
  const write = m !== 'GET';
  const readonlyRole = ['readonly', 'supervisor', 'auditor'].includes(me.role);
  if (write && readonlyRole) throw forbidden(`${me.role} may not change anything`);
  const hasRight = (r) => me.rights.includes(r);
  let mm;

  if (p === '/dashboard') {
    const us = [...users.values()];
    return send(res, 200, {
      users: us.length, registered_extensions: us.filter((u) => u.registered).length,
      registered_devices: us.reduce((n, u) => n + u.devices.length, 0), calls_now: live.size,
      trunks: [...trunks.values()].map((t) => ({ name: t.name, state: t.state, detail: t.detail })),
    });
  }
  // departments
  if (p === '/departments' && m === 'GET') return send(res, 200, [...departments.values()].map((d) => ({ ...d, users: [...users.values()].filter((u) => u.department === d.id).length })));
  if (p === '/departments' && m === 'POST') {
    const { name } = await json(req);
    if (!name) throw bad('name: empty');
    if ([...departments.values()].some((d) => d.name === name)) throw dup(`department ${name} already exists`);
    const d = { id: deptSeq++, name };
    departments.set(d.id, d);
    return send(res, 201, d);
  }
  if ((mm = p.match(/^\/departments\/(\d+)$/))) {
    const d = departments.get(Number(mm[1]));
    if (!d) throw notFound(`no such department ${mm[1]}`);
    if (m === 'PUT') { d.name = (await json(req)).name || d.name; return send(res, 200, d); }
    if (m === 'DELETE') {
      const n = [...users.values()].filter((u) => u.department === d.id).length;
      if (n) throw dup(`department ${d.name} still has ${n} users`);
      departments.delete(d.id);
      return send(res, 204);
    }
  }
  // users
  const userView = (u) => ({ extension: u.extension, name: u.name, department: u.department, department_name: departments.get(u.department)?.name ?? null, caller_id: u.caller_id, own_did: u.own_did, registered: u.registered });
  if (p === '/users' && m === 'GET') {
    const text = (q.get('q') || '').toLowerCase();
    const dep = q.get('department');
    return send(res, 200, [...users.values()]
      .filter((u) => (!dep || String(u.department) === dep) && (!text || u.extension.includes(text) || u.name.toLowerCase().includes(text)))
      .filter((u) => me.role !== 'group' || me.departments.includes(u.department))
      .sort((a, b) => a.extension.localeCompare(b.extension)).map(userView));
  }
  if (p === '/users' && m === 'POST') {
    const b = await json(req);
    if (!/^\d{2,8}$/.test(b.extension || '')) throw bad('extension: 2 to 8 digits');
    if (!b.name) throw bad('name: empty');
    if (users.has(b.extension)) throw dup(`extension ${b.extension} already exists`);
    if (b.department != null && !departments.has(b.department)) throw bad(`no such department ${b.department}`);
    addUser(b.extension, b.name, b.department ?? null);
    const out = userView(users.get(b.extension));
    if (!b.password) out.sip_password = rndPassword();
    logAudit(me.name, 'user_added', b.extension, null, out);
    return send(res, 201, out);
  }
  if (p === '/users/export') return csv(res, 'users.csv', [['extension', 'name', 'department', 'caller_id', 'own_did'], ...[...users.values()].map((u) => [u.extension, u.name, departments.get(u.department)?.name ?? '', u.caller_id, u.own_did])]);
  if (p === '/users/import' && m === 'POST') {
    const rows = parseCsv((await body(req)).toString('utf8'));
    const errs = [];
    const seen = new Set();
    const ok = [];
    rows.slice(1).forEach((r, i) => {
      const row = i + 2;
      const [extension, name, dept] = r.map((c) => (c ?? '').trim());
      if (!/^\d{2,8}$/.test(extension)) errs.push({ row, message: `extension ${JSON.stringify(extension)}: 2 to 8 digits` });
      else if (users.has(extension) || seen.has(extension)) errs.push({ row, message: `extension ${extension} already exists` });
      else if (!name) errs.push({ row, message: 'name: empty' });
      else if (dept && ![...departments.values()].some((d) => d.name === dept || String(d.id) === dept)) errs.push({ row, message: `no such department ${JSON.stringify(dept)}` });
      else { seen.add(extension); ok.push([extension, name, dept]); }
    });
    if (rows.length < 2) errs.push({ row: 1, message: 'no rows' });
    if (errs.length) throw new HttpError(422, 'rows', `${errs.length} bad rows`, { rows: errs });
    if (q.get('dry_run') === 'true') return send(res, 200, { dry_run: true, would_import: ok.length });
    const generated = [];
    for (const [e, n, d] of ok) {
      const dep = [...departments.values()].find((x) => x.name === d || String(x.id) === d);
      addUser(e, n, dep?.id ?? null);
      generated.push({ extension: e, sip_password: rndPassword() });
    }
    return send(res, 200, { imported: ok.length, generated });
  }
  if ((mm = p.match(/^\/users\/([^/]+)(\/.*)?$/))) {
    const u = users.get(decodeURIComponent(mm[1]));
    if (!u) throw notFound(`no such extension ${mm[1]}`);
    const rest = mm[2] || '';
    if (!rest && m === 'GET') {
      const out = { ...userView(u), forwarding: u.forwarding };
      if (hasRight('devices')) out.devices = u.devices;
      return send(res, 200, out);
    }
    if (!rest && m === 'PUT') {
      const b = await json(req);
      const before = userView(u);
      if ('name' in b) { if (!b.name) throw bad('name: empty'); u.name = b.name; }
      if ('department' in b) u.department = b.department;
      if ('caller_id' in b) u.caller_id = b.caller_id;
      if ('own_did' in b) u.own_did = b.own_did;
      if (u.caller_id === 'own' && !u.own_did) throw bad('own_did: needed when caller_id is own');
      logAudit(me.name, 'user_changed', u.extension, before, userView(u));
      return send(res, 200, userView(u));
    }
    if (!rest && m === 'DELETE') { users.delete(u.extension); logAudit(me.name, 'user_removed', u.extension, userView(u), null); return send(res, 204); }
    if (rest === '/forwarding' && m === 'PUT') {
      const b = await json(req);
      for (const k of ['always', 'busy', 'no_answer', 'unregistered']) if (!validDest(b[k])) throw bad(`${k}: expected user:EXT, group:N or number:DIGITS`);
      u.forwarding = { ...u.forwarding, ...b };
      return send(res, 200, u.forwarding);
    }
    if (!hasRight('devices')) throw forbidden('needs the devices right');
    if (rest === '/sip-password' && m === 'POST') return send(res, 200, { sip_password: rndPassword() });
    // As the server: GET answers a link without a password; POST sets a new one and includes it.
    if (rest === '/provisioning' && (m === 'GET' || m === 'POST')) {
      const pw = m === 'POST' ? `&password=${rndPassword()}` : '';
      return send(res, 200, { uri: `tsunagu://provision?server=pbx.city.example.lg.jp&domain=tsunagu.local&user=${u.extension}${pw}`, server: 'pbx.city.example.lg.jp', domain: 'tsunagu.local', extension: u.extension, includes_password: m === 'POST' });
    }
    if ((mm = rest.match(/^\/devices\/(.+)$/)) && m === 'DELETE') {
      const key = decodeURIComponent(mm[1]);
      const n = u.devices.length;
      u.devices = u.devices.filter((d) => d.device_key !== key);
      if (u.devices.length === n) throw notFound(`no device ${key}`);
      u.registered = u.devices.length > 0;
      return send(res, 204);
    }
  }
  // groups
  if (p === '/groups' && m === 'GET') return send(res, 200, [...groups.values()]);
  if ((mm = p.match(/^\/groups\/([^/]+)$/))) {
    const n = decodeURIComponent(mm[1]);
    if (m === 'PUT') {
      const b = await json(req);
      if (!b.name) throw bad('name: empty');
      if (!['simultaneous', 'sequential', 'round-robin', 'longest-idle'].includes(b.strategy)) throw bad('strategy');
      for (const x of b.members || []) if (!validDest(x)) throw bad(`member ${x}: not a destination`);
      groups.set(n, { ...b, number: n });
      return send(res, 200, groups.get(n));
    }
    if (m === 'DELETE') { if (!groups.delete(n)) throw notFound(`no such ring group ${n}`); return send(res, 204); }
  }
  // dids
  if (p === '/dids' && m === 'GET') return send(res, 200, [...dids.values()]);
  if (p === '/dids/export') return csv(res, 'dids.csv', [['number', 'dest', 'label'], ...[...dids.values()].map((d) => [d.number, d.dest, d.label])]);
  if (p === '/dids/import' && m === 'POST') {
    const rows = parseCsv((await body(req)).toString('utf8')).slice(1);
    const errs = [];
    rows.forEach((r, i) => {
      if (!/^[0-9+]{4,20}$/.test((r[0] || '').trim())) errs.push({ row: i + 2, message: `number ${JSON.stringify(r[0])}: digits only` });
      else if (!validDest((r[1] || '').trim()) || !(r[1] || '').trim()) errs.push({ row: i + 2, message: `dest ${JSON.stringify(r[1])}: expected user:EXT, group:N or number:DIGITS` });
    });
    if (errs.length) throw new HttpError(422, 'rows', `${errs.length} bad rows`, { rows: errs });
    if (q.get('dry_run') === 'true') return send(res, 200, { dry_run: true, would_import: rows.length });
    for (const r of rows) dids.set(r[0].trim(), { number: r[0].trim(), dest: r[1].trim(), label: (r[2] || '').trim() });
    return send(res, 200, { imported: rows.length });
  }
  if ((mm = p.match(/^\/dids\/([^/]+)$/))) {
    const n = decodeURIComponent(mm[1]);
    if (m === 'PUT') {
      const b = await json(req);
      if (!b.dest || !validDest(b.dest)) throw bad('dest: expected user:EXT, group:N or number:DIGITS');
      dids.set(n, { number: n, dest: b.dest, label: b.label || '' });
      return send(res, 200, dids.get(n));
    }
    if (m === 'DELETE') { dids.delete(n); return send(res, 204); }
  }
  // business hours and disaster mode ("now" is simplified: weekdays 08:30-17:15 JST count as open)
  if (p === '/schedules' && m === 'GET') return send(res, 200, [...schedules.values()].map(scheduleView));
  if ((mm = p.match(/^\/schedules\/([^/]+)$/))) {
    if (!['system', 'org'].includes(me.role)) throw forbidden(`${me.role} may not change business hours`);
    const n = decodeURIComponent(mm[1]);
    if (!/^[a-z0-9_-]{1,32}$/.test(n)) throw bad(`schedule name ${JSON.stringify(n)}: 1 to 32 lowercase letters, digits, '-' or '_'`);
    if (m === 'PUT') {
      const b = await json(req);
      for (const k of ['open', 'closed']) if (!b[k] || !validDest(b[k])) throw bad(`${k}: expected a destination`);
      schedules.set(n, { name: n, label: b.label || '', hours: b.hours || '', open: b.open, closed: b.closed, holiday: b.holiday || null, disaster: b.disaster || null, closed_days: b.closed_days || '', use_holidays: b.use_holidays !== false });
      broadcast({ type: 'change', resource: 'schedules', key: n });
      return send(res, 200, scheduleView(schedules.get(n)));
    }
    if (m === 'DELETE') { schedules.delete(n); broadcast({ type: 'change', resource: 'schedules', key: n }); return send(res, 204); }
  }
  if (p === '/disaster' && m === 'GET') return send(res, 200, { on: disaster });
  if (p === '/disaster' && m === 'PUT') {
    if (!['system', 'org'].includes(me.role)) throw forbidden(`${me.role} may not switch disaster mode`);
    disaster = !!(await json(req)).on;
    broadcast({ type: 'change', resource: 'disaster', key: disaster ? 'on' : 'off' });
    return send(res, 200, { on: disaster });
  }
  // trunks, settings
  if (['/trunks', '/settings'].some((x) => p.startsWith(x)) && !['system', 'readonly'].includes(me.role)) throw forbidden(`${me.role} may not see trunks or settings`);
  const trunkView = ({ password, ...t }) => t;
  if (p === '/trunks' && m === 'GET') return send(res, 200, [...trunks.values()].map(trunkView));
  if ((mm = p.match(/^\/trunks\/([^/]+)$/))) {
    const n = decodeURIComponent(mm[1]);
    if (m === 'PUT') {
      const b = await json(req);
      if (!/^[^:]+:\d+$/.test(b.host || '')) throw bad('host: expected host:port');
      const old = trunks.get(n);
      trunks.set(n, { ...old, ...b, name: n, password: b.password ?? old?.password, has_password: !!(b.password ?? old?.password), state: old?.state ?? 'unregistered', detail: old?.detail ?? '' });
      return send(res, 200, trunkView(trunks.get(n)));
    }
    if (m === 'DELETE') { trunks.delete(n); return send(res, 204); }
  }
  if (p === '/settings' && m === 'GET') return send(res, 200, [...settings].map(([key, value]) => ({ key, value, default: null })));
  if ((mm = p.match(/^\/settings\/([^/]+)$/)) && m === 'PUT') {
    const { value } = await json(req);
    settings.set(decodeURIComponent(mm[1]), String(value ?? ''));
    return send(res, 200, { key: mm[1], value });
  }
  // phonebook
  if (p === '/phonebook' && m === 'GET') {
    const text = (q.get('q') || '').toLowerCase();
    const entries = [...phonebook.values()].filter((e) => !text || [e.name, e.kana, e.number, e.department].some((x) => (x || '').toLowerCase().includes(text)));
    return send(res, 200, { version: pbVersion, entries: entries.slice(0, Number(q.get('limit')) || 1000), deleted: [] });
  }
  if (p === '/phonebook' && m === 'POST') {
    const b = await json(req);
    if (!b.name || !b.number) throw bad('name and number are needed');
    const e = { ...b, id: pbSeq++ };
    phonebook.set(e.id, e);
    pbVersion++;
    return send(res, 201, e);
  }
  if (p === '/phonebook/export') return csv(res, 'phonebook.csv', [['name', 'kana', 'number', 'department', 'note'], ...[...phonebook.values()].map((e) => [e.name, e.kana, e.number, e.department, e.note])]);
  if (p === '/phonebook/import' && m === 'POST') {
    const rows = parseCsv((await body(req)).toString('utf8')).slice(1);
    const errs = rows.flatMap((r, i) => (!r[0] || !/^[0-9+-]+$/.test(r[2] || '') ? [{ row: i + 2, message: !r[0] ? 'name: empty' : `number ${JSON.stringify(r[2])}: digits only` }] : []));
    if (errs.length) throw new HttpError(422, 'rows', `${errs.length} bad rows`, { rows: errs });
    for (const r of rows) { const id = pbSeq++; phonebook.set(id, { id, name: r[0], kana: r[1] || '', number: r[2], department: r[3] || '', note: r[4] || '' }); }
    return send(res, 200, { imported: rows.length });
  }
  if ((mm = p.match(/^\/phonebook\/(\d+)$/))) {
    const id = Number(mm[1]);
    if (!phonebook.has(id)) throw notFound(`no such entry ${id}`);
    if (m === 'PUT') { phonebook.set(id, { ...(await json(req)), id }); pbVersion++; return send(res, 200, phonebook.get(id)); }
    if (m === 'DELETE') { phonebook.delete(id); pbVersion++; return send(res, 204); }
  }
  // logs
  const inRange = (t) => (!q.get('from') || t >= Number(q.get('from'))) && (!q.get('to') || t <= Number(q.get('to')));
  const filteredCalls = () => calls.filter((c) => inRange(c.started_at) && (!q.get('user') || [c.caller, c.callee, c.answered_by].includes(q.get('user'))));
  if (p === '/calls') return send(res, 200, filteredCalls().slice(0, Number(q.get('limit')) || 500));
  if (p === '/calls/export') return csv(res, 'calls.csv', [['id', 'direction', 'caller', 'callee', 'did', 'started_at', 'result'], ...filteredCalls().map((c) => [c.id, c.direction, c.caller, c.callee, c.did, new Date(c.started_at).toISOString(), c.result])]);
  if (p.startsWith('/audit') && !['system', 'org'].includes(me.role)) throw forbidden('the audit log is for system and org admins');
  const filteredAudit = () => audit.filter((a) => inRange(a.at) && (!q.get('actor') || a.actor === q.get('actor')));
  if (p === '/audit') return send(res, 200, filteredAudit().slice(0, Number(q.get('limit')) || 500));
  if (p === '/audit/export') return csv(res, 'audit.csv', [['at', 'actor', 'action', 'target', 'before', 'after', 'source'], ...filteredAudit().map((a) => [new Date(a.at).toISOString(), a.actor, a.action, a.target, JSON.stringify(a.before), JSON.stringify(a.after), a.source])]);
  // admins
  if (p.startsWith('/admins') && !['system', 'org'].includes(me.role)) throw forbidden('admins are for system and org admins');
  if (p === '/admins' && m === 'GET') return send(res, 200, [...admins.values()].map(adminJson));
  if (p === '/admins' && m === 'POST') {
    const b = await json(req);
    if (!/^[a-z0-9._-]{2,32}$/.test(b.name || '')) throw bad('name: 2 to 32 of a-z 0-9 . _ -');
    if (admins.has(b.name)) throw dup(`admin ${b.name} already exists`);
    if (me.role === 'org' && ['system', 'org'].includes(b.role)) throw forbidden('an org admin may not add system or org admins');
    const pw = rndPassword();
    admins.set(b.name, { name: b.name, role: b.role, rights: b.rights || [], departments: b.departments || [], dids: b.dids || [], mfa: false, password: pw, must_change_password: true, locked: false });
    return send(res, 201, { ...adminJson(admins.get(b.name)), one_time_password: pw });
  }
  if ((mm = p.match(/^\/admins\/([^/]+)(\/reset-mfa|\/unlock)?$/))) {
    const a = admins.get(decodeURIComponent(mm[1]));
    if (!a) throw notFound(`no such admin ${mm[1]}`);
    if (mm[2] === '/reset-mfa') { a.mfa = false; return send(res, 200, adminJson(a)); }
    if (mm[2] === '/unlock') { a.locked = false; return send(res, 200, adminJson(a)); }
    if (m === 'PUT') { const b = await json(req); Object.assign(a, { role: b.role, rights: b.rights, departments: b.departments, dids: b.dids }); return send(res, 200, adminJson(a)); }
    if (m === 'DELETE') { if (a.name === me.name) throw bad('you cannot delete yourself'); admins.delete(a.name); return send(res, 204); }
  }
  if (p.startsWith('/recordings')) {
    if (!hasRight('recordings')) throw forbidden('needs the recordings right');
    if (p === '/recordings') return send(res, 200, [{ id: 'r1', call_id: 'c1000', extension: '1001', started_at: now - 3600e3, duration_secs: 184 }]);
    if (p === '/recordings/access-log') return send(res, 200, [{ at: now - 600e3, admin: 'audit', recording: 'r1', action: 'play' }]);
  }
  throw notFound(`no route ${m} ${p}`);
}

// ---- WebSocket (/api/v1/events): server-to-client text frames only ----------------
const sockets = new Set();
const live = new Map();
function wsSend(sock, obj) {
  const data = Buffer.from(JSON.stringify(obj));
  const head = data.length < 126 ? Buffer.from([0x81, data.length]) : Buffer.from([0x81, 126, data.length >> 8, data.length & 255]);
  sock.write(Buffer.concat([head, data]));
}
function broadcast(obj) {
  for (const s of sockets) wsSend(s, obj);
}
setInterval(() => {
  const exts = [...users.keys()];
  const pick = () => exts[Math.floor(Math.random() * exts.length)];
  const r = Math.random();
  if (r < 0.45 || live.size === 0) {
    const id = uid();
    const c = { id, caller: Math.random() < 0.5 ? '09012345678' : pick(), callee: pick(), did: Math.random() < 0.3 ? '0312345001' : null, state: 'ringing' };
    live.set(id, c);
    broadcast({ type: 'call', ...c });
  } else if (r < 0.85) {
    const c = [...live.values()][0];
    c.state = c.state === 'ringing' ? 'answered' : 'ended';
    if (c.state === 'ended') live.delete(c.id);
    broadcast({ type: 'call', ...c });
  } else {
    const e = pick();
    broadcast({ type: 'registration', extension: e, device: 'yealink-' + e, registered: Math.random() < 0.6 });
  }
}, 2500).unref();

// ---- static files -------------------------------------------------------------------
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png' };
function serveStatic(res, url) {
  let f = path.normalize(path.join(DIST, decodeURIComponent(url.pathname)));
  if (!f.startsWith(DIST) || !fs.existsSync(f) || fs.statSync(f).isDirectory()) f = path.join(DIST, 'index.html');
  if (!fs.existsSync(f)) return send(res, 500, 'run `npm run build` first');
  res.writeHead(200, { 'Content-Type': TYPES[path.extname(f)] || 'application/octet-stream' });
  fs.createReadStream(f).pipe(res);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (!url.pathname.startsWith('/api/')) return serveStatic(res, url);
  try {
    await api(req, res, url);
  } catch (e) {
    if (e instanceof HttpError) send(res, e.status, { error: e.message, code: e.code, ...e.extra });
    else { console.error(e); send(res, 500, { error: String(e), code: 'internal' }); }
  }
});
server.on('upgrade', (req, sock) => {
  const token = Object.fromEntries((req.headers.cookie || '').split(/;\s*/).filter(Boolean).map((c) => c.split('='))).tsunagu_session;
  if (!req.url.startsWith('/api/v1/events') || !sessions.get(token) || sessions.get(token).state !== 'ok') {
    sock.end('HTTP/1.1 401 Unauthorized\r\n\r\n');
    return;
  }
  const accept = crypto.createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  sockets.add(sock);
  sock.on('data', (b) => { if ((b[0] & 0x0f) === 8) sock.end(); });
  sock.on('close', () => sockets.delete(sock));
  sock.on('error', () => sockets.delete(sock));
});
server.listen(PORT, '127.0.0.1', () => console.log(`mock API + web/dist on http://127.0.0.1:${PORT}/`));
