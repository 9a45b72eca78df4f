#!/usr/bin/env bash
# Cross-compiles the native core for aarch64 with its NEON kernels (native/core/*_neon.cpp, LIEQ_NEON)
# plus native/test/simd_check.cpp, and runs the check under qemu-user: every NEON kernel against its
# scalar twin and float64 references (all bit widths, group sizes, odd shapes, batch paths).
#
#   bash scripts/check-neon.sh            # BUILD dir: build-neon-check (objects are reused)
#
# Needs the Debian packages g++-aarch64-linux-gnu and qemu-user. Where either is missing it prints
# why and exits 0 with "SKIP" (exit 77 instead with LIEQ_NEON_REQUIRED=1, e.g. in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

CXX=${AARCH64_CXX:-aarch64-linux-gnu-g++}
QEMU=${QEMU_AARCH64:-qemu-aarch64}
SYSROOT=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}
BUILD=${BUILD:-build-neon-check}

skip() {
  echo "SKIP check-neon: $1"
  if [ "${LIEQ_NEON_REQUIRED:-0}" = 1 ]; then exit 77; fi
  exit 0
}
command -v "$CXX" >/dev/null || skip "$CXX not found (apt-get install g++-aarch64-linux-gnu)"
command -v "$QEMU" >/dev/null || skip "$QEMU not found (apt-get install qemu-user)"
[ -d "$SYSROOT" ] || skip "no aarch64 sysroot at $SYSROOT"

# Plain ARMv8-A: NEON and FMA are baseline; fp16 <-> f32 conversion (FCVTL) needs no extension.
FLAGS=(-std=c++17 -O2 -march=armv8-a -DLIEQ_NEON -Inative -Wall -Wextra -Wno-unused-parameter -Werror=return-type -pthread)
mkdir -p "$BUILD"
sources=(native/test/simd_check.cpp)
for f in native/core/*.cpp; do
  case "$f" in *_avx2.cpp) ;; *) sources+=("$f") ;; esac
done

objects=()
pids=()
for src in "${sources[@]}"; do
  obj="$BUILD/$(basename "${src%.cpp}").o"
  objects+=("$obj")
  # rebuild when the source or any header of native/ is newer than the object
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find native/core native/test -name '*.h' -newer "$obj" -print -quit)" ]; then
    "$CXX" "${FLAGS[@]}" -c "$src" -o "$obj" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "${JOBS:-2}" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
"$CXX" -pthread "${objects[@]}" -o "$BUILD/simd_check"
echo "check-neon: built $BUILD/simd_check ($(${CXX} -dumpversion), -march=armv8-a)"

QEMU_LD_PREFIX="$SYSROOT" "$QEMU" -L "$SYSROOT" "$BUILD/simd_check" --expect neon
