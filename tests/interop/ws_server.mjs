// Node's ws as the server, for the weft client (interop_client): an echo that
// also answers `close-me CODE REASON`, `closed? ID`, `protocol?`,
// `extensions?` and `fragment-me:PAYLOAD` (sent back in three fragments), and
// picks the first subprotocol the client offers among chat.v1, chat.v2.
//
//   node ws_server.mjs --compression on|off [--tls-cert cert.pem --tls-key key.pem]
// prints {"ws":"ws://127.0.0.1:PORT/","wss":"wss://127.0.0.1:PORT/"} once listening.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const { values: args } = parseArgs({
  options: {
    compression: { type: 'string', default: 'on' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
  },
});
const PROTOCOLS = ['chat.v1', 'chat.v2'];
const FRAGMENT_ME = Buffer.from('fragment-me:');
const closes = new Map();

function handle(ws, req) {
  const id = new URL(req.url, 'http://peer').searchParams.get('id');
  ws.on('close', (code, reason) => {
    if (id) closes.set(id, code === 1005 ? '1005' : `${code} ${reason.toString()}`);
  });
  ws.on('message', async (data, isBinary) => {
    if (data.subarray(0, FRAGMENT_ME.length).equals(FRAGMENT_ME)) {
      const body = data.subarray(FRAGMENT_ME.length);
      // Cut at the thirds, moved into a character where one is near.
      const inside = (n) => {
        if (!isBinary) for (let i = n; i < Math.min(body.length, n + 8); i++) if ((body[i] & 0xc0) === 0x80) return i;
        return n;
      };
      const a = inside(Math.floor(body.length / 3));
      const b = inside(Math.floor((2 * body.length) / 3));
      ws.send(body.subarray(0, a), { binary: isBinary, fin: false });
      ws.send(body.subarray(a, b), { binary: isBinary, fin: false });
      ws.send(body.subarray(b), { binary: isBinary, fin: true });
      return;
    }
    if (isBinary) return ws.send(data, { binary: true });
    const text = data.toString();
    if (text.startsWith('close-me ')) {
      const [, code, ...reason] = text.split(' ');
      return ws.close(Number(code), reason.join(' '));
    }
    if (text.startsWith('closed? ')) {
      const want = text.slice(8);
      for (let i = 0; i < 50 && !closes.has(want); i++) await new Promise((r) => setTimeout(r, 50));
      return ws.send(closes.get(want) ?? 'none');
    }
    if (text === 'protocol?') return ws.send(ws.protocol || 'none');
    if (text === 'extensions?') return ws.send(ws.extensions || 'none');
    ws.send(text);
  });
}

const options = {
  perMessageDeflate: args.compression === 'on',
  maxPayload: 64 << 20,
  handleProtocols: (offered) => [...offered].find((p) => PROTOCOLS.includes(p)) ?? false,
};

function listen(server) {
  return new Promise((resolve) => {
    new WebSocketServer({ ...options, server }).on('connection', handle);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

const urls = { ws: `ws://127.0.0.1:${await listen(http.createServer())}/` };
if (args['tls-cert']) {
  const tls = https.createServer({ cert: readFileSync(args['tls-cert']), key: readFileSync(args['tls-key']) });
  urls.wss = `wss://127.0.0.1:${await listen(tls)}/`;
}
console.log(JSON.stringify(urls));
