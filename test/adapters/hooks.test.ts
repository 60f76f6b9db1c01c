import { HookError, HookTimeoutError, type HookErrorEvent } from '@afterward/core';
import { drain } from '@afterward/core/testing';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sleep, waitUntil } from '../support/index.js';
import { KITS } from './harness.js';
import { testDispatcher, track } from './setup.js';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
beforeEach(() => {
  unhandled.length = 0;
  process.on('unhandledRejection', onUnhandled);
});
afterEach(() => {
  process.off('unhandledRejection', onUnhandled);
  expect(unhandled).toEqual([]);
});

describe.each(KITS)('$name: after() hooks', (kit) => {
  it('a throwing, a rejecting and a slow hook are reported; the others still run', async () => {
    const dispatcher = testDispatcher();
    const reported: HookErrorEvent[] = [];
    dispatcher.on('hook-error', (event) => reported.push(event));
    const ran: string[] = [];
    let slowSignal: AbortSignal | undefined;
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/',
          handler: (h) => {
            h.after(() => {
              throw new Error('sync boom');
            });
            h.after(async () => {
              await Promise.resolve();
              throw new Error('async boom');
            });
            h.after(
              (_info, signal) => {
                slowSignal = signal;
                return new Promise(() => {}); // never settles; the timeout frees its slot
              },
              { timeout: 100 },
            );
            h.after(() => void ran.push('ok'));
            h.send(200, {});
          },
        },
      ]),
    );

    await request(app.url).get('/').expect(200);
    await drain(dispatcher);

    expect(ran).toEqual(['ok']);
    expect(reported).toHaveLength(3);
    const errors = reported.map((event) => event.error);
    expect(
      errors
        .filter((e) => e instanceof HookError)
        .map((e) => (e.cause as Error).message)
        .sort(),
    ).toEqual(['async boom', 'sync boom']);
    const timeout = errors.find((e) => e instanceof HookTimeoutError);
    expect(timeout?.message).toContain('100 ms');
    expect(slowSignal?.aborted).toBe(true);
    expect(slowSignal?.reason).toBe(timeout);
    expect(reported[0]?.info).toMatchObject({ outcome: 'finished', statusCode: 200 });
    // The logger is rate-limited, so a burst logs at least its first failure.
    expect(dispatcher.logs).toContainEqual(
      expect.objectContaining({ level: 'error', msg: expect.stringContaining('hook failed') as unknown }),
    );
    expect(dispatcher.stats().hooks).toMatchObject({ completed: 1, failed: 3, running: 0, queued: 0 });
  });

  it('hooks respect hookConcurrency, and drain() waits for them', async () => {
    const dispatcher = testDispatcher({ hookConcurrency: 1 });
    let running = 0;
    let maxRunning = 0;
    let finished = 0;
    const hook = async (): Promise<void> => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await sleep(60);
      running--;
      finished++;
    };
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/',
          handler: (h) => {
            h.after(hook);
            h.after(hook);
            h.after(hook);
            h.send(200, {});
          },
        },
      ]),
    );

    await request(app.url).get('/').expect(200);
    await waitUntil(() => dispatcher.stats().hooks.running === 1, { message: 'a hook started' });
    const { drained } = await dispatcher.drain({ timeout: 5_000 });

    expect(drained).toBe(true);
    expect(finished).toBe(3);
    expect(maxRunning).toBe(1);
  });

  it('a hook gets a signal that is not aborted while it runs in time', async () => {
    const dispatcher = testDispatcher();
    const seen: boolean[] = [];
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/',
          handler: (h) => {
            h.after(
              async (_info, signal) => {
                await sleep(10);
                seen.push(signal.aborted);
              },
              { timeout: 5_000 },
            );
            h.send(200, {});
          },
        },
      ]),
    );

    await request(app.url).get('/').expect(200);
    await drain(dispatcher);
    expect(seen).toEqual([false]);
  });
});
