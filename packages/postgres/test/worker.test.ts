import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createWorker, notificationJson, postgresBackend } from '../src/index.js';
import type { AttemptRunner, NotificationJson, PostgresBackend, Worker } from '../src/index.js';
import { testRunner } from './fixtures/runner.mjs';
import {
  closedPort,
  connectionString,
  dropSchema,
  query,
  setupPostgres,
  startProxy,
  startReceiver,
  uniqueSchema,
  waitUntil,
} from './support.js';
import type { Receiver } from './support.js';

const available = await setupPostgres();
const quiet = { warn: () => undefined, error: () => undefined };
const fast = { retry: { minDelay: 50, maxDelay: 100 } };

describe.skipIf(!available)('createWorker (PostgreSQL)', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const fn of cleanup.reverse()) await fn();
  });
  const setup = async (): Promise<PostgresBackend> => {
    const schema = uniqueSchema('worker');
    const backend = postgresBackend({ connectionString: connectionString(), schema, logger: quiet });
    cleanup.push(
      () => dropSchema(schema),
      () => backend.close({ timeout: 500 }),
    );
    await backend.start();
    return backend;
  };
  const receiver = async (...args: Parameters<typeof startReceiver>): Promise<Receiver> => {
    const r = await startReceiver(...args);
    cleanup.push(() => r.close());
    return r;
  };
  const worker = (backend: PostgresBackend, runner: AttemptRunner, extra: object = {}): Worker => {
    const w = createWorker({ backend, runner, pollInterval: 100, logger: quiet, ...extra });
    cleanup.push(
      () => runner.close(),
      () => w.close({ timeout: 500 }),
    );
    return w;
  };
  const states = async (b: PostgresBackend): Promise<Record<string, number>> => {
    const rows = await query<{ state: string; n: number }>(
      `SELECT state::text, count(*)::int AS n FROM ${b.schema}.job WHERE name = $1 GROUP BY 1`,
      [b.queue],
    );
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  };

  it('delivers a committed transactional add, and retries a 500 with the SAME webhook id', async () => {
    const backend = await setup();
    const r = await receiver((_req, count) => ({ status: count === 1 ? 500 : 200 }));
    const pool = new pg.Pool({ connectionString: connectionString() });
    const client = await pool.connect();
    await client.query('BEGIN');
    const id = await backend.add(client, r.url, { json: { order: 7 }, ...fast });
    await client.query('COMMIT');
    client.release();
    await pool.end();
    const w = worker(backend, testRunner());
    await waitUntil(() => r.requests.length === 2, 'two requests (500, then 200)');
    expect(r.requests.map((x) => x.id)).toEqual([id, id]);
    expect(JSON.parse(r.requests[1]!.body)).toEqual({ order: 7 });
    await waitUntil(() => w.stats().delivered === 1, 'delivered');
    expect(w.stats()).toMatchObject({ retried: 1, delivered: 1, failed: 0 });
    expect(await states(backend)).toEqual({ completed: 2 });
  });

  it('dead-letters a final failure with status, code, attempts and a redacted message', async () => {
    const backend = await setup();
    const r = await receiver(() => ({ status: 410 }));
    const port = await closedPort();
    const gone = backend.enqueue(notificationJson(r.url, fast));
    const refused = backend.enqueue(
      notificationJson(`http://user:pw@127.0.0.1:${port}/secret/path?token=abc`, {
        retry: { attempts: 2, minDelay: 20 },
      }),
    );
    await gone.persisted;
    const w = worker(backend, testRunner());
    await waitUntil(() => w.stats().failed === 2, 'two failures');
    const dead = await query<{
      id: string;
      status: number | null;
      error_code: string;
      error_message: string;
      attempts: number;
    }>(
      `SELECT id, status, error_code, error_message, attempts FROM ${backend.schema}.afterward_dead ORDER BY attempts`,
    );
    expect(dead[0]).toMatchObject({
      id: gone.id,
      status: 410,
      error_code: 'AFTERWARD_ERR_HTTP_STATUS',
      attempts: 1,
    });
    expect(dead[1]).toMatchObject({
      id: refused.id,
      status: null,
      error_code: 'AFTERWARD_ERR_NETWORK',
      attempts: 2,
    });
    expect(dead[1]!.error_message).toContain(`http://127.0.0.1:${port}`);
    expect(dead[1]!.error_message).not.toMatch(/secret|token|pw@|user/);
    expect(await states(backend)).toEqual({ completed: 3 });
  });

  it('holds without counting an attempt, and tries again at `until` (a local wake, not the poll)', async () => {
    const backend = await setup();
    const seen: { attempts: number; at: number }[] = [];
    let until = 0;
    const runner: AttemptRunner = {
      run: (n: NotificationJson) => {
        seen.push({ attempts: n.attempts, at: Date.now() });
        if (seen.length === 1) {
          until = Date.now() + 400;
          return Promise.resolve({ result: { kind: 'sent' }, decision: { kind: 'hold', until } });
        }
        return Promise.resolve({ result: { kind: 'sent' }, decision: { kind: 'sent' } });
      },
      close: () => Promise.resolve(),
    };
    backend.enqueue(notificationJson('https://held.example/x'));
    // A 5 s poll: the worker wakes itself when the re-scheduled job is due, not at the next poll.
    const w = worker(backend, runner, { pollInterval: 5_000 });
    await waitUntil(() => w.stats().sent === 1, 'sent after the hold', 4_000);
    expect(seen.map((s) => s.attempts)).toEqual([0, 0]);
    expect(seen[1]!.at).toBeGreaterThanOrEqual(until - 50);
    expect(w.stats().held).toBe(1);
  });

  it('drains a backlog that exists before it starts at full speed, not at polling speed', async () => {
    const backend = await setup();
    const r = await receiver();
    const tickets = Array.from({ length: 500 }, (_, i) =>
      backend.enqueue(notificationJson(`${r.url}?i=${i}`)),
    );
    await tickets[0]!.persisted;
    const started = Date.now();
    // A poll interval of 5 s: at polling speed (32 per poll) 500 jobs would take ~80 s. The bound is
    // loose because the 2-core test machine is shared (a quiet run drains in ~1-4 s).
    const w = worker(backend, testRunner(), { pollInterval: 5_000, concurrency: 32 });
    await waitUntil(() => w.stats().delivered === 500, '500 delivered', 20_000);
    const ms = Date.now() - started;
    process.stderr.write(`backlog of 500 drained in ${ms} ms by one worker\n`);
    expect(ms).toBeLessThan(15_000);
    expect(new Set(r.requests.map((x) => x.id)).size).toBe(500);
  });

  it('wakes an idle worker through LISTEN/NOTIFY, well before its poll interval', async () => {
    const backend = await setup();
    const r = await receiver();
    const w = worker(backend, testRunner(), { pollInterval: 10_000 });
    await w.ready();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const at = Date.now();
    backend.enqueue(notificationJson(r.url));
    await waitUntil(() => r.requests.length === 1, 'delivered', 5_000);
    expect(Date.now() - at).toBeLessThan(1_000);
  });

  it('close() drains within its deadline and returns the rest to the queue, same webhook id', async () => {
    const backend = await setup();
    // The first request of each id hangs (a slow receiver); later ones answer at once.
    const r = await receiver((_req, count) => ({ delay: count === 1 ? 5_000 : 0 }));
    const ids = Array.from({ length: 3 }, () => backend.enqueue(notificationJson(r.url)).id);
    const first = createWorker({ backend, runner: testRunner(), pollInterval: 100, logger: quiet });
    await waitUntil(() => r.inFlight === 3, 'three attempts in flight');
    const closed = await first.close({ timeout: 200 });
    expect(closed).toEqual({ drained: false, returned: 3 });
    expect(first.stats()).toMatchObject({ returned: 3, delivered: 0 });
    const pending = await query<{ data: NotificationJson }>(
      `SELECT data FROM ${backend.schema}.job WHERE name = $1 AND state = 'created'`,
      [backend.queue],
    );
    expect(pending.map((p) => p.data.attempts)).toEqual([1, 1, 1]);
    const second = worker(backend, testRunner());
    await waitUntil(() => second.stats().delivered === 3, 'delivered by the next worker');
    expect(new Set(r.requests.map((x) => x.id))).toEqual(new Set(ids));
  });

  it('rides out a PostgreSQL outage: fetch errors are retried, nothing crashes, the backlog goes out after', async () => {
    const producer = await setup();
    const proxy = await startProxy();
    cleanup.push(() => proxy.close());
    const viaProxy = postgresBackend({
      connectionString: connectionString(proxy.port),
      schema: producer.schema,
      logger: quiet,
    });
    cleanup.push(() => viaProxy.close({ timeout: 500 }));
    const r = await receiver();
    const w = worker(viaProxy, testRunner());
    await w.ready();
    proxy.cut();
    for (let i = 0; i < 20; i++) producer.enqueue(notificationJson(`${r.url}?i=${i}`));
    await producer.flush();
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(r.requests).toHaveLength(0);
    proxy.restore();
    await waitUntil(() => w.stats().delivered === 20, '20 delivered after the outage');
    expect(new Set(r.requests.map((x) => x.id)).size).toBe(20);
  });

  it('holds a per-origin limit of 1 across four workers fetching at once (unserialised pg-boss fetches do not)', async () => {
    const backend = await setup();
    const r = await receiver(() => ({ delay: 20 }));
    for (let i = 0; i < 40; i++) backend.enqueue(notificationJson(`${r.url}?i=${i}`));
    await backend.flush();
    const workers = Array.from({ length: 4 }, () => {
      const own = postgresBackend({
        connectionString: connectionString(),
        schema: backend.schema,
        logger: quiet,
      });
      cleanup.push(() => own.close({ timeout: 500 }));
      return worker(own, testRunner(), { concurrencyPerOrigin: 1, concurrency: 8 });
    });
    await waitUntil(
      () => workers.reduce((n, w) => n + w.stats().delivered, 0) === 40,
      '40 delivered',
      20_000,
    );
    expect(r.maxConcurrent).toBe(1);
  });
});
