// Runs one exported function of a module in this fresh process and returns its result.
import { serve } from './rpc.mjs';

serve({
  run: async ({ file, name, input }) => {
    const mod = await import(file);
    if (typeof mod[name] !== 'function') throw new Error(`${file} does not export ${name}()`);
    return mod[name](input);
  },
});
