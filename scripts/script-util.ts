/** Shared bits of the TypeScript scripts under scripts/ and bench/ (run with tsx). */
export { dataPath } from '../lib/util/data-dir.js';
export { packageRoot as packageRootDir } from '../lib/native.js';
