import { TimeoutError } from '../util/errors.js';
import type { AttemptAbort } from '../transport/attempt-abort.js';
import {
  toAfterwardError,
  type Transport,
  type TransportRequest,
  type TransportResult,
} from '../transport/transport.js';

/**
 * Arms the total deadline of an attempt: when it runs out the attempt is aborted (closing its
 * socket) with a TimeoutError. Clear the timer once the attempt returned.
 *
 * @example
 * ```ts
 * const timer = armDeadline(request, abort);
 * try { result = await transport.send(request, abort); } finally { clearTimeout(timer); }
 * ```
 */
export function armDeadline(request: TransportRequest, abort: AttemptAbort): NodeJS.Timeout {
  const timer = setTimeout(
    () => abort.abort(new TimeoutError('total', request.timeout.total)),
    request.timeout.total,
  );
  timer.unref();
  return timer;
}

/**
 * The result of an attempt whose transport threw instead of answering.
 *
 * @example
 * ```ts
 * try { result = await transport.send(request, abort); } catch (error) { result = thrownResult(error, request, abort); }
 * ```
 */
export function thrownResult(
  error: unknown,
  request: TransportRequest,
  abort: AttemptAbort,
): TransportResult {
  return { kind: 'error', error: toAfterwardError(error, request, abort, true) };
}

/**
 * One attempt on a transport, under the request's total deadline: the deadline aborts the attempt
 * (closing its socket), and a transport that throws instead of answering becomes an error result.
 * Never rejects. The dispatcher inlines the same steps (one async frame less per attempt).
 *
 * @example
 * ```ts
 * const result = await attemptOnce(transport, request, new AttemptAbort(1));
 * ```
 */
export async function attemptOnce(
  transport: Transport,
  request: TransportRequest,
  abort: AttemptAbort,
): Promise<TransportResult> {
  // Aborted before it started (a worker shutting down): no request at all.
  if (abort.reason !== undefined) return thrownResult(abort.reason, request, abort);
  const timer = armDeadline(request, abort);
  try {
    return await transport.send(request, abort);
  } catch (error) {
    return thrownResult(error, request, abort);
  } finally {
    clearTimeout(timer);
  }
}
