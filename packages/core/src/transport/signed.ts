import type { Signer } from '../policy/signing.js';
import type { Transport, TransportAttempt, TransportRequest, TransportResult } from './transport.js';

/**
 * A transport that signs every request marked `sign` the Standard Webhooks way before handing it
 * to `inner`. Signed per attempt: receivers reject stale timestamps, and a retry may come minutes
 * later. The dispatcher knows nothing of signing; this decorator is all of it.
 *
 * @example
 * ```ts
 * const transport = signedTransport(createUndiciTransport(), createSigner({ secret }));
 * ```
 */
export function signedTransport(inner: Transport, signer: Signer): Transport {
  return {
    send(request: TransportRequest, attempt: TransportAttempt): Promise<TransportResult> {
      if (request.sign !== true) return inner.send(request, attempt);
      const timestamp = Math.floor(Date.now() / 1000);
      const signature = signer.sign(request.id, timestamp, request.body ?? Buffer.alloc(0));
      return inner.send(
        {
          ...request,
          headers: [
            ...request.headers,
            'webhook-timestamp',
            String(timestamp),
            'webhook-signature',
            signature,
          ],
        },
        attempt,
      );
    },
    close: () => inner.close(),
  };
}
