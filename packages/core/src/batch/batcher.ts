import { newId } from '../util/id.js';
import {
  internalsOf,
  isDispatcher,
  type Dispatcher,
  type DispatcherInternal,
  type DrainParticipant,
} from '../dispatcher/dispatcher.js';
import {
  CancelledError,
  ClosedError,
  DroppedError,
  HttpStatusError,
  InvalidArgumentError,
  isAfterwardError,
} from '../util/errors.js';
import type { RetryEvent } from '../dispatcher/events.js';
import { Delivery, type DeliveryHandle, type DeliveryResult } from '../notification/handle.js';
import { checkInteger, checkKeys, checkObject, DEFAULTS, show } from '../options/options.js';
import { addHeaders, isAbortSignal, normalizeRequest, stringifyJson, type SendInit } from '../request/request.js';

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
}

interface Item {
  /** The item's handle; none for records added through {@link addUnobserved}. */
  readonly delivery: Delivery | undefined;
  readonly json: string;
  /** UTF-8 bytes of `json` plus its separator. */
  readonly cost: number;
  /** Attempts made by requests that carried this item before the current one (413 splits). */
  attempts: number;
  /** Set once the item left in a batch: from then on it can no longer be taken out. */
  sent: boolean;
  detach: (() => void) | undefined;
}

const OPTION_KEYS = ['url', 'init', 'maxItems', 'maxWaitMs', 'maxBytes', 'format', 'maxPending'] as const;
const OWNED_KEYS = ['json', 'body', 'id', 'signal'] as const;
const CONTENT_TYPE: Record<BatchFormat, string> = {
  json: 'application/json',
  ndjson: 'application/x-ndjson',
};

/** Batches in flight per dispatcher, so one `retry` listener per dispatcher serves every batcher. */
const inFlightBatches = new WeakMap<Dispatcher, Map<DeliveryHandle, Item[]>>();

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
  readonly #batches: Map<DeliveryHandle, Item[]>;
  readonly #changed: () => void;
  #held: Item[] = [];
  /** Body bytes of the held items, one separator each included. */
  #heldBytes = 0;
  #inFlight = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(dispatcher: Dispatcher, options: BatcherOptions) {
    if (!isDispatcher(dispatcher)) {
      throw new InvalidArgumentError(
        `createBatcher needs a dispatcher from createDispatcher(), got ${show(dispatcher)}`,
      );
    }
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
    const format = options.format ?? 'json';
    if (format !== 'json' && format !== 'ndjson') {
      throw new InvalidArgumentError(`format must be 'json' or 'ndjson', got ${show(format)}`);
    }
    this.#ndjson = format === 'ndjson';
    this.#maxItems = options.maxItems === undefined ? 100 : checkInteger('maxItems', options.maxItems, 1);
    this.#maxWaitMs =
      options.maxWaitMs === undefined ? 1_000 : checkInteger('maxWaitMs', options.maxWaitMs, 0, 2 ** 31 - 1);
    this.#maxBytes =
      options.maxBytes === undefined ? 1024 * 1024 : checkInteger('maxBytes', options.maxBytes, 3);
    this.#maxPending =
      options.maxPending === undefined ? 10_000 : checkInteger('maxPending', options.maxPending, 1);

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
    let batches = inFlightBatches.get(dispatcher);
    if (batches === undefined) {
      const created = new Map<DeliveryHandle, Item[]>();
      batches = created;
      inFlightBatches.set(dispatcher, created);
      dispatcher.on('retry', (event) => mirrorRetry(created, event));
    }
    this.#batches = batches;
    const participant: DrainParticipant = { flush: () => this.flush(), pending: () => this.pending() };
    this.#changed = this.#internal.addDrainParticipant(participant);
  }

  add(item: unknown, options: BatchAddOptions = {}): DeliveryHandle {
    if (this.#dispatcher.closed) {
      throw new ClosedError('add() after close(): the dispatcher no longer accepts notifications');
    }
    checkObject('add() options', options);
    const { signal } = options;
    if (signal !== undefined && !isAbortSignal(signal)) {
      throw new InvalidArgumentError(`signal must be an AbortSignal, got ${show(signal)}`);
    }
    const json = stringifyJson(item);
    const cost = this.#cost(json);
    if (this.pending() >= this.#maxPending) return this.#drop();
    const entry: Item = {
      delivery: new Delivery(newId(), this.url, this.#method, 'pending', (_d, reason) =>
        this.#cancel(entry, reason),
      ),
      json,
      cost,
      attempts: 0,
      sent: false,
      detach: undefined,
    };
    const delivery = entry.delivery as Delivery;
    if (signal !== undefined) {
      if (signal.aborted) {
        delivery.settle('cancelled', new CancelledError(signal.reason));
        return delivery;
      }
      const onAbort = (): void => {
        delivery.cancel(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      entry.detach = () => signal.removeEventListener('abort', onAbort);
    }
    this.#hold(entry);
    return delivery;
  }

  /** {@link add} without a handle: for records nobody awaits, at a fraction of the cost. */
  addUnobserved(item: unknown): void {
    if (this.#dispatcher.closed) {
      throw new ClosedError('add() after close(): the dispatcher no longer accepts notifications');
    }
    const json = stringifyJson(item);
    const cost = this.#cost(json);
    if (this.pending() >= this.#maxPending) {
      this.#drop();
      return;
    }
    this.#hold({ delivery: undefined, json, cost, attempts: 0, sent: false, detach: undefined });
  }

  /** Bytes an item takes in a batch; throws when it could never fit. */
  #cost(json: string): number {
    const cost = Buffer.byteLength(json) + 1;
    if (cost + this.#frame() > this.#maxBytes) {
      throw new InvalidArgumentError(
        `an item of ${cost - 1} bytes cannot fit in a batch of at most ${this.#maxBytes} bytes`,
      );
    }
    return cost;
  }

  #hold(entry: Item): void {
    if (this.#heldBytes + entry.cost + this.#frame() > this.#maxBytes) this.flush();
    this.#held.push(entry);
    this.#heldBytes += entry.cost;
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
    const items = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    for (const item of items) {
      item.sent = true;
      item.detach?.();
      item.detach = undefined;
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

  #send(items: Item[]): void {
    const jsons = items.map((item) => item.json);
    const body = this.#ndjson ? `${jsons.join('\n')}\n` : `[${jsons.join(',')}]`;
    let job;
    try {
      job = this.#internal.prepare(this.url, { ...this.#init, body });
    } catch (error) {
      // Only dispatcher-wide settings (httpsOnly, signing) can refuse a batch the constructor accepted.
      const typed = isAfterwardError(error)
        ? error
        : new InvalidArgumentError(String(error), { cause: error });
      for (const item of items) item.delivery?.settle('failed', typed);
      this.#changed();
      return;
    }
    const batch = job.delivery;
    this.#inFlight += items.length;
    this.#batches.set(batch, items);
    this.#internal.submit(job);
    if (!batch.settled) for (const { delivery } of items) if (delivery) delivery.state = batch.state;
    batch.done
      .then((result) => this.#settle(items, batch, result))
      .catch((error: unknown) => {
        this.#internal.logger.error({ err: error }, 'afterward: settling a batch failed');
      });
  }

  #settle(items: Item[], batch: DeliveryHandle, result: DeliveryResult): void {
    this.#batches.delete(batch);
    this.#inFlight -= items.length;
    for (const item of items) item.attempts += result.attempts;
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
    for (const { delivery, attempts } of items) {
      if (delivery === undefined) continue;
      delivery.attempts = attempts;
      delivery.response = result.response;
      delivery.error = error;
      delivery.settle(result.state);
    }
    this.#changed();
  }

  #cancel(item: Item, reason: unknown): boolean {
    // Once its batch has left, the item is part of a request body and cannot be taken back.
    if (item.sent) return false;
    const index = this.#held.indexOf(item);
    if (index === -1) return false;
    this.#held.splice(index, 1);
    this.#heldBytes -= item.cost;
    item.detach?.();
    item.detach = undefined;
    if (this.#held.length === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    item.delivery?.settle('cancelled', new CancelledError(reason));
    this.#changed();
    return true;
  }

  #drop(): DeliveryHandle {
    const error = new DroppedError(`batcher full: ${this.#maxPending} items already pending for ${this.url}`);
    try {
      // Through the dispatcher, so the drop is counted in stats(), evented and logged like any other.
      const job = this.#internal.prepare(this.url, { method: this.#method, id: newId() });
      this.#internal.discard(job, 'dropped', error);
      return job.delivery;
    } catch {
      const delivery = new Delivery(newId(), this.url, this.#method, 'pending', () => false);
      delivery.settle('dropped', error);
      this.#internal.logger.warn(
        { id: delivery.id, url: this.url, err: error },
        'afterward: notification dropped',
      );
      return delivery;
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

function mirrorRetry(batches: Map<DeliveryHandle, Item[]>, event: RetryEvent): void {
  const items = batches.get(event.handle);
  if (items === undefined) return;
  for (const { delivery, attempts } of items) {
    if (delivery === undefined) continue;
    delivery.state = 'retrying';
    delivery.attempts = attempts + event.attempt;
    delivery.error = event.error;
  }
}

/**
 * Adds an item whose outcome nobody awaits (audit records): no handle is made. Drops are still
 * counted, evented and logged by the dispatcher.
 */
export function addUnobserved(batcher: Batcher, item: unknown): void {
  if (batcher instanceof BatcherImpl) batcher.addUnobserved(item);
  else batcher.add(item);
}
