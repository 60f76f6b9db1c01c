import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createDispatcher,
  HttpStatusError,
  NetworkError,
  type Dispatcher,
  type RetryEvent,
} from '../src/index.js';
import { DEFAULTS } from '../src/options/options.js';
import { backoffDelay, isRetryableStatus, parseRetryAfter, statusError } from '../src/policy/retry.js';
import {
  redirect,
  refusingPort,
  statusSequence,
  type FaultServer,
  FAST_RETRY,
  recordingLogger,
  guardUnhandledRejections,
} from '../../../test/support/index.js';

guardUnhandledRejections();

const policy = { attempts: 5, minDelay: 100, maxDelay: 1_000, factor: 2, maxRetryAfter: 5_000 };

describe('backoffDelay', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('draws from [0, min(maxDelay, minDelay * factor^(n-1))]: full jitter', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999999);
    expect(backoffDelay(1, policy)).toBe(100);
    expect(backoffDelay(2, policy)).toBe(200);
    expect(backoffDelay(3, policy)).toBe(400);
    expect(backoffDelay(4, policy)).toBe(800);
    expect(backoffDelay(5, policy)).toBe(1_000);
    expect(backoffDelay(30, policy)).toBe(1_000);
    vi.spyOn(Math, 'random').mockReturnValue(0);
    expect(backoffDelay(1, policy)).toBe(0);
    expect(backoffDelay(5, policy)).toBe(0);
  });

  it('stays within the window over many draws, and actually spreads', () => {
    const draws = Array.from({ length: 500 }, () => backoffDelay(3, policy));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...draws)).toBeLessThanOrEqual(400);
    expect(new Set(draws).size).toBeGreaterThan(50);
  });

  it('follows the default policy: from 500 ms, factor 2, capped at 30 s', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999999);
    expect(backoffDelay(1, DEFAULTS.retry)).toBe(500);
    expect(backoffDelay(4, DEFAULTS.retry)).toBe(4_000);
    expect(backoffDelay(20, DEFAULTS.retry)).toBe(30_000);
  });

  it('lets a Retry-After win, clamped to maxRetryAfter', () => {
    expect(backoffDelay(1, policy, 2_000)).toBe(2_000);
    expect(backoffDelay(1, policy, 60_000)).toBe(5_000);
    expect(backoffDelay(1, policy, 0)).toBe(0);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  it('reads delta seconds', () => {
    expect(parseRetryAfter('3', 60_000, now)).toBe(3_000);
    expect(parseRetryAfter(' 0 ', 60_000, now)).toBe(0);
    expect(parseRetryAfter(['2', '9'], 60_000, now)).toBe(2_000);
  });
  it('reads an HTTP date, and a past date means now', () => {
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:10 GMT', 60_000, now)).toBe(10_000);
    expect(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', 60_000, now)).toBe(0);
  });
  it('clamps, and ignores garbage', () => {
    expect(parseRetryAfter('3600', 60_000, now)).toBe(60_000);
    expect(parseRetryAfter('soon', 60_000, now)).toBeUndefined();
    expect(parseRetryAfter('-5', 60_000, now)).toBeUndefined();
    expect(parseRetryAfter(undefined, 60_000, now)).toBeUndefined();
  });
});

describe('which statuses are retried', () => {
  it.each([
    [408, true],
    [429, true],
    [500, true],
    [502, true],
    [503, true],
    [504, true],
    [599, true],
    [501, false],
    [505, false],
    [400, false],
    [401, false],
    [404, false],
    [410, false],
    [422, false],
    [301, false],
    [302, false],
    [304, false],
  ])('%i → retryable %s', (status, retryable) => {
    expect(isRetryableStatus(status)).toBe(retryable);
    expect(statusError(status, '', {}, policy).retryable).toBe(retryable);
  });

  it('carries Retry-After only on 408, 429 and 503', () => {
    expect(statusError(429, '', { 'retry-after': '2' }, policy).retryAfterMs).toBe(2_000);
    expect(statusError(503, '', { 'retry-after': '1' }, policy).retryAfterMs).toBe(1_000);
    expect(statusError(500, '', { 'retry-after': '1' }, policy).retryAfterMs).toBeUndefined();
    expect(statusError(400, '', { 'retry-after': '1' }, policy).retryAfterMs).toBeUndefined();
  });
});

describe('retries against a real server', () => {
  let server: FaultServer | undefined;
  let dispatcher: Dispatcher | undefined;
  afterEach(async () => {
    await dispatcher?.close({ timeout: 0 });
    await server?.close();
    dispatcher = undefined;
    server = undefined;
  });

  function make(options: Parameters<typeof createDispatcher>[0] = {}): {
    dispatcher: Dispatcher;
    retries: RetryEvent[];
  } {
    const made = createDispatcher({ retry: FAST_RETRY, logger: recordingLogger(), ...options });
    const retries: RetryEvent[] = [];
    made.on('retry', (event) => retries.push(event));
    dispatcher = made;
    return { dispatcher: made, retries };
  }

  it('delivers [503, 503, 200] on attempt 3, with two retry events', async () => {
    const seq = await statusSequence([503, 503, 200]);
    server = seq;
    const { dispatcher: d, retries } = make();
    const result = await d.send(`${seq.url}/x`, { json: { n: 1 } }).done;
    expect(result.state).toBe('delivered');
    expect(result.attempts).toBe(3);
    expect(result.response?.status).toBe(200);
    expect(result.error).toBeUndefined();
    expect(seq.arrivals).toHaveLength(3);
    expect(retries.map((r) => r.attempt)).toEqual([1, 2]);
    expect(retries.every((r) => r.error instanceof HttpStatusError && r.error.status === 503)).toBe(true);
    expect(retries.every((r) => r.delayMs >= 0 && r.delayMs <= FAST_RETRY.maxDelay)).toBe(true);
    expect(d.stats()).toMatchObject({ delivered: 1, retries: 2, failed: 0 });
  });

  it('gives up after the configured attempts and keeps the last error and response', async () => {
    const seq = await statusSequence([500]);
    server = seq;
    const { dispatcher: d } = make({ retry: { ...FAST_RETRY, attempts: 3 } });
    const result = await d.send(seq.url).done;
    expect(result.state).toBe('failed');
    expect(result.attempts).toBe(3);
    expect(result.error).toBeInstanceOf(HttpStatusError);
    expect((result.error as HttpStatusError).status).toBe(500);
    expect(result.response?.status).toBe(500);
    expect(seq.arrivals).toHaveLength(3);
  });

  it('makes one attempt with retry: false, per dispatcher or per send', async () => {
    const seq = await statusSequence([503, 200]);
    server = seq;
    const { dispatcher: d } = make();
    const result = await d.send(seq.url, { retry: false }).done;
    expect(result).toMatchObject({ state: 'failed', attempts: 1 });
    expect(seq.arrivals).toHaveLength(1);
  });

  it('honours Retry-After in seconds', async () => {
    const seq = await statusSequence([{ status: 429, headers: { 'retry-after': '1' } }, 200]);
    server = seq;
    const { dispatcher: d, retries } = make();
    const result = await d.send(seq.url).done;
    expect(result).toMatchObject({ state: 'delivered', attempts: 2 });
    expect(retries[0]?.delayMs).toBe(1_000);
    const [first = 0, second = 0] = seq.arrivals;
    expect(second - first).toBeGreaterThanOrEqual(900);
  });

  it('honours Retry-After as an HTTP date', async () => {
    const date = new Date(Date.now() + 30_000).toUTCString();
    const seq = await statusSequence([{ status: 503, headers: { 'retry-after': date } }, 200]);
    server = seq;
    const { dispatcher: d, retries } = make();
    const handle = d.send(seq.url);
    await vi.waitFor(() => expect(retries).toHaveLength(1));
    // The date is ~30 s out (second precision): far beyond the 20 ms backoff cap, so it was honoured.
    expect(retries[0]?.delayMs).toBeGreaterThan(28_000);
    expect(retries[0]?.delayMs).toBeLessThanOrEqual(30_000);
    expect(handle.state).toBe('retrying');
    handle.cancel();
  });

  it('clamps Retry-After to maxRetryAfter', async () => {
    const seq = await statusSequence([{ status: 503, headers: { 'retry-after': '3600' } }, 200]);
    server = seq;
    const { dispatcher: d, retries } = make({ retry: { ...FAST_RETRY, maxRetryAfter: 50 } });
    const result = await d.send(seq.url).done;
    expect(result).toMatchObject({ state: 'delivered', attempts: 2 });
    expect(retries[0]?.delayMs).toBe(50);
  });

  it.each([
    [301, 'redirect'],
    [302, 'redirect'],
    [307, 'redirect'],
    [308, 'redirect'],
    [400, 'client error'],
    [404, 'client error'],
    [410, 'gone'],
    [501, 'not implemented'],
    [505, 'version not supported'],
  ])('fails %i (%s) at once, without retrying or following', async (status) => {
    const target = await statusSequence([200]);
    const seq =
      status >= 300 && status < 400
        ? await redirect({ location: `${target.url}/moved`, status: status as 301 })
        : await statusSequence([status, 200]);
    server = seq;
    const { dispatcher: d, retries } = make();
    try {
      const result = await d.send(`${seq.url}/x`).done;
      expect(result.state).toBe('failed');
      expect(result.attempts).toBe(1);
      expect(result.response?.status).toBe(status);
      expect(result.error).toBeInstanceOf(HttpStatusError);
      expect(result.error?.retryable).toBe(false);
      expect(retries).toHaveLength(0);
      expect(seq.requestsStarted).toBe(1);
      // A 3xx is a failure: the Location is never followed.
      expect(target.requestsStarted).toBe(0);
    } finally {
      await target.close();
    }
  });

  it.each([408, 429, 502, 504])('retries %i', async (status) => {
    const seq = await statusSequence([status, 204]);
    server = seq;
    const { dispatcher: d } = make();
    const result = await d.send(seq.url).done;
    expect(result).toMatchObject({ state: 'delivered', attempts: 2 });
  });

  it('retries a refused connection with a typed NetworkError, then fails', async () => {
    const refusing = await refusingPort();
    const { dispatcher: d, retries } = make({ retry: { ...FAST_RETRY, attempts: 3 } });
    const result = await d.send(`${refusing.url}/x`).done;
    expect(result).toMatchObject({ state: 'failed', attempts: 3 });
    expect(result.error).toBeInstanceOf(NetworkError);
    expect(result.error?.message).toMatch(/ECONNREFUSED/);
    expect(retries).toHaveLength(2);
  });
});
