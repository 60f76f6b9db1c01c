import { AsyncLocalStorage } from 'node:async_hooks';

/** Runs `fn` in an async context captured earlier (AsyncLocalStorage stores, OpenTelemetry's trace). */
export type RunInContext = <R>(fn: () => R) => R;

/**
 * Captures the caller's async context, for work parked now and run later from another caller's
 * callback (a freed slot, a finished response): Node's advice for pools.
 *
 * @example
 * ```ts
 * const run = captureContext();
 * later(() => run(() => hook(info)));
 * ```
 */
export function captureContext(): RunInContext {
  return AsyncLocalStorage.snapshot();
}
