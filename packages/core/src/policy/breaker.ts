import { InvalidArgumentError } from '../util/errors.js';
import { checkDuration, checkInteger, checkKeys, checkNumber, checkObject } from '../options/options.js';
import { isRetryableStatus } from './retry.js';
import type { TransportResult } from '../transport/transport.js';

/**
 * The per-origin circuit breaker's settings. An origin's circuit opens when, within `windowMs`,
 * at least `minRequests` attempts completed and at least `failureRate` of them failed; while
 * open, nothing is sent to that origin (its notifications wait in the queue); after `openMs` one
 * probe attempt goes, and its outcome closes the circuit or opens it again.
 *
 * @example
 * ```ts
 * createDispatcher({ breaker: { minRequests: 20, failureRate: 0.8, openMs: 60_000 } });
 * ```
 */
export interface BreakerOptions {
  /** The rolling window failures are counted over. Default 30 000 ms. */
  windowMs: number;
  /** Completed attempts needed in the window before the rate is judged. Default 10. */
  minRequests: number;
  /** Share of failed attempts (0 to 1, exclusive of 0) that opens the circuit. Default 0.5. */
  failureRate: number;
  /** How long an open circuit holds attempts back before one probe is let through. Default 30 000 ms. */
  openMs: number;
  /** Origins tracked at once; past this the least recently used is forgotten. Default 10 000. */
  maxOrigins: number;
}

/** Defaults of {@link BreakerOptions}. */
export const BREAKER_DEFAULTS: Readonly<BreakerOptions> = {
  windowMs: 30_000,
  minRequests: 10,
  failureRate: 0.5,
  openMs: 30_000,
  maxOrigins: 10_000,
};

const BREAKER_KEYS = ['windowMs', 'minRequests', 'failureRate', 'openMs', 'maxOrigins'] as const;

/**
 * Validates the dispatcher's `breaker` option: `undefined` gives the defaults, `false` turns the
 * breaker off (`undefined` result).
 *
 * @throws InvalidArgumentError for an unknown key or a value out of range.
 */
export function resolveBreaker(value: unknown): BreakerOptions | undefined {
  if (value === false) return undefined;
  if (value === undefined) return { ...BREAKER_DEFAULTS };
  if (value === true) {
    throw new InvalidArgumentError('breaker must be an object of options or false (it is on by default)');
  }
  const obj = checkObject('breaker', value);
  checkKeys('breaker', obj, BREAKER_KEYS);
  const pick = (key: keyof BreakerOptions, check: (name: string, value: unknown) => number): number =>
    obj[key] === undefined ? BREAKER_DEFAULTS[key] : check(`breaker.${key}`, obj[key]);
  const failureRate = pick('failureRate', (name, v) => checkNumber(name, v, 0, 1));
  if (failureRate === 0) {
    throw new InvalidArgumentError('breaker.failureRate must be above 0 (0 would open on any traffic)');
  }
  return {
    windowMs: pick('windowMs', (name, v) => checkDuration(name, v, 1, true)),
    minRequests: pick('minRequests', (name, v) => checkInteger(name, v, 1)),
    failureRate,
    openMs: pick('openMs', (name, v) => checkDuration(name, v, 1, true)),
    maxOrigins: pick('maxOrigins', (name, v) => checkInteger(name, v, 1)),
  };
}

/**
 * How an attempt counts for the breaker. A failure is what says the receiver is not coping:
 * network errors, timeouts, 5xx, 408 and 429. Any other answer (a 4xx included) shows the
 * receiver working. `'ignore'`: the attempt says nothing about the receiver (it was cancelled,
 * or refused before any connection, as a blocked address is).
 */
export type BreakerOutcome = 'success' | 'failure' | 'ignore';

/** Maps an attempt's result onto a {@link BreakerOutcome}. `cancelled`: the handle was cancelled meanwhile. */
export function breakerOutcome(result: TransportResult, cancelled: boolean): BreakerOutcome {
  if (cancelled) return 'ignore';
  switch (result.kind) {
    case 'sent':
      return 'success';
    case 'response': {
      const { status } = result.response;
      return status >= 500 || isRetryableStatus(status) ? 'failure' : 'success';
    }
    case 'error':
      // Only retryable errors come from the receiver side (connect, timeouts, resets); the rest
      // (blocked address, cancellation, oversized headers) are not about the receiver's health.
      return result.error.retryable ? 'failure' : 'ignore';
  }
}

/** What the breaker tells its owner about a transition. */
export interface BreakerListener {
  onOpen(origin: string, failureRate: number): void;
  onClose(origin: string, failureRate: number): void;
}

// The window is kept as a ring of buckets, so an origin costs a fixed amount of memory however
// many attempts it sees; the rate is judged at bucket granularity (windowMs / BUCKETS).
const BUCKETS = 10;

/** Where an origin's circuit stands. */
export type CircuitState = 'closed' | 'open' | 'half-open';

interface Circuit {
  state: CircuitState;
  /** Bucket numbers (time / bucketMs) of each ring slot, then completed and failed counts. */
  readonly slots: Float64Array;
  readonly total: Uint32Array;
  readonly failed: Uint32Array;
  /** When an open circuit lets a probe through. */
  openUntil: number;
  probing: boolean;
  /** The rate that opened the circuit, reported again when it closes. */
  openRate: number;
  /** Last time this circuit saw an outcome or a transition, for pruning. */
  touched: number;
}

/**
 * Per-origin circuit breakers, as the dispatcher uses them: `admit` before an attempt starts,
 * `record` when it ends, `nextWakeAt` so the scheduler wakes when an open circuit may probe.
 *
 * @example
 * ```ts
 * const breakers = new OriginBreakers(BREAKER_DEFAULTS, { onOpen: warn, onClose: info });
 * if (breakers.admit(origin)) breakers.record(origin, breakerOutcome(await send(), false));
 * ```
 */
export class OriginBreakers {
  readonly #options: BreakerOptions;
  readonly #bucketMs: number;
  readonly #listener: BreakerListener;
  readonly #now: () => number;
  /** Insertion order is recency: touched circuits move to the end, so the first is the LRU. */
  readonly #circuits = new Map<string, Circuit>();
  readonly #open = new Set<Circuit>();
  /** A lower bound of the earliest `openUntil` among open circuits; recomputed when passed. */
  #wakeAt = Infinity;
  /** The circuit last moved to the end of {@link #circuits}, and its origin (one busy origin skips the lookup). */
  #last: Circuit | undefined;
  #lastOrigin: string | undefined;
  #prunedAt = -Infinity;

  constructor(options: BreakerOptions, listener: BreakerListener, now: () => number = Date.now) {
    this.#options = options;
    this.#bucketMs = Math.max(1, Math.ceil(options.windowMs / BUCKETS));
    this.#listener = listener;
    this.#now = now;
  }

  /** Origins tracked now. */
  get size(): number {
    return this.#circuits.size;
  }

  /** The state of `origin`'s circuit (`'closed'` when untracked). */
  state(origin: string): CircuitState {
    const circuit = this.#circuits.get(origin);
    if (circuit === undefined) return 'closed';
    this.#expire(circuit, this.#now());
    return circuit.state;
  }

  /**
   * May an attempt to `origin` start now? Call it last, right before the attempt is committed:
   * on a half-open circuit a `true` answer is the one probe.
   */
  admit(origin: string): boolean {
    const circuit = this.#find(origin);
    if (circuit === undefined || circuit.state === 'closed') return true;
    this.#expire(circuit, this.#now());
    if (circuit.state === 'open' || circuit.probing) return false;
    circuit.probing = true;
    return true;
  }

  /** Records how an attempt to `origin` ended, opening or closing its circuit as needed. */
  record(origin: string, outcome: BreakerOutcome): void {
    const now = this.#now();
    this.#prune(now);
    let circuit = this.#find(origin);
    if (outcome === 'ignore') {
      // A cancelled probe says nothing: let another one go.
      if (circuit?.state === 'half-open') circuit.probing = false;
      return;
    }
    if (circuit === undefined) {
      circuit = this.#track(origin, now);
    } else {
      this.#touch(origin, circuit, now);
      this.#expire(circuit, now);
    }
    switch (circuit.state) {
      case 'open':
        // An attempt that started before the circuit opened; the verdict is already in.
        return;
      case 'half-open':
        // The first outcome after half-open decides (normally the probe's).
        if (outcome === 'success') this.#close(origin, circuit);
        else this.#trip(origin, circuit, now, circuit.openRate);
        return;
      case 'closed': {
        const slot = this.#slot(circuit, now);
        circuit.total[slot] = (circuit.total[slot] ?? 0) + 1;
        if (outcome === 'success') return;
        circuit.failed[slot] = (circuit.failed[slot] ?? 0) + 1;
        const { total, failed } = this.#sums(circuit, now);
        const rate = failed / total;
        if (total >= this.#options.minRequests && rate >= this.#options.failureRate) {
          this.#trip(origin, circuit, now, rate);
        }
      }
    }
  }

  /**
   * The earliest time an open circuit will let a probe through, or undefined if none is open.
   * Circuits whose time has come turn half-open here, so a caller arming a timer with the
   * answer never gets a time in the past twice.
   */
  nextWakeAt(): number | undefined {
    if (this.#open.size === 0) return undefined;
    const now = this.#now();
    if (this.#wakeAt > now) return this.#wakeAt;
    let earliest = Infinity;
    let turned = false;
    for (const circuit of this.#open) {
      this.#expire(circuit, now);
      if (circuit.state === 'open') earliest = Math.min(earliest, circuit.openUntil);
      else turned = true;
    }
    this.#wakeAt = earliest;
    // A circuit that turned half-open just now wants its probe: answer "now", once, so the caller
    // pumps again. Answering nothing would leave its queued notifications waiting for a pump that
    // no timer will bring (the scheduler may have been turned away a moment before).
    if (turned) return now;
    return earliest === Infinity ? undefined : earliest;
  }

  #find(origin: string): Circuit | undefined {
    return origin === this.#lastOrigin ? this.#last : this.#circuits.get(origin);
  }

  #track(origin: string, now: number): Circuit {
    const circuit: Circuit = {
      state: 'closed',
      slots: new Float64Array(BUCKETS).fill(-1),
      total: new Uint32Array(BUCKETS),
      failed: new Uint32Array(BUCKETS),
      openUntil: 0,
      probing: false,
      openRate: 0,
      touched: now,
    };
    this.#circuits.set(origin, circuit);
    this.#last = circuit;
    this.#lastOrigin = origin;
    while (this.#circuits.size > this.#options.maxOrigins) {
      const [oldest, dropped] = this.#circuits.entries().next().value as [string, Circuit];
      this.#forget(oldest, dropped);
    }
    return circuit;
  }

  #touch(origin: string, circuit: Circuit, now: number): void {
    circuit.touched = now;
    // Already the most recent (the usual case: one busy origin): re-inserting into the Map on
    // every attempt would be a measurable cost on the hot path for nothing.
    if (this.#last === circuit) return;
    this.#last = circuit;
    this.#lastOrigin = origin;
    this.#circuits.delete(origin);
    this.#circuits.set(origin, circuit);
  }

  #forget(origin: string, circuit: Circuit): void {
    if (circuit === this.#last) {
      this.#last = undefined;
      this.#lastOrigin = undefined;
    }
    this.#circuits.delete(origin);
    this.#open.delete(circuit);
  }

  /** Open → half-open once `openUntil` has passed. */
  #expire(circuit: Circuit, now: number): void {
    if (circuit.state !== 'open' || circuit.openUntil > now) return;
    circuit.state = 'half-open';
    circuit.probing = false;
    circuit.touched = now;
    this.#open.delete(circuit);
  }

  #trip(origin: string, circuit: Circuit, now: number, rate: number): void {
    const reopening = circuit.state === 'half-open';
    circuit.state = 'open';
    circuit.probing = false;
    circuit.openUntil = now + this.#options.openMs;
    circuit.openRate = rate;
    this.#open.add(circuit);
    this.#wakeAt = Math.min(this.#wakeAt, circuit.openUntil);
    // A failed probe re-opens quietly: the open event already told, and the close event will.
    if (!reopening) this.#listener.onOpen(origin, rate);
  }

  #close(origin: string, circuit: Circuit): void {
    const rate = circuit.openRate;
    // A closed circuit starts over: the failures that opened it are history.
    this.#forget(origin, circuit);
    this.#listener.onClose(origin, rate);
  }

  /** The ring slot for `now`, cleared if it last held an older bucket. */
  #slot(circuit: Circuit, now: number): number {
    const bucket = Math.floor(now / this.#bucketMs);
    const slot = bucket % BUCKETS;
    if (circuit.slots[slot] !== bucket) {
      circuit.slots[slot] = bucket;
      circuit.total[slot] = 0;
      circuit.failed[slot] = 0;
    }
    return slot;
  }

  #sums(circuit: Circuit, now: number): { total: number; failed: number } {
    const oldest = Math.floor(now / this.#bucketMs) - BUCKETS + 1;
    let total = 0;
    let failed = 0;
    for (let slot = 0; slot < BUCKETS; slot++) {
      if ((circuit.slots[slot] ?? -1) < oldest) continue;
      total += circuit.total[slot] ?? 0;
      failed += circuit.failed[slot] ?? 0;
    }
    return { total, failed };
  }

  /**
   * Drops circuits that have been quiet for a whole window (closed ones, and half-open ones with
   * no probe out): an untracked origin would be judged the same. Open circuits stay until they
   * turn half-open. Looks only at the least recently touched two, so it costs O(1) per outcome.
   */
  #prune(now: number): void {
    // Quiet circuits only matter after a whole window; looking once a second is plenty, and keeps
    // an iterator off every attempt. The Map is in recency order, so the quiet ones come first.
    if (now - this.#prunedAt < 1_000) return;
    this.#prunedAt = now;
    for (const [origin, circuit] of this.#circuits) {
      this.#expire(circuit, now);
      if (now - circuit.touched < this.#options.windowMs) return;
      if (circuit.state !== 'open' && !circuit.probing) this.#forget(origin, circuit);
    }
  }
}
