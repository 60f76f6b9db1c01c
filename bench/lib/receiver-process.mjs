// The far side of every benchmark: a plain node:http server in its own process, on 127.0.0.1.
// It reads every body, counts the complete ones, and answers `status` after `delayMs`.
import { createServer } from 'node:http';
import { serve } from './rpc.mjs';

const config = { delayMs: 0, status: 204, ...JSON.parse(process.argv[2] ?? '{}') };
const counts = { requests: 0, fullBodies: 0, partialBodies: 0, bytes: 0, connections: 0 };
const answer = config.status === 204 ? '' : '{"ok":true}';

const server = createServer((req, res) => {
  counts.requests++;
  const expected = Number(req.headers['content-length'] ?? -1);
  let received = 0;
  req.on('data', (chunk) => {
    received += chunk.length;
  });
  req.on('end', () => {
    counts.bytes += received;
    if (expected < 0 || received === expected) counts.fullBodies++;
    else counts.partialBodies++;
    const respond = () => {
      if (res.destroyed) return;
      res.writeHead(config.status, answer === '' ? {} : { 'content-type': 'application/json' });
      res.end(answer);
    };
    if (config.delayMs > 0) setTimeout(respond, config.delayMs);
    else respond();
  });
  req.on('error', () => undefined);
  res.on('error', () => undefined);
});
server.on('connection', (socket) => {
  counts.connections++;
  socket.on('error', () => undefined);
});
server.on('clientError', (_error, socket) => socket.destroy());
server.keepAliveTimeout = 30_000;
server.maxRequestsPerSocket = 0;

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  serve(
    {
      stats: () => ({ ...counts }),
      reset: () => {
        for (const key of Object.keys(counts)) counts[key] = 0;
        return null;
      },
      /** Resolves once `fullBodies` reaches `count` or `timeoutMs` passed; returns the counts. */
      waitFor: ({ count, timeoutMs }) =>
        new Promise((resolve) => {
          const started = Date.now();
          const check = () => {
            if (counts.fullBodies >= count || Date.now() - started >= timeoutMs) resolve({ ...counts });
            else setTimeout(check, 5);
          };
          check();
        }),
    },
    { ready: { port }, onExit: () => new Promise((resolve) => server.close(resolve)) },
  );
});
