import type { IncomingHttpHeaders } from 'node:http';
import { createDispatcher, type Dispatcher, type DispatcherOptions } from '../dispatcher/dispatcher.js';
import { isAfterwardError, NetworkError, type AfterwardError } from '../util/errors.js';
import type { ConfirmMode } from '../request/request.js';
import type {
  Transport,
  TransportAttempt,
  TransportRequest,
  TransportResult,
} from '../transport/transport.js';

/** One outbound attempt, as the recording transport saw it. */
export interface RecordedRequest {
  id: string;
  url: string;
  method: string;
  /** Lower-case names; repeated headers become arrays. */
  headers: Record<string, string | string[]>;
  body: Buffer | null;
  confirm: ConfirmMode;
  /** 1 for the first attempt. */
  attempt: number;
  /** The body as UTF-8 text ('' when there is none). */
  text(): string;
  /** The body parsed as JSON. */
  json<T = unknown>(): T;
}

/** What the recording transport answers: a status, a fuller response, `'sent'`, or an error to fail with. */
export type RecordedAnswer =
  | number
  | { status: number; headers?: IncomingHttpHeaders; body?: string | Buffer }
  | 'sent'
  | AfterwardError
  | Error;

/** A transport that keeps every attempt in memory and answers as told, without a network. */
export interface RecordingTransport extends Transport {
  /** Every attempt made, in order. */
  readonly requests: RecordedRequest[];
  /** Decide the answer per request (default: 204, or `'sent'` for `confirm: 'sent'`). */
  respondWith(
    answer: RecordedAnswer | ((request: RecordedRequest) => RecordedAnswer | Promise<RecordedAnswer>),
  ): void;
  /** Forgets the recorded requests. */
  clear(): void;
}

/**
 * A transport for tests: records every notification and answers without a network.
 *
 * @example
 * ```ts
 * const transport = createRecordingTransport();
 * const dispatcher = createDispatcher({ transport });
 * app.use(afterward({ dispatcher }));
 * await request(app).post('/orders');
 * await drain(dispatcher);
 * expect(transport.requests[0].json()).toEqual({ type: 'order.created' });
 * ```
 */
export function createRecordingTransport(): RecordingTransport {
  const requests: RecordedRequest[] = [];
  let responder: (request: RecordedRequest) => RecordedAnswer | Promise<RecordedAnswer> = (request) =>
    request.confirm === 'sent' ? 'sent' : 204;
  return {
    requests,
    respondWith(answer) {
      responder = typeof answer === 'function' && !(answer instanceof Error) ? answer : () => answer;
    },
    clear() {
      requests.length = 0;
    },
    async send(request: TransportRequest, attempt: TransportAttempt): Promise<TransportResult> {
      const recorded = record(request, attempt.attempt);
      requests.push(recorded);
      let answer: RecordedAnswer;
      try {
        answer = await responder(recorded);
      } catch (error) {
        answer = error instanceof Error ? error : new Error(String(error));
      }
      if (attempt.signal.aborted) {
        const reason: unknown = attempt.signal.reason;
        return {
          kind: 'error',
          error: isAfterwardError(reason) ? reason : new NetworkError('aborted', { beforeSent: true }),
        };
      }
      if (answer === 'sent') return { kind: 'sent' };
      if (isAfterwardError(answer)) return { kind: 'error', error: answer };
      if (answer instanceof Error)
        return {
          kind: 'error',
          error: new NetworkError(answer.message, { cause: answer, beforeSent: true }),
        };
      const { status, headers = {}, body } = typeof answer === 'number' ? { status: answer } : answer;
      const response = {
        status,
        statusText: '',
        headers,
        ...(body === undefined ? {} : { body: Buffer.from(body) }),
      };
      return { kind: 'response', response };
    },
    close() {
      return Promise.resolve();
    },
  };
}

function record(request: TransportRequest, attempt: number): RecordedRequest {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i < request.headers.length; i += 2) {
    const name = request.headers[i] as string;
    const value = request.headers[i + 1] as string;
    const existing = headers[name];
    headers[name] =
      existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  const body = request.body;
  return {
    id: request.id,
    url: request.url.href,
    method: request.method,
    headers,
    body,
    confirm: request.confirm,
    attempt,
    text: () => body?.toString('utf8') ?? '',
    json: <T>() => JSON.parse(body?.toString('utf8') ?? 'null') as T,
  };
}

/**
 * A dispatcher on a recording transport, with retries fast enough for tests and no circuit breaker.
 *
 * @example
 * ```ts
 * const { dispatcher, transport } = createTestDispatcher();
 * ```
 */
export function createTestDispatcher(options: Omit<DispatcherOptions, 'transport'> = {}): {
  dispatcher: Dispatcher;
  transport: RecordingTransport;
} {
  const transport = createRecordingTransport();
  // No circuit breaker by default: a test that answers 503 to a dozen sends should see them retried
  // and failed within the test, not held back for the breaker's 30 s.
  const dispatcher = createDispatcher({
    retry: { minDelay: 1, maxDelay: 10 },
    breaker: false,
    ...options,
    transport,
  });
  return { dispatcher, transport };
}

/**
 * Waits until the dispatcher has nothing parked, queued, in flight or running; rejects if that
 * takes longer than `timeout` (default 5 s), so a test fails instead of hanging.
 *
 * @example
 * ```ts
 * await request(app).get('/');
 * await drain(dispatcher);
 * ```
 */
export async function drain(dispatcher: Dispatcher, timeout = 5_000): Promise<void> {
  const { drained, pending } = await dispatcher.drain({ timeout });
  if (!drained) throw new Error(`drain: ${pending} item(s) still pending after ${timeout} ms`);
}
