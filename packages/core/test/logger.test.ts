import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { kLazyWarn, rateLimitLogger, type LazyWarn, type Logger } from '../src/util/logger.js';
import { recordingLogger, waitUntil } from '../../../test/support/index.js';

describe('rateLimitLogger', () => {
  it('writes the first line of a storm at once and reports the rest by count when the window closes', async () => {
    const target = recordingLogger();
    const logger = rateLimitLogger(target, 50);
    for (let i = 0; i < 100; i++) logger.warn({ i }, 'dropped');
    expect(target.lines).toEqual([{ level: 'warn', obj: { i: 0 }, msg: 'dropped' }]);
    // The storm ended inside the window; its count must still come out, with the newest line.
    await waitUntil(() => target.lines.length === 2, { timeoutMs: 2_000 });
    expect(target.lines[1]).toEqual({ level: 'warn', obj: { i: 99, suppressed: 99 }, msg: 'dropped' });
  });

  it('builds a lazy line only when it is written: the first of a storm, and the newest when the window closes', async () => {
    const target = recordingLogger();
    const logger = rateLimitLogger(target, 50) as Logger & { [kLazyWarn]: LazyWarn };
    const built: number[] = [];
    const build = (i: number): object => {
      built.push(i);
      return { i };
    };
    for (let i = 0; i < 100; i++) logger[kLazyWarn]('dropped', build, i);
    expect(built).toEqual([0]);
    expect(target.lines).toEqual([{ level: 'warn', obj: { i: 0 }, msg: 'dropped' }]);
    await waitUntil(() => target.lines.length === 2, { timeoutMs: 2_000 });
    expect(built).toEqual([0, 99]);
    expect(target.lines[1]).toEqual({ level: 'warn', obj: { i: 99, suppressed: 99 }, msg: 'dropped' });
  });

  it('limits each message on its own, and a line after the window carries nothing stale', async () => {
    const target = recordingLogger();
    const logger = rateLimitLogger(target, 30);
    logger.warn({}, 'a');
    logger.error({}, 'b');
    logger.warn({}, 'a');
    expect(target.lines.map((l) => l.msg)).toEqual(['a', 'b']);
    await waitUntil(() => target.lines.length === 3, { timeoutMs: 2_000 });
    expect(target.lines[2]).toMatchObject({ msg: 'a', obj: { suppressed: 1 } });
    await new Promise((resolve) => setTimeout(resolve, 80));
    logger.warn({ fresh: true }, 'a');
    expect(target.lines.at(-1)).toEqual({ level: 'warn', obj: { fresh: true }, msg: 'a' });
  });

  it('writes the origin, never the URL, also on the line that reports a storm by count', async () => {
    const target = recordingLogger();
    const logger = rateLimitLogger(target, 30);
    for (let i = 0; i < 5; i++)
      logger.warn({ i, url: `https://user:pw@hooks.example.com/t/${i}?key=s` }, 'failed');
    await waitUntil(() => target.lines.length === 2, { timeoutMs: 2_000 });
    expect(target.lines).toEqual([
      { level: 'warn', obj: { i: 0, origin: 'https://hooks.example.com' }, msg: 'failed' },
      { level: 'warn', obj: { i: 4, origin: 'https://hooks.example.com', suppressed: 4 }, msg: 'failed' },
    ]);
  });

  it('survives a logger that throws', () => {
    const logger = rateLimitLogger({
      warn: () => {
        throw new Error('broken sink');
      },
      error: () => undefined,
    });
    expect(() => logger.warn({}, 'x')).not.toThrow();
  });
});

describe('an async logger', () => {
  it('whose warn and error reject does not crash the process (child process)', async () => {
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL('./fixtures/async-logger-child.mjs', import.meta.url))],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(err).not.toMatch(/log shipper is down/);
    expect(code).toBe(0);
    const summary = JSON.parse(out) as { alive: boolean; calls: number };
    expect(summary.alive).toBe(true);
    // failed (/a), dropped (/b), the rejected listener, failed (/c): every one went to the logger.
    expect(summary.calls).toBeGreaterThanOrEqual(3);
  });

  it('contains a rejected promise from rateLimitLogger itself', async () => {
    const seen: unknown[] = [];
    const onRejection = (reason: unknown): void => void seen.push(reason);
    process.on('unhandledRejection', onRejection);
    try {
      // Typed loosely on purpose: the Logger type says void, and that is what such a sink breaks.
      const sink: Record<'warn' | 'error' | 'debug', () => Promise<never>> = {
        warn: () => Promise.reject(new Error('async sink down')),
        error: async () => Promise.reject(new Error('async sink down')),
        debug: () => Promise.reject(new Error('async sink down')),
      };
      const logger = rateLimitLogger(sink);
      logger.warn({}, 'w');
      logger.error({}, 'e');
      logger.debug?.({}, 'd');
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(seen).toEqual([]);
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });
});
