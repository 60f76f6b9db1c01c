import { InvalidArgumentError } from '../util/errors.js';
import { redactUrl } from '../util/redact-url.js';
import {
  checkKeys,
  DEFAULTS,
  checkObject,
  resolveKeepBody,
  resolveRetry,
  resolveTimeout,
  show,
  type RetryOptions,
  type TimeoutOptions,
} from '../options/options.js';

/** Headers as a record (an array value repeats the header) or as a list of name/value pairs. */
export type HeadersInput =
  | Readonly<Record<string, string | number | readonly string[] | undefined>>
  | ReadonlyArray<readonly [string, string]>;

/** A primitive query value; arrays repeat the key. */
export type QueryValue = string | number | boolean;

/** Query parameters merged into the URL: each key given here replaces that key in the URL; `null` removes it. */
export type QueryInput = Readonly<Record<string, QueryValue | readonly QueryValue[] | null | undefined>>;

/** How an attempt counts as a success. */
export type ConfirmMode = 'response' | 'sent';

/**
 * Everything about one notification besides its URL.
 *
 * @example
 * ```ts
 * dispatcher.send('https://hooks.example.com/orders', {
 *   json: { type: 'order.paid', id: 42 },
 *   headers: { 'x-tenant': 't1' },
 *   timeout: { total: 5_000 },
 * });
 * ```
 */
export interface SendInit {
  /** HTTP method, POST by default. GET and HEAD may not carry a body. */
  method?: string;
  headers?: HeadersInput;
  query?: QueryInput;
  /** Serialised with JSON.stringify at the call; circular structures and BigInt throw there. */
  json?: unknown;
  /** A raw body; exclusive with `json`. */
  body?: string | Uint8Array | URLSearchParams;
  /** `'response'` (default) waits for the status line; `'sent'` settles once the bytes are written, then closes. */
  confirm?: ConfirmMode;
  /** Keep the first n bytes of the response body on `handle.response.body` (`true`: 64 KiB). */
  keepBody?: number | boolean;
  /** Per-attempt deadlines; a number sets the total deadline. */
  timeout?: number | Partial<TimeoutOptions>;
  /** Retry policy for this notification, or `false` for a single attempt. */
  retry?: Partial<RetryOptions> | false;
  /** Aborting it cancels the notification, wherever it is. */
  signal?: AbortSignal;
  /** The idempotency id; a new UUID by default. Reused on every retry. */
  id?: string;
  /** Whether to sign, when the dispatcher has a signing secret. Default true there. */
  sign?: boolean;
}

/** `send()` also takes a single object with the URL in it. */
export interface SendRequest extends SendInit {
  url: string | URL;
}

/** A notification after validation: everything the scheduler and transport need, nothing to re-check. */
export interface NormalizedRequest {
  /** The caller's id; '' from {@link normalizeRequest} when none was given (a notification makes one). */
  id: string;
  url: URL;
  origin: string;
  /** Path and query, as sent on the request line. */
  path: string;
  method: string;
  /**
   * Flat name/value list, lower-case names, repeats kept; `webhook-id` and `idempotency-key` are
   * left out unless the caller set them ({@link withIdHeaders} adds them). Shared between
   * requests: never changed in place.
   */
  headers: string[];
  /**
   * A string body is kept as given (or as serialised from `json`) until its first attempt, which
   * encodes it ({@link encodeBody}): a Buffer per queued notification was a 104-byte view on
   * the heap plus its share of an 8 KiB pool slab, which a full queue under an outage churned
   * through by the thousand (bench/memory.mjs).
   */
  body: Buffer | string | null;
  confirm: ConfirmMode;
  keepBody: number;
  timeout: TimeoutOptions;
  retry: RetryOptions;
  sign: boolean;
  signal: AbortSignal | undefined;
}

/** Dispatcher-wide settings the normaliser merges in. */
export interface RequestDefaults {
  timeout: TimeoutOptions;
  retry: RetryOptions;
  /** Lower-case flat name/value list added to every request unless the request sets the name. */
  headers: string[];
  userAgent: string;
  canSign: boolean;
  /** The dispatcher's cache of parsed targets; none: every target is parsed. */
  targets?: TargetCache;
}

// `satisfies` makes a new field of SendInit a compile error here until it is listed.
const INIT_KEYS = Object.keys({
  method: true,
  headers: true,
  query: true,
  json: true,
  body: true,
  confirm: true,
  keepBody: true,
  timeout: true,
  retry: true,
  signal: true,
  id: true,
  sign: true,
} satisfies Record<keyof SendInit, true>);
// res.fireAndForget's init also carries `when`, which the after-response machinery reads.
const PARKED_KEYS = [...INIT_KEYS, 'when'];
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// RFC 9110 field-value: visible characters, spaces and tabs; no CR, LF or NUL, which would split headers.
const BAD_VALUE = /[\r\n\0]/;
// What undici accepts in a field value; anything else would fail every attempt, so it fails the call.
const BAD_FIELD = /[^\t\x20-\x7e\x80-\xff]/;
// Framing headers the HTTP client computes; a caller's value would conflict with the body it sends.
const CLIENT_MANAGED = new Set([
  'connection',
  'content-length',
  'expect',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
]);
const EMPTY: SendInit = {};

/**
 * Validates and normalises a notification at the call, so a bad URL, header or payload throws in
 * the handler where the bug is, before anything is queued.
 *
 * `json` may be left out here and supplied later through {@link stringifyJson} (lazy payloads).
 * With `into`, the result is written there and `into` returned: a caller that takes the request
 * apart at once (the dispatcher) reuses one object rather than making one per call.
 */
export function normalizeRequest(
  target: unknown,
  init: SendInit | undefined,
  defaults: RequestDefaults,
  parked = false,
  into?: NormalizedRequest,
): NormalizedRequest {
  const options = init === undefined ? EMPTY : (checkObject('init', init) as SendInit);
  if (options !== EMPTY) checkInitKeys(options, parked ? PARKED_KEYS : INIT_KEYS);
  // Reentrant only through a caller's getter that sends: then a builder of its own.
  const headers = idleBuilder ?? new HeaderBuilder();
  idleBuilder = undefined;
  try {
    return normalize(target, options, defaults, parked, headers, into);
  } finally {
    headers.clear();
    idleBuilder = headers;
  }
}

function normalize(
  target: unknown,
  options: SendInit,
  defaults: RequestDefaults,
  parked: boolean,
  headers: HeaderBuilder,
  into: NormalizedRequest | undefined,
): NormalizedRequest {
  const parsed = parseTarget(target, defaults.targets);
  // The cached URL is shared between requests, so anything that changes it works on a copy.
  const url = options.query !== undefined || parsed.credentials ? new URL(parsed.url.href) : parsed.url;
  const method = normalizeMethod(options.method);
  if (options.headers !== undefined) addHeaders(headers, options.headers);
  if (options.query !== undefined) mergeQuery(url, options.query);
  // None given: the notification makes its UUID when first read (see Notification.id).
  const id = options.id === undefined ? '' : checkId(options.id);

  let body: Buffer | string | null = null;
  // Parked work (res.fireAndForget) may give json as a function of the finished response: it is
  // checked for shape now with a placeholder, and serialised once the response has ended.
  const json: unknown = parked && typeof options.json === 'function' ? null : options.json;
  if (json !== undefined && options.body !== undefined) {
    throw new InvalidArgumentError('give either json or body, not both');
  }
  if (json !== undefined) {
    body = stringifyJson(json);
    headers.setDefault('content-type', 'application/json');
  } else if (options.body !== undefined) {
    body = toBody(options.body, headers);
  }
  if (body !== null && (method === 'GET' || method === 'HEAD')) {
    throw new InvalidArgumentError(`a ${method} request cannot carry a body`);
  }
  if (parsed.credentials) {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    headers.setDefault('authorization', `Basic ${Buffer.from(credentials).toString('base64')}`);
    url.username = '';
    url.password = '';
  }
  for (let i = 0; i < defaults.headers.length; i += 2) {
    headers.setDefault(defaults.headers[i] as string, defaults.headers[i + 1] as string);
  }
  headers.setDefault('user-agent', defaults.userAgent);
  // `webhook-id` and `idempotency-key` are added as the request is sent (withIdHeaders): without
  // them, the lists of most sends are equal, and one is shared.

  const confirm = options.confirm ?? 'response';
  if (confirm !== 'response' && confirm !== 'sent') {
    throw new InvalidArgumentError(`confirm must be 'response' or 'sent', got ${show(confirm)}`);
  }
  if (options.sign !== undefined && typeof options.sign !== 'boolean') {
    throw new InvalidArgumentError(`sign must be a boolean, got ${show(options.sign)}`);
  }
  if (options.sign === true && !defaults.canSign) {
    throw new InvalidArgumentError('sign: true needs a dispatcher created with signing: { secret }');
  }
  const signal = options.signal;
  if (signal !== undefined && !isAbortSignal(signal)) {
    throw new InvalidArgumentError(`signal must be an AbortSignal, got ${show(signal)}`);
  }
  const keepBody = resolveKeepBody(options.keepBody);
  const timeout = resolveTimeout('timeout', options.timeout, defaults.timeout);
  const retry = resolveRetry('retry', options.retry, defaults.retry);
  const sign = options.sign ?? defaults.canSign;
  const origin = parsed.origin;
  const path = url === parsed.url ? parsed.path : `${url.pathname}${url.search}`;
  const list = headers.take();
  // Filled at once, after every read of the caller's objects (a getter or toJSON that sends
  // reentrantly fills it before this does).
  const out = into ?? blankRequest();
  out.id = id;
  out.url = url;
  out.origin = origin;
  out.path = path;
  out.method = method;
  out.headers = list;
  out.body = body;
  out.confirm = confirm;
  out.keepBody = keepBody;
  out.timeout = timeout;
  out.retry = retry;
  out.sign = sign;
  out.signal = signal;
  return out;
}

/** A request object to fill (see {@link normalizeRequest}'s `into`). */
export function blankRequest(): NormalizedRequest {
  return {
    id: '',
    url: BLANK_URL,
    origin: '',
    path: '',
    method: 'POST',
    headers: [],
    body: null,
    confirm: 'response',
    keepBody: 0,
    timeout: DEFAULTS.timeout,
    retry: DEFAULTS.retry,
    sign: false,
    signal: undefined,
  };
}

const BLANK_URL = new URL('http://localhost/');

/** Bytes of a body as sent (a string as UTF-8). */
export function bodyLength(body: Buffer | string | null): number {
  if (body === null) return 0;
  return typeof body === 'string' ? Buffer.byteLength(body) : body.length;
}

/** The body as the bytes a transport sends. */
export function encodeBody(body: Buffer | string | null): Buffer | null {
  return typeof body === 'string' ? Buffer.from(body) : body;
}

/** JSON.stringify with the failures turned into InvalidArgumentError (circular, BigInt, nothing to send). */
export function stringifyJson(value: unknown): string {
  // A promise serialises as `{}`: refused rather than sent as a wrong body.
  if (typeof (value as { then?: unknown } | null)?.then === 'function') {
    throw new InvalidArgumentError(
      'json is a promise: await it first (or, in fireAndForget, pass a function that returns it)',
    );
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new InvalidArgumentError(`json cannot be serialised: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (text === undefined)
    throw new InvalidArgumentError(`json cannot be serialised: ${show(value)} has no JSON form`);
  return text;
}

/** Where {@link addHeaders} puts each name and value: an array, or the builder of a request's list. */
interface HeaderSink {
  push(name: string, value: string): unknown;
}

/**
 * A request's header list while it is built: in an array reused from call to call, and copied out
 * at its exact size. A list grown by push() keeps up to twice the slots it uses, and it is held for
 * as long as the notification waits (about 130 bytes more per queued notification, and as much
 * garbage per call in the arrays it outgrew).
 */
class HeaderBuilder implements HeaderSink {
  readonly #items: string[] = [];
  #length = 0;

  push(name: string, value: string): void {
    this.#items[this.#length++] = name;
    this.#items[this.#length++] = value;
  }

  setDefault(name: string, value: string): void {
    for (let i = 0; i < this.#length; i += 2) {
      if (this.#items[i] === name) return;
    }
    this.push(name, value);
  }

  /** The list built, or the last one taken when equal (most sends carry the same headers). */
  take(): string[] {
    const items = this.#items;
    const length = this.#length;
    const last = lastHeaders;
    if (last.length === length) {
      let same = true;
      for (let i = 0; i < length && same; i++) same = last[i] === items[i];
      if (same) return last;
    }
    lastHeaders = items.slice(0, length);
    return lastHeaders;
  }

  /** Lets go of the caller's strings (a header may be a secret) and starts over. */
  clear(): void {
    this.#items.fill('', 0, this.#length);
    this.#length = 0;
  }
}

let idleBuilder: HeaderBuilder | undefined = new HeaderBuilder();
let lastHeaders: string[] = [];

/**
 * The headers of a request as sent: its list plus `webhook-id` and `idempotency-key` (its id),
 * each unless the list has it. The list itself when it has both (a recovered notification's).
 */
export function withIdHeaders(headers: readonly string[], id: string): string[] {
  const missing = missingIdHeaders(headers);
  if (missing === 0) return headers as string[];
  const out = headers.slice();
  if ((missing & WEBHOOK_ID) !== 0) out.push('webhook-id', id);
  if ((missing & IDEMPOTENCY_KEY) !== 0) out.push('idempotency-key', id);
  return out;
}

/** Bytes {@link withIdHeaders} adds to a list, as `maxQueuedBytes` counts them. */
export function idHeaderBytes(headers: readonly string[], idLength: number): number {
  const missing = missingIdHeaders(headers);
  return (
    ((missing & WEBHOOK_ID) !== 0 ? 10 + idLength : 0) +
    ((missing & IDEMPOTENCY_KEY) !== 0 ? 15 + idLength : 0)
  );
}

const WEBHOOK_ID = 1;
const IDEMPOTENCY_KEY = 2;

function missingIdHeaders(headers: readonly string[]): number {
  let missing = WEBHOOK_ID | IDEMPOTENCY_KEY;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i];
    if (name === 'webhook-id') missing &= ~WEBHOOK_ID;
    else if (name === 'idempotency-key') missing &= ~IDEMPOTENCY_KEY;
  }
  return missing;
}

/** {@link checkKeys} without its array of keys per call: this runs once per send(). */
function checkInitKeys(init: SendInit, allowed: readonly string[]): void {
  for (const key in init) {
    if (Object.hasOwn(init, key) && !allowed.includes(key)) {
      checkKeys('init', init as Record<string, unknown>, allowed);
    }
  }
}

/** Normalises a headers input to a flat lower-case list, validating names and values. */
export function addHeaders(out: HeaderSink, input: HeadersInput): void {
  if (Array.isArray(input)) {
    for (const pair of input as ReadonlyArray<readonly [string, string]>) {
      if (!Array.isArray(pair) || pair.length !== 2) {
        throw new InvalidArgumentError(`headers as a list must hold [name, value] pairs, got ${show(pair)}`);
      }
      pushHeader(out, pair[0], pair[1]);
    }
    return;
  }
  const record = checkObject('headers', input);
  // for-in over own keys: the order of Object.keys(), without its array per call.
  for (const name in record) {
    if (!Object.hasOwn(record, name)) continue;
    const value = record[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) {
      for (const item of value as unknown[]) pushHeader(out, name, item);
    } else {
      pushHeader(out, name, value);
    }
  }
}

function pushHeader(out: HeaderSink, name: unknown, value: unknown): void {
  if (typeof name !== 'string' || !TOKEN.test(name)) {
    throw new InvalidArgumentError(`invalid header name ${show(name)}`);
  }
  if (typeof value === 'number' && Number.isFinite(value)) value = String(value);
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(`header ${name} must be a string, got ${show(value)}`);
  }
  if (BAD_VALUE.test(value)) {
    throw new InvalidArgumentError(`header ${name} contains CR, LF or NUL, which could split the request`);
  }
  if (BAD_FIELD.test(value)) {
    throw new InvalidArgumentError(
      `header ${name} contains a control or non-Latin-1 character; encode the value (e.g. encodeURIComponent)`,
    );
  }
  const lower = name.toLowerCase();
  if (CLIENT_MANAGED.has(lower)) {
    throw new InvalidArgumentError(`header ${name} is set by the HTTP client from the body and connection`);
  }
  out.push(lower, value);
}

/** A target as parsed once: `url` is read-only when it came from the cache. */
export interface ParsedTarget {
  readonly url: URL;
  readonly origin: string;
  readonly path: string;
  readonly credentials: boolean;
}

// Accessors of URL that change it. A URL shared through the cache is handed out read-only, so a
// custom transport that changes one cannot change later sends.
const URL_SETTERS = [
  'href',
  'protocol',
  'username',
  'password',
  'host',
  'hostname',
  'port',
  'pathname',
  'search',
  'hash',
] as const;

/**
 * A URL whose setters throw and whose `searchParams` is a detached copy: what a cached target
 * shares between notifications. `new URL(url)` gives a mutable copy.
 */
class ReadonlyURL extends URL {}
for (const name of URL_SETTERS) {
  const { get } = Object.getOwnPropertyDescriptor(URL.prototype, name) as { get: () => unknown };
  Object.defineProperty(ReadonlyURL.prototype, name, {
    get,
    set(): never {
      throw new TypeError(`this URL is shared and read-only (${name}): copy it with new URL(url)`);
    },
    enumerable: true,
    configurable: true,
  });
}
Object.defineProperty(ReadonlyURL.prototype, 'searchParams', {
  get(this: URL): URLSearchParams {
    return new URLSearchParams(this.search);
  },
  enumerable: true,
  configurable: true,
});

/**
 * Recent parses of string targets, per dispatcher. Most apps send to a handful of URLs over and
 * over; parsing one costs more than the rest of the validation together. Bounded in entries and
 * bytes (oldest out first); a long URL is not kept at all, as parsing it costs little next to its
 * size, and 256 one-megabyte URLs once held 489 MB in a module-wide cache.
 */
export class TargetCache {
  static readonly MAX_ENTRIES = 256;
  static readonly MAX_BYTES = 256 * 1024;
  static readonly MAX_ENTRY_BYTES = 4 * 1024;
  readonly #entries = new Map<string, ParsedTarget>();
  #bytes = 0;

  /** Bytes held, counted as UTF-16 of the key plus the href and path kept. */
  get bytes(): number {
    return this.#bytes;
  }

  get(target: string): ParsedTarget | undefined {
    return this.#entries.get(target);
  }

  set(target: string, parsed: ParsedTarget): void {
    const bytes = entryBytes(target, parsed);
    if (bytes > TargetCache.MAX_ENTRY_BYTES) return;
    while (
      this.#entries.size > 0 &&
      (this.#entries.size >= TargetCache.MAX_ENTRIES || this.#bytes + bytes > TargetCache.MAX_BYTES)
    ) {
      const [oldest, entry] = this.#entries.entries().next().value as [string, ParsedTarget];
      this.#entries.delete(oldest);
      this.#bytes -= entryBytes(oldest, entry);
    }
    this.#entries.set(target, parsed);
    this.#bytes += bytes;
  }
}

function entryBytes(target: string, parsed: ParsedTarget): number {
  return 2 * (target.length + parsed.url.href.length + parsed.path.length);
}

function parseTarget(target: unknown, cache: TargetCache | undefined): ParsedTarget {
  const cached = typeof target === 'string' && cache !== undefined;
  if (cached) {
    const hit = cache.get(target);
    if (hit !== undefined) return hit;
  }
  const parsedUrl = parseUrl(target);
  const url = cached ? new ReadonlyURL(parsedUrl.href) : parsedUrl;
  const parsed: ParsedTarget = {
    url,
    origin: url.origin,
    path: `${url.pathname}${url.search}`,
    credentials: url.username !== '' || url.password !== '',
  };
  if (cached) cache.set(target, parsed);
  return parsed;
}

function parseUrl(target: unknown): URL {
  let url: URL;
  if (target instanceof URL) {
    url = new URL(target.href);
  } else if (typeof target === 'string') {
    // No cause: Node's TypeError carries the raw input (`.input`), and error pages print causes.
    if (!URL.canParse(target))
      throw new InvalidArgumentError(`invalid URL ${JSON.stringify(redactUrl(target))}`);
    url = new URL(target);
  } else {
    throw new InvalidArgumentError(`url must be a string or a URL, got ${show(target)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError(`only http: and https: URLs can be sent to, got ${url.protocol}`);
  }
  // Only when there is one: the setter re-serialises the URL even for an empty hash.
  if (url.hash !== '') url.hash = '';
  return url;
}

function normalizeMethod(method: unknown): string {
  if (method === undefined) return 'POST';
  if (typeof method !== 'string' || !TOKEN.test(method)) {
    throw new InvalidArgumentError(`invalid method ${show(method)}`);
  }
  const upper = method.toUpperCase();
  if (upper === 'CONNECT' || upper === 'TRACE') {
    throw new InvalidArgumentError(`method ${upper} is not supported for notifications`);
  }
  return upper;
}

function mergeQuery(url: URL, query: QueryInput): void {
  const record = checkObject('query', query);
  const named = new Set<string>();
  const added = new URLSearchParams();
  for (const key of Object.keys(record)) {
    const value = record[key];
    if (value === undefined) continue;
    named.add(key);
    if (value === null) continue;
    const values = Array.isArray(value) ? (value as unknown[]) : [value];
    for (const item of values) {
      if (
        typeof item !== 'string' &&
        typeof item !== 'boolean' &&
        !(typeof item === 'number' && Number.isFinite(item))
      ) {
        throw new InvalidArgumentError(
          `query.${key} must be a string, number or boolean (or an array of them), got ${show(item)}`,
        );
      }
      added.append(key, String(item));
    }
  }
  if (named.size === 0) return;
  // The parameters not named keep their bytes: searchParams would re-serialise them all (`flag`
  // becomes `flag=`, `%20` becomes `+`), which breaks a pre-signed URL's signature.
  const kept = url.search.length > 1 ? url.search.slice(1).split('&') : [];
  const parts = kept.filter((part) => !named.has(queryName(part)));
  const tail = added.toString();
  if (tail !== '') parts.push(tail);
  url.search = parts.join('&');
}

/** The decoded name of one `name=value` part of a query string, as URLSearchParams reads it. */
function queryName(part: string): string {
  const eq = part.indexOf('=');
  const raw = (eq === -1 ? part : part.slice(0, eq)).replace(/\+/g, ' ');
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

function toBody(body: unknown, headers: HeaderBuilder): Buffer | string {
  // A string is immutable: kept as given, no copy.
  if (typeof body === 'string') return body;
  if (body instanceof URLSearchParams) {
    headers.setDefault('content-type', 'application/x-www-form-urlencoded;charset=UTF-8');
    return body.toString();
  }
  if (body instanceof Uint8Array) {
    // A copy: the caller may reuse its buffer before the notification leaves.
    return Buffer.from(body);
  }
  throw new InvalidArgumentError(`body must be a string, Uint8Array or URLSearchParams, got ${show(body)}`);
}

function checkId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > 256 || BAD_FIELD.test(id)) {
    throw new InvalidArgumentError(
      `id must be a non-empty string of at most 256 characters without control characters, got ${show(id)}`,
    );
  }
  return id;
}

/** True for an AbortSignal, from any realm. */
export function isAbortSignal(value: unknown): value is AbortSignal {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as AbortSignal).aborted === 'boolean' &&
    typeof (value as AbortSignal).addEventListener === 'function'
  );
}
