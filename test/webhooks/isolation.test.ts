/**
 * Endpoint isolation: an origin that never answers must not hold back delivery to healthy ones.
 * Per-origin concurrency bounds what it can take at once; the circuit breaker stops it taking
 * slots again and again.
 */
import { describe, expect, it } from 'vitest';
import { neverAnswers, sleep, waitUntil, startReceiver } from '../support/index.js';
import {
  createDispatcher,
  createUndiciTransport,
  recordingLogger,
  track,
  trackDispatcher,
  type DispatcherOptions,
  type Transport,
} from './support.js';

/** The undici transport, counting attempts in flight per origin and the most ever seen. */
function countingTransport(): Transport & { maxInFlight: Map<string, number> } {
  const inner = createUndiciTransport();
  const inFlight = new Map<string, number>();
  const maxInFlight = new Map<string, number>();
  return {
    maxInFlight,
    async send(request, attempt) {
      const now = (inFlight.get(request.origin) ?? 0) + 1;
      inFlight.set(request.origin, now);
      maxInFlight.set(request.origin, Math.max(now, maxInFlight.get(request.origin) ?? 0));
      try {
        return await inner.send(request, attempt);
      } finally {
        inFlight.set(request.origin, (inFlight.get(request.origin) ?? 1) - 1);
      }
    },
    close: () => inner.close(),
  };
}

function dispatcher(options: DispatcherOptions) {
  return trackDispatcher(createDispatcher({ logger: recordingLogger(), ...options }));
}

describe('endpoint isolation', () => {
  it('delivers 100 notifications to a healthy origin while a hanging origin holds 200', async () => {
    const bad = track(await neverAnswers());
    const good = track(await startReceiver());
    const transport = countingTransport();
    // Default concurrency (256 overall, 128 per origin); the bad origin's attempts time out at 2 s.
    const d = dispatcher({ transport, timeout: { response: 2_000 } });

    const start = performance.now();
    const stuck = Array.from({ length: 200 }, (_, i) => d.send(`${bad.url}/hook`, { json: { i } }));
    const healthy = Array.from({ length: 100 }, (_, i) => d.send(`${good.url}/hook`, { json: { i } }));
    const results = await Promise.all(healthy.map((h) => h.done));
    const elapsed = performance.now() - start;

    expect(results.map((r) => r.state)).toEqual(Array(100).fill('delivered'));
    expect(good.requests).toHaveLength(100);
    // Well under the bad origin's 2 s deadline: nothing waited on it.
    expect(elapsed).toBeLessThan(1_500);
    expect(stuck.every((h) => !h.settled)).toBe(true);
    expect(transport.maxInFlight.get(bad.url)).toBe(128);
    await waitUntil(() => bad.requestsStarted === 128, { message: '128 requests at the bad origin' });
    expect(bad.connections).toBeLessThanOrEqual(128);
  });

  it('stops a hanging origin from taking slots again once its circuit opens', async () => {
    const bad = track(await neverAnswers());
    const good = track(await startReceiver());
    const transport = countingTransport();
    const d = dispatcher({
      transport,
      concurrencyPerOrigin: 4,
      // The dispatcher's own deadline: undici's headers timeout ticks in whole seconds.
      timeout: { total: 300 },
      retry: { attempts: 10, minDelay: 5, maxDelay: 20 },
      breaker: { minRequests: 6, openMs: 60_000 },
    });
    let openedAt: number | undefined;
    d.once('circuit-open', () => {
      openedAt = performance.now();
    });

    const stuck = Array.from({ length: 30 }, (_, i) => d.send(bad.url, { json: { i } }));
    await waitUntil(() => openedAt !== undefined, { message: 'circuit-open', timeoutMs: 10_000 });
    const startedAtOpen = bad.requestsStarted;
    // Attempts in flight when it opened run out their deadline; none start after them.
    await waitUntil(() => d.stats().inFlight === 0, { message: 'in-flight attempts to end' });
    await sleep(500);

    expect(bad.requestsStarted).toBeLessThanOrEqual(startedAtOpen + 4);
    expect(transport.maxInFlight.get(bad.url)).toBeLessThanOrEqual(4);
    expect(d.stats().inFlight).toBe(0);
    // Waiting, not failed: each has used only a couple of its 10 attempts.
    expect(stuck.every((h) => !h.settled && h.attempts <= 3)).toBe(true);

    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => d.send(good.url, { json: { i } }).done),
    );
    expect(results.map((r) => r.state)).toEqual(Array(20).fill('delivered'));
  });
});
