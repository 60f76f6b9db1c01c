// One app instance: Express + afterward, notifications handed to PostgreSQL (no delivery here).
// argv[2] = name, argv[3] = DATABASE_URL, argv[4] = schema. Prints "listening PORT".
import express from 'express';
import { afterward, createDispatcher } from '@afterward/express';
import { postgresBackend } from '@afterward/postgres';

const [name, url, schema] = process.argv.slice(2);
const backend = postgresBackend({ connectionString: url, schema });
const dispatcher = createDispatcher({ backend });
const app = express();
app.use(afterward({ dispatcher }));
app.post('/orders/:id', (req, res) => {
  res.fireAndForget(`${req.query.hook}`, { json: { order: req.params.id, app: name } });
  res.status(201).json({ app: name });
});
const server = app.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
process.once('SIGTERM', async () => {
  server.close();
  const { stats } = await dispatcher.close();
  process.stdout.write(`${name}: handed ${stats.sent} notifications to PostgreSQL\n`);
  process.exit(0);
});
