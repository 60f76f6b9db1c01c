const kAfterwardError = Symbol.for('afterward.error');

/** Stable machine-readable codes carried by every {@link AfterwardError}. */
export type AfterwardErrorCode =
  | 'AFTERWARD_ERR_INVALID_ARGUMENT'
  | 'AFTERWARD_ERR_QUEUE_FULL'
  | 'AFTERWARD_ERR_CLOSED'
  | 'AFTERWARD_ERR_CANCELLED'
  | 'AFTERWARD_ERR_DROPPED'
  | 'AFTERWARD_ERR_CONNECT_TIMEOUT'
  | 'AFTERWARD_ERR_HEADERS_TIMEOUT'
  | 'AFTERWARD_ERR_TOTAL_TIMEOUT'
  | 'AFTERWARD_ERR_NETWORK'
  | 'AFTERWARD_ERR_HTTP_STATUS'
  | 'AFTERWARD_ERR_BLOCKED_ADDRESS'
  | 'AFTERWARD_ERR_HOOK_FAILED'
  | 'AFTERWARD_ERR_HOOK_TIMEOUT'
  | 'AFTERWARD_ERR_NOT_INSTALLED'
  | 'AFTERWARD_ERR_UNSUPPORTED_NODE';

/**
 * Base class of every error afterward produces. `instanceof` works across duplicate installs (two
 * copies of the package in one app), as undici's errors do: it checks a `Symbol.for` brand and the
 * class names on the prototype chain, not object identity. {@link isAfterwardError} does the same.
 *
 * @example
 * ```ts
 * if (isAfterwardError(handle.error)) log.warn({ code: handle.error.code }, 'notification failed');
 * ```
 */
export class AfterwardError extends Error {
  readonly code: AfterwardErrorCode;
  /** Whether the dispatcher would try again after this error. */
  readonly retryable: boolean;

  constructor(code: AfterwardErrorCode, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options?.retryable ?? false;
    Object.defineProperty(this, kAfterwardError, { value: true });
  }

  override get name(): string {
    return this.constructor.name;
  }

  /** `error instanceof HttpStatusError` is true for an HttpStatusError from any copy of the package. */
  static override [Symbol.hasInstance](instance: unknown): boolean {
    if (!isAfterwardError(instance)) return false;
    for (
      let proto: unknown = Object.getPrototypeOf(instance);
      proto !== null;
      proto = Object.getPrototypeOf(proto)
    ) {
      if (proto === this.prototype) return true;
      if ((proto as { constructor?: { name?: unknown } }).constructor?.name === this.name) return true;
    }
    return false;
  }
}

/**
 * True for any error made by afterward, from any copy of the package.
 *
 * @example
 * ```ts
 * dispatcher.on('failed', (e) => isAfterwardError(e.error) && metrics.increment(e.error.code));
 * ```
 */
export function isAfterwardError(value: unknown): value is AfterwardError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[kAfterwardError] === true
  );
}

/**
 * A bad argument given by the caller: thrown synchronously at the call, so the bug shows in the
 * caller's stack and nothing is half-enqueued.
 *
 * @example
 * ```ts
 * try { res.fireAndForget('not a url'); } catch (e) { e instanceof InvalidArgumentError; }
 * ```
 */
export class InvalidArgumentError extends AfterwardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AFTERWARD_ERR_INVALID_ARGUMENT', message, options);
  }
}

/**
 * Thrown by `send()` when the queue is full and the overflow policy is `'reject'`.
 *
 * @example
 * ```ts
 * createDispatcher({ maxQueued: 100, overflow: 'reject' });
 * ```
 */
export class QueueFullError extends AfterwardError {
  constructor(message: string) {
    super('AFTERWARD_ERR_QUEUE_FULL', message);
  }
}

/**
 * Thrown by `send()` after `close()` began; also the error of work cancelled by `close()`.
 *
 * @example
 * ```ts
 * await dispatcher.close(); dispatcher.send(url); // throws ClosedError
 * ```
 */
export class ClosedError extends AfterwardError {
  constructor(message = 'the dispatcher is closed') {
    super('AFTERWARD_ERR_CLOSED', message);
  }
}

/**
 * The error of a handle that was cancelled (by `handle.cancel()`, an aborted `signal`, or `close()`).
 *
 * @example
 * ```ts
 * handle.cancel('user deleted'); (await handle.done).error instanceof CancelledError;
 * ```
 */
export class CancelledError extends AfterwardError {
  readonly reason: unknown;
  constructor(reason?: unknown) {
    super('AFTERWARD_ERR_CANCELLED', `cancelled${reason === undefined ? '' : `: ${describe(reason)}`}`, {
      cause: reason,
    });
    this.reason = reason;
  }
}

/**
 * The error of a handle dropped by the queue's overflow policy.
 *
 * @example
 * ```ts
 * dispatcher.on('dropped', ({ error }) => error instanceof DroppedError);
 * ```
 */
export class DroppedError extends AfterwardError {
  constructor(message: string) {
    super('AFTERWARD_ERR_DROPPED', message);
  }
}

/** Which deadline of an attempt ran out. */
export type TimeoutPhase = 'connect' | 'headers' | 'total';

/**
 * An attempt ran out of time: connecting, waiting for response headers, or the total deadline
 * (which also ends a receiver that trickles bytes). Retried.
 *
 * @example
 * ```ts
 * if (handle.error instanceof TimeoutError) console.warn(handle.error.phase, handle.error.timeoutMs);
 * ```
 */
export class TimeoutError extends AfterwardError {
  readonly phase: TimeoutPhase;
  readonly timeoutMs: number;
  constructor(phase: TimeoutPhase, timeoutMs: number, options?: { cause?: unknown }) {
    const code =
      phase === 'connect'
        ? 'AFTERWARD_ERR_CONNECT_TIMEOUT'
        : phase === 'headers'
          ? 'AFTERWARD_ERR_HEADERS_TIMEOUT'
          : 'AFTERWARD_ERR_TOTAL_TIMEOUT';
    super(code, `${phase} timeout after ${timeoutMs} ms`, { cause: options?.cause, retryable: true });
    this.phase = phase;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The connection failed or broke (refused, reset, DNS failure, socket closed mid-response). Retried.
 *
 * @example
 * ```ts
 * if (handle.error instanceof NetworkError) console.warn(handle.error.message, handle.error.cause);
 * ```
 */
export class NetworkError extends AfterwardError {
  /** True when the failure happened before the whole request had been written. */
  readonly beforeSent: boolean;
  constructor(message: string, options: { cause?: unknown; beforeSent: boolean; retryable?: boolean }) {
    super('AFTERWARD_ERR_NETWORK', message, { cause: options.cause, retryable: options.retryable ?? true });
    this.beforeSent = options.beforeSent;
  }
}

/**
 * The receiver answered with a status that is not 2xx. Retried for 408, 429 and 5xx other than
 * 501 and 505; 3xx is never followed.
 *
 * @example
 * ```ts
 * if (handle.error instanceof HttpStatusError && handle.error.status === 410) unsubscribe(endpoint);
 * ```
 */
export class HttpStatusError extends AfterwardError {
  readonly status: number;
  /** Milliseconds the receiver asked us to wait (Retry-After), already clamped. */
  readonly retryAfterMs: number | undefined;
  constructor(status: number, statusText: string, options?: { retryable?: boolean; retryAfterMs?: number }) {
    super('AFTERWARD_ERR_HTTP_STATUS', `receiver answered ${status}${statusText ? ` ${statusText}` : ''}`, {
      retryable: options?.retryable ?? false,
    });
    this.status = status;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/**
 * The target resolved to an address the guard refuses (private, loopback, link-local, ...). Not retried.
 *
 * @example
 * ```ts
 * createDispatcher({ guard: 'public-only' }).send('http://169.254.169.254/'); // settles failed
 * ```
 */
export class BlockedAddressError extends AfterwardError {
  readonly host: string;
  readonly address: string;
  constructor(host: string, address: string, why: string) {
    super('AFTERWARD_ERR_BLOCKED_ADDRESS', `refused ${host} (${address}): ${why}`);
    this.host = host;
    this.address = address;
  }
}

/**
 * An `after()` hook threw or rejected. The original error is the `cause`.
 *
 * @example
 * ```ts
 * dispatcher.on('hook-error', ({ error }) => log.error(error.cause));
 * ```
 */
export class HookError extends AfterwardError {
  constructor(cause: unknown) {
    super('AFTERWARD_ERR_HOOK_FAILED', `after-response hook failed: ${describe(cause)}`, { cause });
  }
}

/**
 * An `after()` hook did not settle within its timeout; its signal was aborted with this error.
 *
 * @example
 * ```ts
 * res.after(async (_info, signal) => db.write(row, { signal }), { timeout: 2_000 });
 * ```
 */
export class HookTimeoutError extends AfterwardError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number) {
    super('AFTERWARD_ERR_HOOK_TIMEOUT', `after-response hook timed out after ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/**
 * `res.fireAndForget()` / `res.after()` was reached on a response the middleware never saw.
 *
 * @example
 * ```ts
 * app.use(afterward()); // install before the routes that call res.fireAndForget
 * ```
 */
export class NotInstalledError extends AfterwardError {
  constructor(message: string) {
    super('AFTERWARD_ERR_NOT_INSTALLED', message);
  }
}

/**
 * Thrown when `@afterward/core` (or anything built on it) is imported on a Node.js older than
 * 22.19, before undici loads: undici 8 would otherwise crash with a bare `TypeError` on Node 20.
 *
 * @example
 * ```ts
 * // node20 app.js → UnsupportedNodeError: afterward needs Node.js 22.19 or later (24 and 26 are supported); this is v20.20.2
 * ```
 */
export class UnsupportedNodeError extends AfterwardError {
  /** The running version, `process.version` (`'v20.20.2'`). */
  readonly nodeVersion: string;

  constructor(nodeVersion: string) {
    super(
      'AFTERWARD_ERR_UNSUPPORTED_NODE',
      `afterward needs Node.js 22.19 or later (24 and 26 are supported); this is ${nodeVersion}`,
    );
    this.nodeVersion = nodeVersion;
  }
}

function describe(value: unknown): string {
  if (value instanceof Error) return value.message;
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
