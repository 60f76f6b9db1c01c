// The batcher's CPU per audit-sized record, sending each batch to a receiver in its own process
// with the default transport (undici), against the same records to a transport answering 204 at
// once (no socket): what a batch's request and its 125 KiB body cost the app beyond the batcher's
// own work. Each measurement is a fresh process: 50,000 records to warm up, then `--records`
// counted by process.cpuUsage() (user + system), paced so that nothing is dropped. With `--old`,
// the same against another checkout's built packages, in the same rounds (A/B of builds).
//
//   node bench/batch-cpu.mjs [--rounds 4] [--records 400000] [--old /path] [--smoke]
//
// A manual bench, like split.mjs: not one of bench/run.mjs's modules. Exports run() as they do.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { arg } from './lib/args.mjs';
import { instantTransport } from './lib/instant-transport.mjs';
import { startReceiver } from './lib/receiver.mjs';
import { median, renderResult } from './lib/report.mjs';
import { runTask } from './lib/task.mjs';

export const title = "Batcher: CPU per audit record, a batch's request included (issue 15 row 3)";

/** One audit record as `auditLog()` writes it at its defaults (about 250 bytes). */
const RECORD = JSON.stringify({
  id: '3b0c8f8e-6a5e-4a53-9d0a-5a8f1c2b7e11',
  method: 'GET',
  path: '/order',
  route: '/order',
  status: 200,
  outcome: 'finished',
  ip: '127.0.0.1',
  userAgent:
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
  time: '2026-12-05T00:00:00.000Z',
  durationMs: 1.234,
});

/** In a fresh process (see runTask): `records` records through a batcher; µs of CPU per record. */
export async function measure({ root, sink, records, warm }) {
  const dist = (file) => pathToFileURL(`${root}/packages/core/dist/${file}`).href;
  const { createDispatcher, createBatcher } = await import(dist('index.js'));
  const { addJson } = await import(dist('batch/batcher.js'));
  const logger = { warn() {}, error() {} };
  const dispatcher =
    sink === undefined
      ? createDispatcher({ logger, transport: instantTransport() })
      : createDispatcher({ logger });
  const batcher = createBatcher(dispatcher, { url: sink ?? 'http://127.0.0.1:9/audit' });
  const send = async (count) => {
    for (let i = 0; i < count; i++) {
      addJson(batcher, RECORD);
      if (i % 500 === 499) {
        await new Promise((resolve) => setImmediate(resolve));
        // Paced below maxPending: a dropped record costs an error, not a request.
        while (batcher.pending() > 3_000) await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
    await dispatcher.drain();
  };
  await send(warm);
  const before = process.cpuUsage();
  await send(records);
  const used = process.cpuUsage(before);
  const { dropped } = dispatcher.stats();
  await dispatcher.close();
  return { user: used.user / records, system: used.system / records, dropped };
}

/**
 * @param {{ smoke: boolean, log: (line: string) => void, rounds?: number, records?: number,
 *   old?: string }} ctx
 */
export async function run({ smoke, log, rounds, records, old }) {
  rounds ??= smoke ? 1 : 4;
  records ??= smoke ? 5_000 : 400_000;
  const warm = smoke ? 1_000 : 50_000;
  const here = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
  // The receiver: a process of its own, so that the measured one counts only its side.
  const receiver = await startReceiver();
  const sink = receiver.url;
  const kinds = [
    { key: 'undici', root: here, sink },
    ...(old === undefined ? [] : [{ key: 'undici (old build)', root: old, sink }]),
    { key: 'instant', root: here, sink: undefined },
  ];
  const runs = Object.fromEntries(kinds.map(({ key }) => [key, []]));
  try {
    for (let round = 0; round < rounds; round++) {
      // Order reversed every other round.
      for (const kind of round % 2 === 0 ? kinds : [...kinds].reverse()) {
        const result = await runTask(import.meta.url, 'measure', {
          root: kind.root,
          sink: kind.sink,
          records,
          warm,
        });
        if (result.dropped !== 0) throw new Error(`${kind.key} dropped ${result.dropped} records`);
        runs[kind.key].push(result);
        log(
          `round ${round + 1}, ${kind.key}: user ${result.user.toFixed(2)} µs, system ${result.system.toFixed(2)} µs a record`,
        );
      }
    }
    if ((await receiver.stats()).fullBodies === 0) throw new Error('the receiver got no batch');
  } finally {
    await receiver.close();
  }
  const of = (key, part) => median(runs[key].map((r) => (part === 'total' ? r.user + r.system : r[part])));
  const instant = of('instant', 'total');
  return {
    title,
    note:
      `CPU time (process.cpuUsage) of a process adding ${records} records of ${RECORD.length} bytes ` +
      `to a batcher at its defaults (500 a batch), after ${warm} to warm up; ${rounds} rounds, a ` +
      `fresh process each, median. The receiver (204) is another process.`,
    headers: ['transport', 'CPU per record', 'user', 'system', 'beyond instant'],
    rows: kinds.map(({ key }) => [
      key === 'undici (old build)' ? `undici, ${old}` : key,
      `${of(key, 'total').toFixed(2)} µs`,
      `${of(key, 'user').toFixed(2)} µs`,
      `${of(key, 'system').toFixed(2)} µs`,
      key === 'instant' ? '' : `+${(of(key, 'total') - instant).toFixed(2)} µs`,
    ]),
    goals: [],
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await run({
    smoke: process.argv.includes('--smoke'),
    log: (line) => console.error(`  ${line}`),
    rounds: arg('rounds') === undefined ? undefined : Number(arg('rounds')),
    records: arg('records') === undefined ? undefined : Number(arg('records')),
    old: arg('old'),
  });
  console.log(renderResult(result));
}
