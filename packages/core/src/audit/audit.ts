import { newId } from '../util/id.js';
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { HookRunner } from '../after-response/hooks.js';
import { captureContext } from '../util/context.js';
import { monotonicNow } from '../util/clock.js';
import {
  checkWhen,
  isThenable,
  skipReason,
  within,
  type ResponseInfo,
  type ResponseOutcome,
  type When,
} from '../after-response/after-response.js';
import {
  addJson,
  addUnobserved,
  checkTarget,
  createBatcher,
  stageInto,
  staged,
  writeStage,
  type BatcherOptions,
  type BatchInit,
  type BatchRoom,
  type BatchSink,
  type BatchStage,
  type Batcher,
} from '../batch/batcher.js';
import { createDispatcher, internalsOf, isDispatcher, type Dispatcher } from '../dispatcher/dispatcher.js';
import { InvalidArgumentError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { readRequestId } from './request-id.js';
import {
  isoTime,
  RECORD_FRAME,
  recordJson,
  writeRecord,
  type QueryOf,
  type RecordInfo,
} from './record-json.js';
import { checkInteger, checkKeys, checkObject, show } from '../options/options.js';

/**
 * Name families whose values never leave the process, matched case-insensitively on the word
 * parts of a header, query or body-key name (`X-Amz-Signature`, `private_key`, `accessToken`,
 * `x-goog-iap-jwt-assertion`): a name is redacted when one of its parts starts or ends with a
 * listed word, so `apikey`, `authorization` and `sessionid` are caught too. A string with more
 * than one word part (`x-customer-email`) matches that whole name; a RegExp is tested against the
 * lower-cased name. Over-redacting (`author`, `statusCode`) is the side this errs on.
 *
 * @example
 * ```ts
 * auditLog({ url, redact: [...DEFAULT_REDACT, 'email', 'x-customer-id'] });
 * ```
 */
export const DEFAULT_REDACT: ReadonlyArray<string | RegExp> = Object.freeze([
  'auth',
  'token',
  'secret',
  'password',
  'passwd',
  'pwd',
  'key',
  'signature',
  'sig',
  'jwt',
  'assertion',
  'session',
  'cookie',
  'credential',
  'otp',
  'code',
]);

/** What replaces a redacted value. */
export const REDACTED = '[REDACTED]';

/**
 * One audit record: what every request leaves behind, plus the fields you merge in. Its JSON
 * lists what mostly repeats from request to request first, then the time and duration (the order
 * of a JSON object's fields carries no meaning; this one lets a record's bytes be copied from the
 * one before it).
 *
 * @example
 * ```ts
 * // {"id":"…","method":"GET","path":"/users/7","route":"/users/:id","status":200,"outcome":"finished",
 * //  "ip":"10.0.0.1","userAgent":"curl/8","time":"2025-01-01T12:00:00.000Z","durationMs":3.2, …}
 * ```
 */
export interface AuditRecord {
  /** A new UUID per record. */
  id: string;
  /** When the request arrived, ISO 8601. */
  time: string;
  method: string;
  /** The path, without the query. */
  path: string;
  /** The query parameters, redacted; absent when there are none. */
  query?: Record<string, string | string[]>;
  /** The route pattern, where the framework knows it (`/users/:id`). */
  route?: string | undefined;
  status: number;
  durationMs: number;
  outcome: ResponseOutcome;
  ip?: string;
  userAgent?: string;
  /** The request's id: your `requestId` getter's, else the framework's (pino-http's `req.id`), else the `x-request-id` header. */
  requestId?: string;
  /** Request headers, redacted (with `headers: true`). */
  requestHeaders?: Record<string, string | string[]>;
  /** Response headers, redacted (with `headers: true`). */
  responseHeaders?: Record<string, string | string[]>;
  /** The request body, only with the `body` option, capped, JSON keys redacted. */
  body?: string;
  /** True when `body` was cut at the cap. */
  bodyTruncated?: true;
  [field: string]: unknown;
}

/**
 * Options of an adapter's `auditLog()` middleware and of {@link createAuditLog}.
 *
 * @example
 * ```ts
 * app.use(auditLog({
 *   url: 'https://audit.example.com/records',
 *   fields: (req) => ({ userId: req.user?.id, tenant: req.get('x-tenant') }),
 *   batch: { maxItems: 500, format: 'ndjson' },
 * }));
 * ```
 */
export interface AuditLogOptions<TSubject = unknown, TInfo extends ResponseInfo = ResponseInfo> {
  /** Where records go. */
  url: string | URL;
  /** The dispatcher that sends them. Default: a new `createDispatcher()`. */
  dispatcher?: Dispatcher;
  /** Headers, retry, timeout and the rest of `send()`'s init, for every request to `url`. */
  init?: BatchInit;
  /** Extra fields merged into each record (user id, tenant id). Runs after the response ended. */
  fields?: (
    subject: TSubject,
    info: TInfo,
  ) => Record<string, unknown> | undefined | PromiseLike<Record<string, unknown> | undefined>;
  /** Header, query and body-key names to redact. Replaces the default; extend it with `[...DEFAULT_REDACT, …]`. */
  redact?: ReadonlyArray<string | RegExp>;
  /**
   * Include request and response headers, redacted. Default false: they triple a record's size
   * and cost, and an audit trail rarely needs them.
   */
  headers?: boolean;
  /**
   * Include the request body, capped at this many bytes (`true`: 4 KiB), its JSON keys redacted.
   * A body that is not JSON (an object, or a string or Buffer holding JSON) is left out, since it
   * cannot be redacted, unless `rawBody` is true. Default false.
   */
  body?: boolean | number;
  /** With `body`, also send a body that is not JSON, as is and unredacted. Default false. */
  rawBody?: boolean;
  /** The header carrying the request id, when the framework has none. Default `x-request-id`. */
  requestIdHeader?: string;
  /**
   * The request's id, read once the response ended. When it returns undefined (or is not given),
   * the framework's id is used (pino-http's `req.id` in Express, `ctx.req.id` or
   * `ctx.state.requestId` in Koa), then the `requestIdHeader` header.
   */
  requestId?: (subject: TSubject, info: TInfo) => string | undefined;
  /** Batching of records (see `createBatcher`), or `false` to send one request per record. Default: batched. */
  batch?: Omit<BatcherOptions, 'url' | 'init'> | false;
  /** Which responses are recorded. Default `'always'`, aborted requests included. */
  when?: When<TInfo>;
}

/**
 * How an adapter describes one request to {@link AuditLog.watch}.
 *
 * @example
 * ```ts
 * log.watch(res, { subject: req, startedAt, describe, ip: () => req.ip, body: () => req.body });
 * ```
 */
export interface AuditTarget<TSubject, TInfo extends ResponseInfo> {
  /** What `fields` gets first: the Express request, the Koa context. */
  subject: TSubject;
  /** `performance.now()` when the request was first seen. */
  startedAt: number;
  /** Builds the response info once the response ended. */
  describe(outcome: ResponseOutcome, durationMs: number): TInfo;
  /** The client address as the framework sees it (its proxy settings applied). */
  ip(): string | undefined;
  /** The parsed request body; read only when body logging is on. */
  body?(): unknown;
  /** The framework's own request id (pino-http's `req.id`), if any: a string or a number. */
  requestId?(): unknown;
}

/**
 * How an adapter reads the requests it hands to {@link AuditLog.track}: made once per middleware,
 * so the request path makes no closure per request.
 *
 * @example
 * ```ts
 * createAuditLog(options, { describe: (req, res, outcome, ms) => info(req, res, outcome, ms), ip: (req) => req.ip });
 * ```
 */
export interface AuditSource<TSubject, TInfo extends ResponseInfo> {
  /** Builds the response info once the response ended. */
  describe(subject: TSubject, res: ServerResponse, outcome: ResponseOutcome, durationMs: number): TInfo;
  /** The client address as the framework sees it (its proxy settings applied). */
  ip(subject: TSubject): string | undefined;
  /** The parsed request body; read only when body logging is on. */
  body?(subject: TSubject): unknown;
  /** The framework's own request id (pino-http's `req.id`), if any: a string or a number. */
  requestId?(subject: TSubject): unknown;
}

/**
 * An audit log: watches responses and sends one record per request once it ended.
 *
 * @example
 * ```ts
 * const log = createAuditLog({ url: 'https://audit.example.com' });
 * server.on('request', (req, res) => log.watch(res, { subject: req, startedAt: performance.now(), ... }));
 * ```
 */
export interface AuditLog<TSubject, TInfo extends ResponseInfo> {
  readonly dispatcher: Dispatcher;
  /** The batcher records go through; undefined with `batch: false`. */
  readonly batcher: Batcher | undefined;
  /** Records this response once it ended (finished or aborted). Never throws for a bad response. */
  watch(res: ServerResponse, target: AuditTarget<TSubject, TInfo>): void;
  /**
   * {@link watch} for a log made with an {@link AuditSource}: records this response, read through
   * the source, once it ended. `startedAt` is `performance.now()` when the request was first seen.
   */
  track(res: ServerResponse, subject: TSubject, startedAt: number): void;
}

/** Reads a {@link AuditTarget}: what {@link AuditLog.watch} records through. */
const TARGET_SOURCE: AuditSource<AuditTarget<unknown, ResponseInfo>, ResponseInfo> = {
  describe: (target, _res, outcome, durationMs) => target.describe(outcome, durationMs),
  ip: (target) => target.ip(),
  body: (target) => target.body?.(),
  requestId: (target) => target.requestId?.(),
};

const OPTION_KEYS = [
  'url',
  'dispatcher',
  'init',
  'fields',
  'redact',
  'headers',
  'body',
  'rawBody',
  'requestIdHeader',
  'requestId',
  'batch',
  'when',
] as const;
const DEFAULT_BODY_CAP = 4 * 1024;
/** Names seen are remembered, so a header's redaction is decided once, not per request. */
const MAX_REMEMBERED_NAMES = 1_000;

/**
 * Creates the framework-neutral audit log the adapters' `auditLog()` middleware wraps. Validates
 * every option at once and throws {@link InvalidArgumentError} on a bad one.
 *
 * @example
 * ```ts
 * const log = createAuditLog<IncomingMessage, ResponseInfo>({ url: 'https://audit.example.com', batch: { maxItems: 200 } });
 * ```
 */
export function createAuditLog<TSubject, TInfo extends ResponseInfo>(
  options: AuditLogOptions<TSubject, TInfo>,
  source?: AuditSource<TSubject, TInfo>,
): AuditLog<TSubject, TInfo> {
  return new AuditLogImpl(options, source);
}

class AuditLogImpl<TSubject, TInfo extends ResponseInfo> implements AuditLog<TSubject, TInfo> {
  readonly dispatcher: Dispatcher;
  readonly batcher: Batcher | undefined;
  readonly #url: string;
  readonly #init: BatchInit;
  readonly #logger: Logger;
  readonly #hooks: HookRunner;
  readonly #fields: AuditLogOptions<TSubject, TInfo>['fields'];
  readonly #redact: Redactor;
  readonly #headers: boolean;
  readonly #bodyCap: number;
  readonly #rawBody: boolean;
  readonly #requestIdHeader: string;
  readonly #requestId: AuditLogOptions<TSubject, TInfo>['requestId'];
  readonly #when: When<TInfo>;
  /** `when` is `'always'`: every response is recorded, aborted ones included. */
  readonly #always: boolean;
  /** Whether a callback of the app's runs once the response ended, in the request's async context. */
  readonly #inContext: boolean;
  /**
   * Whether a record is only the fields read when the response ended (no `fields`, headers or
   * body): then it is written straight into JSON, with no record object.
   */
  readonly #compact: boolean;
  readonly #source: AuditSource<TSubject, TInfo> | undefined;
  /** The query parser with redaction, for records made into JSON later. */
  readonly #queryOf = (search: string): Record<string, string | string[]> | undefined => this.#query(search);
  /** Compact records kept as fields until 64 are made into JSON together (with `#compact`). */
  readonly #rows: RecordRows | undefined;

  constructor(options: AuditLogOptions<TSubject, TInfo>, source?: AuditSource<TSubject, TInfo>) {
    const opts = checkObject('auditLog options', options);
    checkKeys('auditLog options', opts, OPTION_KEYS);
    const { dispatcher, fields, redact = DEFAULT_REDACT, headers = false, body = false } = options;
    if (dispatcher !== undefined && !isDispatcher(dispatcher)) {
      throw new InvalidArgumentError(`dispatcher must come from createDispatcher(), got ${show(dispatcher)}`);
    }
    if (fields !== undefined && typeof fields !== 'function') {
      throw new InvalidArgumentError(`fields must be a function, got ${show(fields)}`);
    }
    if (!Array.isArray(redact) || !redact.every((x) => typeof x === 'string' || x instanceof RegExp)) {
      throw new InvalidArgumentError(`redact must be an array of strings and RegExps, got ${show(redact)}`);
    }
    if (typeof headers !== 'boolean') {
      throw new InvalidArgumentError(`headers must be a boolean, got ${show(headers)}`);
    }
    const rawBody = options.rawBody ?? false;
    if (typeof rawBody !== 'boolean') {
      throw new InvalidArgumentError(`rawBody must be a boolean, got ${show(rawBody)}`);
    }
    this.#rawBody = rawBody;
    this.#bodyCap =
      body === false ? 0 : body === true ? DEFAULT_BODY_CAP : checkInteger('body', body, 1, 16 * 1024 * 1024);
    const requestIdHeader = options.requestIdHeader ?? 'x-request-id';
    if (typeof requestIdHeader !== 'string' || requestIdHeader === '') {
      throw new InvalidArgumentError(`requestIdHeader must be a header name, got ${show(requestIdHeader)}`);
    }
    if (options.requestId !== undefined && typeof options.requestId !== 'function') {
      throw new InvalidArgumentError(`requestId must be a function, got ${show(options.requestId)}`);
    }
    this.#requestId = options.requestId;
    this.#when = options.when ?? 'always';
    checkWhen(this.#when);
    this.#always = this.#when === 'always';
    const batch = options.batch ?? {};
    if (batch !== false) checkObject('batch', batch);
    this.#init = options.init === undefined ? {} : checkObject('init', options.init);
    // Checked now, so a typo in the URL or init fails at startup, before any dispatcher is made.
    this.#url = checkTarget(options.url, this.#init).url;
    this.dispatcher = dispatcher ?? createDispatcher();
    this.batcher =
      batch === false
        ? undefined
        : createBatcher(this.dispatcher, { ...batch, url: options.url, init: this.#init });
    this.#logger = internalsOf(this.dispatcher).logger;
    this.#hooks = internalsOf(this.dispatcher).hooks;
    this.#fields = fields;
    this.#redact = createRedactor(redact);
    this.#headers = headers;
    this.#requestIdHeader = requestIdHeader.toLowerCase();
    this.#inContext =
      fields !== undefined || this.#requestId !== undefined || typeof this.#when === 'function';
    this.#compact = !this.#inContext && !headers && this.#bodyCap === 0 && this.batcher !== undefined;
    this.#source = source;
    if (this.#compact) {
      this.#rows = new RecordRows(this.#queryOf, (error) => this.#failed(error));
      stageInto(this.batcher as Batcher, this.#rows);
    }
  }

  track(res: ServerResponse, subject: TSubject, startedAt: number): void {
    const source = this.#source;
    if (source === undefined) throw new InvalidArgumentError('track() needs a log made with a source');
    // One closure per request, and nothing else until the response ended (see watch()).
    let ended: () => void;
    if (this.#inContext) {
      const runIn = captureContext();
      ended = () => runIn(() => this.#record(res, subject, startedAt, source, subject));
    } else if (this.#always && this.#compact) {
      ended = () => this.#row(res, subject, startedAt, source);
    } else {
      ended = () => this.#record(res, subject, startedAt, source, subject);
    }
    listen(res, ended);
  }

  /** {@link #record} of a compact record of every response: nothing to decide, nothing awaited. */
  #row(
    res: ServerResponse,
    subject: TSubject,
    startedAt: number,
    source: AuditSource<TSubject, TInfo>,
  ): void {
    try {
      const outcome: ResponseOutcome = res.writableFinished ? 'finished' : 'aborted';
      const info = source.describe(subject, res, outcome, monotonicNow() - startedAt);
      this.#capture(res, info, subject, source, startedAt);
    } catch (error) {
      this.#failed(error);
    }
  }

  watch(res: ServerResponse, target: AuditTarget<TSubject, TInfo>): void {
    const source = TARGET_SOURCE as unknown as AuditSource<AuditTarget<TSubject, TInfo>, TInfo>;
    // Not 'finish': it never fires when the client disconnects first. Not on-finished either,
    // which the parked-work path uses: since Node 16 a ServerResponse emits 'close' exactly once,
    // after 'finish' or on an abort, and one listener costs half of on-finished's four, which
    // matters on a path that runs for every request (bench/audit.mjs).
    // 'close' is emitted from whatever ended the connection: `when` and `fields` run in the
    // context the middleware saw the request in, with its AsyncLocalStorage stores.
    // Only when some callback of the app's runs there (`fields`, `requestId`, a `when` predicate):
    // capturing costs an AsyncResource and a closure per request, on a path every request takes.
    // `on`, not `once`: a ServerResponse emits 'close' once, and `once` adds a wrapper per request.
    let ended: () => void;
    if (this.#inContext) {
      const runIn = captureContext();
      ended = () => runIn(() => this.#record(res, target, target.startedAt, source, target.subject));
    } else {
      ended = () => this.#record(res, target, target.startedAt, source, target.subject);
    }
    listen(res, ended);
  }

  #record<THandle>(
    res: ServerResponse,
    handle: THandle,
    startedAt: number,
    source: AuditSource<THandle, TInfo>,
    subject: TSubject,
  ): void {
    try {
      const outcome: ResponseOutcome = res.writableFinished ? 'finished' : 'aborted';
      const durationMs = monotonicNow() - startedAt;
      const info = source.describe(handle, res, outcome, durationMs);
      const skip = skipReason(this.#when, info, 'send', this.#hooks.defaultTimeout);
      if (isThenable(skip)) {
        this.#hold(
          skip.then(
            (reason) => reason === undefined && this.#buildAndSend(res, info, handle, source, subject),
          ),
        );
      } else if (skip === undefined) {
        if (this.#compact) this.#capture(res, info, handle, source, startedAt);
        else this.#buildAndSend(res, info, handle, source, subject);
      }
    } catch (error) {
      this.#failed(error);
    }
  }

  /**
   * Keeps the record as its fields, made into JSON with the next 63 (or at the batcher's next
   * flush) while that code is warm: at a response's end, between requests, it ran cold and cost
   * several times more. The JSON goes into the batcher, which holds it as UTF-8 off the JS heap:
   * held as objects until their batch left (100 to 1,000 requests later), records outlived V8's
   * young generation and their GC cost more than making the JSON.
   */
  #capture<THandle>(
    res: ServerResponse,
    info: TInfo,
    handle: THandle,
    source: AuditSource<THandle, TInfo>,
    startedAt: number,
  ): void {
    const batcher = this.batcher as Batcher;
    const rows = this.#rows as RecordRows;
    const ip = source.ip(handle);
    const userAgent = res.req.headers['user-agent'];
    const requestId = readRequestId(source.requestId?.(handle), res.req, this.#requestIdHeader);
    if (rows.writing) {
      // A response that ended in a listener the writing runs (a dispatcher event): its row would
      // land among the rows being written, so its JSON is made and added here.
      addJson(batcher, recordJson(this.#queryOf, info, ip, userAgent, requestId));
      return;
    }
    // Throws ClosedError once the batcher or its dispatcher closed, as adding would.
    const due = staged(batcher);
    if (rows.add(startedAt, info, ip, userAgent, requestId) || due) writeStage(batcher);
  }

  /** Nothing here may reach the app: a closed dispatcher or a bad fields() result is logged. */
  #failed(error: unknown): void {
    this.#logger.warn({ err: error }, 'afterward: an audit record could not be sent');
  }

  /** Counts async work (an async `when` or `fields`) as pending, so `drain()` waits for it. */
  #hold(work: PromiseLike<unknown>): void {
    this.#hooks.hold();
    void Promise.resolve(work)
      .catch((error: unknown) => this.#failed(error))
      .finally(() => this.#hooks.unhold());
  }

  #buildAndSend<THandle>(
    res: ServerResponse,
    info: TInfo,
    handle: THandle,
    source: AuditSource<THandle, TInfo>,
    subject: TSubject,
  ): void {
    try {
      const record = this.#build(res, info, handle, source, subject);
      let extra: unknown;
      try {
        extra = this.#fields?.(subject, info);
      } catch (error) {
        this.#logger.warn({ err: error }, 'afterward: audit fields() threw; the record goes without them');
      }
      if (!isThenable(extra)) {
        this.#send(record, extra);
        return;
      }
      // Awaited within the dispatcher's hookTimeout; rejected or late, the record goes without them.
      this.#hold(
        within(extra, this.#hooks.defaultTimeout).then(
          (value) => this.#send(record, value),
          (error: unknown) => {
            this.#logger.warn(
              { err: error },
              'afterward: audit fields() failed; the record goes without them',
            );
            this.#send(record, undefined);
          },
        ),
      );
    } catch (error) {
      this.#failed(error);
    }
  }

  #send(record: AuditRecord, extra: unknown): void {
    try {
      if (typeof extra === 'object' && extra !== null) Object.assign(record, extra);
      if (this.batcher !== undefined) addUnobserved(this.batcher, record);
      else this.dispatcher.send(this.#url, { ...this.#init, json: record });
    } catch (error) {
      this.#failed(error);
    }
  }

  #build<THandle>(
    res: ServerResponse,
    info: TInfo,
    handle: THandle,
    source: AuditSource<THandle, TInfo>,
    subject: TSubject,
  ): AuditRecord {
    const headers = res.req.headers;
    const record = baseRecord(
      this.#queryOf,
      info,
      source.ip(handle),
      headers['user-agent'],
      this.#requestIdOf(subject, info) ??
        readRequestId(source.requestId?.(handle), res.req, this.#requestIdHeader),
    );
    if (this.#headers) {
      record.requestHeaders = this.#headerRecord(headers);
      record.responseHeaders = this.#headerRecord(res.getHeaders());
    }
    if (this.#bodyCap > 0 && source.body !== undefined) this.#addBody(record, source.body(handle));
    return record;
  }

  #requestIdOf(subject: TSubject, info: TInfo): string | undefined {
    if (this.#requestId === undefined) return undefined;
    try {
      const id = this.#requestId(subject, info);
      return typeof id === 'string' && id !== '' ? id : undefined;
    } catch (error) {
      this.#logger.warn({ err: error }, 'afterward: audit requestId() threw; the default is used');
      return undefined;
    }
  }

  #headerRecord(headers: IncomingHttpHeaders | OutgoingHttpHeaders): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    for (const name of Object.keys(headers)) {
      const value = headers[name];
      if (value === undefined) continue;
      out[name] = this.#redact(name) ? REDACTED : Array.isArray(value) ? value.map(String) : String(value);
    }
    return out;
  }

  #query(search: string): Record<string, string | string[]> | undefined {
    let params: URLSearchParams;
    try {
      params = new URLSearchParams(search);
    } catch {
      return undefined;
    }
    let out: Record<string, string | string[]> | undefined;
    for (const [name, raw] of params) {
      out ??= {};
      const value = this.#redact(name) ? REDACTED : raw;
      const seen = out[name];
      out[name] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
    }
    return out;
  }

  #addBody(record: AuditRecord, body: unknown): void {
    let value = body;
    let raw: string | undefined;
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      raw = typeof body === 'string' ? body : body.toString('utf8');
      try {
        value = JSON.parse(raw);
      } catch {
        value = undefined;
      }
    }
    let text: string | undefined;
    if (value !== undefined && value !== null) {
      try {
        text = JSON.stringify(value, (key, inner: unknown) =>
          key !== '' && this.#redact(key) ? REDACTED : inner,
        );
      } catch {
        text = undefined;
      }
    } else if (raw !== undefined && this.#rawBody) {
      // Asked for explicitly: a body that is not JSON has no names to redact by.
      text = raw;
    }
    if (text === undefined) return;
    const bytes = Buffer.byteLength(text);
    if (bytes > this.#bodyCap) {
      record.body = Buffer.from(text).subarray(0, this.#bodyCap).toString('utf8');
      record.bodyTruncated = true;
    } else {
      record.body = text;
    }
  }
}

/**
 * The record every request leaves, before headers, body and `fields`.
 *
 * @example
 * ```ts
 * baseRecord(parseQuery, info, req.socket.remoteAddress, req.headers['user-agent'], 'req-7');
 * ```
 */
export function baseRecord(
  queryOf: QueryOf,
  info: RecordInfo,
  ip: string | undefined,
  userAgent: string | undefined,
  requestId: string | undefined,
): AuditRecord {
  const { url } = info;
  const query = url.indexOf('?');
  // In the order writeRecord() writes: what repeats from request to request, then the time.
  const record = {
    id: newId(),
    method: info.method,
    path: query === -1 ? url : url.slice(0, query),
    // Left undefined when no route matched; JSON leaves it out.
    route: info.route,
    status: info.statusCode,
    outcome: info.outcome,
  } as AuditRecord;
  if (query !== -1) {
    const params = queryOf(url.slice(query + 1));
    if (params !== undefined) record.query = params;
  }
  if (ip !== undefined) record.ip = ip;
  if (userAgent !== undefined) record.userAgent = userAgent;
  record.time = isoTime(Date.now() - info.durationMs);
  record.durationMs = Math.round(info.durationMs * 1000) / 1000;
  if (requestId !== undefined) record.requestId = requestId;
  return record;
}

/**
 * Runs `ended` once the response ended: at its `'close'`, or at once when it closed already (the
 * client left while an earlier middleware awaited, so no `'close'` will come). At once, not on the
 * next turn: the handlers after the middleware may still end the response, and on Node 22 a
 * response ended after its socket closed reads as finished.
 */
function listen(res: ServerResponse, ended: () => void): void {
  if (res.closed) ended();
  else res.on('close', res.socket === null ? whenQueued(res, ended) : ended);
}

/**
 * `ended` for a response with no socket yet: one queued behind another on a pipelined connection.
 * Node 22 never emits such a response's `'close'` when the client goes away (Node 24 and 26 do),
 * so the request's socket is watched too, and whichever comes first runs `ended`, once. Only
 * then: the common path stays at one listener. A response made by hand (tests, other servers)
 * may have no request or socket; it gets `ended` as it is.
 */
function whenQueued(res: ServerResponse, ended: () => void): () => void {
  const socket = (res.req as ServerResponse['req'] | undefined)?.socket;
  if (socket === undefined || socket === null) return ended;
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    socket.off('close', once);
    ended();
  };
  // Gone already (the client left while an earlier middleware awaited): no 'close' will come.
  if (socket.destroyed) once();
  else socket.on('close', once);
  return once;
}

/** How many compact records are kept as fields before they are made into JSON together. */
const ROWS = 64;

/**
 * Compact audit records (no `fields`, headers or body) kept as their fields, in columns, until
 * {@link ROWS} of them (or the batcher's flush) make them into JSON one after another. Only
 * numbers and the strings the record quotes are kept, never the request: nothing here holds a
 * request or response past its end.
 */
class RecordRows implements BatchStage {
  size = 0;
  /** True while {@link write} runs (it may run a dispatcher event's listeners). */
  writing = false;
  readonly #queryOf: QueryOf;
  readonly #failed: (error: unknown) => void;
  /** `performance.now()` when each request was first seen. */
  readonly #startedAt = new Float64Array(ROWS);
  readonly #durationMs = new Float64Array(ROWS);
  readonly #status = new Float64Array(ROWS);
  readonly #aborted = new Uint8Array(ROWS);
  /**
   * The strings, in arrays made anew for each {@link ROWS} rows (see emptyColumn()), which also
   * lets go of the last rows' strings.
   */
  #method = emptyColumn();
  #url = emptyColumn();
  #route = emptyColumn();
  #ip = emptyColumn();
  #userAgent = emptyColumn();
  #requestId = emptyColumn();
  /** The batch body last written into, and a DataView over it (writeRecord writes through both). */
  #viewOf: Buffer | undefined;
  #view: DataView = new DataView(new ArrayBuffer(0));
  /** One record's fields as recordJson() reads them, reused row after row. */
  readonly #info: { -readonly [K in keyof RecordInfo]: RecordInfo[K] } = {
    method: '',
    url: '',
    route: undefined,
    statusCode: 0,
    durationMs: 0,
    outcome: 'finished',
  };

  constructor(queryOf: QueryOf, failed: (error: unknown) => void) {
    this.#queryOf = queryOf;
    this.#failed = failed;
  }

  /** Keeps one record; true once {@link ROWS} are kept (time to write them). */
  add(
    startedAt: number,
    info: RecordInfo,
    ip: string | undefined,
    userAgent: string | undefined,
    requestId: string | undefined,
  ): boolean {
    const i = this.size;
    this.#startedAt[i] = startedAt;
    this.#durationMs[i] = info.durationMs;
    this.#status[i] = info.statusCode;
    this.#aborted[i] = info.outcome === 'aborted' ? 1 : 0;
    this.#method[i] = info.method;
    this.#url[i] = info.url;
    this.#route[i] = info.route;
    this.#ip[i] = ip;
    this.#userAgent[i] = userAgent;
    this.#requestId[i] = requestId;
    this.size = i + 1;
    return this.size === ROWS;
  }

  write(sink: BatchSink): void {
    this.writing = true;
    try {
      this.#write(sink);
    } finally {
      this.writing = false;
    }
  }

  #write(sink: BatchSink): void {
    const count = this.size;
    this.size = 0;
    // Each record's arrival in wall-clock time, from the monotonic clock it was measured with.
    const wall = Date.now();
    const now = monotonicNow();
    let room: BatchRoom | undefined;
    try {
      for (let i = 0; i < count; i++) {
        try {
          room = this.#writeRow(sink, room, i, wall - (now - (this.#startedAt[i] as number)));
        } catch (error) {
          // Closed first: the logger is the app's code, and the room must be closed while it runs.
          sink.close();
          room = undefined;
          this.#failed(error);
        }
      }
    } finally {
      if (room !== undefined) sink.close();
      this.#method = emptyColumn();
      this.#url = emptyColumn();
      this.#route = emptyColumn();
      this.#ip = emptyColumn();
      this.#userAgent = emptyColumn();
      this.#requestId = emptyColumn();
    }
  }

  /**
   * Writes row `i` straight into the batch's body, in `room` (or a new one: see writeRecord()),
   * or as a string when it must be made so (an escape, a character beyond ASCII, a record too
   * large to measure so). Returns the room still open, if any.
   */
  #writeRow(
    sink: BatchSink,
    open: BatchRoom | undefined,
    i: number,
    arrivedAt: number,
  ): BatchRoom | undefined {
    const method = this.#method[i] as string;
    const url = this.#url[i] as string;
    const route = this.#route[i];
    const ip = this.#ip[i];
    const userAgent = this.#userAgent[i];
    const requestId = this.#requestId[i];
    const mark = url.indexOf('?');
    const params = mark === -1 ? undefined : this.#queryOf(url.slice(mark + 1));
    const queryJson = params === undefined ? undefined : JSON.stringify(params);
    const bytes =
      RECORD_FRAME +
      method.length +
      url.length +
      (route?.length ?? 0) +
      (queryJson?.length ?? 0) +
      (ip?.length ?? 0) +
      (userAgent?.length ?? 0) +
      (requestId?.length ?? 0);
    let room = open;
    if (room === undefined || room.left === 0 || room.at + bytes + 1 > room.end) {
      if (room !== undefined) sink.close();
      room = sink.open(bytes);
      if (room === undefined) {
        sink.take(this.#json(i, arrivedAt));
        return undefined;
      }
    }
    const buf = room.buf;
    if (buf !== this.#viewOf) {
      this.#viewOf = buf;
      this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    const end = writeRecord(
      buf,
      this.#view,
      room.at,
      method,
      url,
      mark === -1 ? url.length : mark,
      route,
      this.#status[i] as number,
      this.#durationMs[i] as number,
      this.#aborted[i] === 1,
      queryJson,
      ip,
      userAgent,
      requestId,
      arrivedAt,
    );
    if (end === -1) {
      sink.close();
      sink.take(this.#json(i, arrivedAt));
      return undefined;
    }
    buf[end] = room.separator;
    room.ends.push(end);
    room.at = end + 1;
    room.left--;
    return room;
  }

  /** Row `i` as recordJson() makes it. */
  #json(i: number, arrivedAt: number): string {
    const info = this.#info;
    info.method = this.#method[i] as string;
    info.url = this.#url[i] as string;
    info.route = this.#route[i];
    info.statusCode = this.#status[i] as number;
    info.durationMs = this.#durationMs[i] as number;
    info.outcome = this.#aborted[i] === 1 ? 'aborted' : 'finished';
    return recordJson(this.#queryOf, info, this.#ip[i], this.#userAgent[i], this.#requestId[i], arrivedAt);
  }
}

/**
 * A column of {@link ROWS} strings, made anew once its rows were written: a request's strings are
 * new, and storing them into an array that outlived a GC (moved to the old generation) takes the
 * write barrier's slow path, which records the slot, at every store. A new array is young, as
 * they are. (In the core log alone, 0.28k instructions a record in that slow path became 0.09k;
 * inside Express the difference was within the noise: bench/README.md.)
 */
function emptyColumn(): Array<string | undefined> {
  return new Array<string | undefined>(ROWS);
}

type Redactor = (name: string) => boolean;

/** Compiles a redact list into a name test that remembers its answers. */
function createRedactor(list: ReadonlyArray<string | RegExp>): Redactor {
  const words: string[] = [];
  const exact = new Set<string>();
  const patterns: RegExp[] = [];
  for (const entry of list) {
    if (typeof entry === 'string') {
      const parts = wordParts(entry);
      if (parts.length === 1) words.push(parts[0] as string);
      else exact.add(entry.toLowerCase());
    } else {
      // A global or sticky RegExp keeps lastIndex between tests; a copy without those flags does not.
      patterns.push(new RegExp(entry.source, entry.flags.replace(/[gy]/g, '')));
    }
  }
  const known = new Map<string, boolean>();
  return (name) => {
    const remembered = known.get(name);
    if (remembered !== undefined) return remembered;
    const lower = name.toLowerCase();
    const hit =
      exact.has(lower) ||
      wordParts(name).some((part) => words.some((word) => part.startsWith(word) || part.endsWith(word))) ||
      patterns.some((pattern) => pattern.test(lower));
    if (known.size < MAX_REMEMBERED_NAMES) known.set(name, hit);
    return hit;
  };
}

/** `X-Amz-Signature` -> x, amz, signature; `privateKey` -> private, key; `XMLToken` -> xml, token. */
function wordParts(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((part) => part !== '');
}
