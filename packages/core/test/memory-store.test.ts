import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../src/backend.js';
import type { StoredRecord } from '../src/queue/store.js';
import { storeContract, TestRecord } from './store-contract.js';

storeContract('memory', (limits) => createMemoryStore(limits));

describe('memory store, drop-oldest over a long storm', () => {
  const evictedBy = (result: ReturnType<ReturnType<typeof createMemoryStore>['put']>): string[] =>
    result.accepted ? result.evicted.map((record) => record.key) : ['refused'];

  it('evicts in arrival order across many thousand arrivals, a retry re-arriving at the back', () => {
    const store = createMemoryStore({ maxQueued: 10, maxQueuedBytes: 1 << 20, overflow: 'drop-oldest' });
    const evicted: string[] = [];
    for (let i = 0; i < 5_000; i++) evicted.push(...evictedBy(store.put(new TestRecord(String(i)))));
    expect(evicted).toEqual(Array.from({ length: 4_990 }, (_, i) => String(i)));
    expect([store.size, store.waiting]).toEqual([10, 10]);

    // The oldest goes out for an attempt and comes back for a retry: it now arrived last.
    const [leased] = store.take(Date.now(), (record) => (record.key === '4990' ? 'take' : 'stop'));
    expect(leased?.key).toBe('4990');
    expect([store.size, store.waiting]).toEqual([10, 9]);
    store.release(leased as StoredRecord);
    expect(store.waiting).toBe(10);
    const next: string[] = [];
    for (let i = 5_000; i < 5_010; i++) next.push(...evictedBy(store.put(new TestRecord(String(i)))));
    expect(next).toEqual(['4991', '4992', '4993', '4994', '4995', '4996', '4997', '4998', '4999', '4990']);

    // Settled, removed and leased records leave the waiting count exactly.
    const [first] = store.take(Date.now(), () => 'take');
    expect(store.waiting).toBe(0);
    store.settle(first as StoredRecord, {
      state: 'delivered',
      status: 204,
      errorCode: null,
      errorMessage: null,
    });
    expect([store.size, store.waiting]).toEqual([9, 0]);
  });
});

describe('memory store, drop-oldest when what is leased leaves no room', () => {
  it('refuses the newcomer without evicting waiting records that would not make room', () => {
    const store = createMemoryStore({ maxQueued: 10, maxQueuedBytes: 100, overflow: 'drop-oldest' });
    store.put(new TestRecord('leased', 'https://a.example', 60));
    store.take(Date.now(), () => 'take');
    const waiting = new TestRecord('waiting', 'https://a.example', 20);
    store.put(waiting);
    // 60 bytes leased: even with the waiting record gone, 50 more would not fit. Evicting it
    // anyway lost it (never reported as evicted, so its handle stayed 'queued').
    expect(store.put(new TestRecord('big', 'https://a.example', 50))).toEqual({
      accepted: false,
      reason: 'full',
    });
    expect([store.size, store.waiting, store.bytes]).toEqual([2, 1, 80]);
    expect(store.take(Date.now(), () => 'take')).toEqual([waiting]);
  });
});
