/**
 * One cleanup list per test file: what a test started (servers, receivers, dispatchers, apps,
 * child processes) is closed after that test, newest first, so an app closes before the
 * dispatcher it uses and a dispatcher before its receiver.
 */
import { afterEach } from 'vitest';

export interface CleanupScope {
  /** The pending cleanups of the current test; `push` a function to run it after the test. */
  readonly cleanups: Array<() => unknown>;
  /** Runs `fn` after the current test. */
  readonly defer: (fn: () => unknown) => void;
  /** Closes `thing` after the current test, and returns it. */
  readonly track: <T extends { close(): unknown }>(thing: T) => T;
}

/**
 * Registers an `afterEach` in the calling file (or suite, if called inside a `describe`) that
 * runs, newest first and one at a time, every cleanup pushed during the test.
 *
 * @example
 * ```ts
 * const { track } = cleanupScope();
 * it('...', async () => {
 *   const receiver = track(await startReceiver());
 * });
 * ```
 */
export function cleanupScope(): CleanupScope {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  return {
    cleanups,
    defer: (fn) => void cleanups.push(fn),
    track: (thing) => {
      cleanups.push(() => thing.close());
      return thing;
    },
  };
}
