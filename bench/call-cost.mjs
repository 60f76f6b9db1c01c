// 5. Cost of the call itself: what a handler pays for dispatcher.send() / res.fireAndForget(),
// without the network (a transport that answers at once) and without JSON serialisation (a
// pre-serialised body string), measured with tinybench next to familiar operations.
import { randomUUID } from 'node:crypto';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { Bench } from 'tinybench';
import { core, coreAdapter } from './lib/packages.mjs';
import { goal, median, ratio } from './lib/report.mjs';
import { runTask } from './lib/task.mjs';
import { PAYLOAD } from './lib/payload.mjs';

export const title = '5. Cost of the call';

const URL_STRING = 'https://hooks.example.com/orders?tenant=t1';
const BODY = JSON.stringify(PAYLOAD);
const INIT = { body: BODY, headers: { 'content-type': 'application/json' } };

/** Runs in a fresh child process; returns the median ns per call of each task. */
export async function measure({ smoke }) {
  const { createDispatcher } = await core();
  const { createAfterResponse } = await coreAdapter();
  const transport = {
    send: async (request) =>
      request.confirm === 'sent'
        ? { kind: 'sent' }
        : { kind: 'response', response: { status: 204, statusText: 'No Content', headers: {} } },
    close: async () => {},
  };
  const dispatcher = createDispatcher({ transport, logger: { warn() {}, error() {} } });
  let sends = 0;
  // Settled in between iterations (outside the timed call), so the queue never fills.
  const settle = async () => {
    if (++sends % 512 === 0) await dispatcher.drain();
  };
  let res;
  let work;
  const freshResponse = () => {
    res = new ServerResponse(new IncomingMessage(new Socket()));
    // As a server's response has one (not timed): parked work then listens on the response alone.
    res.assignSocket(new Socket());
    work = createAfterResponse(res, {
      dispatcher,
      describe: (outcome, durationMs) => ({
        outcome,
        statusCode: 200,
        durationMs,
        method: 'POST',
        url: '/orders',
        route: undefined,
        req: undefined,
        res,
      }),
    });
  };
  const finishResponse = async () => {
    // Parked work is released on the response's 'close', which a server's response emits after
    // 'finish' (or when the client went away first).
    res.emit('finish');
    res.emit('close');
    await settle();
  };
  // `time` counts only timed calls; each iteration also awaits, so keep it short.
  const bench = new Bench({ time: smoke ? 10 : 150, warmupTime: smoke ? 5 : 50, iterations: 64 });
  bench
    .add('randomUUID()', () => randomUUID())
    .add('new URL(url)', () => new URL(URL_STRING))
    .add('JSON.stringify(payload)', () => JSON.stringify(PAYLOAD))
    .add("naive: res.on('finish', closure)", () => res.on('finish', () => BODY), {
      beforeEach: () => {
        res = new ServerResponse(new IncomingMessage(new Socket()));
      },
    })
    .add('dispatcher.send(url, { body })', () => dispatcher.send(URL_STRING, INIT), { afterEach: settle })
    .add('res.fireAndForget(url, { body })', () => work.fireAndForget(URL_STRING, INIT), {
      beforeEach: freshResponse,
      afterEach: finishResponse,
    });
  await bench.run();
  await dispatcher.close();
  return Object.fromEntries(bench.tasks.map((task) => [task.name, task.result.latency.p50 * 1e6]));
}

export async function run({ smoke, log }) {
  // Two fresh processes, median of each: one process's JIT luck does not decide the figure.
  const runs = [];
  for (let i = 0; i < (smoke ? 1 : 2); i++) runs.push(await runTask(import.meta.url, 'measure', { smoke }));
  const ns = Object.fromEntries(Object.keys(runs[0]).map((name) => [name, median(runs.map((r) => r[name]))]));
  log(JSON.stringify(ns));
  const base = ns['JSON.stringify(payload)'];
  const send = ns['dispatcher.send(url, { body })'];
  const faf = ns['res.fireAndForget(url, { body })'];
  return {
    title: `${title}: median time of one call in the handler`,
    note:
      'tinybench, median per call, in a fresh process (median of the runs). The dispatcher has a transport ' +
      'that answers at once and is drained between iterations, outside the timed call; the body is a ' +
      `pre-serialised ${BODY.length}-byte string. fireAndForget runs on core's after-response machinery (what ` +
      'both adapters call) on a fresh ServerResponse per call, so it includes parking and the "close" listener.',
    headers: ['operation', 'median', 'vs JSON.stringify(payload)'],
    rows: Object.entries(ns).map(([name, value]) => [
      name,
      `${(value / 1000).toFixed(2)} µs`,
      ratio(value, base),
    ]),
    goals: [
      goal('dispatcher.send() median < 2 µs', send / 1000, '<=', 2, { smoke, unit: 'µs' }),
      goal('res.fireAndForget() median < 2 µs', faf / 1000, '<=', 2, { smoke, unit: 'µs' }),
    ],
  };
}
