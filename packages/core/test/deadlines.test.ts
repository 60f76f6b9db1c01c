import { describe, expect, it } from 'vitest';
import { Deadlines, type Deadline } from '../src/attempt/deadlines.js';
import { createDispatcher, TimeoutError } from '../src/index.js';
import {
  cleanupScope,
  guardUnhandledRejections,
  neverAnswers,
  recordingLogger,
} from '../../../test/support/index.js';

guardUnhandledRejections();

const { cleanups: cleanup } = cleanupScope();

function entry(name: string, expired: string[]): Deadline {
  return {
    deadlineAt: 0,
    deadlineMs: 0,
    deadlinePrev: undefined,
    deadlineNext: undefined,
    expire: () => expired.push(name),
  };
}

describe('total deadlines on one timer', () => {
  it('expires each entry once, in deadline order across lengths; a removed one never', async () => {
    const deadlines = new Deadlines();
    const expired: string[] = [];
    const a = entry('a', expired);
    const b = entry('b', expired);
    const c = entry('c', expired);
    const d = entry('d', expired);
    deadlines.add(a, 120);
    deadlines.add(b, 120);
    deadlines.add(c, 120);
    // Added last, due first: the one timer is re-armed for it.
    deadlines.add(d, 30);
    deadlines.remove(b);
    deadlines.remove(b);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(expired).toEqual(['d']);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(expired).toEqual(['d', 'a', 'c']);
    // Removing after expiry is a no-op.
    deadlines.remove(a);
  });

  it('a shorter total deadline sent later still ends first (two lengths in flight)', async () => {
    const server = await neverAnswers();
    cleanup.push(() => server.close());
    const dispatcher = createDispatcher({ retry: false, logger: recordingLogger() });
    cleanup.push(() => dispatcher.close({ timeout: 0 }));
    const order: number[] = [];
    const long = dispatcher.send(server.url, { timeout: 900 });
    const short = dispatcher.send(server.url, { timeout: 150 });
    const results = await Promise.all([
      long.done.then((result) => (order.push(900), result)),
      short.done.then((result) => (order.push(150), result)),
    ]);
    expect(order).toEqual([150, 900]);
    for (const [i, ms] of [900, 150].entries()) {
      expect(results[i]?.error).toBeInstanceOf(TimeoutError);
      expect((results[i]?.error as TimeoutError).phase).toBe('total');
      expect((results[i]?.error as TimeoutError).timeoutMs).toBe(ms);
    }
  });
});
