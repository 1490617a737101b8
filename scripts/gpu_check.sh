#!/usr/bin/env bash
# Differential GPU check for a machine with an NVIDIA GPU (driver installed) but no Rust
# toolchain: runs every shipped kernel on the GPU and on the CPU VM with the same seeded random
# inputs, for several seeds, and compares the outputs:
#     tlc run FILE --kernel K --backend cuda --against vm --seed S
#
# Build here (a machine with the toolchain, after `bash scripts/setup.sh`) and carry the
# binary plus the .tl files:
#     cargo build --release -p tl-cli
#     tar czf tl-gpu.tgz --transform 's,^target/release/tlc$,bin/tlc,' \
#         target/release/tlc scripts/gpu_check.sh examples/*.tl stdlib/kernels/*.tl tests/kernels/*.tl
#     scp tl-gpu.tgz gpu-host:
# On the GPU machine:
#     mkdir tl && tar xzf tl-gpu.tgz -C tl && cd tl && bash scripts/gpu_check.sh
# No CUDA toolkit is needed there: tlc loads the driver (libcuda.so) at run time and hands it
# PTX. The binary links LLVM statically; it needs a glibc at least as new as the build machine's
# and libstdc++, libz, libzstd and libffi.so.8 (`ldd bin/tlc` lists them).
#
# Usage: scripts/gpu_check.sh [DIR_WITH_TLC]
#   DIR_WITH_TLC defaults to bin/ next to scripts/, else target/release/.
#   TL_SEEDS (default "1 2 3") sets the seeds.
# Prints one row per kernel and seed and a final `N passed, M failed` line; exits 1 if any failed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

if [ $# -ge 1 ]; then
    DIR="$1"
elif [ -x "$ROOT/bin/tlc" ]; then
    DIR="$ROOT/bin"
else
    DIR="$ROOT/target/release"
fi
TLC="$DIR/tlc"
if [ ! -x "$TLC" ]; then
    echo "gpu_check: no executable tlc in $DIR (pass the directory that holds it)" >&2
    exit 2
fi
SEEDS="${TL_SEEDS:-1 2 3}"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: $(nvidia-smi -L | head -n 1)"
else
    echo "gpu_check: warning: nvidia-smi does not work here; the cuda runs will likely fail" >&2
fi
echo "gpu_check: $TLC, seeds: $SEEDS"

kernels_in() {
    sed -nE 's/^[[:space:]]*kernel[[:space:]]+([A-Za-z_][A-Za-z0-9_]*).*/\1/p' "$1"
}

passed=0
failed=0
rows=()
# record FILE STEP SEED RC OUTPUT DETAIL: one row; a failure's output goes to stderr.
record() {
    local result=PASS
    if [ "$4" -eq 0 ]; then
        passed=$((passed + 1))
    else
        result=FAIL
        failed=$((failed + 1))
        echo "--- $1 $2 seed=$3 (exit $4)" >&2
        printf '%s\n' "$5" | tail -n 20 | sed 's/^/  | /' >&2
    fi
    rows+=("$(printf '%-28s %-16s %-6s %-6s %s' "$1" "$2" "$3" "$result" "$6")")
}
cd "$ROOT"
for f in examples/*.tl stdlib/kernels/*.tl tests/kernels/pipeline.tl tests/kernels/mma.tl tests/kernels/low_precision.tl; do
    [ -f "$f" ] || continue
    for k in $(kernels_in "$f"); do
        for s in $SEEDS; do
            out="$("$TLC" run "$f" --kernel "$k" --backend cuda --against vm --seed "$s" 2>&1)"
            record "$f" "$k" "$s" $? "$out" "$(printf '%s\n' "$out" | grep -oE 'max_rel_err=[^ ]+' | tail -n 1)"
        done
    done
done

# The tuner on the GPU: a small search of the quantized matmul, its winner checked against the
# reference (tlc exits 1 when no candidate runs correctly), then run from the dispatch table.
scratch="$(mktemp -d)"
out="$(TL_PROGRESS=0 "$TLC" tune stdlib/kernels/qmatmul.tl --target cuda --size m=16 --size n=4096 --size k=4096 \
    --space BM=16,32 --space BN=32,64,128 --space BK=32,64 --space STAGES=2,3 --space WARPS=4,8 --table "$scratch/dispatch.tbl" 2>&1)"
rc=$?
[ "$rc" -eq 0 ] && ! printf '%s\n' "$out" | grep -q '^stored in' && rc=1
record stdlib/kernels/qmatmul.tl tune - "$rc" "$out" "$(printf '%s\n' "$out" | grep -E '^winner' | head -n 1 | cut -c1-60)"
out="$(TL_TUNE_TABLE="$scratch/dispatch.tbl" "$TLC" run stdlib/kernels/qmatmul.tl --backend cuda --against cpu --tuned --arg m=16 --arg n=4096 --arg k=4096 2>&1)"
record stdlib/kernels/qmatmul.tl run-tuned - $? "$out" "$(printf '%s\n' "$out" | grep -E '^tl: tuned' | head -n 1 | cut -c1-60)"

# Cubins on disk: the first run in an empty cache stores the cubin the driver linked (an
# entry whose key names the driver), the second loads it; a cubin the driver refused or a
# linker failure would be a warning on stderr.
for round in link load; do
    out="$(TL_CACHE_DIR="$scratch/cache" "$TLC" run examples/vector_add.tl --backend cuda --against vm 2>&1)"
    rc=$?
    if [ "$rc" -eq 0 ] && { printf '%s\n' "$out" | grep -q 'warning' || ! grep -qa 'cuda driver' "$scratch"/cache/*.entry; }; then
        rc=1
    fi
    record examples/vector_add.tl "cubin-$round" - "$rc" "$out" "$(ls "$scratch"/cache/*.entry 2>/dev/null | wc -l) cache entries"
done
rm -rf "$scratch"

echo
printf '%-28s %-16s %-6s %-6s %s\n' file kernel seed result detail
printf '%-28s %-16s %-6s %-6s %s\n' ---------------------------- ---------------- ------ ------ ------
for r in "${rows[@]}"; do
    echo "$r"
done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
