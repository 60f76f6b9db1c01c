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
    `{"id":"${newId()}","time":"${isoTime(arrivedAt)}"${field('method', info.method)}` +
    `${field('path', query === -1 ? url : url.slice(0, query))}${field('route', info.route)}` +
    `${field('status', info.statusCode)}${field('durationMs', Math.round(durationMs * 1000) / 1000)}` +
    `${field('outcome', info.outcome)}${field('query', params)}${field('ip', ip)}` +
    `${field('userAgent', userAgent)}${field('requestId', requestId)}}`
  );
}

/**
 * The most bytes {@link writeRecord} writes besides its strings' characters: names, quotes and
 * separators (about 170), the id (36), the time (24) and two numbers (at most 25). Generous: a
 * typed array drops writes past its end without a word.
 */
export const RECORD_FRAME = 512;

/**
 * Writes the JSON {@link recordJson} makes for one record, as UTF-8, into `buf` from `at`: the
 * same bytes, without making the string (about thirty concatenations, their flattening, and the
 * conversion to UTF-8). `buf` has {@link RECORD_FRAME} bytes free past `at` plus one per UTF-16
 * unit of the strings. Returns where the record ends, or -1 when it has what only recordJson()
 * writes: a character JSON escapes or one beyond ASCII, a status or duration out of the plain
 * integer range, a time outside the years 0 to 9999. What was written then counts for nothing.
 * `queryJson` is the redacted query's JSON, or undefined when the URL has none; `pathEnd` is
 * where the path ends in `url` (its `?`, or its length).
 *
 * @example
 * ```ts
 * const end = writeRecord(buf, at, 'GET', '/users/7', 8, '/users/:id', 200, 3.2, false,
 *   undefined, '10.0.0.1', 'curl/8', undefined, Date.now() - 3.2);
 * ```
 */
export function writeRecord(
  buf: Uint8Array,
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
  let p = literal(buf, at, '{"id":"');
  p = writeId(buf, p);
  p = literal(buf, p, '","time":"');
  p = writeIsoTime(buf, p, arrivedAt);
  if (p === -1) return -1;
  p = text(buf, literal(buf, p, '","method":"'), method, 0, method.length);
  if (p === -1) return -1;
  p = text(buf, literal(buf, p, '","path":"'), url, 0, pathEnd);
  if (p === -1) return -1;
  if (route !== undefined) {
    p = text(buf, literal(buf, p, '","route":"'), route, 0, route.length);
    if (p === -1) return -1;
  }
  p = digits(buf, literal(buf, p, '","status":'), code);
  // JSON.stringify(Math.round(durationMs * 1000) / 1000): the whole milliseconds, then up to three
  // decimals without their trailing zeros (exact below 2 ** 31 µs, where a double holds them all).
  const whole = (micros / 1000) | 0;
  const fraction = micros - whole * 1000;
  p = digits(buf, literal(buf, p, ',"durationMs":'), whole);
  if (fraction !== 0) {
    const hundreds = (fraction / 100) | 0;
    const tens = ((fraction / 10) | 0) - hundreds * 10;
    const ones = fraction - ((fraction / 10) | 0) * 10;
    buf[p++] = 0x2e; // '.'
    buf[p++] = 0x30 + hundreds;
    if (tens !== 0 || ones !== 0) buf[p++] = 0x30 + tens;
    if (ones !== 0) buf[p++] = 0x30 + ones;
  }
  p = literal(buf, p, aborted ? ',"outcome":"aborted"' : ',"outcome":"finished"');
  if (queryJson !== undefined) {
    // Already JSON: only what is beyond ASCII (which UTF-8 writes in more bytes) sends it the long way.
    p = literal(buf, p, ',"query":');
    for (let i = 0; i < queryJson.length; i++) {
      const c = queryJson.charCodeAt(i);
      if (c > 0x7f) return -1;
      buf[p++] = c;
    }
  }
  if (ip !== undefined) {
    p = text(buf, literal(buf, p, ',"ip":"'), ip, 0, ip.length);
    if (p === -1) return -1;
    buf[p++] = 0x22;
  }
  if (userAgent !== undefined) {
    p = text(buf, literal(buf, p, ',"userAgent":"'), userAgent, 0, userAgent.length);
    if (p === -1) return -1;
    buf[p++] = 0x22;
  }
  if (requestId !== undefined) {
    p = text(buf, literal(buf, p, ',"requestId":"'), requestId, 0, requestId.length);
    if (p === -1) return -1;
    buf[p++] = 0x22;
  }
  buf[p++] = 0x7d; // '}'
  return p;
}

/** Writes an ASCII constant; returns its end. */
function literal(buf: Uint8Array, at: number, value: string): number {
  for (let i = 0; i < value.length; i++) buf[at + i] = value.charCodeAt(i);
  return at + value.length;
}

/**
 * Writes `value` from `from` to `to` as the inside of a JSON string: -1 at a character JSON
 * escapes (quote, backslash, control) or one beyond ASCII (more than one byte in UTF-8).
 */
function text(buf: Uint8Array, at: number, value: string, from: number, to: number): number {
  if (at === -1) return -1;
  let p = at;
  for (let i = from; i < to; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7f || c === 0x22 || c === 0x5c) return -1;
    buf[p++] = c;
  }
  return p;
}

/** Writes a small integer (0 to 2 ** 31 - 1) in decimal; returns its end. */
function digits(buf: Uint8Array, at: number, value: number): number {
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

let isoSecond = Number.NaN;
let isoPrefix = '';

/** `2025-01-01T12:00:00.`: the ISO time up to its milliseconds, made once per second. */
function prefixOf(second: number): string {
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20);
  }
  return isoPrefix;
}

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
  if (!(second >= 0 && second < 253_402_300_800)) return new Date(ms).toISOString();
  const milli = whole - second * 1000;
  return `${prefixOf(second)}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

/** {@link isoTime} written as 24 ASCII bytes from `at`; -1 outside the years 0 to 9999. */
function writeIsoTime(buf: Uint8Array, at: number, ms: number): number {
  const whole = Math.floor(ms);
  const second = Math.floor(whole / 1000);
  if (!(second >= 0 && second < 253_402_300_800)) return -1;
  let p = literal(buf, at, prefixOf(second));
  const milli = (whole - second * 1000) | 0;
  const tenths = (milli / 10) | 0;
  buf[p++] = 0x30 + ((milli / 100) | 0);
  buf[p++] = 0x30 + tenths - ((milli / 100) | 0) * 10;
  buf[p++] = 0x30 + milli - tenths * 10;
  buf[p++] = 0x5a; // 'Z'
  return p;
}
