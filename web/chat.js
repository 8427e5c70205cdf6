// weft chat demo: join /chat/{room}?nick=..., show messages, joins, leaves and the member count.
'use strict';

const $ = (id) => document.getElementById(id);
const app = document.querySelector('.app');
const ui = {
  join: $('join'), room: $('room'), nick: $('nick'), enter: $('enter'), leave: $('leave'),
  status: $('status'), detail: $('detail'), error: $('error'),
  roomName: $('room-name'), me: $('me'), members: $('members'),
  composer: $('composer'), message: $('message'), send: $('send'), log: $('log'),
};

const params = new URLSearchParams(location.search);
if (params.get('room')) ui.room.value = params.get('room');
ui.nick.value = params.get('nick') || localStorage.getItem('weft-nick') || '';

let ws = null;
let myNick = '';

function setState(state, text) {
  app.dataset.state = state;
  ui.status.textContent = text;
  const open = state === 'open';
  ui.message.disabled = !open;
  ui.send.disabled = !open;
  ui.leave.disabled = !(open || state === 'connecting');
  ui.enter.disabled = open || state === 'connecting';
  ui.room.disabled = ui.nick.disabled = open || state === 'connecting';
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

function showDetail(text) {
  ui.detail.textContent = text;
  ui.detail.hidden = !text;
}

function time(at) {
  const t = document.createElement('time');
  const d = new Date(at);
  t.dateTime = d.toISOString();
  t.textContent = d.toLocaleTimeString();
  return t;
}

function add(kind, parts, at) {
  const li = document.createElement('li');
  li.className = kind;
  if (at) li.append(time(at));
  li.append(...parts);
  ui.log.append(li);
  ui.log.scrollTop = ui.log.scrollHeight;
}

function from(name) {
  const b = document.createElement('span');
  b.className = 'from';
  b.textContent = name;
  return b;
}

function onEvent(ev) {
  switch (ev.type) {
    case 'message':
      add(ev.from === myNick ? 'sent' : 'received', [from(ev.from), ': ' + ev.text], ev.at);
      break;
    case 'join':
    case 'leave':
      if (ev.members !== null && ev.members !== undefined) ui.members.textContent = String(ev.members);
      add('notice', [`${ev.nick} ${ev.type === 'join' ? 'joined' : 'left'} · ${ev.members ?? '?'} here`], ev.at);
      break;
    case 'error':
      add('failed', [ev.text ? `Not delivered: “${ev.text}” — ${ev.error}` : ev.error], ev.at);
      break;
    default:
      break;
  }
}

function connect(room, nick) {
  showError('');
  showDetail('');
  ui.log.replaceChildren();
  ui.members.textContent = '–';
  myNick = '';
  const url = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host +
    '/chat/' + encodeURIComponent(room) + '?nick=' + encodeURIComponent(nick);
  setState('connecting', 'Joining ' + room + '…');
  let failed = false;
  try {
    ws = new WebSocket(url);
  } catch (err) {
    setState('error', 'Could not connect.');
    showError(`Invalid WebSocket URL ${url}: ${err.message}`);
    return;
  }
  const sock = ws;
  sock.addEventListener('open', () => {
    if (sock !== ws) return;
    setState('open', 'In room ' + room);
    ui.roomName.textContent = room;
    ui.message.focus();
  });
  sock.addEventListener('message', (event) => {
    if (sock !== ws || typeof event.data !== 'string') return;
    let ev;
    try { ev = JSON.parse(event.data); } catch { return; }
    // The server sanitizes nicknames: its welcome tells us ours.
    if (ev.type === 'welcome') {
      myNick = ev.nick;
      ui.me.textContent = myNick;
      return;
    }
    onEvent(ev);
  });
  sock.addEventListener('error', () => {
    if (sock !== ws) return;
    failed = true;
    showError(`WebSocket error: the connection to ${url} failed.`);
  });
  sock.addEventListener('close', (event) => {
    if (sock !== ws) return;
    setState(failed ? 'error' : 'closed', 'Not in a room.');
    showDetail(`Code ${event.code}, reason: ${event.reason ? `“${event.reason}”` : '(none)'}`);
    ui.members.textContent = '–';
  });
}

ui.join.addEventListener('submit', (event) => {
  event.preventDefault();
  const room = ui.room.value.trim();
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(room)) {
    showError('Room names are 1 to 64 letters, digits, - or _.');
    return;
  }
  localStorage.setItem('weft-nick', ui.nick.value);
  connect(room, ui.nick.value.trim());
});

ui.leave.addEventListener('click', () => {
  if (!ws) return;
  setState('closing', 'Leaving…');
  ws.close(1000, 'left the room');
});

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.message.value;
  if (!text.trim() || !ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(text);
  ui.message.value = '';
  ui.message.focus();
});

setState('closed', 'Not in a room.');
if (params.get('room')) ui.join.requestSubmit();
