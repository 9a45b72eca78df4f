#!/usr/bin/env bash
# Runs a test subset against the addon built with AddressSanitizer + UndefinedBehaviorSanitizer
# (gcc, build-asan/). Node itself is not instrumented, so the ASan runtime is preloaded;
# UB aborts the process (-fno-sanitize-recover), which fails the test file that hit it.
#
#   scripts/sanitize.sh                          # build build-asan, run the default subset
#   SKIP_BUILD=1 scripts/sanitize.sh test/native # reuse the build, run other files
#
# Leaks: exit-time LeakSanitizer is off. It cannot tell the addon's leaks from V8's (every
# allocation stack runs through node frames, so suppressing those hides everything), and in
# containers without ptrace it aborts at once. test/native/leak.test.ts measures 1,000
# create/destroy cycles of every entry instead (allowing for ASan's quarantine).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${LIEQ_ASAN_BUILD:-build-asan}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  LIEQ_BUILD_DIR="$BUILD" LIEQ_CUDA=0 LIEQ_SANITIZE=address,undefined node scripts/install.mjs --force
fi
ADDON="$PWD/$BUILD/Release/lieq.node"
[ -f "$ADDON" ] || { echo "sanitize: $ADDON not built" >&2; exit 2; }

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
