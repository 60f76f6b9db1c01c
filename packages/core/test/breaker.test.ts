import { describe, expect, it } from 'vitest';
import {
  BREAKER_DEFAULTS,
  breakerOutcome,
  OriginBreakers,
  resolveBreaker,
  type BreakerOptions,
  type BreakerOutcome,
} from '../src/policy/breaker.js';
import { createDispatcher } from '../src/dispatcher/dispatcher.js';
import {
  BlockedAddressError,
  CancelledError,
  InvalidArgumentError,
  NetworkError,
  TimeoutError,
  type AfterwardError,
} from '../src/util/errors.js';
import type { TransportResult } from '../src/transport/transport.js';

const A = 'https://a.example.com';
const B = 'https://b.example.com';

interface Transition {
  kind: 'open' | 'close';
  origin: string;
  failureRate: number;
}

/** Breakers on a hand-driven clock, recording every transition. */
function setup(options: Partial<BreakerOptions> = {}): {
  breakers: OriginBreakers;
  events: Transition[];
  clock: { now: number };
  /** Records `n` outcomes on `origin`. */
  feed: (origin: string, outcome: BreakerOutcome, n?: number) => void;
} {
  const clock = { now: 1_000_000 };
  const events: Transition[] = [];
  const breakers = new OriginBreakers(
    { ...BREAKER_DEFAULTS, ...options },
    {
      onOpen: (origin, failureRate) => events.push({ kind: 'open', origin, failureRate }),
      onClose: (origin, failureRate) => events.push({ kind: 'close', origin, failureRate }),
    },
    () => clock.now,
  );
  const feed = (origin: string, outcome: BreakerOutcome, n = 1): void => {
    for (let i = 0; i < n; i++) breakers.record(origin, outcome);
  };
  return { breakers, events, clock, feed };
}

describe('resolveBreaker', () => {
  it('is on with the defaults when not given, off with false', () => {
    expect(resolveBreaker(undefined)).toEqual({
      windowMs: 30_000,
      minRequests: 10,
      failureRate: 0.5,
      openMs: 30_000,
      maxOrigins: 10_000,
    });
    expect(resolveBreaker(false)).toBeUndefined();
  });

  it('merges a partial setting over the defaults', () => {
    expect(resolveBreaker({ minRequests: 3, openMs: 500 })).toEqual({
      ...BREAKER_DEFAULTS,
      minRequests: 3,
      openMs: 500,
    });
  });

  it.each([
    ['true', true],
    ['a string', 'on'],
    ['an array', []],
    ['an unknown key', { minRequest: 5 }],
    ['windowMs 0', { windowMs: 0 }],
    ['a fractional minRequests', { minRequests: 2.5 }],
    ['minRequests 0', { minRequests: 0 }],
    ['failureRate 0', { failureRate: 0 }],
    ['failureRate above 1', { failureRate: 1.5 }],
    ['failureRate NaN', { failureRate: Number.NaN }],
    ['a negative openMs', { openMs: -1 }],
    ['openMs as a string', { openMs: '30s' }],
    ['maxOrigins 0', { maxOrigins: 0 }],
  ])('refuses %s with InvalidArgumentError', (_label, value) => {
    expect(() => resolveBreaker(value)).toThrow(InvalidArgumentError);
  });

  it('is validated by createDispatcher', () => {
    expect(() => createDispatcher({ breaker: { failureRate: 2 } })).toThrow(/breaker\.failureRate/);
    expect(() => createDispatcher({ breaker: { windowMS: 1 } as Partial<BreakerOptions> })).toThrow(
      /unknown option "windowMS"/,
    );
  });
});

describe('breakerOutcome', () => {
  const response = (status: number): TransportResult => ({
    kind: 'response',
    response: { status, statusText: '', headers: {} },
  });
  const error = (e: AfterwardError): TransportResult => ({ kind: 'error', error: e });

  it.each([
    [200, 'success'],
    [204, 'success'],
    [302, 'success'],
    [400, 'success'],
    [401, 'success'],
    [404, 'success'],
    [410, 'success'],
    [422, 'success'],
    [408, 'failure'],
    [429, 'failure'],
    [500, 'failure'],
    [501, 'failure'],
    [502, 'failure'],
    [503, 'failure'],
    [504, 'failure'],
  ] as const)('counts a %i answer as a %s', (status, expected) => {
    expect(breakerOutcome(response(status), false)).toBe(expected);
  });

  it('counts network errors and timeouts as failures', () => {
    expect(breakerOutcome(error(new NetworkError('ECONNREFUSED', { beforeSent: true })), false)).toBe(
      'failure',
    );
    expect(breakerOutcome(error(new TimeoutError('headers', 10_000)), false)).toBe('failure');
    expect(breakerOutcome(error(new TimeoutError('total', 15_000)), false)).toBe('failure');
  });

  it('ignores what says nothing about the receiver', () => {
    expect(breakerOutcome(error(new BlockedAddressError('x', '10.0.0.1', 'private')), false)).toBe('ignore');
    expect(breakerOutcome(error(new CancelledError('bye')), false)).toBe('ignore');
    expect(
      breakerOutcome(
        error(new NetworkError('headers too big', { beforeSent: false, retryable: false })),
        false,
      ),
    ).toBe('ignore');
    // Cancelled mid-attempt: whatever the transport came back with, the attempt was cut short by us.
    expect(breakerOutcome(response(503), true)).toBe('ignore');
  });

  it('counts a sent (confirm: "sent") attempt as a success', () => {
    expect(breakerOutcome({ kind: 'sent' }, false)).toBe('success');
  });
});

describe('OriginBreakers', () => {
  it('stays closed until minRequests attempts completed in the window', () => {
    const { breakers, events, feed } = setup();
    feed(A, 'failure', 9);
    expect(breakers.state(A)).toBe('closed');
    expect(breakers.admit(A)).toBe(true);
    feed(A, 'failure');
    expect(breakers.state(A)).toBe('open');
    expect(events).toEqual([{ kind: 'open', origin: A, failureRate: 1 }]);
  });

  it('opens when the failure rate reaches failureRate, not below', () => {
    const { breakers, events, feed } = setup();
    feed(A, 'success', 6);
    feed(A, 'failure', 4); // 4 of 10
    expect(breakers.state(A)).toBe('closed');
    feed(A, 'failure'); // 5 of 11
    expect(breakers.state(A)).toBe('closed');
    feed(A, 'failure'); // 6 of 12: half
    expect(breakers.state(A)).toBe('open');
    expect(events).toEqual([{ kind: 'open', origin: A, failureRate: 0.5 }]);
  });

  it('treats 4xx-style successes as a working receiver: never opens on them', () => {
    const { breakers, events, feed } = setup();
    feed(A, 'success', 100);
    expect(breakers.state(A)).toBe('closed');
    expect(events).toEqual([]);
  });

  it('forgets failures older than the window', () => {
    const { breakers, clock, feed } = setup({ windowMs: 10_000 });
    feed(A, 'failure', 9);
    clock.now += 11_000;
    feed(A, 'failure');
    expect(breakers.state(A)).toBe('closed');
    feed(A, 'failure', 8);
    expect(breakers.state(A)).toBe('closed');
    feed(A, 'failure');
    expect(breakers.state(A)).toBe('open');
  });

  it('counts failures spread over the window', () => {
    const { breakers, clock, feed } = setup({ windowMs: 10_000 });
    for (let i = 0; i < 10; i++) {
      feed(A, 'failure');
      clock.now += 900;
    }
    expect(breakers.state(A)).toBe('open');
  });

  it('holds attempts back while open, then lets exactly one probe through', () => {
    const { breakers, clock, feed } = setup({ openMs: 5_000 });
    feed(A, 'failure', 10);
    expect(breakers.admit(A)).toBe(false);
    clock.now += 4_999;
    expect(breakers.admit(A)).toBe(false);
    clock.now += 1;
    expect(breakers.state(A)).toBe('half-open');
    expect(breakers.admit(A)).toBe(true);
    expect(breakers.admit(A)).toBe(false);
    expect(breakers.admit(A)).toBe(false);
  });

  it('closes on a successful probe, reporting the rate that opened it, and starts over', () => {
    const { breakers, events, clock, feed } = setup({ openMs: 5_000 });
    feed(A, 'success', 5);
    feed(A, 'failure', 5);
    clock.now += 5_000;
    expect(breakers.admit(A)).toBe(true);
    feed(A, 'success');
    expect(breakers.state(A)).toBe('closed');
    expect(events).toEqual([
      { kind: 'open', origin: A, failureRate: 0.5 },
      { kind: 'close', origin: A, failureRate: 0.5 },
    ]);
    expect(breakers.admit(A)).toBe(true);
    expect(breakers.admit(A)).toBe(true);
    // The failures that opened it are history: a new run of minRequests is needed.
    feed(A, 'failure', 9);
    expect(breakers.state(A)).toBe('closed');
  });

  it('opens again, quietly, on a failed probe', () => {
    const { breakers, events, clock, feed } = setup({ openMs: 5_000 });
    feed(A, 'failure', 10);
    clock.now += 5_000;
    expect(breakers.admit(A)).toBe(true);
    feed(A, 'failure');
    expect(breakers.state(A)).toBe('open');
    expect(breakers.admit(A)).toBe(false);
    expect(breakers.nextWakeAt()).toBe(clock.now + 5_000);
    clock.now += 5_000;
    expect(breakers.admit(A)).toBe(true);
    feed(A, 'success');
    expect(events.map((e) => e.kind)).toEqual(['open', 'close']);
  });

  it('lets another probe go when the probe was cancelled', () => {
    const { breakers, clock, feed } = setup({ openMs: 5_000 });
    feed(A, 'failure', 10);
    clock.now += 5_000;
    expect(breakers.admit(A)).toBe(true);
    expect(breakers.admit(A)).toBe(false);
    feed(A, 'ignore');
    expect(breakers.state(A)).toBe('half-open');
    expect(breakers.admit(A)).toBe(true);
  });

  it('ignores outcomes of attempts that were already in flight when it opened', () => {
    const { breakers, events, feed } = setup();
    feed(A, 'failure', 10);
    feed(A, 'success', 5);
    feed(A, 'failure', 5);
    expect(breakers.state(A)).toBe('open');
    expect(events).toHaveLength(1);
  });

  it('keeps origins apart', () => {
    const { breakers, feed } = setup();
    feed(A, 'failure', 10);
    feed(B, 'success', 3);
    expect(breakers.admit(A)).toBe(false);
    expect(breakers.admit(B)).toBe(true);
    expect(breakers.admit('https://never-seen.example')).toBe(true);
  });

  it('tells when the next open circuit may probe, never a time in the past', () => {
    const { breakers, clock, feed } = setup({ openMs: 5_000 });
    expect(breakers.nextWakeAt()).toBeUndefined();
    const t0 = clock.now;
    feed(A, 'failure', 10);
    clock.now += 1_000;
    feed(B, 'failure', 10);
    expect(breakers.nextWakeAt()).toBe(t0 + 5_000);
    clock.now = t0 + 5_000;
    // A turns half-open here: "now", once, so the scheduler pumps for its probe; then B is next.
    expect(breakers.nextWakeAt()).toBe(t0 + 5_000);
    expect(breakers.state(A)).toBe('half-open');
    expect(breakers.nextWakeAt()).toBe(t0 + 6_000);
    clock.now = t0 + 6_000;
    expect(breakers.nextWakeAt()).toBe(t0 + 6_000);
    expect(breakers.nextWakeAt()).toBeUndefined();
  });

  it('bounds memory: at most maxOrigins circuits, least recently used forgotten first', () => {
    const { breakers, feed } = setup({ maxOrigins: 3 });
    feed('https://1.example', 'failure');
    feed('https://2.example', 'failure');
    feed('https://3.example', 'failure');
    feed('https://1.example', 'failure'); // 1 is now the most recent
    feed('https://4.example', 'failure');
    expect(breakers.size).toBe(3);
    // 2 was the least recently used: forgotten, so its next 9 failures start from zero.
    feed('https://2.example', 'failure', 9);
    expect(breakers.state('https://2.example')).toBe('closed');
    expect(breakers.size).toBe(3);
  });

  it('forgets origins whose window went quiet', () => {
    const { breakers, clock, feed } = setup({ windowMs: 10_000 });
    for (let i = 0; i < 50; i++) feed(`https://${i}.example`, 'failure');
    expect(breakers.size).toBe(50);
    clock.now += 10_000;
    // The next outcome prunes every circuit that went quiet.
    for (let i = 0; i < 30; i++) feed(B, 'success');
    expect(breakers.size).toBe(1);
  });

  it('never forgets an open circuit for being quiet', () => {
    const { breakers, clock, feed } = setup({ windowMs: 1_000, openMs: 60_000 });
    feed(A, 'failure', 10);
    clock.now += 5_000;
    for (let i = 0; i < 10; i++) feed(B, 'success');
    expect(breakers.state(A)).toBe('open');
  });
});
