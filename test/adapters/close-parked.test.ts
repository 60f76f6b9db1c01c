/**
 * Issue 11 #15: `close()` counts the work parked on still-open responses as cancelled, and nothing
 * of it runs afterwards: no hook, no `when` predicate, no lazy payload, no failed-hook log line.
 */
import { request as httpRequest, type ClientRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterward } from '@afterward/express';
import express, { type Response } from 'express';
import { describe, expect, it } from 'vitest';
import { waitUntil } from '../support/index.js';
import { testDispatcher, testReceiver } from './setup.js';

describe('issue 11 #15: close() and work parked on open responses', () => {
  it('counts parked hooks and notifications as cancelled, and runs none of it after close', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const ran: string[] = [];
    let open: Response | undefined;
    const app = express();
    app.use(afterward({ dispatcher }));
    app.get('/stream', (_req, res) => {
      res.after(() => void ran.push('hook'));
      res.after(() => void ran.push('hook with when'), {
        when: () => {
          ran.push('hook when');
          return true;
        },
      });
      res.fireAndForget(receiver.url, {
        when: () => {
          ran.push('send when');
          return true;
        },
        json: () => {
          ran.push('json');
          return {};
        },
      });
      res.write('part');
      open = res;
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((done) => server.once('listening', done));
    const { port } = server.address() as AddressInfo;
    let client: ClientRequest | undefined;
    try {
      await new Promise<void>((done, fail) => {
        client = httpRequest({ host: '127.0.0.1', port, path: '/stream' }, (response) => {
          response.once('data', () => done());
        });
        client.once('error', fail);
        client.end();
      });

      const result = await dispatcher.close({ timeout: 0 });
      expect(result.cancelled).toBe(3);
      expect(result.drained).toBe(false);

      open?.end('done');
      await waitUntil(() => open?.writableFinished === true);
      await new Promise((done) => setTimeout(done, 50));
      expect(ran).toEqual([]);
      expect(dispatcher.stats().hooks).toMatchObject({ failed: 0, completed: 0, queued: 0, running: 0 });
      expect(dispatcher.logs.filter((line) => /hook failed/.test(line.msg ?? ''))).toEqual([]);
      expect(receiver.requests).toHaveLength(0);
    } finally {
      client?.destroy();
      server.closeAllConnections();
      server.close();
    }
  });
});
