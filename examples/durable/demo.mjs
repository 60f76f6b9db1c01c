/**
 * `pnpm demo:durable`: an Express app with a SQLite outbox takes 20 orders, each sending a webhook;
 * the receiver is down (503), so they wait in backoff. The app is killed with SIGKILL mid-flight,
 * the receiver comes back, the app restarts, and the timeline shows every acknowledged
 * notification delivered after the restart, with the webhook id it was acknowledged with.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const dir = mkdtempSync(join(tmpdir(), 'afterward-durable-'));
const outbox = join(dir, 'outbox.db');
const t0 = performance.now();
const at = () => `${String(Math.round(performance.now() - t0)).padStart(5)} ms`;

let up = false;
/** @type {Map<string, { order: number, pid: number, at: string }>} */
const delivered = new Map();
const receiver = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    if (!up) return void res.writeHead(503).end();
    const id = String(req.headers['webhook-id']);
    const { order, pid } = JSON.parse(body);
    if (!delivered.has(id)) delivered.set(id, { order, pid, at: at() });
    console.log(
      `${at()}  delivered  order ${String(order).padStart(2)}  id ${id}  (acknowledged by pid ${pid})`,
    );
    res.writeHead(204).end();
  });
});
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', () => resolve(undefined)));
const receiverUrl = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (receiver.address()).port}`;

function start() {
  const child = fork(new URL('./app.mjs', import.meta.url), [outbox, receiverUrl], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  return new Promise((resolve) => {
    createInterface({ input: child.stdout }).once('line', (line) => resolve({ child, ...JSON.parse(line) }));
  });
}

console.log(`${at()}  receiver down (503); starting the app (outbox ${outbox})`);
const first = await start();
/** @type {Map<string, number>} */
const acked = new Map();
for (let i = 0; i < 20; i++) {
  const res = await fetch(`http://127.0.0.1:${first.port}/orders`, { method: 'POST' });
  const { order } = await res.json();
  acked.set(String(res.headers.get('x-webhook-id')), order);
}
console.log(`${at()}  20 orders acknowledged (each notification persisted); the receiver is failing them`);
await new Promise((resolve) => setTimeout(resolve, 700));
first.child.kill('SIGKILL');
await new Promise((resolve) => first.child.once('exit', resolve));
console.log(`${at()}  app (pid ${first.child.pid}) killed with SIGKILL mid-flight`);

up = true;
console.log(`${at()}  receiver back up; restarting the app`);
const second = await start();
console.log(
  `${at()}  app (pid ${second.child.pid}) ready: ${second.recovered} notifications recovered from the outbox (the killed pid is gone, so its leases were released at once)`,
);

const deadline = Date.now() + 15_000;
while ([...acked.keys()].some((id) => !delivered.has(id)) && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const lost = [...acked.keys()].filter((id) => !delivered.has(id));
console.log(
  `\nacknowledged ${acked.size}, delivered after the restart ${[...acked.keys()].filter((id) => delivered.has(id)).length}, lost ${lost.length}`,
);
second.child.kill('SIGTERM');
receiver.close();
rmSync(dir, { recursive: true, force: true });
process.exitCode = lost.length === 0 ? 0 : 1;
