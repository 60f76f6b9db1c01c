/**
 * The durable outbox when things break, through the dispatcher (`createDispatcher({ outbox })`): a
 * payload that kills the process at every attempt, a file or directory it cannot write, a full
 * disk. Real child processes, a real tmpfs of 400 KiB for the full disk (mounted here: the suite
 * runs as root; without the right to mount, the test says so and fails under CI=true).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatcher } from '@afterward/core';
import { OutboxDb, OutboxError, sqliteOutbox } from '@afterward/sqlite';
import { guardUnhandledRejections, startReceiver, waitUntil, type Receiver } from '../support/index.js';

const APP = new URL('./fixtures/outbox-failures-app.mjs', import.meta.url).pathname;
const procs: ChildProcess[] = [];
const cleanups: Array<() => Promise<void> | void> = [];
const quiet = { warn: () => undefined, error: () => undefined };

guardUnhandledRejections();

afterEach(async () => {
  for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'afterward-failures-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  cleanups.push(() => r.close());
  return r;
}

interface Run {
  proc: ChildProcess;
  lines: Array<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(args: string[], options: { uid?: number } = {}): Run {
  const proc = spawn(process.execPath, [APP, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
  });
  procs.push(proc);
  const lines: Array<Record<string, unknown>> = [];
  createInterface({ input: proc.stdout }).on('line', (text) => {
    lines.push(JSON.parse(text) as Record<string, unknown>);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { proc, lines, exited };
}

async function deadLetters(path: string): Promise<number> {
  const db = new OutboxDb({ path, create: false });
  try {
    return db.listDead().length;
  } finally {
    await db.close();
  }
}

/**
 * Mounts a 400 KiB tmpfs on `dir` (unmounted after the test). Without the right to mount, says so
 * loudly and skips, or fails under CI=true: the full-disk tests never vanish silently.
 */
function mountTinyDisk(dir: string, ctx: { skip(note?: string): never }): void {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=400k', 'tmpfs', dir], { stdio: 'pipe' });
  } catch (error) {
    const message = `FULL-DISK TEST NOT RUN: cannot mount a 400 KiB tmpfs on ${dir} (needs root or CAP_SYS_ADMIN): ${(error as Error).message}`;
    console.error(`\n!!! ${message}\n`);
    if (process.env.CI === 'true') throw new Error(message, { cause: error });
    ctx.skip(message);
  }
  cleanups.push(() => {
    execFileSync('umount', [dir]);
  });
}

const idsOf = (r: Receiver): string[] => r.requests.map((req) => String(req.headers['webhook-id']));

describe('durable outbox failures, through the dispatcher', () => {
  it('a payload that kills the process at every attempt runs out of attempts and becomes a dead letter', async () => {
    const dir = tempDir();
    const path = join(dir, 'outbox.db');
    const r = await receiver();

    // The first process acknowledges the poison (and an ordinary notification), then dies at the
    // poison's first attempt.
    const first = run(['crash-loop', path, r.url, 'send']);
    expect((await first.exited).signal).toBe('SIGKILL');
    const persisted = first.lines.find((line) => line.what === 'persisted');
    expect(persisted, 'both acknowledged before the first crash').toBeDefined();

    // Restarted as a supervisor would, until a start no longer dies. Each restart takes the rows
    // back at once (the dead pid's lease is released) and dies at once at the poison's next attempt.
    const attempts = [...first.lines.filter((l) => l.what === 'attempt').map((l) => l.attempt as number)];
    let survivor: Run | undefined;
    for (let restart = 0; restart < 8 && survivor === undefined; restart++) {
      const next = run(['crash-loop', path, r.url]);
      let crashed = false;
      void next.exited.then(() => (crashed = true));
      await waitUntil(async () => crashed || (await deadLetters(path)) > 0, {
        timeoutMs: 10_000,
        intervalMs: 50,
        message: 'a crash or a dead letter',
      });
      attempts.push(...next.lines.filter((l) => l.what === 'attempt').map((l) => l.attempt as number));
      if (!crashed) survivor = next;
      else expect((await next.exited).signal).toBe('SIGKILL');
    }
    console.log(`crash loop: attempts seen ${JSON.stringify(attempts)}, processes ${attempts.length + 1}`);
    expect(survivor, 'a start that no longer crashes').toBeDefined();
    // Every attempt started was counted on disk before its request: the count only grows, ends at
    // the limit, and a fresh row's first attempt (written with its turn's batch) is the only one
    // that may be seen twice.
    expect(attempts.at(-1)).toBe(3);
    expect(attempts.filter((n) => n > 1)).toEqual([2, 3]);
    expect(attempts.length).toBeLessThanOrEqual(4);

    const db = new OutboxDb({ path, create: false });
    try {
      const [dead] = db.listDead();
      expect(dead).toMatchObject({
        id: persisted!.poison,
        attempts: 3,
        reason: 'failed',
        errorCode: 'AFTERWARD_ERR_OUTBOX_INTERRUPTED',
      });
    } finally {
      await db.close();
    }
    // The poison never reached the network; the ordinary notification did, with its webhook id.
    await waitUntil(() => idsOf(r).includes(persisted!.ordinary as string), {
      timeoutMs: 10_000,
      message: 'the ordinary notification delivered',
    });
    expect(r.requests.every((req) => !req.body.toString().includes('poison'))).toBe(true);
    // The dead letter is written while the survivor starts, and the ordinary notification is often
    // delivered by the first process: without this wait the SIGTERM could come before the
    // survivor's listener (seen once: exit code null, killed by the default action).
    await waitUntil(() => survivor!.lines.some((line) => line.what === 'ready'), {
      message: 'survivor ready',
    });
    survivor!.proc.kill('SIGTERM');
    expect((await survivor!.exited).code).toBe(0);
  }, 60_000);

  // Root ignores file modes: the process that opens the file runs as user nobody.
  const asRoot = process.getuid?.() === 0;

  async function startOn(path: string, url: string): Promise<Record<string, unknown>> {
    const child = run(['start', path, url], asRoot ? { uid: 65534 } : {});
    await child.exited;
    const line = child.lines.find((l) => l.what === 'error' || l.what === 'persisted');
    expect(line, 'the start reported something').toBeDefined();
    return line!;
  }

  it('a read-only file or directory: a typed error at start, nothing acknowledged', async () => {
    const r = await receiver();
    // An existing outbox file made read-only.
    const dir = tempDir();
    chmodSync(dir, 0o777);
    const file = join(dir, 'outbox.db');
    await new OutboxDb({ path: file }).close();
    chmodSync(file, 0o444);
    expect(await startOn(file, r.url)).toMatchObject({
      what: 'error',
      at: 'start',
      name: 'OutboxError',
      code: 'AFTERWARD_ERR_OUTBOX_READ_ONLY',
    });

    // A new file in a read-only directory.
    const roDir = tempDir();
    chmodSync(roDir, 0o555);
    expect(await startOn(join(roDir, 'outbox.db'), r.url)).toMatchObject({
      what: 'error',
      at: 'start',
      code: 'AFTERWARD_ERR_OUTBOX_READ_ONLY',
    });

    // A writable file in a read-only directory (SQLite needs its -wal and -shm files beside it).
    const lockedDir = tempDir();
    const inLocked = join(lockedDir, 'outbox.db');
    await new OutboxDb({ path: inLocked }).close();
    chmodSync(inLocked, 0o666);
    chmodSync(lockedDir, 0o555);
    expect(await startOn(inLocked, r.url)).toMatchObject({
      what: 'error',
      at: 'start',
      code: 'AFTERWARD_ERR_OUTBOX_READ_ONLY',
    });
    expect(r.requests).toEqual([]);
  });

  it('a full disk: the commit fails unacknowledged and counted, the app keeps running and recovers once space is freed', async (ctx) => {
    const dir = tempDir();
    mountTinyDisk(dir, ctx);
    const r = await receiver();
    const path = join(dir, 'outbox.db');
    const d = createDispatcher({
      outbox: sqliteOutbox({ path, lease: 1_000, poll: 50 }),
      logger: quiet,
      retry: { attempts: 3, minDelay: 5, maxDelay: 20 },
    });
    cleanups.push(() => d.close({ timeout: 100 }).then(() => undefined));
    await d.ready;
    const before = d.send(`${r.url}/hook`, { json: { n: 0 } });
    await before.persisted;

    // Fill what is left of the file system.
    const filler = join(dir, 'filler');
    const fd = openSync(filler, 'w');
    const chunk = Buffer.alloc(4096, 1);
    try {
      for (;;) writeSync(fd, chunk);
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      closeSync(fd);
    }

    const full = d.send(`${r.url}/hook`, { json: { n: 1, pad: 'x'.repeat(60_000) } });
    const error = await full.persisted.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OutboxError);
    expect(error).toMatchObject({ code: 'AFTERWARD_ERR_OUTBOX_DISK_FULL' });
    expect(d.stats().store).toMatchObject({ failed: 1 });
    // Still accepting (and answering) while the disk is full: each failed commit is reported on
    // its own handles, nothing crashes.
    const again = d.send(`${r.url}/hook`, { json: { n: 2, pad: 'x'.repeat(60_000) } });
    await expect(again.persisted).rejects.toMatchObject({ code: 'AFTERWARD_ERR_OUTBOX_DISK_FULL' });
    expect(d.stats().store).toMatchObject({ failed: 2 });

    // Space freed: the next commit succeeds, and what it holds is delivered.
    rmSync(filler);
    const after = d.send(`${r.url}/hook`, { json: { n: 3 } });
    await after.persisted;
    await waitUntil(() => idsOf(r).includes(after.id) && idsOf(r).includes(before.id), {
      timeoutMs: 10_000,
      message: 'delivered after the disk was freed',
    });
    expect(d.stats().store).toMatchObject({ failed: 2 });
    await d.close({ timeout: 1_000 });
    // What failed to commit was never written: the file holds no row of it.
    const db = new OutboxDb({ path, create: false });
    try {
      const keys = db.pendingPage(undefined, 100).rows.map((row) => row.id);
      expect(keys).not.toContain(full.id);
      expect(keys).not.toContain(again.id);
    } finally {
      await db.close();
    }
  });

  it('a disk already full at start: a typed error from sqliteOutbox(), before anything is accepted', (ctx) => {
    const dir = tempDir();
    mountTinyDisk(dir, ctx);
    writeFileSync(join(dir, 'filler'), Buffer.alloc(0));
    const fd = openSync(join(dir, 'filler'), 'w');
    try {
      for (;;) writeSync(fd, Buffer.alloc(4096, 1));
    } catch {
      // full
    } finally {
      closeSync(fd);
    }
    let thrown: unknown;
    try {
      createDispatcher({ outbox: sqliteOutbox({ path: join(dir, 'outbox.db') }), logger: quiet });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(OutboxError);
    expect(thrown).toMatchObject({ code: 'AFTERWARD_ERR_OUTBOX_DISK_FULL' });
  });
});
