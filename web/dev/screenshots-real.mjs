#!/usr/bin/env node
// Screenshots of the admin web app against a real server, for the admin
// guide (docs/admin-guide.*.md): starts `tsunagu serve` on free ports with
// a fresh data dir, signs the first admin in (TOTP enrolment, new
// password), seeds a small city (departments, ~15 users, ring groups,
// DIDs, phonebook, admins, business hours, a few registered phones via SIPp,
// call records)
// and takes PNGs of the main screens in Japanese at 1280x800 (one at 768).
//
//   npm run build && node dev/screenshots-real.mjs [outdir]
//
// outdir defaults to ../docs/screenshots. The server binary is
// ../target/debug/tsunagu (or $TSUNAGU_BIN); build it with
//   flock /tmp/cargo.lock cargo test -p tsunagu-server --test e2e_admin --no-run
// Needs chromium, sipp and sqlite3 (for the call records).

import { chromium } from 'playwright-core';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const WEB = path.resolve(here, '..');
const ROOT = path.resolve(WEB, '..');
const OUT = path.resolve(process.argv[2] || path.join(ROOT, 'docs/screenshots'));
const BIN = process.env.TSUNAGU_BIN || path.join(ROOT, 'target/debug/tsunagu');
const NEW_PASSWORD = 'shiyakusho-kanri-2025';
const T = 15_000;

for (const [what, p] of [['the server binary', BIN], ['the built web app', path.join(WEB, 'dist/index.html')]]) {
  if (!fs.existsSync(p)) throw new Error(`${what} is missing: ${p}`);
}
fs.mkdirSync(OUT, { recursive: true });
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagu-shots-'));
const data = path.join(work, 'data');
fs.mkdirSync(data);

// ---- TOTP (RFC 6238) --------------------------------------------------------
function base32Decode(s) {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | A.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}
function totpAt(secret, step) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', base32Decode(secret)).update(msg).digest();
  const off = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(off) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

// ---- the server ---------------------------------------------------------------
function freePort(kind) {
  return new Promise((resolve, reject) => {
    if (kind === 'udp') {
      const s = dgram.createSocket('udp4');
      s.on('error', reject);
      s.bind(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    } else {
      const s = net.createServer();
      s.on('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    }
  });
}
const sipPort = await freePort('udp');
const httpPort = await freePort('tcp');
const BASE = `http://127.0.0.1:${httpPort}`;
const serverLog = fs.openSync(path.join(work, 'server.log'), 'w');
const server = spawn(BIN, ['serve', '--data', data, '--sip', `127.0.0.1:${sipPort}`, '--http', `127.0.0.1:${httpPort}`], {
  env: { ...process.env, TSUNAGU_HTTP_WEB_DIR: path.join(WEB, 'dist') },
  stdio: ['ignore', serverLog, serverLog],
});
const stopServer = () => {
  if (server.exitCode === null) server.kill('SIGTERM');
};
process.on('exit', stopServer);
{
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`${BASE}/`)).ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`the server did not start; see ${work}/server.log`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
const cli = (...args) => {
  const r = spawnSync(BIN, [...args.slice(0, 2), '--data', data, ...args.slice(2)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsunagu ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const otp = /one-time password: (\S+)/.exec(cli('admin', 'add', 'kanri', '--role', 'system'))[1];

// ---- the browser ----------------------------------------------------------------
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', '--lang=ja'] });
const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1, locale: 'ja-JP' });
ctx.setDefaultTimeout(T);
const page = await ctx.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
const shots = [];
async function shot(name, opts = {}) {
  const file = path.join(OUT, `${name}.png`);
  // Let fonts and the caret settle into a stable frame.
  await page.evaluate(() => document.fonts.ready);
  await page.screenshot({ path: file, fullPage: !!opts.full, clip: opts.clip, caret: 'hide', animations: 'disabled' });
  const kb = Math.round(fs.statSync(file).size / 1024);
  shots.push(`${name}.png ${kb} KB`);
  if (kb >= 150) problems.push(`${name}.png is ${kb} KB (keep it under 150 KB)`);
}
async function go(hash, ready) {
  await page.goto(`${BASE}/#/${hash}`);
  await page.locator(ready).first().waitFor({ timeout: T });
  await page.evaluate(() => window.scrollTo(0, 0));
}

// Sign-in: the one-time password, TOTP enrolment, recovery codes, a new password.
await page.goto(`${BASE}/`);
await page.fill('#signin-name', 'kanri');
await page.fill('#signin-password', otp);
await shot('01-signin');
await page.click('#signin-submit');
await page.locator('[data-testid=totp-qr] svg').waitFor();
const secret = (await page.textContent('[data-testid=totp-secret]')).trim();
let lastStep = Math.floor(Date.now() / 30_000);
await page.fill('#enrol-code', totpAt(secret, lastStep));
await shot('02-totp-enrol');
await page.click('#enrol-submit');
await page.locator('[data-testid=recovery-codes]').waitFor();
await shot('03-recovery-codes');
await page.click('#recovery-continue');
await page.locator('#new-password').waitFor();
await page.fill('#new-password', NEW_PASSWORD);
await page.fill('#new-password-again', NEW_PASSWORD);
await page.click('#new-password-submit');
await page.locator('[data-testid=stat-users]').waitFor();

// ---- seed through the API, as the signed-in admin -------------------------------
const csrf = await page.evaluate(async () => (await (await fetch('/api/v1/session')).json()).csrf);
async function api(method, p, body) {
  const r = await page.evaluate(
    async ([method, p, body, csrf]) => {
      const res = await fetch(p, { method, headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: res.status, text: await res.text() };
    },
    [method, p, body, csrf],
  );
  if (r.status >= 300) throw new Error(`${method} ${p}: ${r.status} ${r.text}`);
  return r.text ? JSON.parse(r.text) : null;
}

const dept = {};
for (const name of ['総務課', '市民課', '税務課', '防災課']) dept[name] = (await api('POST', '/api/v1/departments', { name })).id;
const users = [
  ['1001', '佐藤 一郎', '総務課'],
  ['1002', '鈴木 花子', '総務課'],
  ['1003', '高橋 健太', '総務課'],
  ['1004', '田中 美咲', '総務課'],
  ['1101', '伊藤 大輔', '市民課'],
  ['1102', '渡辺 由美', '市民課'],
  ['1103', '山本 翔太', '市民課'],
  ['1104', '中村 愛', '市民課'],
  ['1105', '小林 誠', '市民課'],
  ['1201', '加藤 直樹', '税務課'],
  ['1202', '吉田 恵子', '税務課'],
  ['1203', '山田 拓也', '税務課'],
  ['1301', '佐々木 隆', '防災課'],
  ['1302', '山口 さくら', '防災課'],
  ['1303', '松本 剛', '防災課'],
];
const sipPassword = (ext) => `shot-pass-${ext}`;
for (const [extension, name, d] of users) {
  await api('POST', '/api/v1/users', { extension, name, department: dept[d], password: sipPassword(extension) });
}
await api('PUT', '/api/v1/users/1001', { caller_id: 'own', own_did: '0451234001' });
await api('PUT', '/api/v1/users/1301', { caller_id: 'own', own_did: '0451234119' });
await api('PUT', '/api/v1/users/1101/forwarding', { busy: 'group:3000', no_answer: 'user:1102', no_answer_secs: 15, unregistered: 'number:09012345678' });
await api('PUT', '/api/v1/groups/3000', { name: '市民課 窓口', department: dept['市民課'], strategy: 'sequential', members: ['user:1101', 'user:1102', 'user:1103', 'user:1104'], member_timeout: 15, timeout: 60, overflow: 'user:1105', skip_busy: true });
await api('PUT', '/api/v1/groups/3100', { name: '税務課 代表', department: dept['税務課'], strategy: 'simultaneous', members: ['user:1201', 'user:1202', 'user:1203'], member_timeout: 20, timeout: 60, skip_busy: true });
await api('PUT', '/api/v1/groups/3900', { name: '防災課 緊急', department: dept['防災課'], strategy: 'simultaneous', members: ['user:1301', 'user:1302', 'user:1303'], member_timeout: 30, timeout: 90, overflow: 'number:09011190119', skip_busy: false });
await api('PUT', '/api/v1/groups/3200', { name: '総務課 受付', department: dept['総務課'], strategy: 'round-robin', members: ['user:1002', 'user:1003', 'user:1004'], member_timeout: 15, timeout: 45, skip_busy: true });
for (const [number, dest, label] of [
  ['0451234000', 'group:3200', '代表番号'],
  ['0451234100', 'group:3000', '市民課 直通'],
  ['0451234200', 'group:3100', '税務課 直通'],
  ['0451234119', 'group:3900', '防災課 直通'],
  ['0451234001', 'user:1001', '総務課長'],
]) {
  await api('PUT', `/api/v1/dids/${number}`, { dest, label });
}
await api('PUT', '/api/v1/settings/main_number', { value: '0451234000' });
await api('PUT', '/api/v1/trunks/carrier', { host: '127.0.0.1:5999', transport: 'udp', priority: 10, register: false });
for (const [name, kana, number, department, note] of [
  ['消防本部', 'ショウボウホンブ', '0451230119', '消防', '通信指令課'],
  ['警察署 生活安全課', 'ケイサツショ セイカツアンゼンカ', '0451230110', '警察', ''],
  ['市立病院', 'シリツビョウイン', '0451238000', '病院', '夜間は救急外来'],
  ['水道局 お客さまセンター', 'スイドウキョク', '0451235000', '水道局', '平日 8:30〜17:15'],
  ['県庁 市町村課', 'ケンチョウ シチョウソンカ', '0452100000', '県', ''],
  ['社会福祉協議会', 'シャカイフクシキョウギカイ', '0451236000', '福祉', ''],
  ['市民会館', 'シミンカイカン', '0451237000', '施設', '休館日 月曜'],
  ['中央図書館', 'チュウオウトショカン', '0451237100', '施設', ''],
  ['清掃センター', 'セイソウセンター', '0451239000', '環境', '粗大ごみ受付'],
  ['教育委員会 学校教育課', 'キョウイクイインカイ', '0451234500', '教育委員会', ''],
]) {
  await api('POST', '/api/v1/phonebook', { name, kana, number, department, note });
}
await api('POST', '/api/v1/admins', { name: 'tanaka', role: 'group', departments: [dept['市民課']], dids: ['0451234100'], rights: [] });
const kansa = (await api('POST', '/api/v1/admins', { name: 'kansa', role: 'auditor', rights: ['recordings'] })).one_time_password;
await api('POST', '/api/v1/admins', { name: 'madoguchi', role: 'supervisor', rights: [] });
const joho = (await api('POST', '/api/v1/admins', { name: 'joho', role: 'org', rights: ['devices'] })).one_time_password;

// Some phones register (SIPp), so the dashboard and the list show them.
{
  const registered = ['1001', '1002', '1101', '1102', '1103', '1201', '1301', '1302'];
  const inf = path.join(work, 'register.csv');
  fs.writeFileSync(inf, 'SEQUENTIAL\n' + registered.map((e) => `${e};${sipPassword(e)};[authentication username=${e} password=${sipPassword(e)}];\n`).join(''));
  const r = spawnSync('sipp', [`127.0.0.1:${sipPort}`, '-sf', path.join(ROOT, 'tests/sipp/register_auth.xml'), '-inf', inf, '-t', 'u1', '-i', '127.0.0.1', '-p', String(await freePort('udp')),
    '-m', String(registered.length), '-r', '20', '-timeout', '20s', '-timeout_error', '-nostdin', '-max_retrans', '7'], { cwd: work, timeout: 30_000, encoding: 'utf8' });
  if (r.status !== 0) problems.push(`sipp registration exited ${r.status}`);
}

// Call records of this morning (the PBX writes these for real calls).
{
  const day = new Date();
  day.setHours(8, 30, 0, 0);
  const t0 = day.getTime();
  const rows = [];
  const rec = (min, direction, caller, callee, did, result, answeredBy, talkSecs, ringSecs = 6) => {
    const started = t0 + min * 60_000;
    const answered = result === 'answered' ? started + ringSecs * 1000 : null;
    const ended = (answered ?? started + ringSecs * 1000) + (talkSecs ?? 0) * 1000;
    const q = (v) => (v == null ? 'NULL' : `'${String(v).replace(/'/g, "''")}'`);
    rows.push(`(${q(crypto.randomUUID())},${q(direction)},${q(caller)},${q(callee)},${q(did)},${q(did ? 'carrier' : null)},${started},${answered ?? 'NULL'},${ended},${q(result)},${q(answeredBy)},${q(direction === 'outbound' ? '0451234000' : null)})`);
  };
  rec(1, 'inbound', '09011112222', '0451234100', '0451234100', 'answered', '1101', 185);
  rec(4, 'internal', '1002', '1201', null, 'answered', '1201', 62);
  rec(9, 'inbound', '0452223333', '0451234000', '0451234000', 'answered', '1003', 240);
  rec(12, 'outbound', '1101', '0451230110', null, 'answered', null, 95);
  rec(15, 'inbound', '08033334444', '0451234200', '0451234200', 'no-answer', null, 0, 60);
  rec(21, 'internal', '1301', '1001', null, 'busy', null, 0, 1);
  rec(25, 'inbound', '09055556666', '0451234100', '0451234100', 'answered', '1102', 320);
  rec(33, 'internal', '1102', '1105', null, 'cancelled', null, 0, 8);
  rec(41, 'inbound', '0459998888', '0451234119', '0451234119', 'answered', '1301', 410);
  rec(48, 'outbound', '1201', '0452100000', null, 'answered', null, 150);
  rec(55, 'internal', '1004', '1203', null, 'answered', '1203', 45);
  rec(62, 'inbound', '09077778888', '0451234000', '0451234000', 'answered', '1002', 130);
  fs.writeFileSync(path.join(work, 'calls.sql'), `INSERT INTO calls (id, direction, caller, callee, did, trunk, started_at, answered_at, ended_at, result, answered_by, caller_id_shown) VALUES\n${rows.join(',\n')};\n`);
  const r = spawnSync('sqlite3', [path.join(data, 'tsunagu.db')], { input: fs.readFileSync(path.join(work, 'calls.sql')), encoding: 'utf8' });
  if (r.status !== 0) problems.push(`sqlite3: ${r.stderr}`);
}

// ---- the screens ------------------------------------------------------------------
await go('dashboard', '[data-testid=stat-users]');
await page.locator('[data-testid=stat-registered-extensions] .stat-value', { hasText: /[1-9]/ }).waitFor();
await page.locator('[data-testid=events-state]').waitFor();
await shot('04-dashboard');

await go('users', '[data-testid=user-link-1303]');
await shot('05-users');

await go('users/1101', '[data-testid=fwd-form]');
await shot('06-user-forwarding', { full: true });

await go('users', '[data-testid=user-link-1303]');
const csv = path.join(work, 'import.csv');
fs.writeFileSync(
  csv,
  'extension,name,department,password\r\n' +
    '1106,井上 裕子,市民課,\r\n' +
    '11O7,木村 大樹,市民課,\r\n' +
    '1108,林 真由美,市民課,\r\n' +
    '1109,清水 健一,福祉課,\r\n' +
    '1110,山崎 結衣,市民課,\r\n',
);
await page.setInputFiles('#users-import-file', csv);
await page.click('#users-import-submit');
await page.locator('[data-testid=import-errors]').waitFor();
await page.evaluate(() => window.scrollTo(0, document.querySelector('[data-testid=users-import]').closest('section').offsetTop - 70));
await shot('07-users-import-errors');

await go('groups', '[data-testid=groups-table] tbody tr:nth-child(3)');
await shot('08-groups');
await go('dids', '[data-testid=did-edit-0451234000]');
await shot('09-dids');
await go('phonebook', '[data-testid=phonebook-count]');
await shot('10-phonebook');
await go('calls', '[data-testid=calls-table] tbody tr:nth-child(5)');
await shot('11-calls');
// A few changes, so the audit log shows before → after.
await api('PUT', '/api/v1/dids/0451234100', { dest: 'group:3000', label: '市民課 窓口直通' });
await api('PUT', '/api/v1/users/1105', { department: dept['税務課'] });
await api('PUT', '/api/v1/users/1102/forwarding', { no_answer: 'user:1103', no_answer_secs: 20 });
await page.goto(`${BASE}/#/calls`);
await go('audit', '[data-testid=audit-table] tbody tr:nth-child(5)');
await shot('12-audit');
await go('admins', '[data-testid=admin-edit-tanaka]');
await shot('13-admins');

// Business hours: the main number in office hours (平日 8:30–17:15, closed over
// the New Year), a night desk after hours; the main DID goes through them.
await api('PUT', '/api/v1/schedules/yakan', { label: '夜間窓口', hours: 'mon-fri 17:15-22:00; sat,sun 09:00-17:00', open: 'user:1301', closed: 'number:09011190119', holiday: 'user:1301', disaster: 'group:3900', closed_days: '', use_holidays: false });
await api('PUT', '/api/v1/schedules/main', { label: '代表番号', hours: 'mon-fri 08:30-17:15', open: 'group:3200', closed: 'schedule:yakan', holiday: null, disaster: 'group:3900', closed_days: '12-29..01-03', use_holidays: true });
await api('PUT', '/api/v1/dids/0451234000', { dest: 'schedule:main', label: '代表番号' });
await go('schedules', '[data-testid=schedule-now-yakan]');
// The list and the start of the form (with the hours help), under 150 KB.
await shot('17-schedules', { clip: { x: 0, y: 0, width: 1280, height: 720 } });

/** A new admin's first sign-in (TOTP enrolment, new password) in a context of its own; waits for `ready`. */
async function firstSignIn(name, oneTime, ready) {
  const c = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1, locale: 'ja-JP' });
  c.setDefaultTimeout(T);
  const p = await c.newPage();
  p.on('pageerror', (e) => problems.push(`page error (${name}): ${e.message}`));
  await p.goto(`${BASE}/`);
  await p.fill('#signin-name', name);
  await p.fill('#signin-password', oneTime);
  await p.click('#signin-submit');
  await p.locator('[data-testid=totp-secret]').waitFor();
  const s2 = (await p.textContent('[data-testid=totp-secret]')).trim();
  await p.fill('#enrol-code', totpAt(s2, Math.floor(Date.now() / 30_000)));
  await p.click('#enrol-submit');
  await p.click('#recovery-continue');
  await p.fill('#new-password', NEW_PASSWORD);
  await p.fill('#new-password-again', NEW_PASSWORD);
  await p.click('#new-password-submit');
  await p.locator(ready).first().waitFor();
  return [c, p];
}

// Announcements (two spoken with espeak-ng, one uploaded tone) and voice
// menus: the main number's menu with a sub-menu for the tax section.
{
  const say = [
    ['daihyo-annai', '代表番号のご案内', 'おでんわ ありがとう ございます。こちらは みなみ しやくしょ です。'],
    ['daihyo-menu', '代表番号のメニュー', 'じゅうみんひょう など まどぐちの ごあんないは 1を、ぜいきんの ごそうだんは 2を、ぼうさいかは 3を おしてください。'],
    ['zeimu-menu', '税務課のメニュー', 'しみんぜいは 1を、こていしさんぜいは 2を、まえの メニューに もどるには こめじるしを おしてください。'],
  ];
  for (const [name, label, text] of say) await api('PUT', `/api/v1/announcements/${name}`, { label, text, voice: 'ja' });
  const n = 8000; // 1 s of a soft two-tone chime, 8 kHz mono 16-bit PCM
  const wav = Buffer.alloc(44 + 2 * n);
  wav.write('RIFF', 0); wav.writeUInt32LE(36 + 2 * n, 4); wav.write('WAVEfmt ', 8); wav.writeUInt32LE(16, 16); wav.writeUInt16LE(1, 20); wav.writeUInt16LE(1, 22);
  wav.writeUInt32LE(8000, 24); wav.writeUInt32LE(16000, 28); wav.writeUInt16LE(2, 32); wav.writeUInt16LE(16, 34); wav.write('data', 36); wav.writeUInt32LE(2 * n, 40);
  for (let i = 0; i < n; i++) wav.writeInt16LE(Math.round(6000 * Math.sin((2 * Math.PI * (i < n / 2 ? 660 : 550) * i) / 8000)), 44 + 2 * i);
  const up = await page.evaluate(async ([bytes, csrf]) => {
    const r = await fetch('/api/v1/announcements/chime/audio?label=' + encodeURIComponent('窓口のチャイム'), { method: 'POST', headers: { 'Content-Type': 'audio/wav', 'X-CSRF-Token': csrf }, body: new Uint8Array(bytes) });
    return r.status;
  }, [[...wav], csrf]);
  if (up !== 200) problems.push(`uploading the chime answered ${up}`);
  await api('PUT', '/api/v1/ivr/zeimu', { label: '税務課', prompt: 'zeimu-menu', options: { 1: 'user:1201', 2: 'user:1202', '*': 'back' }, on_failure: 'back' });
  await api('PUT', '/api/v1/ivr/main', { label: '代表番号', greeting: 'daihyo-annai', prompt: 'daihyo-menu', options: { 1: 'group:3000', 2: 'ivr:zeimu', 3: 'group:3900', 0: 'group:3200' }, on_failure: 'group:3200', direct_dial: true, max_repeats: 2 });
  await api('PUT', '/api/v1/groups/3000', { name: '市民課 窓口', department: dept['市民課'], strategy: 'sequential', members: ['user:1101', 'user:1102', 'user:1103', 'user:1104'], member_timeout: 15, timeout: 60, overflow: 'user:1105', skip_busy: true, queue_announcement: 'please-wait', queue_announcement_secs: 30, moh: 'chime' });
  await api('PUT', '/api/v1/schedules/main', { label: '代表番号', hours: 'mon-fri 08:30-17:15', open: 'ivr:main', closed: 'schedule:yakan', holiday: null, disaster: 'group:3900', closed_days: '12-29..01-03', use_holidays: true });
}
await go('announcements', '[data-testid=announcement-source-chime]');
await shot('18-announcements', { clip: { x: 0, y: 0, width: 1280, height: 600 } });
await go('ivr', '[data-testid=ivr-edit-main]');
await page.click('[data-testid=ivr-edit-main]');
await page.locator('[data-testid=ivr-option-row]').nth(3).waitFor();
await page.evaluate(() => {
  document.activeElement?.blur();
  window.scrollTo(0, document.querySelector('[data-testid=ivr-form]').closest('section').offsetTop - 70);
});
await shot('19-ivr');

// Recordings: rows as the recorder writes them (the list only; no audio is
// needed for the picture), seen by the auditor, who may also download.
{
  // This morning from 9:30 Japan time (the list shows JST whatever the machine's zone).
  const jst = new Date(Date.now() + 9 * 3600_000);
  const t0 = Date.UTC(jst.getUTCFullYear(), jst.getUTCMonth(), jst.getUTCDate(), 0, 30);
  const q = (v) => `'${String(v).replace(/'/g, "''")}'`;
  const rows = [
    [1, '09011112222', '0451234100', 185, 'stored'],
    [9, '0452223333', '0451234000', 240, 'stored'],
    [25, '09055556666', '0451234100', 320, 'stored'],
    [41, '0459998888', '0451234119', 410, 'interrupted'],
    [62, '09077778888', '0451234000', 130, 'stored'],
    [70, '09012121212', '0451234100', 0, 'recording'],
  ].map(([min, caller, callee, secs, state]) => {
    const id = crypto.randomUUID().replace(/-/g, '');
    const bytes = secs * 16000 + 44;
    return `(${q(id)},${q(crypto.randomUUID())},'',${t0 + min * 60_000},${secs * 1000},${q(`recordings/${id}.wav`)},${q(state)},${state === 'recording' ? 0 : bytes},${q(state === 'recording' ? '' : crypto.createHash('sha256').update(id).digest('hex'))},${q(caller)},${q(callee)})`;
  });
  const sql = `INSERT INTO recordings (id, call_id, extension, started_at, duration_ms, object_key, state, bytes, sha256, caller, callee) VALUES\n${rows.join(',\n')};\n`;
  const r = spawnSync('sqlite3', [path.join(data, 'tsunagu.db')], { input: sql, encoding: 'utf8' });
  if (r.status !== 0) problems.push(`sqlite3 (recordings): ${r.stderr}`);
  const [c3, p3] = await firstSignIn('kansa', kansa, '[data-testid=recordings-table]');
  await p3.locator('[data-testid=recordings-table] tbody tr:nth-child(6)').waitFor();
  await p3.locator('[data-testid=recordings-access-table] tbody tr code, [data-testid=recordings-access-table] tbody td:not(.empty)').first().waitFor();
  await p3.evaluate(() => document.fonts.ready);
  await p3.screenshot({ path: path.join(OUT, '20-recordings.png'), caret: 'hide', clip: { x: 0, y: 0, width: 1280, height: 800 } });
  shots.push('20-recordings.png');
  await c3.close();
}

// An org admin with the devices right: the provisioning QR code (a new SIP password).
{
  const [c2, p2] = await firstSignIn('joho', joho, '[data-testid=stat-users]');
  await p2.goto(`${BASE}/#/users/1104`);
  await p2.locator('[data-testid=provisioning-qr-button]').waitFor();
  await p2.click('[data-testid=provisioning-qr-button]');
  await p2.locator('dialog[open]').waitFor();
  await p2.evaluate(() => document.fonts.ready);
  await p2.screenshot({ path: path.join(OUT, '15-provisioning-confirm.png'), caret: 'hide' });
  shots.push('15-provisioning-confirm.png');
  await p2.click('[data-testid=confirm-ok]');
  await p2.locator('[data-testid=provisioning-qr] svg').waitFor();
  await p2.evaluate(() => window.scrollTo(0, document.querySelector('[data-testid=provisioning-box]').closest('section').offsetTop - 70));
  await p2.screenshot({ path: path.join(OUT, '16-provisioning-qr.png'), caret: 'hide' });
  shots.push('16-provisioning-qr.png');
  await c2.close();
}

// 768 px: the menu button opens the navigation.
await page.setViewportSize({ width: 768, height: 1024 });
await go('users', '[data-testid=user-link-1303]');
await page.click('#menu-toggle');
await page.locator('[data-testid=nav-users]').waitFor();
await shot('14-tablet-menu');

await browser.close();
stopServer();
console.log(shots.join('\n'));
console.log(`written to ${OUT}; server files in ${work}`);
if (problems.length) {
  console.log(`problems:\n${problems.join('\n')}`);
  process.exit(1);
}
