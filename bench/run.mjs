// Runs every benchmark and prints its tables. `--smoke`: tiny counts, goals not judged (CI).
// `--only a,b`: run some modules. A full run also writes bench/results/ and the README's results.
// See README.md "Convention" for what a bench module exports.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { machine, machineLine, renderResult, table } from './lib/report.mjs';
import { barChart } from './lib/svg.mjs';

const BUILT_IN = ['dispatch', 'overhead', 'slow-receiver', 'memory', 'call-cost'];
// Written by others; run when present.
const OPTIONAL = ['audit', 'cpu', 'adapter-cost'];

const args = process.argv.slice(2);
const smoke = args.includes('--smoke');
const onlyAt = args.indexOf('--only');
const only = onlyAt >= 0 ? new Set((args[onlyAt + 1] ?? '').split(',')) : undefined;
const here = new URL('./', import.meta.url);
const resultsDir = new URL('results/', here);

const names = [...BUILT_IN, ...OPTIONAL.filter((name) => existsSync(new URL(`${name}.mjs`, here)))].filter(
  (name) => only === undefined || only.has(name),
);

const m = machine();
const header = [
  `# afterward benchmarks${smoke ? ' (smoke: tiny counts, goals not judged)' : ''}`,
  '',
  machineLine(m),
  '',
  `Machine: ${m.cores} cores shared by the app, the receiver and the load generator, so absolute ` +
    'figures are modest; every figure that matters is a ratio against a peer measured in the same run.',
  '',
].join('\n');
console.log(header);

const started = performance.now();
const sections = [];
const goals = [];
const charts = [];
const failures = [];
for (const name of names) {
  const t0 = performance.now();
  const log = (line) => console.error(`  [${name}] ${line}`);
  let results;
  try {
    const mod = await import(new URL(`${name}.mjs`, here).href);
    if (typeof mod.run !== 'function') throw new Error(`bench/${name}.mjs does not export run()`);
    results = await mod.run({ smoke, log });
  } catch (error) {
    failures.push(name);
    console.error(`bench/${name}.mjs failed:`, error);
    continue;
  }
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  for (const result of [results].flat()) {
    const text = renderResult(result);
    console.log(`${text}\n_(${name}: ${seconds} s)_\n`);
    sections.push(text);
    for (const g of result.goals ?? []) goals.push({ bench: result.title, ...g });
    if (result.chart) charts.push(result.chart);
  }
}

const total = ((performance.now() - started) / 1000).toFixed(0);
const summary = [
  '### Goals',
  '',
  goals.length > 0
    ? table(
        ['benchmark', 'goal', 'target', 'measured', 'verdict'],
        goals.map((g) => [g.bench.replace(/:.*/, ''), g.goal, g.target, g.measured, g.verdict]),
      )
    : '_No goals reported._',
  '',
  `Total time: ${total} s.${failures.length ? ` Failed: ${failures.join(', ')}.` : ''}`,
  '',
].join('\n');
console.log(summary);

if (!smoke && only === undefined) {
  await mkdir(resultsDir, { recursive: true });
  for (const chart of charts) await writeFile(new URL(chart.file, resultsDir), barChart(chart));
  const body = [
    `Last full run: ${machineLine(m)}.`,
    '',
    `Reproduce: \`pnpm bench\` (builds, then runs \`node bench/run.mjs\`; about ${total} s).`,
    '',
    ...sections,
    summary,
  ].join('\n');
  await writeFile(new URL('latest.md', resultsDir), `${header}\n${sections.join('\n')}\n${summary}`);
  await writeFile(new URL('latest.raw.json', resultsDir), JSON.stringify({ machine: m, goals }, null, 2));
  const readmeUrl = new URL('README.md', here);
  const readme = await readFile(readmeUrl, 'utf8');
  const start = '<!-- results:start -->';
  const end = '<!-- results:end -->';
  if (readme.includes(start) && readme.includes(end)) {
    const updated = `${readme.slice(0, readme.indexOf(start) + start.length)}\n\n${body}\n${readme.slice(readme.indexOf(end))}`;
    // Formatted like the rest of the repository, so `prettier --check` stays green after a run.
    const prettier = await import('prettier');
    const config = (await prettier.resolveConfig(readmeUrl)) ?? {};
    await writeFile(readmeUrl, await prettier.format(updated, { ...config, parser: 'markdown' }));
  }
  console.error(`wrote bench/results/ and the results section of bench/README.md`);
}
process.exitCode = failures.length > 0 ? 1 : 0;
