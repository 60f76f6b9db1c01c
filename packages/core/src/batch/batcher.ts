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
import { Notification, type NotificationLifecycle } from '../notification/notification.js';
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
  /** A batch leaves once it holds this many items. Default 100. */
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
  readonly json: string;
  /** Attempts made by requests that carried this item before the current one (413 splits). */
  attempts: number;
}

/**
 * An item nobody awaits whose JSON is made only when its batch leaves (or when the batch nears
 * `maxBytes`): an audit record captured on the request path as a few raw fields, serialised with
 * the rest of its batch, where caches are warm, instead of once per request.
 */
export abstract class DeferredItem {
  /** An upper bound of the item's JSON size in UTF-8 bytes. */
  abstract readonly bound: number;
  /** The item's JSON. Must not throw. */
  abstract serialize(): string;
}

/**
 * A held item: with a handle, just its JSON (a record added through {@link addUnobserved}, which
 * nobody awaits: no object per record on a path every request of an audited app takes), or a
 * {@link DeferredItem} not serialised yet.
 */
type Held = Item | string | DeferredItem;

const isItem = (held: Held): held is Item => typeof held !== 'string' && !(held instanceof DeferredItem);
/** Serialised held items: a deferred one is serialised on the way. */
const jsonOf = (held: Held): string =>
  typeof held === 'string' ? held : held instanceof DeferredItem ? held.serialize() : held.json;
/** Each deferred item replaced by its JSON, so it is serialised once (a 413 split sends it again). */
const materialize = (held: Held[]): Held[] =>
  held.map((entry) => (entry instanceof DeferredItem ? entry.serialize() : entry));

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
  #held: Held[] = [];
  /**
   * Body bytes of the held items, one separator each included: exact, or an upper bound (3 bytes
   * per UTF-16 unit) while that bound leaves the batch under `maxBytes`, so most items are never
   * measured (`Buffer.byteLength` per audit record was a visible share of its cost).
   */
  #heldBytes = 0;
  #inFlight = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(dispatcher: Dispatcher, options: BatcherOptions) {
    if (!isDispatcher(dispatcher)) {
      throw new InvalidArgumentError(
        `createBatcher needs a dispatcher from createDispatcher(), got ${show(dispatcher)}`,
      );
    }
    const { init, format, maxItems, maxWaitMs, maxBytes, maxPending } = resolveBatcherOptions(options);
    this.#ndjson = format === 'ndjson';
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
    const json = stringifyJson(item);
    const cost = this.#cost(json);
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
    this.#hold({ notification, json, attempts: 0 }, cost);
    return notification;
  }

  /** {@link add} without a handle: for records nobody awaits, at a fraction of the cost. */
  addUnobserved(item: unknown): void {
    this.#checkOpen();
    this.#holdJson(stringifyJson(item));
  }

  #holdJson(json: string): void {
    const cost = this.#cost(json);
    if (this.pending() >= this.#maxPending) {
      this.#drop();
      return;
    }
    this.#hold(json, cost);
  }

  /** {@link addUnobserved} for an item serialised only when its batch leaves. */
  addDeferred(item: DeferredItem): void {
    if (item.bound + this.#frame() > this.#maxBytes) {
      // Might not fit a batch on its own: measured (and refused if too large) now.
      this.#checkOpen();
      this.#holdJson(item.serialize());
      return;
    }
    this.#checkOpen();
    if (this.pending() >= this.#maxPending) {
      this.#drop();
      return;
    }
    this.#hold(item, item.bound + 1);
  }

  /** Bytes an item takes in a batch; throws when it could never fit. */
  #cost(json: string): number {
    const bound = 3 * json.length + 1;
    if (bound + this.#frame() <= this.#maxBytes) return bound;
    const cost = Buffer.byteLength(json) + 1;
    if (cost + this.#frame() > this.#maxBytes) {
      throw new InvalidArgumentError(
        `an item of ${cost - 1} bytes cannot fit in a batch of at most ${this.#maxBytes} bytes`,
      );
    }
    return cost;
  }

  /** Holds an item of `cost` bytes (exact or an upper bound, see {@link #heldBytes}). */
  #hold(entry: Held, cost: number): void {
    if (this.#heldBytes + cost + this.#frame() > this.#maxBytes) {
      // The bounds say it might not fit: decide on exact sizes.
      if (entry instanceof DeferredItem) entry = entry.serialize();
      cost = Buffer.byteLength(jsonOf(entry)) + 1;
      this.#held = materialize(this.#held);
      this.#heldBytes = 0;
      for (const held of this.#held) this.#heldBytes += Buffer.byteLength(jsonOf(held)) + 1;
      if (this.#heldBytes + cost + this.#frame() > this.#maxBytes) this.flush();
    }
    this.#held.push(entry);
    this.#heldBytes += cost;
    if (this.#held.length >= this.#maxItems) {
      this.flush();
    } else if (this.#timer === undefined) {
      // Never holds the process open: close() is how a partial batch is waited for.
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.flush();
      }, this.#maxWaitMs);
      this.#timer.unref();
    }
  }

  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#held.length === 0) return;
    const items = materialize(this.#held);
    this.#held = [];
    this.#heldBytes = 0;
    for (const item of items) {
      // From here on the item is part of a request body: its signal can no longer take it out.
      if (isItem(item)) item.notification.forget();
    }
    this.#send(items);
  }

  pending(): number {
    return this.#held.length + this.#inFlight;
  }

  /** Bytes of a JSON array's brackets beyond one separator per item. */
  #frame(): number {
    return this.#ndjson ? 0 : 1;
  }

  #send(items: Held[]): void {
    const jsons = items.map(jsonOf);
    const body = this.#ndjson ? `${jsons.join('\n')}\n` : `[${jsons.join(',')}]`;
    let batch: Notification;
    try {
      batch = this.#internal.prepare(this.url, { ...this.#init, body });
    } catch (error) {
      // Only dispatcher-wide settings (httpsOnly, signing) can refuse a batch the constructor accepted.
      const typed = isAfterwardError(error)
        ? error
        : new InvalidArgumentError(String(error), { cause: error });
      for (const item of items) if (isItem(item)) item.notification.settle('failed', typed);
      this.#changed();
      return;
    }
    this.#inFlight += items.length;
    // Each item reads its batch's state while the batch is on its way ('queued', 'sending', ...).
    for (const item of items) if (isItem(item)) item.notification.follow(batch, item.attempts);
    this.#internal.submit(batch);
    batch.done
      .then((result) => this.#settle(items, result))
      .catch((error: unknown) => {
        this.#internal.logger.error({ err: error }, 'afterward: settling a batch failed');
      });
  }

  #settle(items: Held[], result: DeliveryResult): void {
    this.#inFlight -= items.length;
    for (const item of items) if (isItem(item)) item.attempts += result.attempts;
    const { error } = result;
    if (
      result.state === 'failed' &&
      error instanceof HttpStatusError &&
      error.status === 413 &&
      items.length > 1
    ) {
      // Too large for the receiver: each half goes again as its own batch, with its own id.
      const half = Math.ceil(items.length / 2);
      this.#send(items.slice(0, half));
      this.#send(items.slice(half));
      return;
    }
    for (const item of items) if (isItem(item)) item.notification.settleAs(result, item.attempts);
    // Items nobody observes (audit records) settle no handle that would tell.
    this.#changed();
  }

  /** Takes a held item out, for its cancel(); false once its batch has left. */
  #unhold(notification: Notification): boolean {
    // Once its batch has left, the item is part of a request body and cannot be taken back.
    const index = this.#held.findIndex((item) => isItem(item) && item.notification === notification);
    if (index === -1) return false;
    this.#held.splice(index, 1);
    // An upper bound again (exact sizes are measured only when a batch nears maxBytes).
    this.#heldBytes = 0;
    for (const held of this.#held)
      this.#heldBytes += (held instanceof DeferredItem ? held.bound : 3 * jsonOf(held).length) + 1;
    if (this.#held.length === 0 && this.#timer !== undefined) {
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

/** {@link addUnobserved} for an item serialised only when its batch leaves (or nears `maxBytes`). */
export function addDeferred(batcher: Batcher, item: DeferredItem): void {
  if (batcher instanceof BatcherImpl) batcher.addDeferred(item);
  else batcher.add(JSON.parse(item.serialize()));
}
