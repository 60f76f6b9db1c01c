import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { OriginBreakers, BREAKER_DEFAULTS } from '../src/policy/breaker.js';
import { createMemoryStore } from '../src/queue/memory-store.js';
import { Scheduler, systemClock, type Clock } from '../src/queue/scheduler.js';
import type { StoredRecord } from '../src/queue/store.js';
import { TestRecord } from './store-contract.js';

const LIMITS = { maxQueued: 100, maxQueuedBytes: 1 << 20, overflow: 'reject' } as const;
/** Lets the scheduler's queued microtask (its pump) run. */
const turn = (): Promise<void> => Promise.resolve().then(() => undefined);

function setup(
  options: { concurrency?: number; perOrigin?: number; breaker?: OriginBreakers; clock?: Clock } = {},
) {
  const store = createMemoryStore(LIMITS);
  const started: StoredRecord[] = [];
  const scheduler = new Scheduler({
    store,
    concurrency: options.concurrency ?? 4,
    concurrencyPerOrigin: options.perOrigin ?? 2,
    breaker: options.breaker,
    clock: options.clock ?? systemClock,
    start: (record) => started.push(record),
  });
  const put = (record: TestRecord): void => {
    store.put(record);
    scheduler.wake();
  };
  return { store, scheduler, started, put };
}

describe('Scheduler (fake timers)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('starts due records within the global and per-origin limits, and more as slots free', async () => {
    const { scheduler, started, put } = setup({ concurrency: 3, perOrigin: 2 });
    for (const key of ['a1', 'a2', 'a3']) put(new TestRecord(key, 'https://a.example'));
    for (const key of ['b1', 'b2']) put(new TestRecord(key, 'https://b.example'));
    await turn();
    expect(started.map((r) => r.key)).toEqual(['a1', 'b1', 'a2']);
    expect(scheduler.inFlight).toBe(3);
    scheduler.finished('https://a.example', 'success');
    scheduler.wake();
    await turn();
    // a3 waits for a's second slot only after b2's turn in the round.
    expect(started.map((r) => r.key)).toEqual(['a1', 'b1', 'a2', 'b2']);
    scheduler.finished('https://a.example', 'success');
    scheduler.wake();
    await turn();
    expect(started.map((r) => r.key)).toEqual(['a1', 'b1', 'a2', 'b2', 'a3']);
  });

  it('coalesces many wakes into one pump', async () => {
    const { store, started, scheduler } = setup();
    const take = vi.spyOn(store, 'take');
    store.put(new TestRecord('1'));
    for (let i = 0; i < 10; i++) scheduler.wake();
    await turn();
    expect(take).toHaveBeenCalledTimes(1);
    expect(started).toHaveLength(1);
  });

  it('arms one timer for the earliest backoff and starts the record when it is due', async () => {
    const { store, scheduler, started } = setup();
    const record = new TestRecord('later');
    store.put(record);
    scheduler.wake();
    await turn();
    expect(started).toHaveLength(1);
    scheduler.finished(record.origin, 'failure');
    record.attempts = 1;
    record.notBefore = Date.now() + 1_000;
    store.release(record);
    scheduler.wake();
    await turn();
    expect(started).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(started).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(started.map((r) => r.key)).toEqual(['later', 'later']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('holds an origin behind an open circuit and probes it once the circuit half-opens', async () => {
    const breaker = new OriginBreakers(
      { ...BREAKER_DEFAULTS, minRequests: 1, failureRate: 0.5, openMs: 5_000 },
      { onOpen: () => undefined, onClose: () => undefined },
    );
    const { scheduler, started, put } = setup({ breaker });
    put(new TestRecord('1', 'https://down.example'));
    await turn();
    scheduler.finished('https://down.example', 'failure');
    put(new TestRecord('2', 'https://down.example'));
    put(new TestRecord('3', 'https://down.example'));
    await turn();
    expect(started.map((r) => r.key)).toEqual(['1']);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(started.map((r) => r.key)).toEqual(['1']);
    await vi.advanceTimersByTimeAsync(1);
    // One probe, not both: the circuit is half-open.
    expect(started.map((r) => r.key)).toEqual(['1', '2']);
  });

  it('runs on an injected clock', async () => {
    let now = 1_000;
    const timers: Array<{ at: number; fn: () => void }> = [];
    const clock: Clock = {
      now: () => now,
      setTimeout: (fn, ms) => {
        const timer = { at: now + ms, fn };
        timers.push(timer);
        return timer;
      },
      clearTimeout: (handle) => {
        timers.splice(timers.indexOf(handle as (typeof timers)[number]), 1);
      },
    };
    const { store, scheduler, started } = setup({ clock });
    store.put(new TestRecord('due-later', 'https://a.example', 1, Date.now() + 250));
    scheduler.wake();
    await turn();
    expect(started).toHaveLength(0);
    expect(timers).toHaveLength(1);
    now = Date.now() + 250;
    timers.shift()?.fn();
    expect(started.map((r) => r.key)).toEqual(['due-later']);
  });

  it('does nothing once stopped', async () => {
    const { scheduler, started, put } = setup();
    scheduler.stop();
    put(new TestRecord('1'));
    await turn();
    expect(started).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});
