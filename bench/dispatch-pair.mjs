// Row 2 of issue 15, paired in one process: CPU per delivered request of the dispatcher vs raw
// undici `Pool.request` (+ body.dump()) vs undici `Pool.dispatch()` with a small handler, 64 in
// flight, the receiver in its own process. Every client runs a batch of `perRound` requests in a
// closed loop; rounds interleave the clients (order rotated each round), so load from elsewhere on
// the machine hits them alike. The ratio is taken per round against raw undici of the same round:
// median and spread (min..max) over rounds.
//
// `--old <dir>` adds the dispatcher of another core build (a copy of an older dist/, e.g.
// packages/core/.copy-main/dist) as a fourth client, for an A/B of two builds.
// Run: `node bench/dispatch-pair.mjs [--rounds 20] [--per-round 4000] [--old packages/core/.copy-main/dist]`
// (after `pnpm build`). `--only afterward|request|dispatch` runs one client, for `node --cpu-prof`.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { Pool } from 'undici';
import { core } from './lib/packages.mjs';
import { PAYLOAD } from './lib/payload.mjs';
import { startReceiver } from './lib/receiver.mjs';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '20' },
    'per-round': { type: 'string', default: '4000' },
    concurrency: { type: 'string', default: '64' },
    old: { type: 'string' },
    only: { type: 'string' },
  },
});
const rounds = Number(args.rounds);
const perRound = Number(args['per-round']);
const concurrency = Number(args.concurrency);
const silent = { warn() {}, error() {} };

const receiver = await startReceiver({ status: 204 });
const target = new URL(receiver.url);
const headers = { 'content-type': 'application/json' };

/** @returns {{ once: () => Promise<boolean>, close: () => Promise<void> }} */
function undiciRequest() {
  const pool = new Pool(target.origin, { connections: concurrency });
  return {
    once: async () => {
      const { statusCode, body } = await pool.request({
        path: target.pathname,
        method: 'POST',
        headers,
        body: JSON.stringify(PAYLOAD),
      });
      await body.dump();
      return statusCode < 300;
    },
    close: () => pool.destroy(),
  };
}

function undiciDispatch() {
  const pool = new Pool(target.origin, { connections: concurrency });
  return {
    once: () =>
      new Promise((resolve) => {
        let status = 0;
        pool.dispatch(
          { path: target.pathname, method: 'POST', headers, body: JSON.stringify(PAYLOAD) },
          {
            onRequestStart() {},
            onResponseStart(_controller, statusCode) {
              status = statusCode;
            },
            onResponseData() {},
            onResponseEnd() {
              resolve(status < 300);
            },
            onResponseError() {
              resolve(false);
            },
          },
        );
      }),
    close: () => pool.destroy(),
  };
}

function afterward(mod) {
  const dispatcher = mod.createDispatcher({
    concurrency,
    concurrencyPerOrigin: concurrency,
    retry: false,
    logger: silent,
  });
  return {
    once: async () => (await dispatcher.send(receiver.url, { json: PAYLOAD }).done).state === 'delivered',
    close: async () => void (await dispatcher.close()),
  };
}

async function batch(client, count) {
  let left = count;
  let failed = 0;
  const worker = async () => {
    while (left > 0) {
      left--;
      if (!(await client.once())) failed++;
    }
  };
  const cpu = process.cpuUsage();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const used = process.cpuUsage(cpu);
  return { micros: (used.user + used.system) / count, failed };
}

const clients = {};
const wanted = (name) => args.only === undefined || args.only === name;
if (wanted('request')) clients.request = undiciRequest();
if (wanted('dispatch')) clients.dispatch = undiciDispatch();
if (wanted('afterward')) clients.afterward = afterward(await core());
if (args.old !== undefined && wanted('old')) {
  clients.old = afterward(await import(pathToFileURL(path.resolve(args.old, 'index.js')).href));
}
const names = Object.keys(clients);
const samples = Object.fromEntries(names.map((name) => [name, []]));
try {
  // Warm-up: every client, twice.
  for (let i = 0; i < 2; i++) for (const name of names) await batch(clients[name], perRound);
  for (let round = 0; round < rounds; round++) {
    const order = names.map((_, i) => names[(i + round) % names.length]);
    for (const name of order) {
      const r = await batch(clients[name], perRound);
      if (r.failed > 0) throw new Error(`${name}: ${r.failed} failed`);
      samples[name].push(r.micros);
    }
  }
} finally {
  for (const name of names) await clients[name].close();
  await receiver.close();
}

const median = (list) => {
  const sorted = [...list].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const show = (list, digits = 2) =>
  `${median(list).toFixed(digits)} (${Math.min(...list).toFixed(digits)}..${Math.max(...list).toFixed(digits)})`;
console.log(`${rounds} rounds of ${perRound} requests, ${concurrency} in flight`);
for (const name of names) {
  let line = `${name.padEnd(10)} ${show(samples[name], 1)} µs CPU/req`;
  if (samples.request !== undefined && name !== 'request') {
    line += `   / request ${show(samples[name].map((v, i) => v / samples.request[i]))}`;
  }
  if (samples.old !== undefined && name === 'afterward') {
    line += `   / old ${show(samples[name].map((v, i) => v / samples.old[i]))}`;
  }
  console.log(line);
}
