import { describe, expect, it } from 'vitest';
import { decide, fromNotificationJson, toNotificationJson } from '../src/backend.js';
import { DEFAULTS } from '../src/options/options.js';
import { HttpStatusError, NetworkError } from '../src/util/errors.js';
import type { TransportResult } from '../src/transport/transport.js';

const retry = DEFAULTS.retry;
const now = Date.parse('2026-01-01T00:00:00Z');
const response = (status: number, headers: Record<string, string> = {}): TransportResult => ({
  kind: 'response',
  response: { status, statusText: '', headers },
});

describe('decide', () => {
  it('delivers a 2xx and marks a written request sent', () => {
    expect(decide(response(204), { attempt: 1, retry, now })).toEqual({ kind: 'delivered', status: 204 });
    expect(decide({ kind: 'sent' }, { attempt: 1, retry, now })).toEqual({ kind: 'sent' });
  });

  it('retries a retryable status with full jitter while attempts remain, then fails', () => {
    const first = decide(response(503), { attempt: 1, retry, now, random: () => 1 });
    expect(first).toMatchObject({ kind: 'retry', delay: retry.minDelay });
    expect(first.kind === 'retry' && first.error).toBeInstanceOf(HttpStatusError);
    expect(decide(response(503), { attempt: 3, retry, now, random: () => 0.5 })).toMatchObject({
      kind: 'retry',
      delay: Math.round(0.5 * retry.minDelay * retry.factor ** 2),
    });
    expect(decide(response(503), { attempt: retry.attempts, retry, now })).toMatchObject({ kind: 'failed' });
  });

  it('honours Retry-After, in seconds or as a date, clamped', () => {
    expect(decide(response(429, { 'retry-after': '7' }), { attempt: 1, retry, now })).toMatchObject({
      kind: 'retry',
      delay: 7_000,
    });
    const date = new Date(now + 3_000).toUTCString();
    expect(decide(response(503, { 'retry-after': date }), { attempt: 1, retry, now })).toMatchObject({
      kind: 'retry',
      delay: 3_000,
    });
    expect(decide(response(503, { 'retry-after': '3600' }), { attempt: 1, retry, now })).toMatchObject({
      kind: 'retry',
      delay: retry.maxRetryAfter,
    });
  });

  it('fails a status that is not retried, and a non-retryable error, at once', () => {
    for (const status of [301, 400, 410, 501]) {
      expect(decide(response(status), { attempt: 1, retry, now })).toMatchObject({ kind: 'failed' });
    }
    const refused = new NetworkError('no', { beforeSent: true, retryable: false });
    expect(decide({ kind: 'error', error: refused }, { attempt: 1, retry, now })).toEqual({
      kind: 'failed',
      error: refused,
    });
    const reset = new NetworkError('reset', { beforeSent: true });
    expect(decide({ kind: 'error', error: reset }, { attempt: 1, retry, now, random: () => 0 })).toEqual({
      kind: 'retry',
      delay: 0,
      error: reset,
    });
  });
});

describe('NotificationJson', () => {
  it('round-trips a request as pure data: base64 body, no signature headers', () => {
    const url = new URL('https://hooks.example.com/a?b=1');
    const json = toNotificationJson({
      key: 'k1',
      attempts: 2,
      notBefore: now + 5,
      createdAt: now,
      request: {
        id: 'msg_1',
        url,
        origin: url.origin,
        path: '/a?b=1',
        method: 'POST',
        headers: ['content-type', 'application/json'],
        body: Buffer.from('{"x":1}'),
        confirm: 'response',
        keepBody: 0,
        timeout: DEFAULTS.timeout,
        retry,
        sign: true,
      },
    });
    expect(json).toEqual({
      v: 1,
      key: 'k1',
      id: 'msg_1',
      url: 'https://hooks.example.com/a?b=1',
      origin: 'https://hooks.example.com',
      method: 'POST',
      headers: ['content-type', 'application/json'],
      body: Buffer.from('{"x":1}').toString('base64'),
      confirm: 'response',
      keepBody: 0,
      timeout: DEFAULTS.timeout,
      retry,
      sign: true,
      attempts: 2,
      notBefore: now + 5,
      createdAt: now,
    });
    const parsed = JSON.parse(JSON.stringify(json)) as typeof json;
    const request = fromNotificationJson(parsed);
    expect(request.path).toBe('/a?b=1');
    expect(request.body?.toString()).toBe('{"x":1}');
    expect(request.url.href).toBe(json.url);
  });
});
