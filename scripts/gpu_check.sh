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
cd "$ROOT"
for f in examples/*.tl stdlib/kernels/*.tl tests/kernels/pipeline.tl tests/kernels/mma.tl tests/kernels/low_precision.tl; do
    [ -f "$f" ] || continue
    for k in $(kernels_in "$f"); do
        for s in $SEEDS; do
            out="$("$TLC" run "$f" --kernel "$k" --backend cuda --against vm --seed "$s" 2>&1)"
            rc=$?
            if [ "$rc" -eq 0 ]; then
                result=PASS
                passed=$((passed + 1))
            else
                result=FAIL
                failed=$((failed + 1))
                echo "--- $f $k seed=$s (exit $rc)" >&2
                printf '%s\n' "$out" | tail -n 20 | sed 's/^/  | /' >&2
            fi
            err="$(printf '%s\n' "$out" | grep -oE 'max_rel_err=[^ ]+' | tail -n 1)"
            rows+=("$(printf '%-28s %-16s %-6s %-6s %s' "$f" "$k" "$s" "$result" "$err")")
        done
    done
done

# The tuner on the GPU: a small search of the quantized matmul, its winner checked against the
# reference (tlc exits 1 when no candidate runs correctly), then run from the dispatch table.
table="$(mktemp -d)/dispatch.tbl"
for step in tune run; do
    if [ "$step" = tune ]; then
        out="$(TL_PROGRESS=0 "$TLC" tune stdlib/kernels/qmatmul.tl --target cuda --size m=16 --size n=4096 --size k=4096 \
            --space BM=16,32 --space BN=32,64,128 --space BK=32,64 --space STAGES=2,3 --space WARPS=4,8 --table "$table" 2>&1)"
    else
        out="$(TL_TUNE_TABLE="$table" "$TLC" run stdlib/kernels/qmatmul.tl --backend cuda --against cpu --tuned --arg m=16 --arg n=4096 --arg k=4096 2>&1)"
    fi
    rc=$?
    if [ "$rc" -eq 0 ] && { [ "$step" = run ] || printf '%s\n' "$out" | grep -q '^stored in'; }; then
        result=PASS
        passed=$((passed + 1))
    else
        result=FAIL
        failed=$((failed + 1))
        echo "--- tlc $step qmatmul (exit $rc)" >&2
    fi
    printf '%s\n' "$out" | tail -n 12 | sed 's/^/  | /' >&2
    rows+=("$(printf '%-28s %-16s %-6s %-6s %s' stdlib/kernels/qmatmul.tl "$step" - "$result" "$(printf '%s\n' "$out" | grep -E '^winner|^tl: tuned' | head -n 1 | cut -c1-60)")")
done

echo
printf '%-28s %-16s %-6s %-6s %s\n' file kernel seed result detail
printf '%-28s %-16s %-6s %-6s %s\n' ---------------------------- ---------------- ------ ------ ------
for r in "${rows[@]}"; do
    echo "$r"
done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
