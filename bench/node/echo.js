'use strict';
// Node `ws` peer server for the moonws benchmarks, with rawecho's contract:
//   GET /chat (upgrade)      a subscriber: receives every broadcast, its own
//                            messages are dropped
//   POST /chat/broadcast     the body goes to every /chat subscriber as one
//                            text message, then 200
//   GET <other> (upgrade)    echo: each message comes back as it came
// Listens on 127.0.0.1 only and prints "node-ws: listening on ws://127.0.0.1:PORT".
//
// usage: node echo.js [PORT] [--deflate]     (PORT 0 or absent: a free port)
// permessage-deflate is off unless --deflate or WS_DEFLATE=1, so that echo
// compares like with like; the idle-with-compression test turns it on.

const http = require('http');
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const deflate = args.includes('--deflate') || process.env.WS_DEFLATE === '1';
const portArg = args.find((a) => /^\d+$/.test(a));
const port = portArg === undefined ? 0 : Number(portArg);
const BODY_MAX = 1024 * 1024;

const chat = new Set();

// One WebSocket server without its own HTTP listener, so the same HTTP
// server also answers the broadcast POST. maxPayload matches rawecho's cap.
const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: deflate,
  maxPayload: BODY_MAX,
  clientTracking: false,
});

function pathOf(url) {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

// The POST body is collected with a cap, then sent to every open subscriber
// as a text frame (ws frames the same Buffer for each).
function broadcast(req, res) {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > BODY_MAX) {
      res.writeHead(413, { Connection: 'close' }).end();
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (size > BODY_MAX) return;
    const body = Buffer.concat(chunks, size);
    for (const ws of chat) {
      if (ws.readyState === ws.OPEN) ws.send(body, { binary: false });
    }
    res.writeHead(200, { 'Content-Length': '0' }).end();
  });
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && pathOf(req.url) === '/chat/broadcast') {
    broadcast(req, res);
    return;
  }
  res.writeHead(404, { 'Content-Length': '0' }).end();
});

server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (pathOf(req.url) === '/chat') {
      chat.add(ws);
      ws.on('close', () => chat.delete(ws));
      return;
    }
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
});

server.listen(port, '127.0.0.1', () => {
  const { port: bound } = server.address();
  if (deflate) console.error('node-ws: permessage-deflate enabled');
  console.log(`node-ws: listening on ws://127.0.0.1:${bound}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
