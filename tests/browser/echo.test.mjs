// Headless Chromium test of the echo page served by `weft serve`.
//
//   WEFT_URL=http://127.0.0.1:8080 [WEFT_TLS_URL=https://127.0.0.1:8443] npm test
//
// SCREENSHOT_DIR sets where screenshots go (default: <repo>/target/screenshots).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WEFT_URL = process.env.WEFT_URL;
const WEFT_TLS_URL = process.env.WEFT_TLS_URL;
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR
  ? path.resolve(process.env.SCREENSHOT_DIR)
  : path.resolve(here, '../../target/screenshots');
const TIMEOUT = 15_000;

const BASE_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

mkdirSync(SCREENSHOT_DIR, { recursive: true });

const browsers = [];
after(async () => { await Promise.all(browsers.map((b) => b.close())); });

async function openPage(baseUrl, { tls = false, ...contextOptions } = {}) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: tls ? [...BASE_ARGS, '--ignore-certificate-errors'] : BASE_ARGS,
  });
  browsers.push(browser);
  const context = await browser.newContext({
    ignoreHTTPSErrors: tls,
    viewport: { width: 900, height: 720 },
    ...contextOptions,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);

  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    // Failed loads are reported with their URL by the response handler.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`console error: ${msg.text()}`);
  });
  const responses = new Map();
  page.on('response', (res) => {
    responses.set(new URL(res.url()).pathname, res);
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.url()}`);
  });

  const res = await page.goto(new URL('/', baseUrl).href);
  assert.ok(res, `no response for ${baseUrl}`);
  assert.equal(res.status(), 200, `GET / answered ${res.status()}`);
  return { page, problems, responses };
}

function waitForText(page, selector, text) {
  return page.waitForFunction(
    ([sel, want]) => document.querySelector(sel)?.textContent.includes(want),
    [selector, text],
    { timeout: TIMEOUT },
  ).catch(async (err) => {
    const actual = await page.locator(selector).textContent().catch(() => '(missing)');
    throw new Error(`${selector} never contained ${JSON.stringify(text)}; it reads ${JSON.stringify(actual)}`,
      { cause: err });
  });
}

const shot = (page, name) =>
  page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });

function checkAssets(responses) {
  const expected = {
    '/': /^text\/html/,
    '/app.css': /^text\/css/,
    '/app.js': /^(text|application)\/javascript/,
  };
  for (const [file, type] of Object.entries(expected)) {
    const res = responses.get(file);
    assert.ok(res, `the page never loaded ${file}`);
    assert.equal(res.status(), 200, `${file} answered ${res.status()}`);
    const got = res.headers()['content-type'] ?? '(none)';
    assert.match(got, type, `${file} has content-type ${got}`);
  }
}

async function echoRoundTrip(baseUrl, name, { tls = false } = {}) {
  const { page, problems, responses } = await openPage(baseUrl, { tls });
  const scheme = tls ? 'wss:' : 'ws:';
  const wsUrl = `${scheme}//${new URL(baseUrl).host}/echo`;

  await waitForText(page, '#status', 'Connected to:');
  assert.equal((await page.textContent('#status')).trim(), `Connected to: ${wsUrl}`);
  assert.equal(await page.isVisible('#error'), false, 'an error is shown while connected');
  checkAssets(responses);
  await shot(page, `${name}-1-connected`);

  const message = `hello from ${name} ${Date.now()}`;
  await page.fill('#message', message);
  await page.click('#send');
  await page.locator('#log li.sent', { hasText: `Sent: ${message}` }).waitFor();
  await page.locator('#log li.received', { hasText: `Received: ${message}` }).waitFor();

  // Enter sends too, and unicode survives the round trip.
  const second = 'Grüße, καλημέρα ✓';
  await page.fill('#message', second);
  await page.press('#message', 'Enter');
  await page.locator('#log li.received', { hasText: `Received: ${second}` }).waitFor();

  // Binary frames come back as binary. The page has no UI for sending them, so
  // use its socket directly (a top-level `let` in app.js, reachable from here).
  await page.evaluate(() => ws.send(new Uint8Array([1, 2, 3])));
  await page.locator('#log li.received', { hasText: 'Received: <binary, 3 bytes>' }).waitFor();

  const entries = await page.$$eval('#log li', (lis) => lis.map((li) => [li.className, li.textContent]));
  assert.deepEqual(entries, [
    ['sent', `Sent: ${message}`],
    ['received', `Received: ${message}`],
    ['sent', `Sent: ${second}`],
    ['received', `Received: ${second}`],
    ['received', 'Received: <binary, 3 bytes>'],
  ]);
  assert.equal(await page.isEnabled('#reconnect'), false, '#reconnect is enabled while open');
  await shot(page, `${name}-2-echoed`);

  await page.click('#close');
  await waitForText(page, '#status', 'Disconnected from WebSocket.');
  await waitForText(page, '#detail', 'Code 1000');
  assert.equal(await page.isEnabled('#reconnect'), true, '#reconnect is disabled after close');
  assert.equal(await page.isEnabled('#send'), false, '#send is enabled after close');
  await shot(page, `${name}-3-closed`);

  // Reconnect works and echoes again.
  await page.click('#reconnect');
  await waitForText(page, '#status', 'Connected to:');
  await page.fill('#message', 'again');
  await page.click('#send');
  await page.locator('#log li.received', { hasText: 'Received: again' }).waitFor();
  await page.click('#close');
  await waitForText(page, '#status', 'Disconnected from WebSocket.');

  assert.deepEqual(problems, [], 'the page reported errors');
}

test('ws: echo page round trip over plain HTTP', { timeout: 60_000 }, async () => {
  assert.ok(WEFT_URL, 'set WEFT_URL to the base URL of `weft serve`, e.g. http://127.0.0.1:8080');
  await echoRoundTrip(WEFT_URL, 'ws');
});

const tlsSkip = WEFT_TLS_URL ? false
  : 'SKIPPED: WEFT_TLS_URL is unset, so the wss:// (TLS) echo test did NOT run';
if (tlsSkip) console.warn(`\n*** ${tlsSkip} ***\n`);

test('wss: echo page round trip over HTTPS', { timeout: 60_000, skip: tlsSkip }, async () => {
  await echoRoundTrip(WEFT_TLS_URL, 'wss', { tls: true });
});

test('page shows an error when the WebSocket cannot connect', { timeout: 60_000 }, async () => {
  assert.ok(WEFT_URL, 'set WEFT_URL to the base URL of `weft serve`, e.g. http://127.0.0.1:8080');
  const { page } = await openPage(WEFT_URL);
  // Point the page at a path the server does not upgrade; the handshake must fail.
  const bad = `ws://${new URL(WEFT_URL).host}/no-such-endpoint`;
  await page.goto(new URL(`/?url=${encodeURIComponent(bad)}`, WEFT_URL).href);
  await waitForText(page, '#error', 'failed');
  assert.equal(await page.isVisible('#error'), true);
  await waitForText(page, '#status', 'Disconnected from WebSocket.');
  assert.equal(await page.isEnabled('#reconnect'), true);
  await shot(page, 'error');
});

test('page renders in dark mode on a narrow screen without overflow', { timeout: 60_000 }, async () => {
  assert.ok(WEFT_URL, 'set WEFT_URL to the base URL of `weft serve`, e.g. http://127.0.0.1:8080');
  const { page } = await openPage(WEFT_URL, {
    colorScheme: 'dark', viewport: { width: 390, height: 760 },
  });
  await waitForText(page, '#status', 'Connected to:');
  await page.fill('#message', 'a fairly long message that has to wrap on a phone-sized screen');
  await page.click('#send');
  await page.locator('#log li.received').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the viewport`);
  await shot(page, 'narrow-dark');
});
