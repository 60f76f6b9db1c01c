import type { ServerResponse } from 'node:http';
import { monotonicNow } from '../util/clock.js';
import {
  ResponseWork,
  type AfterOptions,
  type AfterResponseOptions,
  type ClientAbortPolicy,
  type ResponseInfo,
  type ResponseOutcome,
} from '../after-response/after-response.js';
import type { Dispatcher } from '../dispatcher/types.js';
import type { HookFn } from '../after-response/hooks.js';
import type { DeliveryHandle } from '../notification/handle.js';
import { NotInstalledError } from '../util/errors.js';
import type { ResolvedAfterwardOptions } from './options.js';

/**
 * What a framework adapter tells the kit: how its handlers name the object the methods live on,
 * where the Node response is, and how to describe a finished response.
 *
 * @example
 * ```ts
 * const kit = createAdapterKit<Response, ExpressResponseInfo>({
 *   receiver: 'res', noun: 'response', callers: 'the routes that call',
 *   response: (res) => res, capture: (res) => routeOf(res.req),
 *   describe: (res, outcome, durationMs, route) => responseInfo(res.req, res, outcome, durationMs, route),
 * });
 * ```
 */
export interface AdapterSpec<TTarget extends object, TInfo extends ResponseInfo> {
  /** How handlers write the object, for error messages: `'res'`, `'ctx'`. */
  receiver: string;
  /** What one target stands for, for error messages: `'response'`, `'request'`. */
  noun: string;
  /** Who calls the methods, for error messages: `'the routes that call'`. */
  callers: string;
  /** The Node response behind a target. */
  response(target: TTarget): ServerResponse;
  /** Read at the first call, inside the handler (a route pattern may be gone by the finish). */
  capture?(target: TTarget): string | undefined;
  /** The info lazy payloads, `when` and hooks get once the response ended. */
  describe(
    target: TTarget,
    outcome: ResponseOutcome,
    durationMs: number,
    captured: string | undefined,
  ): TInfo;
  /** The id of the request (pino-http's `req.id`, `x-request-id`): see `readRequestId`. */
  requestId?(target: TTarget): string | undefined;
}

/**
 * `fireAndForget` and `after` as methods whose `this` is the target.
 *
 * @example
 * ```ts
 * kit.methods.fireAndForget.call(res, 'https://hooks.example.com', { json: { ok: true } });
 * ```
 */
export interface AdapterMethods<TTarget, TInfo extends ResponseInfo> {
  fireAndForget(this: TTarget, ...args: unknown[]): DeliveryHandle;
  after(this: TTarget, fn: HookFn<TInfo>, options?: AfterOptions<TInfo>): void;
}

/**
 * Everything an adapter shares with every other: the per-target slot, the methods, their
 * installation, and the {@link NotInstalledError} for a target the middleware never saw.
 *
 * @example
 * ```ts
 * kit.install(express.response);
 * app.use((req, res, next) => { kit.track(res, settings); next(); });
 * ```
 */
export interface AdapterKit<TTarget extends object, TInfo extends ResponseInfo> {
  readonly methods: AdapterMethods<TTarget, TInfo>;
  /** Defines `methods` (or others, such as delegates on a sibling prototype) on `target`, non-enumerable. */
  install(target: object, methods?: object): void;
  /** True when `target.fireAndForget` is this kit's method (a second copy of the framework is not). */
  installedOn(target: object): boolean;
  /**
   * Marks a target as seen by the middleware; its parked work is made on first use. A second
   * middleware with other settings (a router's) wins for the calls made after it.
   */
  track(target: TTarget, settings: ResolvedAfterwardOptions): void;
}

/**
 * What the kit keeps per target, on the target (a WeakMap entry per request costs far more: its
 * ephemeron is traced by every GC while the target lives). Also the options of the target's parked
 * work: its methods are `describe` and `requestId`, so making the work takes no spread and no closure.
 */
class Slot<TTarget extends object, TInfo extends ResponseInfo> implements AfterResponseOptions<TInfo> {
  /** The nearest middleware's settings: a later `afterward()` (a router's) replaces them. */
  settings: ResolvedAfterwardOptions;
  captured: string | undefined = undefined;
  work: ResponseWork<TInfo> | undefined = undefined;

  constructor(
    readonly spec: AdapterSpec<TTarget, TInfo>,
    readonly target: TTarget,
    settings: ResolvedAfterwardOptions,
    readonly startedAt: number,
  ) {
    this.settings = settings;
  }

  // Read once, when the work is made: a nearer middleware's settings apply to work made after it.
  get dispatcher(): Dispatcher {
    return this.settings.dispatcher;
  }

  get onClientAbort(): ClientAbortPolicy {
    return this.settings.onClientAbort;
  }

  get maxPerResponse(): number {
    return this.settings.maxPerResponse;
  }

  describe(outcome: ResponseOutcome, durationMs: number): TInfo {
    const { spec, target } = this;
    return spec.describe(target, outcome, durationMs, this.captured ?? spec.capture?.(target));
  }

  requestId(): string | undefined {
    return this.spec.requestId?.(this.target);
  }
}

/**
 * Creates the framework-neutral part of an adapter; what is left to write is the framework's.
 *
 * @example
 * ```ts
 * const kit = createAdapterKit<Context, KoaResponseInfo>({
 *   receiver: 'ctx', noun: 'request', callers: 'the middleware that calls',
 *   response: (ctx) => ctx.res,
 *   describe: (ctx, outcome, durationMs) => responseInfo(ctx, outcome, durationMs),
 * });
 * ```
 */
export function createAdapterKit<TTarget extends object, TInfo extends ResponseInfo>(
  spec: AdapterSpec<TTarget, TInfo>,
): AdapterKit<TTarget, TInfo> {
  const kSlot = Symbol(`afterward.${spec.receiver}`);
  type Tracked = TTarget & { [kSlot]?: Slot<TTarget, TInfo> };

  function workOf(target: TTarget, method: string): ResponseWork<TInfo> {
    const slot = (target as Tracked)[kSlot];
    if (slot === undefined) {
      throw new NotInstalledError(
        `${spec.receiver}.${method}() was called on a ${spec.noun} the afterward middleware never saw: ` +
          `install app.use(afterward()) before ${spec.callers} ${spec.receiver}.${method}`,
      );
    }
    if (slot.captured === undefined && spec.capture !== undefined) slot.captured = spec.capture(target);
    slot.work ??= new ResponseWork<TInfo>(spec.response(target), slot);
    return slot.work;
  }

  const methods: AdapterMethods<TTarget, TInfo> = {
    // Two parameters, not a rest array to spread: fireAndForget takes (url, init) or ({ url, ...init }).
    fireAndForget(this: TTarget, target?: unknown, init?: unknown): DeliveryHandle {
      return workOf(this, 'fireAndForget').send(target, init);
    },
    after(this: TTarget, fn: HookFn<TInfo>, options?: AfterOptions<TInfo>): void {
      workOf(this, 'after').hook(fn, options);
    },
  };

  return {
    methods,
    install(target, installed = methods) {
      for (const [name, value] of Object.entries(installed)) {
        Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });
      }
    },
    installedOn(target) {
      return (target as { fireAndForget?: unknown }).fireAndForget === methods.fireAndForget;
    },
    track(target, settings) {
      const slot = (target as Tracked)[kSlot];
      if (slot === undefined) {
        (target as Tracked)[kSlot] = new Slot(spec, target, settings, monotonicNow());
      } else if (slot.settings !== settings) {
        // A nearer middleware (a router's own, with a guarded dispatcher): calls from here on use
        // its settings. Work parked before stays with the first; it releases on its own.
        slot.settings = settings;
        slot.work = undefined;
      }
    },
  };
}
