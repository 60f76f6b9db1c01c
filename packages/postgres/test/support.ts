/**
 * Shared test support: our own database on the shared PostgreSQL, unique schemas, a real HTTP
 * receiver, and a TCP proxy to simulate outages (the shared server is never stopped).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

const HOST = process.env.AFTERWARD_PG_HOST ?? '127.0.0.1';
const PORT = Number(process.env.AFTERWARD_PG_PORT ?? 5432);
const USER = process.env.AFTERWARD_PG_USER ?? 'postgres';
export const DATABASE = 'afterward_pg_test';
export const PG_PORT = PORT;
export const PG_HOST = HOST;

export function connectionString(port = PORT, host = HOST): string {
  return `postgres://${USER}@${host}:${port}/${DATABASE}`;
}

/**
 * Creates our database if missing. Without PostgreSQL: a loud message, and under CI=true a
 * failure (the suite must not pass by not running).
 */
export async function setupPostgres(): Promise<boolean> {
  const admin = new pg.Client({
    host: HOST,
    port: PORT,
    user: USER,
    database: 'postgres',
    connectionTimeoutMillis: 3_000,
  });
  try {
    await admin.connect();
  } catch (error) {
    const message =
      `\n\n*** The @afterward/postgres suite did NOT run: no PostgreSQL at ${HOST}:${PORT} (${(error as Error).message}).\n` +
      '*** Install and start one (Debian: apt-get install postgresql, trust auth for user postgres on 127.0.0.1),\n' +
      '*** or point AFTERWARD_PG_HOST / AFTERWARD_PG_PORT / AFTERWARD_PG_USER at one, then run `pnpm test` again.\n\n';
    process.stderr.write(message);
    if (process.env.CI === 'true')
      throw new Error(`PostgreSQL is required under CI=true: ${message}`, { cause: error });
    return false;
  }
  try {
    const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (rows.length === 0) {
      await admin.query(`CREATE DATABASE ${DATABASE}`).catch((error: { code?: string }) => {
        if (error.code !== '42P04' && error.code !== '23505') throw error; // created concurrently
      });
    }
  } finally {
    await admin.end();
  }
  return true;
}

/** A schema name unique to this test run; drop it with {@link dropSchema}. */
export function uniqueSchema(prefix: string): string {
  return `t_${prefix}_${process.pid}_${randomBytes(3).toString('hex')}`;
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: connectionString() });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

export async function query<T extends pg.QueryResultRow = Record<string, unknown>>(
  text: string,
  values?: unknown[],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: connectionString() });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

export interface ReceivedRequest {
  id: string;
  path: string;
  body: string;
  at: number;
}

export interface Receiver {
  url: string;
  origin: string;
  requests: ReceivedRequest[];
  /** Most requests in flight at once. */
  maxConcurrent: number;
  inFlight: number;
  close(): Promise<void>;
}

/** A real receiver on 127.0.0.1:0. `answer` picks status and delay per request (default 200, 0 ms). */
export async function startReceiver(
  answer: (req: ReceivedRequest, count: number) => { status?: number; delay?: number } = () => ({}),
): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const state = { inFlight: 0, maxConcurrent: 0 };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    state.inFlight += 1;
    state.maxConcurrent = Math.max(state.maxConcurrent, state.inFlight);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: ReceivedRequest = {
        id: String(req.headers['webhook-id'] ?? ''),
        path: req.url ?? '',
        body: Buffer.concat(chunks).toString(),
        at: Date.now(),
      };
      requests.push(r);
      const { status = 200, delay = 0 } = answer(r, requests.filter((x) => x.id === r.id).length);
      const finish = (): void => {
        state.inFlight -= 1;
        res.statusCode = status;
        res.end('ok');
      };
      if (delay > 0) setTimeout(finish, delay);
      else finish();
    });
    req.on('aborted', () => (state.inFlight -= 0));
  });
  server.keepAliveTimeout = 1_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  return {
    url: `${origin}/hook`,
    origin,
    requests,
    get maxConcurrent() {
      return state.maxConcurrent;
    },
    get inFlight() {
      return state.inFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface TcpProxy {
  port: number;
  /** Destroys every open connection and refuses new ones until restore(). */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** A TCP proxy to PostgreSQL that a test can cut and restore, to simulate an outage. */
export async function startProxy(targetPort = PORT, targetHost = HOST): Promise<TcpProxy> {
  let down = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(client);
    sockets.add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    cut() {
      down = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      down = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls `check` until it is true, or fails with `message` after `timeout` ms. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  message: string,
  timeout = 10_000,
): Promise<void> {
  const end = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms: ${message}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
