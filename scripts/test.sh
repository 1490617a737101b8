#!/usr/bin/env bash
# The test command (also what .ci/run calls): set-up, then build every target and run every
# test of the workspace. Prints cargo's own test summary; exits with cargo's status.
# Works without a GPU: tests that need one say why they skip. TL_PTXAS points the tests at the
# ptxas that scripts/setup.sh installed, so every shipped kernel is assembled for sm_80/sm_90a;
# TL_REQUIRE_PTXAS=1 turns a skipped ptxas check into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

if [ -z "${TL_PTXAS:-}" ]; then
    TL_PTXAS="$(python3 -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13','bin','ptxas'))")"
fi
export TL_PTXAS
# ptxas is installed here, so a test that would skip its ptxas check fails instead.
export TL_REQUIRE_PTXAS=1
echo "test: TL_PTXAS=$TL_PTXAS TL_REQUIRE_PTXAS=1"
# The compile cache of the tests' kernels lives in the build folder, not the user's cache.
export TL_CACHE_DIR="${TL_CACHE_DIR:-$PWD/target/tl-cache}"

echo "test: cargo build --workspace --all-targets"
cargo build --workspace --all-targets

echo "test: cargo test --workspace"
exec cargo test --workspace
