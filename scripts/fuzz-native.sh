#!/usr/bin/env bash
# Coverage-guided fuzzing of the native core with libFuzzer (clang from Debian: apt-get install
# -y clang llvm). Builds native/fuzz/*.cpp against the plain C++ core (no Node) with
# -fsanitize=fuzzer,address,undefined into build-fuzz/, seeds each target with valid inputs, runs
# it for RUNS inputs, and keeps crash reproducers in test/fuzz/corpus/native-<target>/.
#
#   scripts/fuzz-native.sh                 # every target, 100,000 inputs each
#   RUNS=2000 scripts/fuzz-native.sh packed
#   scripts/fuzz-native.sh --replay        # only re-run the stored corpus (regression check, CI)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-100000}
CXX=${FUZZ_CXX:-clang++}
OUT=build-fuzz
REPLAY=0
TARGETS=()
for a in "$@"; do
  case "$a" in
    --replay) REPLAY=1 ;;
    *) TARGETS+=("$a") ;;
  esac
done
if [ ${#TARGETS[@]} -eq 0 ]; then
  for f in native/fuzz/fuzz_*.cpp; do t=$(basename "$f" .cpp); TARGETS+=("${t#fuzz_}"); done
fi
command -v "$CXX" >/dev/null || { echo "fuzz-native: $CXX not found (apt-get install -y clang llvm)" >&2; exit 2; }

SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
FLAGS="-std=c++17 -Inative -DLIEQ_AVX2 $SAN"
mkdir -p "$OUT/obj"

# The core, once, instrumented for coverage (NEON files are aarch64-only).
objs=()
for src in native/core/*.cpp; do
  case "$src" in *_neon.cpp) continue ;; esac
  obj="$OUT/obj/$(basename "$src" .cpp).o"
  objs+=("$obj")
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find native/core -name '*.h' -newer "$obj" -print -quit)" ]; then
    extra=""
    case "$src" in *_avx2.cpp) extra="-mavx2 -mfma -mf16c" ;; esac
    echo "fuzz-native: compiling $src" >&2
    $CXX $FLAGS -fsanitize=fuzzer-no-link $extra -c "$src" -o "$obj"
  fi
done

seed_corpus() {  # valid inputs for a target, so the fuzzer starts past the shape checks
  local target=$1 dir=$2
  node -e '
    const fs = require("fs"), path = require("path");
    const [target, dir] = process.argv.slice(1);
    const put = (name, buf) => fs.writeFileSync(path.join(dir, name), buf);
    if (target === "packed") {
      for (const bits of [2, 3, 4, 8]) for (const sym of [0, 1]) for (const [out, inF, g] of [[2, 64, 32], [3, 128, 128], [1, 32, 32], [5, 96, 32]]) {
        const q = out * (inF / 32) * 4 * bits, s = out * (inF / g), z = sym ? 0 : s;
        const h = Buffer.alloc(24);
        h.writeUInt32LE(out, 0); h.writeUInt32LE(inF, 4); h.writeUInt8(bits, 8); h.writeUInt8(sym, 9);
        h.writeUInt16LE(g, 10); h.writeUInt32LE(q, 12); h.writeUInt32LE(s, 16); h.writeUInt32LE(z, 20);
        const payload = Buffer.alloc(q + 2 * s + z);
        for (let i = 0; i < q; i++) payload[i] = (i * 37) & 255;
        for (let i = 0; i < s; i++) payload.writeUInt16LE(0x3c00 + (i % 64), q + 2 * i); // fp16 1.0..
        for (let i = 0; i < z; i++) payload[q + 2 * s + i] = i % (1 << bits);
        put(`seed-${bits}b-${sym ? "sym" : "asym"}-${out}x${inF}-g${g}`, Buffer.concat([h, payload]));
      }
    } else if (target === "convert") {
      for (const t of [0, 1, 2]) put(`seed-${t}`, Buffer.concat([Buffer.from([t]), Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 29) & 255))]));
    }
  ' "$target" "$dir"
}

status=0
for t in "${TARGETS[@]}"; do
  src="native/fuzz/fuzz_$t.cpp"
  [ -f "$src" ] || { echo "fuzz-native: no $src" >&2; exit 2; }
  bin="$OUT/fuzz_$t"
  if [ ! -f "$bin" ] || [ "$src" -nt "$bin" ] || [ -n "$(find "$OUT/obj" -newer "$bin" -print -quit)" ]; then
    echo "fuzz-native: linking $bin" >&2
    $CXX $FLAGS -fsanitize=fuzzer "$src" "${objs[@]}" -o "$bin" -lpthread
  fi
  corpus="test/fuzz/corpus/native-$t"   # stored reproducers (regression inputs)
  work="$OUT/corpus-$t"                 # the fuzzer's growing working corpus (not kept in git)
  mkdir -p "$corpus" "$work"
  [ -n "$(ls -A "$work")" ] || seed_corpus "$t" "$work"
  if [ "$REPLAY" = 1 ]; then
    files=("$corpus"/* "$work"/*)
    echo "fuzz-native: $t: replaying ${#files[@]} inputs" >&2
    "$bin" -runs=0 "$corpus" "$work" >/dev/null 2>"$OUT/replay-$t.log" || { cat "$OUT/replay-$t.log" >&2; status=1; }
    continue
  fi
  echo "fuzz-native: $t: $RUNS inputs" >&2
  start=$(date +%s)
  if ! "$bin" -runs="$RUNS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
       -artifact_prefix="$corpus/" -print_final_stats=1 "$work" 2>"$OUT/fuzz-$t.log"; then
    status=1
    tail -40 "$OUT/fuzz-$t.log" >&2
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$OUT/fuzz-$t.log" | sed "s/^/fuzz-native: $t: /" >&2 || true
  echo "fuzz-native: $t: $(( $(date +%s) - start )) s" >&2
done
exit $status
