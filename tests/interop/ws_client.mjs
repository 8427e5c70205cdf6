// Node's ws as the client, against the weft servers: runs cases.js and
// prints one JSON line per case.
//
//   node ws_client.mjs --echo-url ws://…/echo --url ws://…/ --tls-url wss://…/ --ca cert.pem
//       --compression on|off [--case KEY]...
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import './cases.js';

const { values: args } = parseArgs({
  options: {
    'echo-url': { type: 'string' },
    url: { type: 'string' },
    'tls-url': { type: 'string' },
    ca: { type: 'string' },
    compression: { type: 'string', default: 'on' },
    case: { type: 'string', multiple: true },
  },
});
const compression = args.compression === 'on';
const ca = args.ca ? readFileSync(args.ca) : undefined;

await globalThis.runInteropCases({
  echoUrl: args['echo-url'],
  url: args.url,
  tlsUrl: args['tls-url'],
  compression,
  open: (url, protocols) => new WebSocket(url, protocols, { perMessageDeflate: compression, ca, maxPayload: 64 << 20 }),
  // ws sends a message in pieces with `fin: false` on all but the last.
  sendFragments: (ws, isText, pieces) =>
    new Promise((resolve, reject) => {
      pieces.forEach((p, i) => {
        const fin = i === pieces.length - 1;
        ws.send(Buffer.from(p), { binary: !isText, fin }, fin ? (err) => (err ? reject(err) : resolve()) : undefined);
      });
    }),
  log: (r) => console.log(JSON.stringify(r)),
  only: args.case,
});
