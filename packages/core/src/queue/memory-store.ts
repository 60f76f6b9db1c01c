import type {
  Admit,
  NotificationStore,
  PutResult,
  SettleOutcome,
  StoreHost,
  StoredRecord,
  StoreLimits,
} from './store.js';

type Status = 'ready' | 'delayed' | 'leased' | 'gone';

interface Entry {
  record: StoredRecord;
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
    if (this.#head === this.#items.length) {
      // Empty: start over in the same array.
      this.#items.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/**
 * Waiting entries in arrival order, each with the stamp it had when it arrived, kept flat (entry,
 * stamp, entry, stamp, ...): no object per arrival. A position is stale once its entry was taken,
 * forgotten or arrived again (a retry) since; stale positions are skipped lazily.
 */
class Arrivals {
  #items: Array<Entry | number> = [];
  #head = 0;
  get length(): number {
    return (this.#items.length - this.#head) / 2;
  }
  push(entry: Entry, stamp: number): void {
    this.#items.push(entry, stamp);
  }
  /** Forgets every position: all are stale (nothing waits). */
  clear(): void {
    if (this.#items.length === 0) return;
    this.#items.length = 0;
    this.#head = 0;
  }
  /** The oldest entry still waiting since the arrival recorded here. */
  oldest(): Entry | undefined {
    const items = this.#items;
    while (this.#head < items.length) {
      const entry = items[this.#head] as Entry;
      if (isCurrent(entry, items[this.#head + 1] as number)) return entry;
      items[this.#head] = 0;
      this.#head += 2;
      if (this.#head > 2048 && this.#head * 2 > items.length) {
        // Mostly consumed: let the front go (the array would otherwise only grow).
        this.#items = items.slice(this.#head);
        this.#head = 0;
        return this.oldest();
      }
    }
    this.#items = [];
    this.#head = 0;
    return undefined;
  }
  /** Drops every stale position (they outnumber the waiting entries), keeping the order. */
  compact(): void {
    const items = this.#items;
    const kept: Array<Entry | number> = [];
    for (let i = this.#head; i < items.length; i += 2) {
      const entry = items[i] as Entry;
      const stamp = items[i + 1] as number;
      if (isCurrent(entry, stamp)) kept.push(entry, stamp);
    }
    this.#items = kept;
    this.#head = 0;
  }
}

/** True when `entry` is waiting and `stamp` is its latest arrival. */
function isCurrent(entry: Entry, stamp: number): boolean {
  return stamp === entry.arrival && (entry.status === 'ready' || entry.status === 'delayed');
}

/** Origins whose FIFO stays in the round while empty, as long as the round is this small. */
const KEEP_EMPTY = 8;

/** Put's answer when nothing was evicted: shared, frozen (no object per put). */
const NONE_EVICTED: StoredRecord[] = Object.freeze([]) as unknown as StoredRecord[];
const ACCEPTED: PutResult = Object.freeze({ accepted: true, evicted: NONE_EVICTED });

/** A binary min-heap on `notBefore`, for records in backoff. */
class DelayHeap {
  readonly #items: Array<Entry> = [];
  get length(): number {
    return this.#items.length;
  }
  peek(): Entry | undefined {
    return this.#items[0];
  }
  push(entry: Entry): void {
    const items = this.#items;
    items.push(entry);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((items[parent] as Entry).record.notBefore <= entry.record.notBefore) break;
      items[i] = items[parent] as Entry;
      i = parent;
    }
    items[i] = entry;
  }
  pop(): Entry | undefined {
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
          (items[right] as Entry).record.notBefore < (items[left] as Entry).record.notBefore
            ? right
            : left;
        if ((items[child] as Entry).record.notBefore >= last.record.notBefore) break;
        items[i] = items[child] as Entry;
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
  readonly #entries = new Map<string, Entry>();
  /** Entries waiting (ready or delayed), not leased. */
  #waiting = 0;
  /**
   * Waiting entries in arrival order, for drop-oldest: a FIFO with lazy deletion finds the oldest
   * in O(1). (A Map whose first entries were deleted keeps them as holes until it rehashes, so
   * scanning one from the front on every overflowing put() cost O(holes); and a second Map of the
   * waiting held about 80 bytes more per queued notification, bench/memory.mjs.)
   */
  readonly #arrivals = new Arrivals();
  #arrivalCount = 0;
  readonly #ready = new Map<string, Fifo<Entry>>();
  readonly #delayed = new DelayHeap();
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
    return this.#waiting;
  }

  #fits(bytes: number): boolean {
    return this.#entries.size < this.#limits.maxQueued && this.#bytes + bytes <= this.#limits.maxQueuedBytes;
  }

  put(record: StoredRecord): PutResult {
    let evicted = NONE_EVICTED;
    if (!this.#fits(record.bytes)) {
      const { maxQueuedBytes, overflow } = this.#limits;
      if (record.bytes > maxQueuedBytes)
        return { accepted: false, reason: 'too-large', maxBytes: maxQueuedBytes };
      if (overflow !== 'drop-oldest') return { accepted: false, reason: 'full' };
      while (!this.#fits(record.bytes)) {
        const entry = this.#arrivals.oldest();
        if (entry === undefined) break;
        this.#forget(entry.record.key, entry);
        // Usually one: an array made for it holds one slot (an empty one grown by push() had 17,
        // about 150 bytes of garbage per overflowing put).
        if (evicted === NONE_EVICTED) evicted = [entry.record];
        else evicted.push(entry.record);
      }
      // Everything left is in flight: the newcomer is the one that cannot fit.
      if (!this.#fits(record.bytes)) return { accepted: false, reason: 'full' };
    }
    const entry: Entry = { record, status: 'ready', arrival: 0 };
    this.#entries.set(record.key, entry);
    this.#bytes += record.bytes;
    this.#enqueue(entry, Date.now());
    return evicted === NONE_EVICTED ? ACCEPTED : { accepted: true, evicted };
  }

  take(now: number, admit: (record: StoredRecord) => Admit): Array<StoredRecord> {
    this.#promote(now);
    const taken: Array<StoredRecord> = [];
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
          if (this.#ready.size > KEEP_EMPTY) this.#ready.delete(origin);
          continue;
        }
        const verdict = admit(entry.record);
        if (verdict === 'stop') return taken;
        if (verdict === 'skip-origin') continue;
        fifo.shift();
        entry.status = 'leased';
        this.#waiting--;
        taken.push(entry.record);
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
    const entry = this.#entries.get(record.key);
    if (entry === undefined || entry.status !== 'leased') return;
    entry.record = record;
    this.#enqueue(entry, Date.now());
  }

  attempt(): void {
    // Nothing to record: the live record already counts the attempt.
  }

  settle(record: StoredRecord, _outcome: SettleOutcome): void {
    const entry = this.#entries.get(record.key);
    if (entry !== undefined && entry.record === record) this.#forget(record.key, entry);
  }

  remove(key: string): boolean {
    const entry = this.#entries.get(key);
    if (entry === undefined || entry.status === 'leased') return false;
    this.#forget(key, entry);
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
    while (top !== undefined && top.status !== 'delayed') {
      this.#delayed.pop();
      top = this.#delayed.peek();
    }
    return top?.record.notBefore;
  }

  /** Makes a new or released entry wait: ready now, or delayed until its `notBefore`. */
  #enqueue(entry: Entry, now: number): void {
    // Nothing waits: every recorded arrival is stale. Dropped here rather than compacted every
    // 1,024 puts, the usual case when each notification is taken as soon as it arrives.
    if (this.#waiting === 0) this.#arrivals.clear();
    this.#waiting++;
    entry.arrival = ++this.#arrivalCount;
    this.#arrivals.push(entry, entry.arrival);
    // Mostly stale (taken or settled since): keep only the waiting, in the same order.
    if (this.#arrivals.length > 2 * this.#waiting + 1024) this.#arrivals.compact();
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

  #forget(id: string, entry: Entry): void {
    if (entry.status === 'ready' || entry.status === 'delayed') this.#waiting--;
    // Entries still referenced by a FIFO, the heap or the arrivals are skipped there lazily.
    entry.status = 'gone';
    this.#entries.delete(id);
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
export function createMemoryStore(limits: StoreLimits): MemoryStore {
  return new MemoryStore(limits);
}
