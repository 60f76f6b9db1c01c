/**
 * Shared pieces of the sqlite tests: a temporary directory per test, notifications, and real child
 * processes on the same file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach } from 'vitest';
import type { NotificationJson } from '@afterward/sqlite';

const dirs: string[] = [];
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory, removed after the test. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'afterward-sqlite-'));
  dirs.push(dir);
  return dir;
}

/** A fresh outbox path in a fresh directory. */
export function tempFile(name = 'outbox.db'): string {
  return join(tempDir(), name);
}

/** A valid notification; `body` is `bodyBytes` of 'x' (base64). */
export function notification(overrides: Partial<NotificationJson> = {}, bodyBytes = 16): NotificationJson {
  const key = overrides.key ?? randomUUID();
  return {
    v: 1,
    key,
    id: `msg_${key}`,
    url: 'https://hooks.example.com/orders?token=secret',
    origin: 'https://hooks.example.com',
    method: 'POST',
    headers: ['content-type', 'application/json'],
    body: Buffer.alloc(bodyBytes, 'x').toString('base64'),
    confirm: 'response',
    keepBody: 0,
    timeout: { connect: 5_000, response: 10_000, total: 15_000 },
    retry: { attempts: 5, minDelay: 1_000, maxDelay: 60_000, factor: 2, maxRetryAfter: 3_600_000 },
    sign: true,
    attempts: 0,
    notBefore: 0,
    createdAt: Date.now(),
    ...overrides,
  };
}

export interface ChildLine {
  what: string;
  pid: number;
  [field: string]: unknown;
}

export interface Child {
  process: ChildProcess;
  lines: ChildLine[];
  /** Resolves with the first line whose `what` matches (already seen or future). */
  next(what: string): Promise<ChildLine>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const FIXTURE = new URL('./fixtures/outbox-child.mjs', import.meta.url);

/** Runs `fixtures/outbox-child.mjs <scenario> <file> ...args` in a real child process. */
export function child(
  scenario: string,
  file: string,
  args: string[] = [],
  options: { uid?: number } = {},
): Child {
  const proc = spawn(process.execPath, [FIXTURE.pathname, scenario, file, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
  });
  children.push(proc);
  const lines: ChildLine[] = [];
  const waiters: Array<{ what: string; resolve: (line: ChildLine) => void }> = [];
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  createInterface({ input: proc.stdout }).on('line', (text) => {
    const line = JSON.parse(text) as ChildLine;
    lines.push(line);
    for (const w of waiters.filter((w) => w.what === line.what)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    process: proc,
    lines,
    exited,
    next: (what) =>
      new Promise((resolve, reject) => {
        const seen = lines.find((l) => l.what === what);
        if (seen !== undefined) return resolve(seen);
        waiters.push({ what, resolve });
        void exited.then(({ code, signal }) => {
          // Give the last stdout lines a turn to arrive before calling it a failure.
          setTimeout(() => {
            const late = lines.find((l) => l.what === what);
            if (late !== undefined) resolve(late);
            else reject(new Error(`child exited (${code ?? signal}) before '${what}': ${stderr}`));
          }, 50);
        });
      }),
  };
}

/** A turn of the event loop, after this turn's setImmediate callbacks. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
