#!/usr/bin/env bash
# Fuzzes the compiler and the CPU backends with cargo-fuzz (libFuzzer), then keeps the corpus
# minimal. Usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   targets: lex parse check compile run npy tlt ir_text lir_text (default: all); 120 s each by default.
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler; the stable toolchain's
# nightly features are enabled with RUSTC_BOOTSTRAP=1. Crashes land in fuzz/artifacts/TARGET/:
# turn each into a file under fuzz/regressions/FOLDER/ (replayed by tests/tests/fuzz_corpus.rs)
# and fix it. The corpus folders are shared: lex, parse, check and compile read fuzz/corpus/source.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-120}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(lex parse check compile run npy tlt ir_text lir_text)
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none -O
bin=target/x86_64-unknown-linux-gnu/release
folder() { case "$1" in lex|parse|check|compile) echo source ;; *) echo "$1" ;; esac; }
for t in "${targets[@]}"; do
    f="$(folder "$t")"
    mkdir -p "artifacts/$t" "corpus/$f"
    echo "fuzz: $t for ${seconds}s on corpus/$f"
    "$bin/$t" "corpus/$f" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"artifacts/$t.log" 2>&1 || echo "fuzz: $t stopped with a finding, see artifacts/$t/"
    grep -a "stat::number_of_executed_units" "artifacts/$t.log" || true
done
for f in $(for t in "${targets[@]}"; do folder "$t"; done | sort -u); do
    t=$([ "$f" = source ] && echo compile || echo "$f")
    rm -rf "corpus/$f.min" && mkdir "corpus/$f.min"
    "$bin/$t" -set_cover_merge=1 -max_len=4096 -timeout=10 "corpus/$f.min" "corpus/$f" >/dev/null 2>&1
    rm -rf "corpus/$f" && mv "corpus/$f.min" "corpus/$f"
    echo "fuzz: corpus/$f minimized to $(ls "corpus/$f" | wc -l) inputs"
done
