/**
 * The core README's Fastify recipe (issue 12, "A recipe users asked for"), run in a real Fastify
 * app against a real receiver. The recipe file is test/docs/fixtures/afterward-fastify.ts; the
 * first test proves the README shows exactly that file.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { DeliveryHandle } from '@afterward/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { abortMidResponse, timedGet } from '../adapters/harness.js';
import { testDispatcher, testReceiver } from '../adapters/setup.js';
import { waitUntil } from '../support/net.js';
import { afterward, type FastifyResponseInfo } from './fixtures/afterward-fastify.js';
import { extractBlocks } from './blocks.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const apps: FastifyInstance[] = [];

async function start(build: (app: FastifyInstance) => void): Promise<string> {
  const dispatcher = testDispatcher();
  const app = Fastify();
  afterward(app, dispatcher);
  build(app);
  apps.push(app);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return url;
}

describe('the Fastify recipe in the core README', () => {
  it('is the file this test runs, word for word', () => {
    const recipe = extractBlocks(ROOT, 'packages/core/README.md').filter((b) =>
      b.directives.includes('file=afterward-fastify.ts'),
    );
    expect(recipe).toHaveLength(1);
    const fixture = readFileSync(join(ROOT, 'test/docs/fixtures/afterward-fastify.ts'), 'utf8');
    expect(`${recipe[0]?.code}\n`).toBe(fixture);
  });

  it('the client has the whole response before the receiver sees the notification', async () => {
    const receiver = await testReceiver();
    const body = 'x'.repeat(256 * 1024);
    let handle: DeliveryHandle | undefined;
    const url = await start((app) => {
      app.get('/orders/:id', async (_request, reply) => {
        handle = reply.afterward.fireAndForget(`${receiver.url}/orders`, {
          json: (info: FastifyResponseInfo) => ({
            outcome: info.outcome,
            status: info.statusCode,
            method: info.method,
            url: info.url,
            route: info.route,
          }),
        });
        expect(handle.state).toBe('pending');
        return reply.code(201).send({ body });
      });
    });

    const response = await timedGet(`${url}/orders/7?x=1`);
    const [received] = await receiver.waitFor(1);

    expect(response.status).toBe(201);
    expect(JSON.parse(response.body)).toEqual({ body });
    expect(received?.receivedAt).toBeGreaterThan(response.endedAt);
    expect(received?.json()).toEqual({
      outcome: 'finished',
      status: 201,
      method: 'GET',
      url: '/orders/7?x=1',
      route: '/orders/:id',
    });
    await waitUntil(() => handle?.state === 'delivered', { message: 'the handle is delivered' });
  });

  it('a client that goes away mid-response still releases the work, as aborted', async () => {
    const receiver = await testReceiver();
    let hookOutcome: string | undefined;
    const url = await start((app) => {
      app.get('/stream', (_request, reply) => {
        reply.afterward.fireAndForget(`${receiver.url}/aborted`, {
          json: (info: FastifyResponseInfo) => ({ outcome: info.outcome }),
          when: 'aborted',
        });
        reply.afterward.fireAndForget(`${receiver.url}/ok`, { json: { never: true }, when: 'ok' });
        reply.afterward.after((info) => {
          hookOutcome = info.outcome;
        });
        // One chunk, then nothing: the response never ends by itself.
        const stream = new Readable({ read() {} });
        stream.push('first chunk');
        return reply.send(stream);
      });
    });

    await abortMidResponse(`${url}/stream`);
    const [received] = await receiver.waitFor(1);

    expect(received?.url).toBe('/aborted');
    expect(received?.json()).toEqual({ outcome: 'aborted' });
    await waitUntil(() => hookOutcome !== undefined, { message: 'the hook ran' });
    expect(hookOutcome).toBe('aborted');
    expect(receiver.requests.map((r) => r.url)).toEqual(['/aborted']);
  });

  it("a route that throws: Fastify's error handler answers 500 and the work sees 500", async () => {
    const receiver = await testReceiver();
    const url = await start((app) => {
      app.post('/orders', (_request, reply) => {
        reply.afterward.fireAndForget(`${receiver.url}/failed`, {
          json: (info: FastifyResponseInfo) => ({ status: info.statusCode, route: info.route }),
          when: 'error',
        });
        reply.afterward.fireAndForget(`${receiver.url}/created`, { json: { created: true }, when: 'ok' });
        throw new Error('the database is down');
      });
    });

    const response = await fetch(`${url}/orders`, { method: 'POST' });
    expect(response.status).toBe(500);
    await response.arrayBuffer();
    const [received] = await receiver.waitFor(1);

    expect(received?.url).toBe('/failed');
    expect(received?.json()).toEqual({ status: 500, route: '/orders' });
    // Give the 'ok' notification a chance to (wrongly) arrive, then check it never did.
    await new Promise((done) => setTimeout(done, 100));
    expect(receiver.requests.map((r) => r.url)).toEqual(['/failed']);
  });
});

// Registered after setup.ts's hook, so it runs first: apps close before their dispatchers.
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
});
