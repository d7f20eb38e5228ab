#!/usr/bin/env node
// Click through the app against dev/mock-server.mjs and take screenshots.
//   node dev/mock-server.mjs & node dev/screenshots.mjs [outdir] [base]
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const OUT = process.argv[2] || '/tmp/tsunagu-shots';
const BASE = process.argv[3] || 'http://127.0.0.1:8089';
fs.mkdirSync(OUT, { recursive: true });

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const problems = [];

async function newPage(width = 1280, height = 900) {
  const ctx = await browser.newContext({ viewport: { width, height }, locale: 'ja-JP' });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && !/401|403|404|409|422/.test(m.text()) && problems.push(`console: ${m.text()}`));
  return page;
}
const shot = (page, name, full = true) => page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: full });

async function signIn(page, name = 'admin') {
  await page.goto(`${BASE}/`);
  await page.fill('#signin-name', name);
  await page.fill('#signin-password', 'password');
  await page.click('#signin-submit');
  if (name === 'admin') {
    await page.waitForSelector('#totp-code');
    await page.fill('#totp-code', '123456');
    await page.click('#totp-submit');
  }
  await page.waitForSelector('#signout');
}

// ---- desktop, Japanese
let page = await newPage();
await page.goto(`${BASE}/`);
await page.waitForSelector('#signin-name');
await shot(page, '01-signin-ja');
await page.fill('#signin-name', 'admin');
await page.fill('#signin-password', 'wrong');
await page.click('#signin-submit');
await page.waitForSelector('[role=alert]:not([hidden])');
await shot(page, '02-signin-error-ja');
await page.fill('#signin-password', 'password');
await page.click('#signin-submit');
await page.waitForSelector('#totp-code');
await shot(page, '03-mfa-ja');
await page.fill('#totp-code', '123456');
await page.click('#totp-submit');
await page.waitForSelector('[data-testid=stat-users]');
await page.waitForTimeout(5500);
await shot(page, '04-dashboard-ja');

for (const s of ['users', 'departments', 'groups', 'dids', 'trunks', 'settings', 'phonebook', 'calls', 'audit', 'admins', 'recordings']) {
  await page.click(`[data-testid=nav-${s}]`);
  await page.waitForTimeout(400);
  await shot(page, `10-${s}-ja`);
}

// users: add, import errors, detail
await page.click('[data-testid=nav-users]');
await page.fill('#user-extension', '1010');
await page.fill('#user-name', '新規 職員');
await page.selectOption('#user-department', '2');
await page.click('[data-testid=user-submit]');
await page.waitForSelector('[data-testid=sip-password]');
const csvFile = path.join(os.tmpdir(), 'bad-users.csv');
fs.writeFileSync(csvFile, 'extension,name,department\n1201,良い 行,市民課\nabc,悪い 行,市民課\n1001,重複,市民課\n1202,,税務課\n');
await page.setInputFiles('#users-import-file', csvFile);
await page.click('#users-import-submit');
await page.waitForSelector('[data-testid=import-errors]');
await shot(page, '20-users-add-import-errors-ja');
const rows = await page.$$eval('[data-testid=import-errors] tbody tr', (trs) => trs.map((tr) => tr.firstElementChild.textContent));
if (rows.join(',') !== '3,4,5') problems.push(`import-errors rows: ${rows}`);
fs.writeFileSync(csvFile, 'extension,name,department\n1201,良い 行,市民課\n1202,もう一人,税務課\n');
await page.setInputFiles('#users-import-file', csvFile);
await page.click('#users-import-submit');
await page.waitForSelector('[data-testid=users-import-count]');
await page.uncheck('#users-import-dry-run');
await page.click('#users-import-submit');
await page.waitForSelector('[data-testid=import-generated]');
await shot(page, '21-users-imported-ja');

await page.goto(`${BASE}/#/users/1003`);
await page.waitForSelector('[data-testid=fwd-form]');
await page.click('[data-testid=provisioning-qr-button]');
await page.click('[data-testid=confirm-ok]');
await page.waitForSelector('[data-testid=provisioning-qr] svg');
await shot(page, '22-user-detail-ja');
await page.click('[data-testid=user-delete]');
await page.waitForSelector('dialog[open]');
await shot(page, '23-confirm-ja', false);
await page.click('[data-testid=confirm-cancel]');

// calls export link follows the filters
await page.click('[data-testid=nav-calls]');
await page.fill('#calls-user', '1001');
await page.fill('#calls-from', '2024-04-01');
const href = await page.getAttribute('[data-testid=calls-export]', 'href');
if (!/user=1001/.test(href) || !/from=\d+/.test(href)) problems.push(`calls-export href: ${href}`);

// ---- English
await page.click('#lang-switch');
await page.click('[data-testid=nav-dashboard]');
await page.waitForTimeout(600);
await shot(page, '30-dashboard-en');
await page.click('[data-testid=nav-users]');
await page.waitForTimeout(400);
await shot(page, '31-users-en');
await page.click('[data-testid=nav-admins]');
await page.waitForTimeout(400);
await shot(page, '32-admins-en');
const lang = await page.getAttribute('html', 'lang');
if (lang !== 'en') problems.push(`html lang after switch: ${lang}`);
await page.click('#lang-switch');

// ---- tablet, 768 px
page = await newPage(768, 1024);
await signIn(page);
await shot(page, '40-tablet-dashboard-ja', false);
await page.click('#menu-toggle');
await shot(page, '41-tablet-menu-ja', false);
await page.click('[data-testid=nav-users]');
await page.waitForTimeout(400);
await shot(page, '42-tablet-users-ja');
await page.click('[data-testid=nav-calls]', { force: true }).catch(async () => {
  await page.click('#menu-toggle');
  await page.click('[data-testid=nav-calls]');
});
await page.waitForTimeout(400);
await shot(page, '43-tablet-calls-ja');
await page.click('#lang-switch');
await page.waitForTimeout(300);
await shot(page, '44-tablet-calls-en');
await page.click('#lang-switch');

// ---- enrolment
page = await newPage();
await page.goto(`${BASE}/`);
await page.fill('#signin-name', 'enrol');
await page.fill('#signin-password', 'password');
await page.click('#signin-submit');
await page.waitForSelector('[data-testid=totp-qr] svg');
await shot(page, '50-enrol-ja');
await page.fill('#enrol-code', '654321');
await page.click('#enrol-submit');
await page.waitForSelector('[data-testid=recovery-codes]');
await shot(page, '51-recovery-ja');
await page.click('#recovery-continue');
await page.waitForSelector('#signout');

// ---- readonly and group admins see fewer screens
for (const who of ['ro', 'group']) {
  page = await newPage();
  await signIn(page, who);
  const navs = await page.$$eval('#nav a', (as) => as.map((a) => a.dataset.testid));
  console.log(who, navs.join(' '));
  await shot(page, `60-${who}-ja`);
}

await browser.close();
console.log(problems.length ? `PROBLEMS:\n${problems.join('\n')}` : 'no problems');
console.log(`screenshots in ${OUT}`);
