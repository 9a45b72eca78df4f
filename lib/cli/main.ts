#!/usr/bin/env node
// Entry point of the `lieq` binary; the program itself is in program.ts (importable by tests).
import { main } from './program.js';

main(process.argv).then((code) => {
  process.exitCode = code;
});
