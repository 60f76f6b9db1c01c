const URL_PATTERN = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi;

/**
 * Reduces every URL in an error message to its origin, so a dead letter never stores the path,
 * query or userinfo of a URL (they may carry tokens), while keeping the rest of the message.
 *
 * @example
 * ```ts
 * redactMessage('GET https://u:p@h.example/p?token=1 failed'); // 'GET https://h.example failed'
 * ```
 */
export function redactMessage(message: string): string {
  return message.replace(URL_PATTERN, (match) => {
    try {
      const origin = new URL(match).origin;
      return origin === 'null' ? '[url]' : origin;
    } catch {
      return '[url]';
    }
  });
}
