import { once } from 'node:events';
import { createWorker, postgresBackend } from '@afterward/postgres';
import type { WorkerOptions } from '@afterward/postgres';
import { UsageError } from './usage.js';

/** What `afterward worker` reads from its flags. */
export interface WorkerFlags {
  postgres: string;
  schema?: string | undefined;
  queue?: string | undefined;
  concurrency?: number | undefined;
  perOrigin?: number | undefined;
  drainTimeout: number;
  guard?: 'public-only' | undefined;
  secret?: string | undefined;
}

interface Io {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/**
 * `afterward worker --postgres URL`: delivers the fleet's queue until SIGTERM or SIGINT, then
 * drains within `--drain-timeout` and returns the rest to the queue.
 *
 * @example
 * ```ts
 * await runWorker({ postgres: 'postgres://postgres@127.0.0.1/app', drainTimeout: 10_000 }, io);
 * ```
 */
export async function runWorker(flags: WorkerFlags, io: Io): Promise<number> {
  // One JSON line per warning; an error as its message and code, not the whole object graph.
  const line = (level: string, obj: object, msg?: string): void => {
    const fields: Record<string, unknown> = { level, msg };
    for (const [key, value] of Object.entries(obj)) {
      fields[key] =
        value instanceof Error ? { message: value.message, code: (value as { code?: unknown }).code } : value;
    }
    io.stderr.write(`${JSON.stringify(fields)}\n`);
  };
  const logger = {
    warn: (obj: object, msg?: string) => line('warn', obj, msg),
    error: (obj: object, msg?: string) => line('error', obj, msg),
  };
  const backend = postgresBackend({
    connectionString: flags.postgres,
    ...(flags.schema === undefined ? {} : { schema: flags.schema }),
    ...(flags.queue === undefined ? {} : { queue: flags.queue }),
    logger,
  });
  const options: WorkerOptions = { backend, logger };
  if (flags.concurrency !== undefined) options.concurrency = flags.concurrency;
  if (flags.perOrigin !== undefined) options.concurrencyPerOrigin = flags.perOrigin;
  if (flags.guard !== undefined) options.guard = flags.guard;
  if (flags.secret !== undefined) options.signing = { secret: flags.secret };
  const worker = createWorker(options);
  const stop = Promise.race([once(process, 'SIGTERM'), once(process, 'SIGINT')]);
  await Promise.race([worker.ready(), stop]);
  io.stdout.write(`afterward worker: ready (pid ${process.pid})\n`);
  await stop;
  const closed = await worker.close({ timeout: flags.drainTimeout });
  await backend.close({ timeout: 1_000 });
  io.stdout.write(`${JSON.stringify({ stopped: true, ...closed, stats: worker.stats() })}\n`);
  return 0;
}

/** A positive whole number flag. */
export function positiveFlag(name: string, value: string | boolean | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  if (!/^[1-9]\d*$/.test(value))
    throw new UsageError(`--${name} wants a positive whole number, got '${value}'`);
  return Number(value);
}
