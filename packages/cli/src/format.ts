import type { DeadLetter } from '@afterward/sqlite';
import { UsageError } from './usage.js';

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * A point in time from the command line: an ISO date, epoch milliseconds, or a duration ago
 * (`90s`, `15m`, `2h`, `7d`, `1w`).
 *
 * @example
 * ```ts
 * parseTime('2h', Date.now()); parseTime('2026-12-01T00:00:00Z', Date.now());
 * ```
 */
export function parseTime(flag: string, value: string, now: number): number {
  const ago = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(value);
  if (ago !== null) return now - Number(ago[1]) * UNITS[ago[2]!]!;
  if (/^\d{10,}$/.test(value)) return Number(value);
  const at = Date.parse(value);
  if (Number.isNaN(at)) {
    throw new UsageError(
      `--${flag} wants an ISO date, epoch milliseconds or a duration ago like 2h, got '${value}'`,
    );
  }
  return at;
}

/**
 * The dead letters as an aligned table; the URL is shown as its origin only (path and query may
 * hold tokens).
 *
 * @example
 * ```ts
 * process.stdout.write(deadTable(await admin.listDead({})));
 * ```
 */
export function deadTable(rows: readonly DeadLetter[]): string {
  const header = ['ID', 'ORIGIN', 'STATUS', 'CODE', 'ATTEMPTS', 'FAILED AT', 'REASON'];
  const lines = rows.map((d) => [
    d.id,
    d.origin,
    d.status === null ? '-' : String(d.status),
    d.errorCode ?? '-',
    String(d.attempts),
    new Date(d.failedAt).toISOString(),
    d.reason,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [format(header), ...lines.map(format)].join('\n') + '\n';
}

/**
 * One dead letter, field per line, for `afterward dead show`.
 *
 * @example
 * ```ts
 * process.stdout.write(deadDetail(letter));
 * ```
 */
export function deadDetail(d: DeadLetter): string {
  const url = new URL(d.url);
  const fields: Array<[string, string]> = [
    ['id', d.id],
    ['key', d.key],
    ['method', d.method],
    // Path shown, query hidden: it may hold a token (`--json` prints the stored notification).
    ['url', `${url.origin}${url.pathname}${url.search === '' ? '' : '?…'}`],
    ['status', d.status === null ? '-' : String(d.status)],
    ['error code', d.errorCode ?? '-'],
    ['error', d.errorMessage ?? '-'],
    ['attempts', String(d.attempts)],
    ['created at', new Date(d.createdAt).toISOString()],
    ['failed at', new Date(d.failedAt).toISOString()],
    ['reason', d.reason],
  ];
  const width = Math.max(...fields.map(([name]) => name.length));
  return fields.map(([name, value]) => `${name.padEnd(width)}  ${value}`).join('\n') + '\n';
}

/**
 * A one-line progress bar, redrawn in place on a terminal.
 *
 * @example
 * ```ts
 * stderr.write(progressBar(30, 120, 'replaying'));
 * ```
 */
export function progressBar(done: number, total: number, label: string, width = 30): string {
  const filled = total === 0 ? width : Math.round((done / total) * width);
  return `\r${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total}`;
}
