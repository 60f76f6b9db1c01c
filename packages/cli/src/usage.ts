import { InvalidArgumentError } from '@afterward/core';

/**
 * A bad command line: printed with a hint to `--help`, exit code 2.
 *
 * @example
 * ```ts
 * throw new UsageError('--status wants an HTTP status, got abc');
 * ```
 */
export class UsageError extends InvalidArgumentError {
  override get name(): string {
    return 'UsageError';
  }
}

/** Exit codes of the `afterward` command (stable: scripts may test them). */
export const EXIT = {
  ok: 0,
  /** An unexpected failure. */
  failure: 1,
  /** Bad flags or arguments. */
  usage: 2,
  /** The outbox file (or its directory) does not exist, or is not an outbox. */
  noOutbox: 3,
  /** An id given is not a dead letter (unknown, or already replayed). */
  unknownId: 4,
  /** Another process holds the file's write lock for longer than the busy timeout. */
  locked: 5,
  /** The file cannot be written. */
  readOnly: 6,
} as const;
