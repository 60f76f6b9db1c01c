import { randomUUID } from 'node:crypto';
import { InvalidArgumentError } from '@afterward/core';
import { newKey } from '@afterward/core/backend';
import type { NotificationJson } from '@afterward/core/backend';

/** What `add(target, url, init)` accepts: the serialisable subset of core's `SendInit`. */
export interface NotificationInit {
  method?: string;
  headers?: Record<string, string | string[]> | [string, string][];
  /** Serialised with `JSON.stringify` at the call; sets `content-type: application/json`. */
  json?: unknown;
  body?: string | Uint8Array;
  /** The stable webhook id; a random UUID when left out. */
  id?: string;
  confirm?: 'response' | 'sent';
  timeout?: Partial<NotificationJson['timeout']>;
  retry?: Partial<NotificationJson['retry']> | false;
  sign?: boolean;
  /** Epoch ms before which it is not due. */
  notBefore?: number;
}

const TIMEOUT = { connect: 5_000, response: 10_000, total: 15_000 };
const RETRY = { attempts: 5, minDelay: 500, maxDelay: 30_000, factor: 2, maxRetryAfter: 60_000 };

/**
 * Builds the stored form of a notification from a URL and an init.
 *
 * For `add(tx, url, init)` and direct `enqueue`: the same defaults as `createDispatcher`. (With
 * `createDispatcher({ backend })`, the dispatcher validates the call and serialises it itself.)
 *
 * @example
 * ```ts
 * const n = notificationJson('https://hooks.example.com/orders', { json: { id: 42 } });
 * backend.enqueue(n);
 * ```
 */
export function notificationJson(url: string | URL, init: NotificationInit = {}): NotificationJson {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new InvalidArgumentError('url must be an absolute http(s) URL', { cause });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new InvalidArgumentError('url must be an absolute http(s) URL');
  }
  const method = (init.method ?? 'POST').toUpperCase();
  const headers: string[] = [];
  const source = Array.isArray(init.headers) ? init.headers : Object.entries(init.headers ?? {});
  for (const [name, value] of source) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(v)) throw new InvalidArgumentError('CR/LF in a header');
      headers.push(name.toLowerCase(), v);
    }
  }
  let body: Buffer | null = null;
  if (init.json !== undefined) {
    body = Buffer.from(JSON.stringify(init.json));
    if (!headers.some((h, i) => i % 2 === 0 && h === 'content-type')) {
      headers.push('content-type', 'application/json');
    }
  } else if (init.body !== undefined) {
    body = Buffer.from(init.body);
  }
  if (body !== null && (method === 'GET' || method === 'HEAD')) {
    throw new InvalidArgumentError(`a ${method} notification cannot have a body`);
  }
  const id = init.id ?? randomUUID();
  // As core's dispatcher does: the webhook id rides in the stored headers, unless the caller set them.
  for (const name of ['webhook-id', 'idempotency-key']) {
    if (!headers.some((h, i) => i % 2 === 0 && h === name)) headers.push(name, id);
  }
  const now = Date.now();
  return {
    v: 1,
    key: newKey(),
    id,
    url: parsed.href,
    origin: parsed.origin,
    method,
    headers,
    body: body === null ? null : body.toString('base64'),
    confirm: init.confirm ?? 'response',
    keepBody: 0,
    timeout: { ...TIMEOUT, ...init.timeout },
    retry: init.retry === false ? { ...RETRY, attempts: 1 } : { ...RETRY, ...init.retry },
    sign: init.sign ?? true,
    attempts: 0,
    notBefore: init.notBefore ?? now,
    createdAt: now,
  };
}
