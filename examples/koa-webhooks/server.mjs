/**
 * Runs the webhooks example standalone: a local "customer endpoint" on 127.0.0.1 that checks the
 * Standard Webhooks signature of what it gets, subscribed to the app, and the app itself.
 * `node examples/koa-webhooks/server.mjs`, then
 * `curl -X POST localhost:3001/orders -d '{"item":"teapot"}'`.
 * Stops cleanly on SIGTERM / Ctrl-C: stop taking requests, then deliver what is still pending.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { createDispatcher } from '@afterward/koa';
import { createApp } from './app.mjs';

const secret = process.env.WEBHOOK_SECRET ?? `whsec_${randomBytes(24).toString('base64')}`;

const customer = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    const ok = verify(secret, req.headers, body);
    console.log(`webhook ${req.headers['webhook-id']} signature ${ok ? 'valid' : 'INVALID'}:`, body);
    res.statusCode = ok ? 204 : 401;
    res.end();
  });
});
await new Promise((resolve) => customer.listen(0, '127.0.0.1', () => resolve(undefined)));
const customerPort = /** @type {import('node:net').AddressInfo} */ (customer.address()).port;

const dispatcher = createDispatcher({ signing: { secret } });
const app = createApp({ dispatcher, subscribers: [`http://127.0.0.1:${customerPort}/webhooks`] });
const port = Number(process.env.PORT ?? 3001);
const server = app.listen(port, '127.0.0.1', () => {
  const { port: actual } = /** @type {import('node:net').AddressInfo} */ (server.address());
  console.log(
    `koa-webhooks listening on http://127.0.0.1:${actual} (customer endpoint on port ${customerPort})`,
  );
});

async function shutdown() {
  await new Promise((resolve) => {
    server.close(resolve);
    server.closeIdleConnections();
  });
  const { drained, cancelled } = await dispatcher.close({ timeout: 10_000 });
  console.log(`shut down: ${drained ? 'everything delivered' : `${cancelled} webhook(s) cancelled`}`);
  customer.close();
}

process.once('SIGTERM', () => void shutdown());
process.once('SIGINT', () => void shutdown());

/**
 * What a customer does with a Standard Webhooks request: HMAC-SHA256 of `id.timestamp.body`.
 * @param {string} secret
 * @param {import('node:http').IncomingHttpHeaders} headers
 * @param {string} body
 */
function verify(secret, headers, body) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const signed = `${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`;
  const expected = createHmac('sha256', key).update(signed).digest();
  return String(headers['webhook-signature'] ?? '')
    .split(' ')
    .map((part) => Buffer.from(part.replace(/^v1,/, ''), 'base64'))
    .some((given) => given.length === expected.length && timingSafeEqual(given, expected));
}
