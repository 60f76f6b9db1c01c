import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isAfterwardError } from '@afterward/core';
import type { DeadLetter, DeadLetterFilter, OutboxAdmin } from '@afterward/sqlite';
import { backends } from './backends.js';
import { deadDetail, deadTable, parseTime, progressBar } from './format.js';
import { EXIT, UsageError } from './usage.js';
import { positiveFlag, runWorker } from './worker.js';

/** Where the command writes, and what it reads from its environment; a test passes its own. */
export interface CommandIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  env: Record<string, string | undefined>;
  now?: () => number;
}

export { backends } from './backends.js';
export type { Backend } from './backends.js';
export { EXIT } from './usage.js';

const HELP = `afterward: dead letters and stats of an afterward outbox

Usage:
  afterward dead list    BACKEND [filters] [--limit N] [--json]
  afterward dead show    BACKEND ID [--json]
  afterward dead replay  BACKEND ID... | --all [filters] [--dry-run] [--rate N/s]
  afterward dead purge   BACKEND --all | [filters] [--dry-run]
  afterward stats        BACKEND [--json]
  afterward worker       --postgres URL [--concurrency N] [--per-origin N] [--drain-timeout MS]
                         [--guard public-only]   (signs with AFTERWARD_SIGNING_SECRET if set)

Backend (or its environment variable):
${Object.entries(backends)
  .map(([name, b]) => `  --${name} ${b.valueName}`.padEnd(26) + `(${b.env})`)
  .join('\n')}

Filters:
  --origin O           e.g. https://hooks.example.com
  --status N           last HTTP status
  --code C             error code, e.g. AFTERWARD_ERR_HTTP_STATUS
  --since T, --until T failed at or after / before: ISO date, epoch ms, or ago (15m, 2h, 7d)

Environment: AFTERWARD_BUSY_TIMEOUT=MS, how long a write waits for the app's lock (default 5000);
AFTERWARD_POSTGRES_SCHEMA, the fleet's schema (default afterward).

Exit codes: 0 ok, 1 failure, 2 bad usage, 3 no outbox at that path, 4 unknown id,
5 locked by another process, 6 read-only.
`;

const OPTIONS = {
  ...Object.fromEntries(Object.keys(backends).map((name) => [name, { type: 'string' as const }])),
  origin: { type: 'string' },
  status: { type: 'string' },
  code: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
  all: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  rate: { type: 'string' },
  concurrency: { type: 'string' },
  'per-origin': { type: 'string' },
  'drain-timeout': { type: 'string' },
  guard: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

type Values = Partial<Record<keyof typeof OPTIONS, string | boolean>>;

interface Context {
  values: Values;
  args: string[];
  io: CommandIo;
  now: number;
}

/**
 * Runs the `afterward` command with `argv` (without `node` and the script) and returns its exit
 * code; it never throws and never calls `process.exit`.
 *
 * @example
 * ```ts
 * process.exitCode = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
 * ```
 */
export async function run(argv: readonly string[], io: CommandIo): Promise<number> {
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...argv],
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    return usage(io, error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help === true || positionals.length === 0 || positionals[0] === 'help') {
    io.stdout.write(HELP);
    return positionals.length === 0 && values.help !== true ? EXIT.usage : EXIT.ok;
  }
  const [group, verb, ...rest] = positionals;
  const ctx: Context = { values, args: [], io, now: io.now?.() ?? Date.now() };
  let command: ((admin: OutboxAdmin, ctx: Context) => Promise<number>) | undefined;
  if (group === 'stats') {
    command = stats;
    ctx.args = verb === undefined ? rest : [verb, ...rest];
  } else if (group === 'dead') {
    command = verb === undefined ? undefined : DEAD[verb];
    ctx.args = rest;
    if (command === undefined)
      return usage(io, `unknown command 'dead ${verb ?? ''}': use list, show, replay or purge`);
  } else if (group === 'worker') {
    return worker(values, verb === undefined ? rest : [verb, ...rest], io);
  } else {
    return usage(io, `unknown command '${group}': use dead, stats or worker`);
  }
  let admin: OutboxAdmin | undefined;
  try {
    admin = await openBackend(values, io);
    return await command(admin, ctx);
  } catch (error) {
    return fail(io, error);
  } finally {
    await admin?.close().catch(() => undefined);
  }
}

async function worker(values: Values, args: string[], io: CommandIo): Promise<number> {
  try {
    if (args.length > 0) throw new UsageError(`worker takes no arguments, got '${args.join(' ')}'`);
    const url =
      typeof (values as Record<string, unknown>).postgres === 'string'
        ? ((values as Record<string, unknown>).postgres as string)
        : io.env.AFTERWARD_POSTGRES;
    if (url === undefined || url === '') throw new UsageError('worker needs --postgres URL');
    if (values.guard !== undefined && values.guard !== 'public-only')
      throw new UsageError(`--guard takes public-only, got '${String(values.guard)}'`);
    const secret = io.env.AFTERWARD_SIGNING_SECRET;
    return await runWorker(
      {
        postgres: url,
        schema: io.env.AFTERWARD_POSTGRES_SCHEMA,
        concurrency: positiveFlag('concurrency', values.concurrency),
        perOrigin: positiveFlag('per-origin', values['per-origin']),
        drainTimeout: positiveFlag('drain-timeout', values['drain-timeout']) ?? 10_000,
        guard: values.guard === 'public-only' ? 'public-only' : undefined,
        secret: secret === undefined || secret === '' ? undefined : secret,
      },
      io,
    );
  } catch (error) {
    if (error instanceof UsageError) return usage(io, error.message);
    return fail(io, error);
  }
}

const DEAD: Record<string, (admin: OutboxAdmin, ctx: Context) => Promise<number>> = {
  list: async (admin, ctx) => {
    noArgs(ctx, 'dead list');
    const rows = await admin.listDead(filterOf(ctx));
    if (ctx.values.json === true) ctx.io.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    else if (rows.length === 0) ctx.io.stdout.write('no dead letters\n');
    else ctx.io.stdout.write(deadTable(rows));
    return EXIT.ok;
  },
  show: async (admin, ctx) => {
    if (ctx.args.length !== 1) throw new UsageError('dead show takes exactly one ID');
    const id = ctx.args[0]!;
    const found = await admin.showDead(id);
    if (found === undefined) {
      ctx.io.stderr.write(`afterward: no dead letter with id or key '${id}'\n`);
      return EXIT.unknownId;
    }
    ctx.io.stdout.write(ctx.values.json === true ? JSON.stringify(found, null, 2) + '\n' : deadDetail(found));
    return EXIT.ok;
  },
  replay: async (admin, ctx) => {
    const rate = rateOf(ctx.values.rate);
    const { letters, missing } = await select(admin, ctx, 'dead replay');
    if (ctx.values['dry-run'] === true) {
      ctx.io.stdout.write(`would replay ${letters.length} dead letter(s)\n`);
      if (letters.length > 0) ctx.io.stdout.write(deadTable(letters));
      return missing === 0 ? EXIT.ok : EXIT.unknownId;
    }
    const bar = ctx.io.stderr.isTTY === true && letters.length > 1;
    const gap = rate === undefined ? 0 : 1000 / rate;
    let replayed = 0;
    let skipped = 0;
    const started = performance.now();
    for (let i = 0; i < letters.length; i++) {
      if (gap > 0) {
        const wait = started + i * gap - performance.now();
        if (wait > 0) await sleep(wait);
      }
      // false: replayed meanwhile (by another run): replaying twice never duplicates.
      if (await admin.replayDead(letters[i]!.key)) replayed++;
      else skipped++;
      if (bar) ctx.io.stderr.write(progressBar(i + 1, letters.length, 'replaying'));
    }
    if (bar) ctx.io.stderr.write('\n');
    ctx.io.stdout.write(
      `replayed ${replayed} dead letter(s)${skipped > 0 ? `, ${skipped} already replayed` : ''} (same webhook ids)\n`,
    );
    return missing === 0 ? EXIT.ok : EXIT.unknownId;
  },
  purge: async (admin, ctx) => {
    noArgs(ctx, 'dead purge');
    const filter = filterOf(ctx);
    if (ctx.values.all !== true && Object.keys(filter).length === 0) {
      throw new UsageError('dead purge deletes dead letters for good: give filters, or --all for every one');
    }
    if (ctx.values['dry-run'] === true) {
      const letters = await admin.listDead(filter);
      ctx.io.stdout.write(`would purge ${letters.length} dead letter(s)\n`);
      return EXIT.ok;
    }
    const purged = await admin.purgeDead(filter);
    ctx.io.stdout.write(`purged ${purged} dead letter(s)\n`);
    return EXIT.ok;
  },
};

async function stats(admin: OutboxAdmin, ctx: Context): Promise<number> {
  noArgs(ctx, 'stats');
  const counts = await admin.stats();
  if (ctx.values.json === true) {
    ctx.io.stdout.write(JSON.stringify(counts) + '\n');
  } else {
    const width = Math.max(...Object.keys(counts).map((k) => k.length));
    for (const [name, value] of Object.entries(counts))
      ctx.io.stdout.write(`${name.padEnd(width)}  ${value}\n`);
  }
  return EXIT.ok;
}

async function select(
  admin: OutboxAdmin,
  ctx: Context,
  name: string,
): Promise<{ letters: DeadLetter[]; missing: number }> {
  if (ctx.values.all === true || ctx.args.length === 0) {
    if (ctx.args.length > 0) throw new UsageError(`${name}: give IDs or --all, not both`);
    if (ctx.values.all !== true)
      throw new UsageError(`${name}: give IDs, or --all (with filters) for every match`);
    return { letters: await admin.listDead(filterOf(ctx)), missing: 0 };
  }
  if (Object.keys(filterOf(ctx)).length > 0)
    throw new UsageError(`${name}: filters go with --all, not with IDs`);
  const letters: DeadLetter[] = [];
  let missing = 0;
  for (const id of ctx.args) {
    const found = await admin.showDead(id);
    if (found === undefined) {
      ctx.io.stderr.write(
        `afterward: no dead letter with id or key '${id}' (unknown, or already replayed)\n`,
      );
      missing++;
    } else {
      letters.push(found);
    }
  }
  return { letters, missing };
}

function filterOf(ctx: Context): DeadLetterFilter {
  const { values, now } = ctx;
  const filter: DeadLetterFilter = {};
  if (typeof values.origin === 'string') {
    let origin: string;
    try {
      origin = new URL(values.origin).origin;
    } catch {
      throw new UsageError(
        `--origin wants a URL origin like https://hooks.example.com, got '${values.origin}'`,
      );
    }
    filter.origin = origin;
  }
  if (typeof values.status === 'string') {
    const status = Number(values.status);
    if (!/^\d{3}$/.test(values.status) || status < 100 || status > 599) {
      throw new UsageError(`--status wants an HTTP status (100-599), got '${values.status}'`);
    }
    filter.status = status;
  }
  if (typeof values.code === 'string') filter.errorCode = values.code;
  if (typeof values.since === 'string') filter.since = parseTime('since', values.since, now);
  if (typeof values.until === 'string') filter.until = parseTime('until', values.until, now);
  if (typeof values.limit === 'string') {
    if (!/^\d+$/.test(values.limit))
      throw new UsageError(`--limit wants a whole number, got '${values.limit}'`);
    filter.limit = Number(values.limit);
  }
  return filter;
}

function rateOf(value: string | boolean | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+(?:\.\d+)?)(?:\/s)?$/.exec(value);
  const rate = match === null ? NaN : Number(match[1]);
  if (!(rate > 0)) throw new UsageError(`--rate wants replays per second like 50 or 50/s, got '${value}'`);
  return rate;
}

function noArgs(ctx: Context, name: string): void {
  if (ctx.args.length > 0) throw new UsageError(`${name} takes no arguments, got '${ctx.args.join(' ')}'`);
}

async function openBackend(values: Values, io: CommandIo): Promise<OutboxAdmin> {
  const chosen = Object.entries(backends).flatMap(([name, backend]) => {
    const flag = values[name as keyof Values];
    const target = typeof flag === 'string' ? flag : io.env[backend.env];
    return target === undefined || target === '' ? [] : [{ name, backend, target }];
  });
  const names = Object.keys(backends).map((n) => `--${n}`);
  if (chosen.length === 0) throw new UsageError(`which outbox? give ${names.join(' or ')}`);
  if (chosen.length > 1)
    throw new UsageError(`give one outbox, got ${chosen.map((c) => `--${c.name}`).join(' and ')}`);
  const { backend, target } = chosen[0]!;
  return backend.open(target, io.env);
}

function usage(io: CommandIo, message: string): number {
  io.stderr.write(`afterward: ${message}\nRun 'afterward --help' for usage.\n`);
  return EXIT.usage;
}

const EXIT_BY_CODE: Record<string, number> = {
  AFTERWARD_ERR_OUTBOX_NOT_FOUND: EXIT.noOutbox,
  AFTERWARD_ERR_OUTBOX_NO_DIRECTORY: EXIT.noOutbox,
  AFTERWARD_ERR_OUTBOX_NOT_AN_OUTBOX: EXIT.noOutbox,
  AFTERWARD_ERR_OUTBOX_LOCKED: EXIT.locked,
  AFTERWARD_ERR_OUTBOX_READ_ONLY: EXIT.readOnly,
};

function fail(io: CommandIo, error: unknown): number {
  if (error instanceof UsageError) return usage(io, error.message);
  const message = error instanceof Error ? error.message : String(error);
  io.stderr.write(`afterward: ${message}\n`);
  if (isAfterwardError(error)) return EXIT_BY_CODE[error.code] ?? EXIT.failure;
  return EXIT.failure;
}
