import type { DeliveryState } from '../notification/handle.js';
import type { NotificationJson } from '../notification/json.js';
import type { OverflowPolicy } from '../options/options.js';

/**
 * One notification as a store sees it. The dispatcher owns the object and writes `attempts` and
 * `notBefore` before it calls the store; the store reads them, and calls {@link StoredRecord.json}
 * when it needs the serialisable form (a durable store, off the call path).
 *
 * @example
 * ```ts
 * const row = { key: record.json().key, due: record.notBefore, data: JSON.stringify(record.json()) };
 * ```
 */
export interface StoredRecord {
  /**
   * Unique within this process, short and cheap to hash for in-memory indexes. `json().key` is the
   * storage key, unique across processes and restarts; a revived record's key is its storage key.
   */
  readonly key: string;
  readonly origin: string;
  /** Bytes the request holds (URL, headers, body), counted against `maxQueuedBytes`. */
  readonly bytes: number;
  /** Attempts started so far. */
  readonly attempts: number;
  /** Epoch milliseconds before which the record is not due (backoff). */
  readonly notBefore: number;
  /** Epoch milliseconds of the call. */
  readonly createdAt: number;
  /**
   * Bytes of the body alone (what `json().body` decodes to), so a durable store can check its
   * bounds at the call and serialise later; undefined when unknown.
   */
  readonly bodyBytes?: number;
  /** The serialisable form, made on each call: the memory store never calls it. */
  json(): NotificationJson;
}

/**
 * What {@link NotificationStore.put} did with a new record.
 *
 * @example
 * ```ts
 * const result = store.put(record);
 * if (!result.accepted) throw new QueueFullError('full');
 * ```
 */
export type PutResult =
  | {
      accepted: true;
      /**
       * Waiting records dropped to make room (`'drop-oldest'`); the dispatcher settles them
       * `'dropped'`. The memory store reuses this array (and the result) from put to put: read
       * it before anything that could put again.
       */
      evicted: StoredRecord[];
      /** Resolves once the record is durable; none means at once (`handle.persisted`). */
      persisted?: Promise<void>;
    }
  | { accepted: false; reason: 'full' }
  /** The record alone is larger than the byte bound: it can never fit. */
  | { accepted: false; reason: 'too-large'; maxBytes: number };

/**
 * The scheduler's answer for each due record offered by {@link NotificationStore.take}.
 *
 * @example
 * ```ts
 * store.take(Date.now(), (record) => (busy(record.origin) ? 'skip-origin' : 'take'));
 * ```
 */
export type Admit = 'take' | 'skip-origin' | 'stop';

/**
 * The bounds a store enforces on `put`.
 *
 * @example
 * ```ts
 * createMemoryStore({ maxQueued: 1_000, maxQueuedBytes: 8 << 20, overflow: 'drop-oldest' });
 * ```
 */
export interface StoreLimits {
  maxQueued: number;
  maxQueuedBytes: number;
  overflow: OverflowPolicy;
}

/**
 * How a record ended, for {@link NotificationStore.settle}: a durable store keeps failed and
 * dropped ones as dead letters. Read it during the call (it may be the live notification).
 *
 * @example
 * ```ts
 * if (outcome.state === 'failed') deadLetters.insert({ key, status: outcome.status, code: outcome.errorCode });
 * ```
 */
export interface SettleOutcome {
  /** Always a final state: delivered, sent, failed, cancelled or dropped. */
  readonly state: DeliveryState;
  /** The last HTTP status, if any. */
  readonly status: number | null;
  /** The AfterwardError code of the last error, e.g. `'AFTERWARD_ERR_HTTP_STATUS'`. */
  readonly errorCode: string | null;
  /** The last error's message (never the URL's path, query or userinfo). */
  readonly errorMessage: string | null;
}

/**
 * What a store may call back on the dispatcher that opened it.
 *
 * @example
 * ```ts
 * open(host) {
 *   for (const row of db.pending()) this.index(host.revive(JSON.parse(row.data)));
 *   host.wake();
 * }
 * ```
 */
export interface StoreHost {
  /**
   * Makes the live record for a notification the store found in storage (left by a previous
   * process, or a lease taken over). The store then holds the returned record as waiting (due at
   * its `notBefore`) and calls {@link StoreHost.wake}.
   */
  revive(json: NotificationJson): StoredRecord;
  /** Records became due outside `put` and `release` (recovered ones): run the scheduler. */
  wake(): void;
}

/**
 * Where notifications wait between the call and their final state: queued, leased to the
 * scheduler while in flight, or waiting out a backoff. The scheduler only talks to this
 * interface, so a durable store (SQLite) replaces the memory one without touching it. One
 * contract suite (`packages/core/test/store-contract.ts`) runs against every implementation.
 *
 * The calls are synchronous because they sit on the request path: a store keeps its index in
 * memory and writes behind (batched per event-loop turn, say), resolving each put's `persisted`
 * once written and making {@link NotificationStore.flush} wait for every write so far, which
 * `drain()` and `close()` call.
 *
 * @example
 * ```ts
 * const store: NotificationStore = createMemoryStore({ maxQueued: 1_000, maxQueuedBytes: 8 << 20, overflow: 'reject' });
 * createDispatcher({ store });
 * ```
 */
export interface NotificationStore {
  /**
   * Called once, when a dispatcher starts using the store: a durable store hands records it
   * recovered to `host.revive`, then calls `host.wake()`. The memory store has nothing to hand.
   */
  open(host: StoreHost): void;
  /** Adds a record within the bounds; with `'drop-oldest'` it may evict waiting records to make room. */
  put(record: StoredRecord): PutResult;
  /**
   * Offers due records, fairly across origins, to `admit`; the ones admitted are leased (they stay
   * stored, counted against the bounds, until settled or released).
   */
  take(now: number, admit: (record: StoredRecord) => Admit): StoredRecord[];
  /** An attempt of a leased record starts; `record.attempts` already counts it. */
  attempt(record: StoredRecord): void;
  /** Returns a leased record to wait until `record.notBefore` (a retry). */
  release(record: StoredRecord): void;
  /** Forgets a record for good: it reached a final state. Unknown keys are ignored. */
  settle(record: StoredRecord, outcome: SettleOutcome): void;
  /**
   * Removes a record that is waiting (not leased); false if it is not held or leased. Given the
   * record rather than its key, so that the memory store needs no index by key.
   */
  remove(record: StoredRecord): boolean;
  /** The earliest `notBefore` among waiting records that are not due yet. */
  nextDueAt(): number | undefined;
  /** Records stored, leased ones included. */
  readonly size: number;
  /** Bytes of the records stored (see {@link StoredRecord.bytes}), leased ones included. */
  readonly bytes: number;
  /** Records waiting to be taken (queued or in backoff). */
  readonly waiting: number;
  /** Waits until every change so far is durable. */
  flush(): Promise<void>;
  /**
   * A durable store passed as the `outbox` option gets the dispatcher's bounds here, before
   * `open`. Optional.
   */
  configure?(limits: StoreLimits): void;
  /** Resolves once the records found in storage are scheduled (`dispatcher.ready`). Optional. */
  readonly ready?: Promise<void>;
  /**
   * Called by `close()` before it cancels what is left: a durable store stops forgetting records
   * from then on (they stay in storage for the next start) and returns how many it keeps. Optional;
   * a store without it loses what is left.
   */
  keep?(): number;
  /** Gauges of the storage (rows, dead letters, file bytes), in `dispatcher.stats().store`. Optional. */
  stats?(): Record<string, number>;
  /** Flushes and releases the store's resources; the dispatcher calls it from `close()`. */
  close(): Promise<void>;
}
