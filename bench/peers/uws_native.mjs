// Loads the native uWebSockets.js addon of @trufflesuite/uws-js-unofficial
// (a republish of uWebSockets.js 20.30 with prebuilt binaries).
//
// The package's own entry point silently falls back to a JavaScript
// implementation built on `ws` when the prebuilt binary does not load; a
// benchmark of that would be a benchmark of `ws`. So the binary is required
// directly, and a failure to load it is fatal.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const binary = `@trufflesuite/uws-js-unofficial/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;

let uWS;
try {
  uWS = require(binary);
} catch (e) {
  console.error(`cannot load the native uWebSockets.js addon (${binary}): ${e.message}`);
  process.exit(1);
}
export default uWS;
