// A dispatcher transport that answers every request 204 at once, with no socket: for benches that
// measure afterward's own path without the network.

/** @returns {{ send: () => Promise<object>, close: () => Promise<void> }} */
export function instantTransport() {
  return {
    send: async () => ({
      kind: 'response',
      response: { status: 204, statusText: 'No Content', headers: {} },
    }),
    close: async () => {},
  };
}
