/**
 * The per-origin circuit breaker, through a real dispatcher and real receivers: it opens on a
 * failing origin (with an event and a warning), holds that origin's notifications in the queue
 * without touching the origin, probes once after `openMs`, and closes when the probe succeeds,
 * while other origins carry on.
 */
import { describe, expect, it } from 'vitest';
import { statusSequence, sleep, waitUntil, startReceiver } from '../support/index.js';
import {
  createDispatcher,
  HttpStatusError,
  recordingLogger,
  track,
  trackDispatcher,
  type CircuitEvent,
  type Dispatcher,
  type DispatcherOptions,
} from './support.js';

const FAST_RETRY = { attempts: 20, minDelay: 5, maxDelay: 20 } as const;

function dispatcher(options: DispatcherOptions) {
  const logger = recordingLogger();
  return Object.assign(trackDispatcher(createDispatcher({ logger, retry: FAST_RETRY, ...options })), {
    logs: logger.lines,
  });
}

/** Every circuit event, with performance.now() of its arrival. */
function circuitLog(d: Dispatcher): Array<CircuitEvent & { kind: 'open' | 'close'; at: number }> {
  const log: Array<CircuitEvent & { kind: 'open' | 'close'; at: number }> = [];
  d.on('circuit-open', (e) => log.push({ ...e, kind: 'open', at: performance.now() }));
  d.on('circuit-close', (e) => log.push({ ...e, kind: 'close', at: performance.now() }));
  return log;
}

describe('circuit breaker, per origin', () => {
  it('opens on an origin answering 503, holds its notifications back, and leaves others alone', async () => {
    const bad = track(await statusSequence([503]));
    const good = track(await startReceiver());
    const d = dispatcher({
      concurrencyPerOrigin: 2,
      breaker: { minRequests: 6, windowMs: 10_000, openMs: 60_000 },
    });
    const events = circuitLog(d);

    const held = Array.from({ length: 10 }, (_, i) => d.send(`${bad.url}/hook`, { json: { i } }));
    await waitUntil(() => events.length > 0, { message: 'circuit-open' });
    const arrivalsAtOpen = bad.arrivals.length;

    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ kind: 'open', origin: bad.url, failureRate: 1 });
    expect(arrivalsAtOpen).toBeGreaterThanOrEqual(6);
    const warning = d.logs.find((l) => l.level === 'warn' && l.obj['origin'] === bad.url);
    expect(warning?.msg).toMatch(/circuit open/);

    // A healthy origin is served at once while the bad one is held back.
    const fine = await Promise.all(
      Array.from({ length: 10 }, (_, i) => d.send(`${good.url}/ok`, { json: { i } }).done),
    );
    expect(fine.map((r) => r.state)).toEqual(Array(10).fill('delivered'));

    await sleep(500);
    // Only attempts already in flight when it opened (at most concurrencyPerOrigin) may still land.
    expect(bad.arrivals.length).toBeLessThanOrEqual(arrivalsAtOpen + 2);
    // Held, not failed: they wait in the queue with attempts to spare.
    expect(held.every((h) => !h.settled)).toBe(true);
    expect(d.stats()).toMatchObject({ failed: 0, inFlight: 0, queued: 10 });
  });

  it('probes once after openMs and closes when the receiver has recovered; the held ones then go', async () => {
    let failing = true;
    const receiver = track(
      await startReceiver((_req, res) => {
        res.statusCode = failing ? 503 : 204;
        res.end();
      }),
    );
    const openMs = 600;
    const d = dispatcher({ concurrencyPerOrigin: 2, breaker: { minRequests: 4, openMs } });
    const events = circuitLog(d);

    let atOpen = 0;
    let atClose = 0;
    d.once('circuit-open', () => {
      atOpen = receiver.requests.length;
      failing = false;
    });
    d.once('circuit-close', () => {
      atClose = receiver.requests.length;
    });

    const handles = Array.from({ length: 10 }, (_, i) => d.send(receiver.url, { json: { i } }));
    await waitUntil(() => events.length > 1, { message: 'circuit-close', timeoutMs: 10_000 });
    const [opened, closed] = events;

    expect(closed).toMatchObject({ kind: 'close', origin: receiver.url, failureRate: 1 });
    // The probe cannot start before the circuit was open for openMs.
    expect(closed!.at - opened!.at).toBeGreaterThanOrEqual(openMs - 10);
    // Between open and close: the one probe, plus attempts that were already in flight.
    expect(atClose - atOpen).toBeGreaterThanOrEqual(1);
    expect(atClose - atOpen).toBeLessThanOrEqual(1 + 2);

    const results = await Promise.all(handles.map((h) => h.done));
    expect(results.map((r) => r.state)).toEqual(Array(10).fill('delivered'));
    expect(events.map((e) => e.kind)).toEqual(['open', 'close']);
  });

  it('opens again on a failed probe without a second open event, and closes on a later one', async () => {
    const openMs = 500;
    let openAt = Infinity;
    let probes = 0;
    const receiver = track(
      await startReceiver((_req, res) => {
        // Until the circuit opens everything fails; the first probe fails too, the next succeeds.
        const probing = performance.now() - openAt >= openMs / 2;
        if (probing) probes++;
        res.statusCode = !probing || probes === 1 ? 503 : 204;
        res.end();
      }),
    );
    const d = dispatcher({ concurrencyPerOrigin: 1, breaker: { minRequests: 3, openMs } });
    const events = circuitLog(d);
    d.once('circuit-open', () => {
      openAt = performance.now();
    });

    const handles = Array.from({ length: 5 }, (_, i) => d.send(receiver.url, { json: { i } }));
    await waitUntil(() => events.some((e) => e.kind === 'close'), {
      message: 'circuit-close',
      timeoutMs: 10_000,
    });

    expect(events.map((e) => e.kind)).toEqual(['open', 'close']);
    expect(events[1]!.at - events[0]!.at).toBeGreaterThanOrEqual(2 * openMs - 10);
    expect(probes).toBeGreaterThanOrEqual(2);
    const results = await Promise.all(handles.map((h) => h.done));
    expect(results.map((r) => r.state)).toEqual(Array(5).fill('delivered'));
  });

  it('does not spin while an open circuit holds records back', async () => {
    const bad = track(await statusSequence([503]));
    const d = dispatcher({ concurrencyPerOrigin: 2, breaker: { minRequests: 4, openMs: 60_000 } });
    const events = circuitLog(d);
    for (let i = 0; i < 50; i++) d.send(bad.url, { json: { i } });
    await waitUntil(() => events.length > 0, { message: 'circuit-open' });
    await sleep(100);

    const before = process.cpuUsage();
    await sleep(500);
    const used = process.cpuUsage(before);

    // A busy pump would burn the whole 500 ms; idle waiting costs next to nothing.
    expect((used.user + used.system) / 1000).toBeLessThan(200);
    expect(d.stats().queued).toBe(50);
  });

  it('counts 4xx answers as a working receiver: they never open it', async () => {
    const receiver = track(await statusSequence([404]));
    const d = dispatcher({ breaker: { minRequests: 5 } });
    const events = circuitLog(d);

    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => d.send(receiver.url, { json: { i } }).done),
    );

    expect(results.every((r) => r.state === 'failed' && r.error instanceof HttpStatusError)).toBe(true);
    expect(receiver.arrivals).toHaveLength(30);
    expect(events).toEqual([]);
  });

  it('is off with breaker: false: every notification is attempted', async () => {
    const receiver = track(await statusSequence([503]));
    const d = dispatcher({ breaker: false, retry: false });
    const events = circuitLog(d);

    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => d.send(receiver.url, { json: { i } }).done),
    );

    expect(results.map((r) => r.state)).toEqual(Array(30).fill('failed'));
    expect(receiver.arrivals).toHaveLength(30);
    expect(events).toEqual([]);
  });

  it('fails notifications whose own budget ran out as usual, and holds back the next ones', async () => {
    const receiver = track(await statusSequence([503]));
    const d = dispatcher({ concurrencyPerOrigin: 4, breaker: { minRequests: 4, openMs: 60_000 } });
    const events = circuitLog(d);

    const results = await Promise.all(
      Array.from({ length: 4 }, (_, i) => d.send(receiver.url, { json: { i }, retry: false }).done),
    );
    expect(results.map((r) => r.state)).toEqual(Array(4).fill('failed'));
    expect(events).toHaveLength(1);

    const later = d.send(receiver.url, { json: { later: true }, retry: false });
    await sleep(300);
    expect(later.state).toBe('queued');
    expect(receiver.arrivals).toHaveLength(4);
  });
});
