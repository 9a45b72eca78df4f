#!/usr/bin/env bash
# Runs on the GPU machine (no Node there): unpack the carried Node, then run what .device/ holds
# (scripts/device-prepare.sh made it). Writes under $OUT.
#   bash scripts/device-run.sh checks   GPU correctness checks (test/cuda/gpu-checks.ts); exit 1 on failure
#   bash scripts/device-run.sh bench    whole-model decode/prefill benchmark + torch baselines -> $OUT/*.json
#   bash scripts/device-run.sh profile  per-kernel breakdown of one batch-1 decode step (ncu) -> $OUT/profile-*.md, ncu-*.csv
#                                       (PROFILE_VARIANTS="4bit 2bit fp16 lieq lieq-q4" picks the variants, PROFILE_SHAPE
#                                       the shape (default llama-3.2-1b); ADDON=path another addon)
#   bash scripts/device-run.sh ncu-gemv full ncu sections of one step's four packed GEMVs -> $OUT/ncu-gemv-*.txt
#   bash scripts/device-run.sh doctor   `lieq doctor` (needs PREPARE_CLI=1 at prepare time)
#   bash scripts/device-run.sh cli-bench  `lieq bench --device cuda` on the shipped models -> $OUT/lieq-bench-cuda.json
#                                       (needs PREPARE_CLI=1)
# Env for bench: BENCH_MODELS (comma list: shapes and shipped names; default all), TORCH_SHAPES
# (default the four shapes), QUICK=1 (2-layer models, short runs).
# Several words run in order: bash scripts/device-run.sh checks bench
# DEVICE_DIR=.device-NAME: read another carry folder (scripts/device-prepare.sh with the same DEVICE_DIR).
set -uo pipefail
OUT=${OUT:-/tmp/lieq-out}
mkdir -p "$OUT"
D=${DEVICE_DIR:-.device}   # the carry folder scripts/device-prepare.sh filled
python3 -c "import tarfile; tarfile.open('$D/node.tar.xz').extractall('/tmp/nodejs')" && export PATH=/tmp/nodejs/bin:$PATH
node --version
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv | tee "$OUT/gpu.csv"
if [ -z "${ADDON:-}" ] && [ -f "$D/lieq.node.xz" ]; then
  python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('$D/lieq.node.xz'), open('/tmp/lieq-addon.node', 'wb'))" \
    && ADDON=/tmp/lieq-addon.node
fi
ADDON=${ADDON:-$D/lieq.node}
case $ADDON in /*) ;; *) ADDON=$PWD/$ADDON ;; esac
export LIEQ_ADDON=$ADDON LIEQ_DATA_DIR=$PWD/$D/data
status=0
for what in "${@:-checks}"; do
  case $what in
    checks) node $D/checks.mjs 2>&1 | tee "$OUT/checks.log"; [ "${PIPESTATUS[0]}" = 0 ] || status=1 ;;
    bench)
      node $D/bench.mjs "$OUT/cuda-decode.json" 2>&1 | tee "$OUT/bench.log" || status=1
      PYTHONUNBUFFERED=1 python3 bench/cuda/torch_baseline.py "$OUT/torch-baseline.json" \
        --shapes "${TORCH_SHAPES:-llama-3.2-1b,llama-3.2-3b,qwen3-4b,qwen3-8b}" ${QUICK:+--layers 2} 2>&1 | tee "$OUT/torch.log" || status=1 ;;
    profile)
      for v in ${PROFILE_VARIANTS:-4bit 2bit}; do
        # Host-timed steps first (no profiler), then the same sequence under ncu, which skips to
        # the first timed step: one step's kernels, serialized, at the device's own clocks.
        node $D/profile.mjs "$v" ${PROFILE_SHAPE:-} 2>&1 | tee /tmp/profile-$v.log || status=1
        skip=$(sed -n 's/.*--launch-skip \([0-9]*\) --launch-count \([0-9]*\).*/\1/p' /tmp/profile-$v.log)
        count=$(sed -n 's/.*--launch-skip \([0-9]*\) --launch-count \([0-9]*\).*/\2/p' /tmp/profile-$v.log)
        host=$(sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' /tmp/profile-$v.log)
        ncu --clock-control none --cache-control none --launch-skip "$skip" --launch-count "$count" --print-units base \
          --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv --page raw \
          node $D/profile.mjs "$v" ${PROFILE_SHAPE:-} > /tmp/ncu-$v.csv 2> /tmp/ncu-$v.err || { status=1; tail -5 /tmp/ncu-$v.err; }
        grep '^"' /tmp/ncu-$v.csv > "$OUT/ncu-$v.csv" || true
        { cat /tmp/profile-$v.log; python3 bench/cuda/ncu_breakdown.py "$OUT/ncu-$v.csv" "$host"; } > "$OUT/profile-$v.md" || status=1
        cat "$OUT/profile-$v.md"
      done ;;
    ncu-gemv)
      # Full Nsight Compute sections (stall reasons, memory chart) of the four packed GEMVs of one
      # batch-1 decode step (layer 0 of the first timed step): PROFILE_SHAPE, NCU_VARIANT (2bit).
      v=${NCU_VARIANT:-2bit}
      node $D/profile.mjs "$v" ${PROFILE_SHAPE:-} 2>&1 | tee /tmp/gemv-$v.log || status=1
      # qgemv launches before the first timed step: (prompt/16 + warm) steps x (4 per layer + head).
      kernels=$(sed -n 's/.*; \([0-9]*\) kernels a step.*/\1/p' /tmp/gemv-$v.log)
      skip=$(( (128 / 16 + 4) * ((kernels - 3) / 9 * 4 + 1) ))
      ncu --set full --kernel-name regex:qgemv --launch-skip "$skip" --launch-count 4 --print-units base \
        node $D/profile.mjs "$v" ${PROFILE_SHAPE:-} > "$OUT/ncu-gemv-$v.txt" 2> /tmp/ncu-gemv.err || { status=1; tail -5 /tmp/ncu-gemv.err; }
      grep -E "qgemv_kernel|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Block Size|Grid Size|Waves Per SM|Stall|stall|Issued Ipc|Warp Cycles Per Issued|L1/TEX Hit|L2 Hit|No Eligible|Active Warps" "$OUT/ncu-gemv-$v.txt" | head -150 ;;
    doctor) (cd $D/lieq && node dist/cli/main.js doctor | tee "$OUT/doctor.txt") || status=1 ;;
    cli-bench)
      # The shipped models through the whole CLI path (child process per target, GPU backend);
      # --group 32 so the 4-bit LM head's group divides their hidden sizes (64, 128).
      (cd $D/lieq && node dist/cli/main.js bench stories260K tinystories-656K --device cuda \
        --plan f32,uniform:4,uniform:2,bits:2.4 --group 32 --lm-head 4 --batch 1,4,16 --prompt 128 --gen 64 --repeat 3 \
        --no-cache --json > "$OUT/lieq-bench-cuda.json" 2> "$OUT/lieq-bench-cuda.err") || { status=1; tail -20 "$OUT/lieq-bench-cuda.err"; }
      (cd $D/lieq && node dist/cli/main.js bench stories260K --device cuda --plan uniform:4 --group 32 --batch 1 \
        --prompt 32 --gen 16 --repeat 2 --no-cache --no-isolate 2>&1 | tail -12) || status=1 ;;
    *) echo "device-run.sh: unknown step $what (checks, bench, profile, ncu-gemv, doctor, cli-bench)"; status=2 ;;
  esac
done
exit $status
