import { afterEach, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { startReceiver, type Receiver } from '../../../test/support/index.js';
import { createAttemptRunner, type AttemptRunner, type NotificationJson } from '../src/backend.js';
import { DEFAULTS } from '../src/options/options.js';
import { BlockedAddressError, CancelledError, HttpStatusError } from '../src/util/errors.js';
import { recordingLogger } from '../../../test/support/index.js';

const SECRET = `whsec_${Buffer.from('a secret of thirty-two bytes....').toString('base64')}`;
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function receiver(handler?: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
  const r = await startReceiver(handler);
  cleanup.push(() => r.close());
  return r;
}

function runner(options: Parameters<typeof createAttemptRunner>[0] = {}): AttemptRunner {
  const made = createAttemptRunner({ logger: recordingLogger(), ...options });
  cleanup.push(() => made.close());
  return made;
}

function job(url: string, overrides: Partial<NotificationJson> = {}): NotificationJson {
  const parsed = new URL(url);
  return {
    v: 1,
    key: 'k1',
    id: 'msg_runner',
    url,
    origin: parsed.origin,
    method: 'POST',
    headers: ['content-type', 'application/json', 'webhook-id', 'msg_runner'],
    body: Buffer.from('{"hello":"worker"}').toString('base64'),
    confirm: 'response',
    keepBody: 0,
    timeout: DEFAULTS.timeout,
    retry: DEFAULTS.retry,
    sign: false,
    attempts: 0,
    notBefore: 0,
    createdAt: Date.now(),
    ...overrides,
  };
}

const signal = (): AbortSignal => new AbortController().signal;

describe('createAttemptRunner', () => {
  it('delivers a serialised notification to a real receiver, with the user agent added', async () => {
    const r = await receiver();
    const report = await runner().run(job(`${r.url}/hook?x=1`), signal());
    expect(report.decision).toEqual({ kind: 'delivered', status: 204 });
    expect(r.requests[0]?.url).toBe('/hook?x=1');
    expect(r.requests[0]?.body.toString()).toBe('{"hello":"worker"}');
    expect(r.requests[0]?.headers['user-agent']).toBe(DEFAULTS.userAgent);
  });

  it('signs notifications stored with sign: true, verifiably', async () => {
    const r = await receiver();
    await runner({ signing: { secret: SECRET } }).run(job(r.url, { sign: true }), signal());
    const received = r.requests[0];
    const headers = received?.headers as Record<string, string>;
    expect(() => new Webhook(SECRET).verify(received?.body.toString() ?? '', headers)).not.toThrow();
  });

  it('decides a retry for a 503 as attempt n + 1, and a failure on the last attempt', async () => {
    const r = await receiver((_req, res) => {
      res.statusCode = 503;
      res.end();
    });
    const first = await runner().run(job(r.url), signal());
    expect(first.decision.kind).toBe('retry');
    const last = await runner().run(job(r.url, { attempts: DEFAULTS.retry.attempts - 1 }), signal());
    expect(last.decision).toMatchObject({ kind: 'failed', error: expect.any(HttpStatusError) as unknown });
  });

  it('holds, without a request, while the circuit of an origin is open', async () => {
    const r = await receiver((_req, res) => {
      res.statusCode = 500;
      res.end();
    });
    const run = runner({ breaker: { minRequests: 2, failureRate: 0.5, openMs: 60_000 } });
    await run.run(job(r.url), signal());
    await run.run(job(r.url), signal());
    const before = Date.now();
    const held = await run.run(job(r.url), signal());
    expect(held.decision.kind).toBe('hold');
    expect(held.decision.kind === 'hold' && held.decision.until).toBeGreaterThanOrEqual(before + 59_000);
    expect(r.requests).toHaveLength(2);
  });

  it('applies the guard and ends on an aborted signal', async () => {
    const r = await receiver();
    const guarded = await runner({ guard: 'public-only' }).run(job(r.url), signal());
    expect(guarded.decision).toMatchObject({
      kind: 'failed',
      error: expect.any(BlockedAddressError) as unknown,
    });
    const controller = new AbortController();
    controller.abort(new Error('shutdown'));
    const aborted = await runner().run(job(r.url), controller.signal);
    expect(aborted.result).toMatchObject({ kind: 'error', error: expect.any(CancelledError) as unknown });
  });
});
