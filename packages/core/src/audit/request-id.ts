import type { IncomingMessage } from 'node:http';

/**
 * The id of a request, for audit records and log lines: the framework's own id first (pino-http's
 * `req.id`, a string or a number), else the request header (`x-request-id` by default).
 *
 * @example
 * ```ts
 * readRequestId(req.id, req); // '42' with pino-http, else the x-request-id header, else undefined
 * ```
 */
export function readRequestId(
  frameworkId: unknown,
  req: IncomingMessage,
  header = 'x-request-id',
): string | undefined {
  if (typeof frameworkId === 'string' && frameworkId !== '') return frameworkId;
  if (typeof frameworkId === 'number' && Number.isFinite(frameworkId)) return String(frameworkId);
  const value = req.headers[header];
  return Array.isArray(value) ? value.join(', ') : value;
}
