/**
 * Small network and timing utilities shared by the receiver, the fault servers and the tests.
 *
 * Every server these helpers start listens on 127.0.0.1 port 0, so tests can run in parallel
 * without fighting over ports, and every server is closed by destroying its sockets, so a test
 * that checks the event loop drains is not kept alive by a keep-alive socket or a timer.
 */
import type { Server, Socket } from 'node:net';

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface WaitUntilOptions {
  /** Give up after this long (default 5000 ms). */
  timeoutMs?: number;
  /** Poll this often (default 10 ms). */
  intervalMs?: number;
  /** Said in the rejection, so a failing test tells what it was waiting for. */
  message?: string;
}

/**
 * Polls `predicate` until it returns true; rejects with a message naming the wait on timeout.
 * A predicate that throws rejects at once: a broken check should not look like a slow one.
 */
export async function waitUntil(
  predicate: () => boolean | Promise<boolean>,
  { timeoutMs = 5000, intervalMs = 10, message = 'condition' }: WaitUntilOptions = {},
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (performance.now() >= deadline) {
      throw new Error(`waitUntil: ${message} not met within ${timeoutMs} ms`);
    }
    await sleep(intervalMs);
  }
}

/** `http://host:port`, with brackets around an IPv6 literal. */
export function originOf(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Listens on `host` port 0 and resolves with the port the kernel picked. */
export function listen(server: Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      const address = server.address();
      if (address === null || typeof address === 'string') {
        reject(new Error(`listen: unexpected address ${String(address)}`));
        return;
      }
      resolve(address.port);
    });
  });
}

/**
 * Counts and keeps every socket a server accepts, and the timers started on their behalf, so
 * `close()` can tear everything down. `server.close()` alone waits for keep-alive and hung
 * sockets, which is exactly what fault servers hold open.
 */
export class ServerTracker {
  /** TCP connections accepted so far. */
  connections = 0;
  readonly sockets = new Set<Socket>();
  readonly timers = new Set<NodeJS.Timeout>();
  private closing: Promise<void> | undefined;

  constructor(readonly server: Server) {
    server.on('connection', (socket: Socket) => {
      this.connections += 1;
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      // A peer that resets must not surface as an uncaught 'error' event in the test process.
      socket.on('error', () => {});
    });
  }

  openConnections(): number {
    return this.sockets.size;
  }

  /** setTimeout that `close()` clears, and that clears itself from the set when it fires. */
  setTimeout(ms: number, fn: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  /** setInterval that `close()` clears. */
  setInterval(ms: number, fn: () => void): NodeJS.Timeout {
    const timer = setInterval(fn, ms);
    this.timers.add(timer);
    return timer;
  }

  clearTimer(timer: NodeJS.Timeout): void {
    clearTimeout(timer);
    this.timers.delete(timer);
  }

  /** Clears timers, destroys every socket, closes the server. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve, reject) => {
      for (const timer of this.timers) clearTimeout(timer);
      this.timers.clear();
      for (const socket of this.sockets) socket.destroy();
      this.server.close((err) => (err === undefined ? resolve() : reject(err)));
    });
    return this.closing;
  }
}
