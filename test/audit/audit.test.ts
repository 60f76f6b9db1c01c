import { once } from 'node:events';
import { connect, type AddressInfo } from 'node:net';
import type { AuditRecord, Dispatcher } from '@afterward/core';
import { auditLog as expressAuditLog } from '@afterward/express';
import type { Server } from 'node:http';
import { auditLog as koaAuditLog } from '@afterward/koa';
import express5, { type Request, type Response } from 'express';
import Koa3, { type Context, type Next } from 'koa';
import express4 from 'express4';
import { REDACTED } from '@afterward/core';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { abortMidResponse } from '../adapters/harness.js';
import { testDispatcher, testReceiver, track } from '../adapters/setup.js';
import { type Receiver, waitUntil } from '../support/index.js';
import { AUDIT_KITS } from './harness.js';

/** Every record the receiver accepted (2xx answers only), batches unpacked. */
function accepted(receiver: Receiver, statuses: number[]): AuditRecord[] {
  return receiver.requests
    .filter((_r, i) => (statuses[i] ?? 204) < 300)
    .flatMap((r) => r.json<AuditRecord[]>());
}

// Names that carry secrets in the wild; the exact-name rules of old leaked most of them.
const QUERY_SECRETS = [
  'key',
  'access_key',
  'code',
  'X-Amz-Signature',
  'X-Amz-Credential',
  'X-Amz-Security-Token',
  'jwt',
  'private_key',
  'otp',
  'api_key',
  'apikey',
  'access_token',
  'refresh_token',
  'id_token',
  'client_secret',
  'password',
  'passwd',
  'pwd',
  'sig',
  'signature',
  'session_id',
  'auth',
  'oauth_token',
  'client_assertion',
  'credentials',
  'secretKey',
  'authCode',
  'mfa_code',
  'hmac_sig',
  'csrfToken',
];
const HEADER_SECRETS = [
  'x-forwarded-authorization',
  'cf-access-jwt-assertion',
  'x-goog-iap-jwt-assertion',
  'x-access-key',
  'private-key',
  'authorization',
  'proxy-authorization',
  'cookie',
  'x-api-key',
  'x-auth-token',
  'x-csrf-token',
  'x-session-id',
  'x-amz-security-token',
  'x-hub-signature-256',
  'stripe-signature',
  'x-webhook-secret',
  'x-otp',
  'x-apikey',
];
const BODY_SECRETS = [
  'password',
  'newPassword',
  'api_key',
  'privateKey',
  'secret',
  'token',
  'otp',
  'code',
  'jwt',
  'session',
  'credentials',
  'signature',
  'clientAssertion',
  'refreshToken',
  'authorization',
  'apiKey',
  'pin_code',
];

describe.each(AUDIT_KITS)('$name: auditLog()', (kit) => {
  it('records a successful request with its fields, the user fields, and the defaults redacted', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = track(
      await kit.start({
        url: receiver.url,
        dispatcher,
        headers: true,
        fields: (subject, info) => ({
          userId: subject.get('x-user'),
          tenantId: 'acme',
          seen: info.statusCode,
        }),
      }),
    );
    await request(app.url)
      .get('/api/users/7?page=2&access_token=tok-1&password=hunter2&client_secret=shh')
      .set('authorization', 'Bearer bearer-secret')
      .set('cookie', 'sid=cookie-secret')
      .set('proxy-authorization', 'Basic cHJveHktc2VjcmV0')
      .set('user-agent', 'audit-suite/1')
      .set('x-request-id', 'req-42')
      .set('x-user', 'u-7')
      .expect(200);
    await dispatcher.drain({ timeout: 5_000 });

    const [batch] = await receiver.waitFor(1);
    const [record] = batch?.json<AuditRecord[]>() ?? [];
    expect(record).toMatchObject({
      method: 'GET',
      path: '/api/users/7',
      route: '/api/users/:id',
      status: 200,
      outcome: 'finished',
      userAgent: 'audit-suite/1',
      requestId: 'req-42',
      userId: 'u-7',
      tenantId: 'acme',
      seen: 200,
      query: { page: '2', access_token: REDACTED, password: REDACTED, client_secret: REDACTED },
      requestHeaders: { authorization: REDACTED, cookie: REDACTED, 'proxy-authorization': REDACTED },
      responseHeaders: { 'set-cookie': REDACTED },
    });
    expect(record?.ip).toMatch(/127\.0\.0\.1$/);
    expect(record?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(typeof record?.durationMs).toBe('number');
    expect(Number.isNaN(Date.parse(record?.time ?? ''))).toBe(false);
    const wire = batch?.body.toString('utf8') ?? '';
    for (const secret of [
      'tok-1',
      'hunter2',
      'shh',
      'bearer-secret',
      'cookie-secret',
      'cHJveHktc2VjcmV0',
      'session-cookie-value',
    ]) {
      expect(wire).not.toContain(secret);
    }
    expect(record).not.toHaveProperty('body');
  });

  it('records error responses and requests the client aborted', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = track(await kit.start({ url: receiver.url, dispatcher, batch: { maxItems: 1 } }));
    await request(app.url).get('/fail').expect(500);
    await request(app.url).get('/nowhere').expect(404);
    await abortMidResponse(`${app.url}/stream`);
    await receiver.waitFor(3);
    const byPath = Object.fromEntries(accepted(receiver, []).map((r) => [r.path, r]));
    expect(byPath['/fail']).toMatchObject({ status: 500, outcome: 'finished', route: '/fail' });
    expect(byPath['/nowhere']).toMatchObject({ status: 404, outcome: 'finished' });
    expect(byPath['/nowhere']).not.toHaveProperty('route');
    expect(byPath['/stream']).toMatchObject({ status: 200, outcome: 'aborted', route: '/stream' });
  });

  it('records a response queued behind another on a pipelined connection when the client goes away', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = track(await kit.start({ url: receiver.url, dispatcher, batch: { maxItems: 1 } }));
    const client = connect(Number(new URL(app.url).port), '127.0.0.1');
    client.on('error', () => undefined);
    let answered = '';
    client.setEncoding('latin1').on('data', (chunk: string) => (answered += chunk));
    // The first response never ends: the second waits behind it for the socket, with none of its
    // own, and its 'close' comes from the connection's end, not from a socket it was given.
    client.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /api/users/7 HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitUntil(() => answered.includes('part'), { message: 'the first response began' });
    // Both requests reached the app before the client leaves (the second is parsed with the first).
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.destroy();
    await receiver.waitFor(2);
    await dispatcher.drain({ timeout: 2_000 });
    const byPath = Object.fromEntries(accepted(receiver, []).map((r) => [r.path, r]));
    expect(Object.keys(byPath).sort()).toEqual(['/api/users/7', '/stream']);
    expect(byPath['/stream']).toMatchObject({ outcome: 'aborted', route: '/stream' });
    expect(byPath['/api/users/7']).toMatchObject({
      status: 200,
      outcome: 'aborted',
      route: '/api/users/:id',
    });
  });

  it('redacts secret-bearing names by family across query, headers and body (66 names)', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = track(await kit.start({ url: receiver.url, dispatcher, headers: true, body: 64 * 1024 }));
    const secret = (n: number): string => `S3CRET${n}`;
    let n = 0;
    const query = new URLSearchParams([['page', '2']]);
    for (const name of QUERY_SECRETS) query.append(name, secret(n++));
    const headers: Record<string, string> = { 'x-plain': 'visible' };
    for (const name of HEADER_SECRETS) headers[name] = secret(n++);
    const body: Record<string, unknown> = { user: 'ann', nested: {} };
    for (const name of BODY_SECRETS) body[name] = secret(n++);
    (body['nested'] as Record<string, unknown>)['accessToken'] = secret(n++);
    expect(n).toBeGreaterThanOrEqual(40);
    await request(app.url).get(`/api/users/7?${query.toString()}`).set(headers).expect(200);
    await request(app.url).post('/login').set(headers).send(body).expect(204);
    await dispatcher.drain({ timeout: 5_000 });
    const records = accepted(receiver, []);
    expect(records).toHaveLength(2);
    const everything = JSON.stringify(records);
    expect(everything).not.toMatch(/S3CRET/);
    const [get, post] = records;
    expect(get?.query).toMatchObject({ page: '2', key: REDACTED, 'X-Amz-Signature': REDACTED });
    expect(get?.requestHeaders).toMatchObject({ 'x-plain': 'visible', 'cf-access-jwt-assertion': REDACTED });
    expect(post?.body).toContain('"user":"ann"');
    expect(post?.body).toContain(`"privateKey":"${REDACTED}"`);
  });

  it('logs the request body only when asked, capped, with password keys redacted', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = track(await kit.start({ url: receiver.url, dispatcher, body: 48 }));
    await request(app.url)
      .post('/login')
      .send({ user: 'ann', password: 'hunter2', note: 'x'.repeat(200) })
      .expect(204);
    await dispatcher.drain({ timeout: 5_000 });
    const [record] = accepted(receiver, []);
    expect(record?.body).toContain('"user":"ann"');
    expect(record?.body).toContain(`"password":"${REDACTED}"`);
    expect(record?.bodyTruncated).toBe(true);
    expect(Buffer.byteLength(record?.body ?? '')).toBeLessThanOrEqual(48);
  });

  it('batches records, and flushes the partial batch on close', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = track(
      await kit.start({
        url: receiver.url,
        dispatcher,
        batch: { maxItems: 4, maxWaitMs: 60_000, format: 'ndjson' },
      }),
    );
    for (let i = 0; i < 6; i++) await request(app.url).get(`/api/users/${i}`).expect(200);
    await receiver.waitFor(1);
    expect(receiver.requests).toHaveLength(1);
    await dispatcher.close({ timeout: 5_000 });
    expect(receiver.requests).toHaveLength(2);
    expect(receiver.requests[0]?.headers['content-type']).toBe('application/x-ndjson');
    const lines = receiver.requests.flatMap((r) => r.body.toString('utf8').trim().split('\n'));
    expect(lines.map((line) => (JSON.parse(line) as AuditRecord).path)).toEqual(
      [0, 1, 2, 3, 4, 5].map((i) => `/api/users/${i}`),
    );
  });

  // Without fields, headers or body, a record is held as the values read at close and made into
  // JSON with its batch (issue 15); with `fields` it is built at close. Both must be the same record.
  it('makes the same record whether it is built at close or with its batch', async () => {
    const records: AuditRecord[][] = [];
    for (const withFields of [false, true]) {
      const receiver = await testReceiver();
      const dispatcher = testDispatcher();
      const options = { url: receiver.url, dispatcher, batch: { maxItems: 3 } };
      const app = track(await kit.start(withFields ? { ...options, fields: () => undefined } : options));
      await request(app.url)
        .get('/api/users/7?page=2&access_token=tok-1&page=3&q=%C3%A9t%C3%A9+x')
        .set('user-agent', 'audit-suite/"1"')
        .set('x-request-id', 'req-"42"')
        .expect(200);
      await request(app.url).get('/nowhere?x=1').expect(404);
      await request(app.url).get('/fail').expect(500);
      const [batch] = await receiver.waitFor(1);
      records.push(batch?.json<AuditRecord[]>() ?? []);
    }
    const comparable = (r: AuditRecord): Partial<AuditRecord> => ({ ...r, id: '', time: '', durationMs: 0 });
    expect(records[0]?.map(comparable)).toEqual(records[1]?.map(comparable));
    expect(records[0]?.[0]).toMatchObject({
      path: '/api/users/7',
      route: '/api/users/:id',
      query: { page: ['2', '3'], access_token: REDACTED, q: 'été x' },
      userAgent: 'audit-suite/"1"',
      requestId: 'req-"42"',
    });
    expect(records[0]?.[1]).not.toHaveProperty('route');
    for (const record of records.flat()) {
      expect(record.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(Math.abs(Date.parse(record.time) - Date.now())).toBeLessThan(60_000);
    }
  });

  // A compact record is kept as fields and made into JSON with the next ones, up to a batch's
  // maxWaitMs later (issue 15): its time is still when the request arrived.
  it('gives a record made into JSON after the response the time its request arrived', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = track(await kit.start({ url: receiver.url, dispatcher, batch: { maxWaitMs: 400 } }));
    const before = Date.now();
    await request(app.url).get('/api/users/7').expect(200);
    const after = Date.now();
    expect(receiver.requests).toHaveLength(0);
    const [batch] = await receiver.waitFor(1);
    expect(Date.now() - after).toBeGreaterThanOrEqual(300);
    const [record] = batch?.json<AuditRecord[]>() ?? [];
    const time = Date.parse(record?.time ?? '');
    // Date.now() and the monotonic clock durations come from may differ by a millisecond or two.
    expect(time).toBeGreaterThanOrEqual(before - 2);
    expect(time).toBeLessThanOrEqual(after + 2);
    expect(record?.durationMs).toBeLessThanOrEqual(after - before + 2);
  });

  it('logs a record whose response ends after its dispatcher closed, and sends no request', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = track(await kit.start({ url: receiver.url, dispatcher }));
    await dispatcher.close({ timeout: 1_000 });
    await request(app.url).get('/api/users/7').expect(200);
    await waitUntil(() => dispatcher.logs.some((l) => /audit record could not be sent/.test(l.msg ?? '')), {
      message: 'the refused record was logged',
    });
    expect(
      dispatcher.logs.find((l) => /audit record could not be sent/.test(l.msg ?? ''))?.obj.err,
    ).toMatchObject({ name: 'ClosedError' });
    expect(receiver.requests).toHaveLength(0);
  });

  it('loses no record when the receiver fails twice and then recovers', async () => {
    const statuses: number[] = [];
    const receiver = await testReceiver((_req, res) => {
      res.statusCode = statuses.length < 2 ? 503 : 204;
      statuses.push(res.statusCode);
      res.end();
    });
    const dispatcher = testDispatcher();
    const app = track(
      await kit.start({ url: receiver.url, dispatcher, batch: { maxItems: 3, maxWaitMs: 10 } }),
    );
    for (let i = 0; i < 8; i++) await request(app.url).get(`/api/users/${i}`).expect(200);
    const { drained } = await dispatcher.drain({ timeout: 10_000 });
    expect(drained).toBe(true);
    expect(statuses.slice(0, 2)).toEqual([503, 503]);
    const paths = accepted(receiver, statuses).map((r) => r.path);
    expect(paths.sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => `/api/users/${i}`));
    expect(dispatcher.stats()).toMatchObject({ failed: 0, dropped: 0 });
  });
});

// A request can reach auditLog() after its client left, when an earlier middleware awaited: its
// response emitted 'close' before the log listened for it, and no other 'close' will come.
describe('auditLog() reached after the client left', () => {
  /** Serves `/slow` behind a middleware that waits for the client to go away; `reached` once it waits. */
  async function slowApp(
    kind: 'express5' | 'koa3',
    url: string,
    dispatcher: Dispatcher,
  ): Promise<{ origin: string; reached: Promise<void> }> {
    const options = { url, dispatcher, batch: { maxItems: 1 } };
    let arrived = (): void => undefined;
    const reached = new Promise<void>((resolve) => (arrived = resolve));
    let server: Server;
    if (kind === 'express5') {
      const app = express5();
      app.use(async (_req: Request, res: Response, next: () => void) => {
        arrived();
        await new Promise((resolve) => res.once('close', resolve));
        next();
      });
      app.use(expressAuditLog(options));
      app.get('/slow', (_req: Request, res: Response) => void res.json({ ok: true }));
      server = app.listen(0, '127.0.0.1');
    } else {
      const app = new Koa3();
      app.use(async (ctx: Context, next: Next) => {
        arrived();
        await new Promise((resolve) => ctx.res.once('close', resolve));
        await next();
      });
      app.use(koaAuditLog(options));
      app.use((ctx: Context) => {
        ctx.body = { ok: true };
      });
      server = app.listen(0, '127.0.0.1');
    }
    await once(server, 'listening');
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    track({
      url: origin,
      server,
      errors: [],
      close: () => new Promise((resolve) => server.close(() => resolve())),
    });
    return { origin, reached };
  }

  it.each(['express5', 'koa3'] as const)('%s: the request is recorded as aborted', async (kind) => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const { origin, reached } = await slowApp(kind, receiver.url, dispatcher);
    const client = connect(Number(new URL(origin).port), '127.0.0.1');
    client.on('error', () => undefined);
    client.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await reached;
    client.destroy();
    await receiver.waitFor(1);
    await dispatcher.drain({ timeout: 2_000 });
    const [record] = accepted(receiver, []);
    expect(record).toMatchObject({ method: 'GET', path: '/slow', outcome: 'aborted' });
  });
});

// The Express adapter reads the socket's address itself while 'trust proxy' is off (issue 15:
// Express's `req.ip` getter runs proxy-addr on every request); whatever the setting, the record
// must say what `req.ip` says once the response ended.
describe.each([
  ['express5', express5],
  ['express4', express4],
] as const)('%s: auditLog() ip', (_name, express) => {
  const settings: Array<[string, unknown]> = [
    ['default', undefined],
    ['false', false],
    ['true', true],
    ["'loopback'", 'loopback'],
    ['1 hop', 1],
    ["'10.0.0.0/8' (peer not trusted)", '10.0.0.0/8'],
    ['a function', (addr: string) => addr.endsWith('127.0.0.1')],
  ];
  it.each(settings)(
    'trust proxy %s: the record has req.ip, X-Forwarded-For or not',
    async (_label, trust) => {
      const receiver = await testReceiver();
      const dispatcher = testDispatcher();
      const app = express();
      if (trust !== undefined) app.set('trust proxy', trust);
      app.use(expressAuditLog({ url: receiver.url, dispatcher, batch: { maxItems: 1 } }));
      const seen: Array<string | undefined> = [];
      app.get('/ip', (req: Request, res: Response) => {
        res.on('close', () => seen.push(req.ip));
        res.end();
      });
      const server = app.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      track({
        url,
        server,
        errors: [],
        close: () => new Promise((resolve) => server.close(() => resolve())),
      });
      await request(url).get('/ip').set('x-forwarded-for', '203.0.113.7, 198.51.100.2').expect(200);
      await request(url).get('/ip').expect(200);
      await receiver.waitFor(2);
      const ips = accepted(receiver, []).map((r) => r.ip);
      expect(ips).toEqual(seen);
      const trusted = trust === true || trust === 'loopback' || trust === 1 || typeof trust === 'function';
      expect(ips[0]).toBe(trusted ? (trust === true ? '203.0.113.7' : '198.51.100.2') : ips[1]);
      expect(ips[1]).toMatch(/127\.0\.0\.1$/);
    },
  );
});
