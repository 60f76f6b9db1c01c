/**
 * The contract every NotificationStore meets, as one suite that takes a store factory (undici
 * runs one suite over its memory and SQLite cache stores the same way). A durable store passes
 * `reopen`, which adds the recovery rows.
 */
import { describe, expect, it } from 'vitest';
import type { NotificationJson } from '../src/notification/json.js';
import type { NotificationStore, StoreHost, StoredRecord, StoreLimits } from '../src/queue/store.js';

/** A record as the dispatcher would hand it over: mutable counters, a json() view. */
export class TestRecord implements StoredRecord {
  readonly key: string;
  readonly origin: string;
  readonly bytes: number;
  attempts = 0;
  notBefore: number;
  readonly createdAt = Date.now();
  constructor(key: string, origin = 'https://a.example', bytes = 10, notBefore = 0) {
    this.key = key;
    this.origin = origin;
    this.bytes = bytes;
    this.notBefore = notBefore;
  }
  json(): NotificationJson {
    return {
      v: 1,
      key: this.key,
      id: `id-${this.key}`,
      url: `${this.origin}/hook`,
      origin: this.origin,
      method: 'POST',
      headers: ['content-type', 'application/json'],
      body: Buffer.alloc(this.bytes, 120).toString('base64'),
      confirm: 'response',
      keepBody: 0,
      timeout: { connect: 5_000, response: 10_000, total: 15_000 },
      retry: { attempts: 5, minDelay: 500, maxDelay: 30_000, factor: 2, maxRetryAfter: 60_000 },
      sign: false,
      attempts: this.attempts,
      notBefore: this.notBefore,
      createdAt: this.createdAt,
    };
  }
}

const LIMITS: StoreLimits = { maxQueued: 100, maxQueuedBytes: 10_000, overflow: 'drop-oldest' };
const DONE = { state: 'delivered', status: 204, errorCode: null, errorMessage: null } as const;
const takeAll = (store: NotificationStore, now = Date.now()): StoredRecord[] => store.take(now, () => 'take');
const keys = (records: readonly StoredRecord[]): string[] => records.map((record) => record.key);

/** Options of {@link storeContract}. */
export interface StoreContractOptions {
  /** For durable stores: a second store on the same storage, as a restarted process would open it. */
  reopen?: (limits: StoreLimits) => NotificationStore | Promise<NotificationStore>;
}

/** Registers the store contract suite for one implementation. */
export function storeContract(
  name: string,
  create: (limits: StoreLimits) => NotificationStore | Promise<NotificationStore>,
  options: StoreContractOptions = {},
): void {
  const open = async (limits: Partial<StoreLimits> = {}): Promise<NotificationStore> => {
    const store = await create({ ...LIMITS, ...limits });
    store.open({ revive: (json) => new TestRecord(json.key), wake: () => undefined });
    return store;
  };

  describe(`NotificationStore contract: ${name}`, () => {
    it('holds what it accepts, counting records and bytes', async () => {
      const store = await open();
      expect(store.put(new TestRecord('1', 'https://a.example', 10))).toMatchObject({
        accepted: true,
        evicted: [],
      });
      store.put(new TestRecord('2', 'https://a.example', 30));
      expect([store.size, store.bytes, store.waiting]).toEqual([2, 40, 2]);
      await store.close();
    });

    it('leases due records in order within an origin; leased ones stay counted', async () => {
      const store = await open();
      for (const key of ['1', '2', '3']) store.put(new TestRecord(key));
      const taken = takeAll(store);
      expect(keys(taken)).toEqual(['1', '2', '3']);
      expect([store.size, store.waiting]).toEqual([3, 0]);
      expect(takeAll(store)).toEqual([]);
      await store.close();
    });

    it('takes round-robin across origins, so one busy origin cannot hold the rest back', async () => {
      const store = await open();
      for (const key of ['a1', 'a2', 'a3']) store.put(new TestRecord(key, 'https://a.example'));
      store.put(new TestRecord('b1', 'https://b.example'));
      expect(keys(takeAll(store))).toEqual(['a1', 'b1', 'a2', 'a3']);
      await store.close();
    });

    it("honours admit: 'skip-origin' passes an origin over, 'stop' ends the take", async () => {
      const store = await open();
      store.put(new TestRecord('a1', 'https://a.example'));
      store.put(new TestRecord('b1', 'https://b.example'));
      store.put(new TestRecord('b2', 'https://b.example'));
      const skipA = store.take(Date.now(), (record) =>
        record.origin === 'https://a.example' ? 'skip-origin' : 'take',
      );
      expect(keys(skipA)).toEqual(['b1', 'b2']);
      expect(store.take(Date.now(), () => 'stop')).toEqual([]);
      expect(keys(takeAll(store))).toEqual(['a1']);
      await store.close();
    });

    it('keeps a released record until its notBefore, and reports when that is', async () => {
      const store = await open();
      const record = new TestRecord('1');
      store.put(record);
      const [leased] = takeAll(store);
      expect(leased).toBe(record);
      record.attempts = 1;
      store.attempt(record);
      const now = Date.now();
      record.notBefore = now + 1_000;
      store.release(record);
      expect(store.waiting).toBe(1);
      expect(store.nextDueAt()).toBe(now + 1_000);
      expect(takeAll(store, now + 999)).toEqual([]);
      expect(keys(takeAll(store, now + 1_000))).toEqual(['1']);
      expect(store.nextDueAt()).toBeUndefined();
      await store.close();
    });

    it('forgets a settled record, freeing its room; unknown records are ignored', async () => {
      const store = await open({ maxQueued: 1 });
      const record = new TestRecord('1', 'https://a.example', 25);
      store.put(record);
      takeAll(store);
      store.settle(record, DONE);
      expect([store.size, store.bytes, store.waiting]).toEqual([0, 0, 0]);
      store.settle(new TestRecord('nope'), {
        state: 'failed',
        status: 500,
        errorCode: 'X',
        errorMessage: 'x',
      });
      expect(store.put(new TestRecord('2'))).toMatchObject({ accepted: true });
      await store.close();
    });

    it('removes waiting records only', async () => {
      const store = await open();
      const one = new TestRecord('1');
      const two = new TestRecord('2', 'https://b.example');
      store.put(one);
      store.put(two);
      store.take(Date.now(), (record) => (record.key === '1' ? 'take' : 'skip-origin'));
      expect(store.remove(one)).toBe(false);
      expect(store.remove(two)).toBe(true);
      expect(store.remove(two)).toBe(false);
      expect(store.remove(new TestRecord('3'))).toBe(false);
      expect([store.size, store.waiting]).toEqual([1, 0]);
      await store.close();
    });

    it("refuses a record over the count bound with 'reject' and 'drop-newest'", async () => {
      for (const overflow of ['reject', 'drop-newest'] as const) {
        const store = await open({ maxQueued: 2, overflow });
        store.put(new TestRecord('1'));
        store.put(new TestRecord('2'));
        expect(store.put(new TestRecord('3'))).toEqual({ accepted: false, reason: 'full' });
        expect(store.size).toBe(2);
        await store.close();
      }
    });

    it("evicts the oldest waiting records for a newcomer with 'drop-oldest', never a leased one", async () => {
      const store = await open({ maxQueued: 3 });
      store.put(new TestRecord('1'));
      takeAll(store);
      store.put(new TestRecord('2'));
      store.put(new TestRecord('3'));
      const result = store.put(new TestRecord('4'));
      expect(result.accepted).toBe(true);
      expect(result.accepted && keys(result.evicted)).toEqual(['2']);
      expect(store.size).toBe(3);
      await store.close();
    });

    it('refuses a newcomer when everything held is leased, and one larger than the byte bound', async () => {
      const store = await open({ maxQueued: 1, maxQueuedBytes: 100 });
      store.put(new TestRecord('1'));
      takeAll(store);
      expect(store.put(new TestRecord('2'))).toEqual({ accepted: false, reason: 'full' });
      const other = await open({ maxQueuedBytes: 100 });
      // 'too-large' lets the dispatcher say why; a store may also answer 'full'.
      expect(other.put(new TestRecord('big', 'https://a.example', 101))).toMatchObject({
        accepted: false,
        reason: expect.stringMatching(/^(full|too-large)$/) as unknown,
      });
      await store.close();
      await other.close();
    });

    it('bounds body bytes', async () => {
      const store = await open({ maxQueuedBytes: 50, overflow: 'reject' });
      expect(store.put(new TestRecord('1', 'https://a.example', 30)).accepted).toBe(true);
      expect(store.put(new TestRecord('2', 'https://a.example', 30)).accepted).toBe(false);
      expect(store.put(new TestRecord('3', 'https://a.example', 20)).accepted).toBe(true);
      expect(store.bytes).toBe(50);
      await store.close();
    });

    it('resolves persisted, flush and close', async () => {
      const store = await open();
      const result = store.put(new TestRecord('1'));
      expect(result.accepted).toBe(true);
      if (result.accepted) await expect(result.persisted ?? Promise.resolve()).resolves.toBeUndefined();
      await expect(store.flush()).resolves.toBeUndefined();
      await expect(store.close()).resolves.toBeUndefined();
    });

    if (options.reopen !== undefined) {
      const reopen = options.reopen;
      it('hands records left unsettled to the next process, with their counters', async () => {
        const store = await open();
        const record = new TestRecord('kept');
        store.put(record);
        takeAll(store);
        record.attempts = 2;
        store.attempt(record);
        record.notBefore = Date.now() + 60_000;
        store.release(record);
        const done = new TestRecord('done');
        store.put(done);
        takeAll(store);
        store.settle(done, DONE);
        await store.close();
        const revived: NotificationJson[] = [];
        let woken = 0;
        const next = await reopen(LIMITS);
        const host: StoreHost = {
          revive: (json) => {
            revived.push(json);
            return Object.assign(new TestRecord(json.key), {
              attempts: json.attempts,
              notBefore: json.notBefore,
            });
          },
          wake: () => void woken++,
        };
        next.open(host);
        await next.flush();
        expect(revived.map((json) => [json.key, json.attempts])).toEqual([['kept', 2]]);
        expect(woken).toBeGreaterThan(0);
        expect(next.waiting).toBe(1);
        await next.close();
      });
    }
  });
}
