import type { RetryOptions, TimeoutOptions } from '../options/options.js';
import type { ConfirmMode } from '../request/request.js';

/**
 * A notification as pure data: what a durable store or an external queue keeps. Never a secret:
 * the signature headers are added per attempt by the signing decorator, from the runner's secret.
 *
 * @example
 * ```ts
 * const json: NotificationJson = record.json();
 * db.insert('outbox', { key: json.key, due: json.notBefore, data: JSON.stringify(json) });
 * ```
 */
export interface NotificationJson {
  v: 1;
  /** Storage key, unique across processes and restarts. */
  key: string;
  /** The stable webhook id (`webhook-id` / `idempotency-key`); the same on every retry and replay. */
  id: string;
  /** The full href (path and query): stored, never logged. */
  url: string;
  /** The URL's origin, e.g. `'https://hooks.example.com'`. */
  origin: string;
  method: string;
  /** Flat name/value list, lower-case names, without the per-attempt signature headers. */
  headers: string[];
  /** base64 of the body bytes, or null. */
  body: string | null;
  confirm: ConfirmMode;
  keepBody: number;
  timeout: TimeoutOptions;
  /** `attempts: 1` means no retry. */
  retry: RetryOptions;
  /** Whether the attempt runner signs it (when the runner has a secret). */
  sign: boolean;
  /** Attempts already started (an attempt is recorded when it starts). */
  attempts: number;
  /** Epoch ms before which it is not due (backoff). */
  notBefore: number;
  /** Epoch ms of the call. */
  createdAt: number;
  /** The id of the HTTP request that parked it (pino-http's `req.id`, `x-request-id`), for log lines. */
  requestId?: string;
}

/**
 * The request fields a notification is serialised from, and rebuilt into.
 *
 * @example
 * ```ts
 * const request: NotificationRequest = fromNotificationJson(json);
 * ```
 */
export interface NotificationRequest {
  readonly id: string;
  readonly url: URL;
  readonly origin: string;
  /** Path and query, as sent on the request line. */
  readonly path: string;
  readonly method: string;
  readonly headers: readonly string[];
  readonly body: Buffer | null;
  readonly confirm: ConfirmMode;
  readonly keepBody: number;
  readonly timeout: TimeoutOptions;
  readonly retry: RetryOptions;
  readonly sign: boolean;
}

/**
 * What {@link toNotificationJson} reads: a live notification has these fields.
 *
 * @example
 * ```ts
 * toNotificationJson({ key, request, attempts: 0, notBefore: 0, createdAt: Date.now() });
 * ```
 */
export interface NotificationSource {
  /** A local key (made a storage key by {@link storageKey}) or a storage key. */
  readonly key: string;
  /** Its body may still be the string given at the call (encoded as UTF-8 here). */
  readonly request: Omit<NotificationRequest, 'body'> & { readonly body: Buffer | string | null };
  readonly attempts: number;
  readonly notBefore: number;
  readonly createdAt: number;
  readonly requestId?: string | undefined;
}

/**
 * The serialisable form of a notification. Made when a store asks for it (a durable store, off
 * the call path), never on the in-memory hot path.
 *
 * @example
 * ```ts
 * const json = toNotificationJson(record);
 * JSON.stringify(json); // safe: no secret, body as base64
 * ```
 */
export function toNotificationJson(source: NotificationSource): NotificationJson {
  const { request } = source;
  return {
    v: 1,
    key: storageKey(source.key),
    id: request.id,
    url: request.url.href,
    origin: request.origin,
    method: request.method,
    headers: [...request.headers],
    body: base64(request.body),
    confirm: request.confirm,
    keepBody: request.keepBody,
    timeout: { ...request.timeout },
    retry: { ...request.retry },
    sign: request.sign,
    attempts: source.attempts,
    notBefore: source.notBefore,
    createdAt: source.createdAt,
    ...(source.requestId === undefined ? {} : { requestId: source.requestId }),
  };
}

function base64(body: Buffer | string | null): string | null {
  if (body === null) return null;
  return (typeof body === 'string' ? Buffer.from(body) : body).toString('base64');
}

/**
 * Rebuilds the request of a serialised notification, as the attempt runner sends it.
 *
 * @example
 * ```ts
 * const request = fromNotificationJson(json);
 * await transport.send(request, attempt);
 * ```
 */
export function fromNotificationJson(json: NotificationJson): NotificationRequest {
  const url = new URL(json.url);
  return {
    id: json.id,
    url,
    origin: json.origin,
    path: `${url.pathname}${url.search}`,
    method: json.method,
    headers: json.headers,
    body: json.body === null ? null : Buffer.from(json.body, 'base64'),
    confirm: json.confirm,
    keepBody: json.keepBody,
    timeout: json.timeout,
    retry: json.retry,
    sign: json.sign,
  };
}

// A random prefix per process plus a counter: unique across processes and restarts (128 random
// bits would be too, but a UUID per notification costs more than the counter on the hot path).
const PREFIX = `${Date.now().toString(36)}-${globalThis.crypto.randomUUID().slice(0, 18)}-`;
let counter = 0;
const LOCAL = /^\d+$/;

/**
 * A key unique within this process: a counter, short and cheap to hash, as the in-memory indexes
 * use it. {@link storageKey} makes it unique across processes and restarts.
 *
 * @example
 * ```ts
 * localKey(); // '41'
 * ```
 */
export function localKey(): string {
  return String(++counter);
}

/**
 * A local key as a notification keeps it: the number itself while it is a small integer (no
 * string per notification), its string past 2^30 (a field that once held a larger number would
 * be a 16-byte box in every notification after).
 *
 * @example
 * ```ts
 * new Notification(nextLocalKey(), request, lifecycle);
 * ```
 */
export function nextLocalKey(): number | string {
  const key = ++counter;
  return key < 2 ** 30 ? key : String(key);
}

/**
 * The storage key of a notification: unique across processes and restarts (a per-process random
 * prefix before the local key). A key that already is one (a recovered notification's) is kept.
 *
 * @example
 * ```ts
 * storageKey('41'); // 'mi3k2x1a-3f6c2a9e-41b7-4c-41'
 * ```
 */
export function storageKey(key: string): string {
  return LOCAL.test(key) ? PREFIX + key : key;
}

/**
 * A new storage key, unique across processes and restarts.
 *
 * @example
 * ```ts
 * const key = newKey();
 * ```
 */
export function newKey(): string {
  return storageKey(localKey());
}
