/**
 * Shared set-up of the fault suite: a dispatcher with short deadlines and tiny backoff, a logger
 * that records instead of printing, and resource counters. The suite imports the BUILT packages
 * (run `pnpm build` first), so the adapters and the tests share one copy of `@afterward/core`.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createDispatcher } from '@afterward/core';
import type { Dispatcher, DispatcherOptions } from '@afterward/core';
import { cleanupScope as sharedCleanupScope, FAST_RETRY, recordingLogger } from '../support/index.js';
import type { LogLine } from '../support/index.js';

export * from '@afterward/core';
export { createAfterResponse, type AfterResponse } from '@afterward/core/adapter';

/** Deadlines short enough that a fault costs well under a second per attempt. */
export const SHORT_TIMEOUT = { connect: 500, response: 300, total: 1000 } as const;
/** Backoff tiny enough that retries do not slow the suite, unless a row is about the delay. */
export const TINY_RETRY = FAST_RETRY;

/** A dispatcher with the suite's short deadlines and tiny backoff; `options` override. */
export function faultDispatcher(options: DispatcherOptions = {}): Dispatcher & { logs: LogLine[] } {
  const logger = recordingLogger();
  const dispatcher = createDispatcher({
    timeout: SHORT_TIMEOUT,
    retry: TINY_RETRY,
    logger,
    ...options,
  });
  return Object.assign(dispatcher, { logs: logger.lines });
}

/** Counts of the resources that keep the event loop alive, by kind (TCPSocketWrap, Timeout, ...). */
export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

let gcFn: (() => void) | undefined;

/** Runs a full garbage collection (exposing `gc` on first use), so heap figures compare. */
export function collectGarbage(): void {
  if (gcFn === undefined) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

/** Sum of the final-state counters: every notification that settled, whichever way. */
export function settledCount(stats: ReturnType<Dispatcher['stats']>): number {
  return stats.delivered + stats.sent + stats.failed + stats.dropped + stats.cancelled;
}

/**
 * A file's cleanup list, run newest first after each test, with a fault dispatcher that is
 * closed there without waiting for leftovers.
 */
export function cleanupScope(): {
  cleanups: Array<() => unknown>;
  dispatcherFor: (options?: DispatcherOptions) => ReturnType<typeof faultDispatcher>;
} {
  const { cleanups } = sharedCleanupScope();
  const dispatcherFor = (options: DispatcherOptions = {}): ReturnType<typeof faultDispatcher> => {
    const dispatcher = faultDispatcher(options);
    cleanups.push(() => dispatcher.close({ timeout: 0 }));
    return dispatcher;
  };
  return { cleanups, dispatcherFor };
}
