import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { notificationJson, postgresBackend } from '../src/index.js';
import { jobId } from '../src/jobs.js';
import type { DroppedEvent, PostgresBackend } from '../src/index.js';
import {
  closedPort,
  connectionString,
  dropSchema,
  query,
  setupPostgres,
  startProxy,
  uniqueSchema,
  waitUntil,
} from './support.js';

const available = await setupPostgres();
const quiet = { warn: () => undefined, error: () => undefined };

describe.skipIf(!available)('postgresBackend (PostgreSQL)', () => {
  const schemas: string[] = [];
  const backends: PostgresBackend[] = [];
  const make = (options: Partial<Parameters<typeof postgresBackend>[0]> = {}): PostgresBackend => {
    const schema = uniqueSchema('backend');
    schemas.push(schema);
    const backend = postgresBackend({
      connectionString: connectionString(),
      schema,
      logger: quiet,
      ...options,
    });
    backends.push(backend);
    return backend;
  };
  const jobs = async (b: PostgresBackend): Promise<{ id: string; data: { id: string } }[]> =>
    query(`SELECT id::text, data FROM ${b.schema}.job WHERE name = $1`, [b.queue]);

  afterAll(async () => {
    for (const b of backends) await b.close({ timeout: 500 });
    for (const s of schemas) await dropSchema(s);
  });

  it('writes everything enqueued in one event-loop turn with ONE insert, and resolves persisted', async () => {
    const backend = make();
    await backend.start();
    const tickets = Array.from({ length: 200 }, (_, i) =>
      backend.enqueue(notificationJson(`https://hooks.example.com/${i}`, { json: { i } })),
    );
    expect(new Set(tickets.map((t) => t.persisted)).size).toBe(1);
    expect(await tickets[0]!.persisted).toEqual({ state: 'persisted' });
    expect(backend.stats()).toMatchObject({ batches: 1, persisted: 200, buffered: 0, dropped: 0 });
    const rows = await jobs(backend);
    expect(rows).toHaveLength(200);
    // The job id derives from the notification's storage key: a retried insert cannot duplicate it.
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(tickets.map((t) => jobId(t.key))));
  });

  it('keeps notifications in the local buffer through an outage and writes them once after it', async () => {
    const proxy = await startProxy();
    const backend = make({
      connectionString: connectionString(proxy.port),
      reconnect: { minDelay: 50, maxDelay: 200 },
    });
    await backend.start();
    const unavailable: unknown[] = [];
    const recovered: unknown[] = [];
    backend.on('unavailable', (e) => unavailable.push(e));
    backend.on('recovered', (e) => recovered.push(e));
    proxy.cut();
    const tickets = Array.from({ length: 50 }, (_, i) =>
      backend.enqueue(notificationJson(`https://a.example/${i}`)),
    );
    await new Promise((resolve) => setImmediate(resolve));
    const later = Array.from({ length: 30 }, (_, i) =>
      backend.enqueue(notificationJson(`https://b.example/${i}`)),
    );
    await waitUntil(() => unavailable.length === 1, 'unavailable event');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(backend.stats()).toMatchObject({ buffered: 80, unavailable: 1, persisted: 0 });
    proxy.restore();
    expect(await tickets[0]!.persisted).toEqual({ state: 'persisted' });
    expect(await later[0]!.persisted).toEqual({ state: 'persisted' });
    expect(recovered).toHaveLength(1);
    expect(backend.stats()).toMatchObject({ buffered: 0, unavailable: 0, persisted: 80, dropped: 0 });
    expect(await jobs(backend)).toHaveLength(80);
    await proxy.close();
  });

  it('drops what overflows the bounded buffer: counted, evented, logged; nothing crashes', async () => {
    const proxy = await startProxy();
    const warnings: string[] = [];
    const backend = make({
      connectionString: connectionString(proxy.port),
      maxBuffered: 10,
      reconnect: { minDelay: 50, maxDelay: 100 },
      logger: { warn: (_o, msg) => warnings.push(msg ?? ''), error: () => undefined },
    });
    await backend.start();
    proxy.cut();
    const dropped: DroppedEvent[] = [];
    backend.on('dropped', (e) => dropped.push(e));
    const tickets = Array.from({ length: 15 }, (_, i) =>
      backend.enqueue(notificationJson(`https://c.example/${i}`)),
    );
    expect(dropped).toHaveLength(5);
    expect(dropped[0]).toMatchObject({ reason: 'buffer-full', origin: 'https://c.example' });
    expect((await tickets[14]!.persisted).state).toBe('dropped');
    await waitUntil(() => warnings.some((w) => w.includes('buffer full')), 'a dropped warning');
    proxy.restore();
    expect(await tickets[0]!.persisted).toEqual({ state: 'persisted' });
    expect(backend.stats()).toMatchObject({ persisted: 10, dropped: 5 });
    await proxy.close();
  });

  it('survives a PostgreSQL that is not there at all, and close() reports the unwritten as dropped', async () => {
    const port = await closedPort();
    const backend = postgresBackend({
      connectionString: connectionString(port),
      schema: 'never_created',
      logger: quiet,
      reconnect: { minDelay: 20, maxDelay: 50 },
    });
    const ticket = backend.enqueue(notificationJson('https://d.example/x'));
    await waitUntil(() => backend.stats().insertFailures >= 2, 'retried inserts');
    const result = await backend.close({ timeout: 200 });
    expect(result).toEqual({ flushed: false, dropped: 1 });
    expect(await ticket.persisted).toMatchObject({ state: 'dropped' });
    expect(() => backend.enqueue(notificationJson('https://d.example/y'))).toThrow(/closed/);
  });

  describe('transactional add', () => {
    it('a rolled-back transaction leaves no job; a committed one does', async () => {
      const backend = make();
      await backend.start();
      const pool = new pg.Pool({ connectionString: connectionString() });
      const client = await pool.connect();
      try {
        await client.query('CREATE TEMP TABLE orders (id int)');
        await client.query('BEGIN');
        await client.query('INSERT INTO orders VALUES (1)');
        const rolledBack = await backend.add(client, 'https://shop.example/hook', { json: { order: 1 } });
        await client.query('ROLLBACK');

        await client.query('BEGIN');
        await client.query('INSERT INTO orders VALUES (2)');
        const committed = await backend.add(client, 'https://shop.example/hook', { json: { order: 2 } });
        // Not visible to anyone else before the commit.
        expect(await jobs(backend)).toHaveLength(0);
        await client.query('COMMIT');

        const rows = await jobs(backend);
        expect(rows.map((r) => r.data.id)).toEqual([committed]);
        expect(rows.map((r) => r.data.id)).not.toContain(rolledBack);
      } finally {
        client.release();
        await pool.end();
      }
    });
  });
});
