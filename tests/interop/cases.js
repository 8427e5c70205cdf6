// The client cases of the interop matrix, written against the WHATWG
// WebSocket API so that the same code runs in Node (with ws's WebSocket) and
// in Chromium (loaded into the page as a classic script). The weft server is
// `weft serve` (/echo) for the echo rows and the interop_server example for
// the rest; both echo, and interop_server also answers the commands
// `close-me CODE REASON`, `closed? ID`, `protocol?`, `extensions?` and
// `fragment-me:PAYLOAD`.
//
// runInteropCases(env) resolves to [{case, result, detail, ms}], where env is
//   open(url, protocols)     -> a WebSocket (binaryType is set here)
//   echoUrl, url, tlsUrl     -> weft serve /echo, interop_server ws://, wss://
//   compression              -> whether the client offers permessage-deflate
//   sendFragments(ws, isText, pieces) or null -> send one message in pieces
//   noFragments              -> why the peer cannot send fragments (if so)
//   log(result)              -> progress (optional)
//   only                     -> run only these case keys (optional)
globalThis.runInteropCases = async function runInteropCases(env) {
  const SIZES = [['0', 0], ['125', 125], ['126', 126], ['64k', 64 << 10], ['1m', 1 << 20], ['16m', 16 << 20]];
  const CASE_TIMEOUT = 60_000;
  const enc = new TextEncoder();
  const results = [];

  // ----- payloads -------------------------------------------------------
  function randomBytes(n) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
    return out;
  }
  // Words with two-, three- and four-byte characters, exactly n bytes of
  // UTF-8: a 48 KiB block repeated (beyond deflate's 32 KiB window), padded.
  function randomText(n) {
    const words = ['weft ', 'warp ', 'loom ', 'señal ', 'naïve ', '€uro ', '✓ ', '日本 ', '🧵 ', '\n'];
    const blockMax = Math.min(n, 48 << 10);
    let block = '';
    let blockLen = 0;
    for (;;) {
      const w = words[Math.floor(Math.random() * words.length)];
      const wl = enc.encode(w).length;
      if (blockLen + wl > blockMax) break;
      block += w;
      blockLen += wl;
    }
    let reps = blockLen ? Math.floor(n / blockLen) : 0;
    let s = block.repeat(reps);
    let len = reps * blockLen;
    for (const ch of block) {
      const cl = enc.encode(ch).length;
      if (len + cl > n) break;
      s += ch;
      len += cl;
    }
    return s + 'x'.repeat(n - len);
  }
  const payload = (isText, n) => (isText ? randomText(n) : randomBytes(n));

  // ----- a socket with a message queue ------------------------------------
  function connect(url, protocols = []) {
    return new Promise((resolve, reject) => {
      const ws = env.open(url, protocols);
      ws.binaryType = 'arraybuffer';
      const queue = [];
      const waiters = [];
      let closed = null;
      const conn = {
        ws,
        next() {
          if (queue.length) return Promise.resolve(queue.shift());
          if (closed) return Promise.reject(new Error(`closed (${closed.code} ${JSON.stringify(closed.reason)}) instead of a message`));
          return new Promise((res, rej) => waiters.push({ res, rej }));
        },
        closedEvent: null,
        closed: null,
      };
      conn.closed = new Promise((res) => {
        ws.addEventListener('close', (ev) => {
          closed = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
          conn.closedEvent = closed;
          for (const w of waiters.splice(0)) w.rej(new Error(`closed (${ev.code} ${JSON.stringify(ev.reason)}) instead of a message`));
          res(closed);
        });
      });
      ws.addEventListener('message', (ev) => {
        const w = waiters.shift();
        if (w) w.res(ev.data);
        else queue.push(ev.data);
      });
      ws.addEventListener('open', () => resolve(conn), { once: true });
      ws.addEventListener('error', () => reject(new Error(`could not connect to ${url}`)), { once: true });
    });
  }
  async function ask(conn, question) {
    conn.ws.send(question);
    const a = await conn.next();
    if (typeof a !== 'string') throw new Error(`${question}: binary answer`);
    return a;
  }
  async function finish(conn) {
    conn.ws.close(1000, 'done');
    const ev = await conn.closed;
    if (ev.code !== 1000) throw new Error(`closing: got ${ev.code} ${JSON.stringify(ev.reason)}`);
  }
  function same(isText, sent, got) {
    if ((typeof got === 'string') !== isText) {
      throw new Error(`sent ${isText ? 'text' : 'binary'}, received ${typeof got === 'string' ? 'text' : 'binary'}`);
    }
    const a = isText ? enc.encode(sent) : sent;
    const b = isText ? enc.encode(got) : new Uint8Array(got);
    if (a.length === b.length && a.every((x, i) => x === b[i])) return;
    let at = 0;
    while (at < Math.min(a.length, b.length) && a[at] === b[at]) at++;
    throw new Error(`sent ${a.length} bytes, received ${b.length} bytes, first difference at byte ${at}`);
  }
  const id = () => `peer-${Math.random().toString(16).slice(2)}${Date.now().toString(16)}`;

  // ----- cases -------------------------------------------------------------
  async function echo(url, isText, n) {
    const c = await connect(url);
    const data = payload(isText, n);
    c.ws.send(data);
    same(isText, data, await c.next());
    await finish(c);
  }

  async function deflate() {
    const c = await connect(env.url);
    const ours = c.ws.extensions || 'none';
    const theirs = await ask(c, 'extensions?');
    const on = (s) => s.includes('permessage-deflate');
    if (on(ours) !== env.compression || on(theirs) !== env.compression) {
      throw new Error(`compression ${env.compression ? 'on' : 'off'}: client agreed ${JSON.stringify(ours)}, server ${JSON.stringify(theirs)}`);
    }
    await finish(c);
  }

  // The peer sends three fragments (a text message split inside characters).
  async function fragmentsFromPeer(isText) {
    const c = await connect(env.url);
    const data = payload(isText, 10_000);
    const bytes = isText ? enc.encode(data) : data;
    const inside = (n) => {
      // A cut that falls inside a character, where there is one nearby.
      for (let i = n; i < Math.min(bytes.length, n + 8); i++) if ((bytes[i] & 0xc0) === 0x80) return i;
      return n;
    };
    const a = isText ? inside(Math.floor(bytes.length / 3)) : Math.floor(bytes.length / 3);
    const b = isText ? inside(Math.floor((2 * bytes.length) / 3)) : Math.floor((2 * bytes.length) / 3);
    await env.sendFragments(c.ws, isText, [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)]);
    same(isText, data, await c.next());
    await finish(c);
  }

  // weft sends three fragments (asked with `fragment-me:`).
  async function fragmentsFromWeft(isText) {
    const c = await connect(env.url);
    const data = payload(isText, 10_000);
    if (isText) {
      c.ws.send(`fragment-me:${data}`);
    } else {
      const req = new Uint8Array(12 + data.length);
      req.set(enc.encode('fragment-me:'));
      req.set(data, 12);
      c.ws.send(req);
    }
    same(isText, data, await c.next());
    await finish(c);
  }

  // The peer closes with 4001 "bye"; the server says what it received.
  async function closeFromPeer() {
    const cid = id();
    const c = await connect(`${env.url}?id=${cid}`);
    c.ws.close(4001, 'bye');
    const ev = await c.closed;
    const q = await connect(env.url);
    const seen = await ask(q, `closed? ${cid}`);
    await finish(q);
    if (seen !== '4001 bye') throw new Error(`server received ${JSON.stringify(seen)}`);
    if (ev.code !== 4001 || !ev.wasClean) throw new Error(`close event after the server's reply: ${JSON.stringify(ev)}`);
  }

  // weft closes with 4001 "bye"; the peer sees it.
  async function closeFromWeft() {
    const c = await connect(env.url);
    c.ws.send('close-me 4001 bye');
    const ev = await c.closed;
    if (ev.code !== 4001 || ev.reason !== 'bye' || !ev.wasClean) {
      throw new Error(`close event ${JSON.stringify(ev)}, expected 4001 "bye", clean`);
    }
  }

  async function subprotocol() {
    const c = await connect(env.url, ['chat.v2', 'chat.v1']);
    const ours = c.ws.protocol;
    const theirs = await ask(c, 'protocol?');
    if (ours !== 'chat.v2' || theirs !== 'chat.v2') {
      throw new Error(`offered chat.v2, chat.v1: client agreed ${JSON.stringify(ours)}, server ${JSON.stringify(theirs)}`);
    }
    await finish(c);
  }

  async function wss() {
    await echo(env.tlsUrl, true, 64 << 10);
    await echo(env.tlsUrl, false, 1 << 20);
  }

  // ----- runner -------------------------------------------------------------
  async function run(key, fn, na) {
    if (env.only && env.only.length && !env.only.includes(key)) return;
    const t0 = Date.now();
    let result = 'pass';
    let detail = '';
    if (na) {
      result = 'n/a';
      detail = na;
    } else {
      let timer;
      try {
        await Promise.race([
          fn(),
          new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`no result within ${CASE_TIMEOUT / 1000} s`)), CASE_TIMEOUT); }),
        ]);
      } catch (e) {
        result = 'fail';
        detail = String(e && e.message ? e.message : e);
      } finally {
        clearTimeout(timer);
      }
    }
    const r = { case: key, result, detail, ms: Date.now() - t0 };
    results.push(r);
    if (env.log) env.log(r);
  }

  await run('deflate', deflate);
  for (const [isText, prefix] of [[true, 'text'], [false, 'binary']]) {
    for (const [name, n] of SIZES) await run(`${prefix}-${name}`, () => echo(env.echoUrl, isText, n));
  }
  await run('frag-text-peer', () => fragmentsFromPeer(true), env.noFragments);
  await run('frag-binary-peer', () => fragmentsFromPeer(false), env.noFragments);
  await run('frag-text-weft', () => fragmentsFromWeft(true));
  await run('frag-binary-weft', () => fragmentsFromWeft(false));
  await run('close-peer', closeFromPeer);
  await run('close-weft', closeFromWeft);
  await run('subprotocol', subprotocol);
  await run('wss', wss);
  return results;
};
