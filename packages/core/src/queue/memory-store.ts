import type {
  Admit,
  NotificationStore,
  PutResult,
  SettleOutcome,
  StoreHost,
  StoredRecord,
  StoreLimits,
} from './store.js';

/**
 * Where a memory store keeps its bookkeeping of a record: on the record itself (the notification
 * declares it, so its shape stays fixed). 0: not held; {@link LEASED}; above 0: waiting, the stamp
 * of its latest arrival (older stamps in `#arrivals` are stale).
 *
 * An entry object per record and a Map from key to entry held about 165 bytes per queued
 * notification (48 for the entry, about 92 of Map table, 24 for the key string), all of it
 * surviving young collections while the queue is full: most of what grew V8's new space from 17
 * to 134 MB in an outage (issue 15 row 5, /work/plan/outage.mjs).
 */
export const kStoreSlot = Symbol('afterward.storeSlot');

/** A record as the memory store holds it. */
type Held = StoredRecord & { [kStoreSlot]?: number };

/** The slot of a leased record (taken, its attempt running). */
const LEASED = -1;
/**
 * Arrival stamps wrap here, so the slot stays a small integer (a field that once held a number
 * past 2^31 becomes a 16-byte box in every notification). A stamp is only compared with the
 * stamps of the same record, which never arrives 2^30 times.
 */
const MAX_STAMP = 2 ** 30;

function slotOf(record: Held): number {
  return record[kStoreSlot] ?? 0;
}

/**
 * A FIFO in a ring that doubles when full. An array pushed at the back and sliced from the front
 * was about 90 bytes of garbage per put under a full queue (the grown and sliced copies), and a
 * copy of 10,000 slots is a large object that young collections promote.
 */
class Fifo<T> {
  /** The ring: its length is 0 or a power of two. */
  #items: Array<T | undefined> = [];
  #head = 0;
  #length = 0;
  get length(): number {
    return this.#length;
  }
  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    const items = this.#items;
    items[(this.#head + this.#length) & (items.length - 1)] = item;
    this.#length++;
  }
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const items = this.#items;
    const item = items[this.#head];
    items[this.#head] = undefined;
    this.#head = (this.#head + 1) & (items.length - 1);
    if (--this.#length === 0) {
      this.#head = 0;
      // Empty after a burst: let the large ring go.
      if (items.length > SMALL_RING) this.#items = [];
    }
    return item;
  }
  /** Empties the FIFO: in place while the ring is small (no new one on the next push). */
  clear(): void {
    if (this.#length === 0) return;
    const items = this.#items;
    if (items.length > SMALL_RING) this.#items = [];
    else for (let i = 0; i < this.#length; i++) items[(this.#head + i) & (items.length - 1)] = undefined;
    this.#head = 0;
    this.#length = 0;
  }
  #grow(): void {
    const old = this.#items;
    const size = old.length;
    const items = new Array<T | undefined>(size === 0 ? 16 : size * 2);
    for (let i = 0; i < this.#length; i++) items[i] = old[(this.#head + i) & (size - 1)];
    this.#items = items;
    this.#head = 0;
  }
}

/** A ring longer than this is dropped once empty. */
const SMALL_RING = 1024;

/**
 * Waiting records in arrival order, each with the stamp it had when it arrived, in two rings moved
 * together: no object per arrival. A position is stale once its record was taken, forgotten or
 * arrived again (a retry) since; stale positions are skipped lazily.
 */
class Arrivals {
  #records = new Fifo<Held>();
  #stamps = new Fifo<number>();
  get length(): number {
    return this.#records.length;
  }
  push(record: Held, stamp: number): void {
    this.#records.push(record);
    this.#stamps.push(stamp);
  }
  /** Forgets every position: all are stale (nothing waits). */
  clear(): void {
    this.#records.clear();
    this.#stamps.clear();
  }
  /** The oldest record still waiting since the arrival recorded here. */
  oldest(): Held | undefined {
    for (;;) {
      const record = this.#records.peek();
      if (record === undefined || slotOf(record) === this.#stamps.peek()) return record;
      this.#records.shift();
      this.#stamps.shift();
    }
  }
  /** Drops every stale position (they outnumber the waiting records), keeping the order. */
  compact(): void {
    const records = new Fifo<Held>();
    const stamps = new Fifo<number>();
    for (let record = this.#records.shift(); record !== undefined; record = this.#records.shift()) {
      const stamp = this.#stamps.shift() as number;
      if (slotOf(record) === stamp) {
        records.push(record);
        stamps.push(stamp);
      }
    }
    this.#records = records;
    this.#stamps = stamps;
  }
}

/** Origins whose FIFO stays in the round while empty, as long as the round is this small. */
const KEEP_EMPTY = 8;

/** Put's answer when nothing was evicted: shared, frozen (no object per put). */
const NONE_EVICTED: StoredRecord[] = Object.freeze([]) as unknown as StoredRecord[];
const ACCEPTED: PutResult = Object.freeze({ accepted: true, evicted: NONE_EVICTED });

/** A binary min-heap on `notBefore`, for records in backoff. */
class DelayHeap {
  readonly #items: Array<Held> = [];
  get length(): number {
    return this.#items.length;
  }
  peek(): Held | undefined {
    return this.#items[0];
  }
  push(record: Held): void {
    const items = this.#items;
    items.push(record);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((items[parent] as Held).notBefore <= record.notBefore) break;
      items[i] = items[parent] as Held;
      i = parent;
    }
    items[i] = record;
  }
  pop(): Held | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= items.length) break;
        const right = left + 1;
        const child =
          right < items.length && (items[right] as Held).notBefore < (items[left] as Held).notBefore
            ? right
            : left;
        if ((items[child] as Held).notBefore >= last.notBefore) break;
        items[i] = items[child] as Held;
        i = child;
      }
      items[i] = last;
    }
    return top;
  }
}

/**
 * The in-process store: bounded in count and bytes, FIFO within an origin, round-robin across
 * origins so one busy origin cannot hold the rest back.
 *
 * @example
 * ```ts
 * createDispatcher({ store: createMemoryStore({ maxQueued: 1_000, maxQueuedBytes: 8 << 20, overflow: 'drop-oldest' }) });
 * ```
 */
export class MemoryStore implements NotificationStore {
  readonly #limits: StoreLimits;
  /** Records held, leased ones included. */
  #size = 0;
  /** Records waiting (ready or delayed), not leased. */
  #waiting = 0;
  /** Bytes of the records waiting. */
  #waitingBytes = 0;
  /**
   * Waiting records in arrival order, for drop-oldest: a FIFO with lazy deletion finds the oldest
   * in O(1). (A Map whose first entries were deleted keeps them as holes until it rehashes, so
   * scanning one from the front on every overflowing put() cost O(holes); and a second Map of the
   * waiting held about 80 bytes more per queued notification, bench/memory.mjs.)
   */
  readonly #arrivals = new Arrivals();
  #arrivalCount = 0;
  /**
   * Ready records per origin. A record in a FIFO whose slot is above 0 is ready (one taken left its
   * FIFO; a delayed one is only in {@link #delayed}); the others there are stale.
   */
  readonly #ready = new Map<string, Fifo<Held>>();
  /** Records in backoff; those whose slot is no longer above 0 are stale. */
  readonly #delayed = new DelayHeap();
  #bytes = 0;
  /**
   * Put's answer when it evicted: one object and array, reused from put to put (see
   * {@link PutResult}). A result and an array made per overflowing put were about 110 bytes of
   * garbage per send() while the queue was full (issue 15 row 5).
   */
  readonly #evicted: PutResult & { accepted: true } = { accepted: true, evicted: [] };

  constructor(limits: StoreLimits) {
    this.#limits = limits;
  }

  get size(): number {
    return this.#size;
  }
  get bytes(): number {
    return this.#bytes;
  }
  get waiting(): number {
    return this.#waiting;
  }

  #fits(bytes: number): boolean {
    return this.#size < this.#limits.maxQueued && this.#bytes + bytes <= this.#limits.maxQueuedBytes;
  }

  put(record: StoredRecord): PutResult {
    let evicted: StoredRecord[] | undefined;
    let count = 0;
    if (!this.#fits(record.bytes)) {
      const { maxQueuedBytes, overflow } = this.#limits;
      if (record.bytes > maxQueuedBytes)
        return { accepted: false, reason: 'too-large', maxBytes: maxQueuedBytes };
      if (overflow !== 'drop-oldest') return { accepted: false, reason: 'full' };
      // What is leased alone leaves no room: evicting the waiting would not help, and would lose
      // them (a refused put reports no evictions).
      if (
        this.#size - this.#waiting >= this.#limits.maxQueued ||
        this.#bytes - this.#waitingBytes + record.bytes > maxQueuedBytes
      ) {
        return { accepted: false, reason: 'full' };
      }
      while (!this.#fits(record.bytes)) {
        const oldest = this.#arrivals.oldest();
        if (oldest === undefined) break;
        this.#forget(oldest);
        evicted ??= this.#evicted.evicted;
        evicted[count++] = oldest;
      }
      // Trimmed in place; never to 0, which would let its backing store go (a new one per put).
      if (evicted !== undefined && evicted.length !== count) evicted.length = count;
    }
    this.#size++;
    this.#bytes += record.bytes;
    this.#enqueue(record, Date.now());
    return evicted === undefined ? ACCEPTED : this.#evicted;
  }

  take(now: number, admit: (record: StoredRecord) => Admit): Array<StoredRecord> {
    this.#promote(now);
    const taken: Array<StoredRecord> = [];
    let progress = true;
    while (progress && this.#ready.size > 0) {
      progress = false;
      for (const [origin, fifo] of this.#ready) {
        let record = fifo.peek();
        while (record !== undefined && slotOf(record) <= 0) {
          fifo.shift();
          record = fifo.peek();
        }
        if (record === undefined) {
          if (this.#ready.size > KEEP_EMPTY) this.#ready.delete(origin);
          continue;
        }
        const verdict = admit(record);
        if (verdict === 'stop') return taken;
        if (verdict === 'skip-origin') continue;
        fifo.shift();
        record[kStoreSlot] = LEASED;
        this.#waiting--;
        this.#waitingBytes -= record.bytes;
        taken.push(record);
        progress = true;
        // Rotate: the origin just served goes to the back of the round (with one origin there is
        // no round, and no Map churn).
        if (fifo.length === 0) {
          // Kept while there are few origins: at a moderate rate every put() would otherwise make
          // a new FIFO and set it, and every take() delete it.
          if (this.#ready.size > KEEP_EMPTY) this.#ready.delete(origin);
        } else if (this.#ready.size > 1) {
          this.#ready.delete(origin);
          this.#ready.set(origin, fifo);
        }
      }
    }
    return taken;
  }

  release(record: StoredRecord): void {
    if (slotOf(record) !== LEASED) return;
    this.#enqueue(record, Date.now());
  }

  attempt(): void {
    // Nothing to record: the live record already counts the attempt.
  }

  settle(record: StoredRecord, _outcome: SettleOutcome): void {
    if (slotOf(record) !== 0) this.#forget(record);
  }

  remove(record: StoredRecord): boolean {
    if (slotOf(record) <= 0) return false;
    this.#forget(record);
    return true;
  }

  open(_host: StoreHost): void {
    // Nothing survives a process in memory: nothing to recover.
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  nextDueAt(): number | undefined {
    let top = this.#delayed.peek();
    while (top !== undefined && slotOf(top) <= 0) {
      this.#delayed.pop();
      top = this.#delayed.peek();
    }
    return top?.notBefore;
  }

  /** Makes a new or released record wait: ready now, or delayed until its `notBefore`. */
  #enqueue(record: Held, now: number): void {
    // Nothing waits: every recorded arrival is stale. Dropped here rather than compacted every
    // 1,024 puts, the usual case when each notification is taken as soon as it arrives.
    if (this.#waiting === 0) this.#arrivals.clear();
    this.#waiting++;
    this.#waitingBytes += record.bytes;
    const stamp = this.#arrivalCount === MAX_STAMP ? 1 : this.#arrivalCount + 1;
    this.#arrivalCount = stamp;
    record[kStoreSlot] = stamp;
    this.#arrivals.push(record, stamp);
    // Mostly stale (taken or settled since): keep only the waiting, in the same order.
    if (this.#arrivals.length > 2 * this.#waiting + 1024) this.#arrivals.compact();
    if (record.notBefore > now) {
      this.#delayed.push(record);
      return;
    }
    this.#makeReady(record);
  }

  /** Appends a ready record to its origin's FIFO. */
  #makeReady(record: Held): void {
    let fifo = this.#ready.get(record.origin);
    if (fifo === undefined) {
      fifo = new Fifo();
      this.#ready.set(record.origin, fifo);
    }
    fifo.push(record);
  }

  #promote(now: number): void {
    let top = this.#delayed.peek();
    while (top !== undefined && (slotOf(top) <= 0 || top.notBefore <= now)) {
      this.#delayed.pop();
      if (slotOf(top) > 0) this.#makeReady(top);
      top = this.#delayed.peek();
    }
  }

  #forget(record: Held): void {
    if (slotOf(record) > 0) {
      this.#waiting--;
      this.#waitingBytes -= record.bytes;
    }
    // Positions still held by a FIFO, the heap or the arrivals are skipped there lazily.
    record[kStoreSlot] = 0;
    this.#size--;
    this.#bytes -= record.bytes;
  }
}

/**
 * Creates the in-memory store the dispatcher uses by default.
 *
 * @example
 * ```ts
 * const store = createMemoryStore({ maxQueued: 10_000, maxQueuedBytes: 32 << 20, overflow: 'drop-oldest' });
 * ```
 */
export function createMemoryStore(limits: StoreLimits): MemoryStore {
  return new MemoryStore(limits);
}
