// CPU per overflowing send() (issue 15 row 5's path): the receiver is down (connection refused)
// and the queue is full at the default bounds, so every send() queues its notification and
// drop-oldest evicts one. Garbage on this path decides how far V8 grows its young generation in
// an outage, so its CPU (GC included) is measured here, paired: this build and `--old`'s run in
// one process, each with its own dispatcher filled first, in rounds of `perRound` sends (1,000 per
// event-loop turn) whose order alternates, so load from elsewhere on the machine hits both alike.
// Reports process CPU time per send, median (min..max) over rounds, and the per-round ratio.
//
// Run: `node bench/overflow-pair.mjs [--rounds 30] [--per-round 20000] [--old /work/main/packages/core/dist]`
// (after `pnpm build`).
import net from 'node:net';
import { parseArgs } from 'node:util';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { median } from './lib/report.mjs';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '30' },
    'per-round': { type: 'string', default: '20000' },
    old: { type: 'string' },
  },
});
const rounds = Number(args.rounds);
const perRound = Number(args['per-round']);
const BODY = JSON.stringify({
  type: 'order.paid',
  id: 'ord_0000000042',
  amount: 4200,
  note: 'x'.repeat(200),
});
const init = { body: BODY, headers: { 'content-type': 'application/json' } };
const turn = () => new Promise((resolve) => setImmediate(resolve));

// A port nothing listens on: every attempt is refused at once, as with a receiver that is down.
const probe = net.createServer();
await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
const { port } = /** @type {net.AddressInfo} */ (probe.address());
await new Promise((resolve) => probe.close(resolve));
const url = `http://127.0.0.1:${port}/hook`;

/** Sends `count` notifications, 1,000 per turn. */
async function sendMany(dispatcher, count) {
  for (let sent = 0; sent < count; sent += 1_000) {
    for (let i = 0; i < 1_000; i++) dispatcher.send(url, init);
    await turn();
  }
}

const builds = { new: new URL('../packages/core/dist/', import.meta.url) };
if (args.old !== undefined) builds.old = pathToFileURL(`${path.resolve(args.old)}/`);
const dispatchers = {};
for (const [name, dist] of Object.entries(builds)) {
  const { createDispatcher } = await import(new URL('index.js', dist).href);
  dispatchers[name] = createDispatcher({ logger: { warn() {}, error() {} } });
  // Full (10,000 queued) and past the first overflow before measuring.
  await sendMany(dispatchers[name], 30_000);
}

const names = Object.keys(dispatchers);
const samples = Object.fromEntries(names.map((name) => [name, []]));
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? names : [...names].reverse();
  for (const name of order) {
    const start = process.cpuUsage();
    await sendMany(dispatchers[name], perRound);
    const used = process.cpuUsage(start);
    samples[name].push((used.user + used.system) / perRound);
  }
}
for (const dispatcher of Object.values(dispatchers)) await dispatcher.close({ timeout: 0 });

const show = (list) =>
  `${median(list).toFixed(2)} (${Math.min(...list).toFixed(2)}..${Math.max(...list).toFixed(2)})`;
console.log(`${rounds} rounds of ${perRound} overflowing sends, receiver down, default bounds`);
for (const name of names) console.log(`${name.padEnd(4)} ${show(samples[name])} µs CPU/send`);
if (samples.old !== undefined) {
  const ratios = samples.new.map((value, i) => value / samples.old[i]);
  const faster = ratios.filter((value) => value < 1).length;
  console.log(`new / old ${show(ratios)}, new cheaper in ${faster} of ${rounds} rounds`);
}
