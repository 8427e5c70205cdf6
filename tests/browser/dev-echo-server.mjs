// Stand-in for `weft serve`, used only while developing the page in web/.
// The real browser suite runs against weft itself (see README.md); this file
// exists so the page and echo.test.mjs can be worked on without the Rust server.
//
// It serves web/index.html, web/app.css and web/app.js at /, /app.css and
// /app.js, and echoes every WebSocket message on /echo (text as text, binary
// as binary). It listens on 127.0.0.1 only, on a free port.
//
//   node dev-echo-server.mjs                 # plain http/ws
//   node dev-echo-server.mjs --tls           # also https/wss with a throwaway self-signed cert
//   node dev-echo-server.mjs --tls --run-tests   # start, run echo.test.mjs against it, stop

import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const webDir = path.resolve(here, '../../web');
const args = new Set(process.argv.slice(2));

const files = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.css': ['app.css', 'text/css; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
};

function handle(req, res) {
  const entry = files[new URL(req.url, 'http://x').pathname];
  if (!entry || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
    return;
  }
  // Read on every request so edits to web/ show up on reload.
  const body = readFileSync(path.join(webDir, entry[0]));
  res.writeHead(200, {
    'content-type': entry[1],
    'content-length': body.length,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

function attachEcho(server) {
  const wss = new WebSocketServer({ server, path: '/echo' });
  wss.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  return wss;
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

function selfSignedCert() {
  const dir = mkdtempSync(path.join(tmpdir(), 'weft-dev-cert-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  const pair = { key: readFileSync(key), cert: readFileSync(cert) };
  rmSync(dir, { recursive: true, force: true });
  return pair;
}

const servers = [];
const env = {};

const plain = http.createServer(handle);
attachEcho(plain);
env.WEFT_URL = `http://127.0.0.1:${await listen(plain)}`;
servers.push(plain);

if (args.has('--tls')) {
  const secure = https.createServer(selfSignedCert(), handle);
  attachEcho(secure);
  env.WEFT_TLS_URL = `https://127.0.0.1:${await listen(secure)}`;
  servers.push(secure);
}

for (const [name, value] of Object.entries(env)) console.log(`${name}=${value}`);

const stop = () => {
  for (const server of servers) {
    server.closeAllConnections?.();
    server.close();
  }
};
process.on('SIGINT', () => { stop(); process.exit(130); });
process.on('SIGTERM', () => { stop(); process.exit(143); });

if (args.has('--run-tests')) {
  const child = spawn(process.execPath,
    ['--test', '--test-reporter=spec', path.join(here, 'echo.test.mjs')],
    { stdio: 'inherit', env: { ...process.env, ...env } });
  child.on('exit', (code, signal) => {
    stop();
    process.exit(code ?? (signal ? 1 : 0));
  });
}
