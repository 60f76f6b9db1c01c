// `pnpm demo:fleet`: two app instances and one `afterward worker` against PostgreSQL, and a
// receiver. Orders go to the apps round-robin; each app hands its notifications to PostgreSQL; the
// one worker delivers them all. DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/postgres.
import { fork, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const schema = `afterward_demo_${process.pid}`;
const ORDERS = 60;

const byApp = new Map();
const receiver = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const { app } = JSON.parse(body);
    byApp.set(app, (byApp.get(app) ?? 0) + 1);
    res.end();
  });
});
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const hook = `http://127.0.0.1:${receiver.address().port}/hook`;

const lineOf = (child, match) =>
  new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk.replace(/^/gm, '  '));
      const line = chunk.split('\n').find((l) => match.test(l));
      if (line !== undefined) resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code} (is PostgreSQL at ${url}?)`)));
  });

const apps = ['app-a', 'app-b'].map((name) =>
  fork(fileURLToPath(new URL('./app.mjs', import.meta.url)), [name, url, schema], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  }),
);
const ports = await Promise.all(apps.map(async (a) => Number((await lineOf(a, /^listening/)).split(' ')[1])));
const bin = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));
const worker = spawn(process.execPath, [bin, 'worker', '--postgres', url, '--concurrency', '8'], {
  env: { ...process.env, AFTERWARD_POSTGRES_SCHEMA: schema },
  stdio: ['ignore', 'pipe', 'inherit'],
});
await lineOf(worker, /ready/);

console.log(`${ORDERS} orders, round-robin over two app instances; one worker delivers`);
for (let i = 0; i < ORDERS; i++) {
  await fetch(`http://127.0.0.1:${ports[i % 2]}/orders/${i}?hook=${encodeURIComponent(hook)}`, {
    method: 'POST',
  });
}
const until = Date.now() + 20_000;
while ([...byApp.values()].reduce((a, b) => a + b, 0) < ORDERS && Date.now() < until) {
  await new Promise((r) => setTimeout(r, 50));
}
console.log('delivered by the worker, by the app that took the order:', Object.fromEntries(byApp));
for (const a of apps) a.kill('SIGTERM');
worker.kill('SIGTERM');
await Promise.all([...apps, worker].map((c) => new Promise((r) => c.once('exit', r))));
receiver.close();
const db = new pg.Client({ connectionString: url });
await db.connect();
await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
await db.end();
