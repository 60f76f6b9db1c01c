/**
 * afterward in ten seconds: an Express app records an audit event for every request, and the
 * audit sink is slow. The timeline shows each client getting its whole response first, and each
 * notification arriving after it, even when the sink takes 1.5 s to answer.
 *
 * Run: pnpm demo   (or: pnpm build && node examples/demo/demo.mjs)
 */
import { createServer, request } from 'node:http';
import { createDispatcher } from '@afterward/express';
import { createApp } from '../express-audit/app.mjs';

const SLOW_MS = 1_500;
const t0 = performance.now();
const since = () => String(Math.round(performance.now() - t0)).padStart(6);
const line = (who, text) => console.log(`${since()} ms  ${who.padEnd(7)} ${text}`);

let arrived = 0;
/** @type {(() => void) | undefined} */
let onArrival;

// The audit sink: takes SLOW_MS to answer events about POST requests, answers the rest at once.
const sink = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    arrived++;
    onArrival?.();
    const event = JSON.parse(body);
    const what = `${event.method} ${event.route ?? event.url} → ${event.status}`;
    const slow = event.method === 'POST';
    line(
      'sink',
      `✉ audit event arrived: ${what} in ${Math.round(event.durationMs * 10) / 10} ms${slow ? `  (sink will take ${SLOW_MS} ms to answer)` : ''}`,
    );
    setTimeout(
      () => {
        res.statusCode = 204;
        res.end();
        if (slow) line('sink', `… answered the ${what} event, ${SLOW_MS} ms after it arrived`);
      },
      slow ? SLOW_MS : 0,
    );
  });
});
const sinkUrl = await listen(sink);

const dispatcher = createDispatcher();
const { app } = createApp({ auditUrl: `${sinkUrl}/audit`, dispatcher });
const server = app.listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const appUrl = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`;

console.log('afterward demo: every request to an Express app sends an audit event with res.fireAndForget,');
console.log(
  `released only once the client has its response. The audit sink takes ${SLOW_MS} ms for POSTs.\n`,
);
console.log('  time     who     what');

/** @type {number[]} */
const clientTimes = [];
for (const [method, path, body] of [
  ['GET', '/orders/42'],
  ['POST', '/orders', '{"item":"teapot"}'],
  ['GET', '/orders/999'],
  ['GET', '/fail'],
]) {
  line('client', `→ ${method} ${path}`);
  const started = performance.now();
  const status = await send(method, `${appUrl}${path}`, body);
  clientTimes.push(performance.now() - started);
  line('client', `← ${status} for ${method} ${path}: whole response received`);
  // Only to keep the timeline readable: let this request's event arrive before the next request.
  await new Promise((resolve) => {
    onArrival = () => arrived === clientTimes.length && resolve(undefined);
    onArrival();
  });
}

await dispatcher.drain({ timeout: 5_000 });
const stats = dispatcher.stats();
line('app', `all delivered: ${stats.delivered} audit events, ${stats.failed} failed`);
console.log(
  `\nThe slowest client waited ${Math.round(Math.max(...clientTimes))} ms, while the sink took ${SLOW_MS} ms for one event.`,
);
console.log('An inline `await fetch(auditUrl)` would have made the POST client wait those 1.5 s.');

// The shutdown recipe: stop taking requests, then let the dispatcher finish (or cancel) what is left.
server.close();
await dispatcher.close();
sink.close();

/** @param {import('node:http').Server} s */
function listen(s) {
  return new Promise((resolve) => {
    s.listen(0, '127.0.0.1', () => {
      resolve(`http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (s.address()).port}`);
    });
  });
}

/** Sends a request and resolves with the status once the whole body has arrived. */
function send(method, url, body) {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
