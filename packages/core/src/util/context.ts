import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';

/** Runs `fn` in an async context captured earlier (AsyncLocalStorage stores, OpenTelemetry's trace). */
export type RunInContext = <R>(fn: () => R) => R;

/**
 * Captures the caller's async context, for work parked now and run later from another caller's
 * callback (a freed slot, a finished response): an `AsyncResource`, Node's advice for pools.
 * Not `AsyncLocalStorage.snapshot()`: it costs about 15 µs per call on Node 22 and 24 (it goes
 * through `AsyncResource.bind`), against about 1 µs here, and this runs once per `send()`.
 *
 * @example
 * ```ts
 * const run = captureContext();
 * later(() => run(() => hook(info)));
 * ```
 */
export function captureContext(): RunInContext {
  const resource = new AsyncResource('afterward');
  return (fn) => resource.runInAsyncScope(fn);
}

/**
 * The property where an AsyncResource keeps the async context frame it was made in, when
 * AsyncLocalStorage runs on frames (Node 24 and later by default); undefined otherwise (Node 22,
 * where AsyncLocalStorage keeps its stores on the resources themselves).
 */
const FRAME: symbol | undefined = frameSymbol();

function frameSymbol(): symbol | undefined {
  const symbol = Object.getOwnPropertySymbols(new AsyncResource('afterward')).find(
    (candidate) => candidate.description === 'context_frame',
  );
  if (symbol === undefined) return undefined;
  const probe = new AsyncLocalStorage<boolean>();
  const framed = probe.run(true, () => (new AsyncResource('afterward') as never)[symbol] !== undefined);
  // Frees the async hook a storage without frames turns on: afterward adds none to the app.
  probe.disable();
  return framed ? symbol : undefined;
}

/** Whether sends in one async context share one AsyncResource (see {@link callerContext}). */
export const CONTEXTS_SHARED = FRAME !== undefined;

let last: AsyncResource | undefined;

/**
 * The async context of the caller, for its notification's attempts to run in later.
 *
 * A notification waits in the queue as long as the queue ahead of it, so what it keeps survives
 * young collections, and an AsyncResource is 80 bytes of it (two ids as heap numbers). Sends made
 * in the same context (the same AsyncLocalStorage frame and the same trigger) share the resource
 * made for the first: a frame is immutable, and the resource's frame is all `runInAsyncScope`
 * restores. Without frames (Node 22) each send keeps its own resource.
 *
 * @example
 * ```ts
 * notification.context = callerContext();
 * ```
 */
export function callerContext(): AsyncResource {
  const current = new AsyncResource('afterward');
  if (FRAME === undefined) return current;
  const previous = last;
  if (
    previous !== undefined &&
    (previous as never)[FRAME] === (current as never)[FRAME] &&
    previous.triggerAsyncId() === current.triggerAsyncId()
  ) {
    return previous;
  }
  last = current;
  return current;
}
