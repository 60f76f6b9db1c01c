import {
  CancelledError,
  DroppedError,
  HookError,
  HookTimeoutError,
  type AfterwardError,
} from '../util/errors.js';
import { captureContext, type RunInContext } from '../util/context.js';

/** A unit of after-response work: gets what happened and a signal that aborts on timeout or shutdown. */
export type HookFn<TInfo> = (info: TInfo, signal: AbortSignal) => unknown;

interface HookTask {
  fn: HookFn<unknown>;
  info: unknown;
  timeout: number;
  runIn: RunInContext;
}

interface Running {
  controller: AbortController;
  finish: (error: AfterwardError | undefined) => void;
}

/** Settings of the hook runner, resolved by the dispatcher. */
export interface HookRunnerOptions {
  concurrency: number;
  timeout: number;
  maxQueued: number;
  onError: (error: AfterwardError, info: unknown) => void;
  onIdle: () => void;
}

/**
 * Runs `after()` hooks with a concurrency bound, a timeout and an AbortSignal each. A hook that
 * throws, rejects or never settles is reported and its slot freed; it never stops the others.
 */
export class HookRunner {
  readonly #options: HookRunnerOptions;
  readonly #queue: HookTask[] = [];
  readonly #running = new Set<Running>();
  #completed = 0;
  #failed = 0;
  #held = 0;
  #closed: AfterwardError | undefined;

  constructor(options: HookRunnerOptions) {
    this.#options = options;
  }

  /** Default per-hook timeout. */
  get defaultTimeout(): number {
    return this.#options.timeout;
  }

  /**
   * Queues a hook; over the bound it is dropped and reported. It runs in `runIn`, the context of
   * the call that parked it (default: the caller's), not in that of the hook that freed its slot.
   */
  run<TInfo>(
    fn: HookFn<TInfo>,
    info: TInfo,
    timeout = this.#options.timeout,
    runIn: RunInContext = captureContext(),
  ): void {
    // Parked on a response that finished after close(): counted in close()'s `cancelled`, never run.
    if (this.#closed !== undefined) return;
    if (this.#queue.length >= this.#options.maxQueued) {
      this.#failed++;
      this.#options.onError(new DroppedError('after-response hook dropped: the hook queue is full'), info);
      return;
    }
    this.#queue.push({ fn: fn as HookFn<unknown>, info, timeout, runIn });
    this.#pump();
  }

  stats(): { queued: number; running: number; completed: number; failed: number } {
    return {
      queued: this.#queue.length,
      running: this.#running.size,
      completed: this.#completed,
      failed: this.#failed,
    };
  }

  pending(): number {
    return this.#queue.length + this.#running.size + this.#held;
  }

  /** Counts a hook parked on an open response, so `drain()` waits for it. */
  hold(): void {
    this.#held++;
  }

  /** Undoes {@link hold} once the parked hook was run or skipped. */
  unhold(): void {
    this.#held--;
    this.#options.onIdle();
  }

  /** True once {@link cancelAll} ran: nothing runs any more. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * Aborts running hooks, forgets queued ones, and refuses the ones still parked on open
   * responses; returns how many.
   */
  cancelAll(reason: AfterwardError): number {
    if (this.#closed !== undefined) return 0;
    this.#closed = reason;
    const count = this.#queue.length + this.#running.size + this.#held;
    this.#queue.length = 0;
    for (const running of [...this.#running]) {
      running.controller.abort(reason);
      running.finish(new CancelledError(reason));
    }
    return count;
  }

  #pump(): void {
    while (this.#running.size < this.#options.concurrency && this.#queue.length > 0) {
      this.#start(this.#queue.shift() as HookTask);
    }
  }

  #start(task: HookTask): void {
    const controller = new AbortController();
    let done = false;
    const running: Running = {
      controller,
      finish: (error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#running.delete(running);
        if (error === undefined) {
          this.#completed++;
        } else {
          this.#failed++;
          this.#options.onError(error, task.info);
        }
        this.#pump();
        this.#options.onIdle();
      },
    };
    // The slot is freed at the timeout even if the hook ignores its signal and never settles.
    const timer = setTimeout(() => {
      const error = new HookTimeoutError(task.timeout);
      controller.abort(error);
      running.finish(error);
    }, task.timeout);
    timer.unref();
    this.#running.add(running);
    let result: unknown;
    try {
      result = task.runIn(() => task.fn(task.info, controller.signal));
    } catch (error) {
      running.finish(new HookError(error));
      return;
    }
    Promise.resolve(result).then(
      () => running.finish(undefined),
      (error: unknown) => running.finish(new HookError(error)),
    );
  }
}
