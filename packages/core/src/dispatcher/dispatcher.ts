import { EventEmitter } from 'node:events';
import { AttemptAbort } from '../transport/attempt-abort.js';
import { breakerOutcome, OriginBreakers, resolveBreaker, type BreakerOptions } from '../policy/breaker.js';
import {
  CancelledError,
  ClosedError,
  DroppedError,
  InvalidArgumentError,
  QueueFullError,
  TimeoutError,
  type AfterwardError,
} from '../util/errors.js';
import type { DeliveryEvent, DispatcherEventName, DispatcherEvents } from './events.js';
import { createAddressGuard, type GuardSetting } from '../policy/guard.js';
import { Delivery, type DeliveryHandle, type FinalState } from '../notification/handle.js';
import { HookRunner } from '../after-response/hooks.js';
import { rateLimitLogger, stderrLogger, type Logger } from '../util/logger.js';
import {
  checkInteger,
  checkKeys,
  checkObject,
  DEFAULTS,
  resolveRetry,
  resolveTimeout,
  show,
  type OverflowPolicy,
  type RetryOptions,
  type TimeoutOptions,
} from '../options/options.js';
import {
  addHeaders,
  normalizeRequest,
  type HeadersInput,
  type NormalizedRequest,
  type SendInit,
  type SendRequest,
} from '../request/request.js';
import { backoffDelay, statusError } from '../policy/retry.js';
import { createSigner, type SigningOptions, type Signer } from '../policy/signing.js';
import { createMemoryStore, type NotificationStore, type StoredRecord } from '../queue/store.js';
import {
  createUndiciTransport,
  toAfterwardError,
  type Transport,
  type TransportResult,
} from '../transport/undici.js';

/**
 * Options of {@link createDispatcher}. Every one is optional; the defaults are in the README.
 *
 * @example
 * ```ts
 * createDispatcher({ concurrency: 64, retry: { attempts: 3 }, logger: pino() });
 * ```
 */
export interface DispatcherOptions {
  /** Attempts in flight at once, over all origins. Default 32. */
  concurrency?: number;
  /** Attempts in flight at once to one origin, so one slow origin cannot starve the rest. Default 16. */
  concurrencyPerOrigin?: number;
  /** Notifications held (queued, in backoff or in flight). Default 10 000. */
  maxQueued?: number;
  /** Body bytes held. Default 32 MiB. */
  maxQueuedBytes?: number;
  /** What happens when the queue is full. Default `'drop-oldest'`. */
  overflow?: OverflowPolicy;
  /** Per-attempt deadlines; a number sets the total. Default connect 5 s, response 10 s, total 15 s. */
  timeout?: number | Partial<TimeoutOptions>;
  /** Retry policy, or `false` for one attempt. Default 5 attempts, 500 ms to 30 s, full jitter. */
  retry?: Partial<RetryOptions> | false;
  /** The User-Agent header. Default `afterward/<version>`. */
  userAgent?: string;
  /** Headers added to every notification unless it sets them itself. */
  headers?: HeadersInput;
  /** A pino-compatible logger; failures and drops are logged at warn, rate-limited. Default: JSON lines on stderr. */
  logger?: Logger;
  /** Sign every notification the Standard Webhooks way. */
  signing?: SigningOptions;
  /** Refuse private, loopback and other internal targets (for URLs customers type in). */
  guard?: GuardSetting;
  /**
   * A circuit breaker per origin, or `false` for none. On by default: an origin where at least 10
   * attempts in 30 s completed and half or more failed is held back for 30 s (its notifications
   * wait, queued), then probed with one attempt.
   */
  breaker?: Partial<BreakerOptions> | false;
  /** Refuse `http:` targets at the call. */
  httpsOnly?: boolean;
  /** Most response-body bytes read before the socket is dropped. Default 64 KiB. */
  maxResponseBytes?: number;
  /** `after()` hooks running at once. Default 16. */
  hookConcurrency?: number;
  /** Default timeout of an `after()` hook. Default 10 s. */
  hookTimeout?: number;
  /** Default timeout of `close()`. Default 10 s. */
  closeTimeout?: number;
  /** Where notifications wait; the in-memory store by default. */
  store?: NotificationStore<unknown>;
  /** How bytes move; undici by default. */
  transport?: Transport;
}

/** Counters and gauges of a dispatcher. */
export interface DispatcherStats {
  /** Waiting to be sent: queued or in backoff. */
  queued: number;
  inFlight: number;
  delivered: number;
  sent: number;
  failed: number;
  dropped: number;
  cancelled: number;
  retries: number;
  /** Body bytes held. */
  queuedBytes: number;
  hooks: { queued: number; running: number; completed: number; failed: number };
}

/** What `close()` resolves with. */
export interface CloseResult {
  /** True when everything finished within the timeout. */
  drained: boolean;
  /** Notifications and hooks cancelled because the timeout ran out. */
  cancelled: number;
  stats: DispatcherStats;
}

/** What `drain()` resolves with. */
export interface DrainResult {
  /** False when the timeout ran out first. */
  drained: boolean;
  /** Notifications and hooks still unfinished. */
  pending: number;
}

/**
 * The background sender: a bounded queue, concurrency limits, deadlines, retries and events.
 *
 * @example
 * ```ts
 * const dispatcher = createDispatcher();
 * const handle = dispatcher.send('https://hooks.example.com/x', { json: { hello: 'world' } });
 * dispatcher.on('failed', ({ url, error }) => log.warn({ url, error }));
 * process.on('SIGTERM', () => void dispatcher.close());
 * ```
 */
export interface Dispatcher {
  send(url: string | URL, init?: SendInit): DeliveryHandle;
  send(request: SendRequest): DeliveryHandle;
  /** Resolves when nothing is queued, in flight or running (or when the timeout runs out). Never rejects. */
  drain(options?: { timeout?: number }): Promise<DrainResult>;
  /** Stops accepting, drains, then cancels and reports what is left. Never rejects; safe to call twice. */
  close(options?: { timeout?: number }): Promise<CloseResult>;
  stats(): DispatcherStats;
  on<TEvent extends DispatcherEventName>(
    event: TEvent,
    listener: (payload: DispatcherEvents[TEvent]) => void,
  ): this;
  once<TEvent extends DispatcherEventName>(
    event: TEvent,
    listener: (payload: DispatcherEvents[TEvent]) => void,
  ): this;
  off<TEvent extends DispatcherEventName>(
    event: TEvent,
    listener: (payload: DispatcherEvents[TEvent]) => void,
  ): this;
  readonly closed: boolean;
}

/** A notification's runtime state inside the dispatcher. */
export interface Job {
  readonly key: string;
  delivery: Delivery;
  request: NormalizedRequest;
  record: StoredRecord<Job> | undefined;
  controller: AttemptAbort | undefined;
  detachSignal: (() => void) | undefined;
}

/** The hooks through which core's after-response machinery works with a dispatcher. Not public. */
export const kInternal = Symbol('afterward.dispatcher.internal');

/** Internal surface used by after-response and batching; adapters never touch it. */
export interface DispatcherInternal {
  /** Validates now and returns a parked job (state 'pending') that {@link submit} releases later. */
  prepare(target: unknown, init: SendInit | undefined, parked?: boolean): Job;
  /** Releases a parked job into the queue; never throws (overflow becomes 'dropped'). */
  submit(job: Job): void;
  /** Settles a parked job without sending it (a `when` filter, a client abort, a payload error, a batch overflow). */
  discard(job: Job, state: 'cancelled' | 'failed' | 'dropped', error: AfterwardError): void;
  hooks: HookRunner;
  logger: Logger;
  /**
   * Work outside the queue (batches) that `drain()` must flush and wait for. Returns a function
   * the participant calls when its `pending()` count fell, so a waiting `drain()` can resolve.
   */
  addDrainParticipant(participant: DrainParticipant): () => void;
}

/** Something besides the queue that `drain()` flushes and waits for. */
export interface DrainParticipant {
  /** Starts sending anything held back (partial batches). */
  flush(): void;
  /** Items still held. */
  pending(): number;
}

const DISPATCHER_KEYS = [
  'concurrency',
  'concurrencyPerOrigin',
  'maxQueued',
  'maxQueuedBytes',
  'overflow',
  'timeout',
  'retry',
  'userAgent',
  'headers',
  'logger',
  'signing',
  'guard',
  'breaker',
  'httpsOnly',
  'maxResponseBytes',
  'hookConcurrency',
  'hookTimeout',
  'closeTimeout',
  'store',
  'transport',
] as const;

/**
 * Creates a dispatcher. Validates every option at once (typos included) and throws
 * {@link InvalidArgumentError} on a bad one.
 *
 * @example
 * ```ts
 * const dispatcher = createDispatcher({ signing: { secret: process.env.WEBHOOK_SECRET! } });
 * ```
 */
export function createDispatcher(options: DispatcherOptions = {}): Dispatcher {
  return new DispatcherImpl(options);
}

/** True for a dispatcher made by {@link createDispatcher}, from any copy of the package. */
export function isDispatcher(value: unknown): value is Dispatcher {
  return typeof value === 'object' && value !== null && kInternal in value;
}

/**
 * The error of a notification evicted by drop-oldest, made without a stack: it could only show the
 * send() of the newcomer that pushed it out, and capturing one was most of the CPU of an
 * overflowing send() (bench/memory.mjs).
 */
function droppedOldestError(): DroppedError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new DroppedError('queue full: dropped the oldest to make room');
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** Reaches the internal surface of a dispatcher. */
export function internalsOf(dispatcher: Dispatcher): DispatcherInternal {
  const internal = (dispatcher as unknown as { [kInternal]?: DispatcherInternal })[kInternal];
  if (internal === undefined) throw new InvalidArgumentError('dispatcher must come from createDispatcher()');
  return internal;
}

class DispatcherImpl extends EventEmitter implements Dispatcher {
  readonly #concurrency: number;
  readonly #perOriginLimit: number;
  readonly #overflow: OverflowPolicy;
  readonly #defaults: Parameters<typeof normalizeRequest>[2];
  readonly #logger: Logger;
  readonly #signer: Signer | undefined;
  readonly #httpsOnly: boolean;
  readonly #breaker: OriginBreakers | undefined;
  readonly #closeTimeout: number;
  readonly #store: NotificationStore<Job>;
  readonly #transport: Transport;
  readonly #hooks: HookRunner;
  readonly #jobs = new Map<string, Job>();
  readonly #perOrigin = new Map<string, number>();
  readonly #participants: DrainParticipant[] = [];
  readonly #idleWaiters = new Set<() => void>();
  #inFlight = 0;
  #nextKey = 0;
  #pumpScheduled = false;
  #timer: NodeJS.Timeout | undefined;
  #timerDue = Infinity;
  #accepting = true;
  #closed = false;
  #closing: Promise<CloseResult> | undefined;
  readonly #counts = { delivered: 0, sent: 0, failed: 0, dropped: 0, cancelled: 0, retries: 0 };
  readonly [kInternal]: DispatcherInternal;

  constructor(options: DispatcherOptions) {
    super();
    const opts = checkObject('options', options);
    checkKeys('createDispatcher options', opts, DISPATCHER_KEYS);
    this.#concurrency =
      options.concurrency === undefined
        ? DEFAULTS.concurrency
        : checkInteger('concurrency', options.concurrency, 1, 10_000);
    this.#perOriginLimit =
      options.concurrencyPerOrigin === undefined
        ? Math.min(DEFAULTS.concurrencyPerOrigin, this.#concurrency)
        : checkInteger('concurrencyPerOrigin', options.concurrencyPerOrigin, 1, 10_000);
    const maxQueued =
      options.maxQueued === undefined ? DEFAULTS.maxQueued : checkInteger('maxQueued', options.maxQueued, 1);
    const maxQueuedBytes =
      options.maxQueuedBytes === undefined
        ? DEFAULTS.maxQueuedBytes
        : checkInteger('maxQueuedBytes', options.maxQueuedBytes, 0);
    this.#overflow = options.overflow ?? DEFAULTS.overflow;
    if (!['drop-oldest', 'drop-newest', 'reject'].includes(this.#overflow)) {
      throw new InvalidArgumentError(
        `overflow must be 'drop-oldest', 'drop-newest' or 'reject', got ${show(options.overflow)}`,
      );
    }
    const userAgent = options.userAgent ?? DEFAULTS.userAgent;
    if (typeof userAgent !== 'string' || /[^\t\x20-\x7e\x80-\xff]/.test(userAgent)) {
      throw new InvalidArgumentError(
        `userAgent must be a string without CR/LF or other control characters, got ${show(userAgent)}`,
      );
    }
    const headers: string[] = [];
    if (options.headers !== undefined) addHeaders(headers, options.headers);
    this.#signer =
      options.signing === undefined ? undefined : createSigner(checkObject('signing', options.signing));
    this.#defaults = {
      timeout: resolveTimeout('timeout', options.timeout, DEFAULTS.timeout),
      retry: resolveRetry('retry', options.retry, DEFAULTS.retry),
      headers,
      userAgent,
      canSign: this.#signer !== undefined,
    };
    if (options.httpsOnly !== undefined && typeof options.httpsOnly !== 'boolean') {
      throw new InvalidArgumentError(`httpsOnly must be a boolean, got ${show(options.httpsOnly)}`);
    }
    this.#httpsOnly = options.httpsOnly ?? false;
    this.#closeTimeout =
      options.closeTimeout === undefined
        ? DEFAULTS.closeTimeout
        : checkInteger('closeTimeout', options.closeTimeout, 0);
    const logger = options.logger ?? stderrLogger;
    if (
      typeof logger !== 'object' ||
      logger === null ||
      typeof logger.warn !== 'function' ||
      typeof logger.error !== 'function'
    ) {
      throw new InvalidArgumentError('logger must have warn() and error() methods (pino-compatible)');
    }
    this.#logger = rateLimitLogger(logger);
    const maxResponseBytes =
      options.maxResponseBytes === undefined
        ? DEFAULTS.maxResponseBytes
        : checkInteger('maxResponseBytes', options.maxResponseBytes, 0, 16 * 1024 * 1024);
    const guard = options.guard === undefined ? undefined : createAddressGuard(options.guard);
    const breaker = resolveBreaker(options.breaker);
    this.#breaker =
      breaker === undefined
        ? undefined
        : new OriginBreakers(breaker, {
            onOpen: (origin, failureRate) => {
              this.#emit('circuit-open', { origin, failureRate });
              this.#logger.warn(
                { origin, failureRate, openMs: breaker.openMs },
                'afterward: circuit open; notifications to this origin wait',
              );
            },
            onClose: (origin, failureRate) => {
              this.#emit('circuit-close', { origin, failureRate });
              this.#logger.debug?.({ origin }, 'afterward: circuit closed');
            },
          });
    if (
      options.transport !== undefined &&
      (typeof options.transport.send !== 'function' || typeof options.transport.close !== 'function')
    ) {
      throw new InvalidArgumentError('transport must have send() and close() methods');
    }
    if (options.transport !== undefined && guard !== undefined) {
      throw new InvalidArgumentError(
        'guard applies to the built-in transport; pass it to your transport instead',
      );
    }
    this.#transport =
      options.transport ??
      createUndiciTransport({
        maxResponseBytes,
        connectionsPerOrigin: this.#perOriginLimit,
        ...(guard === undefined ? {} : { guard }),
      });
    this.#store =
      (options.store as NotificationStore<Job> | undefined) ??
      createMemoryStore<Job>({ maxQueued, maxQueuedBytes, overflow: this.#overflow });
    this.#hooks = new HookRunner({
      concurrency:
        options.hookConcurrency === undefined
          ? DEFAULTS.hookConcurrency
          : checkInteger('hookConcurrency', options.hookConcurrency, 1, 10_000),
      timeout:
        options.hookTimeout === undefined
          ? DEFAULTS.hookTimeout
          : checkInteger('hookTimeout', options.hookTimeout, 1),
      maxQueued,
      onError: (error, info) => {
        this.#emit('hook-error', { error, info });
        this.#logger.error({ err: error }, 'afterward: after-response hook failed');
      },
      onIdle: () => this.#checkIdle(),
    });
    this[kInternal] = {
      prepare: (target, init, parked) => this.#prepare(target, init, parked),
      submit: (job) => this.#submit(job),
      discard: (job, state, error) => this.#settle(job, state, error),
      hooks: this.#hooks,
      logger: this.#logger,
      addDrainParticipant: (participant) => {
        this.#participants.push(participant);
        return () => this.#checkIdle();
      },
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(target: string | URL | SendRequest, init?: SendInit): DeliveryHandle {
    if (!this.#accepting)
      throw new ClosedError('send() after close(): the dispatcher no longer accepts notifications');
    let url: unknown = target;
    let options = init;
    if (typeof target === 'object' && target !== null && !(target instanceof URL)) {
      if (init !== undefined)
        throw new InvalidArgumentError('send({ url, ...init }) takes no second argument');
      const { url: inner, ...rest } = target;
      url = inner;
      options = rest;
    }
    const job = this.#prepare(url, options);
    if (job.delivery.settled) return job.delivery;
    this.#enqueue(job, true);
    return job.delivery;
  }

  stats(): DispatcherStats {
    return {
      queued: this.#store.waiting,
      inFlight: this.#inFlight,
      ...this.#counts,
      queuedBytes: this.#store.bytes,
      hooks: this.#hooks.stats(),
    };
  }

  drain(options: { timeout?: number } = {}): Promise<DrainResult> {
    const timeout = options.timeout ?? Infinity;
    if (timeout !== Infinity) checkInteger('drain timeout', timeout, 0);
    for (const participant of this.#participants) participant.flush();
    const flushed = this.#store.flush?.().catch((error: unknown) => {
      this.#logger.error({ err: error }, 'afterward: store flush failed');
    });
    return new Promise<DrainResult>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        this.#idleWaiters.delete(done);
        if (timer !== undefined) clearTimeout(timer);
        const pending = this.#pending();
        resolve({ drained: pending === 0, pending });
      };
      if (timeout !== Infinity) {
        timer = setTimeout(done, timeout);
      }
      const check = (): void => {
        if (this.#pending() === 0) done();
        else this.#idleWaiters.add(done);
      };
      if (flushed === undefined) check();
      else void flushed.then(check);
    });
  }

  close(options: { timeout?: number } = {}): Promise<CloseResult> {
    const timeout = options.timeout ?? this.#closeTimeout;
    checkInteger('close timeout', timeout, 0);
    this.#closing ??= this.#close(timeout);
    return this.#closing;
  }

  override on<TEvent extends DispatcherEventName>(
    event: TEvent,
    listener: (payload: DispatcherEvents[TEvent]) => void,
  ): this {
    return super.on(event, listener);
  }
  override once<TEvent extends DispatcherEventName>(
    event: TEvent,
    listener: (payload: DispatcherEvents[TEvent]) => void,
  ): this {
    return super.once(event, listener);
  }
  override off<TEvent extends DispatcherEventName>(
    event: TEvent,
    listener: (payload: DispatcherEvents[TEvent]) => void,
  ): this {
    return super.off(event, listener);
  }

  async #close(timeout: number): Promise<CloseResult> {
    this.#accepting = false;
    const { drained } = await this.drain({ timeout });
    this.#closed = true;
    let cancelled = 0;
    const reason = new ClosedError('the dispatcher closed before this finished');
    for (const job of [...this.#jobs.values()]) {
      if (job.delivery.cancel(reason)) cancelled++;
    }
    cancelled += this.#hooks.cancelAll(reason);
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#transport.close().catch((error: unknown) => {
      this.#logger.error({ err: error }, 'afterward: transport close failed');
    });
    if (cancelled > 0) {
      this.#logger.warn(
        { cancelled, timeoutMs: timeout },
        'afterward: closed with work left unfinished; it was cancelled',
      );
    }
    return { drained, cancelled, stats: this.stats() };
  }

  #pending(): number {
    let held = 0;
    for (const participant of this.#participants) held += participant.pending();
    return this.#jobs.size + this.#hooks.pending() + held;
  }

  #checkIdle(): void {
    if (this.#idleWaiters.size === 0 || this.#pending() > 0) return;
    for (const waiter of [...this.#idleWaiters]) waiter();
  }

  #prepare(target: unknown, init: SendInit | undefined, parked = false): Job {
    const request = normalizeRequest(target, init, this.#defaults, parked);
    if (this.#httpsOnly && request.url.protocol !== 'https:') {
      throw new InvalidArgumentError(`httpsOnly: refusing ${request.url.protocol} URL ${request.origin}`);
    }
    const job: Job = {
      key: String(++this.#nextKey),
      delivery: undefined as unknown as Delivery,
      request,
      record: undefined,
      controller: undefined,
      detachSignal: undefined,
    };
    const delivery = new Delivery(
      request.id,
      request.url.href,
      request.method,
      'pending',
      this.#onCancel,
      job,
    );
    job.delivery = delivery;
    this.#jobs.set(job.key, job);
    const signal = request.signal;
    if (signal !== undefined) {
      if (signal.aborted) {
        this.#settle(job, 'cancelled', new CancelledError(signal.reason));
        return job;
      }
      const onAbort = (): void => {
        delivery.cancel(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      job.detachSignal = () => signal.removeEventListener('abort', onAbort);
    }
    return job;
  }

  #submit(job: Job): void {
    if (job.delivery.settled) return;
    if (this.#closed) {
      this.#settle(job, 'cancelled', new CancelledError(new ClosedError()));
      return;
    }
    this.#enqueue(job, false);
  }

  #enqueue(job: Job, fromCall: boolean): void {
    const record: StoredRecord<Job> = {
      id: job.key,
      origin: job.request.origin,
      bytes: job.request.body?.length ?? 0,
      payload: job,
      attempts: 0,
      notBefore: 0,
    };
    const result = this.#store.put(record);
    if (!result.accepted) {
      if (fromCall && this.#overflow === 'reject') {
        this.#forget(job);
        throw new QueueFullError(
          `queue full (${this.#store.size} notifications, ${this.#store.bytes} bytes held)`,
        );
      }
      this.#settle(
        job,
        'dropped',
        new DroppedError(
          `queue full: ${this.#overflow === 'drop-oldest' ? 'everything held is in flight' : this.#overflow}`,
        ),
      );
      return;
    }
    job.record = record;
    job.delivery.state = 'queued';
    for (const evicted of result.evicted) {
      this.#settle(evicted.payload, 'dropped', droppedOldestError());
    }
    this.#schedulePump();
  }

  readonly #pumpTask = (): void => this.#pump();

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    queueMicrotask(this.#pumpTask);
  }

  #pump(): void {
    this.#pumpScheduled = false;
    if (this.#inFlight < this.#concurrency && this.#store.waiting > 0) {
      const taken = this.#store.take(Date.now(), (record) => {
        if (this.#inFlight >= this.#concurrency) return 'stop';
        const count = this.#perOrigin.get(record.origin) ?? 0;
        if (count >= this.#perOriginLimit) return 'skip-origin';
        // Asked last: on a half-open circuit a yes is the one probe, so nothing may veto it after.
        if (this.#breaker !== undefined && !this.#breaker.admit(record.origin)) return 'skip-origin';
        this.#perOrigin.set(record.origin, count + 1);
        this.#inFlight++;
        return 'take';
      });
      for (const record of taken) {
        this.#attempt(record.payload).catch((error: unknown) => {
          // #attempt handles its own failures; reaching this is a bug, reported, never thrown.
          this.#logger.error({ err: error }, 'afterward: internal error during an attempt');
        });
      }
    }
    this.#armTimer();
  }

  #armTimer(): void {
    const backoffDue = this.#store.nextDueAt();
    // Records behind an open circuit are ready but skipped: wake when it may let a probe through.
    const probeDue = this.#store.waiting > 0 ? this.#breaker?.nextWakeAt() : undefined;
    const due =
      probeDue === undefined || (backoffDue !== undefined && backoffDue <= probeDue) ? backoffDue : probeDue;
    if (due === undefined) {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerDue = Infinity;
      return;
    }
    if (this.#timer !== undefined && this.#timerDue <= due) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerDue = due;
    // Backoff timers never hold the process open; close() is how pending work is waited for.
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#timerDue = Infinity;
        this.#pump();
      },
      Math.max(0, due - Date.now()),
    );
    this.#timer.unref();
  }

  async #attempt(job: Job): Promise<void> {
    const { delivery, request } = job;
    const record = job.record as StoredRecord<Job>;
    delivery.state = 'sending';
    delivery.attempts++;
    record.attempts = delivery.attempts;
    const controller = new AttemptAbort(delivery.attempts);
    job.controller = controller;
    const timer = setTimeout(
      () => controller.abort(new TimeoutError('total', request.timeout.total)),
      request.timeout.total,
    );
    timer.unref();
    let result: TransportResult;
    try {
      // The normalised request already has the transport's shape; only a signed attempt needs its
      // own copy, with this attempt's timestamp and signature.
      result = await this.#transport.send(
        request.sign && this.#signer !== undefined
          ? { ...request, headers: this.#attemptHeaders(request) }
          : request,
        controller,
      );
    } catch (error) {
      result = {
        kind: 'error',
        error: toAfterwardError(error, request, controller, true),
      };
    } finally {
      clearTimeout(timer);
      job.controller = undefined;
      this.#inFlight--;
      const count = (this.#perOrigin.get(request.origin) ?? 1) - 1;
      if (count === 0) this.#perOrigin.delete(request.origin);
      else this.#perOrigin.set(request.origin, count);
    }
    this.#breaker?.record(request.origin, breakerOutcome(result, delivery.settled));
    this.#onResult(job, result);
    this.#schedulePump();
  }

  #attemptHeaders(request: NormalizedRequest): string[] {
    if (!request.sign || this.#signer === undefined) return request.headers;
    // Signed per attempt: receivers reject stale timestamps, and a retry may come minutes later.
    const timestamp = Math.floor(Date.now() / 1000);
    const signature = this.#signer.sign(request.id, timestamp, request.body ?? Buffer.alloc(0));
    return [...request.headers, 'webhook-timestamp', String(timestamp), 'webhook-signature', signature];
  }

  #onResult(job: Job, result: TransportResult): void {
    const { delivery, request } = job;
    if (delivery.settled) {
      // Cancelled mid-attempt: the handle settled when cancel() was called.
      this.#store.settle(job.key);
      return;
    }
    let error: AfterwardError;
    switch (result.kind) {
      case 'sent':
        this.#settle(job, 'sent');
        return;
      case 'response': {
        delivery.response = result.response;
        const { status, statusText, headers } = result.response;
        if (status >= 200 && status < 300) {
          delivery.error = undefined;
          this.#settle(job, 'delivered');
          return;
        }
        error = statusError(status, statusText, headers, request.retry);
        break;
      }
      case 'error':
        error = result.error;
        break;
    }
    delivery.error = error;
    const record = job.record as StoredRecord<Job>;
    if (error.retryable && delivery.attempts < request.retry.attempts && !this.#closed) {
      const retryAfterMs = 'retryAfterMs' in error ? (error.retryAfterMs as number | undefined) : undefined;
      const delayMs = backoffDelay(delivery.attempts, request.retry, retryAfterMs);
      delivery.state = 'retrying';
      record.notBefore = Date.now() + delayMs;
      this.#store.release(record);
      this.#counts.retries++;
      this.#emit('retry', {
        handle: delivery,
        id: delivery.id,
        url: delivery.url,
        attempt: delivery.attempts,
        delayMs,
        error,
      });
      return;
    }
    this.#settle(job, 'failed', error);
  }

  // One function for every handle: the handle carries its job as `owner`, so no closure per send.
  readonly #onCancel = (delivery: Delivery, reason: unknown): boolean => {
    const job = delivery.owner as Job;
    if (!this.#jobs.has(job.key)) return false;
    const error = new CancelledError(reason);
    if (delivery.state === 'sending') {
      job.controller?.abort(error);
    }
    this.#settle(job, 'cancelled', error);
    return true;
  };

  #settle(job: Job, state: FinalState, error?: AfterwardError): void {
    const { delivery } = job;
    if (!delivery.settle(state, error)) return;
    this.#forget(job);
    // A record whose attempt is still running (cancelled mid-request) stays leased, counted
    // against the bounds, until the attempt returns and frees the slot.
    if (job.controller === undefined) this.#store.settle(job.key);
    this.#counts[state]++;
    // Built only when someone listens: this runs once per notification.
    if (this.listenerCount(state) > 0) {
      const event: DeliveryEvent = {
        handle: delivery,
        id: delivery.id,
        url: delivery.url,
        method: delivery.method,
        state,
        attempts: delivery.attempts,
        response: delivery.response,
        error: delivery.error,
      };
      this.#emit(state, event);
    }
    if (state === 'failed' || state === 'dropped') {
      this.#logger.warn(
        { id: delivery.id, url: delivery.url, attempts: delivery.attempts, err: delivery.error },
        state === 'failed' ? 'afterward: notification failed' : 'afterward: notification dropped',
      );
    }
    this.#checkIdle();
  }

  #forget(job: Job): void {
    this.#jobs.delete(job.key);
    job.detachSignal?.();
    job.detachSignal = undefined;
  }

  #emit<TEvent extends DispatcherEventName>(event: TEvent, payload: DispatcherEvents[TEvent]): void {
    if (this.listenerCount(event) === 0) return;
    const report = (error: unknown): void => {
      this.#logger.error({ err: error, event }, 'afterward: an event listener threw');
    };
    // Called one by one rather than through emit(): a listener that throws must not break delivery
    // or skip the listeners after it, and an async one that rejects must not become an unhandled
    // rejection. rawListeners keeps once() wrappers, so they still remove themselves.
    for (const listener of this.rawListeners(event) as Array<(payload: unknown) => unknown>) {
      try {
        const result = listener.call(this, payload);
        if (result instanceof Promise) result.catch(report);
      } catch (error) {
        report(error);
      }
    }
  }
}
