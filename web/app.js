// weft echo demo: connect to the server's /echo endpoint, send text, show what comes back.
'use strict';

const $ = (id) => document.getElementById(id);
const app = document.querySelector('.app');
const ui = {
  status: $('status'), detail: $('detail'), error: $('error'),
  protocol: $('protocol'), extensions: $('extensions'),
  composer: $('composer'), message: $('message'), send: $('send'),
  close: $('close'), reconnect: $('reconnect'), log: $('log'),
};

const params = new URLSearchParams(location.search);
const override = params.get('url');
// A server started with --token needs it on the upgrade; browsers cannot set
// headers on a WebSocket, so it travels as a query parameter.
const token = params.get('token');
const url = override ||
  (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/echo' +
  (token ? '?token=' + encodeURIComponent(token) : '');

let ws = null;

function setState(state, text) {
  app.dataset.state = state;
  ui.status.textContent = text;
  const open = state === 'open';
  ui.message.disabled = !open;
  ui.send.disabled = !open;
  ui.close.disabled = !open;
  ui.reconnect.disabled = state !== 'closed' && state !== 'error';
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

function showDetail(text) {
  ui.detail.textContent = text;
  ui.detail.hidden = !text;
}

function addEntry(kind, text) {
  const li = document.createElement('li');
  li.className = kind;
  li.textContent = (kind === 'sent' ? 'Sent: ' : 'Received: ') + text;
  ui.log.append(li);
  ui.log.scrollTop = ui.log.scrollHeight;
}

function describe(data) {
  if (typeof data === 'string') return data;
  const size = data instanceof Blob ? data.size : data.byteLength;
  return `<binary, ${size} bytes>`;
}

function connect() {
  showError('');
  showDetail('');
  ui.protocol.textContent = ui.extensions.textContent = '–';
  setState('connecting', 'Connecting…');

  let failed = false;
  try {
    ws = new WebSocket(url);
  } catch (err) {
    setState('error', 'Could not connect.');
    showError(`Invalid WebSocket URL ${url}: ${err.message}`);
    return;
  }
  ws.binaryType = 'arraybuffer';

  ws.addEventListener('open', () => {
    setState('open', 'Connected to: ' + url);
    ui.protocol.textContent = ws.protocol || '(none)';
    ui.extensions.textContent = ws.extensions || '(none)';
    ui.message.focus();
  });

  ws.addEventListener('message', (event) => addEntry('received', describe(event.data)));

  ws.addEventListener('error', () => {
    failed = true;
    // Browsers deliberately give no detail here; the close event that follows has the code.
    showError(`WebSocket error: the connection to ${url} failed.`);
  });

  ws.addEventListener('close', (event) => {
    setState(failed ? 'error' : 'closed', 'Disconnected from WebSocket.');
    showDetail(`Code ${event.code}, reason: ${event.reason ? `“${event.reason}”` : '(none)'}, ` +
      `wasClean: ${event.wasClean}`);
  });
}

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.message.value;
  if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(text);
  addEntry('sent', text);
  ui.message.value = '';
  ui.message.focus();
});

ui.close.addEventListener('click', () => {
  if (!ws) return;
  setState('closing', 'Closing…');
  ws.close(1000, 'Closed by user');
});

ui.reconnect.addEventListener('click', connect);

connect();
