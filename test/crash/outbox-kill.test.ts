/**
 * The durable outbox under SIGKILL: a forked Express app (fixtures/outbox-app.mjs) acknowledges a
 * notification once it is persisted; whatever happens to the process afterwards, every
 * acknowledged notification reaches the receiver, with the same webhook id.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { OutboxDb } from '@afterward/sqlite';
import { sleep, startReceiver, waitUntil, type Receiver } from '../support/index.js';

const APP = new URL('./fixtures/outbox-app.mjs', import.meta.url).pathname;
const procs: ChildProcess[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'afterward-crash-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'outbox.db');
}

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  cleanups.push(() => r.close());
  return r;
}

interface App {
  proc: ChildProcess;
  url: string;
  lines: Array<Record<string, unknown>>;
  exited: Promise<void>;
}

async function startApp(path: string, receiverUrl: string, minDelay = 20, lease = 1_000): Promise<App> {
  const proc = spawn(process.execPath, [APP, path, receiverUrl, String(minDelay), String(lease)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  procs.push(proc);
  const lines: Array<Record<string, unknown>> = [];
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: proc.stdout }).on('line', (text) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      lines.push(line);
      if (line.what === 'listening') resolve(line.port as number);
    });
    void exited.then(() => reject(new Error('the app exited before listening')));
  });
  return { proc, url: `http://127.0.0.1:${port}`, lines, exited };
}

/** POSTs orders until stopped; returns the webhook ids acknowledged (persisted) by the app. */
function load(app: App, acked: Set<string>, concurrency = 8): { stop: () => Promise<void> } {
  let running = true;
  let n = 0;
  const worker = async (): Promise<void> => {
    while (running) {
      try {
        const res = await fetch(`${app.url}/order?n=${n++}`, { method: 'POST' });
        const id = res.headers.get('x-webhook-id');
        if (res.status === 200 && id !== null) acked.add(id);
      } catch {
        // The app was killed mid-request: that one was never acknowledged.
        return;
      }
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  return {
    stop: async () => {
      running = false;
      await Promise.all(workers);
    },
  };
}

const idsOf = (r: Receiver): string[] => r.requests.map((req) => String(req.headers['webhook-id']));

describe('durable outbox: SIGKILL', () => {
  it('loses no acknowledged notification over 10 kills at random moments', async () => {
    const path = tempPath();
    const r = await receiver();
    const acked = new Set<string>();
    const kills = 10;
    for (let i = 0; i < kills; i++) {
      const app = await startApp(path, r.url);
      const before = acked.size;
      const traffic = load(app, acked);
      // Once it acknowledges (its commit worker is up), at a random moment under load.
      await waitUntil(() => acked.size > before, { timeoutMs: 10_000, message: 'first ack' });
      await sleep(50 + Math.floor(Math.random() * 400));
      app.proc.kill('SIGKILL');
      await app.exited;
      await traffic.stop();
    }
    const last = await startApp(path, r.url);
    await waitUntil(() => [...acked].every((id) => idsOf(r).includes(id)), {
      timeoutMs: 20_000,
      message: 'every acknowledged notification received',
    });
    const received = idsOf(r);
    const unique = new Set(received);
    const lost = [...acked].filter((id) => !unique.has(id));
    const duplicates = received.length - unique.size;
    console.log(
      `kill -9 x${kills}: acknowledged ${acked.size}, received ${received.length} (${unique.size} unique), lost ${lost.length}, duplicates ${duplicates}`,
    );
    expect(acked.size).toBeGreaterThan(100);
    expect(lost).toEqual([]);
    // A duplicate is a notification whose attempt was under way at a kill: at most one per kill
    // and in-flight slot (concurrency 32), never a new id.
    expect(duplicates).toBeLessThanOrEqual(kills * 32);
    for (const id of unique) expect(received.filter((x) => x === id).length).toBeLessThanOrEqual(kills + 1);
    last.proc.kill('SIGTERM');
    await last.exited;
  }, 60_000);

  it('keeps attempts and backoff across a kill during backoff', async () => {
    const path = tempPath();
    const r = await receiver();
    // Retry-After: a 2 s backoff for sure (a computed one is full jitter over [0, 2 s]: 1 run in 20
    // would retry within the 100 ms below, and the kill could land between that attempt's request
    // and its write).
    r.respondWith((_req, res) => void res.writeHead(503, { 'retry-after': '2' }).end());
    const app = await startApp(path, r.url, 2_000);
    const acked = await fetch(`${app.url}/order?n=1`, { method: 'POST' });
    const id = acked.headers.get('x-webhook-id');
    await r.waitFor(1);
    await sleep(100);
    app.proc.kill('SIGKILL');
    await app.exited;
    const attemptsBeforeKill = r.requests.length;
    const db = new OutboxDb({ path, create: false });
    const [row] = db.pendingPage(undefined, 10).rows;
    await db.close();
    expect(row?.id).toBe(id);
    // Every attempt that reached the receiver was recorded before it was sent.
    expect(row?.attempts).toBe(attemptsBeforeKill);
    r.respondWith((_req, res) => void res.writeHead(204).end());
    await startApp(path, r.url, 2_000);
    await r.waitFor(attemptsBeforeKill + 1, 10_000);
    expect(new Set(idsOf(r))).toEqual(new Set([id]));
    // Not before the backoff the killed process had written.
    expect(Date.now()).toBeGreaterThanOrEqual(row!.notBefore);
  }, 30_000);

  it('SIGTERM keeps undelivered rows on disk; the next start delivers them', async () => {
    const path = tempPath();
    const r = await receiver();
    r.respondWith(() => undefined); // holds every request: in flight at SIGTERM
    const app = await startApp(path, r.url);
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) {
      const res = await fetch(`${app.url}/order?n=${n}`, { method: 'POST' });
      ids.push(res.headers.get('x-webhook-id')!);
    }
    await r.waitFor(5);
    app.proc.kill('SIGTERM');
    await app.exited;
    expect(app.lines.find((l) => l.what === 'closed')).toMatchObject({ kept: 5 });
    r.respondWith((_req, res) => void res.writeHead(204).end());
    await startApp(path, r.url);
    await r.waitFor(10, 10_000);
    expect(new Set(idsOf(r).slice(5))).toEqual(new Set(ids));
  }, 30_000);

  it('two processes on one file: the survivor takes over the killed one’s rows after its lease', async () => {
    const path = tempPath();
    const r = await receiver();
    let hold = true;
    r.respondWith((_req, res) => {
      if (!hold) res.writeHead(204).end();
    });
    const a = await startApp(path, r.url, 20, 1_000);
    const b = await startApp(path, r.url, 20, 1_000);
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) {
      const res = await fetch(`${a.url}/order?n=${n}`, { method: 'POST' });
      ids.push(res.headers.get('x-webhook-id')!);
    }
    await r.waitFor(5);
    hold = false;
    const killedAt = Date.now();
    a.proc.kill('SIGKILL');
    await a.exited;
    await r.waitFor(10, 10_000);
    const after = idsOf(r).slice(5);
    expect(new Set(after)).toEqual(new Set(ids));
    // Not before the lease ran out (1 s), so never by two live processes at once.
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(500);
    b.proc.kill('SIGTERM');
    await b.exited;
  }, 30_000);
});
