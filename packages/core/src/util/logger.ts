/**
 * The logging surface afterward needs: a subset of pino's, so a pino (or pino-compatible) logger
 * can be passed as is.
 *
 * @example
 * ```ts
 * import pino from 'pino';
 * createDispatcher({ logger: pino() });
 * ```
 */
export interface Logger {
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug?(obj: object, msg?: string): void;
}

import { originOfUrl, type LogUrls } from './redact-url.js';

type Level = 'warn' | 'error';

/** The key of {@link LazyWarn} on a logger made by {@link rateLimitLogger}. */
export const kLazyWarn = Symbol('afterward.lazyWarn');

/**
 * `warn(build(arg), msg)`, with `build` called only for a line that is written: a storm of
 * dropped notifications (one per send() while the queue is full) suppresses nearly every line,
 * and building each was about 130 bytes of garbage per send (issue 15 row 5).
 */
export type LazyWarn = <T>(msg: string, build: (arg: T) => object, arg: T) => void;

/**
 * The default logger: one line of JSON per event on stderr, because failures must never be
 * invisible by default, and `console` is kept out of library code.
 */
export const stderrLogger: Logger = {
  warn: (obj, msg) => writeLine('warn', obj, msg),
  error: (obj, msg) => writeLine('error', obj, msg),
};

function writeLine(level: Level, obj: object, msg: string | undefined): void {
  let line: string;
  try {
    line = JSON.stringify({ level, name: 'afterward', msg, ...obj }, errorReplacer);
  } catch {
    line = JSON.stringify({ level, name: 'afterward', msg });
  }
  process.stderr.write(`${line}\n`);
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const out: Record<string, unknown> = { type: value.name, message: value.message };
    if ('code' in value) out['code'] = (value as { code: unknown }).code;
    return out;
  }
  return value;
}

/**
 * Wraps a logger so that a storm of one kind of message (a dead endpoint failing thousands of
 * notifications) costs one line per interval, plus a count of what was suppressed. With
 * `urls: 'origin'` (the default) a `url` field becomes `origin`: the notification `id` next to it
 * correlates the line with the handle and events, which keep the full URL in-process. A logger
 * method that throws or returns a rejected promise is contained here, like an event listener.
 */
export function rateLimitLogger(logger: Logger, intervalMs = 1_000, urls: LogUrls = 'origin'): Logger {
  interface Window {
    until: number;
    suppressed: number;
    /** The newest suppressed line, reported with the count when the window closes. */
    last: object | undefined;
    /** Or what builds it, from `lastArg` (a lazy line, see {@link LazyWarn}). */
    lastBuild: ((arg: never) => object) | undefined;
    lastArg: unknown;
    timer: NodeJS.Timeout | undefined;
  }
  // Keyed by level, then message: a key made of both was a new string per call, which a storm
  // (10,000 dropped notifications) paid for in garbage on every line it suppressed.
  const windows = { warn: new Map<string, Window>(), error: new Map<string, Window>() };
  const write = (level: Level, obj: object, msg: string | undefined): void => {
    call(() => logger[level](obj, msg));
  };
  const open = (level: Level, key: string, now: number): void => {
    windows[level].set(key, {
      until: now + intervalMs,
      suppressed: 0,
      last: undefined,
      lastBuild: undefined,
      lastArg: undefined,
      timer: undefined,
    });
  };
  const shown = (obj: object): object => (urls === 'origin' ? withoutUrl(obj) : obj);
  // Its own function: a closure made in emit() would make emit() allocate its variables' context
  // on every call, suppressed ones included (about 70 bytes per dropped notification).
  const flushLater = (level: Level, key: string, msg: string | undefined, delay: number): NodeJS.Timeout =>
    setTimeout(() => {
      const current = windows[level].get(key);
      if (current === undefined || current.suppressed === 0) return;
      const last = current.last ?? current.lastBuild?.(current.lastArg as never);
      if (last === undefined) return;
      open(level, key, Date.now());
      write(level, { ...shown(last), suppressed: current.suppressed }, msg);
    }, delay).unref();
  /** A line: `given`, or `build(arg)` when there is no `given` (made only if written). */
  const emit = (
    level: Level,
    given: object | undefined,
    msg: string | undefined,
    build?: (arg: never) => object,
    arg?: unknown,
  ): void => {
    const key = msg ?? '';
    const now = Date.now();
    const window = windows[level].get(key);
    if (window !== undefined && now < window.until) {
      window.suppressed++;
      // Kept as given: the URL is redacted only if this one is written (a storm drops thousands).
      window.last = given;
      window.lastBuild = build;
      window.lastArg = arg;
      // A storm shorter than the window must still report its count: flush when it closes.
      window.timer ??= flushLater(level, key, msg, window.until - now);
      return;
    }
    if (window?.timer !== undefined) clearTimeout(window.timer);
    const suppressed = window?.suppressed ?? 0;
    open(level, key, now);
    const line = given ?? (build as (arg: unknown) => object)(arg);
    const obj = shown(line);
    write(level, suppressed > 0 ? { ...obj, suppressed } : obj, msg);
  };
  const lazyWarn: LazyWarn = (msg, build, arg) => {
    emit('warn', undefined, msg, build, arg);
  };
  const limited: Logger & { [kLazyWarn]: LazyWarn } = {
    warn: (obj, msg) => emit('warn', obj, msg),
    error: (obj, msg) => emit('error', obj, msg),
    [kLazyWarn]: lazyWarn,
  };
  if (logger.debug !== undefined) {
    const debug = logger.debug.bind(logger);
    limited.debug = (obj, msg) => call(() => debug(shown(obj), msg));
  }
  return limited;
}

// A broken logger must not break delivery, and an async one that rejects must not become an
// unhandled rejection (which ends the process): there is nowhere left to report either.
function call(fn: () => unknown): void {
  try {
    const result = fn();
    if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') {
      (result as PromiseLike<unknown>).then(undefined, ignore);
    }
  } catch {
    // See above.
  }
}

function ignore(): void {
  // Deliberately nothing: see call().
}

function withoutUrl(obj: object): object {
  if (!('url' in obj)) return obj;
  const { url, ...rest } = obj;
  if (typeof url !== 'string' && !(url instanceof URL)) return obj;
  return { ...rest, origin: originOfUrl(url) };
}
