/** Retries fast enough for tests, still exponential with jitter. */
export const FAST_RETRY = { minDelay: 5, maxDelay: 20 } as const;
