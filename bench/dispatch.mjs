// 1. Dispatcher throughput: closed loop, equal concurrency, small JSON body, confirm: 'response'.
// Each client runs in its own fresh process; the receiver in another.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { core } from './lib/packages.mjs';
import { fmt, goal, median, ratio } from './lib/report.mjs';
import { startReceiver } from './lib/receiver.mjs';
import { runTask } from './lib/task.mjs';
import { PAYLOAD } from './lib/payload.mjs';

export const title = '1. Dispatcher throughput';

const silent = { warn() {}, error() {} };

/** Runs in a child process: one client, `concurrency` workers in a closed loop, for a fixed time. */
export async function client({ kind, url, concurrency, warmupMs, durationMs }) {
  const target = new URL(url);
  const headers = { 'content-type': 'application/json' };
  let once;
  let close = async () => {};
  switch (kind) {
    case 'afterward':
    case 'afterward-defaults': {
      const { createDispatcher } = await core();
      const dispatcher = createDispatcher({
        ...(kind === 'afterward' ? { concurrency, concurrencyPerOrigin: concurrency } : {}),
        retry: false,
        logger: silent,
      });
      once = async () => (await dispatcher.send(url, { json: PAYLOAD }).done).state === 'delivered';
      close = async () => void (await dispatcher.close());
      break;
    }
    case 'undici': {
      const pool = new Pool(target.origin, { connections: concurrency });
      once = async () => {
        const { statusCode, body } = await pool.request({
          path: target.pathname,
          method: 'POST',
          headers,
          body: JSON.stringify(PAYLOAD),
        });
        await body.dump();
        return statusCode < 300;
      };
      close = () => pool.destroy();
      break;
    }
    case 'fetch':
      once = async () => {
        const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify(PAYLOAD) });
        await response.arrayBuffer();
        return response.ok;
      };
      break;
    case 'http': {
      const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
      once = () =>
        new Promise((resolve, reject) => {
          const body = JSON.stringify(PAYLOAD);
          const req = http.request(
            url,
            { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } },
            (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode < 300));
              res.on('error', reject);
            },
          );
          req.on('error', reject);
          req.end(body);
        });
      close = async () => agent.destroy();
      break;
    }
    default:
      throw new Error(`unknown client ${kind}`);
  }
  let ok = 0;
  let failed = 0;
  let cpuAtWarm;
  const start = performance.now();
  const warmEnd = start + warmupMs;
  const end = warmEnd + durationMs;
  let okAtWarm = 0;
  let warmAt = 0;
  const worker = async () => {
    while (performance.now() < end) {
      try {
        if (await once()) ok++;
        else failed++;
      } catch {
        failed++;
      }
      if (warmAt === 0 && performance.now() >= warmEnd) {
        warmAt = performance.now();
        okAtWarm = ok;
        cpuAtWarm = process.cpuUsage();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const stoppedAt = performance.now();
  const cpu = process.cpuUsage(cpuAtWarm);
  await close();
  const measured = ok - okAtWarm;
  return {
    rps: (measured * 1000) / (stoppedAt - warmAt),
    cpuMicros: (cpu.user + cpu.system) / measured,
    ok,
    failed,
  };
}

const CLIENTS = [
  ['undici', 'raw undici Pool.request'],
  ['afterward', "afterward dispatcher.send().done, confirm: 'response'"],
  ['afterward-defaults', 'afterward at its default bounds (32 overall, 16 per origin)'],
  ['http', 'http.request, keep-alive Agent'],
  ['fetch', "Node's fetch"],
];

export async function run({ smoke, log }) {
  const concurrency = 64;
  const rounds = smoke ? 1 : 3;
  const warmupMs = smoke ? 150 : 500;
  const durationMs = smoke ? 250 : 1_500;
  const receiver = await startReceiver({ status: 204 });
  const samples = Object.fromEntries(CLIENTS.map(([kind]) => [kind, []]));
  try {
    // Interleaved rounds (A B C D, A B C D, ...) and the median per client, so a burst of load
    // from elsewhere on the machine hits every client alike instead of one.
    for (let round = 0; round < rounds; round++) {
      for (const [kind] of CLIENTS) {
        const result = await runTask(import.meta.url, 'client', {
          kind,
          url: receiver.url,
          concurrency,
          warmupMs,
          durationMs,
        });
        samples[kind].push(result);
        log(
          `round ${round + 1} ${kind}: ${fmt(result.rps)}/s, ${result.cpuMicros.toFixed(1)} µs CPU/req, ${result.failed} failed`,
        );
      }
    }
  } finally {
    await receiver.close();
  }
  const measured = Object.fromEntries(
    Object.entries(samples).map(([kind, list]) => [
      kind,
      {
        rps: median(list.map((r) => r.rps)),
        cpuMicros: median(list.map((r) => r.cpuMicros)),
        failed: list.reduce((sum, r) => sum + r.failed, 0),
      },
    ]),
  );
  const base = measured.undici;
  return {
    title: `${title}: ${concurrency} concurrent, small JSON body, confirm: 'response'`,
    note:
      `Each client, in a fresh process, keeps ${concurrency} requests in flight (closed loop), POSTing a ` +
      `${JSON.stringify(PAYLOAD).length}-byte JSON body to the same receiver (204, separate process): ` +
      `${rounds} interleaved rounds of ${durationMs / 1000} s after a ${warmupMs / 1000} s warm-up, median shown. ` +
      `afterward runs with retries off and concurrency = concurrencyPerOrigin = ${concurrency}, and awaits each ` +
      "handle's `done`. CPU/req is the client process's user+system CPU per completed request, which " +
      'other load on the machine disturbs less than req/s.',
    headers: ['client', 'req/s', 'vs raw undici', 'CPU/req', 'CPU vs raw undici', 'failed'],
    rows: CLIENTS.map(([kind, label]) => [
      label,
      fmt(measured[kind].rps),
      ratio(measured[kind].rps, base.rps),
      `${measured[kind].cpuMicros.toFixed(1)} µs`,
      ratio(measured[kind].cpuMicros, base.cpuMicros),
      measured[kind].failed,
    ]),
    goals: [
      goal(
        'afterward ≥ 0.9x raw undici req/s, same concurrency',
        measured.afterward.rps / base.rps,
        '>=',
        0.9,
        {
          smoke,
          unit: 'x',
        },
      ),
    ],
  };
}
