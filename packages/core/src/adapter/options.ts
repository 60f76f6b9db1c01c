import { IncomingMessage } from 'node:http';
import type { ClientAbortPolicy } from '../after-response/after-response.js';
import { createDispatcher, isDispatcher, type Dispatcher } from '../dispatcher/dispatcher.js';
import { InvalidArgumentError } from '../util/errors.js';
import { checkInteger, checkKeys, checkObject, DEFAULTS, show } from '../options/options.js';

/**
 * Options of a framework adapter's `afterward()` middleware (Express, Koa, or one you write).
 *
 * @example
 * ```ts
 * app.use(afterward({ dispatcher, onClientAbort: 'cancel', maxPerResponse: 50 }));
 * ```
 */
export interface AfterwardOptions {
  /** Where released notifications and hooks go. Default: a new `createDispatcher()`. */
  dispatcher?: Dispatcher;
  /** What parked work does when the client disconnects first. Default `'send'`. */
  onClientAbort?: ClientAbortPolicy;
  /** Most notifications and hooks one response may park. Default 1 000. */
  maxPerResponse?: number;
}

/** {@link AfterwardOptions} with every default filled in. */
export interface ResolvedAfterwardOptions {
  dispatcher: Dispatcher;
  onClientAbort: ClientAbortPolicy;
  maxPerResponse: number;
}

// `satisfies` makes a new option in AfterwardOptions a compile error here until it is listed.
const ADAPTER_KEYS = Object.keys({
  dispatcher: true,
  onClientAbort: true,
  maxPerResponse: true,
} satisfies Record<keyof AfterwardOptions, true>);

/**
 * Validates an adapter's options (unknown keys included) and fills in the defaults, creating a
 * dispatcher only when none was given and everything else is valid. Throws InvalidArgumentError.
 *
 * @example
 * ```ts
 * export function afterward(options: AfterwardOptions = {}) {
 *   const { dispatcher, onClientAbort, maxPerResponse } = resolveAfterwardOptions(options);
 *   // ...
 * }
 * ```
 */
export function resolveAfterwardOptions(options: unknown): ResolvedAfterwardOptions {
  if (looksLikeRequest(options)) {
    throw new InvalidArgumentError(
      'afterward was passed to app.use() without being called: write app.use(afterward())',
    );
  }
  const obj = checkObject('afterward() options', options);
  checkKeys('afterward() options', obj, ADAPTER_KEYS);
  const {
    dispatcher,
    onClientAbort = DEFAULTS.adapter.onClientAbort,
    maxPerResponse = DEFAULTS.adapter.maxPerResponse,
  } = obj;
  if (dispatcher !== undefined && !isDispatcher(dispatcher)) {
    throw new InvalidArgumentError(`dispatcher must come from createDispatcher(), got ${show(dispatcher)}`);
  }
  if (onClientAbort !== 'send' && onClientAbort !== 'cancel') {
    throw new InvalidArgumentError(`onClientAbort must be 'send' or 'cancel', got ${show(onClientAbort)}`);
  }
  return {
    onClientAbort,
    maxPerResponse: checkInteger('maxPerResponse', maxPerResponse, 1),
    dispatcher: isDispatcher(dispatcher) ? dispatcher : createDispatcher(),
  };
}

/** An Express/Node request or a Koa context: what a middleware gets when `afterward` itself was installed. */
function looksLikeRequest(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  return value instanceof IncomingMessage || ('req' in value && 'res' in value && 'app' in value);
}
