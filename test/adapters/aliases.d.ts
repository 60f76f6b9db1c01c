// The older majors are installed under aliases (root devDependencies) so one suite can run on both.
/* eslint-disable @typescript-eslint/no-require-imports -- the form that re-declares an `export =` module */
declare module 'express4' {
  import express = require('express');
  export = express;
}

declare module 'koa2' {
  import Koa = require('koa');
  export = Koa;
}
