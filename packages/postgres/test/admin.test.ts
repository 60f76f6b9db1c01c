import { afterAll, describe, expect, it } from 'vitest';
import { createWorker, notificationJson, postgresAdmin, postgresBackend } from '../src/index.js';
import { testRunner } from './fixtures/runner.mjs';
import {
  connectionString,
  dropSchema,
  setupPostgres,
  startReceiver,
  uniqueSchema,
  waitUntil,
} from './support.js';

const available = await setupPostgres();
const quiet = { warn: () => undefined, error: () => undefined };

describe.skipIf(!available)('postgresAdmin (PostgreSQL)', () => {
  const schema = uniqueSchema('admin');
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const fn of cleanup.reverse()) await fn();
    await dropSchema(schema);
  });

  it('lists, shows, replays (idempotently, same webhook id), purges dead letters, and counts', async () => {
    const backend = postgresBackend({ connectionString: connectionString(), schema, logger: quiet });
    cleanup.push(() => backend.close({ timeout: 500 }));
    await backend.start();
    // 410 until `healed`, then 200.
    let healed = false;
    const gone = await startReceiver(() => ({ status: healed ? 200 : 410 }));
    const broken = await startReceiver(() => ({ status: 400 }));
    cleanup.push(
      () => gone.close(),
      () => broken.close(),
    );
    const a = backend.enqueue(notificationJson(`${gone.url}?secret=1`, { json: { a: 1 } }));
    const b = backend.enqueue(notificationJson(broken.url));
    await a.persisted;
    const runner = testRunner();
    const worker = createWorker({ backend, runner, pollInterval: 100, logger: quiet });
    cleanup.push(
      () => runner.close(),
      () => worker.close({ timeout: 500 }),
    );
    await waitUntil(() => worker.stats().failed === 2, 'two dead letters');

    const admin = postgresAdmin({ connectionString: connectionString(), schema });
    cleanup.push(() => admin.close());
    const all = await admin.listDead({});
    expect(all.map((d) => d.id).sort()).toEqual([a.id, b.id].sort());
    const onlyGone = await admin.listDead({ status: 410 });
    expect(onlyGone).toHaveLength(1);
    expect(onlyGone[0]).toMatchObject({
      key: a.key,
      id: a.id,
      url: `${gone.url}?secret=1`,
      origin: gone.origin,
      method: 'POST',
      status: 410,
      errorCode: 'AFTERWARD_ERR_HTTP_STATUS',
      attempts: 1,
      reason: 'failed',
    });
    expect(onlyGone[0]!.errorMessage).not.toContain('secret');
    expect(onlyGone[0]!.failedAt).toBeGreaterThanOrEqual(onlyGone[0]!.createdAt);
    expect(await admin.listDead({ origin: broken.origin })).toHaveLength(1);
    expect(await admin.listDead({ since: Date.now() + 60_000 })).toHaveLength(0);
    expect((await admin.showDead(a.id))?.key).toBe(a.key);
    expect((await admin.showDead(a.key))?.id).toBe(a.id);
    expect(await admin.showDead('nope')).toBeUndefined();
    expect(await admin.stats()).toMatchObject({ dead: 2, pending: 0, leased: 0 });

    healed = true;
    const before = gone.requests.length;
    expect(await admin.replayDead(a.id)).toBe(true);
    expect(await admin.replayDead(a.id)).toBe(false);
    await waitUntil(() => worker.stats().delivered === 1, 'the replay delivered');
    expect(gone.requests.slice(before).map((r) => r.id)).toEqual([a.id]);
    expect(await admin.listDead({})).toHaveLength(1);

    expect(await admin.purgeDead({ origin: 'https://nothing.example' })).toBe(0);
    expect(await admin.purgeDead({ errorCode: 'AFTERWARD_ERR_HTTP_STATUS' })).toBe(1);
    expect(await admin.stats()).toMatchObject({ dead: 0, completed: 3 });
  });
});
