// Command-line options of a bench run on its own (`node bench/<name>.mjs --rounds 10`).

/**
 * The value after `--name` on the command line, or `fallback` when it is not given.
 * @param {string} name
 * @param {string} [fallback]
 * @returns {string | undefined}
 */
export function arg(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? fallback : process.argv[at + 1];
}
