// A delivery worker process for bench/postgres.mjs: the built @afterward/postgres with core's
// attempt runner (built by createWorker; breaker off, as the receivers are local).
import { createWorker, postgresBackend } from '../../packages/postgres/dist/index.js';

const config = JSON.parse(process.argv[2]);
const quiet = { warn: () => undefined, error: () => undefined };
const backend = postgresBackend({ ...config.backend, logger: quiet });
const worker = createWorker({ backend, breaker: false, logger: quiet, ...config.worker });
await worker.ready();
const cpu0 = process.cpuUsage();
process.stdout.write('ready\n');
process.once('SIGTERM', async () => {
  const cpu = process.cpuUsage(cpu0);
  await worker.close({ timeout: 1_000 });
  await backend.close({ timeout: 1_000 });
  process.stdout.write(
    `${JSON.stringify({ stats: worker.stats(), cpuMs: (cpu.user + cpu.system) / 1000 })}\n`,
  );
  process.exit(0);
});
