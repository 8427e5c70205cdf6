// Headless Chromium test of the chat page served by `weft serve`.
//
//   WEFT_URL=http://127.0.0.1:8080 node --test chat.test.mjs
//
// WEFT_URL_B (optional) puts the second page on another node (e.g. two
// `weft serve --redis` processes sharing one Redis); by default both pages use
// WEFT_URL. SCREENSHOT_DIR sets where screenshots go (default:
// <repo>/target/screenshots).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WEFT_URL = process.env.WEFT_URL;
const WEFT_URL_B = process.env.WEFT_URL_B || WEFT_URL;
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR
  ? path.resolve(process.env.SCREENSHOT_DIR)
  : path.resolve(here, '../../target/screenshots');
const TIMEOUT = 15_000;

// The same launch flags as echo.test.mjs.
const BASE_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

mkdirSync(SCREENSHOT_DIR, { recursive: true });

let browser;
after(async () => { if (browser) await browser.close(); });

async function openChat(baseUrl, query, contextOptions = {}) {
  browser ??= await chromium.launch({ executablePath: CHROMIUM, headless: true, args: BASE_ARGS });
  // One context per page: each has its own storage, like two people.
  const context = await browser.newContext({ viewport: { width: 900, height: 760 }, ...contextOptions });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.url()}`);
  });
  const res = await page.goto(new URL(`/chat${query}`, baseUrl).href);
  assert.equal(res.status(), 200, `GET /chat answered ${res.status()}`);
  return { page, problems };
}

function waitForText(page, selector, text) {
  return page.waitForFunction(
    ([sel, want]) => document.querySelector(sel)?.textContent.trim() === want,
    [selector, text],
    { timeout: TIMEOUT },
  ).catch(async (err) => {
    const actual = await page.locator(selector).textContent().catch(() => '(missing)');
    throw new Error(`${selector} never read ${JSON.stringify(text)}; it reads ${JSON.stringify(actual)}`,
      { cause: err });
  });
}

const shot = (page, name) =>
  page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });

const line = (page, cls, text) => page.locator(`#log li.${cls}`, { hasText: text }).waitFor();

test('chat: two pages in one room see each other and the member count', { timeout: 60_000 }, async () => {
  assert.ok(WEFT_URL, 'set WEFT_URL to the base URL of `weft serve`, e.g. http://127.0.0.1:8080');
  const room = `browser-${Date.now()}`;

  // Ada joins through the form.
  const a = await openChat(WEFT_URL, '');
  await a.page.fill('#room', room);
  await a.page.fill('#nick', 'Ada');
  await a.page.click('#enter');
  await waitForText(a.page, '#status', `In room ${room}`);
  await waitForText(a.page, '#me', 'Ada');
  await waitForText(a.page, '#members', '1');
  await waitForText(a.page, '#room-name', room);

  // Bob joins through the URL (possibly on another node).
  const b = await openChat(WEFT_URL_B, `?room=${room}&nick=${encodeURIComponent('Bob <b>')}`);
  await waitForText(b.page, '#status', `In room ${room}`);
  await waitForText(b.page, '#me', 'Bob b'); // sanitized by the server
  await waitForText(b.page, '#members', '2');
  await waitForText(a.page, '#members', '2');
  await line(a.page, 'notice', 'Bob b joined · 2 here');

  await a.page.fill('#message', 'hello from Ada');
  await a.page.press('#message', 'Enter');
  await line(a.page, 'sent', 'Ada: hello from Ada');
  await line(b.page, 'received', 'Ada: hello from Ada');

  const unicode = 'Grüße, καλημέρα ✓ <i>not html</i>';
  await b.page.fill('#message', unicode);
  await b.page.click('#send');
  await line(b.page, 'sent', `Bob b: ${unicode}`);
  await line(a.page, 'received', `Bob b: ${unicode}`);
  assert.equal(await a.page.locator('#log i').count(), 0, 'message text was rendered as HTML');

  const seen = (p) => p.$$eval('#log li:not(.notice)', (lis) => lis.map((li) => li.className));
  assert.deepEqual(await seen(a.page), ['sent', 'received']);
  assert.deepEqual(await seen(b.page), ['received', 'sent']);
  await shot(a.page, 'chat-1-ada');
  await shot(b.page, 'chat-2-bob');

  // Bob leaves: Ada sees it and the count drops.
  await b.page.click('#leave');
  await waitForText(b.page, '#status', 'Not in a room.');
  await line(a.page, 'notice', 'Bob b left · 1 here');
  await waitForText(a.page, '#members', '1');
  assert.equal(await b.page.isEnabled('#send'), false, '#send is enabled after leaving');
  await shot(a.page, 'chat-3-after-leave');

  assert.deepEqual(a.problems, [], 'page A reported errors');
  assert.deepEqual(b.problems, [], 'page B reported errors');
});

test('chat: renders in dark mode on a narrow screen without overflow', { timeout: 60_000 }, async () => {
  assert.ok(WEFT_URL, 'set WEFT_URL to the base URL of `weft serve`, e.g. http://127.0.0.1:8080');
  const { page, problems } = await openChat(WEFT_URL, `?room=narrow-${Date.now()}&nick=Phone`, {
    colorScheme: 'dark', viewport: { width: 390, height: 760 },
  });
  await waitForText(page, '#members', '1');
  await page.fill('#message', 'a fairly long message that has to wrap on a phone-sized screen, all of it');
  await page.click('#send');
  await line(page, 'sent', 'Phone: a fairly long');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the viewport`);
  await shot(page, 'chat-narrow-dark');
  assert.deepEqual(problems, []);
});
