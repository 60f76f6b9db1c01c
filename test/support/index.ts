/**
 * The shared test support: one import for a cleanup scope, a recording logger, real receivers,
 * fault servers, `waitUntil` and the network helpers. Nothing here imports `@afterward/*`, so the
 * unit tests of core's source and the suites on the built packages use the same module.
 */
export * from './blackhole.js';
export * from './cleanup.js';
export * from './faults.js';
export * from './logger.js';
export * from './net.js';
export * from './receiver.js';
export * from './rejections.js';
export * from './retry.js';
