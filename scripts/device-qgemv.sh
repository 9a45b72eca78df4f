#!/usr/bin/env bash
# Builds and runs the qgemv kernel harness (bench/cuda/qgemv_harness.cu) on a CUDA machine:
# repack self-check, GPU correctness (odd shapes under compute-sanitizer, then all shapes),
# ceilings, lieq vs cuBLAS timings. Writes qgemv.json, logs and a SASS excerpt under $OUT.
#
#   OUT=/tmp/qgemv scripts/device-qgemv.sh [harness args, e.g. --quick]
# Env: OUT (default bench/tmp/qgemv), QGEMV_ARCH (default sm_90; sm_80 for an A100),
#      QGEMV_SANITIZE=0 to skip the compute-sanitizer pass, NVCC (default: nvcc on PATH or
#      /usr/local/cuda/bin/nvcc).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/tmp/qgemv}"
ARCH="${QGEMV_ARCH:-sm_90}"
NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
BUILD="$(mktemp -d)"
mkdir -p "$OUT"
export PATH="$PATH:$(dirname "$NVCC")"

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,power.limit --format=csv || true; } \
  > "$OUT/device.txt" 2>&1
"$NVCC" --version >> "$OUT/device.txt"

echo "== build ($ARCH) =="
"$NVCC" -std=c++17 -O3 -arch="$ARCH" -lineinfo -Inative -Xcompiler -fopenmp --resource-usage \
  bench/cuda/qgemv_harness.cu native/cuda/qgemv.cu -lcublas -o "$BUILD/qgemv_harness" > "$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 1; }
grep -E "error|warning" "$OUT/build.log" | grep -v "Function properties" | head -20 || true

# SASS of the g128 batch-1 kernels (the ones the targets are about), for offline reading.
if command -v cuobjdump > /dev/null; then
  cuobjdump -sass "$BUILD/qgemv_harness" 2> /dev/null \
    | awk '/Function : /{p = ($0 ~ /qgemv_kernelILi[2348]ELi128ELi1E6__half/)} p' > "$OUT/sass_g128_b1.txt" || true
fi

if [ "${QGEMV_SANITIZE:-1}" != 0 ] && command -v compute-sanitizer > /dev/null; then
  echo "== compute-sanitizer memcheck, odd shapes =="
  compute-sanitizer --tool memcheck --print-limit 20 "$BUILD/qgemv_harness" --odd-only 2>&1 | tail -30 \
    | tee "$OUT/sanitizer.log"
fi

echo "== harness =="
set -o pipefail
OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}" "$BUILD/qgemv_harness" --json "$OUT/qgemv.json" "$@" 2>&1 \
  | tee "$OUT/qgemv.log"
