import { describe, expect, it } from 'vitest';
import {
  ClosedError,
  createDispatcher,
  InvalidArgumentError,
  isAfterwardError,
  type DispatcherOptions,
  type SendInit,
} from '../src/index.js';
import { createTestDispatcher } from '../src/testing.js';
import { startReceiver, guardUnhandledRejections } from '../../../test/support/index.js';

guardUnhandledRejections();

const URL_OK = 'http://127.0.0.1:9/hook';
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

const circular: Record<string, unknown> = { a: 1 };
circular['self'] = circular;

// Each row is a call a user could make by mistake; every one must throw InvalidArgumentError at the call.
const badSends: Array<[string, unknown, unknown?]> = [
  ['a string that is not a URL', 'not a url'],
  ['a relative URL', '/hook'],
  ['a non-http scheme', 'ftp://example.com/x'],
  ['a file URL', 'file:///etc/passwd'],
  ['a javascript URL', 'javascript:alert(1)'],
  ['a number as URL', 42],
  ['no URL at all', undefined],
  ['init that is not an object', URL_OK, 'json'],
  ['init null', URL_OK, null],
  ['an unknown init key (typo)', URL_OK, { jsn: { a: 1 } }],
  ['CR/LF in a header value', URL_OK, { headers: { 'x-a': 'ok\r\nx-injected: 1' } }],
  ['LF in a header name', URL_OK, { headers: { 'x-a\nx-b': 'v' } }],
  ['a space in a header name', URL_OK, { headers: { 'bad name': 'v' } }],
  ['an empty header name', URL_OK, { headers: { '': 'v' } }],
  ['NUL in a header value', URL_OK, { headers: { 'x-a': 'a\0b' } }],
  ['a control character in a header value', URL_OK, { headers: { 'x-a': 'a\u0001b' } }],
  ['a non-Latin-1 character in a header value', URL_OK, { headers: { 'x-a': 'price €5' } }],
  ['an object as header value', URL_OK, { headers: { 'x-a': { v: 1 } } }],
  ['CR/LF inside a repeated header', URL_OK, { headers: { 'x-a': ['ok', 'bad\n'] } }],
  ['a malformed header pair list', URL_OK, { headers: [['x-a']] }],
  ['a pair list with CR/LF', URL_OK, { headers: [['x-a', 'v\r\n']] }],
  ['headers as a string', URL_OK, { headers: 'x-a: 1' }],
  ['a transfer-encoding header', URL_OK, { headers: { 'transfer-encoding': 'chunked' } }],
  ['a content-length header', URL_OK, { headers: { 'content-length': '10' } }],
  ['a connection header', URL_OK, { headers: { connection: 'upgrade' } }],
  ['an expect header', URL_OK, { headers: { expect: '100-continue' } }],
  ['circular json', URL_OK, { json: circular }],
  ['BigInt json', URL_OK, { json: { n: 10n } }],
  ['json with no JSON form (a function)', URL_OK, { json: () => 1 }],
  ['json and body together', URL_OK, { json: { a: 1 }, body: 'x' }],
  ['a body of a wrong type', URL_OK, { body: 42 }],
  ['a plain object body', URL_OK, { body: { a: 1 } }],
  ['GET with a body', URL_OK, { method: 'GET', body: 'x' }],
  ['GET with json', URL_OK, { method: 'get', json: { a: 1 } }],
  ['HEAD with a body', URL_OK, { method: 'HEAD', body: new Uint8Array([1]) }],
  ['a method with a space', URL_OK, { method: 'PO ST' }],
  ['a method that is not a string', URL_OK, { method: 1 }],
  ['CONNECT', URL_OK, { method: 'CONNECT' }],
  ['a zero timeout', URL_OK, { timeout: 0 }],
  ['a negative timeout', URL_OK, { timeout: -5 }],
  ['a NaN timeout', URL_OK, { timeout: Number.NaN }],
  ['a string timeout', URL_OK, { timeout: 'fast' }],
  ['a zero connect timeout', URL_OK, { timeout: { connect: 0 } }],
  ['an unknown timeout key', URL_OK, { timeout: { totl: 5 } }],
  ['zero attempts', URL_OK, { retry: { attempts: 0 } }],
  ['fractional attempts', URL_OK, { retry: { attempts: 1.5 } }],
  ['too many attempts', URL_OK, { retry: { attempts: 1_000 } }],
  ['a shrinking factor', URL_OK, { retry: { factor: 0.5 } }],
  ['a negative minDelay', URL_OK, { retry: { minDelay: -1 } }],
  ['maxDelay below minDelay', URL_OK, { retry: { minDelay: 100, maxDelay: 10 } }],
  ['retry: true', URL_OK, { retry: true }],
  ['an unknown retry key', URL_OK, { retry: { tries: 3 } }],
  ['a bad confirm', URL_OK, { confirm: 'yes' }],
  ['a negative keepBody', URL_OK, { keepBody: -1 }],
  ['a string keepBody', URL_OK, { keepBody: 'all' }],
  ['a signal that is not an AbortSignal', URL_OK, { signal: {} }],
  ['a string signal', URL_OK, { signal: 'abort' }],
  ['an empty id', URL_OK, { id: '' }],
  ['an id with a newline', URL_OK, { id: 'a\nb' }],
  ['a numeric id', URL_OK, { id: 42 }],
  ['an id that is too long', URL_OK, { id: 'x'.repeat(300) }],
  ['sign: true without signing', URL_OK, { sign: true }],
  ['sign that is not a boolean', URL_OK, { sign: 'yes' }],
  ['a query that is a string', URL_OK, { query: 'a=b' }],
  ['a query value that is an object', URL_OK, { query: { a: { b: 1 } } }],
  ['a NaN query value', URL_OK, { query: { a: Number.NaN } }],
  ['when on send() (only for fireAndForget)', URL_OK, { when: 'ok' }],
];

const badOptions: Array<[string, unknown]> = [
  ['null options', null],
  ['a string', 'fast'],
  ['an unknown option (typo)', { concurency: 4 }],
  ['zero concurrency', { concurrency: 0 }],
  ['fractional concurrency', { concurrency: 1.5 }],
  ['string concurrency', { concurrency: '4' }],
  ['zero concurrencyPerOrigin', { concurrencyPerOrigin: 0 }],
  ['zero maxQueued', { maxQueued: 0 }],
  ['negative maxQueuedBytes', { maxQueuedBytes: -1 }],
  ['an unknown overflow policy', { overflow: 'drop' }],
  ['a negative timeout', { timeout: -1 }],
  ['an unknown timeout key', { timeout: { headers: 10 } }],
  ['zero retry attempts', { retry: { attempts: 0 } }],
  ['a userAgent with CR/LF', { userAgent: 'a\r\nb' }],
  ['a numeric userAgent', { userAgent: 42 }],
  ['a userAgent with a non-Latin-1 character', { userAgent: 'app €' }],
  ['a bad dispatcher header name', { headers: { 'a b': 'x' } }],
  ['a dispatcher header with LF', { headers: { 'x-a': 'a\nb' } }],
  ['a logger without methods', { logger: {} }],
  ['a logger that is a string', { logger: 'pino' }],
  ['signing without a secret', { signing: {} }],
  ['signing with an empty secret', { signing: { secret: '' } }],
  ['signing null', { signing: null }],
  ['signing with both secret and secrets', { signing: { secret: SECRET, secrets: [SECRET] } }],
  ['an unknown guard', { guard: 'everything' }],
  ['httpsOnly as a string', { httpsOnly: 'yes' }],
  ['negative maxResponseBytes', { maxResponseBytes: -1 }],
  ['zero hookConcurrency', { hookConcurrency: 0 }],
  ['zero hookTimeout', { hookTimeout: 0 }],
  ['negative closeTimeout', { closeTimeout: -1 }],
  ['a negative coalesce window', { coalesce: -1 }],
  ['a fractional coalesce window', { coalesce: 2.5 }],
  ['a coalesce window over 1 s', { coalesce: 1_001 }],
  ['a coalesce window as a string', { coalesce: '20' }],
  ['a transport without send()', { transport: {} }],
  [
    'a transport and a guard together',
    {
      transport: { send: () => Promise.resolve({ kind: 'sent' }), close: () => Promise.resolve() },
      guard: 'public-only',
    },
  ],
];

function expectInvalid(fn: () => unknown): InvalidArgumentError {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(InvalidArgumentError);
  const error = thrown as InvalidArgumentError;
  expect(error.code).toBe('AFTERWARD_ERR_INVALID_ARGUMENT');
  expect(isAfterwardError(error)).toBe(true);
  expect(error.message.length).toBeGreaterThan(10);
  return error;
}

describe('send() rejects bad input at the call', () => {
  it.each(badSends)('%s', (_label, target, init) => {
    const { dispatcher, transport } = createTestDispatcher();
    const events: string[] = [];
    for (const name of ['delivered', 'sent', 'failed', 'dropped', 'cancelled', 'retry'] as const) {
      dispatcher.on(name, () => events.push(name));
    }
    const before = dispatcher.stats();

    expectInvalid(() =>
      init === undefined
        ? dispatcher.send(target as string)
        : dispatcher.send(target as string, init as SendInit),
    );

    // Nothing half-enqueued: no counter moved, nothing reached the transport, no event fired.
    expect(dispatcher.stats()).toEqual(before);
    expect(transport.requests).toHaveLength(0);
    expect(events).toEqual([]);
  });

  it('rejects the same mistakes in the single-object form', () => {
    const { dispatcher } = createTestDispatcher();
    expectInvalid(() => dispatcher.send({ url: 'ftp://x' }));
    expectInvalid(() => dispatcher.send({ url: URL_OK, json: 10n } as never));
    expectInvalid(() => dispatcher.send({} as never));
    expectInvalid(() => dispatcher.send({ url: URL_OK } as never, {} as never));
    expect(dispatcher.stats().queued).toBe(0);
  });

  it('names the bad value in the message', () => {
    const { dispatcher } = createTestDispatcher();
    expect(expectInvalid(() => dispatcher.send('ftp://x')).message).toMatch(/ftp:/);
    expect(expectInvalid(() => dispatcher.send(URL_OK, { jsn: 1 } as never)).message).toMatch(/"jsn"/);
    expect(expectInvalid(() => dispatcher.send(URL_OK, { json: circular })).message).toMatch(
      /json cannot be serialised/,
    );
  });

  it('refuses http: URLs with httpsOnly', () => {
    const { dispatcher } = createTestDispatcher({ httpsOnly: true });
    expectInvalid(() => dispatcher.send(URL_OK));
    expect(dispatcher.send('https://example.com/x').state).toBe('queued');
  });

  it('throws ClosedError, not InvalidArgumentError, after close()', async () => {
    const { dispatcher } = createTestDispatcher();
    await dispatcher.close();
    expect(() => dispatcher.send(URL_OK)).toThrow(ClosedError);
  });
});

describe('createDispatcher() rejects bad options', () => {
  it.each(badOptions)('%s', (_label, options) => {
    expectInvalid(() => createDispatcher(options as DispatcherOptions));
  });

  it('accepts every documented option', async () => {
    const dispatcher = createDispatcher({
      concurrency: 4,
      concurrencyPerOrigin: 2,
      maxQueued: 10,
      maxQueuedBytes: 1024,
      overflow: 'reject',
      timeout: { connect: 100, response: 200, total: 300 },
      retry: { attempts: 2, minDelay: 1, maxDelay: 2, factor: 3, maxRetryAfter: 10 },
      userAgent: 'me/1',
      headers: [['x-a', '1']],
      logger: { warn: () => undefined, error: () => undefined },
      signing: { secret: SECRET },
      httpsOnly: false,
      maxResponseBytes: 10,
      hookConcurrency: 1,
      hookTimeout: 10,
      closeTimeout: 10,
    });
    expect(dispatcher.closed).toBe(false);
    await dispatcher.close();
    expect(dispatcher.closed).toBe(true);
  });
});

describe('the request is built like an async-request object', () => {
  it('defaults to POST with a user agent and the id in webhook-id and idempotency-key', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    const handle = dispatcher.send(URL_OK, { json: { a: 1 } });
    await handle.done;
    const [request] = transport.requests;
    expect(request?.method).toBe('POST');
    expect(request?.headers['user-agent']).toBe('afterward/0.1');
    expect(request?.headers['webhook-id']).toBe(handle.id);
    expect(request?.headers['idempotency-key']).toBe(handle.id);
    expect(request?.headers['content-type']).toBe('application/json');
    expect(request?.json()).toEqual({ a: 1 });
    expect(handle.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('takes a method in any case, and GET/HEAD without a body', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    await dispatcher.send(URL_OK, { method: 'put', body: 'x' }).done;
    await dispatcher.send(URL_OK, { method: 'GET' }).done;
    await dispatcher.send(URL_OK, { method: 'head' }).done;
    expect(transport.requests.map((r) => r.method)).toEqual(['PUT', 'GET', 'HEAD']);
    expect(transport.requests[1]?.body).toBeNull();
  });

  it('sets a custom user agent and dispatcher-wide headers, which a request may override', async () => {
    const { dispatcher, transport } = createTestDispatcher({
      userAgent: 'billing/2.3',
      headers: { 'x-env': 'prod', 'x-team': 'pay' },
    });
    await dispatcher.send(URL_OK).done;
    await dispatcher.send(URL_OK, { headers: { 'X-Env': 'staging', 'User-Agent': 'mine' } }).done;
    const [first, second] = transport.requests;
    expect(first?.headers).toMatchObject({ 'user-agent': 'billing/2.3', 'x-env': 'prod', 'x-team': 'pay' });
    expect(second?.headers).toMatchObject({ 'user-agent': 'mine', 'x-env': 'staging', 'x-team': 'pay' });
  });

  it('keeps a content-type the caller chose over the json default', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    await dispatcher.send(URL_OK, {
      json: { a: 1 },
      headers: { 'content-type': 'application/cloudevents+json' },
    }).done;
    expect(transport.requests[0]?.headers['content-type']).toBe('application/cloudevents+json');
  });

  it('merges query into the URL: arrays repeat, a key given replaces it, null removes it', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    await dispatcher.send('http://127.0.0.1:9/p?a=1&b=2&keep=yes&gone=1#frag', {
      query: { a: ['3', 4], c: true, b: 'x y', gone: null, skipped: undefined },
    }).done;
    const url = new URL(transport.requests[0]?.url ?? '');
    expect(url.pathname).toBe('/p');
    expect(url.searchParams.getAll('a')).toEqual(['3', '4']);
    expect(url.searchParams.get('b')).toBe('x y');
    expect(url.searchParams.get('c')).toBe('true');
    expect(url.searchParams.get('keep')).toBe('yes');
    expect(url.searchParams.has('gone')).toBe(false);
    expect(url.searchParams.has('skipped')).toBe(false);
    expect(url.hash).toBe('');
  });

  it('parses a repeated URL once but never lets one send change it for the next', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    const target = 'http://user:pw@127.0.0.1:9/same?x=1';
    await dispatcher.send(target, { query: { x: '2', y: 'a' } }).done;
    await dispatcher.send(target).done;
    await dispatcher.send('http://127.0.0.1:9/same?x=1', { query: { z: 'b' } }).done;
    await dispatcher.send('http://127.0.0.1:9/same?x=1').done;
    const [first, second, third, fourth] = transport.requests;
    expect(first?.url).toBe('http://127.0.0.1:9/same?x=2&y=a');
    expect(second?.url).toBe('http://127.0.0.1:9/same?x=1');
    expect(second?.headers['authorization']).toBe(`Basic ${Buffer.from('user:pw').toString('base64')}`);
    expect(third?.url).toBe('http://127.0.0.1:9/same?x=1&z=b');
    expect(fourth?.url).toBe('http://127.0.0.1:9/same?x=1');
    expect(fourth?.headers['authorization']).toBeUndefined();
  });

  it('takes body as a string, bytes (copied at the call) or URLSearchParams', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    const bytes = new Uint8Array([1, 2, 3]);
    await dispatcher.send(URL_OK, { body: 'plain' }).done;
    const handle = dispatcher.send(URL_OK, { body: bytes });
    bytes[0] = 99; // the caller reuses its buffer before the notification leaves
    await handle.done;
    await dispatcher.send(URL_OK, { body: new URLSearchParams({ a: '1', b: 'x y' }) }).done;
    const [text, raw, form] = transport.requests;
    expect(text?.text()).toBe('plain');
    expect([...(raw?.body ?? [])]).toEqual([1, 2, 3]);
    expect(form?.text()).toBe('a=1&b=x+y');
    expect(form?.headers['content-type']).toBe('application/x-www-form-urlencoded;charset=UTF-8');
  });

  it('accepts a URL object and the single-object form, and turns URL credentials into basic auth', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    await dispatcher.send(new URL('http://127.0.0.1:9/u'), { body: 'a' }).done;
    await dispatcher.send({ url: 'http://user:p%40ss@127.0.0.1:9/v', method: 'PATCH', body: 'b' }).done;
    expect(transport.requests[0]?.url).toBe('http://127.0.0.1:9/u');
    const second = transport.requests[1];
    expect(second?.method).toBe('PATCH');
    expect(second?.url).toBe('http://127.0.0.1:9/v');
    expect(second?.headers['authorization']).toBe(`Basic ${Buffer.from('user:p@ss').toString('base64')}`);
  });

  it('uses the id given, on both id headers', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    const handle = dispatcher.send(URL_OK, { id: 'evt_123' });
    await handle.done;
    expect(handle.id).toBe('evt_123');
    expect(transport.requests[0]?.headers).toMatchObject({
      'webhook-id': 'evt_123',
      'idempotency-key': 'evt_123',
    });
  });

  it('puts repeated headers (record arrays and pair lists) on the wire as separate lines', async () => {
    const receiver = await startReceiver();
    const dispatcher = createDispatcher();
    try {
      await dispatcher.send(`${receiver.url}/h?z=0`, {
        headers: { 'x-tag': ['a', 'b'], 'x-num': 7 },
        query: { q: ['1', '2'] },
        json: { ok: true },
      }).done;
      await dispatcher.send(`${receiver.url}/pairs`, {
        headers: [
          ['X-Tag', 'c'],
          ['X-Tag', 'd'],
        ],
      }).done;
      const [first, second] = await receiver.waitFor(2);
      const tags = (raw: string[] | undefined): string[] =>
        (raw ?? []).filter((_v, i, all) => i % 2 === 1 && all[i - 1]?.toLowerCase() === 'x-tag');
      expect(tags(first?.rawHeaders)).toEqual(['a', 'b']);
      expect(tags(second?.rawHeaders)).toEqual(['c', 'd']);
      expect(first?.headers['x-num']).toBe('7');
      expect(first?.url).toBe('/h?z=0&q=1&q=2');
      expect(first?.headers['user-agent']).toBe('afterward/0.1');
      expect(first?.json()).toEqual({ ok: true });
    } finally {
      await dispatcher.close();
      await receiver.close();
    }
  });
});

describe('durations above 2^31 - 1 ms (Node would fire such a timer after 1 ms)', () => {
  const TOO_LONG = 2 ** 31;
  const LONGEST = 2 ** 31 - 1;
  const dispatcherRows: Array<[string, DispatcherOptions]> = [
    ['timeout (a number)', { timeout: TOO_LONG }],
    ['timeout.total', { timeout: { total: TOO_LONG } }],
    ['timeout.connect', { timeout: { connect: TOO_LONG } }],
    ['timeout.response', { timeout: { response: TOO_LONG } }],
    ['retry.minDelay', { retry: { minDelay: TOO_LONG, maxDelay: TOO_LONG } }],
    ['retry.maxDelay', { retry: { maxDelay: TOO_LONG } }],
    ['retry.maxRetryAfter', { retry: { maxRetryAfter: TOO_LONG } }],
    ['breaker.openMs', { breaker: { openMs: TOO_LONG } }],
    ['breaker.windowMs', { breaker: { windowMs: TOO_LONG } }],
  ];
  it.each(dispatcherRows)('createDispatcher refuses %s', (_label, options) => {
    expect(() => createDispatcher(options)).toThrow(/at most 2147483647 ms/);
    expect(() => createDispatcher(options)).toThrow(InvalidArgumentError);
  });

  const sendRows: Array<[string, SendInit]> = [
    ['timeout (a number)', { timeout: TOO_LONG }],
    ['timeout.total', { timeout: { total: 1e12 } }],
    ['retry.maxDelay', { retry: { maxDelay: TOO_LONG } }],
    ['retry.maxRetryAfter', { retry: { maxRetryAfter: TOO_LONG } }],
  ];
  it.each(sendRows)('send() refuses %s', async (_label, init) => {
    const { dispatcher } = createTestDispatcher();
    try {
      expect(() => dispatcher.send(URL_OK, init)).toThrow(/at most 2147483647 ms/);
    } finally {
      await dispatcher.close();
    }
  });

  it('takes the longest a timer can wait', async () => {
    const dispatcher = createDispatcher({
      timeout: { connect: LONGEST, response: LONGEST, total: LONGEST },
      retry: { maxDelay: LONGEST, maxRetryAfter: LONGEST },
      breaker: { openMs: LONGEST, windowMs: LONGEST },
    });
    await dispatcher.close();
  });
});

describe('query keeps the bytes of the query string it does not name', () => {
  const PRESIGNED =
    'http://127.0.0.1:9/o?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20250101%2Fus-east-1%2Fs3' +
    '&X-Amz-Signature=9f0e&flag&sp=a%20b&plus=a+b&odd=%7e&empty=';

  it('appends a new key to a pre-signed URL without touching its signed parameters', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    await dispatcher.send(PRESIGNED, { query: { extra: 'v w', n: [1, 2] } }).done;
    expect(transport.requests[0]?.url).toBe(`${PRESIGNED}&extra=v+w&n=1&n=2`);
  });

  it('replaces or removes only the keys named, matching encoded names too', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    await dispatcher.send(`${PRESIGNED}&a%20b=1&x=1&x=2`, { query: { 'a b': 'c', x: null, flag: 'on' } })
      .done;
    expect(transport.requests[0]?.url).toBe(PRESIGNED.replace('&flag', '') + '&a+b=c&flag=on');
  });
});
