import { main } from './cli.js';

// Entry point of the `attnkit-decode` bin (see bin/attnkit-decode.mjs).
const code = await main(process.argv.slice(2), {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  errIsTty: !!process.stderr.isTTY,
});
process.exitCode = code;
