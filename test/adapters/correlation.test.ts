/**
 * Correlation (issue 12): an audit record and a failed delivery's log line carry the id of the
 * request that caused them, the framework's first (pino-http's `req.id`), else `x-request-id`;
 * and a failing hook's message is logged once, as pino prints it.
 */
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { createDispatcher } from '@afterward/core';
import { afterward as expressAfterward, auditLog as expressAuditLog } from '@afterward/express';
import { afterward as koaAfterward, auditLog as koaAuditLog } from '@afterward/koa';
import express from 'express';
import Koa from 'koa';
import { pino } from 'pino';
import { pinoHttp } from 'pino-http';
import { describe, expect, it } from 'vitest';
import { cleanupScope, startReceiver, waitUntil } from '../support/index.js';

const { cleanups } = cleanupScope();

/** A real pino logger whose JSON lines are kept, as a pino user's log would hold them. */
function pinoLines(): { logger: ReturnType<typeof pino>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  cleanups.push(() => new Promise<void>((done) => server.close(() => done())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function receivers() {
  const failing = await startReceiver((_req, res) => {
    res.statusCode = 500;
    res.end();
  });
  const audit = await startReceiver();
  cleanups.push(
    () => failing.close(),
    () => audit.close(),
  );
  return { failing, audit };
}

function dispatcherWith(logger: ReturnType<typeof pino>) {
  const dispatcher = createDispatcher({ logger, retry: { attempts: 1 } });
  cleanups.push(() => dispatcher.close({ timeout: 1_000 }));
  return dispatcher;
}

const failedLine = (lines: Array<Record<string, unknown>>) =>
  lines.find((line) => line['msg'] === 'afterward: notification failed');

describe('Express with pino-http', () => {
  it("the audit record and a failed delivery's log line carry pino-http's req.id", async () => {
    const { failing, audit } = await receivers();
    const { logger, lines } = pinoLines();
    const dispatcher = dispatcherWith(logger);
    const app = express();
    let seen: unknown;
    // pino-http's own id (a counter by default); a differing x-request-id must not win over it.
    app.use(pinoHttp({ logger, genReqId: () => 'pino-req-7' }));
    app.use(expressAuditLog({ url: audit.url, dispatcher, batch: false }));
    app.use(expressAfterward({ dispatcher }));
    app.get('/orders', (req, res) => {
      seen = req.id;
      res.fireAndForget(`${failing.url}/hook`, { json: (info) => ({ status: info.statusCode }) });
      res.json({ ok: true });
    });
    const base = await listen(createServer(app));
    const answer = await fetch(`${base}/orders`, { headers: { 'x-request-id': 'from-header' } });
    expect(answer.status).toBe(200);
    expect(seen).toBe('pino-req-7');

    const [record] = await audit.waitFor(1);
    expect(record?.json<{ requestId?: string }>().requestId).toBe('pino-req-7');
    await waitUntil(() => failedLine(lines) !== undefined, { message: 'the failed delivery is logged' });
    expect(failedLine(lines)).toMatchObject({
      requestId: 'pino-req-7',
      err: { message: expect.any(String) as unknown },
    });
  });

  it('without a framework id, x-request-id; and a requestId getter wins over both', async () => {
    const { failing, audit } = await receivers();
    const { logger, lines } = pinoLines();
    const dispatcher = dispatcherWith(logger);
    const app = express();
    app.use(
      expressAuditLog({
        url: audit.url,
        dispatcher,
        batch: false,
        requestId: (req) => req.get('x-trace') ?? undefined,
      }),
    );
    app.use(expressAfterward({ dispatcher }));
    app.get('/', (_req, res) => {
      res.fireAndForget(`${failing.url}/hook`, { json: { n: 1 } });
      res.end('ok');
    });
    const base = await listen(createServer(app));
    await fetch(`${base}/`, { headers: { 'x-request-id': 'hdr-1' } });
    await fetch(`${base}/`, { headers: { 'x-request-id': 'hdr-2', 'x-trace': 'trace-2' } });

    const records = (await audit.waitFor(2)).map((r) => r.json<{ requestId?: string }>().requestId);
    expect(records.sort()).toEqual(['hdr-1', 'trace-2']);
    await waitUntil(() => lines.filter((l) => l['msg'] === 'afterward: notification failed').length === 2, {
      message: 'both failed deliveries are logged',
    });
    const ids = lines.filter((l) => l['msg'] === 'afterward: notification failed').map((l) => l['requestId']);
    expect(ids.sort()).toEqual(['hdr-1', 'hdr-2']);
  });

  it("a failing hook's message is logged once, with the hook's own error", async () => {
    const { logger, lines } = pinoLines();
    const dispatcher = dispatcherWith(logger);
    const app = express();
    app.use(expressAfterward({ dispatcher }));
    app.get('/', (_req, res) => {
      res.after(() => {
        throw new Error('hook exploded');
      });
      res.end('ok');
    });
    const base = await listen(createServer(app));
    await fetch(`${base}/`);
    const hookLine = () => lines.find((l) => l['msg'] === 'afterward: after-response hook failed');
    await waitUntil(() => hookLine() !== undefined, { message: 'the hook failure is logged' });
    const line = hookLine();
    // pino's err serializer appends an error's causes to its message: the message must not quote them.
    const err = line?.['err'] as { message?: string; stack?: string } | undefined;
    const text = `${String(line?.['msg'])} ${String(err?.message)}`;
    expect(text.split('hook exploded').length - 1, text).toBe(1);
    expect(err?.stack).toContain('correlation.test.ts');
    expect(line).toMatchObject({ code: 'AFTERWARD_ERR_HOOK_FAILED', err: { message: 'hook exploded' } });
  });
});

describe('Koa', () => {
  it("ctx.state.requestId reaches the audit record and a failed delivery's log line", async () => {
    const { failing, audit } = await receivers();
    const { logger, lines } = pinoLines();
    const dispatcher = dispatcherWith(logger);
    const app = new Koa();
    app.use(async (ctx, next) => {
      ctx.state['requestId'] = 'koa-req-3';
      await next();
    });
    app.use(koaAuditLog({ url: audit.url, dispatcher, batch: false }));
    app.use(koaAfterward({ dispatcher }));
    app.use((ctx) => {
      ctx.fireAndForget(`${failing.url}/hook`, { json: (info) => ({ route: info.route }) });
      ctx.body = 'ok';
    });
    const handle = app.callback();
    const base = await listen(createServer((req, res) => void handle(req, res)));
    await fetch(`${base}/`, { headers: { 'x-request-id': 'from-header' } });

    const [record] = await audit.waitFor(1);
    expect(record?.json<{ requestId?: string }>().requestId).toBe('koa-req-3');
    await waitUntil(() => failedLine(lines) !== undefined, { message: 'the failed delivery is logged' });
    expect(failedLine(lines)).toMatchObject({ requestId: 'koa-req-3' });
  });
});
