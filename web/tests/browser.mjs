#!/usr/bin/env node
// The admin web app in headless Chromium against a real server
// (driven by tests/e2e_web.rs, which starts the server and the first admin).
//
//   TSUNAGU_URL            http://127.0.0.1:PORT (the server's HTTP address)
//   TSUNAGU_ADMIN          the first admin's name (role system)
//   TSUNAGU_OTP            its one-time password (from `tsunagu admin add`)
//   TSUNAGU_SIP            the server's SIP address, 127.0.0.1:PORT
//   TSUNAGU_SIPP_SCENARIO  tests/sipp/register_auth.xml
//   TSUNAGU_WORK           a directory for files (CSV, SIPp logs, downloads)
//   CHROMIUM               optional, default /usr/bin/chromium
//
// The server needs espeak-ng for step i (an announcement made from text).
//
// Every step waits for an element or a response with a bounded timeout;
// nothing sleeps for a fixed time. Exit code 0: every step passed.

import { chromium } from 'playwright-core';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (see the top of web/tests/browser.mjs)`);
  return v;
};
const URL = env('TSUNAGU_URL').replace(/\/$/, '');
const ADMIN = env('TSUNAGU_ADMIN');
const OTP = env('TSUNAGU_OTP');
const SIP = env('TSUNAGU_SIP');
const SCENARIO = env('TSUNAGU_SIPP_SCENARIO');
const WORK = env('TSUNAGU_WORK');
const NEW_PASSWORD = 'browser-test-password-1';
/** Longest wait for one element or answer. */
const STEP_MS = 15_000;

fs.mkdirSync(WORK, { recursive: true });
const started = Date.now();
const log = (m) => console.log(`[browser ${((Date.now() - started) / 1000).toFixed(1)}s] ${m}`);

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

// ---- TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps) -----------------------

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, '').replace(/\s+/g, '').toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`not base32: ${c}`);
    value = (value << 5) | i;
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
  const n = (mac.readUInt32BE(off) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, '0');
}

const totp = { secret: '', lastStep: 0 };

/** A code not used before: this step's, or the next one's (the server takes ±1 step). */
async function nextCode() {
  const deadline = Date.now() + 35_000;
  for (;;) {
    const now = Math.floor(Date.now() / 30_000);
    const step = Math.max(now, totp.lastStep + 1);
    if (step <= now + 1) {
      totp.lastStep = step;
      return totpAt(totp.secret, step);
    }
    // Both codes the server takes now were used: the next step starts within 30 s.
    assert(Date.now() < deadline, 'no unused TOTP code within 35 s');
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// ---- helpers --------------------------------------------------------------

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const problems = [];
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'ja-JP', acceptDownloads: true });
context.setDefaultTimeout(STEP_MS);
const page = await context.newPage();
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

async function visible(sel) {
  await page.locator(sel).first().waitFor({ state: 'visible', timeout: STEP_MS });
}

async function text(sel) {
  return (await page.locator(sel).first().textContent({ timeout: STEP_MS })) ?? '';
}

/** The text of a shown error, if one is shown. */
async function shownError() {
  const alerts = page.locator('[role=alert]:not([hidden])');
  return (await alerts.count()) ? (await alerts.allTextContents()).join(' | ') : '';
}

/** Click and wait for the API answer of `method path` (path a prefix). */
async function clickFor(sel, method, pathPrefix) {
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === method && new globalThis.URL(r.url()).pathname.startsWith(pathPrefix), { timeout: STEP_MS }),
    page.click(sel),
  ]);
  return res;
}

/** A response's body for a message (Chromium may have dropped it from its cache already). */
async function bodyOf(res) {
  return res.text().catch(() => '');
}

async function navTo(screen) {
  await page.click(`[data-testid=nav-${screen}]`);
  await page.waitForFunction((s) => location.hash === `#/${s}`, screen, { timeout: STEP_MS });
}

function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.on('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function main() {
  // ---- a. sign in: one-time password, TOTP enrolment, new password ----------

  async function passwordStep(password) {
    await page.goto(`${URL}/`);
    await visible('#signin-name');
    await page.fill('#signin-name', ADMIN);
    await page.fill('#signin-password', password);
    const res = await clickFor('#signin-submit', 'POST', '/api/v1/session');
    assert(res.status() === 200, `sign-in answered ${res.status()}: ${await res.text()}`);
    return (await res.json()).state;
  }

  log('a. sign-in with the one-time password');
  assert((await passwordStep(OTP)) === 'enrol', 'a one-time password leads to TOTP enrolment');
  await visible('[data-testid=totp-qr] svg');
  totp.secret = (await text('[data-testid=totp-secret]')).trim();
  assert(/^[A-Z2-7]{16,}$/.test(totp.secret), `the page shows the TOTP secret: ${totp.secret}`);
  await page.fill('#enrol-code', await nextCode());
  let res = await clickFor('#enrol-submit', 'POST', '/api/v1/me/totp/confirm');
  assert(res.status() === 200, `enrolment answered ${res.status()}: ${await res.text()}`);
  await visible('[data-testid=recovery-codes]');
  const recovery = await page.locator('[data-testid=recovery-codes] li').allTextContents();
  assert(recovery.length === 10, `ten recovery codes shown, got ${recovery.length}`);
  await page.click('#recovery-continue');
  // The one-time password is replaced next (it was typed already).
  await visible('#new-password');
  await page.fill('#new-password', NEW_PASSWORD);
  await page.fill('#new-password-again', NEW_PASSWORD);
  res = await clickFor('#new-password-submit', 'POST', '/api/v1/me/password');
  assert(res.status() === 200, `new password answered ${res.status()}: ${await res.text()}`);
  await visible('[data-testid=stat-users]');
  assert((await text('[data-testid=who]')).includes(ADMIN), 'the header names the admin');
  log('a. signed in (enrolled TOTP, chose a new password): dashboard shown');

  log('a. sign out, then sign in with password + TOTP');
  res = await clickFor('#signout', 'DELETE', '/api/v1/session');
  assert(res.status() === 204, `sign-out answered ${res.status()}`);
  await visible('#signin-name');
  assert((await passwordStep(NEW_PASSWORD)) === 'mfa', 'the second sign-in asks for a TOTP code');
  await visible('#totp-code');
  // A wrong code is refused with a message.
  await page.fill('#totp-code', '000000');
  res = await clickFor('#totp-submit', 'POST', '/api/v1/session/totp');
  assert(res.status() === 401, `a wrong code is refused (got ${res.status()})`);
  await visible('[data-testid=totp-error]:not([hidden])');
  await page.fill('#totp-code', await nextCode());
  res = await clickFor('#totp-submit', 'POST', '/api/v1/session/totp');
  assert(res.status() === 200, `the TOTP code answered ${res.status()}: ${await res.text()}`);
  await visible('[data-testid=stat-users]');
  log('a. signed in with TOTP');

  // ---- b. a department, then a user through the form; SIPp registers it -----

  log('b. add a department and a user through the UI');
  await navTo('departments');
  await visible('#dept-name');
  await page.fill('#dept-name', '市民課');
  res = await clickFor('#dept-submit', 'POST', '/api/v1/departments');
  assert(res.status() === 201, `department answered ${res.status()}: ${await res.text()}`);
  await page.locator('[data-testid=departments-table]', { hasText: '市民課' }).waitFor({ timeout: STEP_MS });

  const EXT = '3001';
  const SIP_PASSWORD = 'web-sip-pass-3001';
  await navTo('users');
  await visible('#user-extension');
  // The department list is loaded after the screen: wait for the option.
  await page.locator('#user-department option', { hasText: '市民課' }).waitFor({ state: 'attached', timeout: STEP_MS });
  await page.fill('#user-extension', EXT);
  await page.fill('#user-name', '山田 太郎');
  await page.selectOption('#user-department', { label: '市民課' });
  await page.fill('#user-password', SIP_PASSWORD);
  res = await clickFor('#user-submit', 'POST', '/api/v1/users');
  assert(res.status() === 201, `adding the user answered ${res.status()}: ${await res.text()} ${await shownError()}`);
  await visible('[data-testid=user-add-result]');
  await page.locator(`[data-testid=user-link-${EXT}]`).waitFor({ timeout: STEP_MS });
  const addedAt = Date.now();

  log('b. register the new extension with SIPp');
  const inf = path.join(WORK, 'users.csv');
  for (const p of [SIP_PASSWORD]) assert(!/[ ;\]]/.test(p), 'the SIP password suits a SIPp injection file');
  fs.writeFileSync(inf, `SEQUENTIAL\n${EXT};${SIP_PASSWORD};[authentication username=${EXT} password=${SIP_PASSWORD}];\n`);
  // The running registrar picks up a new user within its 250 ms poll; a
  // REGISTER sent before that is refused, so up to three tries, 1 s apart at most.
  let sipp;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const local = await freeUdpPort();
    sipp = spawnSync(
      'sipp',
      [SIP, '-sf', SCENARIO, '-inf', inf, '-t', 'u1', '-i', '127.0.0.1', '-p', String(local), '-m', '1', '-r', '1',
        '-timeout', '20s', '-timeout_error', '-nostdin', '-max_retrans', '7', '-trace_err', '-error_file', path.join(WORK, `sipp-errors-${attempt}.log`)],
      { cwd: WORK, timeout: 30_000, encoding: 'utf8' },
    );
    log(`b. SIPp attempt ${attempt}: exit ${sipp.status} ${sipp.error ? sipp.error.message : ''} (${Date.now() - addedAt} ms after the UI added the user)`);
    if (sipp.status === 0 || sipp.error) break;
    if (Date.now() - addedAt > 5000) break;
  }
  assert(!sipp.error, `SIPp could not run: ${sipp.error}`);
  assert(sipp.status === 0, `SIPp registered ${EXT} (exit ${sipp.status}):\n${sipp.stdout}\n${sipp.stderr}`);
  // The user's page says it is registered.
  await page.click(`[data-testid=user-link-${EXT}]`);
  await visible('[data-testid=fwd-form]');
  await page.locator('.page-head .badge.good').waitFor({ timeout: STEP_MS });
  log('b. SIPp registered the extension made in the UI');

  // ---- c. a users CSV with two bad rows: dry run names rows 3 and 5 --------

  log('c. CSV import with bad rows 3 and 5');
  await navTo('users');
  await visible('#users-import-file');
  const csv = path.join(WORK, 'bad-users.csv');
  fs.writeFileSync(
    csv,
    '\ufeffextension,name,department,password\r\n' +
      '3101,佐藤 花子,市民課,\r\n' +
      '31x2,鈴木 一郎,市民課,\r\n' +
      '3103,高橋 次郎,市民課,\r\n' +
      '3104,田中 三郎,存在しない課,\r\n',
  );
  await page.setInputFiles('#users-import-file', csv);
  assert(await page.isChecked('#users-import-dry-run'), 'the dry run is checked by default');
  res = await clickFor('#users-import-submit', 'POST', '/api/v1/users/import');
  assert(res.status() === 422, `the dry run answered ${res.status()}`);
  assert(new globalThis.URL(res.url()).searchParams.get('dry_run') === 'true', `a dry run was asked for: ${res.url()}`);
  await visible('[data-testid=import-errors]');
  const rows = await page.$$eval('[data-testid=import-errors] tbody tr', (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())),
  );
  assert(rows.length === 2, `two bad rows shown: ${JSON.stringify(rows)}`);
  assert(rows[0][0] === '3' && rows[1][0] === '5', `rows 3 and 5: ${JSON.stringify(rows)}`);
  assert(/31x2/.test(rows[0][1]) && /2〜16桁/.test(rows[0][1]), `row 3 names the bad extension (in Japanese): ${rows[0][1]}`);
  assert(/存在しない課/.test(rows[1][1]), `row 5 names the unknown department: ${rows[1][1]}`);
  // The same file for real: still nothing imported (all or nothing).
  await page.uncheck('#users-import-dry-run');
  res = await clickFor('#users-import-submit', 'POST', '/api/v1/users/import');
  assert(res.status() === 422, `the real import of a bad file answered ${res.status()}`);
  await visible('[data-testid=import-errors]');
  await page.reload();
  await page.locator(`[data-testid=user-link-${EXT}]`).waitFor({ timeout: STEP_MS });
  const exts = await page.$$eval('[data-testid=users-table] tbody a[data-testid^=user-link-]', (as) => as.map((a) => a.textContent));
  assert(JSON.stringify(exts) === JSON.stringify([EXT]), `nothing was imported: the list is ${JSON.stringify(exts)}`);
  log('c. rows 3 and 5 named, nothing imported');

  // ---- d. call logs as CSV ---------------------------------------------------

  log('d. export call logs');
  await navTo('calls');
  await visible('[data-testid=calls-export]');
  await page.locator('[data-testid=calls-table]').waitFor({ timeout: STEP_MS });
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: STEP_MS }), page.click('[data-testid=calls-export]')]);
  const saved = path.join(WORK, 'calls.csv');
  await download.saveAs(saved);
  const bytes = fs.readFileSync(saved);
  assert(bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf, 'the CSV starts with a UTF-8 byte-order mark');
  const header = bytes.subarray(3).toString('utf8').split(/\r?\n/)[0];
  assert(header.startsWith('id,direction,caller,callee'), `the CSV header: ${header}`);
  assert(/\.csv$/.test(download.suggestedFilename()), `a .csv file name: ${download.suggestedFilename()}`);
  log(`d. downloaded ${download.suggestedFilename()}: ${header}`);

  // ---- e. English and back ----------------------------------------------------

  log('e. language switch');
  assert((await page.getAttribute('html', 'lang')) === 'ja', 'Japanese first');
  assert((await text('[data-testid=nav-users]')).trim() === '内線・利用者', `the Japanese nav label: ${await text('[data-testid=nav-users]')}`);
  await page.click('#lang-switch');
  await page.waitForFunction(() => document.documentElement.lang === 'en', null, { timeout: STEP_MS });
  await page.locator('[data-testid=nav-users]', { hasText: 'Extensions' }).waitFor({ timeout: STEP_MS });
  assert((await text('[data-testid=nav-calls]')).trim() === 'Call logs', `the English nav label: ${await text('[data-testid=nav-calls]')}`);
  await page.click('#lang-switch');
  await page.waitForFunction(() => document.documentElement.lang === 'ja', null, { timeout: STEP_MS });
  await page.locator('[data-testid=nav-users]', { hasText: '内線・利用者' }).waitFor({ timeout: STEP_MS });
  log('e. English and back to Japanese');

  // ---- f. 768 px: the menu button opens the nav; Tab reaches a form field ----

  log('f. 768 px wide');
  await page.setViewportSize({ width: 768, height: 1024 });
  await visible('#menu-toggle');
  assert(!(await page.locator('[data-testid=nav-users]').isVisible()), 'the nav is folded away at 768 px');
  await page.click('#menu-toggle');
  await visible('[data-testid=nav-users]');
  assert((await page.getAttribute('#menu-toggle', 'aria-expanded')) === 'true', 'the menu button says it is open');
  await navTo('users');
  await visible('#users-search');
  // From the page heading, Tab forward until a form field has the focus.
  await page.focus('#main');
  let focused = null;
  for (let i = 0; i < 40 && !focused; i++) {
    await page.keyboard.press('Tab');
    focused = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || !['INPUT', 'SELECT', 'TEXTAREA'].includes(el.tagName)) return null;
      const r = el.getBoundingClientRect();
      return { id: el.id, left: r.left, right: r.right, width: r.width };
    });
  }
  assert(focused, 'Tab reaches a form field');
  assert(focused.width > 0 && focused.left >= 0 && focused.right <= 768, `the focused field ${focused.id} is within the 768 px page: ${JSON.stringify(focused)}`);
  log(`f. the menu opens the nav; Tab focused #${focused.id}`);

  // ---- g. business hours: a schedule in the form, its "now" column; disaster mode ----

  log('g. add business hours in the form');
  await page.setViewportSize({ width: 1280, height: 900 });
  await navTo('schedules');
  await visible('#schedule-name');
  await page.fill('#schedule-name', 'main');
  await page.fill('#schedule-label', '代表番号');
  await page.fill('#schedule-hours', 'mon-fri 08:30-17:15');
  await page.selectOption('#schedule-open-kind', 'user');
  await page.fill('#schedule-open-number', EXT);
  await page.selectOption('#schedule-closed-kind', 'number');
  await page.fill('#schedule-closed-number', '0312345678');
  await page.selectOption('#schedule-disaster-kind', 'user');
  await page.fill('#schedule-disaster-number', EXT);
  await page.fill('#schedule-closed-days', '12-29..01-03');
  res = await clickFor('#schedule-submit', 'PUT', '/api/v1/schedules/main');
  assert(res.status() === 200, `saving the schedule answered ${res.status()}: ${await res.text()} ${await shownError()}`);
  const sched = await res.json();
  const whyJa = (w) => (w === 'open' ? '開庁時間内' : w === 'closed' ? '時間外' : w === 'closed_day' ? '休業日' : w.startsWith('holiday:') ? `祝日（${w.slice(8)}）` : w);
  const destJa = (d) => d.replace(/^user:/, '内線 ').replace(/^number:/, '外線番号 ');
  const expectNow = `${whyJa(sched.now.why)} → ${destJa(sched.now.to)}`;
  await page.locator('[data-testid=schedule-now-main]', { hasText: expectNow }).waitFor({ timeout: STEP_MS });
  assert((await text('[data-testid=schedules-table]')).includes('代表番号'), 'the list shows the label');
  log(`g. listed; now: ${expectNow}`);

  log('g. a DID goes to the schedule (the picker\'s 営業時間 kind)');
  await navTo('dids');
  await visible('#did-number');
  await page.fill('#did-number', '0312340000');
  await page.selectOption('#did-dest-kind', 'schedule');
  await page.fill('#did-dest-number', 'main');
  res = await clickFor('#did-submit', 'PUT', '/api/v1/dids/0312340000');
  assert(res.status() === 200 || res.status() === 201, `the DID answered ${res.status()}: ${await res.text()} ${await shownError()}`);
  await page.locator('[data-testid=dids-table] tr', { hasText: '0312340000' }).filter({ hasText: '営業時間 main' }).waitFor({ timeout: STEP_MS });

  log('g. disaster mode on: the banner here and, by the live feed, in a second tab');
  const other = await context.newPage();
  other.on('pageerror', (e) => problems.push(`page error (second tab): ${e.message}`));
  await other.goto(`${URL}/#/users`);
  await other.locator('[data-testid=users-table]').waitFor({ timeout: STEP_MS });
  assert((await other.locator('[data-testid=disaster-banner]').count()) === 0, 'no banner while disaster mode is off');
  // The first tab acts; a tab in the background would wait for throttled animation frames.
  await page.bringToFront();
  await navTo('dashboard');
  await visible('#disaster-toggle');
  assert((await page.getAttribute('#disaster-toggle', 'role')) === 'switch', 'the toggle is a switch');
  assert((await page.getAttribute('#disaster-toggle', 'aria-checked')) === 'false', 'disaster mode starts off');
  // The second tab hears the change on its live feed (or re-reads the state when the feed connects).
  await page.click('#disaster-toggle');
  await visible('[data-testid=confirm-dialog]');
  res = await clickFor('[data-testid=confirm-ok]', 'PUT', '/api/v1/disaster');
  assert(res.status() === 200, `turning disaster mode on answered ${res.status()}: ${await res.text()}`);
  await visible('[data-testid=disaster-banner]');
  await page.waitForFunction(() => document.querySelector('#disaster-toggle')?.getAttribute('aria-checked') === 'true', null, { timeout: STEP_MS });
  await other.locator('[data-testid=disaster-banner]').waitFor({ state: 'visible', timeout: STEP_MS });
  await navTo('schedules');
  await page.locator('[data-testid=schedule-now-main]', { hasText: `災害モード → 内線 ${EXT}` }).waitFor({ timeout: STEP_MS });
  assert(await page.locator('[data-testid=disaster-banner]').isVisible(), 'the banner stays on every screen');
  log('g. disaster mode on: banner shown in both tabs; the schedule routes to its disaster destination');

  log('g. disaster mode off');
  await navTo('dashboard');
  await page.click('#disaster-toggle');
  await visible('[data-testid=confirm-dialog]');
  res = await clickFor('[data-testid=confirm-ok]', 'PUT', '/api/v1/disaster');
  assert(res.status() === 200, `turning disaster mode off answered ${res.status()}: ${await res.text()}`);
  await page.locator('[data-testid=disaster-banner]').waitFor({ state: 'detached', timeout: STEP_MS });
  await other.locator('[data-testid=disaster-banner]').waitFor({ state: 'detached', timeout: STEP_MS });
  await other.close();
  log('g. disaster mode off: the banner is gone');

  // ---- h. an API token made in the UI works from Node, then is revoked -------

  log('h. API token: create one on the own page');
  const bearer = (token) =>
    fetch(`${URL}/api/v1/dashboard`, { headers: { Authorization: `Bearer ${token}` }, credentials: 'omit', signal: AbortSignal.timeout(STEP_MS) });
  await page.click('[data-testid=me-link]');
  await page.waitForFunction(() => location.hash === '#/password', null, { timeout: STEP_MS });
  await visible('#token-label');
  await page.locator('[data-testid=tokens-table]').waitFor({ timeout: STEP_MS });
  assert((await page.inputValue('#token-days')) === '90', 'the validity defaults to 90 days');
  await page.fill('#token-label', 'browser-test script');
  res = await clickFor('#token-submit', 'POST', '/api/v1/me/tokens');
  assert(res.status() === 201, `creating the token answered ${res.status()}: ${await res.text()} ${await shownError()}`);
  const made = await res.json();
  await visible('[data-testid=token-value]');
  const token = (await text('[data-testid=token-value]')).trim();
  assert(/^tsu_[0-9a-f]+$/.test(token) && token === made.token, `the page shows the new token: ${token}`);
  assert((await text('[data-testid=token-new]')).includes('二度と表示されません'), 'the page warns the token is shown once');
  await page.locator(`[data-testid=token-used-${made.id}]`, { hasText: 'まだ使われていません' }).waitFor({ timeout: STEP_MS });
  let api = await bearer(token);
  const dashText = await api.text();
  assert(api.status === 200, `the dashboard with the token answered ${api.status}: ${dashText}`);
  const dash = JSON.parse(dashText);
  assert(typeof dash.users === 'number', `the dashboard answer: ${JSON.stringify(dash)}`);

  log('h. API token: revoke it in the UI');
  await page.click(`[data-testid=token-revoke-${made.id}]`);
  await visible('[data-testid=confirm-dialog]');
  res = await clickFor('[data-testid=confirm-ok]', 'DELETE', `/api/v1/me/tokens/${made.id}`);
  assert(res.status() === 204, `revoking the token answered ${res.status()}: ${await res.text()}`);
  await page.locator(`[data-testid=token-revoke-${made.id}]`).waitFor({ state: 'detached', timeout: STEP_MS });
  assert((await page.locator('[data-testid=token-value]').count()) === 0, 'the revoked token is no longer shown');
  api = await bearer(token);
  assert(api.status === 401, `the revoked token is refused (got ${api.status})`);
  log(`h. API token ${made.id}: 200 with the token, 401 after revoking it in the UI`);

  // ---- i. announcements (speech synthesis and an upload), a voice menu, a loop refused ----

  log('i. announcements: make one from text (speech synthesis) in the form');
  assert((await page.locator('[data-testid=nav-recordings]').count()) === 0, 'a system admin without the recordings right sees no Recordings in the menu');
  await navTo('announcements');
  await visible('#ann-tts-name');
  assert((await page.inputValue('#ann-tts-voice')) === 'ja', 'the voice defaults to ja');
  await page.locator('[data-testid=announcements-table] code', { hasText: 'recording-notice' }).waitFor({ timeout: STEP_MS });
  await page.fill('#ann-tts-name', 'annai');
  await page.fill('#ann-tts-label', '代表番号のご案内');
  await page.fill('#ann-tts-text', 'おでんわ ありがとう ございます。');
  res = await clickFor('#ann-tts-submit', 'PUT', '/api/v1/announcements/annai');
  assert(res.status() === 200, `speaking the announcement answered ${res.status()}: ${await bodyOf(res)} ${await shownError()}`);
  await page.locator('[data-testid=announcement-source-annai]', { hasText: '音声合成' }).waitFor({ timeout: STEP_MS });
  await visible('[data-testid=announcement-tts-result]');

  log('i. announcements: upload a WAV file');
  const wav = path.join(WORK, 'tone.wav');
  {
    // 0.4 s of a 440 Hz tone, 8 kHz mono 16-bit PCM.
    const n = 3200;
    const b = Buffer.alloc(44 + 2 * n);
    b.write('RIFF', 0);
    b.writeUInt32LE(36 + 2 * n, 4);
    b.write('WAVEfmt ', 8);
    b.writeUInt32LE(16, 16);
    b.writeUInt16LE(1, 20);
    b.writeUInt16LE(1, 22);
    b.writeUInt32LE(8000, 24);
    b.writeUInt32LE(16000, 28);
    b.writeUInt16LE(2, 32);
    b.writeUInt16LE(16, 34);
    b.write('data', 36);
    b.writeUInt32LE(2 * n, 40);
    for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 8000)), 44 + 2 * i);
    fs.writeFileSync(wav, b);
  }
  await page.fill('#ann-upload-name', 'tone');
  await page.fill('#ann-upload-label', '試験音');
  await page.setInputFiles('#ann-upload-file', wav);
  res = await clickFor('#ann-upload-submit', 'POST', '/api/v1/announcements/tone/audio');
  assert(res.status() === 200, `uploading the WAV answered ${res.status()}: ${await bodyOf(res)} ${await shownError()}`);
  await page.locator('[data-testid=announcement-source-tone]', { hasText: 'アップロード' }).waitFor({ timeout: STEP_MS });
  // The row's player loads the audio with the session cookie.
  const played = await page.$eval('[data-testid=announcement-audio-annai]', (a) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ error: 'no metadata within 10 s' }), 10_000);
      a.addEventListener('loadedmetadata', () => { clearTimeout(timer); resolve({ duration: a.duration }); }, { once: true });
      a.addEventListener('error', () => { clearTimeout(timer); resolve({ error: `media error ${a.error?.code}` }); }, { once: true });
      a.preload = 'metadata';
      a.load();
    }),
  );
  assert(played.duration > 0.3, `the spoken announcement plays in the page: ${JSON.stringify(played)}`);
  log(`i. announcements annai (speech, ${played.duration.toFixed(1)} s in the player) and tone (upload) listed`);

  log('i. a voice menu pointing at the announcement, with one option');
  await navTo('ivr');
  await visible('#ivr-name');
  await page.locator('#ivr-prompt option[value=annai]').waitFor({ state: 'attached', timeout: STEP_MS });
  await page.fill('#ivr-name', 'daihyo');
  await page.fill('#ivr-label', '代表番号の音声メニュー');
  await page.selectOption('#ivr-prompt', 'annai');
  await page.selectOption('#ivr-greeting', 'tone');
  assert((await page.locator('[data-testid=ivr-option-row]').count()) === 1, 'a new menu starts with one option row');
  assert((await page.inputValue('#ivr-opt-key-0')) === '1', 'the first option is key 1');
  await page.selectOption('#ivr-opt-0-kind', 'user');
  await page.fill('#ivr-opt-0-value', EXT);
  res = await clickFor('#ivr-submit', 'PUT', '/api/v1/ivr/daihyo');
  assert(res.status() === 200, `saving the menu answered ${res.status()}: ${await bodyOf(res)} ${await shownError()}`);
  const menu = await page.evaluate(async () => (await fetch('/api/v1/ivr/daihyo')).json());
  assert(menu.prompt === 'annai' && menu.options['1'] === `user:${EXT}`, `the menu as saved: ${JSON.stringify(menu)}`);
  await page.locator('[data-testid=ivr-options-daihyo]', { hasText: `1 → 内線 ${EXT}` }).waitFor({ timeout: STEP_MS });

  log('i. a loop (an option entering the menu itself) is refused and named');
  await page.click('[data-testid=ivr-edit-daihyo]');
  await page.locator('[data-testid=ivr-option-row]').first().waitFor({ timeout: STEP_MS });
  assert((await page.inputValue('#ivr-name')) === 'daihyo', 'the editor shows the menu');
  await page.click('#ivr-add-option');
  assert((await page.locator('[data-testid=ivr-option-row]').count()) === 2, 'a second option row was added');
  assert((await page.inputValue('#ivr-opt-key-1')) === '2', 'the added option takes the next free key');
  await page.selectOption('#ivr-opt-1-kind', 'ivr');
  await page.fill('#ivr-opt-1-value', 'daihyo');
  res = await clickFor('#ivr-submit', 'PUT', '/api/v1/ivr/daihyo');
  assert(res.status() === 422, `the loop answered ${res.status()}: ${await bodyOf(res)}`);
  const loopBody = await bodyOf(res);
  assert(!loopBody || JSON.parse(loopBody).code === 'loop', `the answer has code "loop": ${loopBody}`);
  await visible('[data-testid=ivr-loop]');
  const loopText = await text('[data-testid=ivr-error]');
  assert(loopText.includes('循環') && (await text('[data-testid=ivr-loop-chain]')).includes('daihyo → daihyo'), `the error names the loop: ${loopText}`);
  // Nothing was saved: the list still shows one option.
  const stored = await page.evaluate(async () => (await (await fetch('/api/v1/ivr/daihyo')).json()).options);
  assert(JSON.stringify(stored) === JSON.stringify({ 1: `user:${EXT}` }), `the stored menu is unchanged: ${JSON.stringify(stored)}`);
  log(`i. the loop was refused: ${loopText.trim()}`);

  log('i. the DID goes to the voice menu, with the uploaded tone as hold music');
  await navTo('dids');
  await page.click('[data-testid=did-edit-0312340000]');
  await page.locator('#did-moh option[value=tone]').waitFor({ state: 'attached', timeout: STEP_MS });
  await page.selectOption('#did-dest-kind', 'ivr');
  await page.fill('#did-dest-number', 'daihyo');
  await page.selectOption('#did-moh', 'tone');
  res = await clickFor('#did-submit', 'PUT', '/api/v1/dids/0312340000');
  assert(res.status() === 200, `the DID answered ${res.status()}: ${await bodyOf(res)} ${await shownError()}`);
  const dids = await page.evaluate(async () => (await fetch('/api/v1/dids')).json());
  assert(dids.find((d) => d.number === '0312340000')?.moh === 'tone', `the DID keeps its hold music: ${JSON.stringify(dids)}`);
  await page.locator('[data-testid=dids-table] tr', { hasText: '0312340000' }).filter({ hasText: '音声メニュー daihyo' }).waitFor({ timeout: STEP_MS });
  await navTo('announcements');
  await page.locator('[data-testid=announcements-table] tr', { hasText: 'tone' }).filter({ hasText: 'ダイヤルイン 0312340000（保留音）' }).waitFor({ timeout: STEP_MS });
  log('i. announcement, voice menu and loop checked; the DID routes to the menu');
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.log(`FAILED: ${e.stack || e}`);
  const shot = path.join(WORK, 'failure.png');
  await page.screenshot({ path: shot, fullPage: true }).then(() => console.log(`screenshot: ${shot}`), () => {});
  console.log(`page: ${page.url()}`);
}
await browser.close();
if (problems.length) console.log(`problems:\n${problems.join('\n')}`);
if (failed || problems.length) process.exit(1);
log('all browser steps passed');
