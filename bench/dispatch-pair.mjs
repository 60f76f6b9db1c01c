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
// `--instant`: the dispatchers only (this build's and `--old`'s), on a transport that answers on the
// next tick through the built-in transports' callback entry: the dispatcher's own path per
// notification without the network, whose noise otherwise hides changes of a few percent.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { Pool } from 'undici';
import { PAYLOAD } from './lib/payload.mjs';
import { startReceiver } from './lib/receiver.mjs';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '20' },
    'per-round': { type: 'string', default: '4000' },
    concurrency: { type: 'string', default: '64' },
    old: { type: 'string' },
    only: { type: 'string' },
    instant: { type: 'boolean', default: false },
  },
});
const rounds = Number(args.rounds);
const perRound = Number(args['per-round']);
const concurrency = Number(args.concurrency);
const silent = { warn() {}, error() {} };
// This build's core dist, or AFTERWARD_ROOT's (as bench/lib/packages.mjs picks it): a directory,
// because `--instant` also loads the transport module beside the entry.
const coreDist = new URL(
  'packages/core/dist/',
  process.env.AFTERWARD_ROOT
    ? pathToFileURL(`${process.env.AFTERWARD_ROOT.replace(/\/$/, '')}/`)
    : new URL('../', import.meta.url),
);

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

/** A transport that answers every attempt with a 204 on the next tick, as the built-in ones report (no promise). */
async function instantTransport(dist) {
  const { kSendDirect } = await import(new URL('transport/transport.js', dist).href);
  return {
    send: () => Promise.reject(new Error('called through kSendDirect only')),
    [kSendDirect](_request, attempt, done) {
      process.nextTick(() =>
        done.attemptDone(attempt, {
          kind: 'response',
          response: { status: 204, statusText: 'No Content', headers: {} },
        }),
      );
    },
    close: async () => {},
  };
}

async function afterward(dist) {
  const mod = await import(new URL('index.js', dist).href);
  const dispatcher = mod.createDispatcher({
    concurrency,
    concurrencyPerOrigin: concurrency,
    retry: false,
    logger: silent,
    ...(args.instant ? { transport: await instantTransport(dist) } : {}),
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
if (wanted('request') && !args.instant) clients.request = undiciRequest();
if (wanted('dispatch') && !args.instant) clients.dispatch = undiciDispatch();
if (wanted('afterward')) clients.afterward = await afterward(coreDist);
if (args.old !== undefined && wanted('old')) {
  clients.old = await afterward(pathToFileURL(`${path.resolve(args.old)}/`));
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
