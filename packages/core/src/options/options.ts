import { createRequire } from 'node:module';
import { InvalidArgumentError } from '../util/errors.js';

// packages/core/package.json, from src/options and from dist/options alike.
const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

/** Per-attempt deadlines, in milliseconds. */
export interface TimeoutOptions {
  /** Establishing the TCP (and TLS) connection. Default 5 000. */
  connect: number;
  /** From the request being sent to the response headers arriving. Default 10 000. */
  response: number;
  /** The whole attempt, including a receiver that trickles bytes. Default 15 000. */
  total: number;
}

/** How failed attempts are retried: exponential backoff with full jitter. */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 5. */
  attempts: number;
  /** Cap of the first backoff window. Default 500 ms. */
  minDelay: number;
  /** Largest backoff window. Default 30 000 ms. */
  maxDelay: number;
  /** Growth of the window per attempt. Default 2. */
  factor: number;
  /** Largest wait a `Retry-After` header may ask for; longer asks are clamped. Default 60 000 ms. */
  maxRetryAfter: number;
}

/** What `send()` does when the queue is full. */
export type OverflowPolicy = 'drop-oldest' | 'drop-newest' | 'reject';

/**
 * Every default in one place, each anchored in the design page's table: the dispatcher's, the
 * batcher's, the adapters' and the undici transport's.
 */
export const DEFAULTS = {
  concurrency: 256,
  concurrencyPerOrigin: 128,
  maxQueued: 10_000,
  maxQueuedBytes: 32 * 1024 * 1024,
  maxParked: 10_000,
  maxParkedBytes: 32 * 1024 * 1024,
  overflow: 'drop-oldest' as OverflowPolicy,
  timeout: { connect: 5_000, response: 10_000, total: 15_000 } satisfies TimeoutOptions,
  retry: {
    attempts: 5,
    minDelay: 500,
    maxDelay: 30_000,
    factor: 2,
    maxRetryAfter: 60_000,
  } satisfies RetryOptions,
  maxResponseBytes: 64 * 1024,
  closeTimeout: 10_000,
  // Parked work released after its response waits up to 20 ms for more (issue 15 row 1,
  // bench/notify-pair.mjs: about 7 % less added CPU per notification at 2,000 req/s than starting each
  // at once; a peer's batching waits far longer: posthog-node 10 s, OTel's span batches 5 s).
  coalesce: 20,
  hookConcurrency: 16,
  hookTimeout: 10_000,
  /** `afterward/<major>.<minor>` of this package. */
  userAgent: `afterward/${version.split('.').slice(0, 2).join('.')}`,
  // 500 items (was 100; OTel's BatchSpanProcessor exports 512): one batch request costs about 0.5 ms
  // of CPU in the app whatever its size, about a third of what auditLog added to a request at 100
  // records a batch (issue 15, bench/audit-pair.mjs: 7.3 µs at 100, 4.9 µs at 500, no better at
  // 1,000). maxWaitMs still bounds the wait.
  batch: { maxItems: 500, maxWaitMs: 1_000, maxBytes: 1024 * 1024, maxPending: 10_000, format: 'json' },
  adapter: { onClientAbort: 'send', maxPerResponse: 1_000 },
  transport: { keepAliveTimeout: 4_000, connectionsPerOrigin: 128 },
} as const;

const MAX_KEEP_BODY = 16 * 1024 * 1024;

/**
 * The longest delay a Node timer honours (2^31 - 1 ms, about 24.8 days): a longer one fires after
 * 1 ms, with a warning, which turns a long deadline into none and a long backoff into a spin.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Throws InvalidArgumentError unless `value` is a finite number within [min, max]. */
export function checkNumber(
  name: string,
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new InvalidArgumentError(
      `${name} must be a number from ${min} to ${max === Number.MAX_SAFE_INTEGER ? 'Infinity' : max}, got ${show(value)}`,
    );
  }
  return value;
}

/** A delay or deadline in milliseconds: from `min` up to {@link MAX_TIMER_MS}, whole when `integer`. */
export function checkDuration(name: string, value: unknown, min: number, integer = false): number {
  if (typeof value === 'number' && value > MAX_TIMER_MS && Number.isFinite(value)) {
    throw new InvalidArgumentError(
      `${name} must be at most ${MAX_TIMER_MS} ms (about 24.8 days, the longest a Node timer waits), got ${value}`,
    );
  }
  return integer ? checkInteger(name, value, min, MAX_TIMER_MS) : checkNumber(name, value, min, MAX_TIMER_MS);
}

/** Like {@link checkNumber}, for whole numbers. */
export function checkInteger(name: string, value: unknown, min: number, max?: number): number {
  checkNumber(name, value, min, max);
  if (!Number.isInteger(value))
    throw new InvalidArgumentError(`${name} must be a whole number, got ${show(value)}`);
  return value as number;
}

/** Throws unless `value` is a plain object (or undefined, when `optional`). */
export function checkObject(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${name} must be an object, got ${show(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Rejects keys a caller may have misspelt: a typo in an option should not silently do nothing. */
export function checkKeys(name: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new InvalidArgumentError(`${name} has an unknown option "${key}" (known: ${allowed.join(', ')})`);
    }
  }
}

/** Merges a per-send or per-dispatcher timeout setting over a base. A number sets the total deadline. */
export function resolveTimeout(name: string, value: unknown, base: TimeoutOptions): TimeoutOptions {
  if (value === undefined) return base;
  if (typeof value === 'number') return { ...base, total: checkDuration(name, value, 1) };
  const obj = checkObject(name, value);
  checkKeys(name, obj, ['connect', 'response', 'total']);
  return {
    connect:
      obj['connect'] === undefined ? base.connect : checkDuration(`${name}.connect`, obj['connect'], 1),
    response:
      obj['response'] === undefined ? base.response : checkDuration(`${name}.response`, obj['response'], 1),
    total: obj['total'] === undefined ? base.total : checkDuration(`${name}.total`, obj['total'], 1),
  };
}

/** Merges a retry setting over a base; `false` turns retries off (one attempt). */
export function resolveRetry(name: string, value: unknown, base: RetryOptions): RetryOptions {
  // The merge is a function of its own: its closures made this one allocate their context (about
  // 50 bytes) on every call, the send() that passes no retry option included.
  return value === undefined ? base : mergeRetry(name, value, base);
}

function mergeRetry(name: string, value: unknown, base: RetryOptions): RetryOptions {
  if (value === false) return { ...base, attempts: 1 };
  const obj = checkObject(name, value);
  checkKeys(name, obj, ['attempts', 'minDelay', 'maxDelay', 'factor', 'maxRetryAfter']);
  const pick = (key: keyof RetryOptions, min: number): number =>
    obj[key] === undefined ? base[key] : checkNumber(`${name}.${key}`, obj[key], min);
  const pickDuration = (key: 'minDelay' | 'maxDelay' | 'maxRetryAfter'): number =>
    obj[key] === undefined ? base[key] : checkDuration(`${name}.${key}`, obj[key], 0);
  const resolved = {
    attempts:
      obj['attempts'] === undefined
        ? base.attempts
        : checkInteger(`${name}.attempts`, obj['attempts'], 1, 100),
    minDelay: pickDuration('minDelay'),
    maxDelay: pickDuration('maxDelay'),
    factor: pick('factor', 1),
    maxRetryAfter: pickDuration('maxRetryAfter'),
  };
  if (resolved.maxDelay < resolved.minDelay) {
    throw new InvalidArgumentError(
      `${name}.maxDelay (${resolved.maxDelay}) is below minDelay (${resolved.minDelay})`,
    );
  }
  return resolved;
}

/** `keepBody: true` keeps up to the read bound; a number keeps that many bytes. */
export function resolveKeepBody(value: unknown): number {
  if (value === undefined || value === false) return 0;
  if (value === true) return DEFAULTS.maxResponseBytes;
  return checkInteger('keepBody', value, 0, MAX_KEEP_BODY);
}

/** A short, safe rendering of a bad value for an error message. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'symbol') return value.toString();
  if (value === null || typeof value !== 'object') return String(value);
  if (Array.isArray(value)) return 'an array';
  return `an object (${value.constructor?.name ?? 'null prototype'})`;
}
