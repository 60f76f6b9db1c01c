// A child process you can call: start a script with an IPC channel, send it commands, get answers.
// The child side is serve(handlers); the parent side is spawnRpc(file, { args, execArgv }).
import { fork } from 'node:child_process';

const KILL_AFTER_MS = 5_000;

/**
 * Starts `file` (a script that calls serve()) and waits until it is ready.
 * @param {string} file absolute path or file URL
 * @param {{ args?: string[], execArgv?: string[], env?: Record<string, string>, readyTimeoutMs?: number }} [options]
 * @returns {Promise<{ ready: unknown, pid: number, call: (cmd: string, input?: unknown, timeoutMs?: number) => Promise<any>, close: () => Promise<void> }>}
 */
export async function spawnRpc(file, options = {}) {
  const child = fork(file instanceof URL ? file.pathname : file, options.args ?? [], {
    execArgv: options.execArgv ?? [],
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  let nextId = 0;
  const pending = new Map();
  let exited = false;
  const exit = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      for (const { reject } of pending.values()) {
        reject(new Error(`${file} exited (${code ?? signal}) before answering`));
      }
      pending.clear();
      resolve();
    });
  });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${file} not ready in time`)),
      options.readyTimeoutMs ?? 20_000,
    );
    child.on('message', (message) => {
      if (message?.type === 'ready') {
        clearTimeout(timer);
        resolve(message.value);
        return;
      }
      const entry = pending.get(message?.id);
      if (entry === undefined) return;
      pending.delete(message.id);
      clearTimeout(entry.timer);
      if (message.error !== undefined) entry.reject(new Error(`${file}: ${message.error}`));
      else entry.resolve(message.value);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${file} exited (${code}) before it was ready`));
    });
  });
  const value = await ready;
  return {
    ready: value,
    pid: child.pid,
    call(cmd, input, timeoutMs = 120_000) {
      if (exited) return Promise.reject(new Error(`${file} has exited`));
      const id = ++nextId;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${file}: ${cmd} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, { resolve, reject, timer });
        child.send({ id, cmd, input });
      });
    },
    async close() {
      if (exited) return;
      if (child.connected) child.send({ id: 0, cmd: '__exit' });
      const timer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
      await exit;
      clearTimeout(timer);
    },
  };
}

/**
 * The child side: answers commands with `handlers[cmd](input)` (may be async), announces `ready`.
 * `__exit` runs `onExit` (if given) and exits.
 * @param {Record<string, (input: any) => unknown>} handlers
 * @param {{ ready?: unknown, onExit?: () => unknown }} [options]
 */
export function serve(handlers, options = {}) {
  if (process.send === undefined) throw new Error('serve() needs to run in a child started by spawnRpc()');
  process.on('message', (message) => {
    if (message?.cmd === '__exit') {
      void Promise.resolve(options.onExit?.())
        .catch(() => undefined)
        .then(() => process.exit(0));
      return;
    }
    const handler = handlers[message?.cmd];
    void Promise.resolve()
      .then(() => {
        if (handler === undefined) throw new Error(`unknown command ${message?.cmd}`);
        return handler(message.input);
      })
      .then(
        (value) => process.send({ id: message.id, value }),
        (error) => process.send({ id: message.id, error: error?.stack ?? String(error) }),
      );
  });
  // The parent going away must not leave this process behind.
  process.on('disconnect', () => process.exit(0));
  process.send({ type: 'ready', value: options.ready ?? null });
}
