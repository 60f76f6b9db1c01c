import { resolveBreaker, type BreakerOptions } from '../policy/breaker.js';
import { createMemoryStore } from '../queue/memory-store.js';
import { isExternalBackend, type ExternalBackend } from '../queue/external.js';
import type { NotificationStore, StoreLimits } from '../queue/store.js';
import { addHeaders, TargetCache, type RequestDefaults } from '../request/request.js';
import { composeTransport } from '../transport/compose.js';
import type { Transport } from '../transport/transport.js';
import { InvalidArgumentError } from '../util/errors.js';
import { rateLimitLogger, stderrLogger, type Logger } from '../util/logger.js';
import {
  checkDuration,
  checkInteger,
  checkKeys,
  checkObject,
  DEFAULTS,
  resolveRetry,
  resolveTimeout,
  show,
  type OverflowPolicy,
} from '../options/options.js';
import type { DispatcherOptions } from './types.js';

/** {@link DispatcherOptions} resolved: every default filled in, every value checked. */
export interface ResolvedDispatcherOptions {
  concurrency: number;
  concurrencyPerOrigin: number;
  overflow: OverflowPolicy;
  maxQueued: number;
  maxParked: number;
  maxParkedBytes: number;
  request: RequestDefaults;
  logger: Logger;
  httpsOnly: boolean;
  closeTimeout: number;
  coalesce: number;
  hookConcurrency: number;
  hookTimeout: number;
  breaker: BreakerOptions | undefined;
  store: NotificationStore;
  backend: ExternalBackend | undefined;
  /** The transport with its decorators (signing) applied. */
  transport: Transport;
}

// `satisfies` makes a new option in DispatcherOptions a compile error here until it is listed.
const DISPATCHER_KEYS = Object.keys({
  concurrency: true,
  concurrencyPerOrigin: true,
  maxQueued: true,
  maxQueuedBytes: true,
  maxParked: true,
  maxParkedBytes: true,
  overflow: true,
  timeout: true,
  retry: true,
  userAgent: true,
  headers: true,
  logger: true,
  logUrls: true,
  signing: true,
  guard: true,
  breaker: true,
  httpsOnly: true,
  maxResponseBytes: true,
  hookConcurrency: true,
  hookTimeout: true,
  closeTimeout: true,
  coalesce: true,
  store: true,
  backend: true,
  outbox: true,
  transport: true,
} satisfies Record<keyof DispatcherOptions, true>);

/**
 * Validates every dispatcher option (typos included) and fills in the defaults. Pure but for
 * the objects it builds (transport, store); throws InvalidArgumentError on a bad option.
 *
 * @example
 * ```ts
 * const resolved = resolveDispatcherOptions({ concurrency: 8 });
 * resolved.concurrencyPerOrigin; // 8: never above concurrency
 * ```
 */
export function resolveDispatcherOptions(options: DispatcherOptions): ResolvedDispatcherOptions {
  const opts = checkObject('options', options);
  checkKeys('createDispatcher options', opts, DISPATCHER_KEYS);
  const concurrency =
    options.concurrency === undefined
      ? DEFAULTS.concurrency
      : checkInteger('concurrency', options.concurrency, 1, 10_000);
  const concurrencyPerOrigin =
    options.concurrencyPerOrigin === undefined
      ? Math.min(DEFAULTS.concurrencyPerOrigin, concurrency)
      : checkInteger('concurrencyPerOrigin', options.concurrencyPerOrigin, 1, 10_000);
  const maxQueued =
    options.maxQueued === undefined ? DEFAULTS.maxQueued : checkInteger('maxQueued', options.maxQueued, 1);
  const maxQueuedBytes =
    options.maxQueuedBytes === undefined
      ? DEFAULTS.maxQueuedBytes
      : checkInteger('maxQueuedBytes', options.maxQueuedBytes, 0);
  // A durable outbox never deletes an acknowledged row to make room: its default is 'reject'.
  const overflow = options.overflow ?? (options.outbox === undefined ? DEFAULTS.overflow : 'reject');
  if (!['drop-oldest', 'drop-newest', 'reject'].includes(overflow)) {
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
  const request: RequestDefaults = {
    timeout: resolveTimeout('timeout', options.timeout, DEFAULTS.timeout),
    retry: resolveRetry('retry', options.retry, DEFAULTS.retry),
    headers,
    userAgent,
    canSign: options.signing !== undefined,
    targets: new TargetCache(),
  };
  if (options.httpsOnly !== undefined && typeof options.httpsOnly !== 'boolean') {
    throw new InvalidArgumentError(`httpsOnly must be a boolean, got ${show(options.httpsOnly)}`);
  }
  const closeTimeout =
    options.closeTimeout === undefined
      ? DEFAULTS.closeTimeout
      : checkDuration('closeTimeout', options.closeTimeout, 0, true);
  const logUrls = options.logUrls ?? 'origin';
  if (logUrls !== 'origin' && logUrls !== 'full') {
    throw new InvalidArgumentError(`logUrls must be 'origin' or 'full', got ${show(options.logUrls)}`);
  }
  const logger = options.logger ?? stderrLogger;
  if (
    typeof logger !== 'object' ||
    logger === null ||
    typeof logger.warn !== 'function' ||
    typeof logger.error !== 'function'
  ) {
    throw new InvalidArgumentError('logger must have warn() and error() methods (pino-compatible)');
  }
  const maxResponseBytes =
    options.maxResponseBytes === undefined
      ? DEFAULTS.maxResponseBytes
      : checkInteger('maxResponseBytes', options.maxResponseBytes, 0, 16 * 1024 * 1024);
  const breaker = resolveBreaker(options.breaker);
  const hookConcurrency =
    options.hookConcurrency === undefined
      ? DEFAULTS.hookConcurrency
      : checkInteger('hookConcurrency', options.hookConcurrency, 1, 10_000);
  const hookTimeout =
    options.hookTimeout === undefined
      ? DEFAULTS.hookTimeout
      : checkDuration('hookTimeout', options.hookTimeout, 1, true);
  if (options.store !== undefined && !isStore(options.store)) {
    throw new InvalidArgumentError(`store must implement NotificationStore, got ${show(options.store)}`);
  }
  if (options.backend !== undefined) {
    if (!isExternalBackend(options.backend)) {
      throw new InvalidArgumentError(
        `backend must have enqueue() and close() (postgresBackend()), got ${show(options.backend)}`,
      );
    }
    if (options.store !== undefined) throw new InvalidArgumentError('give store or backend, not both');
    if (options.outbox !== undefined) throw new InvalidArgumentError('give outbox or backend, not both');
  }
  const outbox = resolveOutbox(options, { maxQueued, maxQueuedBytes, overflow });
  // Signing is a decorator around the transport: the dispatcher never signs anything itself.
  const transport = composeTransport({
    transport: options.transport,
    guard: options.guard,
    signing: options.signing,
    maxResponseBytes,
    connectionsPerOrigin: concurrencyPerOrigin,
  });
  return {
    concurrency,
    concurrencyPerOrigin,
    overflow,
    maxQueued,
    maxParked:
      options.maxParked === undefined ? DEFAULTS.maxParked : checkInteger('maxParked', options.maxParked, 0),
    maxParkedBytes:
      options.maxParkedBytes === undefined
        ? DEFAULTS.maxParkedBytes
        : checkInteger('maxParkedBytes', options.maxParkedBytes, 0),
    request,
    logger: rateLimitLogger(logger, undefined, logUrls),
    httpsOnly: options.httpsOnly ?? false,
    closeTimeout,
    coalesce:
      options.coalesce === undefined
        ? DEFAULTS.coalesce
        : checkInteger('coalesce', options.coalesce, 0, 1_000),
    hookConcurrency,
    hookTimeout,
    breaker,
    store: outbox ?? options.store ?? createMemoryStore({ maxQueued, maxQueuedBytes, overflow }),
    backend: options.backend,
    transport,
  };
}

const STORE_METHODS = [
  'open',
  'put',
  'take',
  'attempt',
  'release',
  'settle',
  'remove',
  'nextDueAt',
  'flush',
  'close',
];

function isStore(value: unknown): value is NotificationStore {
  return (
    typeof value === 'object' &&
    value !== null &&
    STORE_METHODS.every((name) => typeof (value as Record<string, unknown>)[name] === 'function')
  );
}

/**
 * `outbox` is the store seam for a durable store: the dispatcher's bounds are handed to it
 * (`configure`), and 'drop-oldest' is refused, since it would delete acknowledged rows.
 */
function resolveOutbox(options: DispatcherOptions, limits: StoreLimits): NotificationStore | undefined {
  const { outbox } = options;
  if (outbox === undefined) return undefined;
  if (!isStore(outbox)) {
    throw new InvalidArgumentError(`outbox must implement NotificationStore, got ${show(outbox)}`);
  }
  if (options.store !== undefined) {
    throw new InvalidArgumentError('pass either store or outbox, not both (an outbox is a durable store)');
  }
  if (limits.overflow === 'drop-oldest') {
    throw new InvalidArgumentError(
      "overflow 'drop-oldest' cannot be used with a durable outbox: it would delete notifications already acknowledged as persisted; use 'reject' (the default with an outbox) or 'drop-newest'",
    );
  }
  outbox.configure?.(limits);
  return outbox;
}
