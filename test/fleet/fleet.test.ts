// The fleet proof (issue 14): 3 forked Express apps hand notifications to PostgreSQL, 2 real
// `afterward worker` processes deliver them to 20 origins. One worker is SIGKILLed mid-flight and
// restarted; PostgreSQL itself is restarted once. Nothing may be lost, duplicates are only of jobs
// in flight at a disruption (same webhook id), and no origin ever sees more than the per-origin limit.
import { execFileSync, fork, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { postgresBackend } from '@afterward/postgres';
import {
  connectionString,
  dropSchema,
  setupPostgres,
  uniqueSchema,
  waitUntil,
} from '../../packages/postgres/test/support.js';

const available = await setupPostgres();
// 10,000 across 20 origins fits in about a minute on the 2-core CI box; FLEET_N overrides it.
const N = Number(process.env.FLEET_N ?? 10_000);
const ORIGINS = 20;
const PER_ORIGIN = 3;
const APP = fileURLToPath(new URL('./fixtures/app.mjs', import.meta.url));
const BIN = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));

interface Origin {
  url: string;
  server: Server;
  inFlight: number;
  max: number;
}

interface Proc {
  proc: ChildProcess;
  lines: string[];
  line: (match: RegExp) => Promise<string>;
}

function watch(proc: ChildProcess): Proc {
  const lines: string[] = [];
  const waiters: { match: RegExp; resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  proc.once('exit', (code, signal) => {
    for (const w of waiters.splice(0))
      w.reject(new Error(`process exited (${code ?? signal}) before ${w.match}`));
  });
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (chunk: string) => {
    for (const line of chunk.split('\n').filter(Boolean)) {
      lines.push(line);
      for (const w of waiters.filter((x) => x.match.test(line))) w.resolve(line);
    }
  });
  return {
    proc,
    lines,
    line: (match) =>
      new Promise((resolve, reject) => {
        const found = lines.find((l) => match.test(l));
        if (found !== undefined) resolve(found);
        else waiters.push({ match, resolve, reject });
      }),
  };
}

function restartPostgres(): void {
  const version = readdirSync('/etc/postgresql')[0]!;
  execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'restart'], {
    stdio: 'ignore',
  });
}

describe.skipIf(!available)('the fleet: 3 apps, 2 workers, PostgreSQL restarted, a worker killed', () => {
  const schema = uniqueSchema('fleetproof');
  const url = connectionString();
  const procs: ChildProcess[] = [];
  const origins: Origin[] = [];
  afterAll(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const o of origins) o.server.close();
    await dropSchema(schema).catch(() => undefined);
  });

  it(`delivers ${N} notifications exactly once each (but for jobs in flight at a disruption)`, async () => {
    const seen = new Map<string, { count: number; first: number }>();
    for (let i = 0; i < ORIGINS; i++) {
      const origin: Origin = { url: '', server: createServer(), inFlight: 0, max: 0 };
      origin.server.on('request', (req, res) => {
        origin.inFlight += 1;
        origin.max = Math.max(origin.max, origin.inFlight);
        const id = String(req.headers['webhook-id']);
        req.resume();
        req.on('end', () => {
          const s = seen.get(id);
          if (s === undefined) seen.set(id, { count: 1, first: Date.now() });
          else s.count += 1;
          setTimeout(
            () => {
              origin.inFlight -= 1;
              res.end('ok');
            },
            1 + (i % 5),
          );
        });
      });
      await new Promise<void>((resolve) => origin.server.listen(0, '127.0.0.1', resolve));
      origin.url = `http://127.0.0.1:${(origin.server.address() as AddressInfo).port}`;
      origins.push(origin);
    }
    // Install pg-boss's schema and the queue once, before the apps race to.
    const setup = postgresBackend({ connectionString: url, schema, logger: { warn() {}, error() {} } });
    await setup.start();
    await setup.close({ timeout: 500 });

    const apps = Array.from({ length: 3 }, () => {
      const p = watch(
        fork(APP, [JSON.stringify({ url, schema })], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] }),
      );
      procs.push(p.proc);
      return p;
    });
    const ports = await Promise.all(
      apps.map(async (a) => Number((await a.line(/^listening /)).split(' ')[1])),
    );
    const startWorker = (): Proc => {
      const p = watch(
        spawn(
          process.execPath,
          [BIN, 'worker', '--postgres', url, '--concurrency', '16', '--per-origin', String(PER_ORIGIN)],
          {
            env: { ...process.env, AFTERWARD_POSTGRES_SCHEMA: schema },
            stdio: ['ignore', 'pipe', 'inherit'],
          },
        ),
      );
      procs.push(p.proc);
      return p;
    };
    const workers = [startWorker(), startWorker()];
    await Promise.all(workers.map((w) => w.line(/ready/)));

    const started = Date.now();
    const list = origins.map((o) => o.url).join(',');
    const chunk = 100;
    for (let from = 0; from < N; from += chunk * 3) {
      await Promise.all(
        ports.map(async (port, k) => {
          const a = from + k * chunk;
          if (a >= N) return;
          const res = await fetch(
            `http://127.0.0.1:${port}/emit?from=${a}&to=${Math.min(a + chunk, N)}&origins=${list}`,
          );
          expect(res.status).toBe(200);
        }),
      );
    }

    // A worker SIGKILLed mid-flight, then restarted.
    await waitUntil(() => seen.size >= N * 0.3, '30% delivered', 60_000);
    const killedAt = Date.now();
    workers[0]!.proc.kill('SIGKILL');
    workers[0] = startWorker();
    // PostgreSQL restarted under the fleet.
    await waitUntil(() => seen.size >= N * 0.6, '60% delivered', 60_000);
    const pgDownAt = Date.now();
    restartPostgres();
    const pgUpAt = Date.now();
    await waitUntil(() => seen.size >= N, `all ${N} delivered (have ${seen.size})`, 120_000);
    const elapsed = Date.now() - started;

    // Transactional enqueue: a rollback sends nothing; a commit is delivered though the app dies
    // right after it.
    await fetch(`http://127.0.0.1:${ports[0]}/tx?id=tx-rolled-back&url=${origins[0]!.url}/tx&commit=0`);
    await fetch(
      `http://127.0.0.1:${ports[2]}/tx?id=tx-committed&url=${origins[1]!.url}/tx&commit=1&kill=1`,
    ).catch(
      () => undefined, // the app is SIGKILLed before it answers
    );
    await waitUntil(() => apps[2]!.proc.signalCode === 'SIGKILL', 'app killed after its commit');
    await waitUntil(
      () => seen.has('tx-committed'),
      'the committed transactional notification delivered',
      20_000,
    );
    expect(seen.has('tx-rolled-back')).toBe(false);

    const lost = Array.from({ length: N }, (_, i) => `n-${i}`).filter((id) => !seen.has(id));
    const duplicates = [...seen].filter(([, s]) => s.count > 1);
    // A duplicate is a job whose delivery was not recorded: in flight at the kill (its lease
    // expired), or completed while PostgreSQL was down (the complete failed, the lease expired).
    const inWindow = (t: number): boolean =>
      (t >= killedAt - 5_000 && t <= killedAt + 500) || (t >= pgDownAt - 5_000 && t <= pgUpAt + 2_000);
    const unexplained = duplicates.filter(([, s]) => !inWindow(s.first));
    const maxPerOrigin = Math.max(...origins.map((o) => o.max));
    process.stdout.write(
      `fleet: ${N} notifications, 20 origins, ${elapsed} ms; lost ${lost.length}; duplicates ${duplicates.length} ` +
        `(unexplained ${unexplained.length}); max concurrent per origin ${maxPerOrigin} (limit ${PER_ORIGIN}); ` +
        `PostgreSQL restart took ${pgUpAt - pgDownAt} ms\n`,
    );
    expect(lost).toEqual([]);
    expect(unexplained).toEqual([]);
    expect(maxPerOrigin).toBeLessThanOrEqual(PER_ORIGIN);

    for (const w of workers) w.proc.kill('SIGTERM');
    for (const a of apps.slice(0, 2)) a.proc.kill('SIGTERM');
    const summaries = await Promise.all(workers.map((w) => w.line(/"stopped"/)));
    const delivered = summaries.map(
      (s) => (JSON.parse(s) as { stats: { delivered: number } }).stats.delivered,
    );
    process.stdout.write(
      `fleet: deliveries by the surviving and the restarted worker: ${delivered.join(', ')}\n`,
    );
    expect(delivered.every((d) => d > 0)).toBe(true);
  }, 240_000);
});
