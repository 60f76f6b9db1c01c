/**
 * A pino-compatible logger that keeps every line in memory instead of printing it: expected
 * failures stay out of CI logs and stay visible to the test. Structurally a core `Logger`, without
 * importing core, so it serves the tests of core's source and of the built packages alike.
 */

export interface LogLine {
  level: 'warn' | 'error' | 'debug';
  obj: Record<string, unknown>;
  msg: string | undefined;
}

export interface RecordingLogger {
  /** Every call, in order. */
  readonly lines: LogLine[];
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/**
 * @example
 * ```ts
 * const logger = recordingLogger();
 * const dispatcher = createDispatcher({ logger });
 * expect(logger.lines.some((line) => line.level === 'warn')).toBe(true);
 * ```
 */
export function recordingLogger(): RecordingLogger {
  const lines: LogLine[] = [];
  const log =
    (level: LogLine['level']) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj: obj as Record<string, unknown>, msg });
    };
  return { lines, warn: log('warn'), error: log('error'), debug: log('debug') };
}
