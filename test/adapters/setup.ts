/**
 * Per-test fixtures of the adapter suite: a dispatcher whose log lines are kept (not printed), a
 * real receiver, and the apps a test started, all closed after each test.
 */
import { createDispatcher } from '@afterward/core';
import type { Dispatcher, DispatcherOptions } from '@afterward/core';
import { cleanupScope, FAST_RETRY, recordingLogger, startReceiver } from '../support/index.js';
import type { LogLine, Receiver, ReceiverHandler, ReceiverOptions } from '../support/index.js';
import type { StartedApp } from './harness.js';

export type { LogLine } from '../support/index.js';

const { cleanups } = cleanupScope();

/** A dispatcher with fast retries and an in-memory logger, closed after the test. */
export function testDispatcher(options: DispatcherOptions = {}): Dispatcher & { logs: LogLine[] } {
  const logger = recordingLogger();
  const dispatcher = createDispatcher({ retry: FAST_RETRY, logger, ...options });
  cleanups.push(() => dispatcher.close({ timeout: 1_000 }));
  return Object.assign(dispatcher, { logs: logger.lines });
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
