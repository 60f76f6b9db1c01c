import type { IncomingHttpHeaders } from 'node:http';
import { HttpStatusError } from '../util/errors.js';
import type { RetryOptions } from '../options/options.js';

/**
 * Backoff before retry number `retry` (1 for the first retry): full jitter over an exponential
 * window, so a crowd of failures spreads out instead of retrying in lockstep. A Retry-After the
 * receiver sent wins, clamped.
 */
export function backoffDelay(
  retry: number,
  options: RetryOptions,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, options.maxRetryAfter);
  const window = Math.min(options.maxDelay, options.minDelay * options.factor ** (retry - 1));
  return Math.round(random() * window);
}

/** Whether an HTTP status is worth trying again: 408, 429 and 5xx other than 501 and 505. */
export function isRetryableStatus(status: number): boolean {
  if (status === 408 || status === 429) return true;
  return status >= 500 && status !== 501 && status !== 505;
}

/** Parses Retry-After (delta seconds or an HTTP date) into milliseconds, clamped; undefined if absent or bad. */
export function parseRetryAfter(
  header: string | string[] | undefined,
  maxMs: number,
  now = Date.now(),
): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  let ms: number;
  if (/^\d+$/.test(trimmed)) {
    ms = Number(trimmed) * 1000;
  } else {
    // HTTP dates start with a day name; V8's lenient Date.parse would read "-5" as a year.
    if (!/^[A-Za-z]/.test(trimmed)) return undefined;
    const date = Date.parse(trimmed);
    if (Number.isNaN(date)) return undefined;
    ms = Math.max(0, date - now);
  }
  return Math.min(ms, maxMs);
}

/** Turns a non-2xx answer into the typed error the handle carries. */
export function statusError(
  status: number,
  statusText: string,
  headers: IncomingHttpHeaders,
  options: RetryOptions,
  now = Date.now(),
): HttpStatusError {
  const retryable = isRetryableStatus(status);
  const retryAfterMs =
    retryable && (status === 429 || status === 503 || status === 408)
      ? parseRetryAfter(headers['retry-after'], options.maxRetryAfter, now)
      : undefined;
  return new HttpStatusError(
    status,
    statusText,
    retryAfterMs === undefined ? { retryable } : { retryable, retryAfterMs },
  );
}
