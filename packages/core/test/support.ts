/**
 * Shared pieces of core's unit tests: a fake pino-style logger, a guard that fails a test on any
 * unhandled rejection, fast retry settings, and a port whose connects hang (for connect timeouts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { Logger } from '../src/index.js';

/** Retries fast enough for tests, still exponential with jitter. */
export const FAST_RETRY = { minDelay: 5, maxDelay: 20 } as const;

export interface LogCall {
  level: 'warn' | 'error' | 'debug';
  obj: Record<string, unknown>;
  msg: string | undefined;
}

/** A pino-compatible logger that keeps every call. */
export function fakeLogger(): Logger & { calls: LogCall[] } {
  const calls: LogCall[] = [];
  const log =
    (level: LogCall['level']) =>
    (obj: object, msg?: string): void => {
      calls.push({ level, obj: obj as Record<string, unknown>, msg });
    };
  return { calls, warn: log('warn'), error: log('error'), debug: log('debug') };
}

/**
 * Fails the current test if any promise rejection goes unhandled while it runs: afterward's
 * contract is that no code path produces one.
 */
export function guardUnhandledRejections(): void {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    seen.push(reason);
  };
  beforeAll(() => {
    process.on('unhandledRejection', onRejection);
  });
  afterEach(async () => {
    // Rejections are reported after a turn of the event loop.
    await new Promise((resolve) => setImmediate(resolve));
    const found = seen.splice(0);
    expect(found, 'unhandled rejections').toEqual([]);
  });
  afterAll(() => {
    process.off('unhandledRejection', onRejection);
  });
}

export interface Blackhole {
  url: string;
  close(): void;
}

/**
 * A port on 127.0.0.1 where TCP connects hang: a child process listens with a backlog of 1 and
 * then blocks its event loop, so it never accepts; two filler connections fill the accept queue
 * and the kernel drops further SYNs. Loopback never answers "unreachable", so this is how a
 * connect timeout is provoked without a real network.
 */
export async function blackhole(): Promise<Blackhole> {
  const script =
    "const s=require('net').createServer();" +
    "s.listen({port:0,host:'127.0.0.1',backlog:1},()=>{process.stdout.write(s.address().port+'\\n');" +
    'setTimeout(()=>Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0),20)})';
  const child: ChildProcess = spawn(process.execPath, ['-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout?.once('data', (data: Buffer) => resolve(Number(String(data).trim())));
  });
  await new Promise((resolve) => setTimeout(resolve, 150));
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    fillers.push(socket);
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  return {
    url: `http://127.0.0.1:${port}`,
    close() {
      for (const socket of fillers) socket.destroy();
      child.kill('SIGKILL');
    },
  };
}
