/**
 * Fault matrix: the receiver is down for the whole run while 100,000 notifications are sent.
 * Memory stays bounded, every drop is counted, evented and (rate-limited) logged, every
 * notification ends in a final state, and the app keeps answering.
 */
import { describe, expect, it } from 'vitest';
import { cleanupScope, refusingPort } from '../support/index.js';
import { Agent, startPlainApp, timedGet } from './app.js';
import { collectGarbage, DroppedError, faultDispatcher, settledCount } from './support.js';

const { cleanups } = cleanupScope();

const SENDS = 100_000;
const MAX_QUEUED = 1_000;
const BATCH = 500;

describe('fault: receiver down for the whole run, 100k sends', () => {
  it('memory bounded, drops counted and evented, app responses unaffected', async () => {
    const dead = await refusingPort();
    const dispatcher = faultDispatcher({
      maxQueued: MAX_QUEUED,
      retry: { attempts: 3, minDelay: 5, maxDelay: 20 },
    });
    cleanups.push(() => dispatcher.close({ timeout: 0 }));

    let droppedEvents = 0;
    let droppedTyped = 0;
    dispatcher.on('dropped', ({ error }) => {
      droppedEvents++;
      if (error instanceof DroppedError) droppedTyped++;
    });
    let opened = 0;
    dispatcher.on('circuit-open', () => opened++);
    let held = 0;
    const sample = (): void => {
      const { queued, inFlight } = dispatcher.stats();
      held = Math.max(held, queued + inFlight);
    };

    // The app parks one notification per request to the same dead receiver.
    const app = await startPlainApp(dispatcher, (work, req, res) => {
      work.fireAndForget(`${dead.url}/audit`, { json: { path: req.url } });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
    cleanups.push(() => app.close());

    collectGarbage();
    const heapBefore = process.memoryUsage().heapUsed;
    let heapPeak = heapBefore;

    // Sends go in batches, one per macrotask, the way request handlers would make them.
    let sent = 0;
    const sending = (async () => {
      while (sent < SENDS) {
        for (let i = 0; i < BATCH; i++) {
          // Handles are not kept: the test must not be what holds the memory.
          dispatcher.send(`${dead.url}/hook`, { json: { n: sent, pad: 'x'.repeat(64) } });
          sent++;
        }
        sample();
        if (sent % 25_000 === 0) {
          // What is retained, not garbage waiting for a collection.
          collectGarbage();
          heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();

    // Meanwhile a client keeps calling the app, one request after another, on keep-alive.
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    cleanups.push(() => Promise.resolve(agent.destroy()));
    const latencies: number[] = [];
    const statuses = new Set<number>();
    let appRequests = 0;
    let duringFlood = 0;
    const calling = (async () => {
      while (sent < SENDS || appRequests < 50) {
        const { status, ms } = await timedGet(`${app.url}/r${appRequests}`, agent);
        appRequests++;
        if (sent < SENDS) duringFlood++;
        statuses.add(status);
        latencies.push(ms);
      }
    })();
    const sendStart = performance.now();
    await Promise.all([sending, calling]);
    const sendMs = performance.now() - sendStart;

    // The default circuit breaker opened on the dead origin, so what is left waits in the queue
    // (at its bound) rather than retrying: close() cancels it and reports the count.
    expect(opened).toBeGreaterThanOrEqual(1);
    const closed = await dispatcher.close({ timeout: 500 });
    const stats = closed.stats;
    const total = SENDS + appRequests;
    // Nothing unaccounted: every send reached a final state, and nothing could be delivered.
    expect(settledCount(stats)).toBe(total);
    expect(stats.delivered).toBe(0);
    expect(stats.failed + stats.dropped + stats.cancelled).toBe(total);
    expect(closed.cancelled).toBe(stats.cancelled);
    expect(stats.cancelled).toBeLessThanOrEqual(MAX_QUEUED);
    expect(stats.dropped).toBeGreaterThanOrEqual(total - MAX_QUEUED - stats.failed);
    expect(droppedEvents).toBe(stats.dropped);
    expect(droppedTyped).toBe(stats.dropped);
    expect(held).toBeLessThanOrEqual(MAX_QUEUED);
    expect(stats).toMatchObject({ queued: 0, inFlight: 0 });

    // Drops and failures are logged at warn, but rate-limited: a handful of lines, with counts.
    const dropLines = dispatcher.logs.filter((l) => l.msg === 'afterward: notification dropped');
    expect(dropLines.length).toBeGreaterThan(0);
    expect(dropLines.length).toBeLessThan(100);
    expect(dropLines.some((l) => ((l.obj as { suppressed?: number }).suppressed ?? 0) > 0)).toBe(true);

    collectGarbage();
    const heapAfter = process.memoryUsage().heapUsed;
    const mib = (n: number): number => Math.round(n / 1024 / 1024);
    // A queue of 1,000 small notifications is a few MiB; 100k retained would be far more.
    expect(mib(heapPeak - heapBefore)).toBeLessThan(24);
    expect(mib(heapAfter - heapBefore)).toBeLessThan(16);

    expect([...statuses]).toEqual([200]);
    latencies.sort((a, b) => a - b);
    const p50 = latencies[Math.floor(latencies.length / 2)] ?? 0;
    const p99 = latencies[Math.floor(latencies.length * 0.99)] ?? 0;
    // The app keeps answering all through the flood, not only after it. Bounds scale with the
    // send phase, so a loaded machine slows both alike; an app blocked by the dispatcher would
    // wait out the whole phase.
    const figures = `app latency p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, send phase ${Math.round(sendMs)} ms`;
    expect(duringFlood, figures).toBeGreaterThanOrEqual(10);
    expect(p50, figures).toBeLessThan(Math.max(100, sendMs / 20));
    expect(p99, figures).toBeLessThan(Math.max(1000, sendMs / 4));
    console.info(
      `100k-down: sends took ${Math.round(sendMs)} ms; ${appRequests} app requests p50 ${p50.toFixed(1)} ms p99 ${p99.toFixed(1)} ms; ` +
        `dropped ${stats.dropped} failed ${stats.failed}; heap +${mib(heapPeak - heapBefore)} MiB retained at peak, ` +
        `+${mib(heapAfter - heapBefore)} MiB after; max held ${held}`,
    );
  });
});
