#!/usr/bin/env bash
# Runs a test subset against the addon built with AddressSanitizer + UndefinedBehaviorSanitizer
# (gcc, build-asan/). Node itself is not instrumented, so the ASan runtime is preloaded;
# UB aborts the process (-fno-sanitize-recover), which fails the test file that hit it.
#
#   scripts/sanitize.sh                          # build build-asan, LSan check, run the default subset
#   SKIP_BUILD=1 scripts/sanitize.sh test/native # reuse the build, run other files
#   scripts/sanitize.sh --lsan-only              # build, then only the LeakSanitizer check
#   LSAN=0 scripts/sanitize.sh ...               # skip the LeakSanitizer check
#
# Leaks: LeakSanitizer runs on the native core without Node: native/test/lsan_cycles.cpp (1,000
# create/destroy cycles of every native object, a leak check after each) is linked against the
# sanitized core objects of this build and must report no leak, while its --control run (64 KB
# leaked on purpose) must be caught. Inside Node, exit-time LSan stays off: V8 and Node keep
# allocations alive until exit that LSan would report, and suppressing every stack through
# node frames would hide the addon's too; test/native/leak.test.ts measures 1,000 cycles of
# every N-API entry by resident size instead (allowing for ASan's quarantine).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${LIEQ_ASAN_BUILD:-build-asan}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  LIEQ_BUILD_DIR="$BUILD" LIEQ_CUDA=0 LIEQ_SANITIZE=address,undefined node scripts/install.mjs --force
fi
ADDON="$PWD/$BUILD/Release/lieq.node"
[ -f "$ADDON" ] || { echo "sanitize: $ADDON not built" >&2; exit 2; }

LSAN_ONLY=0
if [ "${1:-}" = --lsan-only ]; then LSAN_ONLY=1; shift; fi

# LeakSanitizer check of the core (see above). Reuses the build's sanitized objects when the
# build made them (cmake-js); else compiles the core itself (node-gyp builds keep no objects).
lsan_check() {
  local cxx=${CXX:-g++} san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
  local objdir="$BUILD/CMakeFiles/lieq.dir/native" objs=() src obj
  for src in native/core/*.cpp native/cuda/gpu_model_stub.cpp; do
    case "$src" in *_neon.cpp) continue ;; esac
    obj="$objdir/${src#native/}.o"
    if [ ! -f "$obj" ]; then
      obj="$BUILD/lsan-obj/$(basename "$src" .cpp).o"
      mkdir -p "$BUILD/lsan-obj"
      if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ]; then
        local extra=""
        case "$src" in *_avx2.cpp) extra="-mavx2 -mfma -mf16c" ;; esac
        # shellcheck disable=SC2086
        $cxx -std=c++17 -O1 -Inative -DLIEQ_AVX2 $san $extra -c "$src" -o "$obj"
      fi
    fi
    objs+=("$obj")
  done
  local bin="$BUILD/lsan_cycles" t0
  t0=$(date +%s)
  # shellcheck disable=SC2086
  $cxx -std=c++17 -O1 -Inative $san native/test/lsan_cycles.cpp "${objs[@]}" -pthread -o "$bin"
  if ASAN_OPTIONS=detect_leaks=1 "$bin" --control >/dev/null 2>&1; then
    echo "sanitize: LeakSanitizer missed the control leak (is it disabled, or running under ptrace?)" >&2
    exit 1
  fi
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" "$bin" "${LSAN_CYCLES:-1000}"
  echo "sanitize: LeakSanitizer: no leak in ${LSAN_CYCLES:-1000} cycles of every native object ($(( $(date +%s) - t0 )) s)" >&2
}
if [ "${LSAN:-1}" != 0 ]; then lsan_check; fi
if [ "$LSAN_ONLY" = 1 ]; then exit 0; fi

TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
  TESTS=(test/native test/kernels test/fuzz/readers.test.ts)
fi

ASAN_LIB=$(g++ -print-file-name=libasan.so)
UBSAN_LIB=$(g++ -print-file-name=libubsan.so)
export LD_PRELOAD="$ASAN_LIB $UBSAN_LIB"
# V8 reserves huge virtual ranges and installs its own SEGV handler; ASan must leave both alone.
export ASAN_OPTIONS="detect_leaks=0:handle_segv=0:allow_user_segv_handler=1:detect_odr_violation=0:abort_on_error=1:allocator_may_return_null=1:quarantine_size_mb=16"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LIEQ_ADDON="$ADDON"
export LIEQ_DIST="${LIEQ_DIST:-dist-asan}"
# Sanitized kernels run 2-5x slower; fewer random inputs keep the subset short.
export LIEQ_FUZZ_TEST_RUNS="${LIEQ_FUZZ_TEST_RUNS:-150}"
export LIEQ_LEAK_CYCLES="${LIEQ_LEAK_CYCLES:-1000}"

start=$(date +%s)
npx vitest run "${TESTS[@]}"
echo "sanitize: ${TESTS[*]} passed under ASan+UBSan in $(( $(date +%s) - start )) s" >&2
