import { afterAll, describe, expect, it } from 'vitest';
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createWorker, notificationJson, postgresBackend } from '../src/index.js';
import type { PostgresBackendOptions } from '../src/index.js';
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
const script = fileURLToPath(new URL('./fixtures/worker-process.mjs', import.meta.url));

interface Child {
  proc: ChildProcess;
  output: string[];
  ready: Promise<void>;
  exited: Promise<number | null>;
}

function spawnWorker(config: object): Child {
  const proc = fork(script, [JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const output: string[] = [];
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (chunk: string) => {
    for (const line of chunk.split('\n').filter(Boolean)) {
      output.push(line);
      if (line === 'ready') onReady();
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, output, ready, exited };
}

describe.skipIf(!available)('a fleet of worker processes (PostgreSQL)', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  const children: Child[] = [];
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    for (const fn of cleanup.reverse()) await fn();
  });

  it('two worker processes never exceed the per-origin limit at a receiver, and share the work', async () => {
    const schema = uniqueSchema('fleet');
    const backendOptions: PostgresBackendOptions = { connectionString: connectionString(), schema };
    const backend = postgresBackend({ ...backendOptions, logger: quiet });
    cleanup.push(
      () => dropSchema(schema),
      () => backend.close({ timeout: 500 }),
    );
    await backend.start();
    const receivers = [
      await startReceiver(() => ({ delay: 30 })),
      await startReceiver(() => ({ delay: 30 })),
    ];
    for (const r of receivers) cleanup.push(() => r.close());
    // Two slots per worker, two per origin, two origins: each worker alone could put both of its
    // attempts on one origin, so together they could put four there without the fleet-wide limit;
    // and neither can take all four slots, so both must work.
    const config = {
      backend: backendOptions,
      worker: { concurrency: 2, concurrencyPerOrigin: 2, pollInterval: 200 },
    };
    const workers = [spawnWorker(config), spawnWorker(config)];
    children.push(...workers);
    await Promise.all(workers.map((w) => w.ready));
    for (let i = 0; i < 60; i++)
      for (const r of receivers) backend.enqueue(notificationJson(`${r.url}?i=${i}`));
    await backend.flush();
    await waitUntil(() => receivers.every((r) => r.requests.length === 60), '120 deliveries', 30_000);
    for (const w of workers) w.proc.kill('SIGTERM');
    const codes = await Promise.all(workers.map((w) => w.exited));
    expect(codes).toEqual([0, 0]);
    for (const r of receivers) {
      expect(r.maxConcurrent).toBeLessThanOrEqual(2);
      expect(new Set(r.requests.map((x) => x.id)).size).toBe(60);
    }
    const stats = workers.map((w) => JSON.parse(w.output.at(-1)!) as { stats: { delivered: number } });
    process.stderr.write(
      `work split between the two worker processes: ${stats.map((s) => s.stats.delivered).join(' / ')}\n`,
    );
    expect(stats.every((s) => s.stats.delivered > 0)).toBe(true);
    expect(stats[0]!.stats.delivered + stats[1]!.stats.delivered).toBe(120);
  });

  it("a SIGKILLed worker's jobs come back after their lease and are delivered with the same id", async () => {
    const schema = uniqueSchema('kill');
    // Lease = total timeout (1 s) + 1 s margin; pg-boss looks for expired leases every second.
    const backendOptions: PostgresBackendOptions = {
      connectionString: connectionString(),
      schema,
      leaseMarginSeconds: 1,
      superviseIntervalSeconds: 1,
    };
    const backend = postgresBackend({ ...backendOptions, logger: quiet });
    cleanup.push(
      () => dropSchema(schema),
      () => backend.close({ timeout: 500 }),
    );
    await backend.start();
    // The first request of each id hangs (in flight at the kill); later ones answer at once.
    const r = await startReceiver((_req, count) => ({ delay: count === 1 ? 10_000 : 0 }));
    cleanup.push(() => r.close());
    const victim = spawnWorker({ backend: backendOptions, worker: { pollInterval: 200 } });
    children.push(victim);
    await victim.ready;
    const ids = Array.from(
      { length: 5 },
      () => backend.enqueue(notificationJson(r.url, { timeout: { total: 1_000, response: 20_000 } })).id,
    );
    await waitUntil(() => r.inFlight === 5, 'five attempts in flight in the victim');
    victim.proc.kill('SIGKILL');
    await victim.exited;
    const killedAt = Date.now();
    const runner = testRunner();
    const survivor = createWorker({ backend, runner, pollInterval: 200, logger: quiet });
    cleanup.push(
      () => runner.close(),
      () => survivor.close({ timeout: 500 }),
    );
    await waitUntil(() => survivor.stats().delivered === 5, 'the five delivered after their lease', 20_000);
    process.stderr.write(`jobs of the killed worker delivered ${Date.now() - killedAt} ms after the kill\n`);
    const perId = new Map<string, number>();
    for (const x of r.requests) perId.set(x.id, (perId.get(x.id) ?? 0) + 1);
    // Each id twice: once in flight at the kill, once after the lease; never a different id.
    expect([...perId.keys()].sort()).toEqual([...ids].sort());
    expect([...perId.values()]).toEqual([2, 2, 2, 2, 2]);
  });
});
