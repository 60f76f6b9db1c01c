import type { ResponseInfo } from '../after-response/after-response.js';
import { newId, writeId } from '../util/id.js';

/** Parses a query string into redacted parameters; undefined when it has none. */
export type QueryOf = (search: string) => Record<string, string | string[]> | undefined;
/** What a record takes from the response info. */
export type RecordInfo = Pick<
  ResponseInfo,
  'method' | 'url' | 'route' | 'statusCode' | 'durationMs' | 'outcome'
>;

// What JSON.stringify escapes in a string: quotes, backslashes, control characters and lone
// surrogates (any surrogate here: a string with one takes the general path).
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** `JSON.stringify(value)`, with strings and numbers written directly. */
function jsonValue(value: unknown): string | undefined {
  if (typeof value === 'string') return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`;
  if (typeof value === 'number') return Number.isFinite(value) ? `${value}` : 'null';
  return JSON.stringify(value);
}

/** `,"name":value`, or nothing where JSON.stringify would leave the field out. */
function field(name: string, value: unknown): string {
  if (value === undefined) return '';
  const json = jsonValue(value);
  return json === undefined ? '' : `,"${name}":${json}`;
}

/**
 * `JSON.stringify(baseRecord(...))`, the same text, written without the record object: one
 * string per request instead of an object holding the request's strings.
 *
 * @example
 * ```ts
 * recordJson(parseQuery, info, req.socket.remoteAddress, req.headers['user-agent'], 'req-7');
 * ```
 */
export function recordJson(
  queryOf: QueryOf,
  info: RecordInfo,
  ip: string | undefined,
  userAgent: string | undefined,
  requestId: string | undefined,
  arrivedAt = Date.now() - info.durationMs,
): string {
  const { url, durationMs } = info;
  const query = url.indexOf('?');
  const params = query === -1 ? undefined : queryOf(url.slice(query + 1));
  return (
    `{"id":"${newId()}"${field('method', info.method)}` +
    `${field('path', query === -1 ? url : url.slice(0, query))}${field('route', info.route)}` +
    `${field('status', info.statusCode)}${field('outcome', info.outcome)}${field('query', params)}` +
    `${field('ip', ip)}${field('userAgent', userAgent)},"time":"${isoTime(arrivedAt)}"` +
    `${field('durationMs', Math.round(durationMs * 1000) / 1000)}${field('requestId', requestId)}}`
  );
}

/**
 * The most bytes {@link writeRecord} writes besides its strings' characters: names, quotes and
 * separators (about 170), the id (36), the time (24), two numbers (at most 25), and the 7 bytes a
 * constant written in 8-byte chunks may write past its end. Generous: a typed array drops writes
 * past its end without a word, and a DataView throws.
 */
export const RECORD_FRAME = 512;

/**
 * Strings at least this long are written by Buffer's native Latin-1 writer, then checked four bytes
 * at a time; shorter ones by a loop over their characters. In V8 a loop over a string costs about
 * 40 instructions a character whatever it does (`charCodeAt` dispatches on the string's kind every
 * time); the native write with the test for wide characters about 0.85k a call plus little per
 * byte, and the check about 9 a byte.
 */
const NATIVE_FROM = 32;

/** A character beyond Latin-1 (U+0100 and up, lone surrogates included). */
const WIDE = /[\u0100-\uffff]/;

/**
 * Writes the JSON {@link recordJson} makes for one record, as UTF-8, into `buf` from `at`: the
 * same bytes, without making the string (about thirty concatenations, their flattening, and the
 * conversion to UTF-8). `view` is a DataView over exactly `buf`'s bytes. `buf` has
 * {@link RECORD_FRAME} bytes free past `at` plus one per UTF-16 unit of the strings; bytes past
 * the returned end may have been written too. Returns where the record ends, or -1 when it has
 * what only recordJson() writes: a character JSON escapes or one beyond ASCII, a status or
 * duration out of the plain integer range, a time outside the years 0 to 9999. What was written
 * then counts for nothing. `queryJson` is the redacted query's JSON, or undefined when the URL has
 * none; `pathEnd` is where the path ends in `url` (its `?`, or its length). Runs of bytes whose
 * values repeat those of the last record written (see {@link Run}) are copied from it.
 *
 * @example
 * ```ts
 * const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
 * const end = writeRecord(buf, view, at, 'GET', '/users/7', 8, '/users/:id', 200, 3.2, false,
 *   undefined, '10.0.0.1', 'curl/8', undefined, Date.now() - 3.2);
 * ```
 */
export function writeRecord(
  buf: Buffer,
  view: DataView,
  at: number,
  method: string,
  url: string,
  pathEnd: number,
  route: string | undefined,
  status: number,
  durationMs: number,
  aborted: boolean,
  queryJson: string | undefined,
  ip: string | undefined,
  userAgent: string | undefined,
  requestId: string | undefined,
  arrivedAt: number,
): number {
  const rounded = Math.round(durationMs * 1000);
  if (!(rounded >= 0 && rounded < 2 ** 31 && status >= 0 && status < 2 ** 31)) return -1;
  // Small integers from here on (`| 0`): the remainders of doubles are calls to fmod.
  const micros = rounded | 0;
  const code = status | 0;
  if (code !== status) return -1;
  const whole = Math.floor(arrivedAt);
  const second = Math.floor(whole / 1000);
  // Years 0 to 9999 only: beyond, toISOString() writes a signed six-digit year of another length.
  if (!(second >= 0 && second < MAX_SECOND)) return -1;
  const milli = (whole - second * 1000) | 0;
  let p = writeId(buf, constant(view, at, OPEN), view);
  const same =
    method === WHOLE.method &&
    url === WHOLE.url &&
    pathEnd === WHOLE.pathEnd &&
    route === WHOLE.route &&
    code === WHOLE.status &&
    aborted === WHOLE.aborted &&
    queryJson === WHOLE.queryJson &&
    ip === WHOLE.ip &&
    userAgent === WHOLE.userAgent &&
    second === WHOLE.second;
  if (same && WHOLE.bytes !== undefined) {
    p = replay(buf, p, WHOLE.bytes);
  } else {
    const start = p;
    p = writeRequest(buf, view, p, method, url, pathEnd, route, code);
    if (p === -1) return -1;
    p = writeClient(buf, view, p, aborted, queryJson, ip, userAgent);
    if (p === -1) return -1;
    p = replay(buf, p, timePrefixOf(second));
    if (same) {
      WHOLE.bytes = Uint8Array.prototype.slice.call(buf, start, p);
    } else {
      WHOLE.method = method;
      WHOLE.url = url;
      WHOLE.pathEnd = pathEnd;
      WHOLE.route = route;
      WHOLE.status = code;
      WHOLE.aborted = aborted;
      WHOLE.queryJson = queryJson;
      WHOLE.ip = ip;
      WHOLE.userAgent = userAgent;
      WHOLE.second = second;
      WHOLE.bytes = undefined;
    }
  }
  const tenths = (milli / 10) | 0;
  buf[p] = 0x30 + ((milli / 100) | 0);
  buf[p + 1] = 0x30 + tenths - ((milli / 100) | 0) * 10;
  buf[p + 2] = 0x30 + milli - tenths * 10;
  p = constant(view, p + 3, DURATION);
  // JSON.stringify(Math.round(durationMs * 1000) / 1000): the whole milliseconds, then up to three
  // decimals without their trailing zeros (exact below 2 ** 31 µs, where a double holds them all).
  const ms = (micros / 1000) | 0;
  const fraction = micros - ms * 1000;
  p = digits(buf, p, ms);
  if (fraction !== 0) {
    const hundreds = (fraction / 100) | 0;
    const tens = ((fraction / 10) | 0) - hundreds * 10;
    const ones = fraction - ((fraction / 10) | 0) * 10;
    buf[p++] = 0x2e; // '.'
    buf[p++] = 0x30 + hundreds;
    if (tens !== 0 || ones !== 0) buf[p++] = 0x30 + tens;
    if (ones !== 0) buf[p++] = 0x30 + ones;
  }
  if (requestId !== undefined) {
    p = text(buf, view, constant(view, p, REQUEST_ID), requestId, requestId.length);
    if (p === -1) return -1;
    buf[p++] = 0x22;
  }
  buf[p++] = 0x7d; // '}'
  return p;
}

/**
 * `","method":"GET","path":"/users/7","route":"/users/:id","status":200` from `at` (the quote
 * closes the id): copied from the record before when its values repeat; returns its end, or -1.
 */
function writeRequest(
  buf: Buffer,
  view: DataView,
  at: number,
  method: string,
  url: string,
  pathEnd: number,
  route: string | undefined,
  code: number,
): number {
  const sameRequest =
    method === BY_REQUEST.a &&
    url === BY_REQUEST.b &&
    pathEnd === BY_REQUEST.c &&
    route === BY_REQUEST.d &&
    code === BY_REQUEST.e;
  if (sameRequest && BY_REQUEST.bytes !== undefined) return replay(buf, at, BY_REQUEST.bytes);
  let p = text(buf, view, constant(view, at, METHOD), method, method.length);
  if (p === -1) return -1;
  p = text(buf, view, constant(view, p, PATH), url, pathEnd);
  if (p === -1) return -1;
  const sameRoute = route === BY_ROUTE.a && code === BY_ROUTE.b;
  if (sameRoute && BY_ROUTE.bytes !== undefined) {
    p = replay(buf, p, BY_ROUTE.bytes);
  } else {
    const from = p;
    if (route !== undefined) {
      p = text(buf, view, constant(view, p, ROUTE), route, route.length);
      if (p === -1) return -1;
    }
    p = digits(buf, constant(view, p, STATUS), code);
    p = remember(BY_ROUTE, sameRoute, buf, from, p, route, code);
  }
  return remember(BY_REQUEST, sameRequest, buf, at, p, method, url, pathEnd, route, code);
}

/**
 * `,"outcome":"finished","query":…,"ip":"…","userAgent":"…"` from `at`: copied from the record
 * before when its values repeat; returns its end, or -1.
 */
function writeClient(
  buf: Buffer,
  view: DataView,
  at: number,
  aborted: boolean,
  queryJson: string | undefined,
  ip: string | undefined,
  userAgent: string | undefined,
): number {
  const sameClient =
    aborted === BY_CLIENT.a && queryJson === BY_CLIENT.b && ip === BY_CLIENT.c && userAgent === BY_CLIENT.d;
  if (sameClient && BY_CLIENT.bytes !== undefined) return replay(buf, at, BY_CLIENT.bytes);
  let p = constant(view, at, aborted ? ABORTED : FINISHED);
  if (queryJson !== undefined) {
    // Already JSON: only what is beyond ASCII (which UTF-8 writes in more bytes) sends it the long way.
    p = constant(view, p, QUERY);
    for (let i = 0; i < queryJson.length; i++) {
      const c = queryJson.charCodeAt(i);
      if (c > 0x7f) return -1;
      buf[p++] = c;
    }
  }
  if (ip !== undefined) {
    p = text(buf, view, constant(view, p, IP), ip, ip.length);
    if (p === -1) return -1;
    buf[p++] = 0x22;
  }
  if (userAgent !== undefined) {
    p = text(buf, view, constant(view, p, USER_AGENT), userAgent, userAgent.length);
    if (p === -1) return -1;
    buf[p++] = 0x22;
  }
  return remember(BY_CLIENT, sameClient, buf, at, p, aborted, queryJson, ip, userAgent);
}

/**
 * A run of a record's bytes and what they were written from: `a` to `e`, the values that decide
 * them. Neighbouring records mostly repeat these (one keep-alive client, one route): a run is
 * then copied by one native call, where writing it anew costs a loop over its characters, or a
 * native write and a check of its bytes, and a 32-bit word about 50 instructions through a
 * DataView (bench/README.md). Strings compare by their characters: the same header read again is
 * a new string with the same text.
 */
interface Run {
  a: unknown;
  b: unknown;
  c: unknown;
  d: unknown;
  e: unknown;
  /**
   * The bytes, once the same values came twice in a row: copying them out costs more than a
   * record's write saves (a typed array of over 64 bytes is allocated off the heap), so values
   * that change at every record (a user agent per request) are never copied.
   */
  bytes: Uint8Array | undefined;
}

/** Matches no value: a run not yet written. */
const UNSET = Symbol('unset');

function run(): Run {
  return { a: UNSET, b: UNSET, c: UNSET, d: UNSET, e: UNSET, bytes: undefined };
}

/** `","method":"GET","path":"/users/7","route":"/users/:id","status":200`, by those. */
const BY_REQUEST = run();
/** `","route":"/users/:id","status":200`, by route and status (when the path differs). */
const BY_ROUTE = run();
/** `,"outcome":"finished","query":…,"ip":"…","userAgent":"…"`, by those four values. */
const BY_CLIENT = run();

/**
 * Every byte between a record's id and its milliseconds, by every value they are written from:
 * `","method":…,"userAgent":"…","time":"2025-01-01T12:00:00.`. Requests of one route from one
 * client in one second repeat it whole, and it is then copied by one native call (each call
 * costs about 0.3k instructions, whatever its length up to a few hundred bytes). Its bytes are
 * copied out once the same values came twice in a row, as a {@link Run}'s.
 */
const WHOLE = {
  method: UNSET as unknown,
  url: UNSET as unknown,
  pathEnd: -1,
  route: UNSET as unknown,
  status: -1,
  aborted: UNSET as unknown,
  queryJson: UNSET as unknown,
  ip: UNSET as unknown,
  userAgent: UNSET as unknown,
  second: -1,
  bytes: undefined as Uint8Array | undefined,
};

/**
 * After bytes `from` to `to` of `buf` were written from `a` to `e`: `same` (they are `run`'s
 * values) keeps a copy of the bytes, else the values are kept, for the next record. Returns `to`.
 */
function remember(
  run: Run,
  same: boolean,
  buf: Buffer,
  from: number,
  to: number,
  a: unknown,
  b: unknown = undefined,
  c: unknown = undefined,
  d: unknown = undefined,
  e: unknown = undefined,
): number {
  if (same) {
    run.bytes = Uint8Array.prototype.slice.call(buf, from, to);
  } else {
    run.a = a;
    run.b = b;
    run.c = c;
    run.d = d;
    run.e = e;
    run.bytes = undefined;
  }
  return to;
}

/** Writes `bytes` from `at`; returns their end. */
function replay(buf: Buffer, at: number, bytes: Uint8Array): number {
  buf.set(bytes, at);
  return at + bytes.length;
}

/**
 * An ASCII constant as 8-byte chunks (the last one padded with zeros), each held as the double
 * with those bits: written eight bytes at a time, where a loop over its characters cost about 40
 * instructions each, and a 32-bit word about 50. Exact: a chunk of ASCII bytes is never a NaN
 * (whose bits V8 may change), since its top byte is below 0x7f.
 */
interface Constant {
  readonly length: number;
  readonly chunks: Float64Array;
}

function chunksOf(ascii: string): Constant {
  const bytes = Buffer.alloc(Math.ceil(ascii.length / 8) * 8);
  bytes.write(ascii, 'latin1');
  const chunks = new Float64Array(bytes.length / 8);
  for (let i = 0; i < chunks.length; i++) chunks[i] = bytes.readDoubleLE(8 * i);
  return { length: ascii.length, chunks };
}

const OPEN = chunksOf('{"id":"');
const METHOD = chunksOf('","method":"');
const PATH = chunksOf('","path":"');
const ROUTE = chunksOf('","route":"');
const STATUS = chunksOf('","status":');
const DURATION = chunksOf('Z","durationMs":');
const ABORTED = chunksOf(',"outcome":"aborted"');
const FINISHED = chunksOf(',"outcome":"finished"');
const QUERY = chunksOf(',"query":');
const IP = chunksOf(',"ip":"');
const USER_AGENT = chunksOf(',"userAgent":"');
const REQUEST_ID = chunksOf(',"requestId":"');

/** Writes a constant from `at` (and up to 7 bytes of padding past its end); returns its end. */
function constant(view: DataView, at: number, value: Constant): number {
  const { chunks } = value;
  for (let i = 0; i < chunks.length; i++) view.setFloat64(at + 8 * i, chunks[i] as number, true);
  return at + value.length;
}

/**
 * Writes `value`'s first `length` characters from `at` as the inside of a JSON string: -1 when one
 * is a character JSON escapes (quote, backslash, control) or one beyond ASCII (more than one byte
 * in UTF-8, or a lone surrogate).
 */
function text(buf: Buffer, view: DataView, at: number, value: string, length: number): number {
  if (at === -1) return -1;
  if (length >= NATIVE_FROM) {
    // One byte per character, as Latin-1: a character beyond U+00FF (which Latin-1 would cut to
    // its low byte) is looked for first, those from U+0080 to U+00FF are bytes plain() refuses.
    // The test costs little on a one-byte string, and this write half what UTF-8's does. (A path
    // is tested with the rest of its URL: a wide character in the query sends it the long way.)
    if (WIDE.test(value) || buf.write(value, at, length, 'latin1') !== length) return -1;
    return plain(buf, view, at, at + length) ? at + length : -1;
  }
  let p = at;
  for (let i = 0; i < length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7f || c === 0x22 || c === 0x5c) return -1;
    buf[p++] = c;
  }
  return p;
}

/**
 * Whether bytes `from` to `to` of `buf` are all printable ASCII or DEL, and neither a quote nor a
 * backslash: what a JSON string holds unescaped. Four bytes at a time, by the bit tricks that find
 * a byte below a bound, or equal to one, in a word: any of the four sets bit 7 of that byte in
 * `bad` (bit 7 of a byte of 0x80 or more is set already). Exact for whether any byte is one.
 */
function plain(buf: Buffer, view: DataView, from: number, to: number): boolean {
  let bad = 0;
  let p = from;
  for (; p + 4 <= to; p += 4) {
    const x = view.getInt32(p, true);
    const quote = x ^ 0x22222222;
    const slash = x ^ 0x5c5c5c5c;
    bad |= x | ((x - 0x20202020) & ~x) | ((quote - 0x01010101) & ~quote) | ((slash - 0x01010101) & ~slash);
  }
  if ((bad & 0x80808080) !== 0) return false;
  for (; p < to; p++) {
    const c = buf[p] as number;
    if (c < 0x20 || c > 0x7f || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

/** Writes a small integer (0 to 2 ** 31 - 1) in decimal; returns its end. */
function digits(buf: Buffer, at: number, value: number): number {
  let end = at + 1;
  for (let rest = value; rest >= 10; rest = (rest / 10) | 0) end++;
  let rest = value;
  for (let p = end - 1; p >= at; p--) {
    const next = (rest / 10) | 0;
    buf[p] = 0x30 + rest - next * 10;
    rest = next;
  }
  return end;
}

/** The last second of {@link isoTime} and {@link timePrefixOf}, and its two forms. */
let isoSecond = Number.NaN;
let isoPrefix = '';
/** `,"time":"` and {@link isoPrefix}, as bytes. */
let timePrefix = new Uint8Array(0);

/** The ISO time up to its milliseconds (`2025-01-01T12:00:00.`), made once per second. */
function prefixOf(second: number): string {
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20);
    timePrefix = Buffer.from(`,"time":"${isoPrefix}`, 'latin1');
  }
  return isoPrefix;
}

/** `,"time":"2025-01-01T12:00:00.` as bytes, for a second within {@link MAX_SECOND}. */
function timePrefixOf(second: number): Uint8Array {
  prefixOf(second);
  return timePrefix;
}

/** The first second of the year 10000. */
const MAX_SECOND = 253_402_300_800;

/**
 * `new Date(ms).toISOString()`, with the part up to the second made once per second: most records
 * of a busy app share it, and `toISOString()` was a sizeable share of a record's cost.
 *
 * @example
 * ```ts
 * isoTime(Date.UTC(2025, 0, 1, 12, 0, 0, 7)); // '2025-01-01T12:00:00.007Z'
 * ```
 */
export function isoTime(ms: number): string {
  const whole = Math.floor(ms);
  const second = Math.floor(whole / 1000);
  // Years 0 to 9999 only: beyond, toISOString() writes a signed six-digit year of another length.
  if (!(second >= 0 && second < MAX_SECOND)) return new Date(ms).toISOString();
  const milli = whole - second * 1000;
  return `${prefixOf(second)}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}
