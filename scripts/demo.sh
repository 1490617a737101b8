#!/usr/bin/env bash
# The main job: set up the machine, build `tlc` (release), then for every kernel in
# examples/*.tl and stdlib/kernels/*.tl:
#   1. compile it to PTX for sm_80 and sm_90a (target/demo/NAME.ARCH.ptx),
#   2. assemble each PTX file with ptxas (target/demo/NAME.ARCH.cubin, `ptxas -v` report in the log),
#   3. run it on the CPU VM on seeded random inputs and check it against the file's `reference`,
#   4. if `nvidia-smi` works: run it on the GPU and compare with the VM (`--against vm`);
# then tunes the quantized matmul for one problem (`tlc tune`, on the GPU or the cpu backend).
# Prints a summary table; exits 1 if any step failed. Logs: target/demo/logs/.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "demo: setup failed" >&2; exit 1; }

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
PTXAS="${TL_PTXAS:-$(python3 -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13','bin','ptxas'))")}"
export TL_PTXAS="$PTXAS"

echo "demo: cargo build --release -p tl-cli"
cargo build --release -p tl-cli || { echo "demo: build failed" >&2; exit 1; }
TLC=target/release/tlc
[ -x "$TLC" ] || { echo "demo: $TLC was not built" >&2; exit 1; }

OUT=target/demo
LOGS="$OUT/logs"
mkdir -p "$LOGS"

GPU=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    GPU=1
    echo "demo: GPU found: $(nvidia-smi -L | head -n 1)"
else
    echo "demo: no working nvidia-smi; the cuda column is skipped"
fi

# Runs a command with its output in a log file; on failure shows the end of the log.
logged() {
    local log="$1"
    shift
    echo "+ $*" >"$log"
    if "$@" >>"$log" 2>&1; then
        return 0
    fi
    echo "  FAILED: $*" >&2
    tail -n 20 "$log" | sed 's/^/  | /' >&2
    return 1
}

# Compile-time parameter sets each kernel runs with (one per line; empty = the defaults). The
# quantized matmul runs for several weight formats, MX block scaling included.
variants_for() {
    case "$1" in
        qmatmul) printf '%s\n' "" "-D W=i3" "-D W=u8" "-D W=f6e3m2" "-D W=f4e2m1 -D S=e8m0 -D G=32" ;;
        *) printf '%s\n' "" ;;
    esac
}

# Names of the kernels a .tl file defines, in order.
kernels_in() {
    sed -nE 's/^[[:space:]]*kernel[[:space:]]+([A-Za-z_][A-Za-z0-9_]*).*/\1/p' "$1"
}

files=(examples/*.tl stdlib/kernels/*.tl)
rows=()
failures=0
count=0
# run_step COLUMN TLC_RUN_ARGS...: `tlc run` of the current kernel; records PASS/FAIL in
# res[COLUMN] and the reported max_rel_err in detail.
run_step() {
    local column="$1"
    shift
    # shellcheck disable=SC2086 # $defs is a list of -D options
    if logged "$LOGS/$name.$column.log" "$TLC" run "$f" --kernel "$k" $defs "$@"; then
        res[$column]=PASS
    else
        res[$column]=FAIL
        failures=$((failures + 1))
    fi
    local err
    err="$(grep -oE 'max_rel_err=[^ ]+' "$LOGS/$name.$column.log" | tail -n 1)"
    [ -n "$err" ] && detail="$detail $column:$err"
    return 0
}

for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    base="$(basename "$f" .tl)"
    for k in $(kernels_in "$f"); do
      while IFS= read -r defs; do
        count=$((count + 1))
        name="$base"
        [ "$k" = "$base" ] || name="$base.$k"
        [ -z "$defs" ] || name="$name[$(echo "$defs" | sed -E 's/-D //g; s/ /,/g')]"
        echo "demo: $f ($k)"
        detail=""
        declare -A res=()
        for arch in sm_80 sm_90a; do
            ptx="$OUT/$name.$arch.ptx"
            # shellcheck disable=SC2086
            if logged "$LOGS/$name.compile.$arch.log" "$TLC" compile "$f" --kernel "$k" $defs --emit ptx --arch "$arch" -o "$ptx" &&
               logged "$LOGS/$name.ptxas.$arch.log" "$PTXAS" -v --gpu-name "$arch" "$ptx" -o "$OUT/$name.$arch.cubin"; then
                res[$arch]=ok
                if [ "$arch" = sm_80 ]; then
                    regs="$(grep -oE 'Used [0-9]+ registers' "$LOGS/$name.ptxas.$arch.log" | head -n 1 | awk '{print $2}')"
                    [ -n "$regs" ] && detail="regs(sm_80)=$regs"
                fi
            else
                res[$arch]=FAIL
                failures=$((failures + 1))
            fi
        done
        run_step vm --backend vm
        if [ "$GPU" -eq 1 ]; then
            run_step cuda --backend cuda --against vm
        else
            res[cuda]=skip
        fi
        rows+=("$(printf '%-34s %-6s %-6s %-6s %-6s %s' "$name" "${res[sm_80]}" "${res[sm_90a]}" "${res[vm]}" "${res[cuda]}" "$detail")")
        unset res
      done < <(variants_for "$k")
    done
done

echo
printf '%-34s %-6s %-6s %-6s %-6s %s\n' kernel sm_80 sm_90a vm cuda detail
printf '%-34s %-6s %-6s %-6s %-6s %s\n' ---------------------------------- ------ ------ ------ ------ ------
for r in "${rows[@]}"; do
    echo "$r"
done
# Tuning: the quantized matmul's tiles, stages and warps for a decode-shaped problem, the
# winner checked against the reference and stored in a dispatch table: timed on the GPU when
# there is one, else on the cpu backend.
if [ "$GPU" -eq 1 ]; then
    tune_target=(--target cuda --size n=4096 --size k=4096)
else
    tune_target=(--target cpu --size n=1024 --size k=1024)
fi
echo
echo "demo: tlc tune stdlib/kernels/qmatmul.tl ${tune_target[*]} --size m=16"
if logged "$LOGS/tune.log" env TL_PROGRESS=0 "$TLC" tune stdlib/kernels/qmatmul.tl "${tune_target[@]}" --size m=16 \
        --space BM=16,32 --space BN=32,64,128 --space BK=32,64 --space STAGES=2,3 --space WARPS=4,8 \
        --retune --table "$OUT/dispatch.tbl"; then
    grep -E "^(compiled|timed|winner|stored)" "$LOGS/tune.log" | sed 's/^/  /'
else
    failures=$((failures + 1))
fi

echo
if [ "$count" -eq 0 ]; then
    echo "demo: no kernels found in examples/*.tl or stdlib/kernels/*.tl" >&2
    exit 1
fi
echo "demo: $count kernels, $failures failed steps (PTX and cubins in $OUT/, logs in $LOGS/)"
[ "$failures" -eq 0 ]
