import { fromNotificationJson, type NotificationJson } from '../notification/json.js';
import {
  checkInteger,
  checkKeys,
  checkObject,
  DEFAULTS,
  resolveRetry,
  resolveTimeout,
  show,
} from '../options/options.js';
import { breakerOutcome, OriginBreakers, resolveBreaker, type BreakerOptions } from '../policy/breaker.js';
import { decide, type Decision } from '../policy/decide.js';
import type { GuardSetting } from '../policy/guard.js';
import type { SigningOptions } from '../policy/signing.js';
import { addHeaders, type HeadersInput } from '../request/request.js';
import { AttemptAbort } from '../transport/attempt-abort.js';
import { composeTransport } from '../transport/compose.js';
import type { Transport, TransportRequest, TransportResult } from '../transport/transport.js';
import { CancelledError, InvalidArgumentError, NetworkError } from '../util/errors.js';
import { rateLimitLogger, stderrLogger, type Logger } from '../util/logger.js';
import type { RetryOptions, TimeoutOptions } from '../options/options.js';
import { attemptOnce } from './attempt.js';

/**
 * The dispatcher options that shape one attempt, for a worker that delivers serialised
 * notifications (a fleet backend's worker, the CLI). A notification's own timeout and retry
 * policy, stored with it, win over `timeout` and `retry` here.
 *
 * @example
 * ```ts
 * const runner = createAttemptRunner({ signing: { secret }, guard: 'public-only' });
 * ```
 */
export interface AttemptRunnerOptions {
  /** Deadlines for notifications stored without them. */
  timeout?: number | Partial<TimeoutOptions>;
  /** Retry policy for notifications stored without one. */
  retry?: Partial<RetryOptions> | false;
  /** Sent when the notification carries no user-agent header. */
  userAgent?: string;
  /** Added to every request unless the notification sets the name. */
  headers?: HeadersInput;
  logger?: Logger;
  /** Signs notifications stored with `sign: true`, per attempt. */
  signing?: SigningOptions;
  guard?: GuardSetting;
  /** A circuit breaker per origin (default on), or `false`. An open circuit answers `hold`. */
  breaker?: Partial<BreakerOptions> | false;
  transport?: Transport;
  maxResponseBytes?: number;
}

/**
 * What one attempt came to, and what to do next.
 *
 * @example
 * ```ts
 * const { result, decision } = await runner.run(json, signal);
 * ```
 */
export interface AttemptReport {
  /** The transport's result (for `hold`, an error result: no request was made). */
  result: TransportResult;
  /** `decide(...)` applied with `n.attempts + 1` as this attempt, or `hold` for an open circuit. */
  decision: Decision;
}

/**
 * Runs single attempts of serialised notifications: signing, guard, timeouts, breaker admission,
 * Retry-After and the outcome decision, exactly as the in-process dispatcher does.
 *
 * @example
 * ```ts
 * const { decision } = await runner.run(job.data, AbortSignal.timeout(60_000));
 * if (decision.kind === 'retry') await queue.retryLater(job, decision.delay);
 * ```
 */
export interface AttemptRunner {
  /** One attempt: signing, guard, timeouts, breaker admission, Retry-After; never rejects. */
  run(notification: NotificationJson, signal: AbortSignal): Promise<AttemptReport>;
  /** Closes the transport's connections. */
  close(): Promise<void>;
}

const RUNNER_KEYS = Object.keys({
  timeout: true,
  retry: true,
  userAgent: true,
  headers: true,
  logger: true,
  signing: true,
  guard: true,
  breaker: true,
  transport: true,
  maxResponseBytes: true,
} satisfies Record<keyof AttemptRunnerOptions, true>);

/**
 * Creates the attempt runner a backend's workers share with the dispatcher.
 *
 * @example
 * ```ts
 * const runner = createAttemptRunner({ signing: { secret: process.env.WEBHOOK_SECRET! } });
 * const report = await runner.run(json, new AbortController().signal);
 * ```
 */
export function createAttemptRunner(options: AttemptRunnerOptions = {}): AttemptRunner {
  checkKeys('createAttemptRunner options', checkObject('options', options), RUNNER_KEYS);
  // Validated so a worker may take the dispatcher's options object as it is.
  resolveTimeout('timeout', options.timeout, DEFAULTS.timeout);
  resolveRetry('retry', options.retry, DEFAULTS.retry);
  const userAgent = options.userAgent ?? DEFAULTS.userAgent;
  if (typeof userAgent !== 'string' || /[^\t\x20-\x7e\x80-\xff]/.test(userAgent)) {
    throw new InvalidArgumentError(
      `userAgent must be a string without control characters, got ${show(userAgent)}`,
    );
  }
  const defaults: string[] = [];
  if (options.headers !== undefined) addHeaders(defaults, options.headers);
  defaults.push('user-agent', userAgent);
  const logger = rateLimitLogger(options.logger ?? stderrLogger);
  const maxResponseBytes =
    options.maxResponseBytes === undefined
      ? DEFAULTS.maxResponseBytes
      : checkInteger('maxResponseBytes', options.maxResponseBytes, 0, 16 * 1024 * 1024);
  const transport = composeTransport({
    transport: options.transport,
    guard: options.guard,
    signing: options.signing,
    maxResponseBytes,
  });
  const breakerOptions = resolveBreaker(options.breaker);
  const breaker =
    breakerOptions === undefined
      ? undefined
      : new OriginBreakers(breakerOptions, {
          onOpen: (origin, failureRate) =>
            logger.warn(
              { origin, failureRate },
              'afterward: circuit open; notifications to this origin wait',
            ),
          onClose: (origin) => logger.debug?.({ origin }, 'afterward: circuit closed'),
        });

  return {
    async run(notification, signal) {
      const { origin } = notification;
      if (breaker !== undefined && !breaker.admit(origin)) {
        const now = Date.now();
        return {
          result: {
            kind: 'error',
            error: new NetworkError(`circuit open for ${origin}: not attempted`, { beforeSent: true }),
          },
          decision: { kind: 'hold', until: breaker.nextWakeAt() ?? now + (breakerOptions?.openMs ?? 0) },
        };
      }
      const request = withDefaults(fromNotificationJson(notification), defaults);
      const attempt = notification.attempts + 1;
      const abort = new AttemptAbort(attempt);
      const onAbort = (): void => abort.abort(new CancelledError(signal.reason));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      let result: TransportResult;
      try {
        result = await attemptOnce(transport, request, abort);
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
      breaker?.record(origin, breakerOutcome(result, signal.aborted));
      const decision = decide(result, { attempt, retry: notification.retry, now: Date.now() });
      return { result, decision };
    },
    close: () => transport.close(),
  };
}

function withDefaults(request: TransportRequest, defaults: readonly string[]): TransportRequest {
  const headers = [...request.headers];
  for (let i = 0; i < defaults.length; i += 2) {
    const name = defaults[i] as string;
    let present = false;
    for (let j = 0; j < headers.length; j += 2) if (headers[j] === name) present = true;
    if (!present) headers.push(name, defaults[i + 1] as string);
  }
  return { ...request, headers };
}
