#!/usr/bin/env bash
# Runs on the GPU machine (no Node there): unpack the carried Node, then run what .device/ holds
# (scripts/device-prepare.sh made it). Writes under $OUT.
#   bash scripts/device-run.sh checks   GPU correctness checks (test/cuda/gpu-checks.ts); exit 1 on failure
#   bash scripts/device-run.sh bench    whole-model decode/prefill benchmark + torch baselines -> $OUT/*.json
#   bash scripts/device-run.sh doctor   `lieq doctor` (needs PREPARE_CLI=1 at prepare time)
# Several words run in order: bash scripts/device-run.sh checks bench
set -uo pipefail
OUT=${OUT:-/tmp/lieq-out}
mkdir -p "$OUT"
python3 -c "import tarfile; tarfile.open('.device/node.tar.xz').extractall('/tmp/nodejs')" && export PATH=/tmp/nodejs/bin:$PATH
node --version
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv | tee "$OUT/gpu.csv"
export LIEQ_ADDON=$PWD/.device/lieq.node LIEQ_DATA_DIR=$PWD/.device/data
status=0
for what in "${@:-checks}"; do
  case $what in
    checks) node .device/checks.mjs 2>&1 | tee "$OUT/checks.log"; [ "${PIPESTATUS[0]}" = 0 ] || status=1 ;;
    bench)
      node .device/bench.mjs "$OUT/cuda-decode.json" 2>&1 | tee "$OUT/bench.log" || status=1
      PYTHONUNBUFFERED=1 python3 bench/cuda/torch_baseline.py "$OUT/torch-baseline.json" 2>&1 | tee "$OUT/torch.log" || status=1 ;;
    doctor) (cd .device/lieq && node dist/cli/main.js doctor | tee "$OUT/doctor.txt") || status=1 ;;
    *) echo "device-run.sh: unknown step $what (checks, bench, doctor)"; status=2 ;;
  esac
done
exit $status
