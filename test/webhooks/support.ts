/**
 * Shared set-up of the webhook suite (signing, SSRF guard, endpoint isolation): the BUILT core
 * package (run `pnpm build` first), a logger that records instead of printing, a listener that
 * counts every TCP connection it is offered, and a cleanup list.
 */
import { createServer } from 'node:net';
import { cleanupScope, listen, originOf, ServerTracker } from '../support/index.js';
import type { Dispatcher } from '../../packages/core/dist/index.js';

export * from '../../packages/core/dist/index.js';

export { recordingLogger } from '../support/index.js';
export type { LogLine } from '../support/index.js';

const scope = cleanupScope();
const { cleanups } = scope;

/** Closes `thing` after the current test (in reverse order of registration), and returns it. */
export const track = scope.track;

/**
 * Closes a dispatcher after the current test without the default 10 s drain: what is still held
 * (a hanging origin, an open circuit) is cancelled at once.
 */
export function trackDispatcher<T extends Dispatcher>(dispatcher: T): T {
  cleanups.push(() => dispatcher.close({ timeout: 0 }));
  return dispatcher;
}

export interface CountingListener {
  host: string;
  port: number;
  /** http://host:port */
  url: string;
  /** TCP connections accepted so far: the number an SSRF guard must keep at zero. */
  readonly connections: number;
  close(): Promise<void>;
}

/**
 * A raw TCP listener that counts 'connection' events and answers any request with 204, so an
 * attempt that did get through would be delivered rather than hang.
 */
export async function countingListener(host = '127.0.0.1'): Promise<CountingListener> {
  const server = createServer((socket) => {
    socket.once('data', () => {
      socket.end('HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n');
    });
  });
  const tracker = new ServerTracker(server);
  const port = await listen(server, host);
  return {
    host,
    port,
    url: originOf(host, port),
    get connections() {
      return tracker.connections;
    },
    close: () => tracker.close(),
  };
}
