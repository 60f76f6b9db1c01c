/**
 * Fault matrix, shutdown row: a real app process (fixtures/sigterm-app.mjs) with 1,000
 * notifications queued against a slow receiver gets SIGTERM. It closes its server, then the
 * dispatcher with a timeout: what can finish in time is delivered, the rest is reported by count,
 * and the exit code follows the documented contract (0 drained, 1 cancelled by the timeout).
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cleanupScope, waitUntil, startReceiver, type Receiver } from '../support/index.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/sigterm-app.mjs', import.meta.url));

interface Summary {
  event: 'shutdown';
  drained: boolean;
  sends: number;
  delivered: number;
  failed: number;
  dropped: number;
  cancelled: number;
  unaccounted: number;
  ms: number;
}

interface RunningApp {
  child: ChildProcess;
  port: number;
  lines: Array<Record<string, unknown>>;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const { cleanups } = cleanupScope();

async function startApp(env: Record<string, string>): Promise<RunningApp> {
  const child = fork(FIXTURE, [], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return Promise.resolve();
  });
  const lines: Array<Record<string, unknown>> = [];
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    let newline: number;
    while ((newline = out.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(out.slice(0, newline)) as Record<string, unknown>);
      out = out.slice(newline + 1);
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  await waitUntil(() => lines.some((l) => l['event'] === 'listening'), {
    timeoutMs: 15_000,
    message: `the app to listen (stderr: ${err})`,
  });
  const port = lines.find((l) => l['event'] === 'listening')?.['port'] as number;
  return { child, port, lines, stderr: () => err, exited };
}

function post(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function receiverFor(delayMs: number): Promise<Receiver> {
  const receiver = await startReceiver(undefined, { delayMs });
  cleanups.push(() => receiver.close());
  return receiver;
}

/** Parks 10 x 100 notifications, waits for delivery to begin, then sends SIGTERM. */
async function queueThenTerm(app: RunningApp, receiver: Receiver): Promise<void> {
  for (let id = 0; id < 10; id++) expect(await post(app.port, `/orders?id=${id}`)).toBe(202);
  await receiver.waitFor(1, 10_000);
  app.child.kill('SIGTERM');
}

function summaryOf(app: RunningApp): Summary {
  const summary = app.lines.find((l) => l['event'] === 'shutdown');
  expect(summary, `no summary printed (stderr: ${app.stderr()})`).toBeDefined();
  return summary as unknown as Summary;
}

describe('fault: SIGTERM while 1,000 notifications are queued against a slow receiver', () => {
  it('delivers what fits in the close timeout, cancels and counts the rest, exits 1', async () => {
    // 200 ms per notification, 16 at a time to one origin: ~80/s, so 1,000 cannot fit in 1.5 s.
    const receiver = await receiverFor(200);
    const app = await startApp({ RECEIVER_URL: receiver.url, CLOSE_TIMEOUT: '1500' });
    await queueThenTerm(app, receiver);

    const { code, signal } = await app.exited;
    const summary = summaryOf(app);
    expect({ code, signal }).toEqual({ code: 1, signal: null });
    expect(summary.drained).toBe(false);
    expect(summary.sends).toBe(1000);
    expect(summary.unaccounted).toBe(0);
    expect(summary.delivered + summary.failed + summary.dropped + summary.cancelled).toBe(1000);
    expect(summary.delivered).toBeGreaterThan(0);
    expect(summary.cancelled).toBeGreaterThan(0);
    expect(summary.failed + summary.dropped).toBe(0);
    // The deadline held: close() returned about when its timeout said.
    expect(summary.ms).toBeGreaterThanOrEqual(1400);
    expect(summary.ms).toBeLessThan(5000);
    // The receiver saw every delivered one; at most the in-flight ones (16) more, cut off mid-way.
    expect(receiver.requests.length).toBeGreaterThanOrEqual(summary.delivered);
    expect(receiver.requests.length).toBeLessThanOrEqual(summary.delivered + 16);
    console.info(`sigterm (slow receiver): ${JSON.stringify(summary)}, exit ${code}`);
  });

  it('drains everything when the receiver keeps up, exits 0', async () => {
    const receiver = await receiverFor(5);
    const app = await startApp({ RECEIVER_URL: receiver.url, CLOSE_TIMEOUT: '10000' });
    await queueThenTerm(app, receiver);

    const { code, signal } = await app.exited;
    const summary = summaryOf(app);
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(summary).toMatchObject({
      drained: true,
      sends: 1000,
      delivered: 1000,
      cancelled: 0,
      unaccounted: 0,
    });
    expect(receiver.requests).toHaveLength(1000);
    // The payloads all made it, each exactly once.
    const seen = new Set(receiver.requests.map((r) => JSON.stringify(r.json())));
    expect(seen.size).toBe(1000);
  });
});
