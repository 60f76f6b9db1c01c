import { EventEmitter } from 'node:events';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { cleanupScope, listen, waitUntil } from '../../../test/support/index.js';
import type { ResponseInfo } from '../src/after-response/after-response.js';
import {
  baseRecord,
  createAuditLog,
  DEFAULT_REDACT,
  REDACTED,
  type AuditLog,
  type AuditLogOptions,
  type AuditRecord,
} from '../src/audit/audit.js';
import { isoTime, RECORD_FRAME, recordJson, writeRecord } from '../src/audit/record-json.js';
import { addJson } from '../src/batch/batcher.js';
import { InvalidArgumentError } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import { createTestDispatcher, type RecordingTransport } from '../src/testing.js';

type Info = ResponseInfo<IncomingMessage, ServerResponse>;
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const quiet: Logger = { warn: () => {}, error: () => {} };
const AUDIT_URL = 'http://audit.test/records';
const { cleanups: cleanup } = cleanupScope();

interface Setup {
  url: string;
  transport: RecordingTransport;
  records(): AuditRecord[];
  flush(): Promise<unknown>;
}

/** A plain node:http app whose every request is watched by the audit log, as an adapter would. */
async function setup(
  handler: Handler,
  options: Partial<AuditLogOptions<IncomingMessage, Info>> = {},
  body?: (req: IncomingMessage) => unknown,
): Promise<Setup> {
  const { dispatcher, transport } = createTestDispatcher({ logger: quiet });
  const log = createAuditLog<IncomingMessage, Info>({ url: AUDIT_URL, dispatcher, ...options });
  const server: Server = createServer((req, res) => {
    const startedAt = performance.now();
    log.watch(res, {
      subject: req,
      startedAt,
      describe: (outcome, durationMs) => ({
        outcome,
        statusCode: res.statusCode,
        durationMs,
        method: req.method ?? '',
        url: req.url ?? '',
        route: req.url?.startsWith('/users/') ? '/users/:id' : undefined,
        req,
        res,
      }),
      ip: () => req.socket.remoteAddress,
      ...(body === undefined ? {} : { body: () => body(req) }),
    });
    handler(req, res);
  });
  const port = await listen(server);
  cleanup.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await dispatcher.close({ timeout: 1_000 });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    transport,
    records: () =>
      transport.requests.flatMap((r) => {
        const parsed = r.json<AuditRecord | AuditRecord[]>();
        return Array.isArray(parsed) ? parsed : [parsed];
      }),
    flush: () => dispatcher.drain({ timeout: 5_000 }),
  };
}

function call(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

const ok: Handler = (_req, res) => {
  res.setHeader('set-cookie', 'sid=abc; HttpOnly');
  res.setHeader('x-answer', '42');
  res.end('ok');
};

describe('compact records kept until 64 are made into JSON (issue 15)', () => {
  /** A response as log.watch() reads it, ended by emitting 'close'. */
  function response(path: string): ServerResponse {
    const req = { method: 'GET', url: path, headers: {} } as unknown as IncomingMessage;
    return Object.assign(new EventEmitter(), {
      writableFinished: true,
      statusCode: 200,
      req,
    }) as unknown as ServerResponse;
  }

  /** Watches `res` as an adapter would, its route `route`. */
  function watch(log: AuditLog<IncomingMessage, Info>, res: ServerResponse, route?: string): void {
    log.watch(res, {
      subject: res.req,
      startedAt: performance.now(),
      describe: (outcome, durationMs) => ({
        outcome,
        statusCode: 200,
        durationMs,
        method: 'GET',
        url: res.req.url ?? '',
        route,
        req: res.req,
        res,
      }),
      ip: () => '127.0.0.1',
    });
  }

  it('makes the record of a response that ends while kept records are written (in a dispatcher event) on its own', async () => {
    const warnings: string[] = [];
    const { dispatcher } = createTestDispatcher({
      logger: { warn: (_obj, msg) => warnings.push(String(msg)), error: () => {} },
    });
    cleanup.push(() => dispatcher.close({ timeout: 1_000 }));
    const log = createAuditLog<IncomingMessage, Info>({
      url: AUDIT_URL,
      dispatcher,
      batch: { maxPending: 1, maxWaitMs: 60_000 },
    });
    const batcher = log.batcher;
    if (batcher === undefined) throw new Error('a batched audit log has a batcher');
    // One item held: the batcher is full (maxPending 1), so each record it is given is dropped.
    addJson(batcher, '"held"');
    const first = response('/first');
    const late = response('/late');
    watch(log, first);
    watch(log, late);
    first.emit('close');
    expect(dispatcher.stats().dropped).toBe(0);
    // The first record's drop is evented while the kept rows are written; a listener ends another response.
    dispatcher.once('dropped', () => late.emit('close'));
    batcher.flush();
    // Both records met the full batcher, and both were counted; none was lost on the way.
    expect(dispatcher.stats().dropped).toBe(2);
    expect(batcher.pending()).toBe(1);
    expect(await dispatcher.drain({ timeout: 1_000 })).toEqual({ drained: true, pending: 0 });
    // Drops are logged; a record lost on the way would be logged as one that could not be sent.
    expect(warnings.filter((msg) => /could not be sent/.test(msg))).toEqual([]);
  });

  it('fills each batch to maxBytes by the exact size of its records, though each asks room for more', async () => {
    const { dispatcher, transport } = createTestDispatcher({ logger: quiet });
    cleanup.push(() => dispatcher.close({ timeout: 1_000 }));
    const maxBytes = 1_500;
    const log = createAuditLog<IncomingMessage, Info>({ url: AUDIT_URL, dispatcher, batch: { maxBytes } });
    const paths = Array.from({ length: 40 }, (_, i) => `/r/${'x'.repeat((i * 7) % 30)}${i}`);
    for (const path of paths) {
      const res = response(path);
      res.req.headers['user-agent'] = 'curl/8.5.0';
      watch(log, res, '/r/:id');
      res.emit('close');
    }
    expect(await dispatcher.drain({ timeout: 5_000 })).toEqual({ drained: true, pending: 0 });
    const batches = transport.requests.map((r) => r.json<AuditRecord[]>());
    expect(batches.flat().map((record) => record.path)).toEqual(paths);
    expect(transport.requests.length).toBeGreaterThan(2);
    transport.requests.forEach((request, i) => {
      expect(request.text()).toBe(JSON.stringify(batches[i]));
      expect(request.body?.length).toBeLessThanOrEqual(maxBytes);
      const next = batches[i + 1]?.[0];
      // Full: the next batch's first record (and its comma) would not have fit.
      if (next !== undefined)
        expect((request.body?.length ?? 0) + 1 + JSON.stringify(next).length).toBeGreaterThan(maxBytes);
    });
  });

  it('writes every record whole while the batch buffer grows and each full batch leaves with its own', async () => {
    // 1,200 records of about 300 bytes: the buffer grows from 4 KiB by doubling, and every batch of
    // 500 takes its buffer with it, so the records after are written into a new one each time.
    const { dispatcher, transport } = createTestDispatcher({ logger: quiet });
    cleanup.push(() => dispatcher.close({ timeout: 1_000 }));
    const log = createAuditLog<IncomingMessage, Info>({ url: AUDIT_URL, dispatcher });
    const userAgent = `Mozilla/5.0 (X11; Linux x86_64) ${'a'.repeat(60)}`;
    for (let i = 0; i < 1_200; i++) {
      const res = response(`/r/${i}`);
      res.req.headers['user-agent'] = userAgent;
      watch(log, res, '/r/:id');
      res.emit('close');
    }
    expect(await dispatcher.drain({ timeout: 5_000 })).toEqual({ drained: true, pending: 0 });
    const records = transport.requests.flatMap((r) => r.json<AuditRecord[]>());
    expect(transport.requests.length).toBe(3);
    expect(records.map((record) => record.path)).toEqual(Array.from({ length: 1_200 }, (_, i) => `/r/${i}`));
    expect(records.every((record) => record.userAgent === userAgent && record.route === '/r/:id')).toBe(true);
  });
});

describe('createAuditLog', () => {
  it('records a finished request with its fields, redacting the default headers and query names', async () => {
    const app = await setup(ok, { headers: true });
    await call(
      `${app.url}/users/7?page=2&access_token=t0k&password=hunter2&client_secret=s&api_key=k&q=a&q=b`,
      {
        authorization: 'Bearer secret-token',
        cookie: 'sid=abc',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        'user-agent': 'audit-test/1',
        'x-request-id': 'req-123',
        'x-keep': 'visible',
      },
    );
    await app.flush();
    const [record] = app.records();
    expect(record).toMatchObject({
      method: 'GET',
      path: '/users/7',
      route: '/users/:id',
      status: 200,
      outcome: 'finished',
      userAgent: 'audit-test/1',
      requestId: 'req-123',
      query: {
        page: '2',
        access_token: REDACTED,
        password: REDACTED,
        client_secret: REDACTED,
        api_key: REDACTED,
        q: ['a', 'b'],
      },
    });
    expect(record?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.now() - Date.parse(record?.time ?? '')).toBeLessThan(60_000);
    expect(record?.durationMs).toBeGreaterThanOrEqual(0);
    expect(record?.ip).toMatch(/127\.0\.0\.1$/);
    expect(record?.requestHeaders).toMatchObject({
      authorization: REDACTED,
      cookie: REDACTED,
      'proxy-authorization': REDACTED,
      'x-keep': 'visible',
    });
    expect(record?.responseHeaders).toMatchObject({ 'set-cookie': REDACTED, 'x-answer': '42' });
    const wire = app.transport.requests.map((r) => r.text()).join('\n');
    for (const secret of ['secret-token', 'sid=abc', 'Zm9vOmJhcg', 't0k', 'hunter2', '=s&', 'k&q']) {
      expect(wire).not.toContain(secret);
    }
    expect(record).not.toHaveProperty('body');
  });

  it('records error statuses and aborted requests', async () => {
    let held: ServerResponse | undefined;
    const app = await setup((req, res) => {
      if (req.url === '/hang') {
        held = res;
        return;
      }
      res.statusCode = 500;
      res.end();
    });
    await call(`${app.url}/boom`);
    const aborted = request(`${app.url}/hang`, { agent: false });
    aborted.on('error', () => {});
    aborted.end();
    await waitUntil(() => held !== undefined, { message: 'the hanging request to arrive' });
    aborted.destroy();
    await waitUntil(
      async () => {
        await app.flush();
        return app.records().length === 2;
      },
      { message: 'both records to arrive' },
    );
    const byPath = Object.fromEntries(app.records().map((r) => [r.path, r]));
    expect(byPath['/boom']).toMatchObject({ status: 500, outcome: 'finished' });
    expect(byPath['/hang']).toMatchObject({ outcome: 'aborted' });
  });

  it('merges user fields, and still records when fields() throws', async () => {
    let calls = 0;
    const app = await setup(ok, {
      fields: (req, info) => {
        if (++calls === 2) throw new Error('no user');
        return { userId: req.headers['x-user'], tenantId: 't1', seenStatus: info.statusCode };
      },
    });
    await call(`${app.url}/a`, { 'x-user': 'u42' });
    await call(`${app.url}/b`, { 'x-user': 'u43' });
    await app.flush();
    const [a, b] = app.records();
    expect(a).toMatchObject({ path: '/a', userId: 'u42', tenantId: 't1', seenStatus: 200 });
    expect(b).toMatchObject({ path: '/b', status: 200 });
    expect(b).not.toHaveProperty('userId');
  });

  it('logs bodies only when asked, capped, with secret keys redacted', async () => {
    const parsed = { user: 'ann', password: 'hunter2', nested: { apiKey: 'k1' }, pad: 'x'.repeat(100) };
    const app = await setup(ok, { body: 64 }, () => parsed);
    await call(`${app.url}/login`, {}, 'POST');
    await app.flush();
    const [record] = app.records();
    expect(record?.bodyTruncated).toBe(true);
    expect(Buffer.byteLength(record?.body ?? '')).toBeLessThanOrEqual(64);
    expect(record?.body).toContain('"user":"ann"');
    expect(record?.body).toContain(`"password":"${REDACTED}"`);
    expect(record?.body).not.toContain('hunter2');
    expect(record?.body).not.toContain('k1');

    const raw = await setup(ok, { body: true, rawBody: true }, () => 'a=1');
    await call(`${raw.url}/form`, {}, 'POST');
    await raw.flush();
    expect(raw.records()[0]).toMatchObject({ body: 'a=1' });
    expect(raw.records()[0]).not.toHaveProperty('bodyTruncated');
  });

  it('never sends a body that is not JSON unless rawBody asks for it; a JSON string is redacted', async () => {
    const bodies: unknown[] = [
      'user=ann&password=hunter2',
      Buffer.from('token hunter2'),
      '{"user":"ann","password":"hunter2"}',
      Buffer.from('{"user":"ann","api_key":"hunter2"}'),
    ];
    const app = await setup(ok, { body: true }, (req) => bodies[Number(req.url?.slice(1))]);
    for (let i = 0; i < bodies.length; i++) await call(`${app.url}/${i}`, {}, 'POST');
    await app.flush();
    const records = app.records();
    expect(records).toHaveLength(4);
    expect(JSON.stringify(records)).not.toContain('hunter2');
    const byPath = Object.fromEntries(records.map((r) => [r.path, r]));
    expect(byPath['/0']).not.toHaveProperty('body');
    expect(byPath['/1']).not.toHaveProperty('body');
    expect(byPath['/2']?.body).toBe(`{"user":"ann","password":"${REDACTED}"}`);
    expect(byPath['/3']?.body).toBe(`{"user":"ann","api_key":"${REDACTED}"}`);
    expect(() => createAuditLog({ url: AUDIT_URL, rawBody: 'yes' as unknown as boolean })).toThrow(
      InvalidArgumentError,
    );
  });

  it('matches redact words on word parts, case-insensitively, and a multi-part string as a whole name', async () => {
    const app = await setup(ok, { redact: ['email', 'x-customer-id'], headers: true });
    await call(`${app.url}/x?userEmail=a&EMAIL_ADDRESS=b&emailed=c&x-customer-id=d&x-customer-idx=e&mail=f`, {
      'X-Customer-ID': 'g',
    });
    await app.flush();
    const [record] = app.records();
    expect(record?.query).toEqual({
      userEmail: REDACTED,
      EMAIL_ADDRESS: REDACTED,
      emailed: REDACTED,
      'x-customer-id': REDACTED,
      'x-customer-idx': 'e',
      mail: 'f',
    });
    expect(record?.requestHeaders).toMatchObject({ 'x-customer-id': REDACTED });
  });

  it('takes a redact list that replaces the default', async () => {
    const app = await setup(ok, { redact: ['x-customer-email', /^email$/i], headers: true });
    await call(`${app.url}/x?email=a@b.c&token=t`, {
      'x-customer-email': 'a@b.c',
      authorization: 'Bearer clear',
    });
    await app.flush();
    const [record] = app.records();
    expect(record?.requestHeaders).toMatchObject({
      'x-customer-email': REDACTED,
      authorization: 'Bearer clear',
    });
    expect(record?.query).toEqual({ email: REDACTED, token: 't' });
    expect(DEFAULT_REDACT).toContain('auth');
  });

  it('leaves headers out by default, and records only what `when` selects', async () => {
    const app = await setup(
      (req, res) => {
        res.statusCode = req.url === '/bad' ? 404 : 200;
        res.end();
      },
      { when: 'error' },
    );
    await call(`${app.url}/good`);
    await call(`${app.url}/bad`);
    await app.flush();
    const records = app.records();
    expect(records.map((r) => r.path)).toEqual(['/bad']);
    expect(records[0]).not.toHaveProperty('requestHeaders');
  });

  it('batches records by default and flushes them on drain', async () => {
    const app = await setup(ok);
    for (let i = 0; i < 3; i++) await call(`${app.url}/n${i}`);
    expect(app.transport.requests).toHaveLength(0);
    await app.flush();
    expect(app.transport.requests).toHaveLength(1);
    expect(app.transport.requests[0]?.json<AuditRecord[]>().map((r) => r.path)).toEqual([
      '/n0',
      '/n1',
      '/n2',
    ]);
  });

  it('sends one request per record with batch: false', async () => {
    const app = await setup(ok, { batch: false, init: { headers: { 'x-audit-key': 'k' } } });
    await call(`${app.url}/one`);
    await call(`${app.url}/two`);
    await app.flush();
    expect(app.transport.requests).toHaveLength(2);
    expect(app.transport.requests[0]?.json()).toMatchObject({ path: '/one' });
    expect(app.transport.requests[0]?.headers['x-audit-key']).toBe('k');
  });

  it('rejects bad options at once', () => {
    const { dispatcher } = createTestDispatcher({ logger: quiet });
    const make = (extra: Record<string, unknown>) => () =>
      createAuditLog({ url: AUDIT_URL, dispatcher, ...extra });
    expect(make({ url: 'not a url' })).toThrow(InvalidArgumentError);
    expect(make({ fields: 'x' })).toThrow(/fields/);
    expect(make({ redact: 'authorization' })).toThrow(/redact/);
    expect(make({ body: -1 })).toThrow(/body/);
    expect(make({ when: 'sometimes' })).toThrow(/when/);
    expect(make({ batch: { maxItems: 0 } })).toThrow(/maxItems/);
    expect(make({ dispatcher: {} })).toThrow(/dispatcher/);
    expect(make({ colour: 'red' })).toThrow(InvalidArgumentError);
  });
});

describe('recordJson', () => {
  it('writes what JSON.stringify(baseRecord(...)) writes, escapes and absent fields included', () => {
    const queryOf = (search: string): Record<string, string> | undefined =>
      search === '' ? undefined : { q: search, 'x"y': '\\' };
    const odd = [
      'plain',
      'quote"d',
      'back\\slash',
      'tab\there',
      'nul\u0000',
      'été',
      '😀',
      'lone\ud800',
      '\u007f\u2028',
    ];
    // id and time are made at the call: left out of the comparison (isoTime has its own test).
    const bare = (json: string): string =>
      json.replace(/^\{"id":"[0-9a-f-]{36}"/, '{"id":""').replace(/,"time":"[^"]+"/, ',"time":""');
    for (const text of odd) {
      for (const url of [`/p/${text}`, `/p?${text}`, '/p?']) {
        const info = {
          method: text,
          url,
          route: text === 'plain' ? undefined : text,
          statusCode: text === 'été' ? Number.NaN : 201,
          durationMs: 1.23456,
          outcome: 'aborted',
        } as const;
        const ip = text === 'tab\there' ? undefined : text;
        const id = text === '😀' ? undefined : text;
        expect(bare(recordJson(queryOf, info, ip, text, id))).toBe(
          bare(JSON.stringify(baseRecord(queryOf, info, ip, text, id))),
        );
      }
    }
  });
});

describe('writeRecord (a record written straight into the batch body)', () => {
  const queryOf = (search: string): Record<string, string> | undefined =>
    search === '' ? undefined : { q: search, 'x"y': '\\' };
  const bare = (json: string): string =>
    json.replace(/^\{"id":"[0-9a-f-]{36}"/, '{"id":""').replace(/,"time":"[^"]+"/, ',"time":""');
  /** writeRecord's text for these fields, or undefined when it declined them (-1). */
  const written = (
    info: Parameters<typeof recordJson>[1],
    ip: string | undefined,
    userAgent: string | undefined,
    requestId: string | undefined,
    arrivedAt: number,
  ): string | undefined => {
    const { url } = info;
    const mark = url.indexOf('?');
    const params = mark === -1 ? undefined : queryOf(url.slice(mark + 1));
    const queryJson = params === undefined ? undefined : JSON.stringify(params);
    const at = 5;
    const size = [info.method, url, info.route, queryJson, ip, userAgent, requestId].reduce(
      (sum, text) => sum + (text?.length ?? 0),
      at + RECORD_FRAME,
    );
    const buf = Buffer.alloc(size, 0xff);
    const end = writeRecord(
      buf,
      new DataView(buf.buffer, buf.byteOffset, buf.byteLength),
      at,
      info.method,
      url,
      mark === -1 ? url.length : mark,
      info.route,
      info.statusCode,
      info.durationMs,
      info.outcome === 'aborted',
      queryJson,
      ip,
      userAgent,
      requestId,
      arrivedAt,
    );
    return end === -1 ? undefined : buf.toString('utf8', at, end);
  };

  it('writes the bytes recordJson() makes, and declines what only recordJson() writes', () => {
    const plain = ['plain', 'GET', '/a/b-c_d.e~f', 'Mozilla/5.0 (X11; Linux x86_64) like Gecko', '\u007f'];
    const odd = ['quote"d', 'back\\slash', 'tab\there', 'nul\u0000', 'été', '😀', 'lone\ud800', '\u2028'];
    let checked = 0;
    for (const text of [...plain, ...odd]) {
      for (const url of [`/p/${text}`, `/p?${text}`, '/p?', `/p/${text}?a=1&b=2&token=x`]) {
        for (const route of [undefined, text]) {
          const info = {
            method: 'GET',
            url,
            route,
            statusCode: 201,
            durationMs: 1.23456,
            outcome: 'aborted',
          } as const;
          const arrivedAt = Date.UTC(2025, 5, 1, 12, 0, 0, 7);
          const ip = route === undefined ? undefined : text;
          const mine = written(info, ip, text, text, arrivedAt);
          const theirs = recordJson(queryOf, info, ip, text, text, arrivedAt);
          // Printable ASCII and DEL, but no quote or backslash: what needs no escape and is one byte.
          const ascii = /^[\x20\x21\x23-\x5b\x5d-\x7f]*$/.test(`${url}${text}`);
          expect(mine === undefined, `${JSON.stringify(url)} ${JSON.stringify(text)}`).toBe(!ascii);
          if (mine !== undefined) {
            expect(bare(mine)).toBe(bare(theirs));
            expect((JSON.parse(mine) as AuditRecord).time).toBe(isoTime(arrivedAt));
            expect((JSON.parse(mine) as AuditRecord).id).toMatch(
              /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
            );
            checked += 1;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(30);
  });

  it('checks long strings (written natively, checked four bytes at a time) at every position', () => {
    // 32 characters and more go through Buffer's writer and the word-at-a-time check: every odd
    // character, at every position of strings from 32 to 41 characters, in each field.
    const info = (url: string, route: string | undefined) =>
      ({ method: 'GET', url, route, statusCode: 200, durationMs: 2, outcome: 'finished' }) as const;
    const odd = [
      '"',
      '\\',
      '\u0000',
      '\u001f',
      '\t',
      '\u0080',
      'é',
      '\u00ff',
      '\u0100',
      '😀',
      '\ud800',
      '\udc00',
      // Wide characters whose low byte is plain ASCII ('A', '(', '=' and 'A', 'a'): a writer that
      // cut them to one byte would pass them as that character.
      'Ł',
      '\u2028',
      '🙁',
      '\ud861',
    ];
    const arrivedAt = Date.UTC(2025, 5, 1, 12, 0, 0, 7);
    let declined = 0;
    for (let length = 32; length < 42; length++) {
      const base = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEF~ !#[]'.slice(0, length);
      const mine = written(info(`/${base}`, base), base, base, base, arrivedAt) as string;
      expect(bare(mine)).toBe(bare(recordJson(queryOf, info(`/${base}`, base), base, base, base, arrivedAt)));
      for (let at = 0; at < length; at++) {
        for (const char of odd) {
          const text = base.slice(0, at) + char + base.slice(at + 1);
          const fields = [
            written(info(`/${text}`, undefined), undefined, undefined, undefined, arrivedAt),
            written(info(`/${text}?a=1`, undefined), undefined, undefined, undefined, arrivedAt),
            written(info('/x', text), undefined, undefined, undefined, arrivedAt),
            written(info('/x', undefined), text, undefined, undefined, arrivedAt),
            written(info('/x', undefined), undefined, text, undefined, arrivedAt),
            written(info('/x', undefined), undefined, undefined, text, arrivedAt),
          ];
          for (const [field, result] of fields.entries()) {
            expect(result, `${field} ${length} ${at} ${JSON.stringify(char)}`).toBeUndefined();
            declined += 1;
          }
        }
      }
    }
    expect(declined).toBe(6 * odd.length * (32 + 41) * 5);
    // A long path ends at the URL's `?`: what follows is written as the query, not as the path.
    const path = `/${'p'.repeat(40)}`;
    const record = JSON.parse(
      written(info(`${path}?q=1`, undefined), undefined, undefined, undefined, arrivedAt) as string,
    ) as AuditRecord;
    expect([record.path, record.query]).toEqual([path, queryOf('q=1')]);
  });

  it("repeats the last records' runs of bytes only while every value they were written from repeats", () => {
    // Runs (method; path; route and status; outcome, query, ip and user agent) are copied from
    // the last record when their values repeat twice in a row. Each record here is written three
    // times, its strings made anew each time (a header read again), after one that differs from
    // it in a single value: a run repeated for a value it was not written from shows here.
    const fresh = (text: string | undefined): string | undefined =>
      text === undefined ? undefined : Buffer.from(text, 'latin1').toString('latin1');
    const ua = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0';
    const base = {
      method: 'GET',
      url: '/users/7',
      route: '/users/:id' as string | undefined,
      statusCode: 200,
      outcome: 'finished' as 'finished' | 'aborted',
      ip: '10.0.0.1' as string | undefined,
      userAgent: ua as string | undefined,
      requestId: 'req-1' as string | undefined,
      second: 0,
    };
    const changes: Array<Partial<typeof base>> = [
      {},
      { method: 'POST' },
      {},
      { url: '/users/8' },
      { url: '/users/8?a=1' },
      { url: '/users/8?a=2' },
      { url: '/users/7?a=2' },
      { route: undefined },
      { route: '/users/:name' },
      { statusCode: 404 },
      { statusCode: 20 },
      { outcome: 'aborted' },
      { ip: '10.0.0.2' },
      { ip: undefined },
      { userAgent: `${ua}.1` },
      { userAgent: undefined },
      { ip: undefined, userAgent: undefined },
      { requestId: 'req-2' },
      { requestId: undefined },
      { second: 1 },
      { second: 2, statusCode: 404 },
      {},
    ];
    // Each change after the base record, so that it is the one value that differs.
    const steps = changes.flatMap((change) => [{}, change]);
    let checked = 0;
    for (const change of steps) {
      const values = { ...base, ...change };
      for (let round = 0; round < 3; round++) {
        const info = {
          method: fresh(values.method) as string,
          url: fresh(values.url) as string,
          route: fresh(values.route),
          statusCode: values.statusCode,
          durationMs: 1.5 + round,
          outcome: values.outcome,
        };
        const arrivedAt = Date.UTC(2025, 5, 1, 12, 0, values.second, round);
        const ip = fresh(values.ip);
        const userAgent = fresh(values.userAgent);
        const requestId = fresh(values.requestId);
        const mine = written(info, ip, userAgent, requestId, arrivedAt);
        expect(mine, `${JSON.stringify(change)} round ${round}`).toBeDefined();
        // The time too: the same arrival gives recordJson() the same time.
        const withoutId = (json: string): string => json.replace(/^\{"id":"[0-9a-f-]{36}"/, '{"id":""');
        expect(withoutId(mine as string), `${JSON.stringify(change)} round ${round}`).toBe(
          withoutId(recordJson(queryOf, info, ip, userAgent, requestId, arrivedAt)),
        );
        checked += 1;
      }
    }
    expect(checked).toBe(3 * steps.length);
  });

  it('writes every duration and status as JSON.stringify would, and declines those out of range', () => {
    const durations = [
      0, -0, 0.0004, 0.0005, 0.001, 0.01, 0.1, 0.5, 1, 1.5, 2.05, 3.2, 10.005, 99.999, 999.9995,
    ];
    for (let i = 0; i < 2_000; i++) durations.push(Math.random() * 10 ** (i % 8));
    durations.push(2_147_483.647, 2_147_483.6475, 1e10, -1, Number.NaN, Infinity);
    const statuses = [0, 1, 9, 10, 99, 100, 200, 404, 599, 1_000, 2 ** 31 - 1, 2 ** 31, -1, 1.5, Number.NaN];
    for (const [k, durationMs] of durations.entries()) {
      const statusCode = statuses[k % statuses.length] as number;
      const info = {
        method: 'GET',
        url: '/x',
        route: undefined,
        statusCode,
        durationMs,
        outcome: 'finished',
      } as const;
      const mine = written(info, undefined, undefined, undefined, 1_700_000_000_000.25);
      const inRange =
        Math.round(durationMs * 1000) >= 0 &&
        Math.round(durationMs * 1000) < 2 ** 31 &&
        Number.isInteger(statusCode) &&
        statusCode >= 0 &&
        statusCode < 2 ** 31;
      expect(mine !== undefined, `${durationMs} ${statusCode}`).toBe(inRange);
      if (mine !== undefined) {
        expect(bare(mine)).toBe(bare(recordJson(queryOf, info, undefined, undefined, undefined, 0)));
      }
    }
  });

  it('writes the time as toISOString() does, and declines one outside the years 0 to 9999', () => {
    const info = {
      method: 'GET',
      url: '/x',
      route: undefined,
      statusCode: 200,
      durationMs: 1,
      outcome: 'finished',
    } as const;
    for (const ms of [0, 999.9, 1_000, Date.UTC(2025, 11, 31, 23, 59, 59, 999), 253_402_300_799_999]) {
      expect(
        (JSON.parse(written(info, undefined, undefined, undefined, ms) as string) as AuditRecord).time,
      ).toBe(new Date(Math.floor(ms)).toISOString());
    }
    expect(written(info, undefined, undefined, undefined, -1)).toBeUndefined();
    expect(written(info, undefined, undefined, undefined, 253_402_300_800_000)).toBeUndefined();
  });
});

describe('isoTime', () => {
  it('writes what toISOString() writes, across seconds, milliseconds and fractions', () => {
    const start = Date.UTC(2025, 11, 31, 23, 59, 58, 990);
    for (let ms = start; ms < start + 2_100; ms += 0.75) {
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }
    for (const ms of [0, 1, 999, 1_000, 253_402_300_799_999, 253_402_300_800_000, -1, -1_500]) {
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }
  });
});
