// Formatting for bench results: numbers, ratios, goals with a verdict, and Markdown tables that
// read well in a terminal and paste into a README unchanged.
import os from 'node:os';

/** A number for a table: thousands separated, `digits` decimals. */
export function fmt(value, digits = 0) {
  if (value === undefined || value === null || Number.isNaN(value)) return 'n/a';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** `ours / peer` as `0.95x` (two decimals; one above 10x). */
export function ratio(ours, peer) {
  if (!(peer > 0) || !Number.isFinite(ours)) return 'n/a';
  const value = ours / peer;
  return `${value >= 10 ? value.toFixed(1) : value.toFixed(2)}x`;
}

/** Milliseconds or microseconds, whichever reads better. */
export function duration(ms) {
  if (ms === undefined || Number.isNaN(ms)) return 'n/a';
  if (ms < 0.01) return `${(ms * 1e6).toFixed(0)} ns`;
  if (ms < 1) return `${(ms * 1e3).toFixed(2)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** Bytes as MB (10^6), one decimal. */
export function mb(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

const SHOW = {
  x: (v) => (v >= 10 ? `${v.toFixed(1)}x` : `${v.toFixed(2)}x`),
  MB: (v) => `${v.toFixed(1)} MB`,
  µs: (v) => `${v.toFixed(2)} µs`,
};

/**
 * A goal with its verdict. Not an assertion: a missed goal is printed, never thrown.
 * @param {string} name what the goal says, e.g. 'afterward >= 0.9x raw undici'
 * @param {number} value the measured value, in `unit`
 * @param {'>=' | '<='} cmp
 * @param {number} target
 * @param {{ smoke?: boolean, unit?: 'x' | 'MB' | 'µs' | string, measured?: string }} [options]
 */
export function goal(name, value, cmp, target, options = {}) {
  const unit = options.unit ?? '';
  const show = SHOW[unit] ?? ((v) => `${fmt(v, 2)}${unit ? ` ${unit}` : ''}`);
  const met = Number.isFinite(value) && (cmp === '>=' ? value >= target : value <= target);
  return {
    goal: name,
    target: `${cmp === '>=' ? '≥' : '≤'} ${show(target)}`,
    measured: options.measured ?? (Number.isFinite(value) ? show(value) : 'n/a'),
    met: options.smoke ? null : met,
    verdict: options.smoke ? 'not judged (smoke)' : met ? 'meets goal' : 'misses goal',
  };
}

/** A Markdown table, columns padded so it also reads in a terminal. */
export function table(headers, rows) {
  const cells = [headers, ...rows].map((row) => row.map((cell) => String(cell ?? '')));
  const widths = headers.map((_, i) => Math.max(3, ...cells.map((row) => [...(row[i] ?? '')].length)));
  const line = (row) =>
    `| ${row.map((cell, i) => cell + ' '.repeat(widths[i] - [...cell].length)).join(' | ')} |`;
  return [
    line(cells[0]),
    `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`,
    ...cells.slice(1).map(line),
  ].join('\n');
}

/** One result (see README "Convention") as Markdown. */
export function renderResult(result) {
  const parts = [`### ${result.title}`, ''];
  if (result.note) parts.push(result.note, '');
  if (result.rows?.length) parts.push(table(result.headers, result.rows), '');
  if (result.goals?.length) {
    parts.push(
      table(
        ['goal', 'target', 'measured', 'verdict'],
        result.goals.map((g) => [g.goal, g.target, g.measured, g.verdict]),
      ),
      '',
    );
  }
  if (result.chart) parts.push(`![${result.chart.title}](results/${result.chart.file})`, '');
  return parts.join('\n');
}

/** The machine line every report starts with. */
export function machine() {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    cores: cpus.length,
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
  };
}

export function machineLine(m = machine()) {
  return (
    `${m.date} · Node ${m.node} · ${m.platform} · ${m.cores} cores (${m.cpu}), ${m.memory} · ` +
    `receiver in a separate process; HTTP load (autocannon) in a separate process`
  );
}

/** Median of numbers. */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
