/**
 * Runs the audit example standalone: a local audit sink on 127.0.0.1 that prints what it gets,
 * and the app. `node examples/express-audit/server.mjs`, then e.g. `curl localhost:3000/orders/42`.
 * Stops cleanly on SIGTERM / Ctrl-C: stop taking requests, then deliver what is still pending.
 */
import { createServer } from 'node:http';
import { createApp } from './app.mjs';

const sink = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    console.log('audit event:', body);
    res.statusCode = 204;
    res.end();
  });
});
await new Promise((resolve) => sink.listen(0, '127.0.0.1', () => resolve(undefined)));
const sinkAddress = /** @type {import('node:net').AddressInfo} */ (sink.address());

const { app, dispatcher } = createApp({ auditUrl: `http://127.0.0.1:${sinkAddress.port}/audit` });
const port = Number(process.env.PORT ?? 3000);
const server = app.listen(port, '127.0.0.1', () => {
  const { port: actual } = /** @type {import('node:net').AddressInfo} */ (server.address());
  console.log(
    `express-audit listening on http://127.0.0.1:${actual} (audit sink on port ${sinkAddress.port})`,
  );
});

async function shutdown() {
  // server.close() stops new connections and waits for open requests; closeIdleConnections drops keep-alive ones.
  await new Promise((resolve) => {
    server.close(resolve);
    server.closeIdleConnections();
  });
  const { drained, cancelled } = await dispatcher.close({ timeout: 10_000 });
  console.log(`shut down: ${drained ? 'everything delivered' : `${cancelled} item(s) cancelled`}`);
  sink.close();
}

process.once('SIGTERM', () => void shutdown());
process.once('SIGINT', () => void shutdown());
