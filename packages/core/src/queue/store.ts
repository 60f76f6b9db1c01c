import type { OverflowPolicy } from '../options/options.js';

/**
 * One notification as the store keeps it. `payload` is whatever the dispatcher needs to send it
 * again: the live handle for the memory store; a durable store keeps a serialised request and
 * rebuilds the payload in {@link NotificationStore.loadPending}.
 */
export interface StoredRecord<TPayload = unknown> {
  readonly id: string;
  readonly origin: string;
  /** Body bytes, counted against `maxQueuedBytes`. */
  readonly bytes: number;
  readonly payload: TPayload;
  /** Attempts already made. */
  attempts: number;
  /** Epoch milliseconds before which the record is not due (backoff). */
  notBefore: number;
}

/** What {@link NotificationStore.put} did with a new record. */
export type PutResult<TPayload> =
  { accepted: true; evicted: Array<StoredRecord<TPayload>> } | { accepted: false; reason: 'full' };

/** The scheduler's answer for each due record offered by {@link NotificationStore.take}. */
export type Admit = 'take' | 'skip-origin' | 'stop';

/** The bounds a store enforces on `put`. */
export interface StoreLimits {
  maxQueued: number;
  maxQueuedBytes: number;
  overflow: OverflowPolicy;
}

/**
 * Where notifications wait between the call and their final state: queued, leased to the
 * scheduler while in flight, or waiting out a backoff. The scheduler only talks to this interface,
 * so a durable store can replace the memory one without touching it.
 *
 * The calls are synchronous because they sit on the request path: a store on an embedded database
 * (SQLite with a synchronous driver) writes through; a store on a network service (Redis) keeps a
 * local buffer and writes behind, and makes {@link NotificationStore.flush} wait for it, which
 * `drain()` and `close()` call.
 */
export interface NotificationStore<TPayload = unknown> {
  /** Adds a record within the bounds; with `'drop-oldest'` it may evict waiting records to make room. */
  put(record: StoredRecord<TPayload>): PutResult<TPayload>;
  /**
   * Offers due records, fairly across origins, to `admit`; the ones admitted are leased (they stay
   * stored, counted against the bounds, until settled or released).
   */
  take(now: number, admit: (record: StoredRecord<TPayload>) => Admit): Array<StoredRecord<TPayload>>;
  /** Returns a leased record to wait until `record.notBefore` (a retry). */
  release(record: StoredRecord<TPayload>): void;
  /** Forgets a record for good: it reached a final state. */
  settle(id: string): void;
  /** Removes a record that is waiting (not leased); false if there is none. */
  remove(id: string): boolean;
  /** The earliest `notBefore` among waiting records that are not due yet. */
  nextDueAt(): number | undefined;
  /** Records stored, leased ones included. */
  readonly size: number;
  /** Body bytes stored, leased ones included. */
  readonly bytes: number;
  /** Records waiting to be taken (queued or in backoff). */
  readonly waiting: number;
  /** Records a previous process left behind; the memory store has none. */
  loadPending(): Promise<Array<StoredRecord<TPayload>>>;
  /** Waits until every change so far is durable. */
  flush?(): Promise<void>;
}

type Status = 'ready' | 'delayed' | 'leased' | 'gone';

interface Entry<T> {
  record: StoredRecord<T>;
  status: Status;
  /** Stamp of the entry's latest arrival among the waiting; older stamps in `#arrivals` are stale. */
  arrival: number;
}

/** A FIFO with O(1) shift that reuses its array. */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  peek(): T | undefined {
    return this.#items[this.#head];
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined as T;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/** A binary min-heap on `notBefore`, for records in backoff. */
class DelayHeap<T> {
  readonly #items: Array<Entry<T>> = [];
  get length(): number {
    return this.#items.length;
  }
  peek(): Entry<T> | undefined {
    return this.#items[0];
  }
  push(entry: Entry<T>): void {
    const items = this.#items;
    items.push(entry);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((items[parent] as Entry<T>).record.notBefore <= entry.record.notBefore) break;
      items[i] = items[parent] as Entry<T>;
      i = parent;
    }
    items[i] = entry;
  }
  pop(): Entry<T> | undefined {
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
          right < items.length &&
          (items[right] as Entry<T>).record.notBefore < (items[left] as Entry<T>).record.notBefore
            ? right
            : left;
        if ((items[child] as Entry<T>).record.notBefore >= last.record.notBefore) break;
        items[i] = items[child] as Entry<T>;
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
export class MemoryStore<TPayload = unknown> implements NotificationStore<TPayload> {
  readonly #limits: StoreLimits;
  readonly #entries = new Map<string, Entry<TPayload>>();
  /** Waiting entries in arrival order, for drop-oldest. */
  readonly #waitingOrder = new Map<string, Entry<TPayload>>();
  /**
   * The same order as a FIFO with lazy deletion, for finding the oldest in O(1): a Map whose first
   * entries were deleted keeps them as holes until it rehashes, so scanning it from the front on
   * every overflowing put() cost O(holes); the outage benchmark measured a fifth of the CPU there.
   */
  #arrivals = new Fifo<{ entry: Entry<TPayload>; arrival: number }>();
  #arrivalCount = 0;
  readonly #ready = new Map<string, Fifo<Entry<TPayload>>>();
  readonly #delayed = new DelayHeap<TPayload>();
  #bytes = 0;

  constructor(limits: StoreLimits) {
    this.#limits = limits;
  }

  get size(): number {
    return this.#entries.size;
  }
  get bytes(): number {
    return this.#bytes;
  }
  get waiting(): number {
    return this.#waitingOrder.size;
  }

  put(record: StoredRecord<TPayload>): PutResult<TPayload> {
    const { maxQueued, maxQueuedBytes, overflow } = this.#limits;
    const fits = (): boolean =>
      this.#entries.size < maxQueued && this.#bytes + record.bytes <= maxQueuedBytes;
    const evicted: Array<StoredRecord<TPayload>> = [];
    if (!fits()) {
      if (overflow !== 'drop-oldest' || record.bytes > maxQueuedBytes)
        return { accepted: false, reason: 'full' };
      while (!fits()) {
        const entry = this.#oldestWaiting();
        if (entry === undefined) break;
        this.#forget(entry.record.id, entry);
        evicted.push(entry.record);
      }
      // Everything left is in flight: the newcomer is the one that cannot fit.
      if (!fits()) return { accepted: false, reason: 'full' };
    }
    const entry: Entry<TPayload> = { record, status: 'ready', arrival: 0 };
    this.#entries.set(record.id, entry);
    this.#bytes += record.bytes;
    this.#enqueue(entry, Date.now());
    return { accepted: true, evicted };
  }

  take(now: number, admit: (record: StoredRecord<TPayload>) => Admit): Array<StoredRecord<TPayload>> {
    this.#promote(now);
    const taken: Array<StoredRecord<TPayload>> = [];
    let progress = true;
    while (progress && this.#ready.size > 0) {
      progress = false;
      for (const [origin, fifo] of this.#ready) {
        let entry = fifo.peek();
        while (entry !== undefined && entry.status !== 'ready') {
          fifo.shift();
          entry = fifo.peek();
        }
        if (entry === undefined) {
          this.#ready.delete(origin);
          continue;
        }
        const verdict = admit(entry.record);
        if (verdict === 'stop') return taken;
        if (verdict === 'skip-origin') continue;
        fifo.shift();
        entry.status = 'leased';
        this.#waitingOrder.delete(entry.record.id);
        taken.push(entry.record);
        progress = true;
        // Rotate: the origin just served goes to the back of the round (with one origin there is
        // no round, and no Map churn).
        if (fifo.length === 0) this.#ready.delete(origin);
        else if (this.#ready.size > 1) {
          this.#ready.delete(origin);
          this.#ready.set(origin, fifo);
        }
      }
    }
    return taken;
  }

  release(record: StoredRecord<TPayload>): void {
    const entry = this.#entries.get(record.id);
    if (entry === undefined || entry.status !== 'leased') return;
    entry.record = record;
    this.#enqueue(entry, Date.now());
  }

  settle(id: string): void {
    const entry = this.#entries.get(id);
    if (entry !== undefined) this.#forget(id, entry);
  }

  remove(id: string): boolean {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.status === 'leased') return false;
    this.#forget(id, entry);
    return true;
  }

  nextDueAt(): number | undefined {
    let top = this.#delayed.peek();
    while (top !== undefined && top.status !== 'delayed') {
      this.#delayed.pop();
      top = this.#delayed.peek();
    }
    return top?.record.notBefore;
  }

  loadPending(): Promise<Array<StoredRecord<TPayload>>> {
    return Promise.resolve([]);
  }

  #enqueue(entry: Entry<TPayload>, now: number): void {
    this.#waitingOrder.set(entry.record.id, entry);
    entry.arrival = ++this.#arrivalCount;
    this.#arrivals.push({ entry, arrival: entry.arrival });
    if (this.#arrivals.length > 2 * this.#waitingOrder.size + 1024) {
      // Mostly stale (taken or settled since): rebuild from the Map, which holds the same order.
      this.#arrivals = new Fifo();
      for (const waiting of this.#waitingOrder.values()) {
        this.#arrivals.push({ entry: waiting, arrival: waiting.arrival });
      }
    }
    if (entry.record.notBefore > now) {
      entry.status = 'delayed';
      this.#delayed.push(entry);
      return;
    }
    entry.status = 'ready';
    let fifo = this.#ready.get(entry.record.origin);
    if (fifo === undefined) {
      fifo = new Fifo();
      this.#ready.set(entry.record.origin, fifo);
    }
    fifo.push(entry);
  }

  #promote(now: number): void {
    let top = this.#delayed.peek();
    while (top !== undefined && (top.status !== 'delayed' || top.record.notBefore <= now)) {
      this.#delayed.pop();
      if (top.status === 'delayed') {
        top.status = 'ready';
        let fifo = this.#ready.get(top.record.origin);
        if (fifo === undefined) {
          fifo = new Fifo();
          this.#ready.set(top.record.origin, fifo);
        }
        fifo.push(top);
      }
      top = this.#delayed.peek();
    }
  }

  #oldestWaiting(): Entry<TPayload> | undefined {
    for (let head = this.#arrivals.peek(); head !== undefined; head = this.#arrivals.peek()) {
      const { entry, arrival } = head;
      if (arrival === entry.arrival && (entry.status === 'ready' || entry.status === 'delayed')) return entry;
      this.#arrivals.shift();
    }
    return undefined;
  }

  #forget(id: string, entry: Entry<TPayload>): void {
    // Entries still referenced by a FIFO or the heap are skipped there lazily.
    entry.status = 'gone';
    this.#entries.delete(id);
    this.#waitingOrder.delete(id);
    this.#bytes -= entry.record.bytes;
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
export function createMemoryStore<TPayload = unknown>(limits: StoreLimits): MemoryStore<TPayload> {
  return new MemoryStore<TPayload>(limits);
}
