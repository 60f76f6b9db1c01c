/**
 * OpenTelemetry (issue 12, "Logging and correlation"): trace context reaches outgoing
 * notifications through undici's instrumentation. An Express app runs in a child process with
 * the core README's `otel.mjs` loaded by `--import`, exactly as the README says; a request that
 * carries a `traceparent` produces a notification, at a real receiver, in the same trace.
 *
 * Also under saturation: a burst of requests against a dispatcher that runs one attempt at a
 * time, each notification in its own request's trace (issue 11 #5).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../support/receiver.js';
import { extractBlocks } from './blocks.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURES = join(ROOT, 'test/docs/fixtures');
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

let receiver: Receiver;
let child: ChildProcess;
let appUrl = '';
let output = '';

beforeAll(async () => {
  receiver = await startReceiver();
  child = spawn(process.execPath, ['--import', join(FIXTURES, 'otel.mjs'), join(FIXTURES, 'otel-app.mjs')], {
    cwd: ROOT,
    env: { ...process.env, RECEIVER_URL: receiver.url },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const port = await new Promise<number>((done, fail) => {
    child.once('message', (m: { port: number }) => done(m.port));
    child.once('exit', (code) => fail(new Error(`the app exited (${code}) before listening:\n${output}`)));
  });
  appUrl = `http://127.0.0.1:${port}`;
}, 30_000);

afterAll(async () => {
  if (child.exitCode === null) {
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGTERM');
    await exited;
  }
  await receiver.close();
});

function ids(): { traceId: string; spanId: string } {
  return { traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex') };
}

async function order(headers: Record<string, string>): Promise<RegExpExecArray> {
  const before = receiver.requests.length;
  const response = await fetch(`${appUrl}/orders`, { method: 'POST', headers });
  expect(response.status, output).toBe(201);
  await response.arrayBuffer();
  const received = (await receiver.waitFor(before + 1)).at(-1);
  expect(received?.json()).toEqual({ type: 'order.created' });
  const header = received?.headers.traceparent;
  expect(header, `no traceparent on the notification; headers: ${JSON.stringify(received?.headers)}`).toMatch(
    TRACEPARENT,
  );
  return TRACEPARENT.exec(String(header)) as RegExpExecArray;
}

describe('OpenTelemetry: trace context reaches notifications', () => {
  it('the README shows the setup file this test loads, word for word', () => {
    const blocks = extractBlocks(ROOT, 'packages/core/README.md').filter((b) =>
      b.code.startsWith('// otel.mjs'),
    );
    expect(blocks).toHaveLength(1);
    expect(`${blocks[0]?.code}\n`).toBe(readFileSync(join(FIXTURES, 'otel.mjs'), 'utf8'));
  });

  it("a request with a traceparent: the notification carries the same trace id, from undici's own span", async () => {
    const incoming = ids();
    const [, traceId, spanId, flags] = await order({
      traceparent: `00-${incoming.traceId}-${incoming.spanId}-01`,
    });

    expect(traceId).toBe(incoming.traceId);
    // The parent is a span made inside the app (undici's client span), not the caller's.
    expect(spanId).not.toBe(incoming.spanId);
    expect(flags).toBe('01');
  });

  it('requests one after another each keep their own trace', async () => {
    const first = ids();
    const second = ids();
    const [, traceA] = await order({ traceparent: `00-${first.traceId}-${first.spanId}-01` });
    const [, traceB] = await order({ traceparent: `00-${second.traceId}-${second.spanId}-01` });

    expect([traceA, traceB]).toEqual([first.traceId, second.traceId]);
  });

  it('a request without a traceparent: the notification carries the trace the app started', async () => {
    const [, traceId] = await order({});
    expect(traceId).toMatch(/^(?!0{32})[0-9a-f]{32}$/);
  });

  it('a burst of requests, queued behind one attempt at a time: each notification keeps its own trace', async () => {
    const before = receiver.requests.length;
    const traces = Array.from({ length: 12 }, () => ids());
    await Promise.all(
      traces.map(async ({ traceId, spanId }, n) => {
        const response = await fetch(`${appUrl}/burst/${n}`, {
          method: 'POST',
          headers: { traceparent: `00-${traceId}-${spanId}-01` },
        });
        expect(response.status, output).toBe(201);
        await response.arrayBuffer();
      }),
    );
    const received = (await receiver.waitFor(before + 12)).slice(before);
    const mismatched = received.filter((r) => {
      const sent = TRACEPARENT.exec(String(r.json<{ traceparent: string }>().traceparent));
      const carried = TRACEPARENT.exec(String(r.headers.traceparent));
      return sent?.[1] === undefined || sent[1] !== carried?.[1];
    });
    expect(received).toHaveLength(12);
    expect(mismatched.map((r) => r.url)).toEqual([]);
  });
});
