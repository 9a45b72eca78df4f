#!/usr/bin/env node
// `npm run prebuild`: package a prebuilt CPU addon into prebuilds/<platform>-<arch>/ with
// prebuildify (node-gyp + binding.gyp, Node-API so one binary serves every Node >= 20).
// node-gyp is pointed at the headers of the Node running this script, so nothing is downloaded.
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nodedir = dirname(dirname(process.execPath));
const r = spawnSync(join(root, 'node_modules', '.bin', 'prebuildify'), ['--napi', '--strip', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, npm_config_nodedir: nodedir },
});
process.exit(r.status ?? 1);
