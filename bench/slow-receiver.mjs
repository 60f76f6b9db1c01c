// 3. Slow receiver: confirm 'sent' (write the bytes, close, never wait for the answer) against
// confirm 'response' (hold the socket until the status line) at the same socket budget.
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { core } from './lib/packages.mjs';
import { fmt, goal, ratio } from './lib/report.mjs';
import { startReceiver } from './lib/receiver.mjs';
import { runTask } from './lib/task.mjs';

export const title = '3. Slow receiver';

const DELAY_MS = 200;
const SOCKETS = 16;
const silent = { warn() {}, error() {} };
// About 2 KB, so "the receiver got the full body" means more than one small packet.
const BODY = JSON.stringify({
  type: 'report.ready',
  id: 'rep_42',
  rows: Array.from({ length: 40 }, (_, i) => ({ i, name: `row-${i}`, value: i * 1.5, tag: 'x'.repeat(16) })),
});

/** Runs in a child process: sends `count` notifications, returns the time until all settled. */
export async function client({ kind, url, count }) {
  const started = performance.now();
  let ok = 0;
  if (kind === 'undici') {
    const pool = new Pool(new URL(url).origin, { connections: SOCKETS });
    await Promise.all(
      Array.from({ length: count }, async () => {
        const { statusCode, body } = await pool.request({
          path: new URL(url).pathname,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: BODY,
        });
        await body.dump();
        if (statusCode < 300) ok++;
      }),
    );
    const ms = performance.now() - started;
    await pool.destroy();
    return { ms, ok };
  }
  const { createDispatcher } = await core();
  const dispatcher = createDispatcher({
    concurrency: SOCKETS,
    concurrencyPerOrigin: SOCKETS,
    retry: false,
    logger: silent,
  });
  const confirm = kind === 'sent' ? 'sent' : 'response';
  const handles = [];
  for (let i = 0; i < count; i++) {
    handles.push(
      dispatcher.send(url, { body: BODY, headers: { 'content-type': 'application/json' }, confirm }),
    );
  }
  await dispatcher.drain({ timeout: 60_000 });
  const ms = performance.now() - started;
  for (const handle of handles) if (handle.state === 'sent' || handle.state === 'delivered') ok++;
  await dispatcher.close();
  return { ms, ok };
}

const CLIENTS = [
  ['response', "afterward, confirm: 'response'", 'response'],
  ['undici', 'raw undici Pool.request', 'response'],
  ['sent', "afterward, confirm: 'sent'", 'sent'],
];

export async function run({ smoke, log }) {
  const counts = { response: smoke ? 16 : 240, undici: smoke ? 16 : 240, sent: smoke ? 64 : 2_000 };
  const receiver = await startReceiver({ delayMs: DELAY_MS, status: 204 });
  const measured = {};
  try {
    for (const [kind] of CLIENTS) {
      await receiver.reset();
      const count = counts[kind];
      const result = await runTask(import.meta.url, 'client', { kind, url: receiver.url, count });
      // 'sent' settles once the bytes left; give the receiver a moment to finish reading them.
      const stats = await receiver.waitFor(count, 10_000);
      measured[kind] = { ...result, count, rps: (count * 1000) / result.ms, stats };
      log(
        `${kind}: ${fmt(measured[kind].rps)}/s, ${result.ok}/${count} ok, receiver ${stats.fullBodies} full bodies`,
      );
    }
  } finally {
    await receiver.close();
  }
  const base = measured.response.rps;
  const sent = measured.sent;
  const allBodies = sent.stats.fullBodies === sent.count && sent.stats.partialBodies === 0;
  const bytes = Buffer.byteLength(BODY);
  const chart = {
    file: 'slow-receiver.svg',
    title: `Slow receiver (${DELAY_MS} ms per request), ${SOCKETS} sockets: notifications per second`,
    subtitle: `2 cores, receiver in a separate process, ${new Date().toISOString().slice(0, 10)}, Node ${process.version}`,
    unit: '/s',
    bars: CLIENTS.map(([kind, label]) => ({
      label,
      value: measured[kind].rps,
      text: `${fmt(measured[kind].rps)}/s (${ratio(measured[kind].rps, base)})`,
      ours: kind !== 'undici',
    })),
  };
  return {
    title: `${title}: ${DELAY_MS} ms per request, ${SOCKETS} sockets for everyone`,
    note:
      `The receiver (separate process) reads each ${fmt(bytes)}-byte body, then waits ${DELAY_MS} ms before answering. ` +
      `Each client sends a fixed count and is timed until every notification settled; all run with ` +
      `${SOCKETS} sockets in flight (afterward: concurrency = concurrencyPerOrigin = ${SOCKETS}, retries off). ` +
      "With 'sent' a socket is held only while the bytes are written; the receiver's full-body count proves none were cut.",
    headers: [
      'client',
      'notifications',
      'time',
      'per second',
      "vs confirm: 'response'",
      'full bodies at receiver',
    ],
    rows: CLIENTS.map(([kind, label]) => [
      label,
      fmt(measured[kind].count),
      `${(measured[kind].ms / 1000).toFixed(2)} s`,
      fmt(measured[kind].rps),
      ratio(measured[kind].rps, base),
      `${fmt(measured[kind].stats.fullBodies)} / ${fmt(measured[kind].count)}`,
    ]),
    goals: [
      goal("confirm: 'sent' ≥ 5x confirm: 'response' throughput", sent.rps / base, '>=', 5, {
        smoke,
        unit: 'x',
      }),
      goal("receiver got every full body with confirm: 'sent'", allBodies ? 1 : 0, '>=', 1, {
        smoke,
        measured: `${fmt(sent.stats.fullBodies)} / ${fmt(sent.count)} full, ${sent.stats.partialBodies} cut`,
      }),
    ],
    chart,
  };
}
