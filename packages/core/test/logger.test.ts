import { describe, expect, it } from 'vitest';
import { rateLimitLogger } from '../src/util/logger.js';
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
