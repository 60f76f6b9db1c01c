/**
 * A bad URL's credentials must not reach the HTTP error page: Express's default error handler
 * prints the error's stack (its message) outside production, so an InvalidArgumentError for an
 * unparsable URL quotes the input redacted and carries no cause holding the raw input.
 */
import { InvalidArgumentError } from '@afterward/core';
import { afterward } from '@afterward/express';
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { testDispatcher } from './setup.js';

const SECRETS = ['USERSECRET', 'PASSSECRET', 'PATHSECRET', 'QUERYSECRET'];
// Unparsable: a space in the host. Everything after the host is a secret.
const BAD = 'https://USERSECRET:PASSSECRET@hooks.exa mple.com/services/PATHSECRET?token=QUERYSECRET';

describe('an unparsable URL', () => {
  it("does not put its credentials into Express's default error page", async () => {
    const app = express();
    app.use(afterward({ dispatcher: testDispatcher() }));
    app.post('/hook', (_req, res) => {
      res.fireAndForget(BAD);
      res.status(204).end();
    });
    const response = await request(app).post('/hook');
    expect(response.status).toBe(500);
    expect(response.text).toContain('invalid URL');
    for (const secret of SECRETS) expect(response.text).not.toContain(secret);
  });

  it('is quoted redacted, with no cause that holds the raw input', () => {
    const dispatcher = testDispatcher();
    let caught: unknown;
    try {
      dispatcher.send(BAD);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError);
    const error = caught as InvalidArgumentError;
    expect(error.message).toBe('invalid URL "https://hooks.exa mple.com/…"');
    expect(error.cause).toBeUndefined();
    const everything = JSON.stringify({ ...error, message: error.message, stack: error.stack });
    for (const secret of SECRETS) expect(everything).not.toContain(secret);
  });
});
