import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { waitUntil } from '../support/index.js';

const EXAMPLES = [
  {
    name: 'express-audit',
    call: (url: string) => request(url).get('/orders/42').expect(200),
    arrived: /audit event: .*"route":"\/orders\/:id","status":200/,
  },
  {
    name: 'koa-webhooks',
    call: (url: string) => request(url).post('/orders').send({ item: 'teapot' }).expect(201),
    arrived: /webhook \S+ signature valid: .*"type":"order.created"/,
  },
];

describe.each(EXAMPLES)('examples/$name/server.mjs', ({ name, call, arrived }) => {
  it('runs standalone, delivers, and exits 0 on SIGTERM after closing the server and the dispatcher', async () => {
    const script = fileURLToPath(new URL(`../../examples/${name}/server.mjs`, import.meta.url));
    const child = spawn(process.execPath, [script], { env: { ...process.env, PORT: '0' } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await waitUntil(() => /listening on (http:\S+)/.test(output), {
        timeoutMs: 10_000,
        message: 'listening',
      });
      const url = /listening on (http:\S+)/.exec(output)?.[1] ?? '';
      await call(url);
      await waitUntil(() => arrived.test(output), { message: `the notification arrived:\n${output}` });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(output).toContain('shut down: everything delivered');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('examples/demo/demo.mjs', () => {
  it('prints each response before its notification, and exits 0 by itself', async () => {
    const script = fileURLToPath(new URL('../../examples/demo/demo.mjs', import.meta.url));
    const child = spawn(process.execPath, [script]);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));

    expect(code, output).toBe(0);
    const lines = output.split('\n');
    const at = (pattern: RegExp): number => lines.findIndex((l) => pattern.test(l));
    for (const [response, event] of [
      [/← 200 for GET \/orders\/42/, /arrived: GET \/orders\/:id → 200/],
      [/← 201 for POST \/orders/, /arrived: POST \/orders → 201/],
      [/← 500 for GET \/fail/, /arrived: GET \/fail → 500/],
    ] as const) {
      expect(at(response)).toBeGreaterThan(-1);
      expect(at(event)).toBeGreaterThan(at(response));
    }
    expect(output).toContain('all delivered: 4 audit events, 0 failed');
  });
});
