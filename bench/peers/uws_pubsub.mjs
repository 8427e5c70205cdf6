// uWebSockets.js pub/sub server with the semantics of `weft serve`'s
// /topic/{name}: a socket subscribes to topic `name` when it opens; every
// message it sends is published verbatim to the topic with
// `app.publish(topic, message, isBinary)`, which reaches every subscriber,
// the sender included. No compression, messages up to 64 KiB, idle timeout
// off. A subscriber more than 1 MiB behind is closed rather than skipped
// (closeOnBackpressureLimit), as weft closes one that falls behind instead of
// dropping its messages.
// Usage: node uws_pubsub.mjs PORT
import uWS from './uws_native.mjs';

const port = Number(process.argv[2]);
if (!port) {
  console.error('usage: node uws_pubsub.mjs PORT');
  process.exit(2);
}
const validName = (name) => /^[A-Za-z0-9_-]{1,64}$/.test(name);

const app = uWS.App();
app
  .ws('/topic/:name', {
    compression: uWS.DISABLED,
    maxPayloadLength: 64 * 1024,
    idleTimeout: 0,
    maxBackpressure: 1024 * 1024,
    closeOnBackpressureLimit: true,
    upgrade: (res, req, context) => {
      const name = req.getParameter(0);
      if (!validName(name)) {
        res.writeStatus('400 Bad Request').end('topic names are 1 to 64 of A-Z a-z 0-9 _ -\n');
        return;
      }
      res.upgrade(
        { topic: `topic:${name}` },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => {
      ws.subscribe(ws.getUserData().topic);
    },
    message: (ws, message, isBinary) => {
      app.publish(ws.getUserData().topic, message, isBinary);
    },
  })
  .listen('127.0.0.1', port, (listenSocket) => {
    if (!listenSocket) {
      console.error(`uws_pubsub: cannot listen on 127.0.0.1:${port}`);
      process.exit(1);
    }
    console.error(`uws_pubsub: listening on 127.0.0.1:${port}`);
  });
