/**
 * The app the durable demo kills: Express, one notification per POST /orders, a SQLite outbox.
 * `node app.mjs <outbox file> <receiver url>`; answers 201 with `x-webhook-id` once the
 * notification is on disk (handle.persisted), so an acknowledged order is never lost.
 */
import express from 'express';
import { createDispatcher } from '@afterward/core';
import { sqliteOutbox } from '@afterward/sqlite';

const [path, receiverUrl] = process.argv.slice(2);
const dispatcher = createDispatcher({
  outbox: sqliteOutbox({ path, lease: 2_000 }),
  retry: { attempts: 10, minDelay: 500, maxDelay: 1_000 },
  breaker: false,
  logger: { warn: () => undefined, error: (o, message) => console.error(message) },
});

const app = express();
let next = 0;
app.post('/orders', (_req, res, fail) => {
  const n = ++next;
  const handle = dispatcher.send(`${receiverUrl}/orders`, { json: { order: n, pid: process.pid } });
  handle.persisted.then(() => void res.status(201).set('x-webhook-id', handle.id).json({ order: n }), fail);
});

await dispatcher.ready; // what the killed process left is scheduled again
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(
    `${JSON.stringify({ port: server.address().port, recovered: dispatcher.stats().queued + dispatcher.stats().inFlight })}\n`,
  );
});
