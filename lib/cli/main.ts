#!/usr/bin/env node
// Entry point of the `lieq` binary; the program itself is in program.ts (importable by tests).
import { exitWithParent } from '../util/parent-watch.js';
import { main } from './program.js';

exitWithParent();

main(process.argv).then((code) => {
  process.exitCode = code;
});
