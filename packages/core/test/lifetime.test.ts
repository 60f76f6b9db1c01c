import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ClosedError, CancelledError, createDispatcher } from '../src/index.js';
import { createRecordingTransport } from '../src/testing.js';
import {
  cleanupScope,
  startReceiver,
  type Receiver,
  neverAnswers,
  refusingPort,
  type FaultServer,
  sleep,
  waitUntil,
  recordingLogger,
  guardUnhandledRejections,
} from '../../../test/support/index.js';

guardUnhandledRejections();

const root = fileURLToPath(new URL('../../../', import.meta.url));
const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** True when some src/*.ts is newer than its dist/*.js (or has none). */
function distIsStale(): boolean {
  const src = fileURLToPath(new URL('../src/', import.meta.url));
  return readdirSync(src)
    .filter((name) => name.endsWith('.ts'))
    .some((name) => {
      const built = fileURLToPath(new URL(`../dist/${name.replace(/\.ts$/, '.js')}`, import.meta.url));
      return !existsSync(built) || statSync(built).mtimeMs < statSync(`${src}${name}`).mtimeMs;
    });
}

beforeAll(async () => {
  // The child processes run the built package, as users do. Building may race other builds on
  // this machine; a stale but present dist still exercises the same code paths.
  if (!distIsStale()) return;
  await new Promise<void>((resolve) => {
    execFile(
      process.execPath,
      [`${root}node_modules/typescript/bin/tsc`, '-b', 'packages/core'],
      { cwd: root },
      () => resolve(),
    );
  });
  expect(existsSync(dist), `${dist} must exist (pnpm build)`).toBe(true);
}, 120_000);

interface ChildRun {
  code: number | null;
  lines: Array<Record<string, unknown>>;
  stderr: string;
  elapsedMs: number;
}

/** Runs a fixture with plain `node`; kills it (code null) if it outlives `limitMs`. */
function runChild(args: string[], limitMs = 10_000): Promise<ChildRun> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(process.execPath, args, {
      cwd: fileURLToPath(new URL('./fixtures/', import.meta.url)),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => (stdout += String(data)));
    child.stderr.on('data', (data: Buffer) => (stderr += String(data)));
    const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('close', (code) => {
      clearTimeout(killer);
      const lines = stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      resolve({ code, lines, stderr, elapsedMs: performance.now() - started });
    });
  });
}

const { cleanups: cleanup } = cleanupScope();
async function receiverFor(...args: Parameters<typeof startReceiver>): Promise<Receiver> {
  const receiver = await startReceiver(...args);
  cleanup.push(() => receiver.close());
  return receiver;
}

describe('process lifetime (child processes on the built package)', () => {
  it('a script that sends and never calls close() still delivers, then exits by itself', async () => {
    const receiver = await receiverFor();
    const run = await runChild([fixture('lifetime-child.mjs'), dist, 'no-close', `${receiver.url}/hook`]);
    expect(run.code).toBe(0);
    expect(receiver.requests).toHaveLength(1);
    expect(receiver.requests[0]?.json()).toEqual({ from: 'child' });
    // The receiver keeps its side open (node's keep-alive is 5 s): the idle socket must not hold us.
    expect(run.elapsedMs).toBeLessThan(4_000);
  });

  it('parked work released just before the process would end still goes (its coalescing window holds it)', async () => {
    const receiver = await receiverFor();
    const run = await runChild([
      fixture('lifetime-child.mjs'),
      dist,
      'parked-then-exit',
      `${receiver.url}/hook`,
    ]);
    expect(run.code).toBe(0);
    expect(run.lines.map((l) => l['what'])).toContain('response-closed');
    expect(receiver.requests).toHaveLength(1);
    expect(receiver.requests[0]?.json()).toEqual({ from: 'parked' });
  });

  it('idle keep-alive sockets do not hold the process open', async () => {
    const receiver = await receiverFor();
    const run = await runChild([fixture('lifetime-child.mjs'), dist, 'idle-keep-alive', receiver.url]);
    expect(run.code).toBe(0);
    expect(run.lines[0]).toMatchObject({ what: 'settled', state: 'delivered' });
    const settledAt = run.lines[0]?.['at'] as number;
    // Exit comes promptly after the delivery, not after a keep-alive timeout (4 s in undici).
    expect(run.elapsedMs - settledAt).toBeLessThan(2_500);
    expect(run.elapsedMs).toBeLessThan(5_000);
  });

  it('a retry backoff timer does not hold the process open (close() is how to wait)', async () => {
    const receiver = await receiverFor((_req, res) => {
      res.statusCode = 503;
      res.end();
    });
    const run = await runChild([fixture('lifetime-child.mjs'), dist, 'backoff', receiver.url]);
    expect(run.code).toBe(0);
    expect(run.lines.map((l) => l['what'])).toContain('retry');
    expect(run.elapsedMs).toBeLessThan(5_000);
  });

  it('awaiting close() keeps the process until the retry went through', async () => {
    let calls = 0;
    const receiver = await receiverFor((_req, res) => {
      res.statusCode = ++calls === 1 ? 503 : 204;
      res.end();
    });
    const run = await runChild([fixture('lifetime-child.mjs'), dist, 'close-waits', receiver.url]);
    expect(run.code).toBe(0);
    expect(run.lines[0]).toMatchObject({ what: 'closed', state: 'delivered', attempts: 2, drained: true });
    expect(receiver.requests).toHaveLength(2);
  });

  it('the default logger reports a failure on stderr', async () => {
    const refusing = await refusingPort();
    const run = await runChild([fixture('lifetime-child.mjs'), dist, 'default-logger', refusing.url]);
    expect(run.code).toBe(0);
    const line = run.stderr.split('\n').find((l) => l.includes('notification failed'));
    expect(line).toBeDefined();
    expect(JSON.parse(line ?? '{}')).toMatchObject({
      level: 'warn',
      name: 'afterward',
      origin: refusing.url,
    });
    expect(line).not.toContain('"url"');
  });

  it('a CommonJS program can require() the built package and its testing subpath', async () => {
    const run = await runChild([fixture('require-core.cjs'), dist]);
    expect(run.stderr).not.toMatch(/Error/);
    expect(run.code).toBe(0);
    expect(run.lines[0]).toMatchObject({ state: 'delivered', body: { cjs: true } });
    expect(run.lines[0]?.['resolved']).toBe(dist);
  });
});

describe('close()', () => {
  it('drains what is pending, then reports; send() after close throws ClosedError', async () => {
    const receiver = await receiverFor(async (_req, res) => {
      await sleep(50);
      res.statusCode = 204;
      res.end();
    });
    const dispatcher = createDispatcher({ logger: recordingLogger() });
    const handles = [dispatcher.send(receiver.url), dispatcher.send(receiver.url)];
    const result = await dispatcher.close();
    expect(result.drained).toBe(true);
    expect(result.cancelled).toBe(0);
    expect(result.stats).toMatchObject({ delivered: 2, queued: 0, inFlight: 0 });
    expect(handles.map((h) => h.state)).toEqual(['delivered', 'delivered']);
    expect(dispatcher.closed).toBe(true);
    expect(() => dispatcher.send(receiver.url)).toThrow(ClosedError);
    try {
      dispatcher.send(receiver.url);
    } catch (error) {
      expect((error as ClosedError).code).toBe('AFTERWARD_ERR_CLOSED');
    }
  });

  it('cancels what is left after the timeout, closing its socket, and says so', async () => {
    const silent: FaultServer = await neverAnswers();
    cleanup.push(() => silent.close());
    const logger = recordingLogger();
    const dispatcher = createDispatcher({ logger, concurrency: 1 });
    const inFlight = dispatcher.send(silent.url);
    const queued = dispatcher.send(silent.url);
    await waitUntil(() => silent.openConnections() === 1);
    const started = performance.now();
    const result = await dispatcher.close({ timeout: 200 });
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(result).toMatchObject({ drained: false, cancelled: 2 });
    expect(result.stats).toMatchObject({ cancelled: 2, queued: 0 });
    for (const handle of [inFlight, queued]) {
      expect(handle.state).toBe('cancelled');
      expect(handle.error).toBeInstanceOf(CancelledError);
      expect((handle.error as CancelledError).reason).toBeInstanceOf(ClosedError);
    }
    await waitUntil(() => silent.openConnections() === 0, { message: 'socket closed by close()' });
    expect(logger.lines.some((c) => c.level === 'warn' && /closed with work left/.test(c.msg ?? ''))).toBe(
      true,
    );
  });

  it('is safe to call twice and uses closeTimeout by default', async () => {
    const silent = await neverAnswers();
    cleanup.push(() => silent.close());
    const dispatcher = createDispatcher({ logger: recordingLogger(), closeTimeout: 100 });
    dispatcher.send(silent.url);
    const first = dispatcher.close();
    const second = dispatcher.close();
    expect(second).toBe(first);
    expect((await first).cancelled).toBe(1);
  });

  it('drain() resolves when idle and reports what is pending on timeout, never rejecting', async () => {
    const transport = createRecordingTransport();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    transport.respondWith(() => gate.then(() => 204));
    const dispatcher = createDispatcher({ transport });
    expect(await dispatcher.drain()).toEqual({ drained: true, pending: 0 });
    dispatcher.send('http://a.test/');
    expect(await dispatcher.drain({ timeout: 50 })).toEqual({ drained: false, pending: 1 });
    release();
    expect(await dispatcher.drain({ timeout: 1_000 })).toEqual({ drained: true, pending: 0 });
    await dispatcher.close();
  });
});
