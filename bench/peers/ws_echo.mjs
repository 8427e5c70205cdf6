// Node `ws` echo server: text stays text, binary stays binary.
// Usage: node ws_echo.mjs PORT
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
if (!port) {
  console.error('usage: node ws_echo.mjs PORT');
  process.exit(2);
}
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, maxPayload: 64 << 20 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`ws_echo: listening on 127.0.0.1:${port}`));
