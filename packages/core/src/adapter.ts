// @afterward/core/adapter: what a framework adapter (Express, Koa, or yours) is built from.
// First: refuses an unsupported Node.js before undici loads (see util/node-version.ts).
import './util/node-version.js';
export { createAdapterKit } from './adapter/kit.js';
export type { AdapterKit, AdapterMethods, AdapterSpec } from './adapter/kit.js';
export { resolveAfterwardOptions } from './adapter/options.js';
export type { AfterwardOptions, ResolvedAfterwardOptions } from './adapter/options.js';
export { createAfterResponse } from './after-response/after-response.js';
export type {
  AfterResponse,
  AfterResponseOptions,
  ResponseInfo,
  ResponseOutcome,
} from './after-response/after-response.js';
export { readRequestId } from './audit/request-id.js';
export { monotonicNow } from './util/clock.js';
