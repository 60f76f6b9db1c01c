import { TimeoutError } from '../util/errors.js';
import type { AttemptAbort } from '../transport/attempt-abort.js';
import {
  toAfterwardError,
  type Transport,
  type TransportRequest,
  type TransportResult,
} from '../transport/transport.js';

/**
 * One attempt on a transport, under the request's total deadline: the deadline aborts the attempt
 * (closing its socket), and a transport that throws instead of answering becomes an error result.
 * Never rejects.
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
  if (abort.reason !== undefined) {
    return { kind: 'error', error: toAfterwardError(abort.reason, request, abort, true) };
  }
  const timer = setTimeout(
    () => abort.abort(new TimeoutError('total', request.timeout.total)),
    request.timeout.total,
  );
  timer.unref();
  try {
    return await transport.send(request, abort);
  } catch (error) {
    return { kind: 'error', error: toAfterwardError(error, request, abort, true) };
  } finally {
    clearTimeout(timer);
  }
}
