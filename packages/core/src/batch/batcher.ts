import { newId } from '../util/id.js';
import { originOfUrl } from '../util/redact-url.js';
import {
  internalsOf,
  isDispatcher,
  type DispatcherInternal,
  type DrainParticipant,
} from '../dispatcher/dispatcher.js';
import type { Dispatcher } from '../dispatcher/types.js';
import {
  CancelledError,
  ClosedError,
  DroppedError,
  HttpStatusError,
  InvalidArgumentError,
  isAfterwardError,
} from '../util/errors.js';
import type { DeliveryHandle, DeliveryResult } from '../notification/handle.js';
import { forgetShapes, Notification, type NotificationLifecycle } from '../notification/notification.js';
import { checkInteger, checkKeys, checkObject, DEFAULTS, show } from '../options/options.js';
import {
  addHeaders,
  isAbortSignal,
  normalizeRequest,
  stringifyJson,
  type SendInit,
} from '../request/request.js';

/** How a batch's body is laid out: a JSON array, or one JSON document per line. */
export type BatchFormat = 'json' | 'ndjson';

/**
 * Items kept outside a batcher as a few fields each until its next flush, then made into JSON all
 * together (an audit log's records): see {@link stageInto}.
 */
export interface BatchStage {
  /** Items kept and not yet written. */
  readonly size: number;
  /** Writes every kept item, in order, through `sink`, and forgets them. */
  write(sink: BatchSink): void;
}

/**
 * How a {@link BatchStage} writes its items into the next batch: each one's JSON as a string
 * (`take`), or as UTF-8 written straight into the batch's body, many items per {@link open} and
 * {@link close}, with no string made.
 *
 * @example
 * ```ts
 * let room = sink.open(512);
 * if (room === undefined) sink.take(json); // could not fit in any batch: refused there
 * else {
 *   const end = writeItem(room.buf, room.at); // at most 512 bytes
 *   room.buf[end] = room.separator;
 *   room.ends.push(end);
 *   room.at = end + 1;
 *   room.left--;
 *   sink.close();
 * }
 * ```
 */
export interface BatchSink {
  /** Adds one item's JSON. Throws only for an item that could never fit in a batch. */
  take(json: string): void;
  /**
   * Room for items of at most `bytes` bytes each, written one after another into the next
   * batch's body; undefined when an item that large could not fit in any batch (`take` measures
   * it exactly). Items written into it are held at {@link close}. Nothing else may be asked of
   * the sink (or of its batcher) while it is open.
   */
  open(bytes: number): BatchRoom | undefined;
  /**
   * Holds the items written into the open room since {@link open}: the batch may leave (`maxItems`),
   * after which the room is gone and the next item opens another. Does nothing when no room is
   * open.
   */
  close(): void;
}

/**
 * Where a {@link BatchStage} writes items into the next batch's body (see {@link BatchSink.open}).
 * After each item, its writer sets the separator after it, pushes its end, moves `at` past the
 * separator and takes one from `left`; once `left` is 0 or the next item might not end (with its
 * separator) by `end`, it closes the room and opens another. An item written but not pushed is
 * never held.
 */
export interface BatchRoom {
  /** The batch's body. */
  buf: Buffer;
  /** Where the next item starts. */
  at: number;
  /** An item and its separator end by here. */
  end: number;
  /** How many more items the room takes. */
  left: number;
  /** The byte after each item: a comma in the JSON format, a newline in NDJSON. */
  separator: number;
  /** Where each item written ends (its separator follows). */
  ends: number[];
}

/** What every batch request carries besides its body and id (which the batcher makes). */
export type BatchInit = Omit<SendInit, 'json' | 'body' | 'id' | 'signal'>;

/**
 * Options of {@link createBatcher}.
 *
 * @example
 * ```ts
 * createBatcher(dispatcher, { url: 'https://logs.example.com/ingest', maxItems: 500, format: 'ndjson' });
 * ```
 */
export interface BatcherOptions {
  /** Where every batch goes. */
  url: string | URL;
  /** Headers, method, retry, timeout and the rest of `send()`'s init, for every batch. */
  init?: BatchInit;
  /** A batch leaves once it holds this many items. Default 500. */
  maxItems?: number;
  /** A batch leaves at most this long after its first item was added. Default 1 000 ms. */
  maxWaitMs?: number;
  /** Largest body of one batch, in bytes; an item that would overflow it starts the next batch. Default 1 MiB. */
  maxBytes?: number;
  /** `'json'` (default): a JSON array; `'ndjson'`: one JSON document per line. */
  format?: BatchFormat;
  /** Items held or in flight at once; more are dropped (settled `'dropped'` and evented). Default 10 000. */
  maxPending?: number;
}

/** Options of {@link Batcher.add}. */
export interface BatchAddOptions {
  /** Aborting it takes the item out while its batch has not left yet. */
  signal?: AbortSignal;
}

/**
 * Combines items into batch requests. Each item gets its own handle, which settles with the
 * outcome of the request that carried it.
 *
 * @example
 * ```ts
 * const audit = createBatcher(dispatcher, { url: 'https://audit.example.com/records' });
 * const handle = audit.add({ event: 'login', user: 42 });
 * ```
 */
export interface Batcher {
  /** The URL batches go to. */
  readonly url: string;
  /** Serialises the item now (throws InvalidArgumentError if it cannot be) and holds it for the next batch. */
  add(item: unknown, options?: BatchAddOptions): DeliveryHandle;
  /** Sends the partial batch now. `drain()` and `close()` of the dispatcher call it too. */
  flush(): void;
  /** Items held or in flight, not yet settled. */
  pending(): number;
  /**
   * Stops accepting items (`add()` then throws {@link ClosedError}), sends the partial batch,
   * and resolves once every item this batcher took has settled (delivered, failed, dropped or
   * cancelled; a 413 split included). Then it unregisters from its dispatcher, which keeps no
   * reference to it. The dispatcher stays open. Never rejects; calling it again returns the same
   * promise.
   *
   * @example
   * ```ts
   * const batcher = createBatcher(dispatcher, { url: 'https://logs.example.com' });
   * batcher.add({ type: 'job-done', job: 12 });
   * await batcher.close(); // the partial batch went and settled; the dispatcher forgot the batcher
   * ```
   */
  close(): Promise<void>;
}

interface Item {
  /** The item's handle. */
  readonly notification: Notification;
  /** Its place among the items of its batch (held, or one request's). */
  index: number;
  /** Attempts made by requests that carried this item before the current one (413 splits). */
  attempts: number;
}

/** The items of one batch request: its body, where each item ends in it, and the handles among them. */
interface Batch {
  /** The request body, exactly: a JSON array, or one JSON document per line. */
  readonly body: Buffer;
  /** Where each item's JSON ends in {@link body} (before its separator). */
  readonly ends: number[];
  /** Items with a handle, in order; items nobody observes (audit records) have none. */
  readonly observed: Item[];
  /**
   * The batcher's own buffer that {@link body} is the start of, when the body left in it rather
   * than as a copy: it may be written into again once its request settled (see `#settle`).
   */
  readonly whole: Buffer | undefined;
}

const COMMA = 0x2c;
const NEWLINE = 0x0a;
const OPEN = 0x5b;
const CLOSE = 0x5d;

// `satisfies` makes a new option in BatcherOptions a compile error here until it is listed.
const OPTION_KEYS = Object.keys({
  url: true,
  init: true,
  maxItems: true,
  maxWaitMs: true,
  maxBytes: true,
  format: true,
  maxPending: true,
} satisfies Record<keyof BatcherOptions, true>);
const OWNED_KEYS = ['json', 'body', 'id', 'signal'] as const;

/** {@link BatcherOptions} with the defaults filled in (the URL is checked by the batcher). */
export interface ResolvedBatcherOptions {
  init: BatchInit;
  format: BatchFormat;
  maxItems: number;
  maxWaitMs: number;
  maxBytes: number;
  maxPending: number;
}

/**
 * Validates a batcher's options (typos included) and fills in the defaults. Pure; throws
 * InvalidArgumentError.
 *
 * @example
 * ```ts
 * resolveBatcherOptions({ url: 'https://logs.example.com', maxItems: 500 }).maxWaitMs; // 1000
 * ```
 */
export function resolveBatcherOptions(options: BatcherOptions): ResolvedBatcherOptions {
  const opts = checkObject('createBatcher options', options);
  checkKeys('createBatcher options', opts, OPTION_KEYS);
  const init = options.init === undefined ? {} : (checkObject('init', options.init) as BatchInit);
  for (const key of OWNED_KEYS) {
    if (key in init) {
      throw new InvalidArgumentError(
        `batch init cannot set ${key}: the batcher makes each batch's body and id`,
      );
    }
  }
  const defaults = DEFAULTS.batch;
  const format = options.format ?? defaults.format;
  if (format !== 'json' && format !== 'ndjson') {
    throw new InvalidArgumentError(`format must be 'json' or 'ndjson', got ${show(format)}`);
  }
  return {
    init,
    format,
    maxItems:
      options.maxItems === undefined ? defaults.maxItems : checkInteger('maxItems', options.maxItems, 1),
    maxWaitMs:
      options.maxWaitMs === undefined
        ? defaults.maxWaitMs
        : checkInteger('maxWaitMs', options.maxWaitMs, 0, 2 ** 31 - 1),
    maxBytes:
      options.maxBytes === undefined ? defaults.maxBytes : checkInteger('maxBytes', options.maxBytes, 3),
    maxPending:
      options.maxPending === undefined
        ? defaults.maxPending
        : checkInteger('maxPending', options.maxPending, 1),
  };
}
const CONTENT_TYPE: Record<BatchFormat, string> = {
  json: 'application/json',
  ndjson: 'application/x-ndjson',
};

/** The lifecycle of a handle made outside any batcher's queue (a drop the dispatcher refused to count). */
const DETACHED: NotificationLifecycle = {
  settled: () => undefined,
  retried: () => undefined,
  cancelling: () => false,
};

/**
 * Creates a batcher that sends items to one URL in batches: when `maxItems` is reached, when
 * `maxWaitMs` has passed since the first item, or when the next item would push the body past
 * `maxBytes`. One batch is one notification to the dispatcher, so the queue bounds, retries and
 * the idempotency id (stable across retries) apply per batch. A 413 answer splits the batch in
 * halves, each sent again; a single item still refused fails. `drain()` and `close()` flush
 * partial batches.
 *
 * @example
 * ```ts
 * const batcher = createBatcher(dispatcher, { url: 'https://logs.example.com', maxWaitMs: 500 });
 * batcher.add({ type: 'signup', user: 7 });
 * process.on('SIGTERM', () => void dispatcher.close()); // flushes the partial batch
 * ```
 */
export function createBatcher(dispatcher: Dispatcher, options: BatcherOptions): Batcher {
  return new BatcherImpl(dispatcher, options);
}

class BatcherImpl implements Batcher {
  readonly url: string;
  readonly #dispatcher: Dispatcher;
  readonly #internal: DispatcherInternal;
  readonly #init: SendInit;
  readonly #method: string;
  readonly #maxItems: number;
  readonly #maxWaitMs: number;
  readonly #maxBytes: number;
  readonly #maxPending: number;
  readonly #ndjson: boolean;
  readonly #changed: () => void;
  readonly #participant: DrainParticipant;
  /** Set by {@link close}; resolved once nothing is pending. */
  #closing: Promise<void> | undefined;
  #whenSettled: (() => void) | undefined;
  /** The lifecycle of every item handle: items are counted by their batch, not on their own. */
  readonly #items: NotificationLifecycle = {
    settled: () => this.#changed(),
    retried: () => undefined,
    cancelling: (notification) => this.#unhold(notification),
  };
  /**
   * The held items as the body of the next batch, in UTF-8: each item's JSON is written here when
   * it is added, followed by its separator (after a leading `[` in the JSON format). Nothing of a
   * held item stays on the JS heap: audit records held for a whole batch were promoted out of
   * V8's young generation and paid for in GC, more than their serialisation cost. A mostly full
   * buffer leaves with its batch, and the next batch is written into {@link #spare} or a new one;
   * a mostly empty one stays, its batch copied out. It grows to about `maxBytes` (at most
   * `maxBytes` plus 3 bytes per UTF-16 unit of the largest item).
   */
  #body: Buffer = Buffer.alloc(0);
  /**
   * A settled batch's buffer, as long as {@link #body}, to write a later batch into: a new one of
   * 100+ KiB per batch costs a page fault per page on its first write. Sending batches cost 0.86
   * µs an audit record beyond the batcher's own work, 0.16 µs with the spare (bench/batch-cpu.mjs,
   * bench/README.md "After the thirteenth pass").
   */
  #spare: Buffer | undefined = undefined;
  /** Bytes of {@link #body} in use: exactly the size of the next batch's body. */
  #used: number;
  /** Where each held item's JSON ends in {@link #body}. */
  #ends: number[] = [];
  /** Held items with a handle, in order. */
  #observed: Item[] = [];
  #inFlight = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Items kept outside until the next flush (see {@link stageInto}). */
  #stage: BatchStage | undefined;
  /** Set while {@link #stage} is written: a flush it causes (`maxItems` reached) does not write it again. */
  #writingStage = false;
  /** {@link addJson} unchecked: the stage's items are written while the batcher closes (its last flush). */
  readonly #take = (json: string): void => this.#commit(this.#write(json));
  /** What the stage writes through: {@link #take}, or its items written in place (a room). */
  readonly #sink: BatchSink = {
    take: this.#take,
    open: (bytes) => this.#open(bytes),
    close: () => this.#close(),
  };
  /** The one room of {@link #sink}, reused (see {@link #open}). */
  readonly #room: BatchRoom = { buf: this.#body, at: 0, end: 0, left: 0, separator: COMMA, ends: [] };
  /** Whether {@link #room} is open. */
  #roomOpen = false;
  /** A room's ends when it takes one item, checked as {@link addJson} checks it (see {@link #open}). */
  readonly #checked: number[] = [];

  constructor(dispatcher: Dispatcher, options: BatcherOptions) {
    if (!isDispatcher(dispatcher)) {
      throw new InvalidArgumentError(
        `createBatcher needs a dispatcher from createDispatcher(), got ${show(dispatcher)}`,
      );
    }
    const { init, format, maxItems, maxWaitMs, maxBytes, maxPending } = resolveBatcherOptions(options);
    this.#ndjson = format === 'ndjson';
    this.#used = this.#frame();
    this.#maxItems = maxItems;
    this.#maxWaitMs = maxWaitMs;
    this.#maxBytes = maxBytes;
    this.#maxPending = maxPending;

    const headers: string[] = [];
    if (init.headers !== undefined) addHeaders(headers, init.headers);
    if (!headers.some((name, i) => i % 2 === 0 && name === 'content-type')) {
      headers.push('content-type', CONTENT_TYPE[format]);
    }
    const pairs: Array<[string, string]> = [];
    for (let i = 0; i < headers.length; i += 2) pairs.push([headers[i] as string, headers[i + 1] as string]);
    this.#init = { ...init, headers: pairs };
    // Validated once now, so a bad URL or init throws here rather than failing every batch later.
    const checked = checkTarget(options.url, this.#init);
    this.url = checked.url;
    this.#method = checked.method;

    this.#dispatcher = dispatcher;
    this.#internal = internalsOf(dispatcher);
    this.#participant = { flush: () => this.flush(), pending: () => this.pending() };
    const changed = this.#internal.addDrainParticipant(this.#participant);
    this.#changed = () => {
      changed();
      if (this.#whenSettled !== undefined && this.pending() === 0) this.#whenSettled();
    };
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = new Promise<void>((resolve) => {
      this.#whenSettled = () => {
        this.#whenSettled = undefined;
        // Only now: until its last batch settled (a 413 split may send again), drain() must count it.
        this.#internal.removeDrainParticipant(this.#participant);
        forgetShapes(this.#items);
        resolve();
      };
    });
    this.flush();
    if (this.pending() === 0) this.#whenSettled?.();
    return this.#closing;
  }

  #checkOpen(): void {
    if (this.#closing !== undefined) {
      throw new ClosedError('add() after close(): the batcher no longer accepts items');
    }
    if (this.#dispatcher.closed) {
      throw new ClosedError('add() after close(): the dispatcher no longer accepts notifications');
    }
  }

  add(item: unknown, options: BatchAddOptions = {}): DeliveryHandle {
    this.#checkOpen();
    checkObject('add() options', options);
    const { signal } = options;
    if (signal !== undefined && !isAbortSignal(signal)) {
      throw new InvalidArgumentError(`signal must be an AbortSignal, got ${show(signal)}`);
    }
    const bytes = this.#write(stringifyJson(item));
    if (this.pending() >= this.#maxPending) return this.#drop();
    const id = newId();
    const notification = new Notification(id, undefined, this.#items, {
      id,
      url: this.url,
      method: this.#method,
    });
    if (signal !== undefined) {
      if (signal.aborted) {
        notification.settle('cancelled', new CancelledError(signal.reason));
        return notification;
      }
      notification.watch(signal);
    }
    this.#hold(bytes, { notification, index: 0, attempts: 0 });
    return notification;
  }

  /** {@link add} without a handle: for records nobody awaits, at a fraction of the cost. */
  addUnobserved(item: unknown): void {
    this.addJson(stringifyJson(item));
  }

  /** {@link addUnobserved} for an item already serialised (by trusted code: not checked). */
  addJson(json: string): void {
    this.#checkOpen();
    this.#take(json);
  }

  /** See {@link stageInto}. */
  attachStage(stage: BatchStage): void {
    if (this.#stage !== undefined && this.#stage !== stage) {
      throw new InvalidArgumentError('this batcher already has a stage');
    }
    this.#stage = stage;
  }

  /**
   * Called as the stage takes an item: throws ClosedError as {@link addJson} would, and starts the
   * `maxWaitMs` wait if nothing else did. True when, with that item, the held and staged items
   * reach `maxItems`: the stage is then written, and the batch leaves. Items past `maxPending` are
   * dropped when written.
   */
  staged(): boolean {
    this.#checkOpen();
    if (this.#timer === undefined) this.#arm();
    return this.#ends.length + (this.#stage?.size ?? 0) + 1 >= this.#maxItems;
  }

  /**
   * Writes the stage's items as held items (a flush on the way when `maxItems` is reached). Not
   * checked for being open: a closing batcher's last flush writes them too.
   */
  writeStage(): void {
    const stage = this.#stage;
    if (stage === undefined || stage.size === 0 || this.#writingStage) return;
    this.#writingStage = true;
    try {
      stage.write(this.#sink);
    } finally {
      this.#writingStage = false;
    }
  }

  /**
   * A room from {@link #used} for items of at most `bytes` bytes: as many as this batch takes
   * before `maxItems`, `maxPending` or `maxBytes`, held at once by {@link #close}, where each
   * item written as a string is held on its own. Past those bounds, a room of one item, held by
   * {@link #commit} as a string's is: set aside while the full batch leaves, or dropped.
   */
  #open(bytes: number): BatchRoom | undefined {
    // A room left open holds its items first (the batch may leave then).
    this.#close();
    if (this.#frame() + bytes + 1 > this.#maxBytes) return undefined;
    const at = this.#used;
    this.#reserve(at + bytes + 1);
    const room = this.#room;
    room.buf = this.#body;
    room.at = at;
    room.separator = this.#ndjson ? NEWLINE : COMMA;
    const free = Math.min(this.#maxItems - this.#ends.length, this.#maxPending - this.pending());
    if (free <= 0 || at + bytes + 1 > this.#maxBytes) {
      room.end = at + bytes + 1;
      room.left = 1;
      room.ends = this.#checked;
    } else {
      room.end = Math.min(this.#body.length, this.#maxBytes);
      room.left = free;
      room.ends = this.#ends;
    }
    this.#roomOpen = true;
    return room;
  }

  /** Holds what was written into the open room (see {@link #open}). */
  #close(): void {
    if (!this.#roomOpen) return;
    this.#roomOpen = false;
    const room = this.#room;
    if (room.ends === this.#checked) {
      const end = this.#checked.pop();
      this.#checked.length = 0;
      if (end !== undefined) this.#commit(end - this.#used);
      return;
    }
    // Past the last item pushed, not `room.at`: an item half-written is not held.
    const ends = this.#ends;
    if (ends.length === 0) return;
    this.#used = (ends[ends.length - 1] as number) + 1;
    if (ends.length >= this.#maxItems) this.flush();
    else if (this.#timer === undefined) this.#arm();
  }

  /**
   * Writes an item's JSON after the held items, uncommitted (see {@link #hold}); returns its exact
   * size in bytes. Throws when it could never fit in a batch.
   */
  #write(json: string): number {
    const at = this.#used;
    // 3 bytes per UTF-16 unit at most, and its separator: when that might not fit, the item is
    // measured first, so the buffer grows to what is written (a huge item refused grows nothing).
    if (at + 3 * json.length + 1 > this.#body.length) {
      this.#checkFits(Buffer.byteLength(json));
      this.#reserve(at + 3 * json.length + 1);
    }
    const bytes = this.#body.write(json, at);
    this.#checkFits(bytes);
    return bytes;
  }

  /** Holds the item written uncommitted at {@link #used}, `bytes` long; dropped past `maxPending`. */
  #commit(bytes: number): void {
    if (this.pending() >= this.#maxPending) {
      this.#drop();
      return;
    }
    this.#hold(bytes, undefined);
  }

  /** Throws when an item of `bytes` could never fit in a batch. */
  #checkFits(bytes: number): void {
    if (this.#frame() + bytes + 1 > this.#maxBytes) {
      throw new InvalidArgumentError(
        `an item of ${bytes} bytes cannot fit in a batch of at most ${this.#maxBytes} bytes`,
      );
    }
  }

  /**
   * Makes {@link #body} at least `size` bytes long, keeping what is in use: doubled, but past
   * `maxBytes` only as far as asked (the held items and one more, each within `maxBytes`).
   */
  #reserve(size: number): void {
    if (size <= this.#body.length) return;
    const doubled = Math.min(2 * this.#body.length, this.#maxBytes + 1);
    const grown = Buffer.allocUnsafeSlow(Math.max(doubled, size, 4096));
    this.#body.copy(grown, 0, 0, this.#used);
    this.#body = grown;
  }

  /** Holds the item {@link #write} just wrote (`bytes` long): in this batch, or the next if it would pass `maxBytes`. */
  #hold(bytes: number, item: Item | undefined): void {
    let at = this.#used;
    if (this.#ends.length > 0 && at + bytes + 1 > this.#maxBytes) {
      // Set aside while the held items leave without it (a listener run by the send may add items).
      const json = Buffer.from(this.#body.subarray(at, at + bytes));
      this.flush();
      at = this.#used;
      this.#reserve(at + bytes + 1);
      json.copy(this.#body, at);
    }
    this.#body[at + bytes] = this.#ndjson ? NEWLINE : COMMA;
    this.#used = at + bytes + 1;
    if (item !== undefined) {
      item.index = this.#ends.length;
      this.#observed.push(item);
    }
    this.#ends.push(at + bytes);
    if (this.#ends.length >= this.#maxItems) {
      this.flush();
    } else if (this.#timer === undefined) {
      this.#arm();
    }
  }

  /** Starts the `maxWaitMs` wait for the partial batch. */
  #arm(): void {
    // Never holds the process open: close() is how a partial batch is waited for.
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, this.#maxWaitMs);
    this.#timer.unref();
  }

  flush(): void {
    // First: writing the stage may hold items (and arm the timer) before they leave below.
    this.writeStage();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#ends.length === 0) return;
    const used = this.#used;
    let body: Buffer;
    let whole: Buffer | undefined;
    // The buffer is made 3 bytes per UTF-16 unit of the next item larger than what it holds, and
    // doubles: a full one is 1 to 4 times what it holds.
    if (this.#body.length <= 4 * used) {
      // The buffer leaves with its batch (kept for a 413 split too), not a copy of it: the next
      // batch is written into the spare, or a new one. A copy of 100+ KiB per batch, and the
      // dispatcher's own copy of a Buffer body (see #send), cost about 1 µs per audit record.
      whole = this.#body;
      body = whole.subarray(0, used);
      const spare = this.#spare;
      this.#spare = undefined;
      this.#body =
        spare !== undefined && spare.length === whole.length ? spare : Buffer.allocUnsafeSlow(whole.length);
    } else {
      // Mostly empty (it grew for an earlier, larger batch): copied out exactly; the buffer is kept.
      body = Buffer.allocUnsafeSlow(used);
      this.#body.copy(body, 0, 0, used);
    }
    if (!this.#ndjson) {
      body[0] = OPEN;
      body[used - 1] = CLOSE;
    }
    const batch: Batch = { body, ends: this.#ends, observed: this.#observed, whole };
    this.#used = this.#frame();
    this.#ends = [];
    this.#observed = [];
    for (const item of batch.observed) {
      // From here on the item is part of a request body: its signal can no longer take it out.
      item.notification.forget();
    }
    this.#send(batch);
  }

  pending(): number {
    return this.#ends.length + this.#inFlight + (this.#stage?.size ?? 0);
  }

  /** Bytes of a JSON array's brackets beyond one separator per item. */
  #frame(): number {
    return this.#ndjson ? 0 : 1;
  }

  #send(batch: Batch): void {
    const { observed } = batch;
    let request: Notification;
    try {
      // Prepared with an empty body, then given the batch's own: a Buffer given to send() is
      // copied (its caller may reuse it), and this one is the batcher's to give.
      request = this.#internal.prepare(this.url, { ...this.#init, body: '' });
      request.setBody(batch.body);
    } catch (error) {
      // Only dispatcher-wide settings (httpsOnly, signing) can refuse a batch the constructor accepted.
      const typed = isAfterwardError(error)
        ? error
        : new InvalidArgumentError(String(error), { cause: error });
      for (const item of observed) item.notification.settle('failed', typed);
      this.#changed();
      return;
    }
    this.#inFlight += batch.ends.length;
    // Each item reads its batch's state while the batch is on its way ('queued', 'sending', ...).
    for (const item of observed) item.notification.follow(request, item.attempts);
    this.#internal.submit(request);
    request.done
      .then((result) => this.#settle(batch, result))
      .catch((error: unknown) => {
        this.#internal.logger.error({ err: error }, 'afterward: settling a batch failed');
      });
  }

  #settle(batch: Batch, result: DeliveryResult): void {
    const { observed } = batch;
    const count = batch.ends.length;
    this.#inFlight -= count;
    for (const item of observed) item.attempts += result.attempts;
    const { error } = result;
    if (result.state === 'failed' && error instanceof HttpStatusError && error.status === 413 && count > 1) {
      // Too large for the receiver: each half goes again as its own batch, with its own id.
      const half = Math.ceil(count / 2);
      this.#send(this.#part(batch, 0, half));
      this.#send(this.#part(batch, half, count));
      return;
    }
    for (const item of observed) item.notification.settleAs(result, item.attempts);
    // Settled: no attempt of this request will run again. Its buffer becomes the spare when the
    // dispatcher says nothing holds its bytes any longer (a socket may still be writing them: a
    // receiver can answer before it read the body; a custom transport or store may keep them).
    const { whole } = batch;
    if (
      whole !== undefined &&
      this.#spare === undefined &&
      whole.length === this.#body.length &&
      this.#closing === undefined &&
      this.#internal.bodiesReleased()
    ) {
      this.#spare = whole;
    }
    // Items nobody observes (audit records) settle no handle that would tell.
    this.#changed();
  }

  /** The items `from` to `to` (exclusive) of a batch, as a batch of their own. */
  #part(batch: Batch, from: number, to: number): Batch {
    const { body, ends } = batch;
    const frame = this.#frame();
    const start = from === 0 ? frame : (ends[from - 1] as number) + 1;
    const end = ends[to - 1] as number;
    const out = Buffer.allocUnsafeSlow(frame + end - start + 1);
    body.copy(out, frame, start, end);
    if (this.#ndjson) {
      out[out.length - 1] = NEWLINE;
    } else {
      out[0] = OPEN;
      out[out.length - 1] = CLOSE;
    }
    const shift = frame - start;
    const observed: Item[] = [];
    for (const item of batch.observed) {
      if (item.index < from || item.index >= to) continue;
      item.index -= from;
      observed.push(item);
    }
    return { body: out, ends: ends.slice(from, to).map((e) => e + shift), observed, whole: undefined };
  }

  /** Takes a held item out, for its cancel(); false once its batch has left. */
  #unhold(notification: Notification): boolean {
    // Once its batch has left, the item is part of a request body and cannot be taken back.
    const at = this.#observed.findIndex((item) => item.notification === notification);
    if (at === -1) return false;
    const { index } = this.#observed[at] as Item;
    this.#observed.splice(at, 1);
    for (const item of this.#observed) if (item.index > index) item.index -= 1;
    // Its bytes and separator are cut out of the body; the items after it move up.
    const start = index === 0 ? this.#frame() : (this.#ends[index - 1] as number) + 1;
    const next = (this.#ends[index] as number) + 1;
    this.#body.copyWithin(start, next, this.#used);
    this.#used -= next - start;
    this.#ends.splice(index, 1);
    for (let i = index; i < this.#ends.length; i++)
      this.#ends[i] = (this.#ends[i] as number) - (next - start);
    if (this.#ends.length === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    return true;
  }

  #drop(): DeliveryHandle {
    const error = new DroppedError(
      `batcher full: ${this.#maxPending} items already pending for ${originOfUrl(this.url)}`,
    );
    try {
      // Through the dispatcher, so the drop is counted in stats(), evented and logged like any other.
      const notification = this.#internal.prepare(this.url, { method: this.#method, id: newId() });
      notification.settle('dropped', error);
      return notification;
    } catch {
      const id = newId();
      const notification = new Notification(id, undefined, DETACHED, {
        id,
        url: this.url,
        method: this.#method,
      });
      notification.settle('dropped', error);
      this.#internal.logger.warn({ id, url: this.url, err: error }, 'afterward: notification dropped');
      return notification;
    }
  }
}

/**
 * Validates a URL and an init carrying a body, as `send()` would, without a dispatcher. Only
 * dispatcher-wide settings (httpsOnly, signing secret) are left for the send to check.
 */
export function checkTarget(url: unknown, init: SendInit): { url: string; method: string } {
  const checked = normalizeRequest(
    url,
    { ...init, body: '' },
    {
      timeout: DEFAULTS.timeout,
      retry: DEFAULTS.retry,
      headers: [],
      userAgent: DEFAULTS.userAgent,
      canSign: true,
    },
  );
  return { url: checked.url.href, method: checked.method };
}

/**
 * Adds an item whose outcome nobody awaits (audit records): no handle is made. Drops are still
 * counted, evented and logged by the dispatcher.
 */
export function addUnobserved(batcher: Batcher, item: unknown): void {
  if (batcher instanceof BatcherImpl) batcher.addUnobserved(item);
  else batcher.add(item);
}

/**
 * Gives a batcher (one of {@link createBatcher}'s) a stage: items kept outside it, as a few fields
 * each, and made into JSON all together when the stage is full ({@link writeStage}) or when the
 * batcher flushes (its `maxWaitMs`, `drain()`, `close()`); `pending()` counts them. The stage
 * calls {@link staged} as it takes each item. An audit record made into JSON at each response's
 * end ran cold, between requests; 64 made in a row cost a fraction of that.
 *
 * @example
 * ```ts
 * stageInto(batcher, rows);
 * const due = staged(batcher);
 * if (rows.add(record) || due) writeStage(batcher);
 * ```
 */
export function stageInto(batcher: Batcher, stage: BatchStage): void {
  asImpl(batcher).attachStage(stage);
}

/**
 * The stage of `batcher` takes an item: throws ClosedError once it no longer accepts items; true
 * when that item makes a full batch (write the stage then).
 */
export function staged(batcher: Batcher): boolean {
  return asImpl(batcher).staged();
}

/** Writes the stage of `batcher` into it now. */
export function writeStage(batcher: Batcher): void {
  asImpl(batcher).writeStage();
}

function asImpl(batcher: Batcher): BatcherImpl {
  if (!(batcher instanceof BatcherImpl)) {
    throw new InvalidArgumentError('a stage needs a batcher from createBatcher()');
  }
  return batcher;
}

/**
 * {@link addUnobserved} for an item already serialised by trusted code (an audit record made
 * straight into JSON): it must be one valid JSON document, which is not checked.
 */
export function addJson(batcher: Batcher, json: string): void {
  if (batcher instanceof BatcherImpl) batcher.addJson(json);
  else batcher.add(JSON.parse(json));
}
