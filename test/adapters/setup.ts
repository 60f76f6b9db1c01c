/**
 * Per-test fixtures of the adapter suite: a dispatcher whose log lines are kept (not printed), a
 * real receiver, and the apps a test started, all closed after each test.
 */
import { createDispatcher } from '@afterward/core';
import type { Dispatcher, DispatcherOptions, Logger } from '@afterward/core';
import { afterEach } from 'vitest';
import { startReceiver } from '../helpers/receiver.js';
import type { Receiver, ReceiverHandler, ReceiverOptions } from '../helpers/receiver.js';
import type { StartedApp } from './harness.js';

export interface LogLine {
  level: string;
  obj: object;
  msg: string | undefined;
}

const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  const pending = cleanups.splice(0).reverse();
  for (const cleanup of pending) await cleanup();
});

/** A dispatcher with fast retries and an in-memory logger, closed after the test. */
export function testDispatcher(options: DispatcherOptions = {}): Dispatcher & { logs: LogLine[] } {
  const logs: LogLine[] = [];
  const logger: Logger = {
    warn: (obj, msg) => void logs.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => void logs.push({ level: 'error', obj, msg }),
  };
  const dispatcher = createDispatcher({ retry: { minDelay: 5, maxDelay: 20 }, logger, ...options });
  cleanups.push(() => dispatcher.close({ timeout: 1_000 }));
  return Object.assign(dispatcher, { logs });
}

/** A real receiver on 127.0.0.1, closed after the test. */
export async function testReceiver(handler?: ReceiverHandler, options?: ReceiverOptions): Promise<Receiver> {
  const receiver = await startReceiver(handler, options);
  cleanups.push(() => receiver.close());
  return receiver;
}

/** Closes an app after the test (before its dispatcher, which was registered earlier). */
export function track(app: StartedApp): StartedApp {
  cleanups.push(() => app.close());
  return app;
}
