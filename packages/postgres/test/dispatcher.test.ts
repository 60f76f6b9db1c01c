import { afterAll, describe, expect, it } from 'vitest';
import { createDispatcher } from '@afterward/core';
import type { Dispatcher } from '@afterward/core';
import { createWorker, postgresBackend } from '../src/index.js';
import type { PostgresBackend } from '../src/index.js';
import {
  closedPort,
  connectionString,
  dropSchema,
  query,
  setupPostgres,
  startReceiver,
  uniqueSchema,
  waitUntil,
} from './support.js';
import type { Receiver } from './support.js';

const available = await setupPostgres();
const quiet = { warn: () => undefined, error: () => undefined };

describe.skipIf(!available)('createDispatcher({ backend: postgresBackend() })', () => {
  const schemas: string[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    for (const s of schemas) await dropSchema(s);
  });
  const backendOn = (connection: string, extra: object = {}): PostgresBackend => {
    const schema = uniqueSchema('disp');
    schemas.push(schema);
    return postgresBackend({ connectionString: connection, schema, logger: quiet, ...extra });
  };
  const dispatcherOn = (backend: PostgresBackend): Dispatcher => {
    const d = createDispatcher({ backend, logger: quiet });
    cleanups.push(() => d.close({ timeout: 500 }));
    return d;
  };

  it('send() stays synchronous; the handle is queued, then sent once committed; a worker delivers with the same id', async () => {
    const r: Receiver = await startReceiver();
    cleanups.push(() => r.close());
    const backend = backendOn(connectionString());
    await backend.start();
    const dispatcher = dispatcherOn(backend);
    const handles = Array.from({ length: 50 }, (_, i) => dispatcher.send(`${r.url}?i=${i}`, { json: { i } }));
    expect(handles.every((h) => h.state === 'queued')).toBe(true);
    await handles[49]!.persisted;
    const results = await Promise.all(handles.map((h) => h.done));
    expect(results.every((x) => x.state === 'sent' && x.attempts === 0 && x.error === undefined)).toBe(true);
    expect(dispatcher.stats()).toMatchObject({ sent: 50, dropped: 0, queued: 0, inFlight: 0 });
    const rows = await query<{ count: string }>(
      `SELECT count(*)::text AS count FROM ${backend.schema}.job WHERE name = $1`,
      [backend.queue],
    );
    expect(rows[0]?.count).toBe('50');
    // Nothing was sent from the app process: the worker delivers.
    expect(r.requests).toHaveLength(0);
    const worker = createWorker({ backend, breaker: false, logger: quiet, pollInterval: 100 });
    cleanups.push(() => worker.close({ timeout: 500 }));
    await waitUntil(() => r.requests.length === 50, '50 delivered by the worker');
    expect(new Set(r.requests.map((x) => x.id))).toEqual(new Set(handles.map((h) => h.id)));
  });

  it('PostgreSQL unreachable: what overflows the buffer is dropped (state, event, stats); nothing throws', async () => {
    const backend = backendOn(connectionString(await closedPort()), {
      maxBuffered: 5,
      reconnect: { minDelay: 50, maxDelay: 50 },
    });
    const dispatcher = dispatcherOn(backend);
    const dropped: string[] = [];
    dispatcher.on('dropped', (e) => dropped.push(e.id));
    const handles = Array.from({ length: 8 }, () => dispatcher.send('https://hooks.example.com/x'));
    await Promise.all(handles.slice(5).map((h) => h.done));
    expect(handles.slice(5).map((h) => h.state)).toEqual(['dropped', 'dropped', 'dropped']);
    expect(handles.slice(0, 5).map((h) => h.state)).toEqual(Array(5).fill('queued'));
    expect(dropped).toEqual(handles.slice(5).map((h) => h.id));
    expect(dispatcher.stats()).toMatchObject({ dropped: 3, sent: 0 });
    const closed = await dispatcher.close({ timeout: 200 });
    expect(closed.drained).toBe(false);
    expect(handles.every((h) => h.settled)).toBe(true);
  });
});
