// Headless Chromium as the client, against the weft servers: loads cases.js
// into a page and runs it with the browser's own WebSocket, printing one JSON
// line per case. The browser offers permessage-deflate by default.
//
//   node chromium_client.mjs --echo-url ws://…/echo --url ws://…/ --tls-url wss://…/
//       --origin http://…/healthz [--case KEY]...
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    'echo-url': { type: 'string' },
    url: { type: 'string' },
    'tls-url': { type: 'string' },
    origin: { type: 'string' },
    case: { type: 'string', multiple: true },
  },
});
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--ignore-certificate-errors',
];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: FLAGS,
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on('console', (msg) => {
    const t = msg.text();
    if (t.startsWith('RESULT ')) console.log(t.slice(7));
  });
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
  // A page of the weft server gives the sockets an ordinary http origin.
  await page.goto(args.origin);
  await page.addScriptTag({ content: readFileSync(path.join(here, 'cases.js'), 'utf8') });
  await page.evaluate(
    (cfg) =>
      globalThis.runInteropCases({
        ...cfg,
        compression: true,
        open: (url, protocols) => new WebSocket(url, protocols),
        sendFragments: null,
        noFragments: 'the browser WebSocket API sends each message whole',
        log: (r) => console.log(`RESULT ${JSON.stringify(r)}`),
      }),
    { echoUrl: args['echo-url'], url: args.url, tlsUrl: args['tls-url'], only: args.case ?? [] },
  );
} finally {
  await browser.close();
}
