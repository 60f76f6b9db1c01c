/**
 * A minimal app on plain node:http and core's after-response machinery (what the adapters wrap),
 * plus a keep-alive client that times each answer. Used where a row needs "the app" but not a
 * framework.
 */
import { Agent, createServer, request } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { listen, originOf, ServerTracker } from '../support/index.js';
import { createAfterResponse } from './support.js';
import type { AfterResponse, Dispatcher, ResponseInfo } from './support.js';

export type AppHandler = (
  work: AfterResponse<ResponseInfo>,
  req: IncomingMessage,
  res: ServerResponse,
) => void;

export interface PlainApp {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Starts an app whose every request gets after-response work (`work`) from `dispatcher`. */
export async function startPlainApp(dispatcher: Dispatcher, handler: AppHandler): Promise<PlainApp> {
  const server = createServer((req, res) => {
    const work = createAfterResponse<ResponseInfo>(res, {
      dispatcher,
      describe: (outcome, durationMs) => ({
        outcome,
        statusCode: res.statusCode,
        durationMs,
        method: req.method ?? '',
        url: req.url ?? '',
        route: undefined,
        req,
        res,
      }),
    });
    handler(work, req, res);
  });
  const tracker = new ServerTracker(server);
  const port = await listen(server);
  return { url: originOf('127.0.0.1', port), server, close: () => tracker.close() };
}

/** GETs `url` and resolves with the status and how long the answer took, in ms. */
export function timedGet(url: string, agent: Agent): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export { Agent };
