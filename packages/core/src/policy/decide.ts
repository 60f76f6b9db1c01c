import type { AfterwardError } from '../util/errors.js';
import type { RetryOptions } from '../options/options.js';
import type { TransportResult } from '../transport/transport.js';
import { backoffDelay, statusError } from './retry.js';

/**
 * The retry policy a decision applies: attempts in all, and the backoff window.
 *
 * @example
 * ```ts
 * const policy: RetryPolicy = { ...DEFAULTS.retry, attempts: 3 };
 * ```
 */
export type RetryPolicy = RetryOptions;

/**
 * What to do after an attempt. `hold` means the breaker refused it: not an attempt; try again at
 * `until`.
 *
 * @example
 * ```ts
 * if (decision.kind === 'retry') setTimeout(retry, decision.delay);
 * ```
 */
export type Decision =
  | { kind: 'delivered'; status: number }
  | { kind: 'sent' }
  | { kind: 'retry'; delay: number; error: AfterwardError }
  | { kind: 'failed'; error: AfterwardError }
  | { kind: 'hold'; until: number };

/**
 * What {@link decide} needs besides the result.
 *
 * @example
 * ```ts
 * decide(result, { attempt: job.attempts + 1, retry: job.retry, now: Date.now() });
 * ```
 */
export interface DecideContext {
  /** The attempt that produced the result (1 for the first). */
  attempt: number;
  retry: RetryPolicy;
  /** Epoch ms now (for Retry-After dates). */
  now: number;
  /** The jitter source; `Math.random` by default. */
  random?: () => number;
}

const SENT: Decision = Object.freeze({ kind: 'sent' });
// One frozen decision per 2xx status: `decide` runs once per attempt, and most attempts deliver.
const DELIVERED: Array<Extract<Decision, { kind: 'delivered' }> | undefined> = [];

/**
 * Pure: turns an attempt's result into what happens next (never `hold`: that is the breaker's
 * answer before an attempt, given by the attempt runner). 2xx is delivered; `'sent'` is sent;
 * retryable failures (network errors, timeouts, 408, 429, 5xx but 501/505) are retried with full
 * jitter or the receiver's Retry-After while attempts remain; everything else fails. The same
 * function decides for the in-process dispatcher and for every backend's workers.
 *
 * @example
 * ```ts
 * decide({ kind: 'response', response: { status: 503, statusText: '', headers: {} } },
 *   { attempt: 1, retry: DEFAULTS.retry, now: Date.now() }); // { kind: 'retry', delay: ..., error }
 * ```
 */
export function decide(result: TransportResult, context: DecideContext): Exclude<Decision, { kind: 'hold' }> {
  let error: AfterwardError;
  switch (result.kind) {
    case 'sent':
      return SENT as Extract<Decision, { kind: 'sent' }>;
    case 'response': {
      const { status, statusText, headers } = result.response;
      if (status >= 200 && status < 300) {
        return (DELIVERED[status - 200] ??= Object.freeze({ kind: 'delivered', status }));
      }
      error = statusError(status, statusText, headers, context.retry, context.now);
      break;
    }
    case 'error':
      error = result.error;
      break;
  }
  if (!error.retryable || context.attempt >= context.retry.attempts) return { kind: 'failed', error };
  const retryAfterMs = 'retryAfterMs' in error ? (error.retryAfterMs as number | undefined) : undefined;
  return {
    kind: 'retry',
    delay: backoffDelay(context.attempt, context.retry, retryAfterMs, context.random),
    error,
  };
}
