#!/usr/bin/env bash
# Runs on the GPU machine (no Node there): unpack the carried Node, then run what .device/ holds
# (scripts/device-prepare.sh made it). Writes under $OUT.
#   bash scripts/device-run.sh checks   GPU correctness checks (test/cuda/gpu-checks.ts); exit 1 on failure
#   bash scripts/device-run.sh bench    whole-model decode/prefill benchmark + torch baselines -> $OUT/*.json
#   bash scripts/device-run.sh profile  per-kernel breakdown of one batch-1 decode step (ncu) -> $OUT/profile-*.md, ncu-*.csv
#                                       (PROFILE_VARIANTS="4bit 2bit fp16" picks the models; ADDON=path another addon)
#   bash scripts/device-run.sh doctor   `lieq doctor` (needs PREPARE_CLI=1 at prepare time)
# Several words run in order: bash scripts/device-run.sh checks bench
# DEVICE_DIR=.device-NAME: read another carry folder (scripts/device-prepare.sh with the same DEVICE_DIR).
set -uo pipefail
OUT=${OUT:-/tmp/lieq-out}
mkdir -p "$OUT"
D=${DEVICE_DIR:-.device}   # the carry folder scripts/device-prepare.sh filled
python3 -c "import tarfile; tarfile.open('$D/node.tar.xz').extractall('/tmp/nodejs')" && export PATH=/tmp/nodejs/bin:$PATH
node --version
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv | tee "$OUT/gpu.csv"
export LIEQ_ADDON=$PWD/${ADDON:-$D/lieq.node} LIEQ_DATA_DIR=$PWD/$D/data
status=0
for what in "${@:-checks}"; do
  case $what in
    checks) node $D/checks.mjs 2>&1 | tee "$OUT/checks.log"; [ "${PIPESTATUS[0]}" = 0 ] || status=1 ;;
    bench)
      node $D/bench.mjs "$OUT/cuda-decode.json" 2>&1 | tee "$OUT/bench.log" || status=1
      PYTHONUNBUFFERED=1 python3 bench/cuda/torch_baseline.py "$OUT/torch-baseline.json" 2>&1 | tee "$OUT/torch.log" || status=1 ;;
    profile)
      for v in ${PROFILE_VARIANTS:-4bit 2bit}; do
        # Host-timed steps first (no profiler), then the same sequence under ncu, which skips to
        # the first timed step: one step's kernels, serialized, at the device's own clocks.
        node $D/profile.mjs "$v" 2>&1 | tee /tmp/profile-$v.log || status=1
        skip=$(sed -n 's/.*--launch-skip \([0-9]*\) --launch-count \([0-9]*\).*/\1/p' /tmp/profile-$v.log)
        count=$(sed -n 's/.*--launch-skip \([0-9]*\) --launch-count \([0-9]*\).*/\2/p' /tmp/profile-$v.log)
        host=$(sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' /tmp/profile-$v.log)
        ncu --clock-control none --cache-control none --launch-skip "$skip" --launch-count "$count" --print-units base \
          --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv --page raw \
          node $D/profile.mjs "$v" > /tmp/ncu-$v.csv 2> /tmp/ncu-$v.err || { status=1; tail -5 /tmp/ncu-$v.err; }
        grep '^"' /tmp/ncu-$v.csv > "$OUT/ncu-$v.csv" || true
        { cat /tmp/profile-$v.log; python3 bench/cuda/ncu_breakdown.py "$OUT/ncu-$v.csv" "$host"; } > "$OUT/profile-$v.md" || status=1
        cat "$OUT/profile-$v.md"
      done ;;
    doctor) (cd $D/lieq && node dist/cli/main.js doctor | tee "$OUT/doctor.txt") || status=1 ;;
    *) echo "device-run.sh: unknown step $what (checks, bench, profile, doctor)"; status=2 ;;
  esac
done
exit $status
