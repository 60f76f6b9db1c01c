// The real `afterward` bin against PostgreSQL: `worker`, `dead …` and `stats` with --postgres.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { notificationJson, postgresBackend } from '../src/index.js';
import type { PostgresBackend } from '../src/index.js';
import {
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
const BIN = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
const quiet = { warn: () => undefined, error: () => undefined };

function spawnBin(
  args: string[],
  schema: string,
): { child: ChildProcess; out: () => string; code: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, AFTERWARD_POSTGRES_SCHEMA: schema },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const code = new Promise<number | null>((resolve) => child.on('close', resolve));
  return { child, out: () => out, code };
}

async function bin(args: string[], schema: string): Promise<{ code: number | null; out: string }> {
  const run = spawnBin(args, schema);
  const code = await run.code;
  return { code, out: run.out() };
}

describe.skipIf(!available)('afterward CLI with --postgres (the real bin)', () => {
  const schema = uniqueSchema('cli');
  const url = connectionString();
  let backend: PostgresBackend;
  const receivers: Receiver[] = [];
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await backend?.close({ timeout: 500 });
    for (const r of receivers) await r.close();
    await dropSchema(schema);
  });

  it('worker delivers, dead-letters a 410; dead list/show/replay and stats read the same fleet', async () => {
    backend = postgresBackend({ connectionString: url, schema, logger: quiet });
    await backend.start();
    const ok = await startReceiver();
    const gone = await startReceiver(() => ({ status: 410 }));
    receivers.push(ok, gone);
    const ids = Array.from(
      { length: 10 },
      (_, i) => backend.enqueue(notificationJson(`${ok.url}?i=${i}`)).id,
    );
    const dead = backend.enqueue(notificationJson(`${gone.url}?token=secret`, { retry: false })).id;
    await backend.flush();

    const worker = spawnBin(['worker', '--postgres', url, '--concurrency', '4'], schema);
    children.push(worker.child);
    await waitUntil(() => ok.requests.length === 10 && gone.requests.length === 1, 'worker delivered');
    expect(new Set(ok.requests.map((r) => r.id))).toEqual(new Set(ids));
    await waitUntil(
      async () => (await query(`SELECT 1 FROM ${schema}.afterward_dead WHERE id = $1`, [dead])).length === 1,
      'dead letter written',
    );

    const list = await bin(['dead', 'list', '--postgres', url, '--json'], schema);
    expect(list.code).toBe(0);
    const rows = JSON.parse(list.out) as { id: string; status: number; url: string }[];
    expect(rows.map((r) => [r.id, r.status])).toEqual([[dead, 410]]);
    const show = await bin(['dead', 'show', '--postgres', url, dead], schema);
    expect(show.code).toBe(0);
    expect(show.out).toContain(dead);
    const stats = await bin(['stats', '--postgres', url, '--json'], schema);
    expect(stats.code).toBe(0);
    expect(JSON.parse(stats.out)).toMatchObject({ dead: 1 });
    const replay = await bin(['dead', 'replay', '--postgres', url, dead], schema);
    expect(replay.code).toBe(0);
    // The running worker takes the replay: the receiver sees the SAME webhook id again.
    await waitUntil(() => gone.requests.length === 2, 'replayed');
    expect(gone.requests.map((r) => r.id)).toEqual([dead, dead]);

    worker.child.kill('SIGTERM');
    expect(await worker.code).toBe(0);
    expect(worker.out()).toContain('"stopped":true');
  });

  it('worker on SIGTERM drains within --drain-timeout and returns the rest to the queue', async () => {
    const slow = await startReceiver(() => ({ delay: 5_000 }));
    receivers.push(slow);
    for (let i = 0; i < 3; i++)
      backend.enqueue(
        notificationJson(`${slow.url}?i=${i}`, { timeout: { total: 20_000, response: 20_000 } }),
      );
    await backend.flush();
    const worker = spawnBin(['worker', '--postgres', url, '--drain-timeout', '300'], schema);
    children.push(worker.child);
    await waitUntil(() => slow.inFlight === 3, 'three attempts in flight');
    const started = Date.now();
    worker.child.kill('SIGTERM');
    expect(await worker.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(4_000);
    const summary = JSON.parse(
      worker
        .out()
        .split('\n')
        .find((l) => l.includes('"stopped"')) ?? '{}',
    ) as {
      drained: boolean;
      returned: number;
    };
    expect(summary).toMatchObject({ drained: false, returned: 3 });
    const stats = JSON.parse((await bin(['stats', '--postgres', url, '--json'], schema)).out) as {
      pending: number;
    };
    expect(stats.pending).toBe(3);
  });

  it('worker without --postgres is a usage error (exit 2)', async () => {
    const run = await bin(['worker'], schema);
    expect(run.code).toBe(2);
    expect(run.out).toContain('--postgres');
  });
});
