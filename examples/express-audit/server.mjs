/**
 * Runs the audit example standalone: a local audit sink on 127.0.0.1 that appends every record
 * to an NDJSON file (and prints it), and the app, which sends its records in NDJSON batches.
 * `node examples/express-audit/server.mjs`, then e.g. `curl localhost:3000/orders/42`.
 * Stops cleanly on SIGTERM / Ctrl-C: stop taking requests, then deliver what is still pending.
 */
import { appendFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDispatcher } from '@afterward/core';
import { sqliteOutbox } from '@afterward/sqlite';
import { createApp } from './app.mjs';

const auditFile = process.env.AUDIT_FILE ?? join(tmpdir(), 'afterward-audit.ndjson');
// Audit records wait in a durable outbox: one acknowledged is delivered even after a crash or a
// kill -9 (at the next start, with the same webhook id). Its directory must exist.
const outboxFile = process.env.OUTBOX_FILE ?? join(tmpdir(), 'afterward-audit-outbox.db');

// The sink answers 2xx only once the batch is on disk, so a failed write is retried by the app.
const sink = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    appendFile(auditFile, body).then(
      () => {
        for (const line of body.split('\n')) if (line !== '') console.log('audit event:', line);
        res.statusCode = 204;
        res.end();
      },
      (error) => {
        console.error('audit sink: cannot write', auditFile, error.message);
        res.statusCode = 503;
        res.end();
      },
    );
  });
});
await new Promise((resolve) => sink.listen(0, '127.0.0.1', () => resolve(undefined)));
const sinkAddress = /** @type {import('node:net').AddressInfo} */ (sink.address());

const { app, dispatcher } = createApp({
  dispatcher: createDispatcher({ outbox: sqliteOutbox({ path: outboxFile }) }),
  auditUrl: `http://127.0.0.1:${sinkAddress.port}/audit`,
  // Up to 100 records per request, each batch leaving at most 500 ms after its first record.
  batch: { format: 'ndjson', maxItems: 100, maxWaitMs: 500 },
});
const port = Number(process.env.PORT ?? 3000);
const server = app.listen(port, '127.0.0.1', () => {
  const { port: actual } = /** @type {import('node:net').AddressInfo} */ (server.address());
  console.log(
    `express-audit listening on http://127.0.0.1:${actual} (audit sink on port ${sinkAddress.port}, writing ${auditFile}; outbox ${outboxFile})`,
  );
});

async function shutdown() {
  // server.close() stops new connections and waits for open requests; closeIdleConnections drops keep-alive ones.
  await new Promise((resolve) => {
    server.close(resolve);
    server.closeIdleConnections();
  });
  const { drained, cancelled, kept } = await dispatcher.close({ timeout: 10_000 });
  console.log(
    `shut down: ${drained ? 'everything delivered' : `${kept} kept in ${outboxFile} for the next start, ${cancelled} cancelled`}`,
  );
  sink.close();
}

process.once('SIGTERM', () => void shutdown());
process.once('SIGINT', () => void shutdown());
