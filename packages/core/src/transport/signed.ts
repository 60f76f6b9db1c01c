import type { Signer } from '../policy/signing.js';
import {
  isDirectTransport,
  kBodiesReleased,
  kSendDirect,
  type AttemptDone,
  type Transport,
  type TransportAttempt,
  type TransportRequest,
  type TransportResult,
} from './transport.js';

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
  const signed = (request: TransportRequest): TransportRequest => {
    if (request.sign !== true) return request;
    const timestamp = Math.floor(Date.now() / 1000);
    const signature = signer.sign(request.id, timestamp, request.body ?? Buffer.alloc(0));
    return {
      ...request,
      headers: [...request.headers, 'webhook-timestamp', String(timestamp), 'webhook-signature', signature],
    };
  };
  const transport: Transport = {
    send(request: TransportRequest, attempt: TransportAttempt): Promise<TransportResult> {
      return inner.send(signed(request), attempt);
    },
    close: () => inner.close(),
  };
  if (!isDirectTransport(inner)) return transport;
  return Object.assign(transport, {
    [kSendDirect](request: TransportRequest, attempt: TransportAttempt, done: AttemptDone): void {
      inner[kSendDirect](signed(request), attempt, done);
    },
    // Signing reads the body while the attempt starts and keeps nothing of it.
    [kBodiesReleased]: (): boolean => inner[kBodiesReleased]?.() === true,
  });
}
