import { EventEmitter } from 'node:events';
import { AsyncResource } from 'node:async_hooks';
import { thrownResult } from '../attempt/attempt.js';
import { Deadlines, type Deadline } from '../attempt/deadlines.js';
import { HookRunner } from '../after-response/hooks.js';
import type { DeliveryHandle } from '../notification/handle.js';
import { fromNotificationJson, nextLocalKey, type NotificationJson } from '../notification/json.js';
import { forgetShapes, LazyError, Notification } from '../notification/notification.js';
import { checkDuration, DEFAULTS } from '../options/options.js';
import { breakerOutcome, OriginBreakers } from '../policy/breaker.js';
import { decide, type DecideContext } from '../policy/decide.js';
import { MemoryStore } from '../queue/memory-store.js';
import { Scheduler } from '../queue/scheduler.js';
import type { ExternalBackend } from '../queue/external.js';
import type { NotificationStore, StoredRecord } from '../queue/store.js';
import {
  blankRequest,
  normalizeRequest,
  type NormalizedRequest,
  type RequestDefaults,
  type SendInit,
  type SendRequest,
} from '../request/request.js';
import { AttemptAbort } from '../transport/attempt-abort.js';
import {
  isDirectTransport,
  kBodiesReleased,
  kSendDirect,
  type AttemptDone,
  type DirectTransport,
  type Transport,
  type TransportResult,
} from '../transport/transport.js';
import {
  CancelledError,
  ClosedError,
  DroppedError,
  HookError,
  InvalidArgumentError,
  QueueFullError,
  TimeoutError,
} from '../util/errors.js';
import { callerContext } from '../util/context.js';
import type { Logger } from '../util/logger.js';
import type { DispatcherEventName, DispatcherEvents } from './events.js';
import { Lifecycle, type DrainParticipant } from './lifecycle.js';
import { resolveDispatcherOptions } from './options.js';
import type { CloseResult, Dispatcher, DispatcherOptions, DispatcherStats, DrainResult } from './types.js';

export type { DrainParticipant } from './lifecycle.js';
export type { CloseResult, Dispatcher, DispatcherOptions, DispatcherStats, DrainResult } from './types.js';

/**
 * The brand of a dispatcher, and the key of the surface core's after-response machinery and
 * batcher use. `Symbol.for`, so a dispatcher from another installed copy of core is recognised.
 */
export const kInternal = Symbol.for('afterward.dispatcher');

/** Internal surface used by after-response and batching; adapters never touch it. */
export interface DispatcherInternal {
  /** Validates now and returns a parked notification (state 'pending') that {@link submit} releases later. */
  prepare(target: unknown, init: SendInit | undefined, parked?: boolean): Notification;
  /**
   * Releases a parked notification into the queue; never throws (overflow becomes 'dropped').
   * `now`: its caller is gone (a response that ended), so an idle dispatcher starts it at once
   * rather than in a microtask; without, it reads 'queued' until the current job ends.
   */
  submit(notification: Notification, now?: boolean): void;
  /**
   * Counts work parked on an open response (a notification, or a hook when none) against
   * `maxParked`/`maxParkedBytes`. Over the bound: throws QueueFullError with `'reject'`, else a
   * notification settles `'dropped'` and a hook is skipped with a warning; false then.
   */
  park(notification: Notification | undefined): boolean;
  /** Parked work was released (or dropped): `bytes` as counted by {@link park}. */
  unpark(bytes: number): void;
  hooks: HookRunner;
  logger: Logger;
  /**
   * Work outside the queue (batches) that `drain()` must flush and wait for. Returns a function
   * the participant calls when its `pending()` count fell, so a waiting `drain()` can resolve.
   */
  addDrainParticipant(participant: DrainParticipant): () => void;
  /** Forgets a participant added by {@link addDrainParticipant} (a closed batcher). */
  removeDrainParticipant(participant: DrainParticipant): void;
  /**
   * True when the Buffer body of a notification that has settled may be written over now:
   * nothing of this dispatcher holds it any longer. Only with the built-in memory store (a
   * durable one may still be writing it), no backend, and a built-in transport that says its
   * sockets are done with every body (see `kBodiesReleased`). The batcher reuses its batches'
   * bodies so.
   */
  bodiesReleased(): boolean;
}

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

/**
 * True for a dispatcher made by {@link createDispatcher}, from any copy of the package.
 *
 * @example
 * ```ts
 * if (!isDispatcher(options.dispatcher)) throw new TypeError('need a dispatcher');
 * ```
 */
export function isDispatcher(value: unknown): value is Dispatcher {
  return typeof value === 'object' && value !== null && kInternal in value;
}

/**
 * Reaches the internal surface of a dispatcher.
 *
 * @example
 * ```ts
 * const { logger } = internalsOf(dispatcher);
 * ```
 */
export function internalsOf(dispatcher: Dispatcher): DispatcherInternal {
  const internal = (dispatcher as unknown as { [kInternal]?: DispatcherInternal })[kInternal];
  if (internal === undefined) throw new InvalidArgumentError('dispatcher must come from createDispatcher()');
  return internal;
}

/**
 * The error of a notification evicted by drop-oldest, made without a stack: it could only show the
 * send() of the newcomer that pushed it out, and capturing one was most of the CPU of an
 * overflowing send() (bench/memory.mjs). Made when first read, not at the drop (see LazyError).
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
const DROPPED_OLDEST = new LazyError(droppedOldestError);

/**
 * One attempt of the dispatcher: its abort switch, its place among the total deadlines, and
 * what it came to, in one object.
 */
class DispatchedAttempt extends AttemptAbort implements Deadline {
  readonly notification: Notification;
  result: TransportResult | undefined = undefined;
  deadlineAt = 0;
  deadlineMs = 0;
  deadlinePrev: Deadline | undefined = undefined;
  deadlineNext: Deadline | undefined = undefined;

  constructor(attempt: number, notification: Notification) {
    super(attempt);
    this.notification = notification;
  }

  expire(): void {
    this.abort(new TimeoutError('total', this.deadlineMs));
  }
}

/**
 * The dispatcher: the front door (`send`, `drain`, `close`, events) over three stages that never
 * call back into each other: the store and {@link Scheduler} decide what runs, an attempt runs on
 * the transport, and {@link decide} says what follows; each notification writes its own state and
 * the {@link Lifecycle} carries out the side effects.
 */
class DispatcherImpl extends EventEmitter implements Dispatcher {
  readonly #overflow: DispatcherOptions['overflow'];
  readonly #maxParked: number;
  readonly #maxParkedBytes: number;
  #parked = 0;
  #parkedBytes = 0;
  readonly #defaults: RequestDefaults;
  readonly #logger: Logger;
  readonly #httpsOnly: boolean;
  readonly #closeTimeout: number;
  readonly #store: NotificationStore;
  readonly #backend: ExternalBackend | undefined;
  readonly #transport: Transport;
  readonly #hooks: HookRunner;
  readonly #lifecycle: Lifecycle;
  readonly #scheduler: Scheduler;
  /** Reused for every decision (decide() keeps nothing): no object per attempt. */
  readonly #decideContext: DecideContext = { attempt: 0, retry: DEFAULTS.retry, now: 0 };
  /** What each call is normalised into (see #prepare). */
  readonly #request: NormalizedRequest = blankRequest();
  /** Where revived notifications (no caller) run: the context the dispatcher was made in. */
  readonly #context = new AsyncResource('afterward');
  /** The transport's callback entry point, when it has one (the built-in transports). */
  readonly #direct: DirectTransport | undefined;
  readonly #deadlines = new Deadlines();
  /** Attempts that returned, applied in one microtask. */
  #completed: DispatchedAttempt[] = [];
  #spare: DispatchedAttempt[] = [];
  #completing = false;
  #accepting = true;
  #closed = false;
  #closing: Promise<CloseResult> | undefined;
  readonly ready: Promise<void>;
  readonly [kInternal]: DispatcherInternal;

  constructor(options: DispatcherOptions) {
    super();
    const resolved = resolveDispatcherOptions(options);
    this.#overflow = resolved.overflow;
    this.#maxParked = resolved.maxParked;
    this.#maxParkedBytes = resolved.maxParkedBytes;
    this.#defaults = resolved.request;
    this.#logger = resolved.logger;
    this.#httpsOnly = resolved.httpsOnly;
    this.#closeTimeout = resolved.closeTimeout;
    this.#store = resolved.store;
    this.#backend = resolved.backend;
    this.#transport = resolved.transport;
    this.#direct = isDirectTransport(this.#transport) ? this.#transport : undefined;
    const lifecycle = new Lifecycle(this, this.#logger, this.#store);
    this.#lifecycle = lifecycle;
    const { breaker: breakerOptions } = resolved;
    const breaker =
      breakerOptions === undefined
        ? undefined
        : new OriginBreakers(breakerOptions, {
            onOpen: (origin, failureRate) => {
              lifecycle.emit('circuit-open', { origin, failureRate });
              this.#logger.warn(
                { origin, failureRate, openMs: breakerOptions.openMs },
                'afterward: circuit open; notifications to this origin wait',
              );
            },
            onClose: (origin, failureRate) => {
              lifecycle.emit('circuit-close', { origin, failureRate });
              this.#logger.debug?.({ origin }, 'afterward: circuit closed');
            },
          });
    this.#scheduler = new Scheduler({
      store: this.#store,
      concurrency: resolved.concurrency,
      concurrencyPerOrigin: resolved.concurrencyPerOrigin,
      coalesce: resolved.coalesce,
      breaker,
      start: (record) => this.#start(record),
    });
    lifecycle.onRetry(() => this.#scheduler.wake());
    this.#hooks = new HookRunner({
      concurrency: resolved.hookConcurrency,
      timeout: resolved.hookTimeout,
      maxQueued: resolved.maxQueued,
      onError: (error, info) => {
        lifecycle.emit('hook-error', { error, info });
        // The hook's own error, with its stack: HookError's message already quotes it, and pino's
        // err serializer appends an error's causes, which printed the message twice.
        const err = error instanceof HookError ? error.cause : error;
        this.#logger.error({ err, code: error.code }, 'afterward: after-response hook failed');
      },
      onIdle: () => lifecycle.checkIdle(),
    });
    lifecycle.countAlso(() => this.#hooks.pending());
    this[kInternal] = {
      prepare: (target, init, parked) => this.#prepare(target, init, parked),
      submit: (notification, now) => this.#submit(notification, now === true),
      park: (notification) => this.#park(notification),
      unpark: (bytes) => {
        this.#parked -= 1;
        this.#parkedBytes -= bytes;
      },
      hooks: this.#hooks,
      logger: this.#logger,
      addDrainParticipant: (participant) => lifecycle.addParticipant(participant),
      removeDrainParticipant: (participant) => lifecycle.removeParticipant(participant),
      bodiesReleased: () => this.#bodiesReleased(),
    };
    this.#store.open({
      revive: (json) => this.#revive(json),
      wake: () => this.#scheduler.wake(),
    });
    this.ready = (this.#store.ready ?? Promise.resolve()).catch((error: unknown) => {
      this.#logger.error({ err: error }, 'afterward: store recovery failed');
    });
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
    const notification = this.#prepare(url, options);
    if (!notification.settled) this.#enqueue(notification, 'call');
    return notification;
  }

  stats(): DispatcherStats {
    const stats: DispatcherStats = {
      queued: this.#store.waiting,
      inFlight: this.#scheduler.inFlight,
      ...this.#lifecycle.counts,
      queuedBytes: this.#store.bytes,
      parked: this.#parked,
      parkedBytes: this.#parkedBytes,
      hooks: this.#hooks.stats(),
    };
    if (this.#store.stats !== undefined && !this.#closed) stats.store = this.#store.stats();
    return stats;
  }

  drain(options: { timeout?: number } = {}): Promise<DrainResult> {
    const timeout = options.timeout ?? Infinity;
    if (timeout !== Infinity) checkDuration('drain timeout', timeout, 0, true);
    this.#lifecycle.flushParticipants();
    const flushed = this.#store.flush().catch((error: unknown) => {
      this.#logger.error({ err: error }, 'afterward: store flush failed');
    });
    return new Promise<DrainResult>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let stopWaiting: (() => void) | undefined;
      const done = (): void => {
        stopWaiting?.();
        if (timer !== undefined) clearTimeout(timer);
        const pending = this.#pending();
        resolve({ drained: pending === 0, pending });
      };
      if (timeout !== Infinity) timer = setTimeout(done, timeout);
      void flushed.then(() => {
        if (this.#lifecycle.idle()) done();
        else stopWaiting = this.#lifecycle.whenIdle(done);
      });
    });
  }

  close(options: { timeout?: number } = {}): Promise<CloseResult> {
    const timeout = options.timeout ?? this.#closeTimeout;
    checkDuration('close timeout', timeout, 0, true);
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
    // A durable store keeps what is left for the next start; it is not counted as cancelled.
    const kept = this.#store.keep?.() ?? 0;
    this.#closed = true;
    let cancelled = 0;
    const reason = new ClosedError(
      kept > 0
        ? 'the dispatcher closed before this finished; it stays in the outbox for the next start'
        : 'the dispatcher closed before this finished',
    );
    for (const notification of this.#lifecycle.all()) {
      if (notification.cancel(reason)) cancelled++;
    }
    cancelled = Math.max(0, cancelled - kept);
    cancelled += this.#hooks.cancelAll(reason);
    forgetShapes(this.#lifecycle);
    this.#scheduler.stop();
    await this.#transport.close().catch((error: unknown) => {
      this.#logger.error({ err: error }, 'afterward: transport close failed');
    });
    await this.#store.close().catch((error: unknown) => {
      this.#logger.error({ err: error }, 'afterward: store close failed');
    });
    await this.#backend?.close({ timeout: 0 }).catch((error: unknown) => {
      this.#logger.error({ err: error }, 'afterward: backend close failed');
    });
    if (cancelled > 0) {
      this.#logger.warn(
        { cancelled, timeoutMs: timeout },
        'afterward: closed with work left unfinished; it was cancelled',
      );
    }
    if (kept > 0) {
      this.#logger.warn(
        { kept, timeoutMs: timeout },
        'afterward: closed with notifications undelivered; they stay in the outbox for the next start',
      );
    }
    return { drained, cancelled, kept, stats: this.stats() };
  }

  #pending(): number {
    return this.#lifecycle.pending(this.#hooks.pending());
  }

  #prepare(target: unknown, init: SendInit | undefined, parked = false): Notification {
    // Into one reused object: the notification takes it apart at once, before anything that could
    // send again (an async hook) runs.
    const request = normalizeRequest(target, init, this.#defaults, parked, this.#request);
    if (this.#httpsOnly && request.url.protocol !== 'https:') {
      throw new InvalidArgumentError(`httpsOnly: refusing ${request.url.protocol} URL ${request.origin}`);
    }
    const notification = new Notification(nextLocalKey(), request, this.#lifecycle);
    const signal = request.signal;
    request.body = null;
    request.signal = undefined;
    // Captured at the call: the notification's attempts run in the caller's async context.
    notification.context = callerContext();
    this.#lifecycle.track(notification);
    if (signal !== undefined) {
      if (signal.aborted) {
        notification.settle('cancelled', new CancelledError(signal.reason));
        return notification;
      }
      notification.watch(signal);
    }
    return notification;
  }

  #park(notification: Notification | undefined): boolean {
    const bytes = notification?.bytes ?? 0;
    if (this.#parked < this.#maxParked && this.#parkedBytes + bytes <= this.#maxParkedBytes) {
      this.#parked += 1;
      this.#parkedBytes += bytes;
      return true;
    }
    // Parked work belongs to responses still being written: none is evicted for a newcomer, so
    // 'drop-oldest' drops the newcomer here, like 'drop-newest'.
    const message = `parked work full (${this.#parked} items, ${this.#parkedBytes} bytes parked on open responses)`;
    if (this.#overflow === 'reject') {
      if (notification !== undefined) {
        this.#lifecycle.untrack(notification);
        notification.forget();
      }
      throw new QueueFullError(message);
    }
    if (notification === undefined) this.#logger.warn({}, `afterward: hook skipped: ${message}`);
    else notification.settle('dropped', new DroppedError(message));
    return false;
  }

  #submit(notification: Notification, now: boolean): void {
    if (notification.settled) return;
    if (this.#closed) {
      notification.settle('cancelled', new CancelledError(new ClosedError()));
      return;
    }
    this.#enqueue(notification, now ? 'now' : 'soon');
  }

  /** `'call'`: from send(), in its caller's stack; `'soon'`/`'now'`: see {@link DispatcherInternal.submit}. */
  #enqueue(notification: Notification, from: 'call' | 'soon' | 'now'): void {
    const fromCall = from === 'call';
    if (this.#backend !== undefined) {
      this.#handOff(this.#backend, notification);
      return;
    }
    const result = this.#store.put(notification);
    if (!result.accepted) {
      const tooLarge =
        result.reason === 'too-large'
          ? `notification too large: ${notification.bytes} bytes, above maxQueuedBytes (${result.maxBytes})`
          : undefined;
      if (fromCall && this.#overflow === 'reject') {
        this.#lifecycle.untrack(notification);
        notification.forget();
        throw new QueueFullError(
          tooLarge ?? `queue full (${this.#store.size} notifications, ${this.#store.bytes} bytes held)`,
        );
      }
      notification.settle(
        'dropped',
        new DroppedError(
          tooLarge ??
            `queue full: ${this.#overflow === 'drop-oldest' ? 'everything held is in flight' : this.#overflow}`,
        ),
      );
      return;
    }
    notification.release(result.persisted);
    // Read before any is settled: a listener of 'dropped' may send, and the store reuses the
    // array for that put (see PutResult).
    const { evicted } = result;
    if (evicted.length === 1) this.#drop(evicted[0] as StoredRecord);
    else if (evicted.length > 1) for (const record of evicted.slice()) this.#drop(record);
    // From send() or a batcher: started in a microtask, so the handle reads 'queued' until the
    // current job ends. Parked work released after its response has no caller that could read it:
    // it starts with what other responses release within the coalescing window (Scheduler.coalesce).
    if (from === 'now') this.#scheduler.coalesce();
    else this.#scheduler.wake();
  }

  /** Settles a record the store evicted to make room (drop-oldest). */
  #drop(record: StoredRecord): void {
    // The memory store hands back the notification it was given: no lookup by key.
    const dropped = record instanceof Notification ? record : this.#lifecycle.find(record.key);
    dropped?.settle('dropped', DROPPED_OLDEST);
  }

  #bodiesReleased(): boolean {
    return (
      this.#backend === undefined &&
      this.#store instanceof MemoryStore &&
      this.#direct?.[kBodiesReleased]?.() === true
    );
  }

  /**
   * To an external backend: 'queued' until its batch commits, then 'sent' (handed off; workers
   * deliver it) or 'dropped'. A cancel while queued settles the handle only: the batch may commit.
   */
  #handOff(backend: ExternalBackend, notification: Notification): void {
    const { persisted } = backend.enqueue(notification.json());
    notification.release(
      persisted.then((outcome) => {
        if (outcome.state === 'persisted') notification.settle('sent');
        else notification.settle('dropped', outcome.error);
      }),
    );
  }

  /** A notification a durable store recovered: live again, waiting in the store. */
  #revive(json: NotificationJson): StoredRecord {
    const request = { ...fromNotificationJson(json), headers: [...json.headers], signal: undefined };
    const notification = new Notification(json.key, request, this.#lifecycle, undefined, json.createdAt);
    notification.requestId = json.requestId;
    this.#lifecycle.track(notification);
    notification.resume(json.attempts, json.notBefore);
    return notification;
  }

  #start(record: StoredRecord): void {
    // The memory store hands back the notification it was given: no lookup by key for a live one.
    const notification =
      record instanceof Notification && !record.settled ? record : this.#lifecycle.find(record.key);
    if (notification === undefined) {
      // Settled while leased (cannot happen with the stores here); free the slot it took.
      this.#scheduler.finished(record.origin, 'ignore');
      this.#scheduler.wake();
      return;
    }
    // In the context of the call that sent it (not of whichever attempt freed the slot), so
    // AsyncLocalStorage stores and OpenTelemetry's trace follow the notification; undici creates
    // its request in it, also when the request waits in undici's own pool queue (undici 8.14
    // dispatches queued requests in their caller's context: the dependency's lower bound).
    try {
      (notification.context ?? this.#context).runInAsyncScope(this.#attempt, this, notification);
    } catch (error) {
      // #attempt handles its own failures; reaching this is a bug, reported, never thrown.
      this.#logger.error({ err: error }, 'afterward: internal error during an attempt');
    }
  }

  #attempt(notification: Notification): void {
    const attempt = new DispatchedAttempt(notification.attempts + 1, notification);
    notification.begin(attempt);
    this.#store.attempt(notification);
    // The normalised request already has the transport's shape: no copy per attempt.
    const request = notification.wireRequest;
    this.#deadlines.add(attempt, request.timeout.total);
    const done = this.#done;
    try {
      const direct = this.#direct;
      if (direct !== undefined) {
        // The built-in transport reports to `done`: no promise, no async frame per attempt.
        direct[kSendDirect](request, attempt, done);
        return;
      }
      void Promise.resolve(this.#transport.send(request, attempt)).then(
        (result) => done.attemptDone(attempt, result),
        (error: unknown) => done.attemptDone(attempt, thrownResult(error, request, attempt)),
      );
    } catch (error) {
      done.attemptDone(attempt, thrownResult(error, request, attempt));
    }
  }

  /**
   * Where every attempt reports, once. Its outcome is applied in a microtask, never inside the
   * transport's callback (undici's parser, or a `cancel()` that aborted the attempt and settles
   * next), and in the notification's own context.
   */
  readonly #done: AttemptDone = {
    attemptDone: (attempt, result) => {
      const dispatched = attempt as DispatchedAttempt;
      if (dispatched.result !== undefined) return;
      dispatched.result = result;
      this.#deadlines.remove(dispatched);
      this.#completed.push(dispatched);
      if (!this.#completing) {
        this.#completing = true;
        queueMicrotask(this.#complete);
      }
    },
  };

  readonly #complete = (): void => {
    this.#completing = false;
    // Two arrays in turn: one collects while the other is applied.
    const completed = this.#completed;
    this.#completed = this.#spare;
    this.#spare = completed;
    for (const attempt of completed) {
      const { notification } = attempt;
      try {
        (notification.context ?? this.#context).runInAsyncScope(this.#afterAttempt, this, attempt);
      } catch (error) {
        this.#logger.error({ err: error }, 'afterward: internal error during an attempt');
      }
    }
    completed.length = 0;
  };

  #afterAttempt(attempt: DispatchedAttempt): void {
    const { notification } = attempt;
    const result = attempt.result as TransportResult;
    notification.end();
    this.#scheduler.finished(notification.origin, breakerOutcome(result, notification.settled));
    if (notification.settled) {
      // Cancelled mid-attempt: the handle settled when cancel() was called; the store may forget it now.
      this.#lifecycle.release(notification);
    } else {
      this.#apply(notification, result);
    }
    // A slot was freed: only worth a pump when something waits (a retry released above counts,
    // and wakes the scheduler itself). At a moderate rate nothing does, and the pump was one more
    // microtask per notification.
    if (this.#store.waiting > 0) this.#scheduler.wake();
  }

  #apply(notification: Notification, result: TransportResult): void {
    const response = result.kind === 'response' ? result.response : undefined;
    // Most attempts deliver: settled without a clock read or a decision to look up.
    if (response !== undefined && response.status >= 200 && response.status < 300) {
      notification.settle('delivered', undefined, response);
      return;
    }
    const context = this.#decideContext;
    context.attempt = notification.attempts;
    context.retry = notification.retryOptions;
    context.now = Date.now();
    const decision = decide(result, context);
    switch (decision.kind) {
      case 'delivered':
        notification.settle('delivered', undefined, response);
        return;
      case 'sent':
        notification.settle('sent');
        return;
      case 'retry':
        if (this.#closed) notification.settle('failed', decision.error, response);
        else notification.retry(decision.error, response, decision.delay, Date.now());
        return;
      case 'failed':
        notification.settle('failed', decision.error, response);
        return;
    }
  }
}
