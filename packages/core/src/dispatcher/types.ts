import type { BreakerOptions } from '../policy/breaker.js';
import type { GuardSetting } from '../policy/guard.js';
import type { SigningOptions } from '../policy/signing.js';
import type { DeliveryHandle } from '../notification/handle.js';
import type { ExternalBackend } from '../queue/external.js';
import type { NotificationStore } from '../queue/store.js';
import type { HeadersInput, SendInit, SendRequest } from '../request/request.js';
import type { Transport } from '../transport/transport.js';
import type { Logger } from '../util/logger.js';
import type { LogUrls } from '../util/redact-url.js';
import type { OverflowPolicy, RetryOptions, TimeoutOptions } from '../options/options.js';
import type { DispatcherEventName, DispatcherEvents } from './events.js';

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
  /**
   * Notifications and hooks parked on responses still open (long polls, SSE, slow clients), over
   * all responses. Default 10 000, as `maxQueued`: parked work becomes queued work.
   */
  maxParked?: number;
  /** Bytes of the notifications parked on open responses (URL, headers, body). Default 32 MiB. */
  maxParkedBytes?: number;
  /** What happens when the queue (or parked work) is full. Default `'drop-oldest'`. */
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
  /**
   * How target URLs appear in log lines: `'origin'` (default; scheme, host and port, as webhook
   * URLs carry their token in the path or query) or `'full'`.
   */
  logUrls?: LogUrls;
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
  /**
   * How long (ms, 0 to 1,000) parked work released after its response waits for more before it
   * starts, so that the notifications released in that window are sent together: one wake-up of
   * the process for several answers. `0` starts each at once. `send()` is never held. Default 20.
   */
  coalesce?: number;
  /**
   * Where notifications wait; the in-memory store by default. A store implements
   * {@link NotificationStore} and passes the store contract suite.
   */
  store?: NotificationStore;
  /**
   * An external queue that owns delivery (`postgresBackend()` from `@afterward/postgres`): the
   * dispatcher validates each call and hands the notification to it; workers deliver. The handle
   * reads `'queued'` until the backend commits it, then settles `'sent'` with `attempts: 0` (handed
   * off: the outcome is known to the workers, not here), or `'dropped'`. Not with `store`.
   */
  backend?: ExternalBackend;
  /**
   * A durable outbox, e.g. `sqliteOutbox({ path })` from `@afterward/sqlite`: the same seam as
   * `store`, with the dispatcher's bounds handed to it. `handle.persisted` resolves once a
   * notification is written; what is left at `close()` stays in it for the next start (`kept`).
   * Overflow defaults to `'reject'` with an outbox; `'drop-oldest'` is refused.
   */
  outbox?: NotificationStore;
  /** How bytes move; undici by default. */
  transport?: Transport;
}

/** Counters and gauges of a dispatcher. */
export interface DispatcherStats {
  /** Notifications waiting to be sent, including those waiting out a retry backoff. */
  queued: number;
  /** Notifications with an attempt on the wire now. */
  inFlight: number;
  /** Notifications the receiver answered with a 2xx (counted since the dispatcher was created). */
  delivered: number;
  /** Notifications with `confirm: 'sent'` whose request was written in full. */
  sent: number;
  /** Notifications that ran out of attempts or met an error that is not retried. */
  failed: number;
  /** Notifications dropped by the overflow policy (`maxQueued`, `maxQueuedBytes`). */
  dropped: number;
  /** Notifications cancelled: `cancel()`, a signal, `close()`, a `when` that did not match. */
  cancelled: number;
  /** Retries scheduled (an attempt that failed and will be tried again). */
  retries: number;
  /** Bytes held by queued and in-flight notifications (URL, headers, body), against `maxQueuedBytes`. */
  queuedBytes: number;
  /** Notifications and hooks parked on responses still open. */
  parked: number;
  /** Bytes of the notifications parked on responses still open. */
  parkedBytes: number;
  /** `after()` hooks: waiting for a slot, running now, and finished (completed or failed: threw, rejected, timed out, dropped). */
  hooks: { queued: number; running: number; completed: number; failed: number };
  /** The durable outbox's gauges (rows on disk, dead letters, file bytes), when there is one. */
  store?: Record<string, number>;
}

/** What `close()` resolves with. */
export interface CloseResult {
  /** True when everything finished within the timeout. */
  drained: boolean;
  /** Notifications and hooks cancelled because the timeout ran out. */
  cancelled: number;
  /** Notifications left undelivered in a durable outbox for the next start (0 without one). */
  kept: number;
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
 * dispatcher.on('failed', ({ id, error }) => log.warn({ id, err: error }));
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
  /**
   * Counters and gauges, read synchronously (cheap enough for a metrics scrape):
   * `{ queued, inFlight, delivered, sent, failed, dropped, cancelled, retries, queuedBytes, hooks }`.
   */
  stats(): DispatcherStats;
  /**
   * Resolves once the notifications a durable outbox recovered at start are scheduled; at once
   * without one. Never rejects.
   */
  readonly ready: Promise<void>;
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
