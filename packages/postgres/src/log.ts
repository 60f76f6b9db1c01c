import type { Logger } from '@afterward/core';

function line(level: 'warn' | 'error', obj: object, msg: string | undefined): void {
  let text: string;
  try {
    text = JSON.stringify({ level, name: 'afterward', msg, ...obj }, (_key, value: unknown) =>
      value instanceof Error
        ? { type: value.name, message: value.message, code: (value as { code?: unknown }).code }
        : value,
    );
  } catch {
    text = JSON.stringify({ level, name: 'afterward', msg });
  }
  process.stderr.write(`${text}\n`);
}

/** One JSON line per event on stderr: failures are never invisible by default. */
export const defaultLogger: Logger = {
  warn: (obj, msg) => line('warn', obj, msg),
  error: (obj, msg) => line('error', obj, msg),
};

/** Calls `report(count)` at most once per `windowMs`, with the count summed since the last call. */
export function rateLimited(windowMs: number, report: (count: number) => void): (count: number) => void {
  let pending = 0;
  let last = 0;
  let timer: NodeJS.Timeout | undefined;
  const fire = (): void => {
    timer = undefined;
    last = Date.now();
    const count = pending;
    pending = 0;
    if (count > 0) report(count);
  };
  return (count) => {
    pending += count;
    if (timer !== undefined) return;
    const wait = last + windowMs - Date.now();
    if (wait <= 0) fire();
    else timer = setTimeout(fire, wait).unref();
  };
}
