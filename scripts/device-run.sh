#!/usr/bin/env bash
# Runs on the GPU machine (no Node there): unpack the carried Node, then run lieq from the
# carried package (.device/lieq, made by scripts/device-prepare.sh). Writes under $OUT.
#   usage (device tool): bash scripts/device-run.sh [doctor|qgemv]   with carry [".device"]
set -uo pipefail
OUT=${OUT:-/tmp/lieq-out}
mkdir -p "$OUT"
tar xzf .device/node.tgz -C /tmp && export PATH=/tmp/package/bin:$PATH
node --version
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv | tee "$OUT/gpu.csv"
cd .device/lieq
what=${1:-doctor}
if [ "$what" = doctor ]; then
  node dist/cli/main.js doctor | tee "$OUT/doctor.txt"
  node dist/cli/main.js doctor --json > "$OUT/doctor.json"
  LIEQ_THREADS=4 node dist/cli/main.js doctor | grep threads
fi
