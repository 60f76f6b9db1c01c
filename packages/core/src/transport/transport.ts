import { isAfterwardError, NetworkError, TimeoutError, type AfterwardError } from '../util/errors.js';
import type { DeliveryResponse } from '../notification/handle.js';
import { redactUrl } from '../util/redact-url.js';
import type { TimeoutOptions } from '../options/options.js';
import type { ConfirmMode } from '../request/request.js';

/** One attempt as the transport sees it: final headers (signature included), nothing left to decide. */
export interface TransportRequest {
  readonly id: string;
  readonly url: URL;
  readonly origin: string;
  readonly path: string;
  readonly method: string;
  /** Flat name/value list. */
  readonly headers: readonly string[];
  readonly body: Buffer | null;
  readonly confirm: ConfirmMode;
  /** Bytes of the response body to keep; 0 discards it. */
  readonly keepBody: number;
  readonly timeout: TimeoutOptions;
  /** Whether the signing decorator signs this request (when the dispatcher has a secret). */
  readonly sign?: boolean;
}

/** Per-attempt context. Aborting `signal` must end the attempt at once, closing its socket. */
export interface TransportAttempt {
  readonly signal: AbortSignal;
  /** 1 for the first attempt. */
  readonly attempt: number;
}

/** What an attempt came to. A transport never rejects; failures are `{ kind: 'error' }`. */
export type TransportResult =
  | { kind: 'response'; response: DeliveryResponse }
  | { kind: 'sent' }
  | { kind: 'error'; error: AfterwardError };

/**
 * Moves bytes. The dispatcher owns queueing, retries and deadlines; a transport makes one attempt.
 * Replace it to send through something else, or use the recording transport in tests.
 *
 * @example
 * ```ts
 * const transport: Transport = { send: async () => ({ kind: 'sent' }), close: async () => {} };
 * createDispatcher({ transport });
 * ```
 */
export interface Transport {
  send(request: TransportRequest, attempt: TransportAttempt): Promise<TransportResult>;
  close(): Promise<void>;
}

/**
 * The built-in transports' callback entry point, for the dispatcher: an attempt reported to an
 * object instead of through a promise (no promise, no async frame per attempt). Internal.
 */
export const kSendDirect = Symbol('afterward.sendDirect');

/** Told once what an attempt came to; may be called synchronously, from inside `[kSendDirect]`. */
export interface AttemptDone {
  attemptDone(attempt: TransportAttempt, result: TransportResult): void;
}

/**
 * The built-in transports' answer to "may the body of a request whose attempts all ended be
 * written over now?" (see {@link DirectTransport}). Internal.
 */
export const kBodiesReleased = Symbol('afterward.bodiesReleased');

/** A transport with the callback entry point {@link kSendDirect} (the built-in ones). */
export interface DirectTransport extends Transport {
  [kSendDirect](request: TransportRequest, attempt: TransportAttempt, done: AttemptDone): void;
  /**
   * True when nothing of this transport still holds the body of a request whose attempts have
   * all ended: every socket has handed what it was given to the kernel, and nothing else was
   * shown the bodies. Then such a body's bytes may be written over (the batcher reuses its
   * buffers so). Absent: never.
   */
  [kBodiesReleased]?(): boolean;
}

/** Whether `transport` has the callback entry point. */
export function isDirectTransport(transport: Transport): transport is DirectTransport {
  return typeof (transport as Partial<DirectTransport>)[kSendDirect] === 'function';
}

/** Maps whatever an attempt failed with onto afterward's typed errors. */
export function toAfterwardError(
  error: unknown,
  request: TransportRequest,
  signal: { readonly reason: unknown },
  beforeSent: boolean,
): AfterwardError {
  // An abort's reason is set only once aborted, and ours is always an AfterwardError.
  if (isAfterwardError(signal.reason)) return signal.reason;
  if (isAfterwardError(error)) return error;
  const code = (error as { code?: unknown } | null)?.code;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new TimeoutError('connect', request.timeout.connect, { cause: error });
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new TimeoutError('headers', request.timeout.response, { cause: error });
    case 'UND_ERR_HEADERS_OVERFLOW':
      return new NetworkError('response headers exceed the size undici accepts', {
        cause: error,
        beforeSent: false,
        retryable: false,
      });
    default: {
      const message = redactMessage(error instanceof Error ? error.message : String(error), request);
      return new NetworkError(
        `${request.method} ${request.origin} failed: ${typeof code === 'string' ? `${code} ` : ''}${message}`,
        { cause: error, beforeSent },
      );
    }
  }
}

const URL_IN_TEXT = /[a-z][a-z0-9+.-]*:\/\/[^\s'"<>`]+/gi;

/**
 * An error text from whatever transport, with any URL in it cut to its origin and the request's
 * path and query taken out: the message is logged, and a webhook URL's secret is in its path or
 * query.
 */
function redactMessage(message: string, request: TransportRequest): string {
  let redacted = message.replace(URL_IN_TEXT, (url) => redactUrl(url));
  if (request.path !== '/' && request.path !== '') redacted = redacted.split(request.path).join('/…');
  return redacted;
}
