// uWebSockets.js echo server: text stays text, binary stays binary; no
// compression, 64 MiB max payload, idle timeout off.
// Usage: node uws_echo.mjs PORT
import uWS from './uws_native.mjs';

const port = Number(process.argv[2]);
if (!port) {
  console.error('usage: node uws_echo.mjs PORT');
  process.exit(2);
}
uWS.App()
  .ws('/*', {
    compression: uWS.DISABLED,
    maxPayloadLength: 64 << 20,
    idleTimeout: 0,
    maxBackpressure: 64 << 20,
    message: (ws, message, isBinary) => {
      ws.send(message, isBinary);
    },
  })
  .listen('127.0.0.1', port, (listenSocket) => {
    if (!listenSocket) {
      console.error(`uws_echo: cannot listen on 127.0.0.1:${port}`);
      process.exit(1);
    }
    console.error(`uws_echo: listening on 127.0.0.1:${port}`);
  });
